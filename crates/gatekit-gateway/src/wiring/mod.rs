//! The seam where Kubernetes manifests become served configuration: [`Wiring`].
//!
//! `gatekit run` builds a [`Gateway`] (not ready, no listeners), then [`Wiring::start`]
//! loads and serves the manifests, and [`Wiring::serve`] keeps them up to date until
//! shutdown. `gatekit demo` does the same from in-memory manifests
//! ([`Source::Documents`]). An application embeds the same thing in its own server with
//! [`Gateway::embedded`] and [`Wiring::service`].
//!
//! # A reload
//!
//! Every reload (the first one included) runs the same steps:
//!
//! 1. **Load** every manifest ([`ResourceSet::from_dirs`]). Any load error — an
//!    unreadable file, YAML that does not parse, a document that does not fit its kind's
//!    schema — **refuses the whole snapshot**: the last good one keeps serving, each
//!    error is logged with file, document, kind, name and field, `gatekit_reloads_total
//!    {result="failed"}` is incremented and `/config` shows them under
//!    `lastReloadError`. A half-read directory must never be served: it could drop every
//!    route of a file that failed to parse. Only the files the watcher named are read
//!    again, and parsed if their text changed (a per-file cache, see `cache.rs`, which
//!    also says which objects changed since the last translation). When those files
//!    held EndpointSlices
//!    and nothing else (before and after), the reload stops here: the named Services'
//!    upstreams get their new endpoints, as on a Kubernetes watch event, and nothing is
//!    translated or rebuilt (the generation stays).
//! 2. **Translate** ([`Translator`], the incremental `gatekit_k8s::translate`). Problems
//!    *inside* well-formed resources (a backendRef to a missing Service, a listener that
//!    conflicts, a route whose regex does not compile) follow the Gateway API's per-resource
//!    semantics: the offending route, rule or listener is not served (or answers 500 for its
//!    invalid backends), everything else is, and the problem is reported in the resource's
//!    conditions and in `/config`'s `errors`. This is what a Kubernetes controller does, and
//!    what lets one team's broken route not take down another team's.
//! 3. **Upstreams** are updated in the upstream registry, which keeps each
//!    upstream's per-endpoint state across reloads (a spec that is the same `Arc` as
//!    last time is skipped). Metric series are kept per route, looked at only for
//!    routes whose `Arc` changed.
//! 4. **Per port**: a route table per listener hostname is built by a
//!    [`TableBuilder`] kept across reloads, which compiles only the routes whose `Arc`
//!    is not the one of last time or that name an upstream created, rebuilt or gone
//!    in step 3 (a group whose routes are all the same `Arc`s keeps its table), and
//!    stored in the port's [`Router`] (kept across reloads, so the swap is one atomic
//!    pointer store, skipped when no table changed: requests in flight finish on the
//!    table they were routed by); HTTPS ports get
//!    a new certificate set in their [`CertStore`] (SNI by listener hostname; the
//!    listener without a hostname, else the first one, is the default). Ports that
//!    appear are bound, ports that disappear (or change protocol) are closed.
//! 5. Upstreams no longer named are dropped, metric series of removed (route, backend)
//!    pairs are forgotten, the generation is bumped, the reload is counted ok, and the
//!    first served snapshot marks the gateway ready.
//! 6. `/config` is **published, not rendered**: the reload hands it a snapshot (the
//!    shared translation, without the `Changes` steps 3 and 4 were given: after every
//!    route was deleted, their route ids and upstream names held pages until the next
//!    reload), bound ports, problems, generation, the upstreams' live
//!    handles), rendered only when `/config` is requested (see `dump.rs`). Upstream
//!    health is read at that moment, so a health change publishes nothing.
//! 7. The previous translation is dropped on a blocking thread (for 5,000 routes,
//!    freeing takes milliseconds), then glibc is asked to return free pages to the
//!    kernel (`malloc_trim`; see `trim.rs`): with 5,000 routes this was the
//!    difference between 41 and 48 MB of RSS after the first load, 46 and 56 MB after a
//!    reload.
//!
//! Until a snapshot is served (the first reload, and any after a refused first load),
//! loading runs on the reload's own thread, not on a blocking thread: nothing
//! is served yet, and with glibc's per-thread arenas the garbage of parsing 5,000 routes
//! otherwise stays resident in a second arena (RSS 73 MB → 57 MB). The first snapshot
//! ([`Wiring::start`]) is thus published before `start` returns.
//!
//! Certificate Secrets are manifests like any other: changing a Secret file reloads,
//! and its listeners' certificate set is replaced (new handshakes use it at once).
//!
//! If the first load fails, the gateway stays up and not ready (`/readyz` answers 503)
//! and serves the snapshot as soon as a change makes it valid.

mod access;
mod cache;
mod certs;
mod dump;
mod labels;
mod outlier;
mod replica;
mod series;
mod streams;
mod trim;
pub use self::trim::on_worker_park;
pub(crate) mod upstreams;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use gatekit_core::chunked::Chunked;
use gatekit_core::client::{Client, ClientConfig};
use gatekit_core::path::{NormalizePath, PathPolicy};
use gatekit_core::retry::RetryPolicy;
use gatekit_core::route::{PolicyState, Route, RouteId, TableBuilder};
use gatekit_core::tls::{CertStore, ServerTls};
use gatekit_core::{Backend, Backends, BoxError, ConfigError, PortTable, RouteTable, Router};
use gatekit_k8s::provider::Changes;
use gatekit_k8s::translate::{PortListeners, Protocol};
use gatekit_k8s::{
    ManifestError, Provider, ResourceSet, TranslateOptions, Translation, Translator,
};
use tower_layer::Layer;

use self::cache::{FileCache, Load};
use self::labels::Labelled;
use self::replica::{ConfigHash, InputGeneration, Replica};
use self::series::SeriesMap;
use self::streams::Streams;
use self::upstreams::Upstreams;
use self::watch::{Changed, DirWatcher};
use crate::{
    Gateway, Metrics, MetricsLayer, MetricsService, RequestMetrics, RouteFallback, TrafficDefaults,
    Transport,
};

/// The route label of requests that matched no route (or no usable backend).
const UNMATCHED: &str = "(unmatched)";

/// Why the configuration could not be wired.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WiringError {
    /// The resource directories cannot be watched.
    #[error("cannot watch the resource directories: {0}")]
    Watch(#[from] notify::Error),
    /// A listener of the first snapshot could not be bound.
    #[error("cannot listen on port {port}: {reason}")]
    #[non_exhaustive]
    Bind {
        /// The port.
        port: u16,
        /// Why.
        reason: String,
    },
}

/// Where the manifests come from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Source {
    /// Directories (or files) on disk, watched for changes.
    Dirs(Vec<PathBuf>),
    /// In-memory `(source name, text)` documents, served as they are (no reload).
    Documents(Vec<(String, String)>),
    /// Kubernetes API servers: a configuration change translates again, an
    /// EndpointSlice change updates that Service's upstreams only (no route table is
    /// rebuilt). The first snapshot waits for the provider's sync.
    Kubernetes(Arc<Provider>),
}

/// Loads the manifests into `cache` ([`FileCache::resources`]), or says why they were
/// refused.
/// For directories, `changed` says which paths the watcher saw change (`Rescan`: read
/// every file).
///
/// For Kubernetes, `kube` is the batch of changes that caused the reload: the objects it
/// names are updated in the kept resources; without it (or when it does not know what
/// changed) the provider's resources are taken whole. `generation` follows the kept
/// resources.
fn load(
    source: &Source,
    cache: &mut FileCache,
    changed: &Changed,
    kube: Option<&Changes>,
    generation: &mut InputGeneration,
) -> Result<Load, Vec<ManifestError>> {
    let warnings = match source {
        Source::Dirs(dirs) => match cache.load(
            dirs,
            match changed {
                Changed::Paths(paths) => Some(paths),
                Changed::Rescan => None,
            },
        )? {
            Load::Changed(warnings) => warnings,
            Load::Unchanged => return Ok(Load::Unchanged),
        },
        Source::Documents(docs) => {
            let (set, warnings) =
                ResourceSet::from_documents(docs.iter().map(|(n, t)| (n.as_str(), t.as_str())))?;
            cache.set(set);
            warnings
        }
        Source::Kubernetes(provider) => {
            update_provided(provider, cache, kube, generation);
            Vec::new()
        }
    };
    for warning in warnings {
        tracing::warn!(%warning, "manifest skipped");
    }
    Ok(Load::Changed(Vec::new()))
}

/// Brings the provider's resources kept in `cache` up to date with `changes`: only the
/// objects they name are updated (and recorded as changed for the translator); without
/// changes, when they do not know what changed, or when the cache does not hold the
/// provider's resources yet, the provider's resources are taken whole. `generation`
/// follows, by the changed objects only or whole.
fn update_provided(
    provider: &Provider,
    cache: &mut FileCache,
    changes: Option<&Changes>,
    generation: &mut InputGeneration,
) {
    let updated = changes.and_then(|c| Some((c.objects.as_ref()?, &c.services)));
    let kept = updated.is_some_and(|(objects, services)| {
        let update = |set: &mut ResourceSet| {
            generation.remove(set, objects);
            provider.update(set, objects, services);
            generation.add(set, objects);
        };
        cache.update_provided(update, objects)
    });
    if !kept {
        let set = provider.resources();
        *generation = InputGeneration::of(&set);
        cache.set_provided(set);
        return;
    }
    debug_assert_eq!(
        *generation,
        InputGeneration::of(cache.resources()),
        "the input generation kept by changes differs from the kept resources' (changes: {changes:?})"
    );
    // Debug builds (the tests) check the kept resources against fresh ones whenever no
    // later event is pending that could explain a difference: a change the provider
    // failed to name would show here.
    #[cfg(debug_assertions)]
    {
        let fresh = format!("{:?}", provider.resources());
        if provider.settled() {
            debug_assert_eq!(
                format!("{:?}", cache.resources()),
                fresh,
                "the kept Kubernetes resources differ from the provider's (changes: {changes:?})"
            );
        }
    }
}

/// Gives the upstreams of each of `services` (namespace, name) the endpoints
/// `endpoints_of(namespace, name, port, udp)` computes (problems logged). Returns how many
/// upstreams were updated.
fn set_service_endpoints<'s>(
    upstreams: &mut Upstreams,
    services: impl IntoIterator<Item = &'s (String, String)>,
    endpoints_of: impl Fn(&str, &str, u16, bool) -> (Vec<gatekit_core::Endpoint>, Vec<ConfigError>),
) -> usize {
    let mut updated = 0;
    for service in services {
        // Found by their names (`namespace/service:port`), sorted in the registry: no
        // index of them is kept (~80 bytes and two allocations per Service).
        for (name, port, udp) in upstreams.of_service(&service.0, &service.1) {
            let (endpoints, errors) = endpoints_of(&service.0, &service.1, port, udp);
            for error in errors {
                tracing::warn!(%error, upstream = %name, "endpoint ignored");
            }
            if upstreams.set_endpoints(&name, &endpoints) {
                updated += 1;
            }
        }
    }
    updated
}

/// The endpoints of Service `ns/name` port `port` (its `UDP` port when `udp`) in
/// `resources`, as translation computes them (its EndpointSlices in file order).
fn file_endpoints(
    resources: &ResourceSet,
    ns: &str,
    name: &str,
    port: u16,
    udp: bool,
) -> (Vec<gatekit_core::Endpoint>, Vec<ConfigError>) {
    use gatekit_k8s::types::Object;
    let in_ns = |o: &dyn Object| o.namespace().unwrap_or("default") == ns;
    let Some(service) = resources
        .services
        .iter()
        .find(|s| in_ns(*s) && s.name() == name)
    else {
        return (Vec::new(), Vec::new());
    };
    let slices = resources
        .endpoint_slices
        .iter()
        .filter(|s| in_ns(*s) && s.service() == Some(name));
    let mut errors = Vec::new();
    let endpoints =
        gatekit_k8s::translate::service_endpoints(service, port, udp, slices, &mut errors);
    (endpoints, errors)
}

/// How often rate limiters drop the keys whose buckets are full again.
const IDLE_KEY_SWEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a reload's route tables find their backends (each upstream, labelled with the
/// metrics of the route it is compiled for) and the state of their policies.
struct Lookup<'a> {
    upstreams: &'a Upstreams,
    series: &'a SeriesMap<RouteSeries>,
    state: &'a PolicyState,
    metrics: &'a Metrics,
    access: &'a access::AccessRegistry,
    #[cfg(feature = "otel")]
    traces: Option<&'a crate::trace::Traces>,
}

impl gatekit_core::Backends for Lookup<'_> {
    /// A mirror's backend: its copies' responses are not counted.
    fn backend(&self, name: &str) -> Option<Backend> {
        let upstream = self.upstreams.upstream(name)?;
        Some(Backend::new(Labelled::new(upstream, None)))
    }

    fn backend_for(&self, route: &RouteId, name: &str) -> Option<Backend> {
        let upstream = self.upstreams.upstream(name)?;
        let series = self.series.get(route);
        let metrics = series.and_then(|s| s.handle(name)).cloned();
        let labelled =
            Labelled::new(upstream, metrics).with_route(series.map(|s| s.fallback.clone()));
        #[cfg(feature = "otel")]
        if let Some(traces) = self.traces {
            let traced = crate::trace::TracedBackend::new(labelled, traces.clone(), name);
            return Some(Backend::new(traced));
        }
        Some(Backend::new(labelled))
    }

    fn policy_state(&self) -> Option<&PolicyState> {
        Some(self.state)
    }

    fn access_policy(&self, name: &str) -> Option<Arc<dyn gatekit_core::access::AccessPolicy>> {
        self.access.get(name)
    }

    /// Answers a rule gives before any backend (a policy's refusal, the request
    /// timeout) are counted under the route, backend `(none)`: its [`RouteFallback`],
    /// kept in its series (its rules share it), puts itself in their extensions at
    /// each such answer (no extensions map kept per route).
    fn error_extensions(&self, route: &RouteId) -> Option<Arc<dyn gatekit_core::ErrorExtensions>> {
        Some(self.series.get(route).map_or_else(
            || RouteFallback::new(self.metrics.clone(), route.to_string()).error_extensions(),
            |s| s.fallback.error_extensions(),
        ))
    }
}

/// The routes of one listener hostname of a port (listeners of several Gateways with the
/// same hostname share one), and their table, kept across reloads.
pub(crate) struct Group {
    hostname: Option<String>,
    /// Its routes as last built ([`TableBuilder::inputs`]), listener after listener.
    builder: TableBuilder,
    table: Arc<RouteTable>,
    errors: Vec<ConfigError>,
}

impl Group {
    fn new(hostname: Option<&str>, defaults: &TrafficDefaults) -> Self {
        let retry = defaults.retry_unsent.then(RetryPolicy::unsent_once);
        Self {
            hostname: hostname.map(str::to_owned),
            builder: TableBuilder::new().with_default_retry(retry),
            table: Arc::new(RouteTable::empty()),
            errors: Vec::new(),
        }
    }
}

/// The port's route tables, one per listener hostname (listener isolation: a request is
/// matched against the routes of the most specific listener for its host only), built
/// with `groups`, the port's groups of the previous reload (updated). Listeners of
/// several Gateways with the same hostname on one port share one table. A group whose
/// route list holds the same chunks as last time ([`Chunked::same_chunks`]: one pointer
/// comparison per chunk), none naming a `stale` backend (the builder's index says),
/// keeps its table; the others are rebuilt by their [`TableBuilder`], which compiles only the
/// changed routes. `None` when every table and the listeners are as last time (nothing
/// to store). Problems go to `errors`, each once however many listeners a route is
/// attached to. The gateway's [`TrafficDefaults`] apply where rules set nothing.
/// `untouched`: the translation says the port's routes are the same as last time (see
/// `Translation::changes`), so with no `stale` backend nothing is looked at.
pub(crate) fn port_table(
    port: &PortListeners,
    groups: &mut Vec<Group>,
    untouched: bool,
    defaults: &TrafficDefaults,
    backends: &dyn Backends,
    stale: &BTreeSet<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<PortTable> {
    if untouched && stale.is_empty() && !groups.is_empty() {
        for e in groups.iter().flat_map(|g| &g.errors) {
            if !errors.contains(e) {
                errors.push(e.clone());
            }
        }
        return None;
    }
    // Each listener hostname with the route lists of its listeners.
    type Listeners<'p> = Vec<(Option<&'p str>, Vec<&'p Chunked<Arc<Route>>>)>;
    let mut listeners: Listeners<'_> = Vec::new();
    for (listener, routes) in port.route_lists() {
        match listeners
            .iter_mut()
            .find(|(h, _)| *h == listener.hostname())
        {
            Some((_, lists)) => lists.push(routes),
            None => listeners.push((listener.hostname(), vec![routes])),
        }
    }
    let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
    let mut changed = groups.len() != listeners.len();
    let mut previous = std::mem::take(groups);
    for (i, (hostname, lists)) in listeners.into_iter().enumerate() {
        let at = previous
            .iter()
            .position(|g| g.hostname.as_deref() == hostname);
        changed |= at != Some(0) || i != groups.len();
        let mut group = match at {
            Some(at) => previous.remove(at),
            None => Group::new(hostname, defaults),
        };
        // One listener's routes are its list as it is; several share their chunks.
        let joined: Chunked<Arc<Route>>;
        let routes: &Chunked<Arc<Route>> = match lists.as_slice() {
            [one] => one,
            _ => {
                let mut all = Chunked::new();
                for list in &lists {
                    all.append_shared(list);
                }
                joined = all;
                &joined
            }
        };
        let same = routes.same_chunks(group.builder.inputs());
        if !same || at.is_none() || group.builder.sends_to_any(&stale) {
            let (table, table_errors) = group.builder.build_list(routes, backends, &stale);
            group.table = Arc::new(table);
            group.errors = table_errors;
            changed = true;
        }
        for e in &group.errors {
            if !errors.contains(e) {
                errors.push(e.clone());
            }
        }
        groups.push(group);
    }
    if !changed {
        return None;
    }
    let tables = groups
        .iter()
        .map(|g| (g.hostname.as_deref(), Arc::clone(&g.table)));
    Some(PortTable::from_shared(tables).unwrap_or_else(|e| {
        // The translation validates listener hostnames and the groups above are by
        // hostname, so this is not expected; serve nothing rather than mix listeners.
        errors.push(e.within(&format!("port {}", port.port())));
        PortTable::empty()
    }))
}

/// The metrics series of one route: one per backend name its rules send to (invalid
/// ones included: they never resolve, and their series stay at zero). Keyed in the
/// [`SeriesMap`] by its route's id.
struct RouteSeries {
    /// The route they were made for (compared by identity).
    route: Arc<Route>,
    /// One handle per backend name (exactly as many: most routes have one, kept
    /// inline).
    backends: series::Handles,
    /// The route's `(none)` series, shared by its rules' error responses, and its
    /// retirement: retired (its WebSockets closed) when the route id is gone, at the
    /// drain deadline if it carried an upgrade, at once otherwise (see
    /// [`retire_series`]); kept across edits of the route.
    fallback: RouteFallback,
    /// The reload that last saw the route (reloads are counted in `u64`; this is
    /// compared for equality only, and a route seen 2^32 reloads ago is long gone).
    seen: u32,
}

impl series::Keyed for RouteSeries {
    fn id(&self) -> &RouteId {
        &self.route.id
    }
}

impl RouteSeries {
    fn handle(&self, backend: &str) -> Option<&RequestMetrics> {
        self.backends.iter().find(|h| h.backend() == backend)
    }
}

/// Marks `route` seen at `reload` in `series`: a route whose `Arc` is the one seen
/// last time (or already seen this reload, on another listener) keeps its series as
/// they are; otherwise its per-backend series follow its backend names.
fn see_route(
    series: &mut SeriesMap<RouteSeries>,
    route: &Arc<Route>,
    reload: u32,
    metrics: &Metrics,
    upstreams: &Upstreams,
) {
    let series = match series.get_mut(&route.id) {
        // Already seen on another listener this reload.
        Some(s) if s.seen == reload => return,
        Some(s) if Arc::ptr_eq(&s.route, route) => {
            s.seen = reload;
            return;
        }
        Some(s) => s,
        None => series.get_or_insert_with(&route.id, || {
            let fallback = RouteFallback::new(metrics.clone(), route.id.to_string());
            RouteSeries {
                route: Arc::clone(route),
                backends: series::Handles::default(),
                fallback,
                seen: reload,
            }
        }),
    };
    series.seen = reload;
    // The same id: the map's key does not change.
    series.route = Arc::clone(route);
    let names = backend_names(route);
    let had = !series.backends.is_empty();
    let mut backends = std::mem::take(&mut series.backends).into_vec();
    backends.retain(|h| {
        let keep = names.contains(h.backend());
        if !keep {
            h.forget();
        }
        keep
    });
    for name in names {
        if !backends.iter().any(|h| h.backend() == name) {
            // The route's name shared with its `(none)` series: one copy per route;
            // the backend's with its upstream: one copy per upstream.
            let backend = upstreams
                .shared_name(name)
                .unwrap_or_else(|| Arc::from(name));
            let handle =
                metrics.request_metrics_shared(Arc::clone(series.fallback.route()), backend);
            backends.push(handle);
        }
    }
    series.backends = series::Handles::from_vec(backends);
    if had && series.backends.is_empty() {
        let id = route.id.to_string();
        metrics.forget_route(&id);
        // Its `(none)` series is forgotten too: a new handle registers anew.
        series.fallback.reset();
    }
}

/// Forgets the series of route `id`, no longer served: upgraded connections routed by
/// it end at the drain deadline, as on a removed listener; other requests in flight
/// finish on the rule they matched.
///
/// Returns whether a task now waits for the drain deadline: only a route that carried an
/// upgrade has connections to close then. Any other is retired at once (an upgrade
/// request it routed from now on, one the replaced table took a moment ago, is closed
/// as soon as it is upgraded), so that removing many routes leaves no task per route
/// holding memory until the deadline.
fn retire_series(s: &RouteSeries, drain_timeout: std::time::Duration, metrics: &Metrics) -> bool {
    let waits = s.fallback.retirement().has_marked();
    if waits {
        let route = s.fallback.clone();
        tokio::spawn(async move {
            tokio::time::sleep(drain_timeout).await;
            route.retirement().retire();
        });
    } else {
        s.fallback.retirement().retire();
    }
    s.fallback.forget();
    if !s.backends.is_empty() {
        for handle in s.backends.iter() {
            handle.forget();
        }
        metrics.forget_route(&s.route.id.to_string());
    }
    waits
}

/// What is served on one port.
struct Port {
    protocol: Protocol,
    router: Router,
    certs: Option<(Arc<CertStore>, Arc<ServerTls>)>,
    /// PROXY protocol, `x-forwarded-client-cert` on cleartext (ClientTrafficPolicies).
    options: crate::PortOptions,
    /// The bound address (`None` in an [embedded](Gateway::embedded) gateway).
    local: Option<SocketAddr>,
}

/// Manifests wired to a [`Gateway`]: the upstream registry, a router per port, the file
/// watcher (see the [module docs](self)).
pub struct Wiring {
    /// The metrics of requests that match no route, and the access log's settings.
    metrics: Metrics,
    access_log: crate::AccessLogSettings,
    /// The tracer of request spans, when traces are on: each port's router and each
    /// route's backends are wrapped; off, nothing is.
    #[cfg(feature = "otel")]
    traces: Option<crate::trace::Traces>,
    path_policy: PathPolicy,
    source: Source,
    /// Translates each reload's resources, reusing what the change did not reach.
    translator: Translator,
    upstreams: Upstreams,
    /// The state of traffic policies (limiter buckets, breakers, retry budgets), kept
    /// across reloads by scope and configuration.
    policy_state: Arc<PolicyState>,
    traffic_defaults: TrafficDefaults,
    /// How long after its route is removed an upgraded connection is closed.
    drain_timeout: std::time::Duration,
    /// What `/config` says of the rules' policies beyond them: defaults, the store.
    dump_defaults: dump::Defaults,
    ports: BTreeMap<u16, Port>,
    /// The TLS, TCP and UDP ports (see `streams.rs`).
    streams: Streams,
    /// Each port's route tables and their builders, by listener hostname.
    tables: BTreeMap<u16, Vec<Group>>,
    /// The metrics series of every served route.
    series: SeriesMap<RouteSeries>,
    /// The access policies route rules name, kept across reloads.
    access: access::AccessRegistry,
    generation: u64,
    served: bool,
    watcher: Option<DirWatcher>,
    /// Parsed files, so a reload parses only what changed.
    cache: FileCache,
    /// What the watcher saw change, for the next reload (`None`: read every file).
    changed_paths: Option<Changed>,
    /// The Kubernetes changes the next reload applies (`None`: take all resources).
    kube_changes: Option<Changes>,
    /// What `/config` shows of the served snapshot (rendered on request).
    dump_parts: Arc<dump::Parts>,
    /// `/config`'s view of the served upstreams (their live handles).
    /// `/config`'s `lastReloadError`, as JSON text.
    last_error: String,
    /// Membership, fleet view and status write-back (Kubernetes only).
    replica: Replica,
    /// The input generation and output hash of the last translated snapshot
    /// (Kubernetes only).
    input_generation: InputGeneration,
    config_hash: String,
    /// What `config_hash` is kept up to date with, translation after translation.
    config_hasher: ConfigHash,
    /// The last good certificate pairs, by (listener, Secret).
    certs: certs::Certs,
    /// The certificates served, for `/config`.
    served_certs: Arc<[certs::ServedCert]>,
}

impl std::fmt::Debug for Wiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wiring")
            .field("source", &self.source)
            .field("generation", &self.generation)
            .field("ports", &self.ports.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Wiring {
    /// Loads `source` and serves it on `gateway` (ports bound, routers, certificates,
    /// upstreams), and starts watching directories. A first snapshot that fails to load
    /// is reported and the gateway stays not ready until a change fixes it.
    ///
    /// # Errors
    ///
    /// [`WiringError::Watch`] if the directories cannot be watched,
    /// [`WiringError::Bind`] if a port of the first served snapshot cannot be bound.
    pub async fn start(
        gateway: &mut Gateway,
        source: Source,
        options: TranslateOptions,
    ) -> Result<Self, WiringError> {
        let options = options.shared_rate_limits(gateway.policy_state().shared_limits().is_some());
        let watcher = match &source {
            Source::Dirs(dirs) => Some(DirWatcher::new(dirs)?),
            Source::Documents(_) | Source::Kubernetes(_) => None,
        };
        let client = Client::new(ClientConfig::default());
        let mut upstreams = Upstreams::new(client, gateway.metrics().clone());
        upstreams.set_eject_refusing(gateway.options().traffic_defaults.eject_refusing_endpoints);
        if let Source::Kubernetes(provider) = &source {
            upstreams.set_default_locality(default_locality(gateway.options()));
            // Not ready, and nothing served, until every store readiness needs is listed:
            // a partial view would drop routes and endpoints that exist.
            tracing::info!("waiting for the Kubernetes stores to sync");
            provider.synced().await;
            tracing::info!("Kubernetes stores synced");
            // The first snapshot covers everything received so far.
            let _ = provider.take_changes();
        }
        let replica = match (&source, &gateway.options().kubernetes) {
            (Source::Kubernetes(provider), Some(kubernetes)) => Replica::start(
                provider,
                kubernetes,
                options.controller(),
                gateway.fleet_dump().clone(),
            ),
            _ => Replica::none(),
        };
        let mut wiring = Self {
            metrics: gateway.metrics().clone(),
            access_log: gateway.options().access_log.clone(),
            #[cfg(feature = "otel")]
            traces: gateway.traces().cloned(),
            path_policy: gateway.options().paths.policy(),
            upstreams,
            policy_state: gateway.policy_state().clone(),
            traffic_defaults: gateway.options().traffic_defaults,
            drain_timeout: gateway
                .options()
                .drain_timeout
                .unwrap_or(crate::DEFAULT_DRAIN_TIMEOUT),
            dump_defaults: dump::Defaults::new(gateway),
            source,
            translator: Translator::new(options),
            ports: BTreeMap::new(),
            streams: Streams::default(),
            tables: BTreeMap::new(),
            series: SeriesMap::default(),
            access: access::AccessRegistry::default(),
            generation: 0,
            served: false,
            watcher,
            cache: FileCache::default(),
            changed_paths: None,
            kube_changes: None,
            dump_parts: Arc::default(),
            last_error: "null".to_owned(),
            replica,
            input_generation: InputGeneration::default(),
            config_hash: String::new(),
            config_hasher: ConfigHash::default(),
            certs: certs::Certs::default(),
            served_certs: Arc::from(Vec::new()),
        };
        let bind_errors = wiring.reload(gateway).await;
        if let Some((port, reason)) = bind_errors.into_iter().next() {
            return Err(WiringError::Bind { port, reason });
        }
        Ok(wiring)
    }

    /// Sets how long the directories must be quiet after a change that leaves a write in
    /// progress before reloading (default 20 ms; 3 ms after a completed write — a close
    /// after writing, a rename; at most 60 ms of delay under a stream of events). Zero
    /// reloads on the first event, which may read a file an editor is still writing; the
    /// next event reloads again.
    pub fn set_debounce(&mut self, quiet: std::time::Duration) {
        if let Some(watcher) = &mut self.watcher {
            watcher.set_debounce(quiet);
        }
    }

    /// The generation of the served snapshot (0 before the first one).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The bound address of every served port.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let http = self.ports.values().filter_map(|p| p.local);
        http.chain(self.streams.bound().map(|(_, local)| local))
            .collect()
    }

    /// The service that routes `port`'s requests by the served configuration, for an
    /// application's own server (an [embedded](Gateway::embedded) gateway): the port's
    /// router behind the path policy, error responses and request metrics. Each reload
    /// swaps its route table; if the port is not (or no longer) in the manifests, every
    /// request gets 404.
    ///
    /// In a gateway that binds its ports this is the router the port's listener serves
    /// (also when the port is bound later, or again with another protocol); once the
    /// port is gone from the manifests it keeps the last routes, as the closed
    /// listener's open connections do.
    pub fn service(&mut self, port: u16) -> PortService {
        let router = match self.ports.get(&port) {
            Some(served) => served.router.clone(),
            None => {
                let router = Router::new(RouteTable::empty());
                self.ports.insert(
                    port,
                    Port {
                        protocol: Protocol::Http,
                        router: router.clone(),
                        certs: None,
                        options: crate::PortOptions::default(),
                        local: None,
                    },
                );
                router
            }
        };
        PortService {
            inner: NormalizePath::new(self.port_service(router, port), self.path_policy),
        }
    }

    /// A port's router behind request metrics and the port's access log (and inside
    /// the server span, when traces are on).
    fn port_service(&self, router: Router, port: u16) -> RouterService {
        #[cfg(feature = "otel")]
        let router = crate::trace::TracedRouter::new(router, self.traces.clone());
        let metered =
            MetricsLayer::new(self.metrics.request_metrics(UNMATCHED, UNMATCHED)).layer(router);
        self.access_log
            .layer(port)
            .with_body_bytes(self.metrics.body_bytes(port))
            .layer(metered)
    }

    /// Reloads on every change of the watched directories (or the Kubernetes provider)
    /// until `shutdown` completes. Then the caller closes and drains the listeners
    /// ([`Gateway::listeners_mut`]) and calls [`stop`](Self::stop).
    pub async fn serve(
        &mut self,
        gateway: &mut Gateway,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        // Rate limiters forget the keys whose buckets are full again, so the memory a
        // burst of distinct clients took is returned.
        let mut idle_keys = tokio::time::interval(IDLE_KEY_SWEEP);
        idle_keys.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let provider = match &self.source {
            Source::Kubernetes(provider) => Some(provider.clone()),
            _ => None,
        };
        loop {
            let kube_changed = async {
                match &provider {
                    Some(p) => p.changed().await,
                    None => std::future::pending().await,
                }
            };
            let watcher = &mut self.watcher;
            let changed = async {
                match watcher.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                _ = idle_keys.tick() => self.policy_state.sweep_idle_keys(),
                changes = kube_changed => self.kube_changed(gateway, &changes).await,
                changed = changed => match changed {
                    Some(changed) => {
                        let started = tokio::time::Instant::now();
                        self.changed_paths = Some(changed);
                        self.reload(gateway).await;
                        tracing::debug!(elapsed = ?started.elapsed(), "reload done");
                    }
                    None => {
                        tracing::error!("the file watcher stopped; configuration is no longer reloaded");
                        self.watcher = None;
                    }
                },
            }
        }
        self.watcher = None;
    }

    /// Leaves the fleet (deletes the membership Lease, when serving from Kubernetes).
    /// Call it after the listeners drained: the fleet sees this replica until it
    /// stopped serving.
    pub async fn stop(self) {
        self.replica.vacate().await;
    }

    /// Applies a batch of Kubernetes changes: a configuration change reloads (which
    /// recomputes every endpoint too); otherwise each changed Service's upstreams get
    /// their new endpoints, and nothing else is touched.
    async fn kube_changed(&mut self, gateway: &mut Gateway, changes: &Changes) {
        if changes.config {
            self.kube_changes = Some(changes.clone());
            self.reload(gateway).await;
            tracing::debug!(latency = ?changes.since.elapsed(), "configuration change served");
            return;
        }
        let Source::Kubernetes(provider) = &self.source else {
            return;
        };
        // The kept resources follow (an incremental translation reads a rebuilt
        // upstream's slices from them); they count towards the next translation.
        if self.served {
            update_provided(
                provider,
                &mut self.cache,
                Some(changes),
                &mut self.input_generation,
            );
        }
        let updated = set_service_endpoints(
            &mut self.upstreams,
            &changes.services,
            |ns, name, port, udp| provider.service_endpoints(ns, name, port, udp),
        );
        if !changes.services.is_empty() {
            let latency = changes.since.elapsed();
            gateway.metrics().record_endpoint_update(latency);
            tracing::debug!(
                services = changes.services.len(),
                upstreams = updated,
                ?latency,
                "endpoints updated"
            );
        }
        if updated > 0 || changes.clusters {
            self.publish(gateway);
        }
    }

    /// One reload (see the [module docs](self#a-reload)). Returns the ports that could
    /// not be bound.
    async fn reload(&mut self, gateway: &mut Gateway) -> Vec<(u16, String)> {
        let started = tokio::time::Instant::now();
        let source = self.source.clone();
        let changed = self.changed_paths.take().unwrap_or(Changed::Rescan);
        let kube = self.kube_changes.take();
        let mut cache = std::mem::take(&mut self.cache);
        // The first load runs on this thread: nothing is served yet, and with glibc the
        // parse's garbage then stays in the arena the long-lived state is allocated in
        // (a blocking thread's arena kept ~15 MB resident for 5,000 routes).
        let first = !self.served;
        // Translated with the load, on its thread, when there is something to
        // translate: the translator frees what a change replaces (for a mass
        // deletion, every removed route's piece), and a thread that ends takes its
        // malloc cache of those chunks with it (see `trim::on_own_thread`).
        let mut translated = None;
        let loaded = if first {
            let loaded = load(
                &source,
                &mut cache,
                &changed,
                kube.as_ref(),
                &mut self.input_generation,
            );
            self.cache = cache;
            loaded.map(|l| (l, started.elapsed()))
        } else {
            let mut generation = self.input_generation;
            let fresh = Translator::new(self.translator.options().clone());
            let mut translator = std::mem::replace(&mut self.translator, fresh);
            match trim::on_own_thread("gatekit-load", move || {
                let loaded = load(
                    &source,
                    &mut cache,
                    &changed,
                    kube.as_ref(),
                    &mut generation,
                );
                let load_time = started.elapsed();
                let translation = match &loaded {
                    Ok(Load::Changed(_)) if cache.endpoints_only().is_none() => {
                        let changed = cache.take_changed();
                        let t = translator.translate(cache.resources(), changed.as_ref());
                        Some((changed, t))
                    }
                    _ => None,
                };
                let loaded = loaded.map(|l| (l, load_time));
                (loaded, cache, generation, translator, translation)
            })
            .await
            {
                Some((loaded, cache, generation, translator, translation)) => {
                    self.cache = cache;
                    self.input_generation = generation;
                    self.translator = translator;
                    translated = translation;
                    loaded
                }
                // (The cache and the translator start again empty: the next load
                // reads everything, and the next translation is a full one.)
                None => {
                    tracing::error!("loading manifests failed: the loader panicked");
                    gateway.metrics().record_reload(false);
                    return Vec::new();
                }
            }
        };
        let loaded = match loaded {
            Err(errors) => {
                self.refuse(gateway, &errors);
                return Vec::new();
            }
            // A late or repeated watcher event: the files are as last loaded.
            Ok((Load::Unchanged, _)) if !first => return Vec::new(),
            Ok((_, loaded)) => loaded,
        };
        // Only EndpointSlice files changed: the Services' upstreams get their new
        // endpoints, as on a Kubernetes watch event; nothing is translated again.
        if !first && let Some(services) = self.cache.endpoints_only() {
            let resources = self.cache.resources();
            let updated =
                set_service_endpoints(&mut self.upstreams, services, |ns, name, port, udp| {
                    file_endpoints(resources, ns, name, port, udp)
                });
            let latency = started.elapsed();
            gateway.metrics().record_endpoint_update(latency);
            tracing::info!(
                services = services.len(),
                upstreams = updated,
                ?latency,
                "endpoints updated (EndpointSlice files only)"
            );
            if updated > 0 {
                self.publish(gateway);
            }
            return Vec::new();
        }
        // The replica's output hash (Kubernetes only), timed apart within "translate".
        let mut hashing = std::time::Duration::ZERO;
        // The objects changed since the last translation (`None`: unknown), so that
        // only what they reach is translated again.
        let (changed, mut translation) = translated.unwrap_or_else(|| {
            let changed = self.cache.take_changed();
            let t = self
                .translator
                .translate(self.cache.resources(), changed.as_ref());
            (changed, t)
        });
        tracing::debug!(changed = ?changed.as_ref().map(BTreeSet::len), "objects changed");
        // What changed is for this reload's hash and apply only: taken out of the
        // translation `/config` and the status writer keep (after every route was
        // deleted, its route ids and upstream names would hold pages until the next
        // reload). The translator's result is not shared yet.
        let changes = match Arc::get_mut(&mut translation) {
            Some(t) => t.take_changes(),
            None => translation.changes().cloned(),
        };
        // Debug builds (the tests) check every incremental translation against a full
        // one: the loader's changed set and the translator must agree on what changed.
        #[cfg(debug_assertions)]
        if changed.is_some() {
            let full = gatekit_k8s::translate(self.cache.resources(), self.translator.options());
            debug_assert_eq!(
                format!("{full:?}"),
                format!("{translation:?}"),
                "the incremental translation differs from a full one (changed: {changed:?})"
            );
        }
        let global = translation.global_rate_limits();
        if !global.is_empty() && gateway.policy_state().shared_limits().is_none() {
            tracing::warn!(
                limits = ?global,
                "Global rate limits run per replica: no `redis` in the settings (N replicas allow up to N times each limit)"
            );
        }
        if matches!(self.source, Source::Kubernetes(_)) {
            let t = tokio::time::Instant::now();
            self.config_hash = self.config_hasher.update(&translation, changes.as_ref());
            hashing += t.elapsed();
        }
        let translated = started.elapsed();
        let (bind_errors, errors) = self.apply(gateway, &translation, changes.as_ref()).await;
        drop(changes);
        // A policy gatekit-auth refused says so in the statuses published below.
        let translation = self.access.refuse_unbuilt(translation);
        let bound: BTreeMap<u16, SocketAddr> = self
            .ports
            .iter()
            .filter_map(|(p, port)| Some((*p, port.local?)))
            .chain(self.streams.bound())
            .collect();
        self.replica.served(&translation);
        let access_json = access::dump(translation.access_policies(), &self.access);
        // `/config` is rendered when asked for; the reload hands it shared pointers.
        let previous = std::mem::replace(
            &mut self.dump_parts,
            Arc::new(dump::Parts::new(
                self.generation,
                translation,
                bound,
                errors,
                self.dump_defaults.clone(),
                access_json,
            )),
        );
        self.publish(gateway);
        self.report_config();
        if first {
            drop(previous);
            // (The trim waits for the thread that takes this thread's malloc cache to
            // end: see `trim::flush_thread_cache`.)
            trim::flush_thread_cache();
            trim::release_free_memory_soon();
        } else {
            // The previous translation is freed off the reload path (for 5,000 routes,
            // milliseconds), on a thread that ends with it, then free pages are
            // returned, once for a burst of reloads (see `trim.rs`). What apply freed
            // here leaves this thread's malloc cache first.
            trim::drop_on_own_thread(previous);
            trim::flush_thread_cache();
            trim::ask_workers_to_flush();
            trim::release_free_memory_soon();
        }
        tracing::info!(
            generation = self.generation,
            files_read = self.cache.files_read(),
            load_ms = loaded.as_secs_f64() * 1e3,
            translate_ms = (translated - loaded).as_secs_f64() * 1e3,
            hash_ms = hashing.as_secs_f64() * 1e3,
            apply_ms = (started.elapsed() - translated).as_secs_f64() * 1e3,
            "reload timings"
        );
        bind_errors
    }

    fn refuse(&mut self, gateway: &Gateway, errors: &[ManifestError]) {
        for error in errors {
            tracing::error!(
                file = error.file(),
                document = error.document(),
                kind = error.kind(),
                namespace = error.namespace(),
                name = error.name(),
                field = error.field(),
                reason = error.reason(),
                "invalid manifest; keeping the last good configuration"
            );
        }
        gateway.metrics().record_reload(false);
        self.last_error = dump::refused(errors);
        self.publish(gateway);
    }

    /// Serves `translation`; `changes` (its [`Translation::changes`], taken out)
    /// says what changed since the last one served (`None`: assume everything).
    /// Returns the ports that could not be bound and every configuration problem (for
    /// `/config`).
    async fn apply(
        &mut self,
        gateway: &mut Gateway,
        translation: &Translation,
        changes: Option<&gatekit_k8s::translate::Changes>,
    ) -> (Vec<(u16, String)>, Vec<ConfigError>) {
        let metrics = gateway.metrics().clone();
        let mut errors: Vec<ConfigError> = translation.errors().to_vec();
        let upstreams = self
            .upstreams
            .update(translation.upstreams(), changes.map(|c| c.upstreams()));
        errors.extend(upstreams.errors.iter().cloned());
        errors.extend(self.access.update(
            translation.access_policies(),
            &self.upstreams,
            &upstreams.stale,
            &metrics,
        ));
        self.update_series(translation, changes, &metrics);
        let lookup = Lookup {
            upstreams: &self.upstreams,
            series: &self.series,
            state: &self.policy_state,
            metrics: &metrics,
            access: &self.access,
            #[cfg(feature = "otel")]
            traces: self.traces.as_ref(),
        };

        let mut bind_errors = Vec::new();
        let mut wanted = BTreeSet::new();
        self.certs.begin();
        // Stream ports no longer streams are closed first: the HTTP loop may bind them.
        self.streams.release(gateway, translation).await;
        for port in translation.listeners() {
            if streams::is_stream(port.protocol()) {
                continue;
            }
            wanted.insert(port.port());
            let groups = self.tables.entry(port.port()).or_default();
            let untouched = changes.is_some_and(|c| !c.ports().contains(&port.port()));
            let changed = port_table(
                port,
                groups,
                untouched,
                &self.traffic_defaults,
                &lookup,
                &upstreams.stale,
                &mut errors,
            );
            // Unchanged: the port's tables as they are (for a router made anew).
            let table = || {
                let tables = groups
                    .iter()
                    .map(|g| (g.hostname.as_deref(), Arc::clone(&g.table)));
                PortTable::from_shared(tables).unwrap_or_default()
            };
            let tls =
                (port.protocol() == Protocol::Https).then(|| self.certs.port(port, &mut errors));
            let options = crate::PortOptions::new(
                proxy_protocol(port, gateway, &mut errors),
                cleartext_forward_client_cert(port, &mut errors),
            )
            .with_max_connections(connection_limit(port, &mut errors))
            .with_client_ip(client_ip(port, &mut errors));
            match self.ports.get(&port.port()) {
                Some(served) if gateway.is_embedded() => {
                    if let Some(table) = changed {
                        served.router.store(table);
                    }
                }
                None if gateway.is_embedded() => {
                    let router = Router::new(changed.unwrap_or_else(table));
                    let served = Port {
                        protocol: port.protocol(),
                        router,
                        certs: None,
                        options: crate::PortOptions::default(),
                        local: None,
                    };
                    self.ports.insert(port.port(), served);
                }
                Some(served)
                    if served.protocol == port.protocol()
                        && served.options == options
                        && served.local.is_some() =>
                {
                    if let Some(table) = changed {
                        served.router.store(table);
                    }
                    if let (Some((store, configs)), Some(tls)) = (&served.certs, tls) {
                        // Settings first: a handshake never pairs a new certificate
                        // with settings that no longer hold.
                        if let Err(error) = configs.replace(&tls.settings) {
                            errors.push(ConfigError::new(
                                format!("listeners[port={}].tls", port.port()),
                                format!("{error} (the previous TLS settings keep serving)"),
                            ));
                        }
                        store.replace(tls.certs);
                    }
                }
                _ => {
                    // A router handed out by `service` (before the port was bound, or
                    // while it served another protocol) stays the port's router.
                    let table = changed.unwrap_or_else(table);
                    let router = match self.ports.remove(&port.port()) {
                        Some(previous) => {
                            if previous.local.is_some() {
                                gateway.listeners_mut().remove(port.port()).await;
                            }
                            previous.router.store(table);
                            previous.router
                        }
                        None => Router::new(table),
                    };
                    let tls = match tls.map(tls_of) {
                        Some(Err(error)) => {
                            // Not served with other settings than asked for.
                            self.ports.insert(
                                port.port(),
                                Port {
                                    protocol: port.protocol(),
                                    router,
                                    certs: None,
                                    options: crate::PortOptions::default(),
                                    local: None,
                                },
                            );
                            let reason = format!("TLS settings: {error}");
                            tracing::error!(port = port.port(), %reason, "cannot listen");
                            errors.push(ConfigError::new(
                                format!("listeners[port={}].tls", port.port()),
                                reason.clone(),
                            ));
                            bind_errors.push((port.port(), reason));
                            continue;
                        }
                        Some(Ok(tls)) => Some(tls),
                        None => None,
                    };
                    let transport = match &tls {
                        Some((_, configs)) => Transport::TlsBySni(configs.clone()),
                        None => Transport::Plain,
                    };
                    let service = self.port_service(router.clone(), port.port());
                    match gateway
                        .listeners_mut()
                        .add_with(port.port(), transport, options.clone(), service)
                        .await
                    {
                        Ok(local) => {
                            self.ports.insert(
                                port.port(),
                                Port {
                                    protocol: port.protocol(),
                                    router,
                                    certs: tls,
                                    options,
                                    local: Some(local),
                                },
                            );
                        }
                        Err(error) => {
                            // Kept unbound: the next reload tries to bind it again.
                            self.ports.insert(
                                port.port(),
                                Port {
                                    protocol: port.protocol(),
                                    router,
                                    certs: None,
                                    options: crate::PortOptions::default(),
                                    local: None,
                                },
                            );
                            tracing::error!(port = port.port(), %error, "cannot listen");
                            errors.push(ConfigError::new(
                                format!("listeners[port={}]", port.port()),
                                error.to_string(),
                            ));
                            bind_errors.push((port.port(), error.to_string()));
                        }
                    }
                }
            }
        }
        let gone: Vec<u16> = self
            .ports
            .keys()
            .filter(|p| !wanted.contains(p))
            .copied()
            .collect();
        self.tables.retain(|p, _| wanted.contains(p));
        for port in gone {
            if gateway.is_embedded() {
                // The application holds this port's service: it answers 404 from now on.
                if let Some(served) = self.ports.get(&port) {
                    served.router.store(RouteTable::empty());
                }
                continue;
            }
            self.ports.remove(&port);
            gateway.listeners_mut().remove(port).await;
        }
        self.streams
            .apply(
                gateway,
                translation,
                &self.upstreams,
                &mut self.certs,
                &mut errors,
                &mut bind_errors,
            )
            .await;
        self.upstreams.retain(&upstreams.gone);
        // Limiter buckets, breaker counts and budgets of policies no table names any more.
        self.policy_state.sweep();
        let now = gatekit_k8s::translate::unix_now();
        self.served_certs = self.certs.finish(now);
        metrics.set_certificates(self.served_certs.iter().map(|c| {
            (
                c.secret.as_str(),
                c.gateway.as_str(),
                c.listener.as_str(),
                c.not_after,
            )
        }));

        for error in &errors {
            tracing::warn!(%error, "configuration problem (the rest is served)");
        }
        self.generation += 1;
        metrics.record_reload(true);
        metrics.set_config_generation(self.generation);
        "null".clone_into(&mut self.last_error);
        if !self.served {
            self.served = true;
            gateway.readiness().mark_served();
        }
        tracing::info!(
            generation = self.generation,
            ports = self.ports.len() + self.streams.bound().count(),
            upstreams = translation.upstreams().len(),
            problems = errors.len(),
            "configuration served"
        );
        (bind_errors, errors)
    }

    /// Keeps a metrics series per (route, backend) of `translation`: routes whose `Arc`
    /// is the one seen last time keep theirs without a look; the series of pairs no
    /// longer served are forgotten. With `changes` ([`Translation::changes`]), only
    /// the routes of the changed ids are looked at (the others are the same `Arc`s as
    /// last time).
    fn update_series(
        &mut self,
        translation: &Translation,
        changes: Option<&gatekit_k8s::translate::Changes>,
        metrics: &Metrics,
    ) {
        // Compared for equality only (see `RouteSeries::seen`).
        let reload = (self.generation + 1) as u32;
        let drain_timeout = self.drain_timeout;
        if let Some(changes) = changes {
            for route in changes.routes() {
                see_route(&mut self.series, route, reload, metrics, &self.upstreams);
            }
            let mut retired = false;
            for id in changes.route_ids() {
                if let Some(s) = self.series.get(id)
                    && s.seen != reload
                    && let Some(s) = self.series.remove(id)
                {
                    retired |= retire_series(&s, drain_timeout, metrics);
                }
            }
            self.series.shrink_if_sparse();
            if retired {
                // The retired routes' tasks end at the drain deadline (see `trim.rs`).
                trim::release_free_memory_after(drain_timeout);
            }
            return;
        }
        for port in translation.listeners() {
            for route in port.routes() {
                see_route(&mut self.series, route, reload, metrics, &self.upstreams);
            }
        }
        let mut retired = false;
        self.series.retain(|s| {
            if s.seen == reload {
                return true;
            }
            retired |= retire_series(s, drain_timeout, metrics);
            false
        });
        self.series.shrink_if_sparse();
        if retired {
            trim::release_free_memory_after(drain_timeout);
        }
    }

    /// Labels the membership Lease with the served configuration: its input
    /// generation and output hash.
    fn report_config(&self) {
        self.replica
            .set_config(self.input_generation.value(), &self.config_hash);
    }

    /// Publishes `/config`: the served snapshot, the upstreams (their health is read
    /// when `/config` is rendered), the last reload error and the clusters. Renders
    /// nothing (see `dump.rs`).
    fn publish(&mut self, gateway: &Gateway) {
        let clusters = match &self.source {
            Source::Kubernetes(provider) => {
                // One read for both, so the metrics and `/config` agree.
                let clusters = provider.clusters();
                for c in &clusters {
                    gateway
                        .metrics()
                        .set_cluster_state(&c.name, c.connected, c.endpoints_dropped);
                }
                serde_json::to_string(&clusters).unwrap_or_else(|_| "null".to_owned())
            }
            _ => "null".to_owned(),
        };
        gateway
            .config_dump()
            .publish_snapshot(Arc::new(dump::Snapshot {
                parts: self.dump_parts.clone(),
                last_error: self.last_error.clone(),
                clusters,
                upstreams: self.upstreams.views(),
                certificates: self.served_certs.clone(),
            }));
    }
}

/// The locality of upstreams without a BackendPolicy locality: the local cluster's
/// endpoints first, the others as failover below the configured threshold.
fn default_locality(options: &crate::GatewayOptions) -> Option<gatekit_lb::Locality> {
    let kubernetes = options.kubernetes.as_ref()?;
    let local = kubernetes.local_cluster.as_deref()?;
    let threshold = kubernetes.failover_threshold.unwrap_or(70).clamp(1, 100);
    Some(
        gatekit_lb::Locality::default()
            .with_cluster(local)
            .with_overprovisioning(100.0 / f64::from(threshold)),
    )
}

/// Every backend name a route's rules send to (invalid ones included: they never
/// resolve, and their series stay at zero).
fn backend_names(route: &Route) -> BTreeSet<&str> {
    route
        .rules
        .iter()
        .flat_map(|r| r.backends.iter().map(|b| b.name.as_str()))
        .collect()
}

/// Whether `port` reads PROXY protocol headers: when a ClientTrafficPolicy asks for it
/// on any of its listeners (the header comes before TLS and `Host`, so it is per port).
/// A port whose listeners disagree, or a request for it with no trusted source in the
/// settings, is reported in `errors`.
pub(super) fn proxy_protocol(
    port: &PortListeners,
    gateway: &Gateway,
    errors: &mut Vec<ConfigError>,
) -> bool {
    let asking: Vec<&str> = port
        .listeners()
        .iter()
        .filter(|l| l.proxy_protocol())
        .map(|l| l.name())
        .collect();
    if asking.is_empty() {
        return false;
    }
    let field = format!("listeners[port={}].proxyProtocol", port.port());
    if asking.len() != port.listeners().len() {
        errors.push(ConfigError::new(
            field.clone(),
            format!(
                "PROXY protocol is read on the whole port (it comes before TLS and Host): listeners {} ask for it, the others on the port get it too",
                asking.join(", ")
            ),
        ));
    }
    if gateway
        .options()
        .limits
        .proxy_protocol_trusted_sources
        .is_empty()
    {
        errors.push(ConfigError::new(
            field,
            "no source is trusted to send PROXY protocol headers (settings limits.proxyProtocolTrustedSources): none is read",
        ));
    }
    true
}

/// The most connections `port` keeps open at once: the ClientTrafficPolicies'
/// `connectionLimit` of its listeners (a port accepts for all its listeners, so the
/// bound is the port's). Listeners that disagree, or some without one: the smallest
/// bound, reported in `errors`.
pub(super) fn connection_limit(
    port: &PortListeners,
    errors: &mut Vec<ConfigError>,
) -> Option<usize> {
    let limits: Vec<Option<usize>> = port
        .listeners()
        .iter()
        .map(|l| l.connection_limit())
        .collect();
    let smallest = limits.iter().flatten().min().copied()?;
    if limits.iter().any(|l| *l != Some(smallest)) {
        errors.push(ConfigError::new(
            format!("listeners[port={}].connectionLimit", port.port()),
            format!(
                "the listeners of the port ask for different connection limits ({}): the port accepts for all of them, the smallest ({smallest}) applies",
                limits
                    .iter()
                    .map(|l| l.map_or_else(|| "none".to_owned(), |n| n.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Some(smallest)
}

/// How an HTTP or HTTPS port finds its requests' clients: the ClientTrafficPolicies'
/// `clientIPDetection` of its listeners (resolved before `Host` picks a listener, so it
/// is per port). Listeners that disagree: none (the peer is the client, so no listener
/// reads a header it did not ask to trust), reported in `errors`.
pub(super) fn client_ip(
    port: &PortListeners,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<gatekit_core::client_ip::ClientIpDetection>> {
    let first = port.listeners().first()?.client_ip();
    if port.listeners().iter().all(|l| l.client_ip() == first) {
        return first.cloned();
    }
    let each: Vec<String> = port
        .listeners()
        .iter()
        .map(|l| match l.client_ip() {
            Some(d) => format!("{}: {d}", l.name()),
            None => format!("{}: none", l.name()),
        })
        .collect();
    errors.push(ConfigError::new(
        format!("listeners[port={}].clientIPDetection", port.port()),
        format!(
            "the listeners of the port find the client differently ({}); the client is found before Host picks a listener, so none applies: the client is the connection's peer",
            each.join(", ")
        ),
    ));
    None
}

/// What an HTTP port does with `x-forwarded-client-cert` (no certificate is ever
/// verified there, so only `AlwaysForwardOnly` keeps what the client sent): the mode
/// its listeners' ClientTrafficPolicies agree on, else the default (removed), with a
/// problem in `errors`. HTTPS ports: the default (each handshake's settings decide).
fn cleartext_forward_client_cert(
    port: &PortListeners,
    errors: &mut Vec<ConfigError>,
) -> gatekit_core::proxy::ForwardClientCertMode {
    use gatekit_core::proxy::ForwardClientCertMode;
    if port.protocol() != Protocol::Http {
        return ForwardClientCertMode::default();
    }
    let modes: BTreeSet<String> = port
        .listeners()
        .iter()
        .map(|l| {
            format!(
                "{:?}",
                l.tls_settings()
                    .map(|s| s.forward_client_cert_policy().mode)
                    .unwrap_or_default()
            )
        })
        .collect();
    let first = port
        .listeners()
        .first()
        .and_then(|l| l.tls_settings())
        .map(|s| s.forward_client_cert_policy().mode)
        .unwrap_or_default();
    if modes.len() > 1 {
        errors.push(ConfigError::new(
            format!("listeners[port={}].headers.xForwardedClientCert", port.port()),
            format!(
                "the listeners of this HTTP port ask for different modes ({}); the header is removed",
                modes.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
        return ForwardClientCertMode::default();
    }
    first
}

/// A new HTTPS port's certificate store and TLS settings.
fn tls_of(
    tls: certs::PortTls,
) -> Result<(Arc<CertStore>, Arc<ServerTls>), gatekit_core::tls::TlsError> {
    let store = Arc::new(CertStore::new(tls.certs));
    let configs = ServerTls::new(store.clone(), &tls.settings)?;
    Ok((store, Arc::new(configs)))
}

/// A port's router behind request metrics and the access log (the router answers
/// errors itself).
type RouterService = crate::access_log::AccessLog<MetricsService<Routed, RequestMetrics>>;

/// A port's router, inside the server span when built with traces.
#[cfg(feature = "otel")]
type Routed = crate::trace::TracedRouter;
#[cfg(not(feature = "otel"))]
type Routed = Router;

/// The service of one port of an embedded gateway ([`Wiring::service`]): routes each
/// request by the served configuration. Cheap to clone; always ready.
#[derive(Clone, Debug)]
pub struct PortService {
    inner: NormalizePath<RouterService>,
}

impl<B> tower_service::Service<http::Request<B>> for PortService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<gatekit_core::Body>;
    type Error = std::convert::Infallible;
    type Future =
        <NormalizePath<RouterService> as tower_service::Service<http::Request<B>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<http::Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests;
