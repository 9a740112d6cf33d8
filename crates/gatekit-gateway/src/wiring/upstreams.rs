//! The upstream registry: one [`Upstream`] per backend name (`<ns>/<svc>:<port>`), kept
//! across reloads.
//!
//! A reload hands the registry the translation's upstream specs. For each name:
//!
//! - **same name, same policy and protocol**: the endpoints are applied with
//!   `Change::Replace`, which keeps every surviving endpoint's state (in-flight counts,
//!   EWMA, health, slow-start clock) — a route edit never resets balancing;
//! - **same name, new policy or app protocol**: the upstream is rebuilt (a new
//!   [`UpstreamConfig`] cannot be applied in place), with fresh health checking; its
//!   endpoint clients get the new [`PoolLimits`] (breaker thresholds, connect and idle
//!   timeouts), so a changed `connection` timeout applies to the connections opened
//!   from then on;
//! - **new name**: created;
//! - **gone**: kept until [`Upstreams::retain`] is called, which the wiring does only
//!   after the new route tables are stored, so requests routed by the old tables still
//!   find their upstream (they hold a clone of it anyway).
//!
//! A spec that is the very `Arc` applied last time (an incremental translation hands
//! over the same one for what did not change) is skipped without a look. The update
//! says which names were created, rebuilt or are gone: route tables compile the rules
//! naming them again (a compiled rule holds the upstream it resolved).
//!
//! Each upstream's per-endpoint service is the shared [`Client`]'s
//! [`EndpointClient`] for that address (HTTP/1.1, or h2c prior knowledge for
//! `kubernetes.io/h2c` / gRPC services; the same over TLS, h2 by ALPN, when a
//! BackendTLSPolicy covers the port: [`upstream_transport`]). The client keys its
//! connection pools by address and transport, TLS settings compared by value, so
//! upstreams with different TLS settings (another CA, SNI, SAN list or client
//! certificate) never share a connection, and one whose settings did not change keeps
//! its pool across a rebuild. Active health checks ([`HealthChecker`])
//! follow the upstream's endpoint set (a task holding it weakly); outlier detection
//! (a [`LazyOutlier`], the upstream's outcome observer, whose
//! [`OutlierDetector`](gatekit_lb::OutlierDetector) is made at the upstream's first
//! failure) is given the set by [`Upstreams::set_endpoints`] whenever it changes. Each
//! sends its events to a [`HealthEvents`] sink of its own, made with it (the detector's
//! at the first failure: most upstreams never need one), whose callback logs the event
//! and counts it (no task or channel per upstream: nothing runs and nothing is
//! allocated for events while none happens). The `gatekit_endpoint_healthy` series are
//! read from the registry's endpoints at each scrape (no gauge per endpoint).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use gatekit_core::client::{Client, EndpointClient, PoolLimits, Transport};
use gatekit_core::{Change, ConfigError};
use gatekit_k8s::translate::{AppProtocol, UpstreamSpec};
use gatekit_k8s::types::BackendPolicySpec;
use gatekit_k8s::types::policy::{self, ProbeType};
use gatekit_lb::health::{CheckKind, GrpcCheck, HealthCheckConfig, HttpCheck};
use gatekit_lb::outlier::OutlierConfig;
use gatekit_lb::{
    Algorithm, HashKey, HealthChecker, HealthEvent, HealthEvents, Locality, NewEndpoint,
    OutcomeObserver, SlowStart, Upstream, UpstreamConfig,
};
use tokio::sync::Notify;

use super::outlier::{LazyOutlier, OutlierParts};
use crate::Metrics;

/// One backend name's upstream and what watches it (keyed in the registry by the
/// backend name, which the endpoint-health series' labels share). What the spec says
/// (app protocol, the pool's timeouts for `/config`) is read from the spec, not kept:
/// an entry is in a map node with 10 others, 32 bytes each.
pub(crate) struct Entry {
    /// The spec last applied (its policy, app protocol and TLS settings are those the
    /// upstream was built with: another of any of them rebuilds it).
    spec: Arc<UpstreamSpec>,
    upstream: Upstream<EndpointClient>,
    /// Only with active health checking (few upstreams: one box for its two parts).
    active: Option<Box<Active>>,
    /// Also the upstream's outcome observer. Its events' sink is closed when the entry
    /// goes, as the checker's is.
    outlier: Option<Arc<LazyOutlier>>,
}

/// An upstream's active health checking.
struct Active {
    /// Kept for its task: dropped with the entry, it stops.
    _checker: HealthChecker,
    /// The checker's health events' sink, whose callback sets the endpoint-health
    /// gauges: closed when the entry goes (the upstream, held by requests in flight,
    /// may still report events, which must not bring its forgotten gauges back).
    events: HealthEvents,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(active) = &self.active {
            active.events.close_callback();
        }
        if let Some(outlier) = &self.outlier {
            outlier.close();
        }
    }
}

/// What an [`Upstreams::update`] changed.
#[derive(Debug, Default)]
pub(crate) struct UpstreamChanges {
    /// Policy errors.
    pub(crate) errors: Vec<ConfigError>,
    /// Names whose upstream is new, rebuilt or gone: what they resolve to changed.
    pub(crate) stale: BTreeSet<String>,
    /// Names created.
    pub(crate) created: Vec<String>,
    /// Names no longer in the specs (still there until [`Upstreams::retain`]).
    pub(crate) gone: Vec<String>,
}

/// The registry's upstreams by name, shared with `/config`, which renders them when it is
/// asked (one map for both: a second map of views, copied from the entries, cost ~220
/// bytes per upstream).
pub(crate) type SharedViews = Arc<std::sync::Mutex<BTreeMap<Arc<str>, Entry>>>;

/// `/config`'s `upstreams`: each upstream's settings and its endpoints with their state
/// and health now. The upstreams are the registry's at this moment: during a reload they
/// may be a step ahead of the rest of the document.
pub(crate) fn dump(views: &SharedViews) -> serde_json::Value {
    let entries = views
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = tokio::time::Instant::now();
    let mut out = serde_json::Map::new();
    for (name, entry) in entries.iter() {
        let upstream = &entry.upstream;
        // As the upstream was built (an error was reported then).
        let limits = pool_limits(entry.spec.policy(), &mut Vec::new(), name);
        let timeouts = (limits.connect_timeout(), limits.idle_timeout());
        let endpoints: Vec<serde_json::Value> = upstream
            .endpoints()
            .into_iter()
            .map(|(ep, health)| {
                serde_json::json!({
                    "address": ep.addr().to_string(),
                    "weight": ep.weight(),
                    "state": format!("{:?}", ep.state()),
                    "healthy": health.is_active_healthy(),
                    "ejected": health.is_ejected(now),
                    "inFlight": upstream.in_flight(ep.addr()),
                })
            })
            .collect();
        out.insert(
            name.to_string(),
            serde_json::json!({
                "algorithm": upstream.config().algorithm().to_string(),
                "protocol": protocol(entry.spec.app_protocol()),
                "activeHealthCheck": entry.active.is_some(),
                // The upstream's own timeouts; null: the client's.
                "connectTimeout": timeouts.0.map(millis),
                "idleTimeout": timeouts.1.map(millis),
                "outlierDetection": entry.outlier.is_some(),
                "tls": tls_view(&entry.spec),
                "endpoints": endpoints,
            }),
        );
    }
    serde_json::Value::Object(out)
}

/// The upstreams of the served configuration, by backend name (see the [module
/// docs](self)).
pub(crate) struct Upstreams {
    client: Client,
    metrics: Metrics,
    /// Where every upstream's health events go (one for all).
    sink: Arc<HealthSink>,
    /// Keyed by each entry's own `name` (one copy of the name per upstream); shared
    /// with `/config`.
    entries: SharedViews,
    default_locality: Option<Locality>,
    /// The endpoint-client factories of upstreams in cleartext with the client's pool
    /// settings (HTTP/1.1, HTTP/2): shared by all of them, one allocation each instead
    /// of one per upstream.
    plain: [Arc<EndpointFactory>; 2],
    /// Whether upstreams without passive health checking get
    /// [`OutlierConfig::connect_failures_only`].
    eject_refusing: bool,
    /// [`OutlierConfig::connect_failures_only`], shared by the detectors that use it.
    default_outlier: Arc<OutlierParts>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("names", &self.lock().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    pub(crate) fn new(client: Client, metrics: Metrics) -> Self {
        let plain = [Transport::http1(), Transport::http2()].map(|transport| {
            Arc::new(EndpointFactory {
                client: client.clone(),
                transport,
                limits: PoolLimits::default(),
            })
        });
        let entries = SharedViews::default();
        let source: std::sync::Weak<_> = Arc::downgrade(&entries);
        metrics.set_endpoint_health_source(source);
        let sink = Arc::new(HealthSink {
            metrics: metrics.clone(),
            changed: Notify::new(),
        });
        Self {
            client,
            metrics,
            default_outlier: Arc::new(OutlierParts {
                config: Arc::new(OutlierConfig::connect_failures_only()),
                sink: Arc::clone(&sink),
            }),
            sink,
            entries,
            default_locality: None,
            plain,
            eject_refusing: true,
        }
    }

    /// Whether upstreams whose policy sets no passive health check eject endpoints that
    /// refuse connections (the gateway's `trafficDefaults.ejectRefusingEndpoints`).
    /// Applies to upstreams built from now on.
    pub(crate) fn set_eject_refusing(&mut self, eject: bool) {
        self.eject_refusing = eject;
    }

    /// Creates, updates or rebuilds the upstream of every spec (a spec ptr-equal to the
    /// one applied last is skipped). Returns the policy errors (a policy the balancer
    /// cannot use makes its upstream run with defaults) and which names changed identity.
    /// Names not in `specs` stay until [`retain`](Self::retain).
    ///
    /// With `only` (the names a translation says changed, see
    /// `Translation::changes`), only those names are looked at: every other name is
    /// taken to have the spec applied last.
    pub(crate) fn update(
        &mut self,
        specs: &BTreeMap<String, Arc<UpstreamSpec>>,
        only: Option<&BTreeSet<String>>,
    ) -> UpstreamChanges {
        let mut changes = UpstreamChanges::default();
        let mut work: Vec<(&String, &Arc<UpstreamSpec>, bool)> = Vec::new();
        let mut entries = self.lock();
        // What to do with `spec` for `name`, whose entry is `entry`: skip a spec that is
        // the same `Arc` as last time, else update or rebuild.
        let plan = |entry: Option<&mut Entry>,
                    name: &'_ String,
                    spec: &'_ Arc<UpstreamSpec>,
                    changes: &mut UpstreamChanges|
         -> Option<bool> {
            match entry {
                Some(e) if Arc::ptr_eq(&e.spec, spec) => None,
                Some(e)
                    if e.spec.policy() == spec.policy()
                        && e.spec.app_protocol() == spec.app_protocol()
                        && e.spec.tls() == spec.tls() =>
                {
                    e.spec = Arc::clone(spec);
                    Some(false)
                }
                Some(_) => Some(true),
                None => {
                    changes.created.push(name.clone());
                    Some(true)
                }
            }
        };
        match only {
            Some(names) => {
                for name in names {
                    match specs.get_key_value(name) {
                        Some((name, spec)) => {
                            if let Some(rebuild) =
                                plan(entries.get_mut(name.as_str()), name, spec, &mut changes)
                            {
                                work.push((name, spec, rebuild));
                            }
                        }
                        None if entries.contains_key(name.as_str()) => {
                            changes.gone.push(name.clone());
                        }
                        None => {}
                    }
                }
            }
            None => {
                // One walk of both maps in name order (both are sorted): a name lookup per
                // spec was most of a reload's apply at 5,000 upstreams. Entries before a
                // spec's name are gone.
                let mut walk = entries.iter_mut().peekable();
                for (name, spec) in specs {
                    while let Some((gone, _)) = walk.next_if(|(k, _)| &***k < name.as_str()) {
                        changes.gone.push(gone.to_string());
                    }
                    let entry = walk.next_if(|(k, _)| ***k == **name).map(|(_, e)| e);
                    if let Some(rebuild) = plan(entry, name, spec, &mut changes) {
                        work.push((name, spec, rebuild));
                    }
                }
                changes.gone.extend(walk.map(|(gone, _)| gone.to_string()));
            }
        }
        changes.stale.extend(changes.gone.iter().cloned());
        // New names, added together after the loop.
        let mut fresh: Vec<(Arc<str>, Entry)> = Vec::new();
        for (name, spec, rebuild) in work {
            if rebuild {
                let (shared_name, entry) = self.build(name, spec, &mut changes.errors);
                changes.stale.insert(name.clone());
                // Keyed by the new entry's name (`insert` would keep the old key). The
                // old one is dropped (its checker stops) after the new one exists.
                match entries.remove(name.as_str()) {
                    Some(old) => {
                        entries.insert(shared_name, entry);
                        drop(old);
                    }
                    None => {
                        apply_endpoints(&entry, spec.endpoints());
                        fresh.push((shared_name, entry));
                        continue;
                    }
                }
            }
            if let Some(entry) = entries.get(name.as_str()) {
                apply_endpoints(entry, spec.endpoints());
            }
        }
        add_all(&mut entries, fresh);
        changes
    }

    /// The registry's own copy of the name `name` (to share it).
    pub(crate) fn shared_name(&self, name: &str) -> Option<Arc<str>> {
        self.lock().get_key_value(name).map(|(k, _)| Arc::clone(k))
    }

    /// The upstreams of Service `namespace/name`: each one's name, Service port and
    /// whether it is the port's UDP one. Found by their names, which start with
    /// `namespace/name:` (`gatekit_k8s::translate::backend_name`), in the sorted
    /// registry.
    pub(crate) fn of_service(&self, namespace: &str, name: &str) -> Vec<(Arc<str>, u16, bool)> {
        use std::ops::Bound;
        let prefix = format!("{namespace}/{name}:");
        let entries = self.lock();
        entries
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter(|(_, entry)| {
                let service = entry.spec.service();
                service.name() == name && service.namespace().unwrap_or_default() == namespace
            })
            .map(|(key, entry)| (Arc::clone(key), entry.spec.port(), entry.spec.is_udp()))
            .collect()
    }

    /// The spec last applied to upstream `name`.
    pub(crate) fn spec(&self, name: &str) -> Option<Arc<UpstreamSpec>> {
        self.lock().get(name).map(|e| Arc::clone(&e.spec))
    }

    /// Replaces the endpoints of upstream `name` (keeping every surviving endpoint's
    /// state). Returns false if there is no such upstream.
    pub(crate) fn set_endpoints(
        &mut self,
        name: &str,
        endpoints: &[gatekit_core::Endpoint],
    ) -> bool {
        match self.lock().get_key_value(name) {
            Some((_, entry)) => {
                apply_endpoints(entry, endpoints);
                true
            }
            None => false,
        }
    }

    /// Sets the locality of upstreams whose BackendPolicy says none (the local cluster,
    /// for multi-cluster failover). Applies to upstreams built from now on.
    pub(crate) fn set_default_locality(&mut self, locality: Option<Locality>) {
        self.default_locality = locality;
    }

    /// Drops the upstreams `gone` names (what [`update`](Self::update) found gone; call
    /// once the tables that no longer name them are served).
    pub(crate) fn retain(&mut self, gone: &[String]) {
        let mut entries = self.lock();
        for name in gone {
            if entries.remove(name.as_str()).is_some() {
                self.metrics.forget_upstream(name);
            }
        }
    }

    /// The client upstreams connect with (for backends outside the cluster).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The upstream of `name`, for route tables.
    pub(crate) fn upstream(&self, name: &str) -> Option<Upstream<EndpointClient>> {
        self.lock().get(name).map(|e| e.upstream.clone())
    }

    /// What `/config` shows of every upstream (shared, kept up to date; see
    /// [`SharedViews`]).
    pub(crate) fn views(&self) -> SharedViews {
        Arc::clone(&self.entries)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Arc<str>, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry of a new upstream `name`, with the name it is to be keyed by.
    fn build(
        &self,
        name: &str,
        spec: &Arc<UpstreamSpec>,
        errors: &mut Vec<ConfigError>,
    ) -> (Arc<str>, Entry) {
        let transport = upstream_transport(spec);
        let shared_name: Arc<str> = Arc::from(name);
        let policy = spec.policy();
        let mut config = upstream_config(policy, errors, name);
        if let Some(locality) = &self.default_locality
            && policy
                .and_then(|p| p.load_balancer.as_ref())
                .and_then(|lb| lb.locality.as_ref())
                .is_none()
        {
            config = config.with_locality(locality.clone());
        }
        // A policy's passive health check, else (unless switched off) the protective
        // default: endpoints that refuse connections leave rotation for a while.
        let outlier = policy
            .and_then(|p| p.health_check.as_ref())
            .and_then(|h| h.passive.as_ref())
            .map(|passive| {
                Arc::new(OutlierParts {
                    config: Arc::new(outlier_config(passive)),
                    sink: Arc::clone(&self.sink),
                })
            })
            .or_else(|| {
                self.eject_refusing
                    .then(|| Arc::clone(&self.default_outlier))
            })
            .map(|parts| Arc::new(LazyOutlier::new(parts, Arc::clone(&shared_name))));
        if let Some(outlier) = &outlier {
            config = config.with_observer(Arc::clone(outlier) as Arc<dyn OutcomeObserver>);
        }
        let limits = pool_limits(policy, errors, name);
        let plain = spec.tls().is_none()
            && limits.connect_timeout().is_none()
            && limits.idle_timeout().is_none()
            && limits.max_connections().is_none()
            && limits.max_requests_per_connection().is_none();
        let factory = if plain {
            let h2 = matches!(spec.app_protocol(), AppProtocol::H2c | AppProtocol::H2);
            Arc::clone(&self.plain[usize::from(h2)])
        } else {
            Arc::new(EndpointFactory {
                client: self.client.clone(),
                transport: transport.clone(),
                limits,
            })
        };
        let upstream = Upstream::with_factory(config, factory);
        if let Some(outlier) = &outlier {
            outlier.observe(&upstream);
        }
        let active = policy
            .and_then(|p| p.health_check.as_ref())
            .and_then(|h| h.active.as_ref());
        let active = active.map(|active| {
            let events = self.sink.events(Arc::clone(&shared_name));
            // Follows the upstream weakly: a removed upstream is not kept alive by
            // its checker's task (5,000 deleted routes once left 28 MB behind).
            let checker = HealthChecker::for_upstream_with_events(
                health_config(active, spec.app_protocol(), &transport),
                &upstream,
                events.clone(),
            );
            Box::new(Active {
                _checker: checker,
                events,
            })
        });
        let entry = Entry {
            spec: Arc::clone(spec),
            upstream,
            active,
            outlier,
        };
        (shared_name, entry)
    }
}

/// Makes an upstream's endpoint clients: the shared [`Client`]'s, with the upstream's
/// transport and pool limits.
struct EndpointFactory {
    client: Client,
    transport: Transport,
    limits: PoolLimits,
}

impl NewEndpoint for EndpointFactory {
    type Service = EndpointClient;

    fn new_endpoint(&self, endpoint: &gatekit_core::Endpoint) -> EndpointClient {
        self.client
            .endpoint_with(endpoint.addr(), self.transport.clone(), self.limits.clone())
    }
}

/// How `/config` names an upstream's protocol.
fn protocol(app_protocol: AppProtocol) -> &'static str {
    match app_protocol {
        AppProtocol::H2c => "h2c",
        AppProtocol::H2 => "h2 over TLS",
        AppProtocol::Https => "http/1.1 over TLS",
        _ => "http/1.1",
    }
}

/// TLS to the endpoints (BackendTLSPolicy) of `spec`, as `/config` shows it.
fn tls_view(spec: &UpstreamSpec) -> serde_json::Value {
    spec.tls().map_or(serde_json::Value::Null, |tls| {
        serde_json::json!({
            "policy": tls.policy().to_string(),
            "serverName": tls.hostname(),
            "subjectAltNames": tls
                .subject_alt_names()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            "clientCertificate": tls.client_certificate().map(|c| c.secret().to_string()),
        })
    })
}

/// Adds the `fresh` entries (of names not in `entries`). More of them than there are
/// entries (a first load): the map is built again from both, in one pass, with full
/// nodes. Inserted one by one in name order, a `BTreeMap`'s nodes are left about half
/// full after each split: ~5.5 entries in a node of 11, 114 bytes per upstream instead
/// of 57.
fn add_all(entries: &mut BTreeMap<Arc<str>, Entry>, fresh: Vec<(Arc<str>, Entry)>) {
    if fresh.len() > entries.len() {
        let old = std::mem::take(entries);
        *entries = old.into_iter().chain(fresh).collect();
    } else {
        entries.extend(fresh);
    }
}

/// Replaces the endpoints of `entry` (keeping every surviving endpoint's state) and
/// tells its outlier detector the new set (`/metrics` reads the set when scraped).
fn apply_endpoints(entry: &Entry, endpoints: &[gatekit_core::Endpoint]) {
    let generation = entry.upstream.generation();
    entry.upstream.apply(Change::Replace(endpoints.to_vec()));
    // The outlier detector learns the set here, where it changes (a follow task per
    // upstream cost ~0.5 KB each).
    if let Some(outlier) = &entry.outlier
        && entry.upstream.generation() != generation
    {
        outlier.set_changed(&entry.upstream);
    }
}

/// `gatekit_endpoint_healthy`: every upstream's endpoints, healthy when no active check
/// marked them unhealthy and they are not ejected.
impl crate::metrics::EndpointHealthSource for std::sync::Mutex<BTreeMap<Arc<str>, Entry>> {
    fn for_each_endpoint(&self, each: &mut dyn FnMut(&Arc<str>, std::net::SocketAddr, bool)) {
        let entries = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        for (name, entry) in entries.iter() {
            for (endpoint, health) in entry.upstream.endpoints() {
                each(name, endpoint.addr(), health.is_available(now));
            }
        }
    }

    fn has_no_endpoint(&self) -> bool {
        let entries = self
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .values()
            .all(|entry| entry.upstream.endpoints().is_empty())
    }
}

/// The pool limits of a policy: the connection thresholds of its circuit breaker bound
/// the pool of the whole upstream (every endpoint's connections together), and its
/// `connection` timeouts replace the client's connect and idle timeouts for this
/// upstream's connections. A timeout the client cannot use is reported and left at the
/// client's (the policy was validated when loaded, so this is rare).
fn pool_limits(
    policy: Option<&BackendPolicySpec>,
    errors: &mut Vec<ConfigError>,
    name: &str,
) -> PoolLimits {
    let mut limits = policy
        .and_then(BackendPolicySpec::circuit_breaker_config)
        .map(|breaker| PoolLimits::from_config(name, &breaker))
        .unwrap_or_default();
    if let Some(c) = policy.and_then(|p| p.connection.as_ref()) {
        match c.connect_timeout() {
            Ok(Some(t)) => limits = limits.with_connect_timeout(t),
            Ok(None) => {}
            Err(e) => errors.push(ConfigError::new(
                e.field(),
                format!("{} (upstream {name})", e.reason()),
            )),
        }
        match c.idle_timeout() {
            Ok(Some(t)) => limits = limits.with_idle_timeout(t),
            Ok(None) => {}
            Err(e) => errors.push(ConfigError::new(
                e.field(),
                format!("{} (upstream {name})", e.reason()),
            )),
        }
    }
    limits
}

/// A duration as `/config` shows it: `"300ms"`.
fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Where the health events of every upstream go: its endpoint-health gauges and event
/// counters. One for all the upstreams; each event sink's callback holds it and its
/// upstream's name.
pub(super) struct HealthSink {
    metrics: Metrics,
    /// Signalled on every health event (no one waits: `/config` reads health when it
    /// is rendered).
    changed: Notify,
}

impl HealthSink {
    /// A sink of health events of upstream `name`, whose callback sets its gauges
    /// (called on the thread that sends the event; events are rare) until it is
    /// closed ([`HealthEvents::close_callback`]: when the upstream's entry goes).
    pub(super) fn events(self: &Arc<Self>, name: Arc<str>) -> HealthEvents {
        HealthEvents::with_callback(gauge_setter(Arc::clone(self), name))
    }
}

/// What sets an upstream's endpoint-health gauges from its health events.
fn gauge_setter(
    sink: Arc<HealthSink>,
    name: Arc<str>,
) -> impl Fn(&HealthEvent) + Send + Sync + 'static {
    move |event| {
        let HealthSink { metrics, changed } = &*sink;
        // The `gatekit_endpoint_healthy` series read the endpoint's health when scraped.
        tracing::info!(
            upstream = %name,
            endpoint = %event.addr(),
            kind = ?event.kind(),
            reason = event.reason().unwrap_or(""),
            "endpoint health changed"
        );
        metrics.record_health_event(&name, event.kind());
        changed.notify_one();
    }
}

/// The balancer algorithm a BackendPolicy names: the one place the CRD's schema type
/// meets gatekit-lb's (exhaustive: a new CRD value does not compile until it maps).
fn algorithm(algorithm: policy::Algorithm) -> Algorithm {
    match algorithm {
        policy::Algorithm::RoundRobin => Algorithm::RoundRobin,
        policy::Algorithm::WeightedRoundRobin => Algorithm::WeightedRoundRobin,
        policy::Algorithm::LeastRequest => Algorithm::LeastRequest,
        policy::Algorithm::IpHash => Algorithm::IpHash,
        policy::Algorithm::ConsistentHash => Algorithm::ConsistentHash,
        policy::Algorithm::PeakEwma => Algorithm::PeakEwma,
        policy::Algorithm::Random => Algorithm::Random,
    }
}

/// The balancer configuration of a policy. A setting the balancer cannot use is
/// reported and left at its default (the policy was validated at translation, so this
/// is rare: e.g. an invalid header name for a hash key).
fn upstream_config(
    policy: Option<&BackendPolicySpec>,
    errors: &mut Vec<ConfigError>,
    name: &str,
) -> UpstreamConfig {
    let Some(lb) = policy.and_then(|p| p.load_balancer.as_ref()) else {
        return UpstreamConfig::new(Algorithm::RoundRobin);
    };
    let mut config = UpstreamConfig::new(lb.algorithm.map(algorithm).unwrap_or_default());
    if let Some(key) = &lb.hash_key {
        let name_of = || key.name.clone().unwrap_or_default();
        let hash_key = match key.type_ {
            policy::HashKeyType::SourceIp => Some(HashKey::SourceIp),
            policy::HashKeyType::Header => http::HeaderName::from_str(&name_of())
                .ok()
                .map(HashKey::Header),
            policy::HashKeyType::Cookie => Some(HashKey::Cookie(name_of().into())),
            policy::HashKeyType::QueryParameter => Some(HashKey::Query(name_of().into())),
        };
        match hash_key {
            Some(k) => config = config.with_hash_key(k),
            None => errors.push(ConfigError::new(
                "spec.loadBalancer.hashKey.name",
                format!("not a valid header name (upstream {name})"),
            )),
        }
    }
    if let Some(slow) = &lb.slow_start {
        match slow.window() {
            Ok(window) => config = config.with_slow_start(SlowStart::new(window)),
            Err(e) => errors.push(ConfigError::new(
                "spec.loadBalancer.slowStart.window",
                e.to_string(),
            )),
        }
    }
    if let Some(loc) = &lb.locality {
        let mut locality = Locality::default();
        if let Some(zone) = &loc.prefer_zone {
            locality = locality.with_zone(zone.as_str());
        }
        if let Some(threshold) = loc.failover_threshold.filter(|t| *t > 0) {
            // A level keeps all its traffic while available share × factor ≥ 1.
            locality = locality.with_overprovisioning(100.0 / f64::from(threshold.min(100)));
        }
        config = config.with_locality(locality);
    }
    if let Some(panic) = lb.panic_threshold {
        config = config.with_panic_threshold(f64::from(panic.min(100)) / 100.0);
    }
    config
}

/// The transport of an upstream: HTTP/1.1 or HTTP/2 (h2c in cleartext, h2 over TLS),
/// over TLS with the settings of its BackendTLSPolicy (and client certificate) when
/// the spec has them.
pub(crate) fn upstream_transport(spec: &UpstreamSpec) -> Transport {
    let transport = match spec.app_protocol() {
        AppProtocol::H2c | AppProtocol::H2 => Transport::http2(),
        _ => Transport::http1(),
    };
    match spec.tls() {
        Some(tls) => transport.with_tls(tls.settings().clone()),
        None => transport,
    }
}

fn health_config(
    active: &policy::ActiveHealthCheck,
    protocol: AppProtocol,
    transport: &Transport,
) -> HealthCheckConfig {
    let mut config = HealthCheckConfig::default();
    if let Ok(Some(interval)) = active.interval() {
        config = config.interval(interval);
    }
    if let Ok(Some(timeout)) = active.timeout() {
        config = config.timeout(timeout);
    }
    if let Some(n) = active.healthy_threshold {
        config = config.healthy_threshold(n);
    }
    if let Some(n) = active.unhealthy_threshold {
        config = config.unhealthy_threshold(n);
    }
    let kind = match active.type_ {
        ProbeType::Tcp => CheckKind::Tcp,
        ProbeType::Grpc => {
            let mut check = GrpcCheck::default().tls(transport.clone());
            if let Some(service) = &active.grpc_service {
                check = check.service(service.as_str());
            }
            CheckKind::Grpc(check)
        }
        _ => {
            let mut check = HttpCheck::default()
                .http2(matches!(protocol, AppProtocol::H2c | AppProtocol::H2))
                .tls(transport.clone());
            if let Some(path) = &active.path {
                check = check.path(path.as_str());
            }
            if let Some(method) = active
                .method
                .as_deref()
                .and_then(|m| http::Method::from_str(m).ok())
            {
                check = check.method(method);
            }
            if let Some(host) = &active.host {
                check = check.host(host.as_str());
            }
            if let Some(ranges) = &active.expected_statuses {
                check = check
                    .expected_statuses(ranges.iter().map(|r| r.start..=r.end.unwrap_or(r.start)));
            }
            CheckKind::Http(check)
        }
    };
    config.kind(kind)
}

fn outlier_config(passive: &policy::PassiveHealthCheck) -> OutlierConfig {
    let mut config = OutlierConfig::default();
    if passive.consecutive_5xx.is_some() || passive.consecutive_gateway_errors.is_some() {
        config = config
            .consecutive_5xx(passive.consecutive_5xx)
            .consecutive_gateway_errors(passive.consecutive_gateway_errors);
    }
    if let Ok(Some(time)) = passive.base_ejection_time() {
        config = config.base_ejection_time(time);
    }
    if let Some(percent) = passive.max_ejection_percent {
        config = config.max_ejection_percent(u8::try_from(percent.min(100)).unwrap_or(100));
    }
    config
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn policy(json: serde_json::Value) -> BackendPolicySpec {
        serde_json::from_value(json).unwrap()
    }

    /// A registry entry is 32 bytes (in a map node with 10 others) and an upstream's
    /// lazy outlier detector 64 (an `Arc` block of 80: two malloc size classes below
    /// 104).
    #[test]
    fn an_entry_and_a_lazy_outlier_stay_small() {
        assert!(std::mem::size_of::<Entry>() <= 32);
        assert!(std::mem::size_of::<LazyOutlier>() <= 64);
    }

    /// Upstreams added together (a first load) are kept in a map built at once, its
    /// nodes full; added a few at a time, inserted; either way each is found by name.
    #[tokio::test]
    async fn upstreams_added_at_once_or_one_by_one_are_all_found() {
        let mut upstreams = Upstreams::new(
            Client::new(gatekit_core::client::ClientConfig::default()),
            Metrics::new(),
        );
        // One spec under many names (the registry does not look at the names).
        let web = web_specs(false).into_values().next().expect("one upstream");
        let spec = |i: usize| (format!("default/svc{i:04}:80"), Arc::clone(&web));
        let mut specs: BTreeMap<String, Arc<UpstreamSpec>> = (0..200).map(spec).collect();
        let first = upstreams.update(&specs, None);
        assert_eq!(first.created.len(), 200);
        specs.extend((200..210).map(spec));
        let second = upstreams.update(&specs, None);
        assert_eq!(second.created.len(), 10);
        let entries = upstreams.lock();
        assert_eq!(entries.len(), 210);
        for name in specs.keys() {
            assert!(entries.contains_key(name.as_str()), "{name}");
        }
    }

    /// A policy's connection timeouts become the pool's, alongside the breaker's
    /// connection thresholds.
    #[test]
    fn connection_timeouts_become_pool_limits() {
        let mut errors = Vec::new();
        let none = pool_limits(None, &mut errors, "ns/web:80");
        assert_eq!((none.connect_timeout(), none.idle_timeout()), (None, None));

        let p = policy(serde_json::json!({
            "targetRefs": [],
            "connection": { "connectTimeout": "200ms", "idleTimeout": "300ms" },
            "circuitBreaker": { "maxConnections": 7, "maxRequestsPerConnection": 3 },
        }));
        let limits = pool_limits(Some(&p), &mut errors, "ns/web:80");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(limits.connect_timeout(), Some(Duration::from_millis(200)));
        assert_eq!(limits.idle_timeout(), Some(Duration::from_millis(300)));
        assert_eq!(limits.max_connections().map(|c| c.max()), Some(7));
        assert_eq!(
            limits.max_requests_per_connection().map(NonZeroU32::get),
            Some(3)
        );

        let p = policy(serde_json::json!({
            "targetRefs": [],
            "connection": { "idleTimeout": "0s" },
        }));
        let limits = pool_limits(Some(&p), &mut errors, "ns/web:80");
        assert_eq!(limits.idle_timeout(), None, "left at the client's");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field(), "spec.connection.idleTimeout");
    }

    /// The specs of one Service `default/web` port 80 with one endpoint: with no
    /// policy (so the default outlier detector follows it) or with an active health
    /// check (a checker follows it too).
    fn web_specs(health_check: bool) -> BTreeMap<String, Arc<UpstreamSpec>> {
        let policy = if health_check {
            "---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: hc, namespace: default }
spec:
  targetRefs: [{ group: \"\", kind: Service, name: web }]
  healthCheck: { active: { type: tcp, interval: 1s, timeout: 200ms } }
"
        } else {
            ""
        };
        let text = format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: 80, protocol: HTTP }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules: [{{ backendRefs: [{{ name: web, port: 80 }}] }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: web, namespace: default }}
spec: {{ ports: [{{ port: 80 }}] }}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{ kubernetes.io/service-name: web }}
addressType: IPv4
endpoints: [{{ addresses: [127.0.0.1] }}]
ports: [{{ port: 8080 }}]
{policy}"
        );
        let (set, _) = gatekit_k8s::ResourceSet::from_documents([("web.yaml", text.as_str())])
            .expect("manifests load");
        let translation = gatekit_k8s::translate(&set, &gatekit_k8s::TranslateOptions::default());
        assert!(
            translation.errors().is_empty(),
            "{:?}",
            translation.errors()
        );
        translation.upstreams().clone()
    }

    /// A removed upstream is freed, with its outlier detector and health checker and
    /// their follow tasks (they hold it weakly; a strong handle there leaked every
    /// removed upstream).
    #[tokio::test]
    async fn a_removed_upstream_is_freed_with_its_followers() {
        for health_check in [false, true] {
            let mut upstreams = Upstreams::new(
                Client::new(gatekit_core::client::ClientConfig::default()),
                Metrics::new(),
            );
            let specs = web_specs(health_check);
            assert!(upstreams.update(&specs, None).errors.is_empty());
            let upstream = upstreams.upstream("default/web:80").expect("built");
            assert_eq!(upstream.endpoints().len(), 1);
            let weak = upstream.downgrade();
            drop(upstream);
            {
                let entries = upstreams.lock();
                let entry = &entries["default/web:80"];
                assert!(entry.outlier.is_some());
                assert_eq!(entry.active.is_some(), health_check);
            }

            let gone = upstreams.update(&BTreeMap::new(), None).gone;
            assert_eq!(gone, ["default/web:80"]);
            upstreams.retain(&gone);
            // The follow tasks end when the upstream's generation watch closes, on
            // their next poll.
            tokio::time::timeout(Duration::from_secs(5), async {
                while weak.upgrade().is_some() {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("upstream still alive (health check: {health_check})"));
        }
    }

    /// An ejection shows as 0 in the endpoint's gauge (read at the scrape), and is
    /// counted through the upstream's event callback, with no task; once the upstream
    /// is removed (a request in flight may still hold it), it has no series, and its
    /// events bring none back. The upstream's event counters appear at its first event
    /// (all three, the ejection counted), not before.
    #[tokio::test]
    async fn health_events_set_gauges_until_the_upstream_is_removed() {
        use gatekit_lb::Outcome;
        let eject = |outlier: &Arc<dyn OutcomeObserver>, upstream: &Upstream<EndpointClient>| {
            let (ep, health) = upstream.endpoints().remove(0);
            let outcome = Outcome::error(gatekit_core::ErrorKind::Connect, Duration::ZERO);
            for _ in 0..3 {
                outlier.on_outcome(&ep, &health, outcome);
            }
            assert!(health.is_ejected(tokio::time::Instant::now()));
        };
        let gauge =
            r#"gatekit_endpoint_healthy{upstream="default/web:80",endpoint="127.0.0.1:8080"}"#;
        let ejections = r#"gatekit_endpoint_ejections_total{upstream="default/web:80"}"#;
        for removed in [false, true] {
            let metrics = Metrics::new();
            let mut upstreams = Upstreams::new(
                Client::new(gatekit_core::client::ClientConfig::default()),
                metrics.clone(),
            );
            assert!(upstreams.update(&web_specs(false), None).errors.is_empty());
            let upstream = upstreams.upstream("default/web:80").expect("built");
            let outlier: Arc<dyn OutcomeObserver> = upstreams.lock()["default/web:80"]
                .outlier
                .clone()
                .expect("the default detector");
            let text = metrics.encode();
            assert!(text.contains(&format!("{gauge} 1")), "{text}");
            assert!(!text.contains(ejections), "no event yet:\n{text}");
            if removed {
                let gone = upstreams.update(&BTreeMap::new(), None).gone;
                upstreams.retain(&gone);
            }
            eject(&outlier, &upstream);
            let text = metrics.encode();
            if removed {
                assert!(!text.contains(gauge), "{text}");
                assert!(!text.contains("default/web:80"), "{text}");
            } else {
                assert!(text.contains(&format!("{gauge} 0")), "{text}");
                assert!(text.contains(&format!("{ejections} 1")), "{text}");
                for to in ["healthy", "unhealthy"] {
                    let transitions = format!(
                        r#"gatekit_endpoint_health_transitions_total{{upstream="default/web:80",to="{to}"}} 0"#
                    );
                    assert!(text.contains(&transitions), "{text}");
                }
            }
        }
    }

    /// The default outlier detector is made at the upstream's first failure (successes
    /// make none), with the upstream's endpoint set, and follows the set from then on.
    #[tokio::test]
    async fn the_outlier_detector_is_made_at_the_first_failure_and_follows_the_set() {
        use gatekit_lb::Outcome;
        let mut upstreams = Upstreams::new(
            Client::new(gatekit_core::client::ClientConfig::default()),
            Metrics::new(),
        );
        assert!(upstreams.update(&web_specs(false), None).errors.is_empty());
        let upstream = upstreams.upstream("default/web:80").expect("built");
        let outlier = upstreams.lock()["default/web:80"]
            .outlier
            .clone()
            .expect("the default detector");
        let (ep, health) = upstream.endpoints().remove(0);
        let ok = Outcome::status(http::StatusCode::OK, Duration::ZERO);
        outlier.on_outcome(&ep, &health, ok);
        assert!(outlier.detector().is_none(), "a success makes no detector");
        let refused = Outcome::error(gatekit_core::ErrorKind::Connect, Duration::ZERO);
        outlier.on_outcome(&ep, &health, refused);
        let detector = outlier.detector().expect("made at the first failure");
        let addrs = |d: &gatekit_lb::OutlierDetector| -> Vec<std::net::SocketAddr> {
            d.snapshot().iter().map(|s| s.addr).collect()
        };
        assert_eq!(addrs(detector), [ep.addr()], "told the set when made");
        assert_eq!(
            health.consecutive_connect_failures(),
            1,
            "the failure counted"
        );
        let second = gatekit_core::Endpoint::new("127.0.0.1:8081".parse().expect("address"));
        assert!(upstreams.set_endpoints("default/web:80", &[ep.clone(), second.clone()]));
        assert_eq!(
            addrs(detector),
            [ep.addr(), second.addr()],
            "follows the set"
        );
    }

    /// Every CRD value maps to the balancer algorithm of the same name, and every
    /// balancer algorithm can be named by a policy.
    #[test]
    fn policy_algorithms_map_by_name() {
        let mut mapped = Vec::new();
        for name in Algorithm::ALL.map(Algorithm::as_str) {
            let value: policy::Algorithm =
                serde_json::from_value(serde_json::Value::from(name)).unwrap();
            let lb = algorithm(value);
            assert_eq!(lb.as_str(), name);
            mapped.push(lb);
        }
        assert_eq!(mapped, Algorithm::ALL);
    }
}
