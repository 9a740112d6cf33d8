//! Per-rule timeouts (Gateway API HTTPRoute `timeouts`, GEP-1742) as a tower layer.
//!
//! [`Timeout`] bounds the time from its `call` until its inner service's response future
//! resolves, that is until the **response head**: the body streams afterwards unbounded
//! (as Envoy's route timeout and the Gateway API's own wording, "the timeout for the
//! gateway to respond to an HTTP request", have it). When the deadline passes first the
//! inner future is **dropped**, which cancels the request: gatekit's upstream client
//! closes an HTTP/1 connection with a request in flight (it never goes back to the
//! pool) and resets an HTTP/2 stream, so the backend sees the request abandoned. The
//! error is a [`crate::Error`] whose [`ErrorKind`](crate::ErrorKind) names the timeout:
//!
//! | layer | HTTPRoute field | kind | `x-gatekit-error` |
//! |---|---|---|---|
//! | [`TimeoutLayer::request`] | `timeouts.request` | `RequestTimeout` | `request-timeout` |
//! | [`TimeoutLayer::backend_request`] | `timeouts.backendRequest` | `BackendRequestTimeout` | `backend-request-timeout` |
//!
//! Both answer 504 once [`error_response`](crate::error_response) turns them into a
//! response. In a rule's stack the request timeout is outermost (it also covers the
//! filters and the backend choice) and the backend request timeout wraps the call to the
//! chosen backend: one attempt. Without a duration the layer is inert: no timer is armed.
//!
//! The clock is tokio's ([`tokio::time::sleep`]), so tests can pause and advance it. The
//! timer lives inside the response future: no allocation per request.

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::TimeoutLayer;
pub use self::service::Timeout;

#[cfg(test)]
mod tests;
