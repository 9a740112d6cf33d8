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
