//! Per-rule request limits: plain data, compared by value.

/// Limits on the requests one rule takes. `None`: no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestLimits {
    /// Most requests of the rule in flight at once; more get 503 `overloaded` at once
    /// (no queue).
    pub max_concurrent_requests: Option<u32>,
    /// Largest request body, in bytes: a larger `Content-Length` gets 413 before the
    /// backend is called, a streamed body is cut off with 413 once it passes the bound.
    pub max_request_body: Option<u64>,
}
