//! Active health checks: HTTP, TCP and gRPC probes run in the background.
//!
//! # Algorithm
//!
//! A [`HealthChecker`] runs one loop per endpoint *address*, so an upstream shared by many
//! routes is checked once, and it follows the upstream's endpoint set
//! ([`update`](HealthChecker::update), [`follow`](HealthChecker::follow)): new addresses
//! get a loop, removed ones lose theirs, unchanged ones keep theirs with their counters.
//! Each loop:
//!
//! 1. waits up to `interval × jitter` before its first check, so a batch of new endpoints
//!    is not checked in one burst;
//! 2. takes a permit from the checker's semaphore (at most
//!    [`max_concurrent_checks`](HealthCheckConfig::max_concurrent_checks) checks in flight
//!    across all endpoints), opens a fresh connection and runs one check bounded by
//!    [`timeout`](HealthCheckConfig::timeout);
//! 3. counts consecutive successes and failures (each resets the other): a healthy
//!    endpoint becomes unhealthy after `unhealthy_threshold` failures, an unhealthy one
//!    healthy after `healthy_threshold` successes, as in Envoy, NGINX and Pingora. The
//!    verdict goes to the endpoint's shared [`EndpointHealth`](crate::EndpointHealth),
//!    which balancers read on every pick, and a [`HealthEvent`] is sent to its [`HealthEvents`];
//! 4. sleeps `interval × (1 ± jitter)` after the check ends and repeats.
//!
//! An endpoint that starts failing therefore leaves the set after about
//! `unhealthy_threshold × (interval + check time)`, and at most one interval later than
//! that (the check in progress when it started failing may still pass).
//!
//! # Check kinds
//!
//! - [`CheckKind::Http`]: a request (method, path, `Host`) over HTTP/1.1 or h2c; the
//!   status must fall in the expected ranges (default 200–399).
//! - [`CheckKind::Tcp`]: the TCP connect must succeed.
//! - [`CheckKind::Grpc`]: `grpc.health.v1.Health/Check` over h2c; the call must end with
//!   `grpc-status: 0` and answer `SERVING`. The two tiny protobuf messages are encoded by
//!   hand; no protobuf crate is needed.
//!
//! Checks use their own short-lived connections, never the request path's pool. TLS
//! checks are not implemented yet.
//!
//! # Trade-offs
//!
//! - Interval is measured from the end of one check to the start of the next (Envoy's
//!   choice): a slow endpoint is not checked more often than its checks complete.
//! - The semaphore is per checker (that is, per upstream). A gateway with many upstreams
//!   bounds its total check rate with their number × the per-checker limit.
//! - [`start_healthy`](HealthCheckConfig::start_healthy) defaults to true, friendlier for
//!   standalone use where discovery already filtered ready endpoints; set it to false for
//!   Envoy's "no traffic until the first check passes".

mod checker;
mod config;
mod error;
mod event;
pub(crate) mod grpc;
mod probe;

pub use self::checker::HealthChecker;
pub use self::config::{CheckKind, GrpcCheck, HealthCheckConfig, HttpCheck};
pub use self::error::CheckError;
pub use self::event::{EndpointHealthSnapshot, HealthEvent, HealthEventKind, HealthEvents};
