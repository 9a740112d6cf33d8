//! Why a health check failed.

use http::StatusCode;

/// Why one health check failed. Its `Display` is what snapshots and events show as the
/// reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The TCP connection could not be made.
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The TLS handshake failed (over the upstream's transport: its certificate did
    /// not verify, or the connection broke during the handshake).
    #[error("tls: {0}")]
    Tls(#[source] Box<gatekit_core::Error>),
    /// The check did not finish within the configured timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The HTTP exchange failed (handshake, reset, connection closed).
    #[error("http: {0}")]
    Http(#[source] hyper::Error),
    /// The request could not be built (for example an invalid host or path).
    #[error("invalid check request: {0}")]
    Request(#[source] http::Error),
    /// The response status is outside the expected ranges.
    #[error("unexpected status {0}")]
    Status(StatusCode),
    /// The gRPC call failed with this `grpc-status` (0 is OK).
    #[error("grpc-status {0}")]
    GrpcStatus(String),
    /// The gRPC health service answered a status other than `SERVING`.
    #[error("grpc health status {0} (not SERVING)")]
    NotServing(u64),
    /// The gRPC response could not be decoded.
    #[error("malformed grpc response: {0}")]
    Malformed(&'static str),
}
