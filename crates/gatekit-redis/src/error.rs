//! Errors of the Redis backend.

/// Why Redis gave no decision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis command failed: connection, protocol or server error.
    #[error("redis: {0}")]
    Redis(#[source] redis::RedisError),
    /// Redis did not answer within the limiter's deadline.
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The script answered something else than four integers.
    #[error("unexpected answer from the rate-limit script")]
    Answer,
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
