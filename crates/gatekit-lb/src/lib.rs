//! gatekit-lb: endpoint sets, balancers, health checking and outlier detection.
//!
//! Turns a stream of endpoint changes ([`gatekit_core::Change`]) into a tower service —
//! the [`Upstream`] — that picks one usable endpoint per request and calls that
//! endpoint's service. No HTTP routing here.
//!
//! ```
//! # async fn run() {
//! use gatekit_core::{Backend, Body, BoxError, Change, Endpoint};
//! use gatekit_lb::{Algorithm, Upstream, UpstreamConfig};
//!
//! // One service per endpoint (in gatekit: core's pooled client for that address).
//! let upstream = Upstream::new(UpstreamConfig::new(Algorithm::LeastRequest), |ep: &Endpoint| {
//!     let addr = ep.addr();
//!     tower::service_fn(move |_req: http::Request<Body>| async move {
//!         Ok::<_, BoxError>(http::Response::new(Body::from(addr.to_string())))
//!     })
//! });
//! upstream.apply(Change::Replace(vec![
//!     Endpoint::new("127.0.0.1:8001".parse().unwrap()),
//!     Endpoint::new("127.0.0.1:8002".parse().unwrap()).with_weight(2),
//! ]));
//! let backend = Backend::new(upstream.clone());
//! let rsp = backend.send(http::Request::new(Body::empty())).await.unwrap();
//! assert!(rsp.status().is_success());
//! # }
//! ```
//!
//! # The endpoint set
//!
//! Changes are applied by an updater (serialised by a lock picks never take) that keeps
//! per-endpoint state by address — the endpoint's service, in-flight count, peak-EWMA
//! latency, [`EndpointHealth`], slow-start clock — and builds an immutable snapshot with
//! every derived table (locality levels, weighted schedules, Maglev tables), swapped in
//! with `arc-swap`. A pick loads the snapshot, does index arithmetic and atomic loads,
//! and allocates nothing. Re-sending the same endpoints changes nothing.
//!
//! Which endpoints a pick considers:
//!
//! - `Ready` endpoints with weight > 0, grouped into locality levels ([`Locality`]); a
//!   level takes `min(100%, available share × 1.4)` of the traffic, the rest spills to the
//!   next level (Envoy's priority load with overprovisioning).
//! - If fewer than the panic threshold (default 50%) of ready endpoints are available,
//!   health is ignored and all ready endpoints share the traffic (Envoy's panic mode).
//! - `Terminating` endpoints (and ready ones of weight 0) only when no ready endpoint is
//!   available; `NotReady` endpoints never.
//! - Nothing usable: the request fails at once with
//!   [`ErrorKind::NoHealthyEndpoint`](gatekit_core::ErrorKind) (503).
//!
//! Each pick checks its candidate's own health atomics, so a newly unhealthy endpoint is
//! avoided at once; the aggregate view (panic mode, level shares, noticing recoveries) is
//! recomputed at most every 10 ms by whichever pick finds it stale
//! ([`UpstreamConfig::with_health_refresh`], [`Upstream::refresh_health`]).
//!
//! # Algorithms
//!
//! Selected by [`Algorithm`] (`"peak-ewma".parse()`):
//!
//! | name | pick | slow start |
//! |------|------|------------|
//! | `round-robin` | one atomic cursor, next usable endpoint | a ramping endpoint is taken with probability = its factor, else the cursor moves on |
//! | `weighted-round-robin` | cursor over a smooth schedule built at update (nginx's smooth WRR: 5,1,1 → `a a b a c a a`) | as round-robin |
//! | `least-request` | fewest in flight per weight: exact scan up to 16 endpoints, power of two choices above | weight × factor |
//! | `peak-ewma` | power of two choices drawn by weight, cost = peak-EWMA latency × (in flight + 1) (tower's `PeakEwma`, kept in atomics) | cost / factor, draws admitted by factor |
//! | `ip-hash` | Maglev table on the client IP | a ramping endpoint takes only the keys whose key fraction is below its factor (stable per key) |
//! | `consistent-hash` | Maglev table on a [`HashKey`] (IP, header, cookie, query); optional bounded load | as ip-hash |
//! | `random` | weighted random | as round-robin |
//!
//! Skipping an unavailable endpoint (or one a retried request already tried, see
//! [Health](#health)): round-robin variants move to the next one, random variants draw
//! again (then scan), hash variants walk the Maglev table (the key's next preference),
//! least-cost variants ignore it.
//!
//! Slow start ([`SlowStart`]) applies to an endpoint that joins a non-empty set, turns
//! from not ready to ready, or becomes available again after being unhealthy or ejected.
//!
//! # Health
//!
//! [`EndpointHealth`] is shared with the active health checker and passive outlier
//! detection (as a [`SharedHealth`]: the endpoint's state, which holds its health
//! inline), which follow the set through [`Upstream::endpoints`] and
//! [`Upstream::subscribe`], and see each request's outcome through an
//! [`OutcomeObserver`].
//!
//! Outlier detection ([`outlier`], [`OutlierDetector`]) ejects an endpoint after a run of
//! consecutive failures, counted by up to three detectors: 5xx responses, gateway errors
//! (502/503/504 and transport failures), and connect failures only (refused,
//! unreachable, TLS handshake, connect timeout; reset by any response). The last one
//! alone, with short ejections that may take one of two endpoints, is
//! [`OutlierConfig::connect_failures_only`](outlier::OutlierConfig::connect_failures_only):
//! the default gatekit's gateway applies to every upstream whose policy does not enable
//! passive health checking. An endpoint that is down then stops getting first attempts
//! after two refused connections, and returns after 5 s (longer if it is ejected again).
//! Panic mode still sends traffic if too few endpoints are left available, so ejection
//! never empties an upstream.
//!
//! ## Retries
//!
//! A request carrying gatekit-core's
//! [`TriedEndpoints`](gatekit_core::retry::TriedEndpoints) (the retry layer puts one in
//! every attempt) avoids the endpoints earlier attempts went to while another usable
//! endpoint exists — each algorithm skips them as it skips an unavailable endpoint,
//! staying among the ready endpoints — and the endpoint picked is recorded in it for the
//! next attempt. When every usable endpoint was tried, the pick is made as usual: a
//! retry to the same endpoint is better than none. A request without the extension pays
//! one extension lookup; a pick still allocates nothing.
//!
//! A request that was not sent comes back in the error, for a retry that keeps no copy
//! (see gatekit-core's [`Error::with_unsent_request`](gatekit_core::Error::with_unsent_request)):
//! when no endpoint is usable, and when the picked endpoint's service hands it back (a
//! refused connect) or fails its readiness with a retry-safe error. The picked endpoint
//! is then recorded in the request's `TriedEndpoints`, inserted if the request had
//! none, so the retry avoids it.
//!
//! ## Sessions
//!
//! A request carrying gatekit-core's [`Sticky`](gatekit_core::session::Sticky) (its
//! session layer puts one in) goes to the endpoint it is pinned to, whatever the
//! algorithm, while that endpoint is in the set, serving (ready or terminating),
//! available (healthy, not ejected) and not tried by an earlier attempt; the pick is
//! counted as any other (in flight, latency, outlier detection). Otherwise the
//! algorithm picks. Either way the picked endpoint's key is reported in the extension.
//! The lookup is a binary search over keys sorted when the set is published.

mod balance;
mod clock;
mod config;
mod entry;
mod error;
mod future;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod health;
mod health_state;
mod layer;
mod observe;
pub mod outlier;
mod snapshot;
mod upstream;

pub use crate::balance::hash::{FNV1A_OFFSET, fnv1a};
pub use crate::config::{Algorithm, HashKey, Locality, SlowStart, UpstreamConfig};
pub use crate::error::ParseAlgorithmError;
pub use crate::future::ResponseFuture;
pub use crate::health::{HealthChecker, HealthEvent, HealthEventKind, HealthEvents};
pub use crate::health_state::{EndpointHealth, SharedHealth};
pub use crate::layer::UpstreamLayer;
pub use crate::observe::{Outcome, OutcomeObserver};
pub use crate::outlier::OutlierDetector;
pub use crate::upstream::{NewEndpoint, Picked, Upstream, WeakUpstream};
