//! Circuit breakers with Envoy's thresholds, as a tower layer.
//!
//! Tower has no circuit breaker. This one is Envoy's kind: not a failure-rate switch
//! (that is outlier detection, in `gatekit-lb`), but limits on how much concurrent work
//! one backend may be given, so a slow backend cannot tie up the whole gateway. Each
//! threshold is a counter; a request over one fails **at once** (no waiting, no I/O) with
//! [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen): a 503 with
//! `x-gatekit-error: circuit-open`, `x-gatekit-breaker: <name>` and
//! `x-gatekit-breaker-threshold: <threshold>` once
//! [`error_response`](crate::error_response) turns it into a response. The error is not
//! retry-safe: retrying into a tripped breaker is what breakers exist to stop.
//!
//! # Thresholds
//!
//! | Envoy (`circuit_breakers.thresholds`) | Envoy Gateway (`circuitBreaker`) | [`CircuitBreakerConfig`] | enforced by | threshold header |
//! |---|---|---|---|---|
//! | `max_requests` | `maxParallelRequests` | `max_parallel_requests` | [`Breaker`] | `max-parallel-requests` |
//! | `max_pending_requests` | `maxPendingRequests` | `max_pending_requests` | [`Breaker`] (queue) | `max-pending-requests` |
//! | `max_retries` | `maxParallelRetries` | `max_parallel_retries` | [`Breaker`] ([`Attempt`](crate::retry::Attempt)) | `max-parallel-retries` |
//! | `max_connections` | `maxConnections` | `max_connections` | the upstream client's [`ConnectionCap`](crate::client::ConnectionCap) | `max-connections` |
//! | `max_requests_per_connection` | `maxRequestsPerConnection` | `max_requests_per_connection` | the upstream client's [`PoolLimits`](crate::client::PoolLimits) | (none: the connection is retired, nothing fails) |
//!
//! The connection thresholds live in the connection pool because only the pool knows
//! connections: see [`PoolLimits::from_config`](crate::client::PoolLimits::from_config).
//!
//! # Semantics
//!
//! - **Parallel requests.** A request holds a slot from `call` until its response
//!   **body** ends, as Envoy counts a stream until it ends: a long download keeps
//!   counting. The slot is given back at the body's last frame, on a body error, when
//!   the body (or the response, or the response future) is dropped, and when the inner
//!   service fails. A response whose body is already at its end (`204`, `HEAD`, an
//!   empty body, a `101` whose upgraded connection then lives on uncounted) gives it
//!   back with the head.
//! - **Pending requests.** With `max_parallel_requests` reached, up to
//!   `max_pending_requests` requests wait, first come first served; each freed slot is
//!   handed to the oldest waiter, so newcomers do not overtake the queue. Waiting is
//!   bounded by the rule's request timeout around the breaker: dropping a waiting future
//!   leaves the queue. Past the queue's bound a request fails with
//!   `max-pending-requests`. **`None` means no queue**: over `max_parallel_requests` a
//!   request fails at once with `max-parallel-requests` (Envoy's default is a queue of
//!   1024; gatekit's is to shed at once, so an overloaded backend is reported, not
//!   hidden behind queueing delay). Without a parallel limit nothing ever waits.
//! - **Parallel retries.** A request whose [`Attempt`](crate::retry::Attempt)
//!   extension says it is a retry also takes a retry slot, checked first (a retry over
//!   `max_parallel_retries` never queues), held as long as its parallel slot.
//! - `None` for the other thresholds means no limit; `Some(0)` refuses everything.
//!
//! A [`CircuitBreaker`] is the shared state: one per guarded backendRef, kept across
//! reloads (thresholds change in place with [`CircuitBreaker::set_config`]), read for
//! metrics through [`CircuitBreaker::stats`] and [`CircuitBreaker::is_open`].
//!
//! # Cost
//!
//! A request that passes takes no lock: one `Arc` increment, one compare-and-swap to
//! take its slot and one atomic subtraction to give it back (two more for a retry),
//! plus a lookup of the `Attempt` extension. A response whose body is still streaming
//! gets a wrapping body, which [`Body`](crate::Body) boxes: one allocation. The queue's
//! mutex is taken only while requests wait. `benches/breaker.rs` measures it.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use gatekit_core::breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
//! use gatekit_core::{Body, BoxError};
//! use tower::{Layer, ServiceExt};
//!
//! # async fn run() -> Result<(), BoxError> {
//! let mut config = CircuitBreakerConfig::default();
//! config.max_parallel_requests = Some(64);
//! config.max_pending_requests = Some(16);
//! let breaker = Arc::new(CircuitBreaker::new("default/web/rule-0/api", config));
//!
//! let backend = tower::service_fn(|_req: http::Request<Body>| async {
//!     Ok::<_, BoxError>(http::Response::new(Body::from("ok")))
//! });
//! let svc = CircuitBreakerLayer::new(breaker.clone()).layer(backend);
//! let rsp = svc.oneshot(http::Request::new(Body::empty())).await?;
//! assert_eq!(rsp.status(), 200);
//! assert!(!breaker.is_open());
//! # Ok(()) }
//! ```

mod body;
mod config;
mod error;
mod future;
mod layer;
mod service;
mod state;

pub use self::config::CircuitBreakerConfig;
pub use self::error::{BREAKER_HEADER, THRESHOLD_HEADER, Threshold};
#[allow(unused_imports)] // used by the client (next commit)
pub(crate) use self::error::{header_value, open_error};
pub use self::future::ResponseFuture;
pub use self::layer::CircuitBreakerLayer;
pub use self::service::Breaker;
pub use self::state::{BreakerStats, CircuitBreaker};

#[cfg(test)]
mod tests;
