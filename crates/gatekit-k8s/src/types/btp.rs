//! Envoy Gateway's `BackendTrafficPolicy` (`gateway.envoyproxy.io/v1alpha1`), read so
//! that users migrating from Envoy Gateway keep their rate limits, circuit breakers,
//! retries, timeouts, load balancing and health checks.
//!
//! `loadBalancer`, `healthCheck` and the connection timeouts
//! (`timeout.tcp.connectTimeout`, `timeout.http.connectionIdleTimeout`) are per-Service
//! settings in gatekit: they become the fields of gatekit's own BackendPolicy
//! ([`BackendPolicySpec`](crate::types::BackendPolicySpec)) on every Service the
//! policy's targets reach (see `translate/policy.rs`); the timeouts become its
//! `connection.connectTimeout` and `connection.idleTimeout`. Envoy Gateway's defaults
//! are written out (active: timeout 1s, interval 3s, unhealthy 3, healthy 1, HTTP
//! statuses 200 only; passive: 5 consecutive 5xx, gateway errors not counted unless set
//! above 0, ejection 30s, at most 10% ejected), so an omitted field means what it means
//! in Envoy Gateway, not gatekit's own default. Mapping:
//! `type` `RoundRobin`/`LeastRequest`/`Random`/`ConsistentHash` → the algorithm of the
//! same name; `consistentHash` `SourceIP`, `Header`, `Cookie` (`name`), and `Headers`
//! or `QueryParams` with exactly one entry → the hash key; `slowStart.window` →
//! `slowStart`; `zoneAware.preferLocal: {}` → locality (prefer the gateway's zone);
//! `healthCheck.panicThreshold` → `panicThreshold`; `active` `HTTP` (`path`, `method`,
//! `hostname`, `expectedStatuses`), `TCP`, `GRPC` (`service`) with `timeout`,
//! `interval`, thresholds; `passive` `consecutive5XxErrors`,
//! `consecutiveGatewayErrors`, `baseEjectionTime`, `maxEjectionPercent`;
//! `timeout.tcp.connectTimeout` → `connection.connectTimeout`;
//! `timeout.http.connectionIdleTimeout` → `connection.idleTimeout` (durations longer
//! than 0s). `proxyProtocol.version` is per Service too but not a BackendPolicy field:
//! it becomes the upstream's [`UpstreamSpec::proxy_protocol`](crate::translate::UpstreamSpec::proxy_protocol),
//! written on the stream connections of TCPRoutes and TLSRoutes; HTTP backends get
//! none (refused on route targets, named for a Gateway target's HTTP-only Services). `timeout.http.requestTimeout` is a route rule setting (like `retry`); the other
//! `timeout.http` fields are unimplemented.
//!
//! The split for what gatekit cannot do: a field that would change which endpoint
//! serves a request or when it counts as healthy (`BackendUtilization`,
//! `DynamicModule`, `endpointOverride`, `zoneAware.weightedZones` and `preferLocal`'s
//! tuning, several hash headers or parameters, `cookie.ttl`/`attributes` (Envoy makes
//! the cookie), `active.overrides`, `http.retriableStatuses`/`expectedResponse`/
//! `requestBody`, `tcp.send`/`receive`, `passive.splitExternalLocalOriginErrors: true`,
//! `failurePercentageThreshold`, `alwaysEjectOneEndpoint: true`) is *unimplemented*
//! and refuses the policy like any other. A field that only tunes performance or
//! logging (`consistentHash.tableSize`, `active.initialJitter`,
//! `active.healthCheckLog`, `passive.interval`; and
//! `consecutiveLocalOriginFailures`, which does nothing without the split) is
//! accepted and ignored, named in a `Warning` condition (status `True`, reason
//! `IgnoredFields`).
//!
//! Only the fields gatekit has layers for are typed; every other field of the spec is
//! kept in [`BackendTrafficPolicySpec::other`], so the translation can name it in the
//! policy's status (`Accepted=False`) rather than drop it silently. Within the typed
//! fields, values gatekit cannot express (a rate-limit selector's `methods`, `path` or
//! `queryParams`, a rule's `cost`, a limit's `fromMetadata`, a selector's
//! `namespaces`, ...) are reported the same way.
//!
//! Targets: `targetRefs`/`targetRef` and `targetSelectors` (kind, `matchLabels`,
//! `matchExpressions` with `In`/`NotIn`/`Exists`/`DoesNotExist`; the objects of that
//! kind in the policy's namespace whose labels match, each a target like a
//! `targetRefs` entry). Served kinds: `Gateway`, `HTTPRoute`, `GRPCRoute`, `TCPRoute`,
//! `TLSRoute`, `UDPRoute`. A kind gatekit does not serve (`ListenerSet`, ...) loads
//! and is reported like an unimplemented field; a
//! `targetRefs` entry without `group` (required by Envoy Gateway's CRD) is read as
//! `gateway.networking.k8s.io` with a load warning. `limit.unit` takes Envoy
//! Gateway's `Second` to `Year` and `Week`, with the lengths of Envoy's rate-limit
//! service (a week 7 days, a month 30, a year 365).
//!
//! Field names follow Envoy Gateway's API reference
//! (<https://gateway.envoyproxy.io/docs/api/extension_types/#backendtrafficpolicy>).
//! Two abbreviations seen in course material are accepted with a load warning naming
//! the right field: `circuitBreaker.maxRequests` (for `maxParallelRequests`) and
//! `retry.retryOn` as a flat list of triggers (for `retryOn.triggers`).
//!
//! gatekit does not install this CRD; it reads the objects Envoy Gateway's CRD defines.

use std::collections::BTreeMap;
use std::time::Duration;

use gatekit_core::ConfigError;
use gatekit_core::breaker::CircuitBreakerConfig;
use gatekit_core::ratelimit::{
    Cidr, ClientMatch, KeyPart, Quota, RateLimitConfig, ValueMatch, ValueRegex,
};
use gatekit_core::retry::{Backoff, RetryOn, RetryPolicy};
use http::{HeaderName, HeaderValue, StatusCode};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration;
use crate::types::traffic::retry_status;

mod upstream;

pub(crate) use self::upstream::BtpUpstream;
pub use self::upstream::{
    BtpActiveHealthCheck, BtpConsistentHash, BtpConsistentHashType, BtpCookie, BtpGrpcHealthCheck,
    BtpHealthCheck, BtpHttpHealthCheck, BtpLoadBalancer, BtpLoadBalancerType, BtpNamed,
    BtpPassiveHealthCheck, BtpPreferLocal, BtpProbeType, BtpProxyProtocol, BtpProxyProtocolVersion,
    BtpSlowStart, BtpTcpHealthCheck, BtpZoneAware, DEFAULT_ACTIVE_INTERVAL, DEFAULT_ACTIVE_TIMEOUT,
    DEFAULT_BASE_EJECTION_TIME, DEFAULT_CONSECUTIVE_5XX, DEFAULT_HEALTHY_THRESHOLD,
    DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_UNHEALTHY_THRESHOLD,
};

/// Envoy Gateway's API group.
pub const ENVOY_GATEWAY_GROUP: &str = "gateway.envoyproxy.io";

/// Retries Envoy Gateway makes when `numRetries` is omitted.
pub const DEFAULT_NUM_RETRIES: u32 = crate::types::traffic::DEFAULT_RETRY_ATTEMPTS;

/// Envoy Gateway's default for each of `circuitBreaker`'s `maxConnections`,
/// `maxPendingRequests`, `maxParallelRequests` and `maxParallelRetries` when the
/// `circuitBreaker` object is present and the field is omitted.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 1024;

/// The spec of a `BackendTrafficPolicy` (the fields gatekit reads).
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.envoyproxy.io",
    version = "v1alpha1",
    kind = "BackendTrafficPolicy",
    plural = "backendtrafficpolicies",
    status = "crate::types::PolicyStatus",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    doc = "Envoy Gateway's BackendTrafficPolicy, as gatekit reads it."
)]
#[serde(rename_all = "camelCase")]
pub struct BackendTrafficPolicySpec {
    /// The Gateways, routes or sections this policy applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<BtpTargetRef>,
    /// The older, single target (deprecated in Envoy Gateway, still read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<BtpTargetRef>,
    /// Targets chosen by label: every object of the selector's kind in the policy's
    /// namespace whose labels match, each treated like a `targetRefs` entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_selectors: Vec<BtpTargetSelector>,
    /// How a route-targeted policy combines with a Gateway-targeted one: set, the two
    /// are merged field by field; unset, the route's replaces the Gateway's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_type: Option<MergeType>,
    /// Rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<BtpRateLimit>,
    /// Circuit-breaker thresholds for the targets' backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BtpCircuitBreaker>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<BtpRetry>,
    /// Timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<BtpTimeout>,
    /// Load balancing of the Services the targets reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<BtpLoadBalancer>,
    /// Health checking of the Services the targets reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<BtpHealthCheck>,
    /// A PROXY protocol header written to the targets' Services at the start of each
    /// connection (TCPRoute and TLSRoute backends; refused for HTTP routes' backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<BtpProxyProtocol>,
    /// Every other spec field (fault injection, compression, ...):
    /// not implemented by gatekit, named in the policy's status.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A `BackendTrafficPolicy` target.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpTargetRef {
    /// API group of the target: `gateway.networking.k8s.io`. Envoy Gateway's CRD
    /// requires it; omitted in a manifest, it is read as that group with a load
    /// warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the target: `Gateway`, `HTTPRoute`, `GRPCRoute`, `TCPRoute`, `TLSRoute`
    /// or `UDPRoute` are served; any other kind Envoy Gateway accepts loads, and the
    /// policy is refused in status (`Unsupported`).
    pub kind: String,
    /// Name of the target, in the policy's namespace.
    pub name: String,
    /// A listener or route rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

impl BtpTargetRef {
    /// The kind, when gatekit serves it (one of [`SERVED_KINDS`]).
    pub fn served_kind(&self) -> Option<&'static str> {
        served_kind(&self.kind)
    }
}

/// The target kinds gatekit serves: a Gateway and the route kinds whose backends a
/// policy reaches (the stream route kinds take the per-Service fields and
/// `circuitBreaker.maxConnections`; see `translate/policy.rs`).
pub const SERVED_KINDS: [&str; 6] = [
    "Gateway",
    "HTTPRoute",
    "GRPCRoute",
    "TCPRoute",
    "TLSRoute",
    "UDPRoute",
];

/// The route kinds that carry streams (TLSRoute, TCPRoute, UDPRoute).
pub const STREAM_KINDS: [&str; 3] = ["TCPRoute", "TLSRoute", "UDPRoute"];

/// `kind` when it is one of [`SERVED_KINDS`]; `None` for a kind gatekit does not serve.
pub(crate) fn served_kind(kind: &str) -> Option<&'static str> {
    SERVED_KINDS.into_iter().find(|k| *k == kind)
}

/// `targetSelectors[]`: the objects of one kind, in the policy's namespace, whose
/// labels match.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpTargetSelector {
    /// API group: `gateway.networking.k8s.io` (the default, and the only value Envoy
    /// Gateway's CRD allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the objects selected (`Gateway`, `HTTPRoute`, `GRPCRoute`).
    pub kind: String,
    /// Labels an object must have, each with this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements an object's labels must meet (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<BtpLabelRequirement>,
    /// Other fields (newer Envoy Gateway versions' `namespaces`, ...): not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A `matchExpressions[]` entry (Kubernetes' `LabelSelectorRequirement`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpLabelRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values (`In`, `NotIn`: at least one; `Exists`, `DoesNotExist`: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl BtpTargetSelector {
    /// Whether an object of kind `kind` with `labels` is selected (its namespace is the
    /// caller's business). An invalid requirement (refused when loading) selects
    /// nothing.
    pub fn selects(&self, kind: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        let group = self.group.as_deref().unwrap_or(crate::types::GATEWAY_GROUP);
        if group != crate::types::GATEWAY_GROUP || self.kind != kind {
            return false;
        }
        let label = |k: &str| labels.and_then(|l| l.get(k));
        self.match_labels.iter().all(|(k, v)| label(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let v = label(&e.key);
                match e.operator.as_str() {
                    "In" => v.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => v.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    _ => false,
                }
            })
    }
}

/// Envoy Gateway's `mergeType`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeType {
    /// Strategic merge (gatekit: field-level merge).
    StrategicMerge,
    /// JSON merge (gatekit: field-level merge).
    #[serde(rename = "JSONMerge")]
    JsonMerge,
}

/// `rateLimit`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpRateLimit {
    /// `Local` (per replica) or `Global` (shared through a rate-limit service).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<RateLimitType>,
    /// Local limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<BtpRateLimitRules>,
    /// Global limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<BtpRateLimitRules>,
}

/// `rateLimit.type`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitType {
    /// Per replica.
    Local,
    /// Shared between replicas.
    Global,
}

/// `rateLimit.local` / `rateLimit.global`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpRateLimitRules {
    /// The rules; a request must pass every rule whose selectors it matches.
    #[serde(default)]
    pub rules: Vec<BtpRateLimitRule>,
}

/// One rate-limit rule.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpRateLimitRule {
    /// Which requests the rule applies to and what tells clients apart; none: all
    /// traffic shares one bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_selectors: Vec<BtpClientSelector>,
    /// The quota.
    pub limit: BtpLimit,
    /// One budget across every target of the policy (default: each route rule its
    /// own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// Other rule fields (`cost`, ...): not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `clientSelectors[]`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpClientSelector {
    /// Header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<BtpHeaderMatch>,
    /// Client address condition.
    #[serde(
        default,
        rename = "sourceCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_cidr: Option<BtpSourceMatch>,
    /// Other selector fields (`methods`, `path`, `queryParams`, ...): not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A header selector.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpHeaderMatch {
    /// The header name.
    pub name: String,
    /// How the value is matched; `Exact` when omitted.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<HeaderMatchType>,
    /// The value (`Exact`, `RegularExpression`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Negates an `Exact` or `RegularExpression` match (a request without the header
    /// then matches); not allowed with `Distinct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
}

/// A header selector's `type`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMatchType {
    /// Only requests with this value (compared exactly, case-sensitive).
    Exact,
    /// Only requests whose whole value matches the regular expression (RE2 syntax).
    RegularExpression,
    /// Each value its own bucket.
    Distinct,
}

/// A `sourceCIDR` selector.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpSourceMatch {
    /// `Exact` (the range shares one bucket) or `Distinct` (each address its own);
    /// `Exact` when omitted.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<SourceMatchType>,
    /// The CIDR (IPv4 or IPv6).
    pub value: String,
    /// Other fields (newer Envoy Gateway versions' `invert`, ...): not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A `sourceCIDR` selector's `type`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceMatchType {
    /// The whole range shares one bucket.
    Exact,
    /// Each address its own bucket.
    Distinct,
}

/// `limit`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpLimit {
    /// Requests per unit.
    pub requests: u64,
    /// The unit.
    pub unit: BtpRateLimitUnit,
    /// Other fields (`fromMetadata`, ...): not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `limit.unit`, with the lengths Envoy's rate-limit service gives them (a week is 7
/// days, a month 30, a year 365).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtpRateLimitUnit {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
    /// Seven days.
    Week,
    /// Thirty days.
    Month,
    /// 365 days.
    Year,
}

impl BtpRateLimitUnit {
    /// The unit as a [`Duration`].
    pub fn duration(self) -> Duration {
        const DAY: u64 = 86_400;
        Duration::from_secs(match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => DAY,
            Self::Week => 7 * DAY,
            Self::Month => 30 * DAY,
            Self::Year => 365 * DAY,
        })
    }
}

/// `circuitBreaker`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpCircuitBreaker {
    /// Most connections to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Most queued requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<i64>,
    /// Most requests in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<i64>,
    /// Course abbreviation of `maxParallelRequests` (load warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<i64>,
    /// Most retries in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_retries: Option<i64>,
    /// Requests per connection (0: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<i64>,
    /// Other fields (`perEndpoint`, ...): not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `retry`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpRetry {
    /// Retries after the first attempt; 2 when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<i64>,
    /// What is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<BtpRetryOn>,
    /// Per-attempt settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_retry: Option<BtpPerRetry>,
    /// Other fields (`numAttemptsPerPriority`, ...): not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `retry.retryOn`: Envoy Gateway's object, or (course abbreviation) a list of triggers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum BtpRetryOn {
    /// `{triggers, httpStatusCodes}`.
    Full {
        /// Failure classes.
        #[serde(default)]
        triggers: Vec<RetryTrigger>,
        /// Statuses retried.
        #[serde(default, rename = "httpStatusCodes")]
        http_status_codes: Vec<i64>,
    },
    /// A flat list of triggers (load warning: `retryOn.triggers`).
    Triggers(Vec<RetryTrigger>),
}

/// A retry trigger (Envoy's `retry_on` values).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RetryTrigger {
    /// Any 5xx.
    #[serde(rename = "5xx")]
    ServerError,
    /// 502, 503, 504.
    GatewayError,
    /// The connection broke.
    Reset,
    /// The connection broke before the request was sent.
    ResetBeforeRequest,
    /// Connect failure.
    ConnectFailure,
    /// 409.
    #[serde(rename = "retriable-4xx")]
    Retriable4xx,
    /// The backend refused the HTTP/2 stream.
    RefusedStream,
    /// `httpStatusCodes`.
    RetriableStatusCodes,
    /// gRPC cancelled (1).
    Cancelled,
    /// gRPC deadline-exceeded (4).
    DeadlineExceeded,
    /// gRPC internal (13).
    Internal,
    /// gRPC resource-exhausted (8).
    ResourceExhausted,
    /// gRPC unavailable (14).
    Unavailable,
}

/// `retry.perRetry`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpPerRetry {
    /// Timeout of each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Backoff between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BtpBackOff>,
}

/// `retry.perRetry.backOff`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpBackOff {
    /// Least wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<String>,
    /// Most wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<String>,
}

/// `timeout`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpTimeout {
    /// HTTP timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<BtpHttpTimeout>,
    /// TCP timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<BtpTcpTimeout>,
}

/// `timeout.http`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpHttpTimeout {
    /// Whole-request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,
    /// Idle timeout of the connections to the targets' Services (per Service, like
    /// `loadBalancer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_idle_timeout: Option<String>,
    /// Other fields (`maxConnectionDuration`, ...): not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `timeout.tcp`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpTcpTimeout {
    /// Connect timeout of the connections to the targets' Services (per Service, like
    /// `loadBalancer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
}

// === translation values ===

/// What one `BackendTrafficPolicy` sets, in gatekit-core's types.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct BtpValues {
    /// `mergeType` is set.
    pub(crate) merge: bool,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) rate_limits: Option<Vec<RateLimitConfig>>,
    /// The rate limits are `Global` (kept in the gateway's Redis, or per replica
    /// without one).
    pub(crate) global: bool,
    pub(crate) breaker: Option<CircuitBreakerConfig>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) per_try_timeout: Option<Duration>,
}

impl BtpValues {
    /// Overrides every field `more_specific` sets (a merge, `mergeType`).
    pub(crate) fn overlay(&mut self, more_specific: &BtpValues) {
        if let Some(r) = &more_specific.retry {
            self.retry = Some(r.clone());
        }
        if let Some(r) = &more_specific.rate_limits {
            self.rate_limits = Some(r.clone());
            self.global = more_specific.global;
        }
        if let Some(b) = more_specific.breaker {
            self.breaker = Some(b);
        }
        if let Some(t) = more_specific.request_timeout {
            self.request_timeout = Some(t);
        }
        if let Some(t) = more_specific.per_try_timeout {
            self.per_try_timeout = Some(t);
        }
    }

    /// Whether any field applied to route rules is set (anything but `mergeType`).
    pub(crate) fn sets_route_fields(&self) -> bool {
        self.retry.is_some()
            || self.rate_limits.is_some()
            || self.breaker.is_some()
            || self.request_timeout.is_some()
            || self.per_try_timeout.is_some()
    }

    /// The fields set, as TrafficPolicy names them (for gatekit-wins conditions).
    pub(crate) fn traffic_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.retry.is_some() {
            out.push("retry");
        }
        if self.rate_limits.is_some() {
            out.push("rateLimit");
        }
        out
    }
}

/// The result of reading a spec: values, fields gatekit does not implement, warnings.
#[derive(Debug, Default)]
pub(crate) struct BtpRead {
    pub(crate) values: BtpValues,
    /// `loadBalancer`, `healthCheck` and the connection timeouts: applied to
    /// Services, not route rules.
    pub(crate) upstream: BtpUpstream,
    pub(crate) unimplemented: Vec<String>,
    /// Fields that only tune performance (or logging), accepted and ignored; named in
    /// a `Warning` condition.
    pub(crate) ignored: Vec<String>,
    pub(crate) warnings: Vec<ConfigError>,
}

// === impl BackendTrafficPolicySpec ===

impl BackendTrafficPolicySpec {
    /// The targets: `targetRefs`, then `targetRef`.
    pub fn targets(&self) -> impl Iterator<Item = &BtpTargetRef> {
        self.target_refs.iter().chain(self.target_ref.iter())
    }

    /// Checks values (counts, durations, statuses, header names).
    ///
    /// # Errors
    ///
    /// Every invalid value, each with its field path.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        self.read("").map(drop)
    }

    /// Load warnings: abbreviations accepted in place of Envoy Gateway's fields.
    pub fn warnings(&self) -> Vec<ConfigError> {
        self.read("").map(|r| r.warnings).unwrap_or_default()
    }

    /// Reads the spec; rate limits are named `<prefix>/<index>`.
    pub(crate) fn read(&self, prefix: &str) -> Result<BtpRead, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut out = BtpRead::default();
        let fields = (0..self.target_refs.len())
            .map(|i| format!("spec.targetRefs[{i}]"))
            .chain(self.target_ref.iter().map(|_| "spec.targetRef".to_owned()));
        for (f, t) in fields.zip(self.targets()) {
            match &t.group {
                None => out.warnings.push(ConfigError::new(
                    format!("{f}.group"),
                    format!(
                        "missing (Envoy Gateway's CRD requires it): read as {}",
                        crate::types::GATEWAY_GROUP
                    ),
                )),
                Some(g) if g != crate::types::GATEWAY_GROUP => errors.push(ConfigError::new(
                    format!("{f}.group"),
                    format!("{g:?} is not {}", crate::types::GATEWAY_GROUP),
                )),
                Some(_) => {}
            }
            if t.name.is_empty() {
                errors.push(ConfigError::new(format!("{f}.name"), "must not be empty"));
            }
            if t.served_kind().is_none() {
                out.unimplemented.push(format!(
                    "{f} (kind {:?}: gatekit serves {})",
                    t.kind,
                    SERVED_KINDS.join(", ")
                ));
            }
        }
        for (i, sel) in self.target_selectors.iter().enumerate() {
            read_selector(
                &format!("spec.targetSelectors[{i}]"),
                sel,
                &mut out,
                &mut errors,
            );
        }
        for k in self.other.keys() {
            out.unimplemented.push(format!("spec.{k}"));
        }
        out.values.merge = self.merge_type.is_some();
        if let Some(rl) = &self.rate_limit {
            self.read_rate_limit(rl, prefix, &mut out, &mut errors);
        }
        if let Some(cb) = &self.circuit_breaker {
            out.values.breaker = Some(read_breaker(cb, &mut out, &mut errors));
        }
        if let Some(r) = &self.retry {
            out.values.retry = read_retry(r, &mut out, &mut errors);
        }
        upstream::read_upstream(
            self.load_balancer.as_ref(),
            self.health_check.as_ref(),
            &mut out,
            &mut errors,
        );
        if let Some(pp) = &self.proxy_protocol {
            for k in pp.other.keys() {
                out.unimplemented.push(format!("spec.proxyProtocol.{k}"));
            }
            out.upstream.proxy_protocol = Some(pp.version);
        }
        if let Some(t) = &self.timeout {
            if let Some(h) = &t.http {
                if let Some(d) = &h.request_timeout {
                    out.values.request_timeout =
                        parse_duration("spec.timeout.http.requestTimeout", d, &mut errors);
                }
                for k in h.other.keys() {
                    out.unimplemented.push(format!("spec.timeout.http.{k}"));
                }
            }
            upstream::read_connection_timeouts(
                t.tcp.as_ref().and_then(|t| t.connect_timeout.as_deref()),
                t.http
                    .as_ref()
                    .and_then(|h| h.connection_idle_timeout.as_deref()),
                &mut out,
                &mut errors,
            );
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn read_rate_limit(
        &self,
        rl: &BtpRateLimit,
        prefix: &str,
        out: &mut BtpRead,
        errors: &mut Vec<ConfigError>,
    ) {
        let (kind, rules) = match (rl.kind, &rl.local, &rl.global) {
            (Some(RateLimitType::Global), _, Some(g)) | (None, None, Some(g)) => ("global", g),
            (Some(RateLimitType::Local), Some(l), _) | (None, Some(l), None) => ("local", l),
            _ => {
                errors.push(ConfigError::new(
                    "spec.rateLimit",
                    "type must be Local with `local` rules or Global with `global` rules",
                ));
                return;
            }
        };
        out.values.global = kind == "global";
        let mut configs = Vec::new();
        for (i, rule) in rules.rules.iter().enumerate() {
            let f = format!("spec.rateLimit.{kind}.rules[{i}]");
            for k in rule.other.keys() {
                out.unimplemented.push(format!("{f}.{k}"));
            }
            for k in rule.limit.other.keys() {
                out.unimplemented.push(format!("{f}.limit.{k}"));
            }
            // Envoy Gateway's API: "All individual select conditions must hold True for
            // this rule and its limit to be applied" — the rule's clientSelectors combine
            // with AND, as do the conditions inside one selector. So they all flatten
            // into one list of matches (conditions) and one key (the `Distinct` parts).
            // (Envoy Gateway's translator keeps only the last `sourceCIDR` of a rule;
            // gatekit requires every one, as the API documents.)
            let mut key = Vec::new();
            let mut matches = Vec::new();
            for (j, s) in rule.client_selectors.iter().enumerate() {
                let sf = format!("{f}.clientSelectors[{j}]");
                for k in s.other.keys() {
                    out.unimplemented.push(format!("{sf}.{k}"));
                }
                for (h, m) in s.headers.iter().enumerate() {
                    let hf = format!("{sf}.headers[{h}]");
                    if let Some(part) = read_header_selector(m, &hf, &mut matches, errors)
                        && !key.contains(&part)
                    {
                        key.push(part);
                    }
                }
                if let Some(c) = &s.source_cidr {
                    let cf = format!("{sf}.sourceCIDR");
                    for k in c.other.keys() {
                        out.unimplemented.push(format!("{cf}.{k}"));
                    }
                    match c.value.parse::<Cidr>() {
                        Ok(cidr) => {
                            // `Exact`: the range shares the rule's bucket(s); `Distinct`:
                            // each address in it has its own.
                            matches.push(ClientMatch::source_cidr(cidr));
                            if c.kind == Some(SourceMatchType::Distinct)
                                && !key.contains(&KeyPart::ClientIp)
                            {
                                key.push(KeyPart::ClientIp);
                            }
                        }
                        Err(e) => errors.push(e.within(&format!("{cf}.value"))),
                    }
                }
            }
            if rule.limit.requests == 0 {
                errors.push(ConfigError::new(
                    format!("{f}.limit.requests"),
                    "must be at least 1 (0 would refuse every request)",
                ));
                continue;
            }
            let quota = Quota::new(rule.limit.requests, rule.limit.unit.duration());
            configs.push(
                RateLimitConfig::new(format!("{prefix}/{i}"), key, quota)
                    .with_matches(matches)
                    .with_global(out.values.global)
                    .with_shared(rule.shared == Some(true)),
            );
        }
        out.values.rate_limits = Some(configs);
    }
}

/// Checks one `targetSelectors[]` entry at field path `f`.
fn read_selector(
    f: &str,
    sel: &BtpTargetSelector,
    out: &mut BtpRead,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(g) = sel.group.as_deref()
        && g != crate::types::GATEWAY_GROUP
    {
        errors.push(ConfigError::new(
            format!("{f}.group"),
            format!("{g:?} is not {}", crate::types::GATEWAY_GROUP),
        ));
    }
    if served_kind(&sel.kind).is_none() {
        out.unimplemented.push(format!(
            "{f}.kind ({:?}: gatekit serves {})",
            sel.kind,
            SERVED_KINDS.join(", ")
        ));
    }
    for k in sel.other.keys() {
        out.unimplemented.push(format!("{f}.{k}"));
    }
    for (j, e) in sel.match_expressions.iter().enumerate() {
        let ef = format!("{f}.matchExpressions[{j}]");
        match e.operator.as_str() {
            "In" | "NotIn" if e.values.is_empty() => errors.push(ConfigError::new(
                format!("{ef}.values"),
                format!("must not be empty with operator {}", e.operator),
            )),
            "Exists" | "DoesNotExist" if !e.values.is_empty() => {
                errors.push(ConfigError::new(
                    format!("{ef}.values"),
                    format!("must be empty with operator {}", e.operator),
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(ConfigError::new(
                format!("{ef}.operator"),
                format!("{other:?} is not In, NotIn, Exists or DoesNotExist"),
            )),
        }
    }
}

/// One `headers[]` selector of a rate-limit rule, at field path `hf`: an `Exact` or
/// `RegularExpression` selector becomes a match (pushed to `matches`), a `Distinct` one
/// the key part it returns. Errors (name, value, `invert` on `Distinct`) go to `errors`.
fn read_header_selector(
    m: &BtpHeaderMatch,
    hf: &str,
    matches: &mut Vec<ClientMatch>,
    errors: &mut Vec<ConfigError>,
) -> Option<KeyPart> {
    let Ok(name) = HeaderName::from_bytes(m.name.as_bytes()) else {
        errors.push(ConfigError::new(
            format!("{hf}.name"),
            format!("{:?} is not a header name", m.name),
        ));
        return None;
    };
    let invert = m.invert.unwrap_or(false);
    let kind = m.kind.unwrap_or(HeaderMatchType::Exact);
    let value = match (kind, &m.value) {
        (HeaderMatchType::Distinct, value) => {
            // Each value its own bucket; a request without the header is not limited
            // by the rule (the limit's `Unkeyed::Skip`).
            if invert {
                errors.push(ConfigError::new(
                    format!("{hf}.invert"),
                    "invert cannot be used with type: Distinct",
                ));
            }
            if value.is_some() {
                errors.push(ConfigError::new(
                    format!("{hf}.value"),
                    "must not be set with type: Distinct (every value is its own bucket)",
                ));
            }
            return (!invert && value.is_none()).then_some(KeyPart::Header(name));
        }
        (_, None) => {
            errors.push(ConfigError::new(
                format!("{hf}.value"),
                format!("is required with type: {kind:?}"),
            ));
            return None;
        }
        (HeaderMatchType::Exact, Some(v)) => match HeaderValue::from_str(v) {
            Ok(v) => ValueMatch::Exact(v),
            Err(_) => {
                errors.push(ConfigError::new(
                    format!("{hf}.value"),
                    format!("{v:?} is not a valid header value"),
                ));
                return None;
            }
        },
        (HeaderMatchType::RegularExpression, Some(v)) => match ValueRegex::new(v) {
            Ok(re) => ValueMatch::Regex(re),
            Err(e) => {
                errors.push(e.within(&format!("{hf}.value")));
                return None;
            }
        },
    };
    matches.push(ClientMatch::header(name, value).with_invert(invert));
    None
}

fn read_breaker(
    cb: &BtpCircuitBreaker,
    out: &mut BtpRead,
    errors: &mut Vec<ConfigError>,
) -> CircuitBreakerConfig {
    let mut c = CircuitBreakerConfig::default();
    let mut count = |field: &str, v: Option<i64>| {
        v.and_then(|n| match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(ConfigError::new(
                    format!("spec.circuitBreaker.{field}"),
                    format!("{n} is not from 0 to 4294967295"),
                ));
                None
            }
        })
    };
    c.max_connections = count("maxConnections", cb.max_connections);
    c.max_pending_requests = count("maxPendingRequests", cb.max_pending_requests);
    c.max_parallel_requests = count("maxParallelRequests", cb.max_parallel_requests);
    if cb.max_requests.is_some() {
        out.warnings.push(ConfigError::new(
            "spec.circuitBreaker.maxRequests",
            "read as maxParallelRequests, Envoy Gateway's name for it",
        ));
        if c.max_parallel_requests.is_none() {
            c.max_parallel_requests = count("maxRequests", cb.max_requests);
        }
    }
    c.max_parallel_retries = count("maxParallelRetries", cb.max_parallel_retries);
    c.max_requests_per_connection =
        count("maxRequestsPerConnection", cb.max_requests_per_connection);
    // Envoy Gateway's CRD defaults the four thresholds to 1024 (not unlimited).
    for t in [
        &mut c.max_connections,
        &mut c.max_pending_requests,
        &mut c.max_parallel_requests,
        &mut c.max_parallel_retries,
    ] {
        t.get_or_insert(DEFAULT_BREAKER_THRESHOLD);
    }
    for k in cb.other.keys() {
        out.unimplemented.push(format!("spec.circuitBreaker.{k}"));
    }
    c
}

fn read_retry(
    r: &BtpRetry,
    out: &mut BtpRead,
    errors: &mut Vec<ConfigError>,
) -> Option<RetryPolicy> {
    for k in r.other.keys() {
        out.unimplemented.push(format!("spec.retry.{k}"));
    }
    let attempts = match r.num_retries {
        None => DEFAULT_NUM_RETRIES,
        Some(n) => match u32::try_from(n) {
            Ok(n) => n,
            Err(_) => {
                errors.push(ConfigError::new(
                    "spec.retry.numRetries",
                    format!("{n} is negative or too large"),
                ));
                return None;
            }
        },
    };
    let mut on = RetryOn::default();
    on.unsent = true;
    let (triggers, codes): (&[RetryTrigger], &[i64]) = match &r.retry_on {
        // Envoy Gateway's default: connect-failure, refused-stream, unavailable,
        // cancelled, retriable-status-codes with 503.
        None => {
            on.connect_failure = true;
            on.grpc = vec![14, 1];
            on.statuses = vec![StatusCode::SERVICE_UNAVAILABLE];
            (&[], &[])
        }
        Some(BtpRetryOn::Full {
            triggers,
            http_status_codes,
        }) => (triggers, http_status_codes),
        Some(BtpRetryOn::Triggers(triggers)) => {
            out.warnings.push(ConfigError::new(
                "spec.retry.retryOn",
                "a list of triggers: Envoy Gateway's field is retryOn.triggers",
            ));
            (triggers, &[])
        }
    };
    for t in triggers {
        match t {
            RetryTrigger::ServerError => on.server_error = true,
            RetryTrigger::GatewayError => on.gateway_error = true,
            RetryTrigger::Reset => on.reset = true,
            RetryTrigger::ResetBeforeRequest | RetryTrigger::RefusedStream => {}
            RetryTrigger::ConnectFailure => on.connect_failure = true,
            RetryTrigger::Retriable4xx => on.statuses.push(StatusCode::CONFLICT),
            RetryTrigger::RetriableStatusCodes => {}
            RetryTrigger::Cancelled => on.grpc.push(1),
            RetryTrigger::DeadlineExceeded => on.grpc.push(4),
            RetryTrigger::Internal => on.grpc.push(13),
            RetryTrigger::ResourceExhausted => on.grpc.push(8),
            RetryTrigger::Unavailable => on.grpc.push(14),
        }
    }
    for (j, c) in codes.iter().enumerate() {
        match retry_status(*c, &format!("spec.retry.retryOn.httpStatusCodes[{j}]")) {
            Ok(s) if !on.statuses.contains(&s) => on.statuses.push(s),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    let mut policy = RetryPolicy::new(attempts, on);
    if let Some(p) = &r.per_retry {
        if let Some(t) = &p.timeout {
            out.values.per_try_timeout = parse_duration("spec.retry.perRetry.timeout", t, errors);
        }
        if let Some(b) = &p.back_off {
            let base = b.base_interval.as_deref().and_then(|v| {
                parse_duration("spec.retry.perRetry.backOff.baseInterval", v, errors)
            });
            let max = b
                .max_interval
                .as_deref()
                .and_then(|v| parse_duration("spec.retry.perRetry.backOff.maxInterval", v, errors));
            let mut backoff = base.map_or_else(Backoff::default, Backoff::new);
            if let Some(max) = max {
                if max < backoff.base {
                    errors.push(ConfigError::new(
                        "spec.retry.perRetry.backOff.maxInterval",
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
    }
    Some(policy)
}

fn parse_duration(field: &str, v: &str, errors: &mut Vec<ConfigError>) -> Option<Duration> {
    match duration::parse(v) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(ConfigError::new(field, e.to_string()));
            None
        }
    }
}
