//! gatekit's `BackendPolicy` (`gatekit.io/v1alpha1`): how traffic to a Service is
//! balanced, health-checked, circuit-broken and retry-budgeted, and how long its
//! connections may take to open and stay idle.
//!
//! A policy attaches to Services in its own namespace through `targetRefs` (the
//! Gateway API policy-attachment pattern, GEP-713) and applies to every port of the
//! Service. When several policies target one Service, the oldest (by
//! `creationTimestamp`, then name) wins and the others are reported `Conflicted`.
//!
//! `circuitBreaker` and `retryBudget` land on every route backendRef (HTTPRoute and
//! GRPCRoute rules; not request mirrors, which are fire-and-forget) that resolves to a
//! targeted Service. `connection` (`connectTimeout`, `idleTimeout`) replaces the
//! gateway's client-wide connect and idle timeouts for the Service's connection pool.
//!
//! Durations are Gateway API duration strings (`"5s"`, `"100ms"`). Values are checked by
//! [`BackendPolicySpec::validate`] when the policy is loaded: the loaders refuse a policy
//! that fails it as they refuse a document that does not fit its schema (a load error
//! naming the field; the last good configuration keeps serving), never half applied and
//! never silently dropped (a dropped breaker would be a silent downgrade).
//!
//! The CRD generated from these types is committed as
//! `deploy/crds/gatekit.io_backendpolicies.yaml`; a test checks that it is current.

use std::time::Duration;

use gatekit_core::ConfigError;
use gatekit_core::breaker::CircuitBreakerConfig;
use gatekit_core::retry::RetryBudgetConfig;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration;

/// The spec of a `BackendPolicy`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gatekit.io",
    version = "v1alpha1",
    kind = "BackendPolicy",
    plural = "backendpolicies",
    shortname = "gkbp",
    status = "crate::types::PolicyStatus",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    doc = "A gatekit BackendPolicy: load balancing and health checking for Services."
)]
#[serde(rename_all = "camelCase")]
pub struct BackendPolicySpec {
    /// The Services this policy applies to (in the policy's namespace).
    pub target_refs: Vec<PolicyTargetRef>,
    /// How requests are spread over the Service's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Active and passive health checking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Envoy's circuit-breaker thresholds, per route backendRef to the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// A budget bounding retries to the Service (GEP-3388).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    /// Timeouts of the connections to the Service's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
}

/// A reference to the object a policy applies to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    /// API group of the target; `""` (the core group) for Services.
    #[serde(default)]
    pub group: String,
    /// Kind of the target; only `Service` is supported.
    #[serde(default = "service_kind")]
    pub kind: String,
    /// Name of the target, in the policy's namespace.
    pub name: String,
}

fn service_kind() -> String {
    "Service".to_owned()
}

/// Load-balancing settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// The algorithm; round-robin when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// What the hash-based algorithms (`ip-hash`, `consistent-hash`) hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<HashKey>,
    /// Ramps traffic to new endpoints up over a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<SlowStart>,
    /// Zone-aware routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    /// Percentage (0-100) of healthy endpoints below which health is ignored and every
    /// endpoint is used ("panic mode").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_threshold: Option<u32>,
}

// The CRD's own type (gatekit-k8s does not depend on gatekit-lb): each value maps to
// the `gatekit_lb::Algorithm` of the same name in one exhaustive `match` in
// gatekit-gateway (`wiring/upstreams.rs`). Keep the docs below (the CRD's descriptions)
// in step with that enum's.
/// A balancing algorithm.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// `round-robin`: each usable endpoint in turn; ignores weights.
    RoundRobin,
    /// `weighted-round-robin`: each endpoint in turn, in proportion to its weight, over a
    /// smooth schedule (weights 5,1,1 give `a a b a c a a`, no bursts).
    WeightedRoundRobin,
    /// `least-request`: the fewest outstanding requests per unit of weight; an exact
    /// scan for small endpoint sets, power of two choices for large ones.
    LeastRequest,
    /// `ip-hash`: consistent hashing (Maglev) on the client's IP address.
    IpHash,
    /// `consistent-hash`: consistent hashing (Maglev) on the configured `hashKey`.
    ConsistentHash,
    /// `peak-ewma`: power of two choices on peak-EWMA latency × (outstanding + 1).
    PeakEwma,
    /// `random`: a weighted random pick.
    Random,
}

/// What a hash-based algorithm hashes (a discriminated union on `type`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HashKey {
    /// The source of the key.
    #[serde(rename = "type")]
    pub type_: HashKeyType,
    /// Header, cookie or query parameter name; required unless `type` is `SourceIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The source of a hash key.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKeyType {
    /// The client's IP address.
    #[serde(rename = "SourceIP")]
    SourceIp,
    /// A request header's value.
    Header,
    /// A cookie's value.
    Cookie,
    /// A query parameter's value.
    QueryParameter,
}

/// Slow start: new endpoints get a growing share of traffic over `window`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SlowStart {
    /// The ramp-up window, as a duration string (`"30s"`).
    pub window: String,
}

/// Zone-aware routing settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Locality {
    /// The zone to prefer; the gateway's own zone when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_zone: Option<String>,
    /// Percentage (0-100) of healthy endpoints in the preferred zone below which traffic
    /// fails over to other zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_threshold: Option<u32>,
}

/// Health checking.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Probes sent to every endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheck>,
    /// Outlier detection from real traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthCheck>,
}

/// Active health checking: periodic probes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ActiveHealthCheck {
    /// The probe's protocol.
    #[serde(rename = "type")]
    pub type_: ProbeType,
    /// HTTP path probed (`/` when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP method (`GET` when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Host header of HTTP probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Statuses counted healthy (200-399 when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_statuses: Option<Vec<StatusRange>>,
    /// Time between probes, as a duration string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time a probe may take, as a duration string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Consecutive successes that make an endpoint healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Consecutive failures that make an endpoint unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Service name sent in gRPC health checks (`grpc.health.v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_service: Option<String>,
}

/// The protocol of an active probe.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeType {
    /// An HTTP request; healthy when the status is expected.
    Http,
    /// A TCP connect; healthy when it succeeds.
    Tcp,
    /// A gRPC `grpc.health.v1.Health/Check`; healthy when `SERVING`.
    Grpc,
}

/// An inclusive range of HTTP statuses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StatusRange {
    /// First status of the range.
    pub start: u16,
    /// Last status of the range; `start` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u16>,
}

/// Passive health checking (outlier detection).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PassiveHealthCheck {
    /// Consecutive 5xx responses that eject an endpoint.
    #[serde(
        default,
        rename = "consecutive5xx",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx: Option<u32>,
    /// Consecutive gateway errors (502, 503, 504, connect failures) that eject an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// How long a first ejection lasts (multiplied by the number of ejections), as a
    /// duration string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// Upper bound (0-100) on the share of endpoints ejected at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

/// Circuit-breaker thresholds (Envoy's). Each is at least 1; omitted: no limit.
///
/// Over a request threshold a request fails at once with 503 and an
/// `x-gatekit-breaker` header; the connection thresholds apply to the Service's
/// connection pool.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Most connections open to the Service's endpoints together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Most requests waiting for a parallel-request slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// Most requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u32>,
    /// Most retries in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_retries: Option<u32>,
    /// Requests sent over one connection before it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
}

/// Timeouts of the connections to a Service's endpoints; each replaces the gateway's
/// client-wide setting for this Service. Durations, longer than 0s.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Time a new connection may take to open (TCP connect, plus the TLS handshake
    /// when the Service is reached over TLS), as a duration string (`"2s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// Time a pooled keep-alive connection may stay idle before the gateway closes
    /// it, as a duration string (`"30s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
}

/// A retry budget (GEP-3388's shape): retries may add at most `percent` of the requests
/// seen over `interval`, and at least `minRetryRate` retries are always allowed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Retries as a share of recent requests, 0-100 (20 when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// The window "recent" covers, as a duration string (`"10s"` when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Retries allowed whatever the share (10 per second when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_retry_rate: Option<RetryRate>,
}

/// A rate of retries: `count` per `interval`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetryRate {
    /// Retries per `interval`.
    pub count: u32,
    /// The interval, as a duration string (`"1s"`).
    pub interval: String,
}

// === impl BackendPolicySpec ===

impl BackendPolicySpec {
    /// Checks what the schema cannot: duration strings, percentages, hash keys, status
    /// ranges, circuit-breaker thresholds (at least 1), the retry budget, connection
    /// timeouts (longer than 0s), target kinds.
    /// Field paths use the manifest's spelling (`spec.loadBalancer...`). The loaders call
    /// it and refuse a policy that fails.
    ///
    /// # Errors
    ///
    /// Every problem found, each with its field path.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut dur = |field: &str, value: Option<&str>| {
            if let Some(v) = value
                && let Err(e) = duration::parse(v)
            {
                errors.push(ConfigError::new(field, e.to_string()));
            }
        };
        if let Some(lb) = &self.load_balancer {
            dur(
                "spec.loadBalancer.slowStart.window",
                lb.slow_start.as_ref().map(|s| s.window.as_str()),
            );
        }
        if let Some(active) = self.health_check.as_ref().and_then(|h| h.active.as_ref()) {
            dur(
                "spec.healthCheck.active.interval",
                active.interval.as_deref(),
            );
            dur("spec.healthCheck.active.timeout", active.timeout.as_deref());
        }
        if let Some(passive) = self.health_check.as_ref().and_then(|h| h.passive.as_ref()) {
            dur(
                "spec.healthCheck.passive.baseEjectionTime",
                passive.base_ejection_time.as_deref(),
            );
        }
        let mut percent = |field: &str, value: Option<u32>| {
            if let Some(v) = value
                && v > 100
            {
                errors.push(ConfigError::new(
                    field,
                    format!("{v} is not a percentage (0-100)"),
                ));
            }
        };
        if let Some(lb) = &self.load_balancer {
            percent("spec.loadBalancer.panicThreshold", lb.panic_threshold);
            percent(
                "spec.loadBalancer.locality.failoverThreshold",
                lb.locality.as_ref().and_then(|l| l.failover_threshold),
            );
        }
        percent(
            "spec.healthCheck.passive.maxEjectionPercent",
            self.health_check
                .as_ref()
                .and_then(|h| h.passive.as_ref())
                .and_then(|p| p.max_ejection_percent),
        );
        if let Some(key) = self
            .load_balancer
            .as_ref()
            .and_then(|lb| lb.hash_key.as_ref())
        {
            match (key.type_, &key.name) {
                (HashKeyType::SourceIp, Some(_)) => errors.push(ConfigError::new(
                    "spec.loadBalancer.hashKey.name",
                    "must be omitted when type is SourceIP",
                )),
                (HashKeyType::SourceIp, None) => {}
                (_, Some(n)) if !n.is_empty() => {}
                (t, _) => errors.push(ConfigError::new(
                    "spec.loadBalancer.hashKey.name",
                    format!("is required when type is {t:?}"),
                )),
            }
        }
        if let Some(ranges) = self
            .health_check
            .as_ref()
            .and_then(|h| h.active.as_ref())
            .and_then(|a| a.expected_statuses.as_ref())
        {
            for (i, r) in ranges.iter().enumerate() {
                let end = r.end.unwrap_or(r.start);
                if !(100..=599).contains(&r.start) || !(100..=599).contains(&end) || end < r.start {
                    errors.push(ConfigError::new(
                        format!("spec.healthCheck.active.expectedStatuses[{i}]"),
                        format!(
                            "{}-{end} is not a range of HTTP statuses (100-599)",
                            r.start
                        ),
                    ));
                }
            }
        }
        if let Some(cb) = &self.circuit_breaker {
            for (field, value) in [
                ("maxConnections", cb.max_connections),
                ("maxPendingRequests", cb.max_pending_requests),
                ("maxParallelRequests", cb.max_parallel_requests),
                ("maxParallelRetries", cb.max_parallel_retries),
                ("maxRequestsPerConnection", cb.max_requests_per_connection),
            ] {
                if value == Some(0) {
                    errors.push(ConfigError::new(
                        format!("spec.circuitBreaker.{field}"),
                        "must be at least 1 (omit it for no limit)",
                    ));
                }
            }
        }
        if let Err(e) = self.retry_budget_config() {
            errors.extend(e);
        }
        if let Some(c) = &self.connection {
            errors.extend(c.connect_timeout().err());
            errors.extend(c.idle_timeout().err());
        }
        for (i, t) in self.target_refs.iter().enumerate() {
            if !t.group.is_empty() || t.kind != "Service" {
                errors.push(ConfigError::new(
                    format!("spec.targetRefs[{i}]"),
                    format!(
                        "only core Services can be targeted, not {}/{}",
                        t.group, t.kind
                    ),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The circuit breaker of every route backendRef to a targeted Service.
    pub fn circuit_breaker_config(&self) -> Option<CircuitBreakerConfig> {
        let cb = self.circuit_breaker.as_ref()?;
        let mut out = CircuitBreakerConfig::default();
        out.max_connections = cb.max_connections;
        out.max_pending_requests = cb.max_pending_requests;
        out.max_parallel_requests = cb.max_parallel_requests;
        out.max_parallel_retries = cb.max_parallel_retries;
        out.max_requests_per_connection = cb.max_requests_per_connection;
        Some(out)
    }

    /// The retry budget of every route backendRef to a targeted Service: the defaults
    /// of [`RetryBudgetConfig`] where a field is omitted; `minRetryRate` becomes retries
    /// per second (`count` / `interval`), rounded up so that a non-zero rate stays
    /// non-zero.
    ///
    /// # Errors
    ///
    /// A percentage above 100, a bad or zero duration, each with its field path.
    pub fn retry_budget_config(&self) -> Result<Option<RetryBudgetConfig>, Vec<ConfigError>> {
        let Some(b) = &self.retry_budget else {
            return Ok(None);
        };
        b.config("spec.retryBudget", "spec.retryBudget.minRetryRate")
            .map(Some)
    }
}

// === impl RetryBudget ===

impl RetryBudget {
    /// The budget as gatekit-core configures it: the defaults of [`RetryBudgetConfig`]
    /// where a field is omitted; `minRetryRate` becomes retries per second (`count` /
    /// `interval`), rounded up so that a non-zero rate stays non-zero. `at` is the
    /// field path of `percent` and `interval`, `rate_at` that of `minRetryRate`.
    ///
    /// # Errors
    ///
    /// A percentage above 100, a bad or zero duration, each with its field path.
    pub fn config(&self, at: &str, rate_at: &str) -> Result<RetryBudgetConfig, Vec<ConfigError>> {
        let b = self;
        let mut errors = Vec::new();
        let mut out = RetryBudgetConfig::default();
        if let Some(p) = b.percent {
            if p > 100 {
                errors.push(ConfigError::new(
                    format!("{at}.percent"),
                    format!("{p} is not a percentage (0-100)"),
                ));
            }
            out.percent = f64::from(p);
        }
        let positive =
            |field: &str, v: &str, errors: &mut Vec<ConfigError>| match duration::parse(v) {
                Ok(d) if d.is_zero() => {
                    errors.push(ConfigError::new(field, "must be longer than 0s"));
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(ConfigError::new(field, e.to_string()));
                    None
                }
            };
        if let Some(i) = &b.interval
            && let Some(d) = positive(&format!("{at}.interval"), i, &mut errors)
        {
            out.interval = d;
        }
        if let Some(rate) = &b.min_retry_rate
            && let Some(d) = positive(&format!("{rate_at}.interval"), &rate.interval, &mut errors)
        {
            let per_second = (f64::from(rate.count) / d.as_secs_f64()).ceil();
            // `as` saturates; a count is at most u32::MAX per at least 1 ms.
            out.min_retries_per_second = per_second as u32;
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

/// `value` of `field`, a duration string that must be longer than 0s.
fn positive_duration(field: &str, value: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = value else {
        return Ok(None);
    };
    match duration::parse(v) {
        Ok(d) if d.is_zero() => Err(ConfigError::new(field, "must be longer than 0s")),
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(ConfigError::new(field, e.to_string())),
    }
}

// === typed accessors for duration strings ===

impl Connection {
    /// The connect timeout, if set.
    ///
    /// # Errors
    ///
    /// When the string is not a Gateway API duration or is 0s (naming
    /// `spec.connection.connectTimeout`).
    pub fn connect_timeout(&self) -> Result<Option<Duration>, ConfigError> {
        positive_duration(
            "spec.connection.connectTimeout",
            self.connect_timeout.as_deref(),
        )
    }

    /// The idle timeout, if set.
    ///
    /// # Errors
    ///
    /// When the string is not a Gateway API duration or is 0s (naming
    /// `spec.connection.idleTimeout`).
    pub fn idle_timeout(&self) -> Result<Option<Duration>, ConfigError> {
        positive_duration("spec.connection.idleTimeout", self.idle_timeout.as_deref())
    }
}

impl SlowStart {
    /// The window as a [`Duration`].
    ///
    /// # Errors
    ///
    /// When the string is not a Gateway API duration.
    pub fn window(&self) -> Result<Duration, duration::DurationError> {
        duration::parse(&self.window)
    }
}

impl ActiveHealthCheck {
    /// The probe interval, if set.
    ///
    /// # Errors
    ///
    /// When the string is not a Gateway API duration.
    pub fn interval(&self) -> Result<Option<Duration>, duration::DurationError> {
        self.interval.as_deref().map(duration::parse).transpose()
    }

    /// The probe timeout, if set.
    ///
    /// # Errors
    ///
    /// When the string is not a Gateway API duration.
    pub fn timeout(&self) -> Result<Option<Duration>, duration::DurationError> {
        self.timeout.as_deref().map(duration::parse).transpose()
    }
}

impl PassiveHealthCheck {
    /// The base ejection time, if set.
    ///
    /// # Errors
    ///
    /// When the string is not a Gateway API duration.
    pub fn base_ejection_time(&self) -> Result<Option<Duration>, duration::DurationError> {
        self.base_ejection_time
            .as_deref()
            .map(duration::parse)
            .transpose()
    }
}

/// The `BackendPolicy` CustomResourceDefinition as YAML, exactly as committed in
/// `deploy/crds/gatekit.io_backendpolicies.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = BackendPolicy::crd();
    let body = serde_norway::to_string(&crd).unwrap_or_else(|e| format!("# error: {e}\n"));
    format!(
        "# Generated from gatekit_k8s::types::policy::BackendPolicySpec; do not edit.\n\
         # Regenerate: GATEKIT_BLESS=1 cargo test -p gatekit-k8s --test crd\n{body}"
    )
}
