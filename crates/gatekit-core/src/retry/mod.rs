//! Retries (Gateway API HTTPRoute `retry`, GEP-1731) as a tower layer.
//!
//! [`RetryLayer`] wraps a service in [`Retry`]: when an attempt fails in a way the
//! [`RetryPolicy`] names, the request is sent again, at most
//! [`attempts`](RetryPolicy::attempts) more times, after a backoff, and only while an
//! optional [`RetryBudget`] allows. Unlike tower's `Retry` it replays streamed request
//! bodies (tower#790) and charges a budget shared per backend. It is usable alone around
//! any `Service<Request<Body>, Response = Response<Body>>` that is `Clone`.
//!
//! In a rule's stack it sits per backendRef, between the weighted choice and the
//! per-attempt timeout: `Weighted` → `Retry` → `Timeout` (`timeouts.backendRequest`) →
//! circuit breaker → the balanced upstream. The gateway's default retry of unsent
//! requests, for a rule of one backendRef without filters, session or budget, sits
//! just above the weighted choice instead (`Retry` → `Weighted` → ...): the retry goes
//! to the same backendRef, and the rule needs no layer per backendRef. Each attempt is bounded by the per-attempt
//! timeout (whose expiry is retriable, see below); the whole-request
//! [`Timeout`](crate::timeout::Timeout) above drops this layer's future at its deadline,
//! so retries and their backoffs stay within `timeouts.request`. Dropping the future,
//! in an attempt or in a backoff, sends nothing more and releases the kept body.
//!
//! # Attempts
//!
//! The first attempt is the request itself; a retry is the same request rebuilt from a
//! copy of its head (method, URI, version, headers and extensions, which are `Clone` in
//! `http` 1.x) and a replay of its body. Every attempt carries, in its extensions, an
//! [`Attempt`] (1 for the first, 2 for the first retry, ...) and a handle on one
//! [`TriedEndpoints`] shared by all of them, where a balancer records the endpoint it
//! picked so a retry goes elsewhere. Before each retry the kept clone of the inner
//! service is driven to readiness again.
//!
//! A policy that retries only requests that never left keeps no copy at all: see
//! [below](#requests-that-never-left-no-copy).
//!
//! # What is retried
//!
//! An error is classified with [`crate::classify`] (the first gatekit
//! [`Error`](crate::Error) in its cause chain decides; foreign timeouts and refusals are
//! recognised; any other error counts as [`UpstreamProtocol`](crate::ErrorKind::UpstreamProtocol)),
//! and "unsent" means [`Error::is_retry_safe`](crate::Error::is_retry_safe): the
//! request cannot have reached the backend.
//!
//! | [`RetryOn`] field | Envoy `retry_on` | retried failed attempts |
//! |---|---|---|
//! | `unsent` | — | errors marked retry-safe: connect refused or timed out, no healthy endpoint, an HTTP/2 stream refused before processing; any method |
//! | `connect_failure` | `connect-failure` | [`Connect`](crate::ErrorKind::Connect) errors |
//! | `reset` | `reset` | [`UpstreamProtocol`](crate::ErrorKind::UpstreamProtocol) errors: a reset, a closed connection, a malformed response |
//! | `timeout` | — | [`BackendRequestTimeout`](crate::ErrorKind::BackendRequestTimeout) (the per-attempt timeout) and [`Timeout`](crate::ErrorKind::Timeout) errors |
//! | `server_error` | `5xx` | any 5xx response, and every error of the four rows above |
//! | `gateway_error` | `gateway-error` | 502, 503 and 504 responses, and every error of the four rows above |
//! | `statuses` | `retriable-status-codes` | responses whose status is listed (Gateway API `codes`) |
//! | `grpc` | `retriable-status-codes` for gRPC | responses whose head carries a listed `grpc-status` (trailers-only gRPC responses) |
//!
//! Never retried, whatever the policy says and even when marked retry-safe:
//!
//! | error kind | why |
//! |---|---|
//! | [`RequestTimeout`](crate::ErrorKind::RequestTimeout) | the whole request's deadline: nothing is left to retry in |
//! | [`BadRequest`](crate::ErrorKind::BadRequest), [`PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge), [`RateLimited`](crate::ErrorKind::RateLimited), [`NoRoute`](crate::ErrorKind::NoRoute) | the client's fault: the same request fails again |
//! | [`CircuitOpen`](crate::ErrorKind::CircuitOpen), [`Overloaded`](crate::ErrorKind::Overloaded), [`InvalidBackend`](crate::ErrorKind::InvalidBackend) | gateway refusals (our own breaker, concurrency limit, configuration): retrying would defeat them |
//!
//! That is: only errors of the upstream [`Side`](crate::Side) are ever retried. gatekit's
//! own layers refuse with errors, which become responses only at the top of the stack
//! ([`error_response`](crate::error_response)); a *response* is judged by its status
//! and `grpc-status` alone, as the backend's.
//!
//! # Request bodies
//!
//! A body already at its end (`is_end_stream`: GETs, empty POSTs) needs nothing kept: a
//! retry sends an empty body. Any other body is teed: the first attempt streams it
//! through as it arrives (nothing waits for the body to be buffered, so a bidirectional
//! gRPC stream flows) while a copy of its frames (reference-counted `Bytes`, not copied
//! bytes) and trailers is kept up to [`max_replay_body`](RetryPolicy::max_replay_body)
//! bytes. A retry replays the kept frames, then continues with the rest of the original
//! body that no attempt has read yet, then the trailers; its size hint is exact when
//! the original's was. A body that grows past the bound frees the copy and is never
//! retried (never a truncated retry): the attempt that read it goes on streaming it,
//! and a retriable failure is returned as it is (counted in
//! [`RetryStats::replay_overflow`]). A body whose size hint is already over the bound is
//! not copied at all but can still be retried while none of it was read (a request
//! that never reached a backend). The copy is also freed as soon as this layer's future
//! completes, so a long stream whose response came back stops being copied. An earlier
//! attempt's body still held somewhere (a connection finishing an upload) is superseded
//! when a retry starts: reading it fails.
//!
//! # Backoff and `Retry-After`
//!
//! Retry `n` (from 1) waits a uniformly random time in
//! `[base, min(max, base × 2^(n-1))]` ([`Backoff`]) on tokio's clock. A retriable 429 or
//! 503 response with a `Retry-After` (delta-seconds or an HTTP-date) makes the wait
//! `max(backoff, Retry-After)` when `Retry-After` is at most
//! [`max_retry_after`](RetryPolicy::max_retry_after); a longer one ends the exchange
//! with that response at once. A retried response is dropped, with its body.
//!
//! # Budget
//!
//! With a [`RetryBudget`], every first attempt deposits and every retry withdraws; a
//! retry is sent while the retries over the budget's window stay under
//! `max(percent% of the requests, min_retries_per_second × window)`. Share one budget
//! (an `Arc`) between every layer that sends to the same backend. When it is spent the
//! last failure is returned as it is (counted in [`RetryStats::budget_exhausted`]). A
//! retry is charged when it is decided, before its backoff: one whose exchange is
//! dropped during the backoff still counts against the budget.
//!
//! # Giving up
//!
//! Whenever no retry is sent (not retriable, attempts used up, body not replayable,
//! `Retry-After` too long, budget spent), the outcome of the last attempt is returned
//! unchanged: the response with its body, or the error. Once a retry is decided (the
//! budget charged, the failed response dropped) the next outcome is that retry's; if
//! the inner service fails its readiness before it, that error is returned.
//! [`RetryStats`] counts attempts, retries, and the budget and replay refusals.
//!
//! # Requests that never left: no copy
//!
//! When the policy's classes are only [`unsent`](RetryOn::unsent) and
//! [`connect_failure`](RetryOn::connect_failure) ([`RetryOn::needs_copy`] is false, as
//! for gatekit's default [`RetryPolicy::unsent_once`]), every failure it retries happened
//! before any byte of the request was sent, and the layer below that failed it still
//! holds the request. So nothing is kept: the first attempt is the request as it came
//! (no head copy, no body tee, no `Attempt` or `TriedEndpoints` added), and a failed
//! attempt's error hands the request back ([`Error::with_unsent_request`](crate::Error::with_unsent_request)).
//! A retriable error is retried by taking that request out
//! ([`take_unsent_request`](crate::take_unsent_request), which looks through wrappers
//! in the cause chain) and sending it again with its next [`Attempt`]. gatekit's client
//! hands back every request it could not connect for (refused, timed out, TLS
//! handshake) and those a pooled connection gave back unwritten; gatekit-lb's
//! `Upstream` hands back a request it found no healthy endpoint for, and records the
//! endpoint a handed-back request failed on in its `TriedEndpoints` (inserting one), so
//! the retry goes elsewhere.
//!
//! A retriable error that does not carry the request is returned as it is and counted
//! in [`RetryStats::unreturned`]: a layer that fails requests unsent without handing
//! them back, or an HTTP/2 stream refused (`REFUSED_STREAM`, a `GOAWAY`) after hyper took
//! the request, which the copying path would have retried. Everything else is as
//! above: classification, attempts, the budget (charged only when the request is there
//! to resend; when it refuses, the error goes back with the request still in it),
//! the backoff. [`RetryPolicy::unsent_once`] has none: a connect failure cost the
//! backend nothing, and the retry goes to another endpoint at once.
//!
//! # Cost
//!
//! The response future is a hand-written state machine (the backoff timer inline): no
//! box of its own. Per request, when the policy allows retries and needs a copy: one
//! clone of the inner service and of the request head, one `TriedEndpoints`, and for a
//! body that is not empty the shared replay state and its box as a
//! [`Body`](crate::Body) (8 to 10 allocations, about 200 ns). Without a copy: one clone
//! of the inner service and an `Arc` increment, no allocation; a retry boxes the request
//! handed back while it waits. A policy with `attempts: 0` makes the layer a
//! pass-through: it counts the attempt and deposits into the budget, nothing else (no
//! `Attempt` or `TriedEndpoints` either). Measured in `benches/retry.rs`.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! use gatekit_core::retry::{RetryBudget, RetryBudgetConfig, RetryLayer, RetryOn, RetryPolicy};
//! use gatekit_core::{Body, BoxError};
//! use http::{Request, Response, StatusCode};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // A backend that answers 503 to the first attempt.
//! let calls = Arc::new(AtomicU32::new(0));
//! let backend = tower::service_fn({
//!     let calls = calls.clone();
//!     move |_req: Request<Body>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let mut rsp = Response::new(Body::empty());
//!             if n == 0 {
//!                 *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
//!             }
//!             Ok::<_, BoxError>(rsp)
//!         }
//!     }
//! });
//!
//! // Two retries of 502/503/504 and of failures before a response.
//! let mut on = RetryOn::default();
//! on.gateway_error = true;
//! let policy = Arc::new(RetryPolicy::new(2, on));
//! let budget = Arc::new(RetryBudget::new(RetryBudgetConfig::default()));
//! let layer = RetryLayer::new(policy, Some(budget));
//!
//! let req = Request::post("http://backend/items").body(Body::from("{\"id\":1}"))?;
//! let rsp = layer.layer(backend).oneshot(req).await?;
//! assert_eq!(rsp.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! assert_eq!(layer.stats().retries(), 1);
//! # Ok(()) }
//! ```

mod attempt;
mod body;
mod budget;
mod classify;
mod config;
mod future;
mod layer;
mod service;
mod stats;

pub use self::attempt::{Attempt, TriedEndpoints};
pub use self::budget::RetryBudget;
pub use self::config::{Backoff, RetryBudgetConfig, RetryOn, RetryPolicy};
pub use self::future::ResponseFuture;
pub use self::layer::RetryLayer;
pub use self::service::Retry;
pub use self::stats::RetryStats;

#[cfg(test)]
mod tests;
