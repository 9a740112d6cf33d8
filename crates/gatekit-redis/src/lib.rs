//! Global rate limits: the buckets of a gatekit rate limit kept in Redis, so every
//! replica of a gateway takes from one budget.
//!
//! A [`RedisLimiter`] enforces one [`RateLimitConfig`](gatekit_core::ratelimit::RateLimitConfig)
//! (the same quota, key parts and unkeyed rule as gatekit-core's local
//! [`RateLimiter`](gatekit_core::ratelimit::RateLimiter)) with one atomic round trip per
//! decision: a Lua script (`EVALSHA`, `EVAL`-loaded again after `NOSCRIPT`) running the
//! same GCRA as gatekit-core on Redis's own clock (`TIME`), so replicas with skewed clocks
//! agree. [`GlobalRateLimitLayer`] puts it in a tower stack; when Redis is slow or
//! unreachable each decision falls back, as configured, to allowing the request
//! ([`Fallback::FailOpen`]) or to a local limiter with the same configuration
//! ([`Fallback::Local`]), and goes back to Redis when it answers again. See [`limiter`]
//! for the script, the keys and the failure handling.
//!
//! A [`RedisStore`] is gatekit-core's
//! [`SharedLimitStore`](gatekit_core::ratelimit::SharedLimitStore) on one Redis: given to
//! a route table's `PolicyState`, it decides every limit marked `global` (Envoy
//! Gateway's `type: Global`), all limiters on one connection. The gateway builds it from
//! its settings' `redis:`.
//!
//! Not for: per-process limits (gatekit-core's own `RateLimitLayer` decides in tens of
//! nanoseconds without a network hop), Redis Cluster slot routing (one bucket is one
//! key, so a cluster works, but the connection here is to one server).
//!
//! # The client
//!
//! [`redis`](https://crates.io/crates/redis) (redis-rs, maintained under the Redis
//! organisation): its `ConnectionManager` is one multiplexed connection that reconnects
//! by itself, which is what a hot path wants (no pool checkout per request; every
//! in-flight decision is pipelined on it), and its `Script` does `EVALSHA` with the
//! `NOSCRIPT` fallback. Only `tokio-comp`, `connection-manager` and `script` are enabled.
//! `fred` would also do, with more features built in than gatekit uses.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use gatekit_core::ratelimit::{KeyPart, Quota, RateLimitConfig};
//! use gatekit_core::{Body, BoxError, HandleErrorLayer};
//! use gatekit_redis::{Fallback, GlobalRateLimitLayer, RedisLimiter};
//! use http::{Request, Response};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), gatekit_redis::Error> {
//! let limiter = Arc::new(
//!     RedisLimiter::open(
//!         "redis://127.0.0.1:6379",
//!         RateLimitConfig::new(
//!             "per-ip",
//!             vec![KeyPart::ClientIp],
//!             Quota::new(100, Duration::from_secs(60)),
//!         ),
//!     )?
//!     .with_timeout(Duration::from_millis(20))
//!     .with_fallback(Fallback::Local),
//! );
//! let app = tower::service_fn(|_req: Request<Body>| async {
//!     Ok::<_, BoxError>(Response::new(Body::empty()))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(HandleErrorLayer::new())
//!     .layer(GlobalRateLimitLayer::new(limiter))
//!     .service(app);
//! # let _ = svc;
//! # Ok(())
//! # }
//! ```

mod error;
mod layer;
pub mod limiter;
mod script;
mod service;
mod store;

pub use self::error::{Error, Result};
pub use self::layer::GlobalRateLimitLayer;
pub use self::limiter::{Failover, Fallback, GlobalKey, RedisLimiter};
pub use self::service::{GlobalRateLimit, ResponseFuture};
pub use self::store::{Connections, RedisStore, check_url, redact};
