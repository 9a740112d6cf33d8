//! Request body size limits: 413 for a body larger than a rule allows, without
//! buffering it.
//!
//! # Semantics
//!
//! [`BodyLimit`] checks each request before calling its inner service:
//!
//! - a `Content-Length` larger than the bound (or a body whose size hint says it is
//!   larger) fails the call at once with
//!   [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge): the inner
//!   service is not called, no byte of the body is read and no upstream connection is
//!   opened;
//! - any other body that could pass the bound (chunked, or of unknown length) is wrapped
//!   in a [`LimitedBody`], which passes frames through as they come and, at the frame
//!   that would take the total past the bound, yields a `PayloadTooLarge` error instead
//!   (that frame is not passed on, so the upstream sees at most the bound). The upstream
//!   client then fails the request mid-way: it closes the upstream connection
//!   (HTTP/1.1) or resets the stream (HTTP/2).
//!
//! Either way [`error_response`](crate::error_response) answers **413** with
//! `x-gatekit-error: payload-too-large`. When the inner service fails after the body was
//! cut off, the response future reports `PayloadTooLarge` (the inner error as its cause)
//! whatever the inner error says: gatekit's HTTP/1.1 client reports a request body that
//! failed as an upstream protocol error, and hyper's HTTP/2 client drops the body's error
//! and reports the stream reset it sent. If the upstream answers before it read the whole
//! body, its response stands (it chose not to read the rest).
//!
//! The error is the client's fault ([`Side::Client`](crate::Side::Client)) and never
//! retry-safe: the body is consumed.
//!
//! # Cost
//!
//! No allocation for a request without a body or with a body whose size is known and
//! within the bound (a `Content-Length` body read by hyper): it goes on unwrapped. A
//! body of unknown length (HTTP/1.1 chunked, HTTP/2 without `content-length`) costs two:
//! the counting body is boxed into a gatekit [`Body`](crate::Body), and the flag it
//! shares with the response future is an `Arc`. See `benches/limit.rs`.

mod future;
mod layer;
mod limited;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::BodyLimitLayer;
pub use self::limited::LimitedBody;
pub use self::service::BodyLimit;

#[cfg(test)]
mod tests;
