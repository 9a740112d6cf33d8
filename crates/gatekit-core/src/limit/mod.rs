//! Per-rule request limits as tower layers: load shedding ([`ConcurrencyLimit`]) and
//! request body size ([`BodyLimit`]), configured by a rule's [`RequestLimits`].
//!
//! | layer | refuses | when | status | `x-gatekit-error` |
//! |---|---|---|---|---|
//! | [`ConcurrencyLimitLayer`] | a request beyond `max` in flight | at the call, ready at once (no queue) | 503 | `overloaded` |
//! | [`BodyLimitLayer`] | a `Content-Length` over the bound | at the call; the inner service is not called | 413 | `payload-too-large` |
//! | [`BodyLimitLayer`] | a streamed body passing the bound | at the frame that passes it (nothing buffered) | 413 | `payload-too-large` |
//!
//! Both fail with a [`crate::Error`] ([`ErrorKind::Overloaded`](crate::ErrorKind::Overloaded),
//! [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge)) and leave the
//! response to [`error_response`](crate::error_response), like every gatekit layer.
//! Overload is the gateway's refusal ([`Side::Gateway`](crate::Side::Gateway)); a body
//! too large is the client's ([`Side::Client`](crate::Side::Client)); neither is
//! retry-safe by default.
//!
//! In a rule's stack they are the outermost layers after the rate limit: rate limit →
//! concurrency limit → body limit → request timeout → ... A request the rate limit
//! refuses takes no concurrency slot; a body refused by its `Content-Length` takes one
//! only for the instant of the check.
//!
//! A request counts against its [`InFlightLimit`] until its response body ends (see
//! [`concurrency`] for the exact rules); the body limit counts request body bytes as
//! they stream (see [`body`]).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use gatekit_core::limit::{BodyLimitLayer, ConcurrencyLimitLayer, InFlightLimit};
//! use gatekit_core::{Body, BoxError, HandleErrorLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // Kept across reloads by whoever owns the rule (keyed by route and rule).
//! let in_flight = Arc::new(InFlightLimit::new(100));
//! let backend = tower::service_fn(|_req: Request<Body>| async {
//!     Ok::<_, BoxError>(Response::new(Body::from("ok")))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(HandleErrorLayer::new()) // errors become responses (a Router does this)
//!     .layer(ConcurrencyLimitLayer::new(in_flight.clone()))
//!     .layer(BodyLimitLayer::new(1024 * 1024))
//!     .service(backend);
//!
//! let too_large = Request::post("/upload")
//!     .header("content-length", "2000000")
//!     .body(Body::empty())?;
//! let rsp = svc.clone().oneshot(too_large).await?;
//! assert_eq!(rsp.status(), 413);
//! assert_eq!(rsp.headers()["x-gatekit-error"], "payload-too-large");
//!
//! let rsp = svc.clone().oneshot(Request::get("/").body(Body::empty())?).await?;
//! assert_eq!(rsp.status(), 200);
//! // The response body still streams: the request is in flight until it ends.
//! assert_eq!(in_flight.in_flight(), 1);
//! drop(rsp);
//! assert_eq!(in_flight.in_flight(), 0);
//! # Ok(()) }
//! ```

pub mod body;
pub mod concurrency;
mod config;

pub use self::body::{BodyLimit, BodyLimitLayer};
pub use self::concurrency::{ConcurrencyLimit, ConcurrencyLimitLayer, InFlightLimit};
pub use self::config::RequestLimits;
