//! A replica's place in its fleet, when serving from Kubernetes: its membership Lease,
//! the `/fleet` view, and the leader-elected status write-back.
//!
//! - **Membership**: a Lease named after the pod, in the pod's namespace, on the lease
//!   cluster (the local cluster, else the first config cluster), labelled with the
//!   generation and hash of the configuration served (see [`Replica::served`]) and
//!   renewed every third of its duration. Deleted on shutdown, after the drain.
//! - **Fleet view**: the fleet's live Leases, loaded every renewal and published for the
//!   admin API's `/fleet`, with drift (same input generation, different output hash).
//! - **Status write-back**: one Lease-elected replica writes statuses; every replica
//!   computes them. Each config cluster gets a writer for the resources it holds.
//!
//! A replica without identity (no `POD_NAME`/`POD_NAMESPACE`, no `replica` setting)
//! does none of this: it serves, but does not register and writes nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use gatekit_core::route::{
    Filter, HeaderModifier, PathMatch, PathModifier, Route, RouteId, StringMatch,
};
use gatekit_k8s::provider::{ProviderSettings, ReplicaIdentity};
use gatekit_k8s::status::ResourceRef;
use gatekit_k8s::translate::{AppProtocol, Changes, ListenerSpec, Protocol, TlsMode, UpstreamSpec};
use gatekit_k8s::types::Object;
use gatekit_k8s::{
    ElectionSpec, FleetView, LeaderElector, MemberSpec, Membership, Provider, StatusWriter,
    Translation,
};
use gatekit_lb::{FNV1A_OFFSET, fnv1a};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ConfigDump;

/// See the [module docs](self).
pub(crate) struct Replica {
    membership: Option<Membership>,
    elector: Option<LeaderElector>,
    desired: Option<watch::Sender<Arc<Translation>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Replica {
    /// A replica that does not take part (files, demo, or no identity).
    pub(crate) fn none() -> Self {
        Self {
            membership: None,
            elector: None,
            desired: None,
            tasks: Vec::new(),
        }
    }

    pub(crate) fn start(
        provider: &Arc<Provider>,
        settings: &ProviderSettings,
        controller_name: &str,
        fleet_dump: ConfigDump,
    ) -> Self {
        let Some(id) = settings.replica.clone().or_else(ReplicaIdentity::from_env) else {
            tracing::info!(
                "no replica identity (POD_NAME, POD_NAMESPACE): no membership Lease, no status write-back"
            );
            return Self::none();
        };
        let lease_cluster = settings
            .local_cluster
            .clone()
            .or_else(|| provider.config_clients().first().map(|(n, _)| n.clone()));
        let Some(client) = lease_cluster.as_deref().and_then(|c| provider.client(c)) else {
            return Self::none();
        };
        let duration = settings.lease_duration.unwrap_or(Duration::from_secs(15));
        let renew = duration / 3;
        let fleet = settings.fleet().to_owned();
        let mut spec = MemberSpec::new(&id.namespace, &id.name, &fleet)
            .lease_duration(duration)
            .renew_interval(renew);
        if let Some(uid) = &id.uid {
            spec = spec.pod_uid(uid);
        }
        let membership = Membership::start(client.clone(), spec);
        let mut tasks = Vec::new();
        let (fleet_client, namespace) = (client.clone(), id.namespace.clone());
        let fleet_name = fleet.clone();
        let mut writes = membership.writes();
        tasks.push(tokio::spawn(async move {
            loop {
                match FleetView::load(fleet_client.clone(), &namespace, &fleet_name).await {
                    Ok(view) => fleet_dump
                        .publish(serde_json::to_value(&view).unwrap_or(serde_json::Value::Null)),
                    Err(error) => {
                        fleet_dump.publish(serde_json::json!({ "error": error.to_string() }));
                    }
                }
                // Again at the next renewal, or as soon as this replica's Lease changes.
                tokio::select! {
                    () = tokio::time::sleep(renew) => {}
                    r = writes.changed() => if r.is_err() { tokio::time::sleep(renew).await },
                }
            }
        }));
        let mut elector = None;
        let mut desired = None;
        if settings.status_writeback.unwrap_or(true) {
            let e = LeaderElector::start(
                client,
                ElectionSpec::new(&id.namespace, format!("{fleet}-status-writer"), &id.name)
                    .lease_duration(duration)
                    .renew_interval(renew),
            );
            let (tx, rx) = watch::channel(Arc::new(Translation::default()));
            for (cluster, client) in provider.config_clients() {
                let p = provider.clone();
                let writer = StatusWriter::new(client)
                    .controller_name(controller_name)
                    .filter(move |r| p.holds(&cluster, r));
                tasks.push(tokio::spawn(writer.run(rx.clone(), e.leader())));
            }
            elector = Some(e);
            desired = Some(tx);
        }
        tracing::info!(replica = %id.name, namespace = %id.namespace, fleet = %fleet, "registered in the fleet");
        Self {
            membership: Some(membership),
            elector,
            desired,
            tasks,
        }
    }

    /// A new configuration is served: its statuses go to the writer.
    pub(crate) fn served(&self, translation: &Arc<Translation>) {
        if let Some(desired) = &self.desired {
            desired.send_replace(translation.clone());
        }
    }

    /// The served configuration's input generation and output hash, for the
    /// membership Lease's labels.
    pub(crate) fn set_config(&self, generation: u64, hash: &str) {
        if let Some(m) = &self.membership {
            m.set_config(generation, hash);
        }
    }

    /// Leaves the fleet: stops writing, releases leadership, deletes the Lease.
    pub(crate) async fn vacate(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.desired = None;
        if let Some(e) = self.elector.take() {
            e.vacate().await;
        }
        if let Some(m) = self.membership.take() {
            m.vacate().await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The hash of what a translation serves: listeners, routes and upstream definitions
/// (not endpoints, not the addresses sockets are bound on). Two replicas that serve
/// the same input must agree on it; if they do not, the fleet view shows drift. It is
/// FNV-1a over a canonical encoding ([`Canonical`]), not over `Debug` text, so it does
/// not change with a compiler or a derive's formatting.
///
/// Kept from one translation to the next ([`update`](Self::update)), so that a change
/// costs what it changed: the ports and listeners are encoded whole each time (a few
/// per Gateway), but each route as served on a listener (port, listener, route) and
/// each upstream (name, definition) is hashed on its own and the hashes are summed (a
/// multiset: the sum does not depend on the order routes or upstreams are listed in,
/// nor on the order changes came in). A [`Translation::changes`] result then takes
/// the changed routes' and upstreams' old hashes out of the sums and puts their new
/// ones in; a full translation is hashed whole.
#[derive(Debug, Default)]
pub(crate) struct ConfigHash {
    /// Per route id: the sum of its hashes, one per listener it is served on.
    routes: HashMap<RouteId, u64>,
    route_sum: u64,
    upstream_sum: u64,
    /// The translation last hashed, where a change's replaced upstreams are read (not
    /// kept alive by this: a translation gone means "hash the next one whole").
    last: Weak<Translation>,
}

impl ConfigHash {
    /// The hash of `translation`, the result after the one last hashed (incrementally
    /// when `changes`, its [`Translation::changes`], says what it changed relative to
    /// that one).
    pub(crate) fn update(
        &mut self,
        translation: &Arc<Translation>,
        changes: Option<&Changes>,
    ) -> String {
        let last = self.last.upgrade();
        match (changes, last) {
            (Some(changes), Some(last)) => self.apply(translation, changes, &last),
            _ => self.reset(translation),
        }
        self.last = Arc::downgrade(translation);
        let hash = self.value(translation);
        // Debug builds (the tests) check every incremental result against a hash
        // computed from scratch.
        #[cfg(debug_assertions)]
        if changes.is_some() {
            debug_assert_eq!(
                hash,
                config_hash(translation),
                "the incremental config hash differs from a full one"
            );
        }
        hash
    }

    /// Forgets everything and hashes every route and upstream of `translation`.
    fn reset(&mut self, translation: &Translation) {
        self.routes.clear();
        self.route_sum = 0;
        for port in translation.listeners() {
            for (listener, routes) in port.routes_by_listener() {
                for route in routes {
                    self.add_route(port.port(), listener, route);
                }
            }
        }
        self.routes.shrink_to_fit();
        self.upstream_sum = translation.upstreams().iter().fold(0, |sum, (name, spec)| {
            sum.wrapping_add(upstream_hash(name, spec))
        });
    }

    /// Replaces the hashes of what `changes` names: the routes of its ids (found, as
    /// served now, on its ports) and its upstreams (the old definitions from `last`).
    fn apply(&mut self, translation: &Translation, changes: &Changes, last: &Translation) {
        for id in changes.route_ids() {
            if let Some(old) = self.routes.remove(id) {
                self.route_sum = self.route_sum.wrapping_sub(old);
            }
        }
        let mut changed: Vec<*const Route> = changes.routes().iter().map(Arc::as_ptr).collect();
        changed.sort_unstable();
        if !changed.is_empty() {
            // The changed routes are new `Arc`s; the others are those of the last
            // result, so a pointer says which entries of a changed port to hash.
            for port in translation.listeners() {
                if !changes.ports().contains(&port.port()) {
                    continue;
                }
                for (listener, routes) in port.routes_by_listener() {
                    for route in routes {
                        if changed.binary_search(&Arc::as_ptr(route)).is_ok() {
                            self.add_route(port.port(), listener, route);
                        }
                    }
                }
            }
        }
        for name in changes.upstreams() {
            if let Some(old) = last.upstreams().get(name) {
                self.upstream_sum = self.upstream_sum.wrapping_sub(upstream_hash(name, old));
            }
            if let Some(new) = translation.upstreams().get(name) {
                self.upstream_sum = self.upstream_sum.wrapping_add(upstream_hash(name, new));
            }
        }
    }

    fn add_route(&mut self, port: u16, listener: &ListenerSpec, route: &Route) {
        let mut h = Canonical::default();
        h.u64(u64::from(port));
        h.listener_id(listener);
        h.route(route);
        let one = mix(h.0);
        let sum = self.routes.entry(route.id.clone()).or_default();
        *sum = sum.wrapping_add(one);
        self.route_sum = self.route_sum.wrapping_add(one);
    }

    /// The hash: the ports and listeners encoded, then the two sums.
    fn value(&self, translation: &Translation) -> String {
        let mut h = Canonical::default();
        h.frame(translation);
        h.u64(self.route_sum);
        h.len(translation.upstreams().len());
        h.u64(self.upstream_sum);
        format!("{:016x}", h.0)
    }
}

/// The [`ConfigHash`] of `translation` computed from scratch.
#[cfg(any(test, debug_assertions))]
pub(crate) fn config_hash(translation: &Translation) -> String {
    let mut hash = ConfigHash::default();
    hash.reset(translation);
    hash.value(translation)
}

/// The hash of one upstream definition: its name, protocol and policy.
fn upstream_hash(name: &str, spec: &UpstreamSpec) -> u64 {
    let mut h = Canonical::default();
    h.str(name);
    let app_protocol = match spec.app_protocol() {
        AppProtocol::Http1 => "http1",
        AppProtocol::H2c => "h2c",
        other => h.fallback(&other),
    };
    h.tag(app_protocol);
    // The policy is the CRD's own type: its JSON is its canonical form.
    match spec.policy() {
        Some(policy) => h.str(&serde_json::to_string(policy).unwrap_or_default()),
        None => h.tag("-"),
    }
    mix(h.0)
}

/// SplitMix64's finalizer: spreads an FNV-1a hash over all 64 bits before it is summed,
/// so sums of similar entries do not cancel out or collide through FNV's structure.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A canonical byte encoding of configuration, folded into FNV-1a as it is written:
/// strings and lists length-prefixed, numbers little-endian, enum variants by name. Two
/// values encode alike exactly when they serve alike.
struct Canonical(u64);

impl Default for Canonical {
    fn default() -> Self {
        Self(FNV1A_OFFSET)
    }
}

impl Canonical {
    /// The ports and their listeners (and stream routes), and how many routes each
    /// port serves: everything [`ConfigHash`] does not sum.
    fn frame(&mut self, translation: &Translation) {
        self.len(translation.listeners().len());
        for port in translation.listeners() {
            self.u64(u64::from(port.port()));
            let protocol = match port.protocol() {
                Protocol::Http => "HTTP",
                Protocol::Https => "HTTPS",
                Protocol::Tls => "TLS",
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
                other => self.fallback(&other),
            };
            self.tag(protocol);
            let stream = matches!(
                port.protocol(),
                Protocol::Tls | Protocol::Tcp | Protocol::Udp
            );
            self.len(port.listeners().len());
            for l in port.listeners() {
                self.listener_id(l);
                self.opt_str(l.hostname());
                self.len(port.listener_routes(l).len());
                if stream {
                    let mode = match l.tls_mode() {
                        None => "-",
                        Some(TlsMode::Passthrough) => "Passthrough",
                        Some(TlsMode::Terminate) => "Terminate",
                        Some(other) => self.fallback(&other),
                    };
                    self.tag(mode);
                    self.len(port.listener_stream_routes(l).len());
                    for route in port.listener_stream_routes(l) {
                        self.stream_route(route);
                    }
                }
            }
        }
    }

    /// Which listener: its Gateway (and ListenerSet) and name.
    fn listener_id(&mut self, listener: &ListenerSpec) {
        let gateway = listener.gateway();
        self.opt_str(gateway.namespace());
        self.str(gateway.name());
        match listener.listener_set() {
            Some(set) => {
                self.tag("set");
                self.opt_str(set.namespace());
                self.str(set.name());
            }
            None => self.tag("-"),
        }
        self.str(listener.name());
    }

    fn u64(&mut self, n: u64) {
        self.0 = fnv1a(self.0, &n.to_le_bytes());
    }

    /// A TLSRoute, TCPRoute or UDPRoute as served.
    fn stream_route(&mut self, route: &gatekit_core::stream::StreamRoute) {
        self.str(route.id.namespace());
        self.str(route.id.name());
        self.len(route.hostnames.len());
        for hostname in &route.hostnames {
            self.str(hostname);
        }
        self.u64(route.created as u64);
        self.len(route.backends.len());
        for backend in &route.backends {
            self.str(&backend.name);
            self.u64(u64::from(backend.weight));
        }
        match route.idle_timeout {
            Some(timeout) => self.u64(timeout.as_millis() as u64),
            None => self.tag("-"),
        }
    }

    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0 = fnv1a(self.0, s.as_bytes());
    }

    fn tag(&mut self, tag: &str) {
        self.str(tag);
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.tag("some");
                self.str(s);
            }
            None => self.tag("none"),
        }
    }

    fn opt_duration(&mut self, d: Option<Duration>) {
        match d {
            Some(d) => {
                self.tag("some");
                self.u64(d.as_secs());
                self.u64(u64::from(d.subsec_nanos()));
            }
            None => self.tag("none"),
        }
    }

    /// A variant added to a `#[non_exhaustive]` enum after this encoding was written:
    /// its `Debug` text stands in until it gets a name here (so a change is never
    /// missed, at the price of that variant's stability across versions).
    fn fallback(&mut self, value: &dyn std::fmt::Debug) -> &'static str {
        self.str(&format!("{value:?}"));
        "other"
    }

    fn string_match(&mut self, m: &StringMatch) {
        match m {
            StringMatch::Exact(v) => {
                self.tag("Exact");
                self.str(v);
            }
            StringMatch::Regex(v) => {
                self.tag("RegularExpression");
                self.str(v);
            }
        }
    }

    fn route(&mut self, route: &Route) {
        self.str(route.id.namespace());
        self.str(route.id.name());
        self.len(route.hostnames.len());
        for host in &route.hostnames {
            self.str(host);
        }
        self.u64(route.created as u64);
        self.len(route.rules.len());
        for rule in &route.rules {
            self.opt_str(rule.name.as_deref());
            self.len(rule.matches.len());
            for m in &rule.matches {
                match &m.path {
                    Some(PathMatch::Exact(v)) => {
                        self.tag("Exact");
                        self.str(v);
                    }
                    Some(PathMatch::Prefix(v)) => {
                        self.tag("PathPrefix");
                        self.str(v);
                    }
                    Some(PathMatch::Regex(v)) => {
                        self.tag("RegularExpression");
                        self.str(v);
                    }
                    None => self.tag("none"),
                }
                self.len(m.headers.len());
                for header in &m.headers {
                    self.str(&header.name);
                    self.string_match(&header.value);
                }
                self.len(m.query.len());
                for query in &m.query {
                    self.str(&query.name);
                    self.string_match(&query.value);
                }
                self.opt_str(m.method.as_ref().map(http::Method::as_str));
            }
            self.filters(&rule.filters);
            self.len(rule.backends.len());
            for backend in &rule.backends {
                self.str(&backend.name);
                self.u64(u64::from(backend.weight));
                self.filters(&backend.filters);
            }
            self.opt_duration(rule.timeouts.request);
            self.opt_duration(rule.timeouts.backend_request);
        }
    }

    fn filters(&mut self, filters: &[Filter]) {
        self.len(filters.len());
        for filter in filters {
            match filter {
                Filter::RequestHeaderModifier(m) => {
                    self.tag("RequestHeaderModifier");
                    self.header_modifier(m);
                }
                Filter::ResponseHeaderModifier(m) => {
                    self.tag("ResponseHeaderModifier");
                    self.header_modifier(m);
                }
                Filter::RequestRedirect(r) => {
                    self.tag("RequestRedirect");
                    self.opt_str(r.scheme.as_deref());
                    self.opt_str(r.hostname.as_deref());
                    self.u64(r.port.map_or(u64::MAX, u64::from));
                    self.path_modifier(r.path.as_ref());
                    self.u64(u64::from(r.status));
                }
                Filter::UrlRewrite(r) => {
                    self.tag("URLRewrite");
                    self.opt_str(r.hostname.as_deref());
                    self.path_modifier(r.path.as_ref());
                }
                Filter::RequestMirror(m) => {
                    self.tag("RequestMirror");
                    self.str(&m.backend);
                    let (numerator, denominator) = m.fraction.unwrap_or((1, 1));
                    self.u64(u64::from(numerator));
                    self.u64(u64::from(denominator));
                }
                other => {
                    let tag = self.fallback(other);
                    self.tag(tag);
                }
            }
        }
    }

    fn header_modifier(&mut self, m: &HeaderModifier) {
        for list in [&m.set, &m.add] {
            self.len(list.len());
            for (name, value) in list {
                self.str(name);
                self.str(value);
            }
        }
        self.len(m.remove.len());
        for name in &m.remove {
            self.str(name);
        }
    }

    fn path_modifier(&mut self, path: Option<&PathModifier>) {
        match path {
            Some(PathModifier::ReplaceFullPath(v)) => {
                self.tag("ReplaceFullPath");
                self.str(v);
            }
            Some(PathModifier::ReplacePrefixMatch(v)) => {
                self.tag("ReplacePrefixMatch");
                self.str(v);
            }
            None => self.tag("none"),
        }
    }
}

/// The input generation of a Kubernetes snapshot: a stable hash of every object's
/// kind, namespace, name and resourceVersion (EndpointSlices aside: endpoints are not
/// configuration, they change without a new generation). Replicas that read the same
/// objects get the same generation, whatever their reload history and the order of
/// their lists or of the changes that led there: each object's FNV-1a is summed, so a
/// change takes the changed objects' old hashes out of the sum and puts the new ones
/// in ([`remove`](Self::remove) before the provider updates the kept set,
/// [`add`](Self::add) after), and only a full set is hashed whole ([`of`](Self::of)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InputGeneration(u64);

impl Default for InputGeneration {
    fn default() -> Self {
        Self(FNV1A_OFFSET)
    }
}

impl InputGeneration {
    /// The generation of every object of `set`.
    pub(crate) fn of(set: &gatekit_k8s::ResourceSet) -> Self {
        fn add<K: Object>(hash: &mut u64, kind: &str, objects: &[K]) {
            for o in objects {
                *hash = hash.wrapping_add(object_hash(kind, o));
            }
        }
        let mut h = FNV1A_OFFSET;
        macro_rules! kind {
            ($field:ident, $kind:literal) => {
                if $kind != "EndpointSlice" {
                    add(&mut h, $kind, &set.$field);
                }
            };
        }
        gatekit_k8s::for_each_resource_kind!(kind);
        Self(h)
    }

    /// Takes the objects `changed` names, as `set` holds them now, out of the sum.
    pub(crate) fn remove(
        &mut self,
        set: &gatekit_k8s::ResourceSet,
        changed: &BTreeSet<ResourceRef>,
    ) {
        for (kind, meta) in objects(set, changed) {
            self.0 = self.0.wrapping_sub(object_hash(kind, meta));
        }
    }

    /// Puts the objects `changed` names, as `set` holds them now, in the sum.
    pub(crate) fn add(&mut self, set: &gatekit_k8s::ResourceSet, changed: &BTreeSet<ResourceRef>) {
        for (kind, meta) in objects(set, changed) {
            self.0 = self.0.wrapping_add(object_hash(kind, meta));
        }
    }

    /// The generation, as the membership Lease's label shows it.
    pub(crate) fn value(self) -> u64 {
        self.0 & 0x7fff_ffff_ffff_ffff
    }
}

/// The objects of `set` that `changed` names (EndpointSlices aside), with their kind.
fn objects<'s>(
    set: &'s gatekit_k8s::ResourceSet,
    changed: &'s BTreeSet<ResourceRef>,
) -> impl Iterator<Item = (&'s str, &'s dyn Object)> {
    changed
        .iter()
        .filter(|r| r.kind() != "EndpointSlice")
        .filter_map(|r| Some((r.kind(), gatekit_k8s::provider::object(set, r)?)))
}

/// One object's part of the [`InputGeneration`].
fn object_hash(kind: &str, object: &(impl Object + ?Sized)) -> u64 {
    let mut one = fnv1a(FNV1A_OFFSET, kind.as_bytes());
    for part in [
        object.namespace().unwrap_or(""),
        object.name(),
        object.resource_version().unwrap_or(""),
    ] {
        one = fnv1a(fnv1a(one, &[0]), part.as_bytes());
    }
    one
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gatekit_k8s::{ResourceSet, TranslateOptions, Translator, translate};

    use super::*;

    fn hash(filter: &str) -> String {
        let docs = format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: 8080, protocol: HTTP }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: app, namespace: default }}
spec:
  ports: [{{ name: http, port: 80 }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: /api }} }}]
    filters: [{{ type: RequestHeaderModifier, requestHeaderModifier: {{ set: [{{ name: x-a, value: "{filter}" }}] }} }}]
    backendRefs: [{{ name: app, port: 80 }}]
"#
        );
        let (set, _) = ResourceSet::from_documents([("t.yaml", docs.as_str())]).unwrap();
        config_hash(&translate(&set, &TranslateOptions::default()))
    }

    /// The hash is a function of the served configuration's content only: the same on
    /// every build and version (pinned here: a change of the encoding, or of what this
    /// manifest translates to, shows as drift between old and new replicas during a
    /// rollout, so change the pin only on purpose), different when a filter changes.
    #[test]
    fn config_hash_is_stable_and_sees_filters() {
        assert_eq!(hash("1"), hash("1"));
        assert_ne!(hash("1"), hash("2"));
        assert_eq!(hash("1"), "2dd4350cdd71b599");
    }

    #[test]
    fn fnv1a_is_the_reference_function() {
        // The FNV-1a 64 test vectors of the reference implementation.
        assert_eq!(fnv1a(FNV1A_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV1A_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV1A_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// xorshift64*: a seeded PRNG, enough to draw test worlds.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
        }
    }

    /// A world: the manifest of each object, by (kind, name), all in `default`. Its
    /// lists come out sorted by name, as the provider keeps them.
    type World = BTreeMap<(&'static str, String), String>;

    const ROUTES: usize = 12;
    const SERVICES: usize = 5;

    /// One random object edit: a route (added, changed, removed), a Service (its
    /// protocol, or removed), rarely the Gateway (a second port moved: a full
    /// translation). Every edit gets a new resourceVersion.
    fn edit(world: &mut World, rng: &mut Rng, version: &mut u64) {
        *version += 1;
        let v = *version;
        match rng.below(20) {
            0 => {
                let port = [9090, 9091][rng.below(2)];
                world.insert(
                    ("Gateway", "gw".to_owned()),
                    format!(
                        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default, resourceVersion: "{v}" }}
spec:
  gatewayClassName: gatekit
  listeners:
  - {{ name: a, port: 8080, protocol: HTTP, hostname: a.test }}
  - {{ name: any, port: 8080, protocol: HTTP }}
  - {{ name: b, port: {port}, protocol: HTTP }}
"#
                    ),
                );
            }
            1..=4 => {
                let name = format!("s{}", rng.below(SERVICES));
                if rng.below(4) == 0 {
                    world.remove(&("Service", name));
                    return;
                }
                let protocol = ["", ", appProtocol: h2c"][rng.below(2)];
                world.insert(
                    ("Service", name.clone()),
                    format!(
                        r#"apiVersion: v1
kind: Service
metadata: {{ name: {name}, namespace: default, resourceVersion: "{v}" }}
spec:
  ports: [{{ name: http, port: 80{protocol} }}]
"#
                    ),
                );
            }
            _ => {
                let name = format!("r{:02}", rng.below(ROUTES));
                if rng.below(4) == 0 {
                    world.remove(&("HTTPRoute", name));
                    return;
                }
                let parent = ["", ", sectionName: a", ", sectionName: b"][rng.below(3)];
                let path = rng.below(4);
                let service = rng.below(SERVICES + 1);
                world.insert(
                    ("HTTPRoute", name.clone()),
                    format!(
                        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: {name}, namespace: default, resourceVersion: "{v}" }}
spec:
  parentRefs: [{{ name: gw{parent} }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: /p{path} }} }}]
    backendRefs: [{{ name: s{service}, port: 80 }}]
"#
                    ),
                );
            }
        }
    }

    fn resources(world: &World) -> ResourceSet {
        let docs = world.values().map(|d| ("t.yaml", d.as_str()));
        ResourceSet::from_documents(docs).unwrap().0
    }

    /// A world with the Gateway, every Service and half the routes.
    fn start(rng: &mut Rng, version: &mut u64) -> World {
        let mut world = World::new();
        while !world.contains_key(&("Gateway", "gw".to_owned()))
            || world.len() < 1 + SERVICES + ROUTES / 2
        {
            edit(&mut world, rng, version);
        }
        world
    }

    /// Over random change sequences, the hashes kept change by change equal the ones
    /// computed from scratch, after every step: the config hash through the incremental
    /// translator's results (most steps are incremental: a `Translation::changes`), the
    /// input generation through the changed objects alone.
    #[test]
    fn kept_hashes_equal_full_ones_over_random_changes() {
        let options = TranslateOptions::default();
        let mut incremental_steps = 0;
        for seed in 0..24 {
            let mut rng = Rng::new(seed);
            let mut version = 0;
            let mut world = start(&mut rng, &mut version);
            let mut set = resources(&world);
            let mut translator = Translator::new(options.clone());
            let mut hasher = ConfigHash::default();
            let mut generation = InputGeneration::of(&set);
            hasher.update(&translator.translate(&set, None), None);
            for step in 0..30 {
                for _ in 0..=rng.below(3) {
                    edit(&mut world, &mut rng, &mut version);
                }
                let next = resources(&world);
                let changed = ResourceSet::changed_objects(&[&set], &[&next]);
                generation.remove(&set, &changed);
                generation.add(&next, &changed);
                assert_eq!(
                    generation,
                    InputGeneration::of(&next),
                    "seed {seed} step {step}"
                );
                let translation = translator.translate(&next, Some(&changed));
                incremental_steps += usize::from(translation.changes().is_some());
                let kept = hasher.update(&translation, translation.changes());
                assert_eq!(kept, config_hash(&translation), "seed {seed} step {step}");
                assert_eq!(
                    kept,
                    config_hash(&translate(&next, &options)),
                    "seed {seed} step {step}"
                );
                set = next;
            }
        }
        // The incremental path is what is under test.
        assert!(incremental_steps > 24 * 30 / 2, "{incremental_steps}");
    }

    /// The same edits applied in two different orders give the same world, and the
    /// replicas that followed each order agree on both hashes.
    #[test]
    fn hashes_do_not_depend_on_the_order_of_changes() {
        let options = TranslateOptions::default();
        for seed in 0..16 {
            let mut rng = Rng::new(seed);
            let mut version = 0;
            let world = start(&mut rng, &mut version);
            // Edits of distinct objects, each computed once, applied in two orders.
            let mut edits: Vec<((&'static str, String), Option<String>)> = Vec::new();
            while edits.len() < 6 {
                let mut changed = world.clone();
                edit(&mut changed, &mut rng, &mut version);
                let key = changed
                    .keys()
                    .chain(world.keys())
                    .find(|k| changed.get(*k) != world.get(*k))
                    .cloned();
                if let Some(key) = key
                    && edits.iter().all(|(k, _)| *k != key)
                {
                    edits.push((key.clone(), changed.get(&key).cloned()));
                }
            }
            let mut results = Vec::new();
            for order in [edits.clone(), edits.iter().rev().cloned().collect()] {
                let mut world = world.clone();
                let mut set = resources(&world);
                let mut translator = Translator::new(options.clone());
                let mut hasher = ConfigHash::default();
                let mut generation = InputGeneration::of(&set);
                let mut hash = hasher.update(&translator.translate(&set, None), None);
                for (key, value) in order {
                    match value {
                        Some(v) => world.insert(key, v),
                        None => world.remove(&key),
                    };
                    let next = resources(&world);
                    let changed = ResourceSet::changed_objects(&[&set], &[&next]);
                    generation.remove(&set, &changed);
                    generation.add(&next, &changed);
                    let translation = translator.translate(&next, Some(&changed));
                    hash = hasher.update(&translation, translation.changes());
                    set = next;
                }
                results.push((generation.value(), hash));
            }
            assert_eq!(results[0], results[1], "seed {seed}");
        }
    }
}
