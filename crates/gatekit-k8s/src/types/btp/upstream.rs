//! `spec.loadBalancer`, `spec.healthCheck` and the connection timeouts of
//! `spec.timeout` (`tcp.connectTimeout`, `http.connectionIdleTimeout`) of a
//! `BackendTrafficPolicy`: per-Service upstream settings, translated into the fields of gatekit's own `BackendPolicy`
//! ([`BackendPolicySpec`]) so that the gateway builds them exactly as it builds a
//! BackendPolicy's. See the [`btp` module docs](super) for what is implemented,
//! refused and ignored, and Envoy Gateway's API reference
//! (`api/v1alpha1/loadbalancer_types.go`, `healthcheck_types.go`) for the fields.

use std::collections::BTreeMap;

use gatekit_core::ConfigError;
use http::{HeaderName, Method};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::BtpRead;
use crate::duration;
use crate::types::policy::{
    ActiveHealthCheck, Algorithm, BackendPolicySpec, Connection, HashKey, HashKeyType, HealthCheck,
    LoadBalancer, Locality, PassiveHealthCheck, ProbeType, SlowStart, StatusRange,
};

/// Envoy Gateway's active health-check timeout when omitted.
pub const DEFAULT_ACTIVE_TIMEOUT: &str = "1s";
/// Envoy Gateway's active health-check interval when omitted.
pub const DEFAULT_ACTIVE_INTERVAL: &str = "3s";
/// Envoy Gateway's `unhealthyThreshold` when omitted.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Envoy Gateway's `healthyThreshold` when omitted.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;
/// Envoy Gateway's `consecutive5XxErrors` when omitted.
pub const DEFAULT_CONSECUTIVE_5XX: u32 = 5;
/// Envoy Gateway's `baseEjectionTime` when omitted.
pub const DEFAULT_BASE_EJECTION_TIME: &str = "30s";
/// Envoy Gateway's `maxEjectionPercent` when omitted (or 0).
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;

/// `proxyProtocol`: the header written to the backend at connection start.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BtpProxyProtocol {
    /// `V1` (text) or `V2` (binary).
    pub version: BtpProxyProtocolVersion,
    /// Other fields: not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `proxyProtocol.version`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtpProxyProtocolVersion {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

impl BtpProxyProtocolVersion {
    /// gatekit-core's name for it.
    pub fn version(self) -> gatekit_core::server::ProxyVersion {
        match self {
            Self::V1 => gatekit_core::server::ProxyVersion::V1,
            Self::V2 => gatekit_core::server::ProxyVersion::V2,
        }
    }
}

/// `loadBalancer`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BtpLoadBalancer {
    /// The algorithm.
    #[serde(rename = "type")]
    pub kind: BtpLoadBalancerType,
    /// What `ConsistentHash` hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<BtpConsistentHash>,
    /// Ramps traffic to new endpoints up (`RoundRobin`, `LeastRequest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<BtpSlowStart>,
    /// Zone-aware routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_aware: Option<BtpZoneAware>,
    /// Other fields (`backendUtilization`, `dynamicModule`, `endpointOverride`, ...):
    /// not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `loadBalancer.type`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtpLoadBalancerType {
    /// Consistent hashing (gatekit: Maglev) on `consistentHash`.
    ConsistentHash,
    /// Fewest outstanding requests (Envoy Gateway's default).
    LeastRequest,
    /// A random pick.
    Random,
    /// Each endpoint in turn.
    RoundRobin,
    /// Weights from backends' load reports: not implemented.
    BackendUtilization,
    /// A dynamic module's policy: not implemented.
    DynamicModule,
}

/// `loadBalancer.consistentHash`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpConsistentHash {
    /// What is hashed.
    #[serde(rename = "type")]
    pub kind: BtpConsistentHashType,
    /// The header (`type: Header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<BtpNamed>,
    /// The headers (`type: Headers`; gatekit hashes one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<BtpNamed>>,
    /// The cookie (`type: Cookie`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<BtpCookie>,
    /// The query parameters (`type: QueryParams`; gatekit hashes one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<Vec<BtpNamed>>,
    /// The Maglev table size (65537 in Envoy Gateway): ignored, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
}

/// `consistentHash.type`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtpConsistentHashType {
    /// The client's address.
    #[serde(rename = "SourceIP")]
    SourceIp,
    /// One header.
    Header,
    /// Several headers.
    Headers,
    /// A cookie.
    Cookie,
    /// Query parameters.
    QueryParams,
}

/// `{name}`: a header or query parameter.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct BtpNamed {
    /// The name.
    pub name: String,
}

/// `consistentHash.cookie`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpCookie {
    /// The cookie's name.
    pub name: String,
    /// Lifetime of a cookie Envoy generates when the request has none: not implemented
    /// (gatekit never generates the cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Attributes of the generated cookie: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// `loadBalancer.slowStart`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct BtpSlowStart {
    /// The ramp-up window, a duration.
    pub window: String,
}

/// `loadBalancer.zoneAware`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BtpZoneAware {
    /// Prefer the gateway's own zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_local: Option<BtpPreferLocal>,
    /// Fixed zone weights: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_zones: Option<Vec<serde_json::Value>>,
}

/// `zoneAware.preferLocal`: its fields (`force`, `minEndpointsThreshold`,
/// `percentageEnabled`) are not implemented.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct BtpPreferLocal {
    /// Every field: not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `healthCheck`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BtpHealthCheck {
    /// Probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<BtpActiveHealthCheck>,
    /// Outlier detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<BtpPassiveHealthCheck>,
    /// Percentage of healthy endpoints below which health is ignored (50 when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_threshold: Option<u32>,
    /// Other fields: not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `healthCheck.active`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BtpActiveHealthCheck {
    /// `HTTP`, `TCP` or `GRPC`.
    #[serde(rename = "type")]
    pub kind: BtpProbeType,
    /// Time a probe may take (1s when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time between probes (3s when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Random delay before the first probe: ignored, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_jitter: Option<String>,
    /// Failed probes that make an endpoint unhealthy (3 when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Passed probes that make an endpoint healthy (1 when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// The HTTP probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<BtpHttpHealthCheck>,
    /// The TCP probe's payloads: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<BtpTcpHealthCheck>,
    /// The gRPC probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<BtpGrpcHealthCheck>,
    /// Health-check logging: ignored, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_log: Option<serde_json::Value>,
    /// Other fields (`overrides`, ...): not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `healthCheck.active.type`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum BtpProbeType {
    /// An HTTP request.
    Http,
    /// A TCP connect.
    Tcp,
    /// `grpc.health.v1.Health/Check`.
    Grpc,
}

/// `healthCheck.active.http`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BtpHttpHealthCheck {
    /// The path probed.
    pub path: String,
    /// The method (GET when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The Host of the probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Statuses counted healthy (200 only when omitted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<i64>,
    /// Other fields (`retriableStatuses`, `expectedResponse`, `requestBody`): not
    /// implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `healthCheck.active.tcp`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct BtpTcpHealthCheck {
    /// Payload sent: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<serde_json::Value>,
    /// Payload expected: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive: Option<serde_json::Value>,
}

/// `healthCheck.active.grpc`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct BtpGrpcHealthCheck {
    /// The service named in the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// `healthCheck.passive`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BtpPassiveHealthCheck {
    /// Count local-origin failures apart: `true` is not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    /// Envoy's ejection-sweep interval: ignored, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Only with `splitExternalLocalOriginErrors` (not implemented): ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Consecutive 502/503/504 that eject (unset or 0: not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive 5xx that eject (5 when omitted).
    #[serde(
        default,
        rename = "consecutive5XxErrors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    /// First ejection's length (30s when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// Most endpoints ejected at once, percent (10 when omitted or 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i64>,
    /// Failure-percentage ejection: not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_percentage_threshold: Option<u32>,
    /// Eject one endpoint even over `maxEjectionPercent`: `true` is not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_eject_one_endpoint: Option<bool>,
    /// Other fields: not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

// === translation ===

/// What a policy's `loadBalancer`, `healthCheck` and connection timeouts set for the
/// Services its targets reach, in the fields of gatekit's BackendPolicy. Each field is one unit for
/// conflicts and precedence; [`FIELDS`](Self::FIELDS) names them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct BtpUpstream {
    /// `loadBalancer.type` (and `consistentHash`).
    pub(crate) balancer: Option<(Algorithm, Option<HashKey>)>,
    /// `loadBalancer.slowStart`.
    pub(crate) slow_start: Option<SlowStart>,
    /// `loadBalancer.zoneAware`.
    pub(crate) locality: Option<Locality>,
    /// `healthCheck.panicThreshold`.
    pub(crate) panic_threshold: Option<u32>,
    /// `healthCheck.active`.
    pub(crate) active: Option<ActiveHealthCheck>,
    /// `healthCheck.passive`.
    pub(crate) passive: Option<PassiveHealthCheck>,
    /// `timeout.tcp.connectTimeout` (a duration string, checked).
    pub(crate) connect_timeout: Option<String>,
    /// `timeout.http.connectionIdleTimeout` (a duration string, checked).
    pub(crate) idle_timeout: Option<String>,
    /// `proxyProtocol.version` (not a BackendPolicy field: the upstream carries it).
    pub(crate) proxy_protocol: Option<BtpProxyProtocolVersion>,
}

impl BtpUpstream {
    /// The fields, as Envoy Gateway names them (in [`Self::set`] order).
    pub(crate) const FIELDS: [&'static str; 9] = [
        "loadBalancer.type",
        "loadBalancer.slowStart",
        "loadBalancer.zoneAware",
        "healthCheck.panicThreshold",
        "healthCheck.active",
        "healthCheck.passive",
        "timeout.tcp.connectTimeout",
        "timeout.http.connectionIdleTimeout",
        "proxyProtocol",
    ];

    /// Per field (see [`Self::FIELDS`]) its value, as JSON, when set.
    fn set(&self) -> [Option<serde_json::Value>; 9] {
        fn json<T: Serialize>(v: Option<&T>) -> Option<serde_json::Value> {
            v.map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
        }
        [
            json(self.balancer.as_ref()),
            json(self.slow_start.as_ref()),
            json(self.locality.as_ref()),
            json(self.panic_threshold.as_ref()),
            json(self.active.as_ref()),
            json(self.passive.as_ref()),
            json(self.connect_timeout.as_ref()),
            json(self.idle_timeout.as_ref()),
            json(self.proxy_protocol.as_ref()),
        ]
    }

    /// Nothing set.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether any field of gatekit's BackendPolicy is set (all but `proxyProtocol`).
    pub(crate) fn sets_policy_fields(&self) -> bool {
        Self {
            proxy_protocol: None,
            ..self.clone()
        } != Self::default()
    }

    /// The fields set.
    pub(crate) fn fields(&self) -> Vec<&'static str> {
        Self::FIELDS
            .into_iter()
            .zip(self.set())
            .filter_map(|(f, v)| v.map(|_| f))
            .collect()
    }

    /// The fields both set, to different values.
    pub(crate) fn differing(&self, other: &Self) -> Vec<&'static str> {
        Self::FIELDS
            .into_iter()
            .zip(self.set().into_iter().zip(other.set()))
            .filter_map(|(f, (a, b))| match (a, b) {
                (Some(a), Some(b)) if a != b => Some(f),
                _ => None,
            })
            .collect()
    }

    /// Sets every field `more` sets.
    pub(crate) fn overlay(&mut self, more: &Self) {
        if more.balancer.is_some() {
            self.balancer.clone_from(&more.balancer);
        }
        if more.slow_start.is_some() {
            self.slow_start.clone_from(&more.slow_start);
        }
        if more.locality.is_some() {
            self.locality.clone_from(&more.locality);
        }
        if more.panic_threshold.is_some() {
            self.panic_threshold = more.panic_threshold;
        }
        if more.active.is_some() {
            self.active.clone_from(&more.active);
        }
        if more.passive.is_some() {
            self.passive.clone_from(&more.passive);
        }
        if more.connect_timeout.is_some() {
            self.connect_timeout.clone_from(&more.connect_timeout);
        }
        if more.idle_timeout.is_some() {
            self.idle_timeout.clone_from(&more.idle_timeout);
        }
        if more.proxy_protocol.is_some() {
            self.proxy_protocol = more.proxy_protocol;
        }
    }

    /// The fields set here that the gatekit BackendPolicy `bp` also sets (gatekit's
    /// win).
    pub(crate) fn shadowed_by(&self, bp: &BackendPolicySpec) -> Vec<&'static str> {
        let lb = bp.load_balancer.as_ref();
        let hc = bp.health_check.as_ref();
        let conn = bp.connection.as_ref();
        let by_bp = [
            lb.is_some_and(|l| l.algorithm.is_some() || l.hash_key.is_some()),
            lb.is_some_and(|l| l.slow_start.is_some()),
            lb.is_some_and(|l| l.locality.is_some()),
            lb.is_some_and(|l| l.panic_threshold.is_some()),
            hc.is_some_and(|h| h.active.is_some()),
            hc.is_some_and(|h| h.passive.is_some()),
            conn.is_some_and(|c| c.connect_timeout.is_some()),
            conn.is_some_and(|c| c.idle_timeout.is_some()),
            // A BackendPolicy has no PROXY protocol field.
            false,
        ];
        Self::FIELDS
            .into_iter()
            .zip(self.set())
            .zip(by_bp)
            .filter_map(|((f, v), bp)| (v.is_some() && bp).then_some(f))
            .collect()
    }

    /// The upstream policy of a Service: its gatekit BackendPolicy `bp` (if any), with
    /// every field it does not set taken from here.
    pub(crate) fn fill(&self, bp: Option<&BackendPolicySpec>) -> BackendPolicySpec {
        let mut out = bp.cloned().unwrap_or_default();
        if self.balancer.is_some()
            || self.slow_start.is_some()
            || self.locality.is_some()
            || self.panic_threshold.is_some()
        {
            let lb = out.load_balancer.get_or_insert_with(LoadBalancer::default);
            if let Some((algorithm, key)) = &self.balancer
                && lb.algorithm.is_none()
                && lb.hash_key.is_none()
            {
                lb.algorithm = Some(*algorithm);
                lb.hash_key.clone_from(key);
            }
            if lb.slow_start.is_none() {
                lb.slow_start.clone_from(&self.slow_start);
            }
            if lb.locality.is_none() {
                lb.locality.clone_from(&self.locality);
            }
            if lb.panic_threshold.is_none() {
                lb.panic_threshold = self.panic_threshold;
            }
        }
        if self.active.is_some() || self.passive.is_some() {
            let hc = out.health_check.get_or_insert_with(HealthCheck::default);
            if hc.active.is_none() {
                hc.active.clone_from(&self.active);
            }
            if hc.passive.is_none() {
                hc.passive.clone_from(&self.passive);
            }
        }
        if self.connect_timeout.is_some() || self.idle_timeout.is_some() {
            let c = out.connection.get_or_insert_with(Connection::default);
            if c.connect_timeout.is_none() {
                c.connect_timeout.clone_from(&self.connect_timeout);
            }
            if c.idle_timeout.is_none() {
                c.idle_timeout.clone_from(&self.idle_timeout);
            }
        }
        out
    }
}

/// Reads `loadBalancer` and `healthCheck` into `out.upstream`.
pub(super) fn read_upstream(
    lb: Option<&BtpLoadBalancer>,
    hc: Option<&BtpHealthCheck>,
    out: &mut BtpRead,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(lb) = lb {
        read_load_balancer(lb, out, errors);
    }
    if let Some(hc) = hc {
        for k in hc.other.keys() {
            out.unimplemented.push(format!("spec.healthCheck.{k}"));
        }
        if let Some(p) = hc.panic_threshold {
            if p > 100 {
                errors.push(ConfigError::new(
                    "spec.healthCheck.panicThreshold",
                    format!("{p} is not a percentage (0-100)"),
                ));
            }
            out.upstream.panic_threshold = Some(p);
        }
        if let Some(a) = &hc.active {
            out.upstream.active = read_active(a, out, errors);
        }
        if let Some(p) = &hc.passive {
            out.upstream.passive = Some(read_passive(p, out, errors));
        }
    }
}

/// Reads `timeout.tcp.connectTimeout` and `timeout.http.connectionIdleTimeout` into
/// `out.upstream`: durations longer than 0s, in canonical form.
pub(super) fn read_connection_timeouts(
    connect: Option<&str>,
    idle: Option<&str>,
    out: &mut BtpRead,
    errors: &mut Vec<ConfigError>,
) {
    let positive = |field: &str, v: &str, errors: &mut Vec<ConfigError>| match duration::parse(v) {
        Ok(d) if d.is_zero() => {
            errors.push(ConfigError::new(field, "must be longer than 0s"));
            None
        }
        // Canonical, so that `1s` and `1000ms` on one Service do not conflict.
        Ok(d) => Some(canonical_duration(d).unwrap_or_else(|| v.to_owned())),
        Err(e) => {
            errors.push(ConfigError::new(field, e.to_string()));
            None
        }
    };
    if let Some(v) = connect {
        out.upstream.connect_timeout = positive("spec.timeout.tcp.connectTimeout", v, errors);
    }
    if let Some(v) = idle {
        out.upstream.idle_timeout = positive("spec.timeout.http.connectionIdleTimeout", v, errors);
    }
}

/// `d` as a Gateway API duration in one canonical spelling (`1h2m3s4ms`, zero parts
/// left out); None when the hours need more than the format's 5 digits.
fn canonical_duration(d: std::time::Duration) -> Option<String> {
    let secs = d.as_secs();
    let (h, m, s, ms) = (secs / 3600, secs / 60 % 60, secs % 60, d.subsec_millis());
    if h > 99_999 {
        return None;
    }
    let out: String = [(h, "h"), (m, "m"), (s, "s"), (u64::from(ms), "ms")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    Some(out)
}

fn check_duration(field: &str, v: &str, errors: &mut Vec<ConfigError>) {
    if let Err(e) = duration::parse(v) {
        errors.push(ConfigError::new(field, e.to_string()));
    }
}

fn read_load_balancer(lb: &BtpLoadBalancer, out: &mut BtpRead, errors: &mut Vec<ConfigError>) {
    const F: &str = "spec.loadBalancer";
    for k in lb.other.keys() {
        out.unimplemented.push(format!("{F}.{k}"));
    }
    let algorithm = match lb.kind {
        BtpLoadBalancerType::ConsistentHash => Some(Algorithm::ConsistentHash),
        BtpLoadBalancerType::LeastRequest => Some(Algorithm::LeastRequest),
        BtpLoadBalancerType::Random => Some(Algorithm::Random),
        BtpLoadBalancerType::RoundRobin => Some(Algorithm::RoundRobin),
        BtpLoadBalancerType::BackendUtilization => {
            out.unimplemented
                .push(format!("{F}.type: BackendUtilization"));
            None
        }
        BtpLoadBalancerType::DynamicModule => {
            out.unimplemented.push(format!("{F}.type: DynamicModule"));
            None
        }
    };
    let hashing = lb.kind == BtpLoadBalancerType::ConsistentHash;
    let key = match (&lb.consistent_hash, hashing) {
        (Some(ch), true) => read_hash(ch, out, errors),
        (None, true) => {
            errors.push(ConfigError::new(
                format!("{F}.consistentHash"),
                "is required when type is ConsistentHash",
            ));
            None
        }
        (Some(_), false) => {
            errors.push(ConfigError::new(
                format!("{F}.consistentHash"),
                "is only allowed when type is ConsistentHash",
            ));
            None
        }
        (None, false) => None,
    };
    if let Some(a) = algorithm {
        out.upstream.balancer = Some((a, key));
    }
    if let Some(s) = &lb.slow_start {
        let field = format!("{F}.slowStart.window");
        check_duration(&field, &s.window, errors);
        if matches!(
            lb.kind,
            BtpLoadBalancerType::Random | BtpLoadBalancerType::ConsistentHash
        ) {
            errors.push(ConfigError::new(
                format!("{F}.slowStart"),
                format!(
                    "is only supported with RoundRobin and LeastRequest, not {:?}",
                    lb.kind
                ),
            ));
        }
        out.upstream.slow_start = Some(SlowStart {
            window: s.window.clone(),
        });
    }
    if let Some(z) = &lb.zone_aware {
        if z.weighted_zones.is_some() {
            out.unimplemented
                .push(format!("{F}.zoneAware.weightedZones"));
        }
        if let Some(p) = &z.prefer_local {
            if hashing {
                errors.push(ConfigError::new(
                    format!("{F}.zoneAware.preferLocal"),
                    "is not supported with ConsistentHash",
                ));
            }
            for k in p.other.keys() {
                out.unimplemented
                    .push(format!("{F}.zoneAware.preferLocal.{k}"));
            }
            // gatekit's locality: prefer the gateway's own zone, fail over by priority.
            out.upstream.locality = Some(Locality::default());
        }
    }
}

fn read_hash(
    ch: &BtpConsistentHash,
    out: &mut BtpRead,
    errors: &mut Vec<ConfigError>,
) -> Option<HashKey> {
    const F: &str = "spec.loadBalancer.consistentHash";
    if ch.table_size.is_some() {
        out.ignored.push(format!("{F}.tableSize"));
    }
    let named = |kind: HashKeyType, name: &str| HashKey {
        type_: kind,
        name: Some(name.to_owned()),
    };
    let header = |field: String, name: &str, errors: &mut Vec<ConfigError>| {
        if HeaderName::from_bytes(name.as_bytes()).is_ok() {
            Some(named(HashKeyType::Header, name))
        } else {
            errors.push(ConfigError::new(
                field,
                format!("{name:?} is not a header name"),
            ));
            None
        }
    };
    let missing = |field: &str, kind: &str, errors: &mut Vec<ConfigError>| {
        errors.push(ConfigError::new(
            format!("{F}.{field}"),
            format!("is required when type is {kind}"),
        ));
        None
    };
    match ch.kind {
        BtpConsistentHashType::SourceIp => Some(HashKey {
            type_: HashKeyType::SourceIp,
            name: None,
        }),
        BtpConsistentHashType::Header => match &ch.header {
            Some(h) => header(format!("{F}.header.name"), &h.name, errors),
            None => missing("header", "Header", errors),
        },
        BtpConsistentHashType::Headers => match ch.headers.as_deref() {
            Some([h]) => header(format!("{F}.headers[0].name"), &h.name, errors),
            Some([_, _, ..]) => {
                out.unimplemented
                    .push(format!("{F}.headers (more than one header)"));
                None
            }
            _ => missing("headers", "Headers", errors),
        },
        BtpConsistentHashType::Cookie => match &ch.cookie {
            Some(c) => {
                if c.ttl.is_some() {
                    out.unimplemented.push(format!("{F}.cookie.ttl"));
                }
                if c.attributes.is_some() {
                    out.unimplemented.push(format!("{F}.cookie.attributes"));
                }
                if c.name.is_empty() {
                    errors.push(ConfigError::new(
                        format!("{F}.cookie.name"),
                        "must not be empty",
                    ));
                    return None;
                }
                Some(named(HashKeyType::Cookie, &c.name))
            }
            None => missing("cookie", "Cookie", errors),
        },
        BtpConsistentHashType::QueryParams => match ch.query_params.as_deref() {
            Some([q]) if !q.name.is_empty() => Some(named(HashKeyType::QueryParameter, &q.name)),
            Some([_]) => {
                errors.push(ConfigError::new(
                    format!("{F}.queryParams[0].name"),
                    "must not be empty",
                ));
                None
            }
            Some([_, _, ..]) => {
                out.unimplemented
                    .push(format!("{F}.queryParams (more than one parameter)"));
                None
            }
            _ => missing("queryParams", "QueryParams", errors),
        },
    }
}

fn read_active(
    a: &BtpActiveHealthCheck,
    out: &mut BtpRead,
    errors: &mut Vec<ConfigError>,
) -> Option<ActiveHealthCheck> {
    const F: &str = "spec.healthCheck.active";
    for k in a.other.keys() {
        out.unimplemented.push(format!("{F}.{k}"));
    }
    if a.initial_jitter.is_some() {
        out.ignored.push(format!("{F}.initialJitter"));
    }
    if a.health_check_log.is_some() {
        out.ignored.push(format!("{F}.healthCheckLog"));
    }
    let timeout = a.timeout.as_deref().unwrap_or(DEFAULT_ACTIVE_TIMEOUT);
    let interval = a.interval.as_deref().unwrap_or(DEFAULT_ACTIVE_INTERVAL);
    check_duration(&format!("{F}.timeout"), timeout, errors);
    check_duration(&format!("{F}.interval"), interval, errors);
    if let Some(j) = &a.initial_jitter {
        check_duration(&format!("{F}.initialJitter"), j, errors);
    }
    let mut threshold = |field: &str, v: Option<u32>, default: u32| {
        let v = v.unwrap_or(default);
        if v == 0 {
            errors.push(ConfigError::new(
                format!("{F}.{field}"),
                "must be at least 1",
            ));
        }
        v
    };
    let unhealthy = threshold(
        "unhealthyThreshold",
        a.unhealthy_threshold,
        DEFAULT_UNHEALTHY_THRESHOLD,
    );
    let healthy = threshold(
        "healthyThreshold",
        a.healthy_threshold,
        DEFAULT_HEALTHY_THRESHOLD,
    );
    let mut check = ActiveHealthCheck {
        type_: ProbeType::Tcp,
        path: None,
        method: None,
        host: None,
        expected_statuses: None,
        interval: Some(interval.to_owned()),
        timeout: Some(timeout.to_owned()),
        healthy_threshold: Some(healthy),
        unhealthy_threshold: Some(unhealthy),
        grpc_service: None,
    };
    let only = |field: &str, kind: &str, errors: &mut Vec<ConfigError>| {
        errors.push(ConfigError::new(
            format!("{F}.{field}"),
            format!("is only allowed when type is {kind}"),
        ));
    };
    if a.kind != BtpProbeType::Http && a.http.is_some() {
        only("http", "HTTP", errors);
    }
    if a.kind != BtpProbeType::Tcp && a.tcp.is_some() {
        only("tcp", "TCP", errors);
    }
    if a.kind != BtpProbeType::Grpc && a.grpc.is_some() {
        only("grpc", "GRPC", errors);
    }
    match a.kind {
        BtpProbeType::Tcp => {
            if let Some(t) = &a.tcp {
                if t.send.is_some() {
                    out.unimplemented.push(format!("{F}.tcp.send"));
                }
                if t.receive.is_some() {
                    out.unimplemented.push(format!("{F}.tcp.receive"));
                }
            }
        }
        BtpProbeType::Grpc => {
            check.type_ = ProbeType::Grpc;
            check.grpc_service = a.grpc.as_ref().and_then(|g| g.service.clone());
        }
        BtpProbeType::Http => {
            check.type_ = ProbeType::Http;
            let Some(h) = &a.http else {
                errors.push(ConfigError::new(
                    format!("{F}.http"),
                    "is required when type is HTTP",
                ));
                return None;
            };
            for k in h.other.keys() {
                out.unimplemented.push(format!("{F}.http.{k}"));
            }
            if !h.path.starts_with('/') {
                errors.push(ConfigError::new(
                    format!("{F}.http.path"),
                    format!("{:?} is not an absolute path", h.path),
                ));
            }
            check.path = Some(h.path.clone());
            if let Some(m) = &h.method {
                // Envoy Gateway upper-cases the method.
                let m = m.to_ascii_uppercase();
                if Method::from_bytes(m.as_bytes()).is_err() {
                    errors.push(ConfigError::new(
                        format!("{F}.http.method"),
                        format!("{m:?} is not an HTTP method"),
                    ));
                }
                check.method = Some(m);
            }
            check.host.clone_from(&h.hostname);
            let mut statuses = Vec::new();
            for (i, s) in h.expected_statuses.iter().enumerate() {
                match u16::try_from(*s) {
                    Ok(s) if (100..=599).contains(&s) => statuses.push(StatusRange {
                        start: s,
                        end: None,
                    }),
                    _ => errors.push(ConfigError::new(
                        format!("{F}.http.expectedStatuses[{i}]"),
                        format!("{s} is not an HTTP status (100-599)"),
                    )),
                }
            }
            if statuses.is_empty() {
                // Envoy Gateway's default: 200 only.
                statuses.push(StatusRange {
                    start: 200,
                    end: None,
                });
            }
            check.expected_statuses = Some(statuses);
        }
    }
    Some(check)
}

fn read_passive(
    p: &BtpPassiveHealthCheck,
    out: &mut BtpRead,
    errors: &mut Vec<ConfigError>,
) -> PassiveHealthCheck {
    const F: &str = "spec.healthCheck.passive";
    for k in p.other.keys() {
        out.unimplemented.push(format!("{F}.{k}"));
    }
    if p.split_external_local_origin_errors == Some(true) {
        out.unimplemented
            .push(format!("{F}.splitExternalLocalOriginErrors: true"));
    } else if p.consecutive_local_origin_failures.is_some() {
        out.ignored.push(format!(
            "{F}.consecutiveLocalOriginFailures (no effect without splitExternalLocalOriginErrors)"
        ));
    }
    if p.failure_percentage_threshold.is_some() {
        out.unimplemented
            .push(format!("{F}.failurePercentageThreshold"));
    }
    if p.always_eject_one_endpoint == Some(true) {
        out.unimplemented
            .push(format!("{F}.alwaysEjectOneEndpoint: true"));
    }
    if let Some(i) = &p.interval {
        check_duration(&format!("{F}.interval"), i, errors);
        out.ignored.push(format!("{F}.interval"));
    }
    let base = p
        .base_ejection_time
        .as_deref()
        .unwrap_or(DEFAULT_BASE_EJECTION_TIME);
    check_duration(&format!("{F}.baseEjectionTime"), base, errors);
    let percent = match p.max_ejection_percent {
        None | Some(0) => DEFAULT_MAX_EJECTION_PERCENT,
        Some(n) => match u32::try_from(n) {
            Ok(n) if n <= 100 => n,
            _ => {
                errors.push(ConfigError::new(
                    format!("{F}.maxEjectionPercent"),
                    format!("{n} is not a percentage (0-100)"),
                ));
                DEFAULT_MAX_EJECTION_PERCENT
            }
        },
    };
    PassiveHealthCheck {
        consecutive_5xx: Some(p.consecutive_5xx_errors.unwrap_or(DEFAULT_CONSECUTIVE_5XX)),
        consecutive_gateway_errors: p.consecutive_gateway_errors.filter(|n| *n > 0),
        base_ejection_time: Some(base.to_owned()),
        max_ejection_percent: Some(percent),
    }
}
