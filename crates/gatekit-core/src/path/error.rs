//! Why a request path was refused.

/// Why [`normalize`](super::normalize) refused a path. Both are the client's fault: the
/// [`NormalizePath`](super::NormalizePath) service answers them with `400 Bad Request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("invalid percent-encoding in the request path")]
    InvalidEscape,
    /// An encoded slash or backslash (`%2F`, `%5C`) under
    /// [`EscapedSlashes::Reject`](super::EscapedSlashes::Reject).
    #[error("encoded slash or backslash in the request path")]
    EscapedSlash,
}

/// Why [`check_host`](super::check_host) refused a request's `Host`. All are the
/// client's fault: [`NormalizePath`](super::NormalizePath) answers them with
/// `400 Bad Request` and closes an HTTP/1 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// More than one `Host` field.
    #[error("more than one Host header")]
    Duplicate,
    /// An HTTP/1.1 request without `Host`.
    #[error("HTTP/1.1 request without a Host header")]
    Missing,
    /// A `Host` that is not `host[:port]`.
    #[error("invalid Host header")]
    Invalid,
    /// An HTTP/2 `host` that names another authority than `:authority`.
    #[error("Host header disagrees with :authority")]
    Conflicting,
}

impl HostError {
    /// The `x-gatekit-error` value of the refusal.
    pub(crate) const fn kind(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate-host",
            Self::Missing => "missing-host",
            Self::Invalid => "invalid-host",
            Self::Conflicting => "conflicting-host",
        }
    }
}
