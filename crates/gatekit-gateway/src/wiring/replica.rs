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

use std::sync::Arc;
use std::time::Duration;

use gatekit_core::route::{Filter, HeaderModifier, PathMatch, PathModifier, Route, StringMatch};
use gatekit_k8s::provider::{ProviderSettings, ReplicaIdentity};
use gatekit_k8s::translate::{AppProtocol, Protocol, TlsMode};
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
pub(crate) fn config_hash(translation: &Translation) -> String {
    let mut h = Canonical::default();
    h.len(translation.listeners().len());
    for port in translation.listeners() {
        h.u64(u64::from(port.port()));
        let protocol = match port.protocol() {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            other => h.fallback(&other),
        };
        h.tag(protocol);
        let stream = matches!(
            port.protocol(),
            Protocol::Tls | Protocol::Tcp | Protocol::Udp
        );
        h.len(port.listeners().len());
        for l in port.listeners() {
            h.str(l.name());
            h.opt_str(l.hostname());
            // Stream ports only, so the hash of HTTP-only configurations is unchanged.
            if stream {
                let mode = match l.tls_mode() {
                    None => "-",
                    Some(TlsMode::Passthrough) => "Passthrough",
                    Some(TlsMode::Terminate) => "Terminate",
                    Some(other) => h.fallback(&other),
                };
                h.tag(mode);
                h.len(port.listener_stream_routes(l).len());
                for route in port.listener_stream_routes(l) {
                    h.stream_route(route);
                }
            }
        }
        h.len(port.routes().len());
        for route in port.routes() {
            h.route(route);
        }
    }
    h.len(translation.upstreams().len());
    for (name, spec) in translation.upstreams() {
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
    }
    format!("{:016x}", h.0)
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
        self.str(&route.id.to_string());
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
/// kind, namespace, name and resourceVersion. Replicas that read the same objects get
/// the same generation, whatever their reload history and the order of their lists:
/// each object's FNV-1a is summed (no sort, no allocation: at 10,000 routes a sorted
/// list of formatted keys cost milliseconds of every reload).
pub(crate) fn input_generation(set: &gatekit_k8s::ResourceSet) -> u64 {
    use kube::Resource;
    fn add<K: Resource<DynamicType = ()>>(hash: &mut u64, objects: &[K]) {
        let kind = K::kind(&());
        for o in objects {
            let m = o.meta();
            let mut one = fnv1a(FNV1A_OFFSET, kind.as_bytes());
            for part in [
                m.namespace.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or(""),
                m.resource_version.as_deref().unwrap_or(""),
            ] {
                one = fnv1a(fnv1a(one, &[0]), part.as_bytes());
            }
            *hash = hash.wrapping_add(one);
        }
    }
    let mut h = FNV1A_OFFSET;
    macro_rules! kind {
        ($field:ident, $kind:literal) => {
            if $kind != "EndpointSlice" {
                add(&mut h, &set.$field);
            }
        };
    }
    gatekit_k8s::for_each_resource_kind!(kind);
    // Endpoints are not configuration: they change without a new generation.
    h & 0x7fff_ffff_ffff_ffff
}

#[cfg(test)]
mod tests {
    use gatekit_k8s::{ResourceSet, TranslateOptions, translate};

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
        assert_eq!(hash("1"), "3fb89ad862c961bc");
    }

    #[test]
    fn fnv1a_is_the_reference_function() {
        // The FNV-1a 64 test vectors of the reference implementation.
        assert_eq!(fnv1a(FNV1A_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV1A_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV1A_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }
}
