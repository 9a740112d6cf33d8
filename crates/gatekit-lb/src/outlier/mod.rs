//! Passive health checking (outlier detection): eject endpoints whose real traffic fails.
//!
//! # Algorithm
//!
//! Envoy's consecutive-failure detectors. The request path reports every request's
//! [`Outcome`](crate::Outcome) to the [`OutlierDetector`] (it is an
//! [`OutcomeObserver`](crate::OutcomeObserver)), which keeps three counters per
//! endpoint, as atomics in its [`EndpointHealth`](crate::EndpointHealth):
//!
//! - *consecutive 5xx*: any 5xx status, and transport failures (connect failure,
//!   timeout, reset / protocol error: Envoy maps them to 503/504). Reset by any non-5xx
//!   answer.
//! - *consecutive gateway errors*: 502, 503, 504 and the same transport failures. Reset by
//!   any answer that is not a gateway error (a 500 included).
//! - *consecutive connect failures*: outcomes of kind
//!   [`ErrorKind::Connect`](gatekit_core::ErrorKind::Connect) only (refused, unreachable,
//!   TLS handshake failed; gatekit's client reports a connect timeout so too). Reset by
//!   any response, 5xx included; a timeout or reset after sending neither counts nor
//!   resets. Envoy's `consecutive_local_origin_failure` with split external and
//!   local-origin errors: whether the endpoint can be reached, not what it answers.
//!   Off by default; [`OutlierConfig::connect_failures_only`] turns it on alone, as
//!   gatekit's gateway does for upstreams without a passive health policy.
//!
//! Gateway-side refusals (overload, open circuit, rate limit, no route) are not the
//! endpoint's fault and count for nothing. When any counter reaches its threshold the
//! endpoint is ejected for `base_ejection_time × n` (its n-th ejection), capped at
//! `max_ejection_time`, unless that would eject more than `max_ejection_percent` of the
//! set: Envoy's rule `(ejected + 1) / total ≤ percent`, so with the default 10% an
//! upstream needs at least 10 endpoints for any ejection, unless `always_eject_one` lets
//! one endpoint go whatever the percentage. A refused ejection is retried on the
//! endpoint's next failure.
//!
//! Ejection is a deadline in [`EndpointHealth`](crate::EndpointHealth), so the endpoint
//! is back in the balancer's set the moment it passes, with no task on the request path.
//! A per-ejection timer notices the return, sends
//! [`Returned`](crate::HealthEventKind::Returned) and resets the counters; after
//! `max_ejection_time` without a new ejection the multiplier resets too (a simplification
//! of Envoy's one-step-per-interval decay).
//!
//! # Cost
//!
//! Per outcome: one clock read, a load of the ejection deadline, and one to three atomic
//! increments (a success with zero counters does loads only). A lock is taken only to
//! eject, on a return and on an endpoint-set update.

mod config;
mod detector;

pub use self::config::OutlierConfig;
pub use self::detector::OutlierDetector;
