//! gatekit's `TrafficPolicy` (`gatekit.io/v1alpha1`): retries, rate limits and request
//! limits for the traffic a Gateway, a listener, a route or a route rule takes.
//!
//! A policy attaches through `targetRefs` (GEP-713 policy attachment) to objects in its
//! own namespace: a `Gateway` (with `sectionName`, one of its listeners), an `HTTPRoute`
//! or a `GRPCRoute` (with `sectionName`, the rule of that `name`). For each route rule
//! the policies that reach it are merged field by field (`retry`, `rateLimit`,
//! `limits.maxConcurrentRequests`, `limits.maxRequestBodyBytes`), the more specific
//! target winning: Gateway < listener < route < rule; an HTTPRoute rule's own `retry`
//! beats them all. See the translation (`translate` module docs) for conflicts and
//! statuses.
//!
//! Values are checked by [`TrafficPolicySpec::validate`]. The loaders refuse a policy
//! that fails it as they refuse a document that does not fit its schema (a load error
//! naming the field, the last good configuration keeps serving): a rate limit that is
//! silently dropped would be a security downgrade.
//!
//! The CRD generated from these types is committed as
//! `deploy/crds/gatekit.io_trafficpolicies.yaml`; a test checks that it is current.

use std::time::Duration;

use gatekit_core::ConfigError;
use gatekit_core::ratelimit::{KeyPart, Quota, RateLimitConfig, Unkeyed};
use gatekit_core::retry::{Backoff, RetryOn, RetryPolicy};
use http::{HeaderName, StatusCode};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration;
use crate::types::GATEWAY_GROUP;

/// Retries a retry policy makes when it does not say (`attempts` unset): 2, Envoy
/// Gateway's default.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;

/// The spec of a `TrafficPolicy`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gatekit.io",
    version = "v1alpha1",
    kind = "TrafficPolicy",
    plural = "trafficpolicies",
    shortname = "gktp",
    status = "crate::types::PolicyStatus",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    doc = "A gatekit TrafficPolicy: retries, rate limits and request limits for Gateways, listeners, routes and route rules."
)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    /// The Gateways, listeners, routes or route rules this policy applies to (in the
    /// policy's namespace).
    pub target_refs: Vec<TrafficTargetRef>,
    /// How failed attempts are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Rate limits; a request must pass every rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Concurrency and body-size limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// A reference to the object a `TrafficPolicy` applies to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficTargetRef {
    /// API group of the target: `gateway.networking.k8s.io`.
    #[serde(default = "gateway_group")]
    pub group: String,
    /// Kind of the target.
    pub kind: TargetKind,
    /// Name of the target, in the policy's namespace.
    pub name: String,
    /// A Gateway listener's name, or an HTTPRoute or GRPCRoute rule's `name`: the policy
    /// then applies to that section only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

fn gateway_group() -> String {
    GATEWAY_GROUP.to_owned()
}

/// The kinds a `TrafficPolicy` can target.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A Gateway (every route attached to it), or one of its listeners.
    Gateway,
    /// An HTTPRoute, or one of its rules.
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
    /// A GRPCRoute, or one of its rules.
    #[serde(rename = "GRPCRoute")]
    GrpcRoute,
}

impl TargetKind {
    /// The kind as manifests spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "Gateway",
            Self::HttpRoute => "HTTPRoute",
            Self::GrpcRoute => "GRPCRoute",
        }
    }
}

/// Retries (Envoy's retry policy, in Envoy Gateway's spelling).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Retries after the first attempt; 2 when omitted, 0 disables retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// What makes an attempt worth retrying. When omitted: `connect-failure`, `reset`,
    /// `timeout`, and `gateway-error` (or `retriable-status-codes` when `statusCodes`
    /// are listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<RetryOnClass>>,
    /// Statuses (400-599) retried with `retriable-status-codes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_codes: Option<Vec<i64>>,
    /// gRPC statuses (from `grpc-status` in a response head) that are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status_codes: Option<Vec<GrpcCode>>,
    /// The wait before each retry (exponential, jittered, never below `baseInterval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<RetryBackoff>,
    /// Largest request body kept for replay (bytes, or a quantity such as `1Mi`); a
    /// larger body is sent once and never retried. 64Ki when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replay_body_bytes: Option<Quantity>,
}

/// A class of failed attempts (Envoy's `retry_on` values).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOnClass {
    /// `connect-failure`: the connection to the endpoint could not be made.
    ConnectFailure,
    /// `reset`: the connection broke before a response head.
    Reset,
    /// `timeout`: the attempt's `timeouts.backendRequest` expired.
    Timeout,
    /// `5xx`: any 5xx response, and every failure above.
    #[serde(rename = "5xx")]
    ServerError,
    /// `gateway-error`: 502, 503 and 504 responses, and every failure above.
    GatewayError,
    /// `retriable-status-codes`: the responses listed in `statusCodes`.
    RetriableStatusCodes,
}

/// A gRPC status code worth retrying.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GrpcCode {
    /// `cancelled` (1).
    Cancelled,
    /// `deadline-exceeded` (4).
    DeadlineExceeded,
    /// `internal` (13).
    Internal,
    /// `resource-exhausted` (8).
    ResourceExhausted,
    /// `unavailable` (14).
    Unavailable,
}

impl GrpcCode {
    /// The numeric gRPC status code.
    pub fn code(self) -> u32 {
        match self {
            Self::Cancelled => 1,
            Self::DeadlineExceeded => 4,
            Self::Internal => 13,
            Self::ResourceExhausted => 8,
            Self::Unavailable => 14,
        }
    }
}

/// Retry backoff bounds, as duration strings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetryBackoff {
    /// The least wait before a retry (`"25ms"` when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<String>,
    /// The most (10 × `baseInterval` when omitted); not below `baseInterval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<String>,
}

/// Rate limits.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// The limits; each one is applied, and a request must pass all. An empty list
    /// lifts the limits of less specific policies.
    pub rules: Vec<RateLimitRule>,
}

/// One rate limit: a quota per client (or per value of the selected headers).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRule {
    /// A name (a DNS label) for the `RateLimit-Policy` header and metrics; the rule's
    /// index when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What tells clients apart. When omitted, all the traffic of the target shares one
    /// quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_selectors: Option<ClientSelectors>,
    /// The quota of each client.
    pub limit: RateLimitValue,
    /// Requests that may arrive at once after an idle period; `limit.requests` when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// The quota shared by requests that lack a selected header. When omitted, such
    /// requests are not limited by this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_key: Option<RateLimitValue>,
}

/// What makes up a rate-limit key.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientSelectors {
    /// Each client IP address its own quota.
    #[serde(default, rename = "clientIP")]
    pub client_ip: bool,
    /// Each value of these request headers its own quota (an API key, a tenant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
}

/// Requests per unit of time.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitValue {
    /// Requests allowed per `unit` (at least 1).
    pub requests: u64,
    /// The unit of time.
    pub unit: RateLimitUnit,
}

impl Default for RateLimitValue {
    fn default() -> Self {
        Self {
            requests: 1,
            unit: RateLimitUnit::Second,
        }
    }
}

/// A rate limit's unit of time.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitUnit {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
}

impl RateLimitUnit {
    /// The unit as a [`Duration`].
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        })
    }
}

/// Request limits.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Most requests in flight at once per route rule (at least 1); more are answered
    /// 503 at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    /// Largest request body (bytes, or a quantity such as `1Mi`); larger ones are
    /// answered 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<Quantity>,
}

// === impl TrafficPolicySpec ===

impl TrafficPolicySpec {
    /// Checks what the schema cannot: target groups, durations, statuses, quotas,
    /// header names, quantities. Field paths use the manifest's spelling
    /// (`spec.rateLimit.rules[0].limit.requests`).
    ///
    /// # Errors
    ///
    /// Every problem found, each with its field path.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        self.values("").map(drop)
    }

    /// The policy's settings in gatekit-core's types; rate limits are named
    /// `<prefix>/<rule name or index>` (the translation passes
    /// `<namespace>/<policy name>`). This is the one place the spec is checked:
    /// [`validate`](Self::validate) calls it.
    pub(crate) fn values(&self, prefix: &str) -> Result<TrafficValues, Vec<ConfigError>> {
        let mut errors = Vec::new();
        for (i, t) in self.target_refs.iter().enumerate() {
            if t.group != GATEWAY_GROUP {
                errors.push(ConfigError::new(
                    format!("spec.targetRefs[{i}].group"),
                    format!(
                        "{:?} is not {GATEWAY_GROUP} (only Gateways, HTTPRoutes and GRPCRoutes can be targeted)",
                        t.group
                    ),
                ));
            }
            if t.name.is_empty() {
                errors.push(ConfigError::new(
                    format!("spec.targetRefs[{i}].name"),
                    "must not be empty",
                ));
            }
        }
        let mut values = TrafficValues::default();
        if let Some(r) = &self.retry {
            values.retry = collect(retry_policy(r), &mut errors);
        }
        if let Some(rl) = &self.rate_limit {
            values.rate_limits = collect(rate_limits(rl, prefix), &mut errors);
        }
        if let Some(l) = &self.limits {
            if let Some(n) = l.max_concurrent_requests {
                if n == 0 {
                    errors.push(ConfigError::new(
                        "spec.limits.maxConcurrentRequests",
                        "must be at least 1 (0 would refuse every request)",
                    ));
                }
                values.max_concurrent_requests = Some(n);
            }
            if let Some(q) = &l.max_request_body_bytes {
                match quantity_bytes(q) {
                    Ok(n) => values.max_request_body = Some(n),
                    Err(e) => errors.push(ConfigError::new("spec.limits.maxRequestBodyBytes", e)),
                }
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(errors)
        }
    }
}

/// What one `TrafficPolicy` sets, in gatekit-core's types: `None` where it leaves a
/// field to less specific policies.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TrafficValues {
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) rate_limits: Option<Vec<RateLimitConfig>>,
    pub(crate) max_concurrent_requests: Option<u32>,
    pub(crate) max_request_body: Option<u64>,
    /// What Envoy Gateway BackendTrafficPolicies set (a listener's: Gateway or
    /// listener targeted); gatekit's fields above win.
    pub(crate) btp: Option<crate::types::btp::BtpValues>,
}

impl TrafficValues {
    /// The fields set, as the manifest names them (the unit of merging and conflicts).
    pub(crate) fn fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.retry.is_some() {
            out.push("retry");
        }
        if self.rate_limits.is_some() {
            out.push("rateLimit");
        }
        if self.max_concurrent_requests.is_some() {
            out.push("limits.maxConcurrentRequests");
        }
        if self.max_request_body.is_some() {
            out.push("limits.maxRequestBodyBytes");
        }
        out
    }

    /// Overrides every field `more_specific` sets.
    pub(crate) fn overlay(&mut self, more_specific: &TrafficValues) {
        if let Some(r) = &more_specific.retry {
            self.retry = Some(r.clone());
        }
        if let Some(r) = &more_specific.rate_limits {
            self.rate_limits = Some(r.clone());
        }
        if let Some(n) = more_specific.max_concurrent_requests {
            self.max_concurrent_requests = Some(n);
        }
        if let Some(n) = more_specific.max_request_body {
            self.max_request_body = Some(n);
        }
    }
}

fn collect<T>(r: Result<T, Vec<ConfigError>>, errors: &mut Vec<ConfigError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            errors.extend(e);
            None
        }
    }
}

// === retries ===

/// The classes every Gateway API retry covers: requests that never reached a backend,
/// connect failures, resets and per-attempt timeouts (GEP-1731: a request is retried
/// "after timing out"), plus the `statuses` listed, or the gateway-error class (502,
/// 503, 504) when there is no list. Shared by HTTPRoute `retry` and a `TrafficPolicy`
/// retry without `retryOn`.
pub(crate) fn connection_and_status_retries(statuses: Option<Vec<StatusCode>>) -> RetryOn {
    let mut on = RetryOn::default();
    on.unsent = true;
    on.connect_failure = true;
    on.reset = true;
    on.timeout = true;
    on.gateway_error = statuses.is_none();
    on.statuses = statuses.unwrap_or_default();
    on
}

/// A retriable status: 400-599 (the Gateway API's `HTTPRouteRetryStatusCode` range).
pub(crate) fn retry_status(code: i64, field: &str) -> Result<StatusCode, ConfigError> {
    u16::try_from(code)
        .ok()
        .filter(|c| (400..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| ConfigError::new(field, format!("{code} is not a status from 400 to 599")))
}

fn retry_policy(r: &Retry) -> Result<RetryPolicy, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut statuses = Vec::new();
    for (j, c) in r.status_codes.iter().flatten().enumerate() {
        match retry_status(*c, &format!("spec.retry.statusCodes[{j}]")) {
            Ok(s) if !statuses.contains(&s) => statuses.push(s),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    let mut on = match &r.retry_on {
        None => connection_and_status_retries((!statuses.is_empty()).then_some(statuses)),
        Some(classes) => {
            let mut on = RetryOn::default();
            on.unsent = true;
            let wants_codes = classes.contains(&RetryOnClass::RetriableStatusCodes);
            for class in classes {
                match class {
                    RetryOnClass::ConnectFailure => on.connect_failure = true,
                    RetryOnClass::Reset => on.reset = true,
                    RetryOnClass::Timeout => on.timeout = true,
                    RetryOnClass::ServerError => on.server_error = true,
                    RetryOnClass::GatewayError => on.gateway_error = true,
                    RetryOnClass::RetriableStatusCodes => {}
                }
            }
            if wants_codes && r.status_codes.as_ref().is_none_or(Vec::is_empty) {
                errors.push(ConfigError::new(
                    "spec.retry.statusCodes",
                    "retryOn lists retriable-status-codes: the statuses must be listed here",
                ));
            }
            if !wants_codes && !statuses.is_empty() {
                errors.push(ConfigError::new(
                    "spec.retry.statusCodes",
                    "listed, but retryOn does not include retriable-status-codes",
                ));
            }
            on.statuses = statuses;
            on
        }
    };
    for g in r.grpc_status_codes.iter().flatten() {
        if !on.grpc.contains(&g.code()) {
            on.grpc.push(g.code());
        }
    }
    let mut policy = RetryPolicy::new(r.attempts.unwrap_or(DEFAULT_RETRY_ATTEMPTS), on);
    if let Some(b) = &r.backoff {
        let parse = |field: &str, v: Option<&str>, errors: &mut Vec<ConfigError>| {
            v.and_then(|v| match duration::parse(v) {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(ConfigError::new(field, e.to_string()));
                    None
                }
            })
        };
        let base = parse(
            "spec.retry.backoff.baseInterval",
            b.base_interval.as_deref(),
            &mut errors,
        );
        let max = parse(
            "spec.retry.backoff.maxInterval",
            b.max_interval.as_deref(),
            &mut errors,
        );
        let base_failed = b.base_interval.is_some() && base.is_none();
        let mut backoff = base.map_or_else(Backoff::default, Backoff::new);
        if let Some(max) = max {
            if max < backoff.base && !base_failed {
                errors.push(ConfigError::new(
                    "spec.retry.backoff.maxInterval",
                    format!(
                        "{max:?} is shorter than the base interval {:?}",
                        backoff.base
                    ),
                ));
            }
            backoff = backoff.with_max(max);
        }
        policy = policy.with_backoff(backoff);
    }
    if let Some(q) = &r.max_replay_body_bytes {
        match quantity_bytes(q).and_then(|n| {
            usize::try_from(n).map_err(|_| format!("{n} bytes is too large for this platform"))
        }) {
            Ok(n) => policy = policy.with_max_replay_body(n),
            Err(e) => errors.push(ConfigError::new("spec.retry.maxReplayBodyBytes", e)),
        }
    }
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

// === rate limits ===

fn rate_limits(rl: &RateLimit, prefix: &str) -> Result<Vec<RateLimitConfig>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(rl.rules.len());
    let mut labels: Vec<String> = Vec::new();
    for (i, rule) in rl.rules.iter().enumerate() {
        let f = format!("spec.rateLimit.rules[{i}]");
        let label = match &rule.name {
            Some(name) => {
                if !is_dns_label(name) {
                    errors.push(ConfigError::new(
                        format!("{f}.name"),
                        format!("{name:?} is not a DNS label (lowercase letters, digits, '-', at most 63)"),
                    ));
                }
                name.clone()
            }
            None => i.to_string(),
        };
        if labels.contains(&label) {
            errors.push(ConfigError::new(
                format!("{f}.name"),
                format!("duplicate rule name {label:?}"),
            ));
        }
        labels.push(label.clone());
        let mut key = Vec::new();
        let selectors = rule.client_selectors.clone().unwrap_or_default();
        if selectors.client_ip {
            key.push(KeyPart::ClientIp);
        }
        for (j, h) in selectors.headers.iter().enumerate() {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => {
                    let part = KeyPart::Header(name);
                    if !key.contains(&part) {
                        key.push(part);
                    }
                }
                Err(_) => errors.push(ConfigError::new(
                    format!("{f}.clientSelectors.headers[{j}]"),
                    format!("{h:?} is not a header name"),
                )),
            }
        }
        let Some(mut q) = collect(quota(&rule.limit, &format!("{f}.limit")), &mut errors) else {
            continue;
        };
        if let Some(burst) = rule.burst {
            if burst == 0 {
                errors.push(ConfigError::new(format!("{f}.burst"), "must be at least 1"));
            }
            q = q.with_burst(burst);
        }
        let unkeyed = match &rule.missing_key {
            None => Unkeyed::Skip,
            Some(v) => {
                if selectors.headers.is_empty() {
                    errors.push(ConfigError::new(
                        format!("{f}.missingKey"),
                        "applies only to requests lacking a selected header: clientSelectors.headers is empty",
                    ));
                }
                match quota(v, &format!("{f}.missingKey")) {
                    Ok(q) => Unkeyed::Shared(q),
                    Err(e) => {
                        errors.extend(e);
                        continue;
                    }
                }
            }
        };
        out.push(RateLimitConfig::new(format!("{prefix}/{label}"), key, q).with_unkeyed(unkeyed));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn quota(v: &RateLimitValue, field: &str) -> Result<Quota, Vec<ConfigError>> {
    if v.requests == 0 {
        return Err(vec![ConfigError::new(
            format!("{field}.requests"),
            "must be at least 1 (0 would refuse every request)",
        )]);
    }
    Ok(Quota::new(v.requests, v.unit.duration()))
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

// === quantities ===

/// A Kubernetes quantity (`1Mi`, `64Ki`, `1k`, `1e6`, `1024`) as a whole number of
/// bytes, rounded up.
///
/// # Errors
///
/// A negative or malformed quantity, a milli suffix (`m`), or one above 2^63 - 1.
pub(crate) fn quantity_bytes(q: &Quantity) -> Result<u64, String> {
    let s = q.0.trim();
    let bad = || format!("{s:?} is not a byte count (an integer, or a quantity like 64Ki or 1Mi)");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') || number.len() > 30 {
        return Err(bad());
    }
    let (multiplier, exponent): (u128, u32) = match suffix {
        "" => (1, 0),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        e if e.starts_with(['e', 'E']) => match e[1..].parse::<u32>() {
            Ok(x) if x <= 18 => (1, x),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    let digits: u128 = format!("{int}{frac}").parse().map_err(|_| bad())?;
    let scale = 10u128.pow(u32::try_from(frac.len()).map_err(|_| bad())?);
    let numerator = digits
        .checked_mul(multiplier)
        .and_then(|n| n.checked_mul(10u128.pow(exponent)))
        .ok_or_else(bad)?;
    let bytes = numerator.div_ceil(scale);
    u64::try_from(bytes)
        .ok()
        .filter(|b| i64::try_from(*b).is_ok())
        .ok_or_else(|| format!("{s:?} is larger than 2^63 - 1 bytes"))
}

/// The `TrafficPolicy` CustomResourceDefinition as YAML, exactly as committed in
/// `deploy/crds/gatekit.io_trafficpolicies.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = TrafficPolicy::crd();
    let body = serde_norway::to_string(&crd).unwrap_or_else(|e| format!("# error: {e}\n"));
    format!(
        "# Generated from gatekit_k8s::types::traffic::TrafficPolicySpec; do not edit.\n\
         # Regenerate: GATEKIT_BLESS=1 cargo test -p gatekit-k8s --test crd\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<u64, String> {
        quantity_bytes(&Quantity(s.to_owned()))
    }

    #[test]
    fn quantities_in_bytes() {
        assert_eq!(q("1024"), Ok(1024));
        assert_eq!(q("64Ki"), Ok(65_536));
        assert_eq!(q("1Mi"), Ok(1 << 20));
        assert_eq!(q("1.5Ki"), Ok(1_536));
        assert_eq!(q("1k"), Ok(1_000));
        assert_eq!(q("1e6"), Ok(1_000_000));
        assert_eq!(q("0.5"), Ok(1), "rounded up");
        for bad in ["", "-1", "1m", "1Xi", "1.2.3", "8Ei", "abc", "1e40"] {
            assert!(q(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn retry_on_defaults_follow_status_codes() {
        let r = Retry {
            status_codes: Some(vec![500]),
            ..Retry::default()
        };
        let p = retry_policy(&r).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(p.on.unsent && p.on.connect_failure && p.on.reset && p.on.timeout);
        assert!(
            !p.on.gateway_error,
            "listed codes replace the gateway-error class"
        );
        assert_eq!(p.on.statuses, [StatusCode::INTERNAL_SERVER_ERROR]);
        assert_eq!(p.attempts, DEFAULT_RETRY_ATTEMPTS);
        let p = retry_policy(&Retry::default()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(p.on.gateway_error && p.on.statuses.is_empty());
    }
}
