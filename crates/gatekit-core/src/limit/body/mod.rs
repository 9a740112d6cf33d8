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
//!   client then fails the request, closing its upstream connection mid-request.
//!
//! Either way [`error_response`](crate::error_response) answers **413** with
//! `x-gatekit-error: payload-too-large`. When the inner service reports the cut-off
//! body as an error of its own that merely has the body's error among its causes (as
//! gatekit's upstream client does, as an upstream protocol error), the response future
//! puts `PayloadTooLarge` back on top, so the status is still 413. If the upstream
//! answers before it read the whole body, its response stands (it chose not to read the
//! rest).
//!
//! The error is the client's fault ([`Side::Client`](crate::Side::Client)) and never
//! retry-safe: the body is consumed.
//!
//! # Cost
//!
//! No allocation for a request without a body or with a body whose size is known and
//! within the bound (a `Content-Length` body read by hyper): it goes on unwrapped. A
//! body of unknown length (HTTP/1.1 chunked, HTTP/2 without `content-length`) is boxed
//! once with its counter, into a gatekit [`Body`](crate::Body). See
//! `benches/limit.rs`.

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
