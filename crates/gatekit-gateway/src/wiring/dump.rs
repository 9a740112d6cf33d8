//! `/config` rendering: the served snapshot as JSON text, on request.
//!
//! A reload publishes a [`Snapshot`]: shared pointers to the translation, the bound
//! ports, the problems, the upstreams (their live handles) and a few short strings.
//! Nothing is rendered until `/config` is asked for ([`crate::ConfigDump::current`]).
//! The parts that only a reload changes (`listeners`, `resources`, `errors`) are then
//! rendered once per translation and kept ([`Parts`]); `upstreams` and
//! `accessPolicies` are rendered at each request, so they show the endpoints, health
//! and basic auth hash-check counters of that moment.
//!
//! Rendering writes text straight from the translation with borrowed `Serialize` views
//! (no intermediate `serde_json::Value`: for 5,000 routes a `Value` tree costs tens of
//! megabytes and tens of milliseconds; the text is 2.7 MB and takes a few).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use gatekit_core::ConfigError;
use gatekit_core::breaker::CircuitBreakerConfig;
use gatekit_core::retry::RetryBudgetConfig;
use gatekit_core::route::{Match, PathMatch, Route, RulePolicy, StringMatch};
use gatekit_k8s::status::{Condition, ResourceRef, ResourceStatus};
use gatekit_k8s::translate::{Protocol, TlsMode};
use gatekit_k8s::{ManifestError, Translation};
use serde::Serialize;

use super::upstreams::{self, SharedViews};
use crate::TrafficDefaults;
use crate::config_dump::Render;

/// What a reload served, for `/config`: rendered on the first request, then kept
/// while the next snapshots show the same translation.
#[derive(Default)]
pub(crate) struct Parts {
    generation: u64,
    /// `None` before the first served snapshot.
    served: Option<Served>,
    rendered: OnceLock<Rendered>,
    /// `accessPolicies` (rendered at each request: basic auth's counters are live).
    access: super::access::AccessDump,
}

struct Served {
    translation: Arc<Translation>,
    bound: BTreeMap<u16, SocketAddr>,
    errors: Vec<ConfigError>,
    defaults: Defaults,
}

impl Parts {
    /// The snapshot of generation `generation`: `translation` served on `bound` ports,
    /// with `errors`.
    pub(crate) fn new(
        generation: u64,
        translation: Arc<Translation>,
        bound: BTreeMap<u16, SocketAddr>,
        errors: Vec<ConfigError>,
        defaults: Defaults,
        access: super::access::AccessDump,
    ) -> Self {
        Self {
            generation,
            served: Some(Served {
                translation,
                bound,
                errors,
                defaults,
            }),
            rendered: OnceLock::new(),
            access,
        }
    }

    /// The served translation (tests look at what the snapshot keeps).
    #[cfg(test)]
    pub(crate) fn translation(&self) -> Option<&Translation> {
        self.served.as_ref().map(|s| &*s.translation)
    }

    fn rendered(&self) -> &Rendered {
        self.rendered.get_or_init(|| match &self.served {
            Some(s) => render(&s.translation, &s.bound, &s.errors, &s.defaults),
            None => Rendered::default(),
        })
    }
}

/// `/config` as published: rendered when asked for (see the [module docs](self)).
pub(crate) struct Snapshot {
    /// The served snapshot's parts, shared with the next snapshots of the same
    /// translation (a refused reload, an endpoint change).
    pub(crate) parts: Arc<Parts>,
    /// `lastReloadError`, as JSON text.
    pub(crate) last_error: String,
    /// `clusters`, as JSON text.
    pub(crate) clusters: String,
    pub(crate) upstreams: SharedViews,
    /// The served listener certificates (days left computed when rendered).
    pub(crate) certificates: Arc<[super::certs::ServedCert]>,
}

impl Render for Snapshot {
    fn render(&self) -> Bytes {
        let rendered = self.parts.rendered();
        let generation = self.parts.generation.to_string();
        let upstreams = upstreams::dump(&self.upstreams).to_string();
        let certificates =
            super::certs::dump(&self.certificates, gatekit_k8s::translate::unix_now());
        let access = self.parts.access.render();
        let document = Bytes::from(rendered.document(&[
            ("generation", Some(&generation)),
            ("listeners", None),
            ("upstreams", Some(&upstreams)),
            ("resources", None),
            ("errors", None),
            ("lastReloadError", Some(&self.last_error)),
            ("clusters", Some(&self.clusters)),
            ("certificates", Some(&certificates)),
            ("accessPolicies", Some(&access)),
        ]));
        drop(upstreams);
        // The render's garbage (for 5,000 routes, ~10 MB in the rendering thread's
        // arena) back to the kernel: without this each `/config` left RSS higher.
        super::trim::release_free_memory();
        document
    }
}

/// The parts of `/config` that change only on reload, as JSON text: `listeners`,
/// `resources` and `errors` are ranges of one buffer, `text`.
pub(crate) struct Rendered {
    text: Bytes,
    listeners: Range<usize>,
    resources: Range<usize>,
    errors: Range<usize>,
}

impl Default for Rendered {
    fn default() -> Self {
        Self {
            text: Bytes::from_static(b"[][][]"),
            listeners: 0..2,
            resources: 2..4,
            errors: 4..6,
        }
    }
}

impl Rendered {
    fn part(&self, range: &Range<usize>) -> &str {
        // The ranges are those of JSON text written by `render` (valid UTF-8, on
        // character boundaries); `[]` if they are ever not.
        self.text
            .get(range.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("[]")
    }

    /// The whole `/config` document, with `(name, JSON text)` fields spliced in where
    /// `None` stands for this snapshot's parts (`listeners`, `resources`, `errors`, in
    /// this order).
    pub(crate) fn document(&self, fields: &[(&str, Option<&str>)]) -> String {
        let parts = [
            self.part(&self.listeners),
            self.part(&self.resources),
            self.part(&self.errors),
        ];
        let len = self.text.len()
            + fields
                .iter()
                .map(|(n, v)| n.len() + v.map_or(0, str::len) + 4)
                .sum::<usize>()
            + 32;
        let mut out = String::with_capacity(len);
        let mut next = 0;
        out.push('{');
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            match value {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str(parts[next.min(2)]);
                    next += 1;
                }
            }
        }
        out.push('}');
        out
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing these plain structs cannot fail (string keys, no maps with other keys).
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// What the rules' effective policies are rendered with: the gateway's traffic
/// defaults, and where global rate limits are kept.
#[derive(Clone, Debug)]
pub(crate) struct Defaults {
    traffic: TrafficDefaults,
    /// The shared store's description (`redis://…`), if any.
    store: Option<Arc<str>>,
}

impl Defaults {
    pub(crate) fn new(gateway: &crate::Gateway) -> Self {
        Self {
            traffic: gateway.options().traffic_defaults,
            store: gateway
                .policy_state()
                .shared_limits()
                .map(|s| Arc::from(s.describe())),
        }
    }
}

/// Renders the listeners (with their routes), resource conditions and problems.
fn render(
    translation: &Translation,
    bound: &BTreeMap<u16, SocketAddr>,
    errors: &[ConfigError],
    defaults: &Defaults,
) -> Rendered {
    let ports: Vec<PortJson<'_>> = translation
        .listeners()
        .iter()
        .map(|port| PortJson {
            port: port.port(),
            address: bound.get(&port.port()).map(ToString::to_string),
            protocol: match port.protocol() {
                Protocol::Https => "HTTPS",
                Protocol::Tls => "TLS",
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
                _ => "HTTP",
            },
            listeners: port
                .listeners()
                .iter()
                .map(|l| ListenerJson {
                    gateway: l.gateway().to_string(),
                    listener_set: l.listener_set().map(ToString::to_string),
                    name: l.name(),
                    hostname: l.hostname(),
                    certificates: l
                        .certificates()
                        .iter()
                        .map(|c| c.secret().to_string())
                        .collect(),
                    tls_mode: l.tls_mode().map(|m| match m {
                        TlsMode::Passthrough => "Passthrough",
                        _ => "Terminate",
                    }),
                    idle_timeout_ms: match port.protocol() {
                        Protocol::Tls | Protocol::Tcp => Some(
                            l.idle_timeout()
                                .unwrap_or(gatekit_core::stream::DEFAULT_TCP_IDLE_TIMEOUT)
                                .as_millis(),
                        ),
                        Protocol::Udp => {
                            Some(gatekit_core::stream::DEFAULT_UDP_IDLE_TIMEOUT.as_millis())
                        }
                        _ => None,
                    },
                    connection_limit: l.connection_limit(),
                    routes: port
                        .listener_routes(l)
                        .iter()
                        .map(|r| r.id.to_string())
                        .chain(
                            port.listener_stream_routes(l)
                                .iter()
                                .map(|r| r.id.to_string()),
                        )
                        .collect(),
                })
                .collect(),
            connection_limit: match port.protocol() {
                Protocol::Udp => None,
                _ => super::connection_limit(port, &mut Vec::new()),
            },
            client_ip_detection: match port.protocol() {
                Protocol::Http | Protocol::Https => {
                    super::client_ip(port, &mut Vec::new()).map(|d| d.to_string())
                }
                _ => None,
            },
            stream_routes: port
                .stream_routes()
                .iter()
                .map(|r| StreamRouteJson::new(r))
                .collect(),
            routes: port
                .routes()
                .iter()
                .map(|r| RouteJson::new(r, defaults))
                .collect(),
        })
        .collect();
    // A Gateway's `status.addresses`: the addresses its programmed listeners are bound
    // on (an unspecified address, 0.0.0.0 or ::, means every interface of the host).
    let mut addresses: BTreeMap<&ResourceRef, BTreeSet<IpAddr>> = BTreeMap::new();
    for port in translation.listeners() {
        if let Some(addr) = bound.get(&port.port()) {
            for l in port.listeners() {
                addresses.entry(l.gateway()).or_default().insert(addr.ip());
            }
        }
    }
    let statuses: Vec<StatusJson<'_>> = translation
        .statuses()
        .iter()
        .map(|s| StatusJson::new(s, addresses.get(s.resource())))
        .collect();
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    // One buffer for the three parts.
    let mut text = Vec::new();
    let mut part = |value: &dyn erased::Json| {
        let start = text.len();
        if value.write(&mut text).is_err() {
            text.truncate(start);
            text.extend_from_slice(b"null");
        }
        start..text.len()
    };
    let listeners = part(&ports);
    let resources = part(&statuses);
    let errors = part(&errors);
    Rendered {
        text: Bytes::from(text),
        listeners,
        resources,
        errors,
    }
}

mod erased {
    /// A value serializable to JSON, object-safe.
    pub(super) trait Json {
        fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    }

    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
            serde_json::to_writer(out, self)
        }
    }
}

/// `lastReloadError` for refused manifests.
pub(crate) fn refused(errors: &[ManifestError]) -> String {
    #[derive(Serialize)]
    struct ErrorJson<'a> {
        file: &'a str,
        document: Option<usize>,
        kind: Option<&'a str>,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
        field: Option<&'a str>,
        reason: &'a str,
        message: String,
    }
    #[derive(Serialize)]
    struct Refused<'a> {
        message: &'static str,
        errors: Vec<ErrorJson<'a>>,
    }
    to_json(&Refused {
        message: "manifests refused; the last good configuration keeps serving",
        errors: errors
            .iter()
            .map(|e| ErrorJson {
                file: e.file(),
                document: e.document(),
                kind: e.kind(),
                namespace: e.namespace(),
                name: e.name(),
                field: e.field(),
                reason: e.reason(),
                message: e.to_string(),
            })
            .collect(),
    })
}

#[derive(Serialize)]
struct PortJson<'a> {
    port: u16,
    address: Option<String>,
    protocol: &'static str,
    listeners: Vec<ListenerJson<'a>>,
    /// Most connections open on the port at once (its listeners' ClientTrafficPolicy
    /// `connectionLimit`); absent: only the gateway-wide limit.
    #[serde(rename = "connectionLimit", skip_serializing_if = "Option::is_none")]
    connection_limit: Option<usize>,
    /// How the port finds its requests' clients behind trusted proxies (its listeners'
    /// ClientTrafficPolicy `clientIPDetection`); absent: the connection's peer.
    #[serde(rename = "clientIPDetection", skip_serializing_if = "Option::is_none")]
    client_ip_detection: Option<String>,
    routes: Vec<RouteJson<'a>>,
    /// TLSRoutes, TCPRoutes and UDPRoutes (TLS, TCP and UDP ports only).
    #[serde(rename = "streamRoutes", skip_serializing_if = "Vec::is_empty")]
    stream_routes: Vec<StreamRouteJson<'a>>,
}

/// A stream route as served: SNI hostnames, weighted backends, idle timeout.
#[derive(Serialize)]
struct StreamRouteJson<'a> {
    route: String,
    hostnames: &'a [String],
    created: i64,
    backends: Vec<StreamBackendJson<'a>>,
    #[serde(rename = "idleTimeoutMs", skip_serializing_if = "Option::is_none")]
    idle_timeout_ms: Option<u128>,
    /// Most connections (UDP: flows) open through the route on a port.
    #[serde(rename = "maxConnections", skip_serializing_if = "Option::is_none")]
    max_connections: Option<u32>,
    /// The client-address checks (policy names), outermost first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    access: Vec<&'a str>,
}

#[derive(Serialize)]
struct StreamBackendJson<'a> {
    name: &'a str,
    weight: u32,
}

impl<'a> StreamRouteJson<'a> {
    fn new(route: &'a gatekit_core::stream::StreamRoute) -> Self {
        Self {
            route: route.id.to_string(),
            hostnames: &route.hostnames,
            created: route.created,
            backends: route
                .backends
                .iter()
                .map(|b| StreamBackendJson {
                    name: &b.name,
                    weight: b.weight,
                })
                .collect(),
            idle_timeout_ms: route.idle_timeout.map(|d| d.as_millis()),
            max_connections: route.max_connections,
            access: route.access.iter().map(|a| a.name()).collect(),
        }
    }
}

#[derive(Serialize)]
struct ListenerJson<'a> {
    gateway: String,
    /// The ListenerSet that declares the listener (GEP-1713); absent for the Gateway's
    /// own listeners.
    #[serde(rename = "listenerSet", skip_serializing_if = "Option::is_none")]
    listener_set: Option<String>,
    name: &'a str,
    hostname: Option<&'a str>,
    certificates: Vec<String>,
    /// A TLS listener's mode (`Passthrough`, `Terminate`).
    #[serde(rename = "tlsMode", skip_serializing_if = "Option::is_none")]
    tls_mode: Option<&'static str>,
    /// The idle timeout of a stream listener's connections (UDP: flows) when their
    /// route sets none.
    #[serde(rename = "idleTimeoutMs", skip_serializing_if = "Option::is_none")]
    idle_timeout_ms: Option<u128>,
    /// The listener's ClientTrafficPolicy `connectionLimit` (the port applies the
    /// smallest of its listeners').
    #[serde(rename = "connectionLimit", skip_serializing_if = "Option::is_none")]
    connection_limit: Option<usize>,
    /// The routes this listener matches requests against (listener isolation); their
    /// rules are in the port's `routes`, one entry per listener.
    routes: Vec<String>,
}

#[derive(Serialize)]
struct RouteJson<'a> {
    route: String,
    hostnames: &'a [String],
    rules: Vec<RuleJson<'a>>,
}

impl<'a> RouteJson<'a> {
    fn new(route: &'a Route, defaults: &Defaults) -> Self {
        Self {
            route: route.id.to_string(),
            hostnames: &route.hostnames,
            rules: route
                .rules
                .iter()
                .enumerate()
                .map(|(i, rule)| RuleJson {
                    name: rule.name.as_deref(),
                    matches: rule.matches.iter().map(MatchJson::new).collect(),
                    backends: rule
                        .backends
                        .iter()
                        .map(|b| BackendJson {
                            name: &b.name,
                            weight: b.weight,
                            breaker: b.breaker.as_deref().map(BreakerJson::new),
                            retry_budget: b.retry_budget.as_deref().map(BudgetJson::new),
                            // The rule's own wins (see `gatekit_core::session`).
                            session_persistence: b
                                .session
                                .as_ref()
                                .filter(|_| rule.policy.session.is_none())
                                .map(|s| SessionJson::new(s, &b.name)),
                        })
                        .collect(),
                    session_persistence: rule
                        .policy
                        .session
                        .as_ref()
                        .map(|s| SessionJson::new(s, &format!("{}/rules[{i}]", route.id))),
                    policy: PolicyJson::new(&rule.policy, defaults),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleJson<'a> {
    name: Option<&'a str>,
    matches: Vec<MatchJson<'a>>,
    backends: Vec<BackendJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_persistence: Option<SessionJson>,
    policy: PolicyJson,
}

/// Session persistence as served: the cookie or header name in use (generated when
/// none is configured), its timeouts and cookie attributes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionJson {
    r#type: &'static str,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifetime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    absolute_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<String>,
}

impl SessionJson {
    fn new(s: &gatekit_core::session::SessionPersistence, scope: &str) -> Self {
        use gatekit_core::session::{CookieLifetime, SessionMode};
        let (r#type, lifetime_type, path) = match s.mode() {
            SessionMode::Cookie { lifetime, path } => (
                "Cookie",
                Some(match lifetime {
                    CookieLifetime::Session => "Session",
                    CookieLifetime::Permanent => "Permanent",
                }),
                Some(path.clone()),
            ),
            SessionMode::Header => ("Header", None, None),
            _ => ("Other", None, None),
        };
        Self {
            r#type,
            name: s.effective_name(scope),
            lifetime_type,
            path,
            absolute_timeout: s.absolute_timeout().map(|d| format!("{d:?}")),
            idle_timeout: s.idle_timeout().map(|d| format!("{d:?}")),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BackendJson<'a> {
    name: &'a str,
    weight: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    breaker: Option<BreakerJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_budget: Option<BudgetJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_persistence: Option<SessionJson>,
}

/// A rule's effective traffic policy: what it configures, and the gateway's defaults
/// where it configures nothing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyJson {
    /// `none`, `unsent-once (default)`, or the configured policy.
    retry: serde_json::Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rate_limits: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_request_body: Option<u64>,
    /// The access policies guarding the rule, outermost first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    access: Vec<String>,
}

impl PolicyJson {
    fn new(policy: &RulePolicy, defaults: &Defaults) -> Self {
        use gatekit_core::ratelimit::{ClientMatch, KeyPart, Unkeyed, ValueMatch};
        let retry = match &policy.retry {
            Some(r) => {
                let on = &r.on;
                let classes: Vec<&str> = [
                    (on.unsent, "unsent"),
                    (on.connect_failure, "connect-failure"),
                    (on.reset, "reset"),
                    (on.timeout, "timeout"),
                    (on.server_error, "5xx"),
                    (on.gateway_error, "gateway-error"),
                ]
                .into_iter()
                .filter_map(|(set, name)| set.then_some(name))
                .collect();
                serde_json::json!({
                    "attempts": r.attempts,
                    "retryOn": classes,
                    "statusCodes": on.statuses.iter().map(|s| s.as_u16()).collect::<Vec<_>>(),
                    "grpcStatusCodes": on.grpc,
                    "backoff": {
                        "base": format!("{:?}", r.backoff.base),
                        "max": format!("{:?}", r.backoff.max),
                    },
                    "maxReplayBody": r.max_replay_body,
                })
            }
            None if defaults.traffic.retry_unsent => serde_json::json!("unsent-once (default)"),
            None => serde_json::json!("none"),
        };
        let quota = |q: &gatekit_core::ratelimit::Quota| {
            serde_json::json!({
                "requests": q.requests,
                "interval": format!("{:?}", q.interval),
                "burst": q.burst,
            })
        };
        let rate_limits = policy
            .rate_limits
            .iter()
            .map(|l| {
                let key: Vec<String> = l
                    .key
                    .iter()
                    .map(|k| match k {
                        KeyPart::ClientIp => "clientIP".to_owned(),
                        KeyPart::Header(h) => format!("header:{h}"),
                        _ => "other".to_owned(),
                    })
                    .collect();
                let when: Vec<String> = l
                    .matches
                    .iter()
                    .map(|m| match m {
                        ClientMatch::Header {
                            name,
                            value,
                            invert,
                        } => {
                            let not = if *invert { "not " } else { "" };
                            match value {
                                ValueMatch::Exact(v) => {
                                    format!("{not}header:{name} == {:?}", String::from_utf8_lossy(v.as_bytes()))
                                }
                                ValueMatch::Regex(r) => {
                                    format!("{not}header:{name} ~ {:?}", r.as_str())
                                }
                                _ => format!("{not}header:{name} (other)"),
                            }
                        }
                        ClientMatch::SourceCidr(c) => format!("clientIP in {c}"),
                        _ => "other".to_owned(),
                    })
                    .collect();
                serde_json::json!({
                    "name": l.name,
                    "when": when,
                    "key": key,
                    "limit": quota(&l.quota),
                    "missingKey": match &l.unkeyed {
                        Unkeyed::Shared(q) => quota(q),
                        _ => serde_json::json!("not limited"),
                    },
                    "store": match (l.global, &defaults.store) {
                        (false, _) => "local".to_owned(),
                        (true, Some(store)) => store.to_string(),
                        (true, None) => "local: global, but no Redis configured (per replica)".to_owned(),
                    },
                })
            })
            .collect();
        Self {
            retry,
            rate_limits,
            max_concurrent_requests: policy.limits.max_concurrent_requests,
            max_request_body: policy.limits.max_request_body,
            access: policy.access.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BreakerJson {
    max_connections: Option<u32>,
    max_pending_requests: Option<u32>,
    max_parallel_requests: Option<u32>,
    max_parallel_retries: Option<u32>,
    max_requests_per_connection: Option<u32>,
}

impl BreakerJson {
    fn new(c: &CircuitBreakerConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            max_pending_requests: c.max_pending_requests,
            max_parallel_requests: c.max_parallel_requests,
            max_parallel_retries: c.max_parallel_retries,
            max_requests_per_connection: c.max_requests_per_connection,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BudgetJson {
    percent: f64,
    interval: String,
    min_retries_per_second: u32,
}

impl BudgetJson {
    fn new(c: &RetryBudgetConfig) -> Self {
        Self {
            percent: c.percent,
            interval: format!("{:?}", c.interval),
            min_retries_per_second: c.min_retries_per_second,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MatchJson<'a> {
    path: Option<ValueJson<'a>>,
    headers: Vec<ValueJson<'a>>,
    query_params: Vec<ValueJson<'a>>,
    method: Option<&'a str>,
}

#[derive(Serialize)]
struct ValueJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(rename = "type")]
    type_: &'static str,
    value: &'a str,
}

impl<'a> ValueJson<'a> {
    fn string(name: &'a str, m: &'a StringMatch) -> Self {
        let (type_, value) = match m {
            StringMatch::Exact(v) => ("Exact", v),
            StringMatch::Regex(v) => ("RegularExpression", v),
        };
        Self {
            name: Some(name),
            type_,
            value,
        }
    }
}

impl<'a> MatchJson<'a> {
    fn new(m: &'a Match) -> Self {
        Self {
            path: m.path.as_ref().map(|p| {
                let (type_, value) = match p {
                    PathMatch::Exact(v) => ("Exact", v),
                    PathMatch::Prefix(v) => ("PathPrefix", v),
                    PathMatch::Regex(v) => ("RegularExpression", v),
                };
                ValueJson {
                    name: None,
                    type_,
                    value,
                }
            }),
            headers: m
                .headers
                .iter()
                .map(|h| ValueJson::string(&h.name, &h.value))
                .collect(),
            query_params: m
                .query
                .iter()
                .map(|q| ValueJson::string(&q.name, &q.value))
                .collect(),
            method: m.method.as_ref().map(http::Method::as_str),
        }
    }
}

#[derive(Serialize)]
struct ConditionJson<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    status: &'static str,
    reason: &'a str,
    message: &'a str,
}

fn conditions(conditions: &[Condition]) -> Vec<ConditionJson<'_>> {
    conditions
        .iter()
        .map(|c| ConditionJson {
            type_: c.type_(),
            status: c.status().as_str(),
            reason: c.reason(),
            message: c.message(),
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ParentJson<'a> {
    /// The parent's kind: `Gateway` or `ListenerSet`.
    kind: &'a str,
    /// The parent's `namespace/name`.
    gateway: String,
    section_name: Option<&'a str>,
    port: Option<u16>,
    conditions: Vec<ConditionJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListenerStatusJson<'a> {
    name: &'a str,
    supported_kinds: Vec<SupportedKindJson<'a>>,
    attached_routes: u32,
    conditions: Vec<ConditionJson<'a>>,
}

#[derive(Serialize)]
struct SupportedKindJson<'a> {
    group: &'static str,
    kind: &'a str,
}

/// A Gateway `status.addresses` entry.
#[derive(Serialize)]
struct AddressJson {
    #[serde(rename = "type")]
    type_: &'static str,
    value: String,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    kind: &'a str,
    namespace: Option<&'a str>,
    name: &'a str,
    /// Gateways: the addresses its listeners are bound on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<AddressJson>,
    conditions: Vec<ConditionJson<'a>>,
    parents: Vec<ParentJson<'a>>,
    listeners: Vec<ListenerStatusJson<'a>>,
    /// Gateways: how many ListenerSets are attached.
    #[serde(
        rename = "attachedListenerSets",
        skip_serializing_if = "Option::is_none"
    )]
    attached_listener_sets: Option<u32>,
}

impl<'a> StatusJson<'a> {
    fn new(status: &'a ResourceStatus, addresses: Option<&BTreeSet<IpAddr>>) -> Self {
        let r = status.resource();
        Self {
            kind: r.kind(),
            namespace: r.namespace(),
            name: r.name(),
            // Translation's addresses (the gateway Service's) when it knows them,
            // else the addresses the listeners are bound on.
            addresses: match status.addresses() {
                Some(known) => known
                    .iter()
                    .map(|a| AddressJson {
                        type_: a.type_(),
                        value: a.value().to_owned(),
                    })
                    .collect(),
                None => addresses
                    .into_iter()
                    .flatten()
                    .map(|ip| AddressJson {
                        type_: "IPAddress",
                        value: ip.to_string(),
                    })
                    .collect(),
            },
            conditions: conditions(status.conditions()),
            parents: status
                .parents()
                .iter()
                .map(|p| ParentJson {
                    kind: p.parent().kind,
                    gateway: format!("{}/{}", p.parent().namespace, p.parent().name),
                    section_name: p.parent().section_name.as_deref(),
                    port: p.parent().port,
                    conditions: conditions(p.conditions()),
                })
                .collect(),
            listeners: status
                .listeners()
                .iter()
                .map(|l| ListenerStatusJson {
                    name: l.name(),
                    supported_kinds: l
                        .supported_kinds()
                        .iter()
                        .map(|k| SupportedKindJson {
                            group: gatekit_k8s::types::GATEWAY_GROUP,
                            kind: k,
                        })
                        .collect(),
                    attached_routes: l.attached_routes(),
                    conditions: conditions(l.conditions()),
                })
                .collect(),
            attached_listener_sets: status.attached_listener_sets(),
        }
    }
}
