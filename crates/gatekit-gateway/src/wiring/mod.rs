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
//!    route of a file that failed to parse. Only files whose text changed are parsed
//!    again (a per-file cache, see `cache.rs`). When those files held EndpointSlices
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
//!    upstream's per-endpoint state across reloads.
//! 4. **Per port**: a route table is built ([`RouteTable::build_partial`]) and stored in
//!    the port's [`Router`] (kept across reloads, so the swap is one atomic pointer
//!    store: requests in flight finish on the table they were routed by); HTTPS ports get
//!    a new certificate set in their [`CertStore`] (SNI by listener hostname; the
//!    listener without a hostname, else the first one, is the default). Ports that
//!    appear are bound, ports that disappear (or change protocol) are closed.
//! 5. Upstreams no longer named are dropped, metric series of removed (route, backend)
//!    pairs are forgotten, the generation is bumped, the reload is counted ok, and the
//!    first served snapshot marks the gateway ready.
//! 6. `/config` is rendered **off the reload path**, on a blocking thread that also
//!    drops the translation (for 5,000 routes, rendering and freeing take several
//!    milliseconds: the next reload, or the requests sharing the
//!    reload's worker thread, need not wait for them). The serve loop publishes the
//!    result when it is ready; until then `/config` shows the previous snapshot,
//!    complete and with its own generation. A newer reload replaces a pending render
//!    (the older result is discarded). `/config`'s parts are then held once, inside
//!    the published document (see `dump.rs`).
//! 7. Once the reload's garbage is freed (after the first load, or when its render is
//!    published), glibc is asked to return free pages to the kernel (`malloc_trim`,
//!    on a blocking thread; see `trim.rs`): with 5,000 routes this is the difference
//!    between 41 and 48 MB of RSS after the first load, 46 and 56 MB after a reload.
//!
//! Until a snapshot is served (the first reload, and any after a refused first load),
//! loading and rendering run on the reload's own thread, not on blocking threads: nothing
//! is served yet, and with glibc's per-thread arenas the garbage of parsing 5,000 routes
//! otherwise stays resident in a second arena (RSS 73 MB → 57 MB). The first snapshot
//! ([`Wiring::start`]) is thus published before `start` returns.
//!
//! Certificate Secrets are manifests like any other: changing a Secret file reloads,
//! and its listeners' certificate set is replaced (new handshakes use it at once).
//!
//! If the first load fails, the gateway stays up and not ready (`/readyz` answers 503)
//! and serves the snapshot as soon as a change makes it valid.

mod cache;
mod dump;
mod labels;
mod replica;
mod trim;
pub(crate) mod upstreams;
mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use gatekit_core::client::{Client, ClientConfig};
use gatekit_core::path::{NormalizePath, PathPolicy};
use gatekit_core::retry::RetryPolicy;
use gatekit_core::route::{PolicyState, Route, RouteId};
use gatekit_core::tls::{CertSet, CertStore, load_certified_key};
use gatekit_core::{Backend, Backends, BoxError, ConfigError, PortTable, RouteTable, Router};
use gatekit_k8s::provider::Changes;
use gatekit_k8s::translate::{PortListeners, Protocol};
use gatekit_k8s::{
    ManifestError, Provider, ResourceSet, TranslateOptions, Translation, Translator,
};
use tower_layer::Layer;

use self::cache::{FileCache, Load};
use self::dump::Rendered;
use self::labels::{ByRoute, Labelled};
use self::replica::Replica;
use self::upstreams::Upstreams;
use self::watch::DirWatcher;
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
fn load(source: &Source, cache: &mut FileCache) -> Result<Load, Vec<ManifestError>> {
    let warnings = match source {
        Source::Dirs(dirs) => match cache.load(dirs)? {
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
            cache.set(provider.resources());
            Vec::new()
        }
    };
    for warning in warnings {
        tracing::warn!(%warning, "manifest skipped");
    }
    Ok(Load::Changed(Vec::new()))
}

/// Gives the upstreams of each of `services` (namespace, name) the endpoints
/// `endpoints_of(namespace, name, port)` computes (problems logged). Returns how many
/// upstreams were updated.
fn set_service_endpoints<'s>(
    upstreams: &mut Upstreams,
    service_upstreams: &BTreeMap<(String, String), Vec<(String, u16)>>,
    services: impl IntoIterator<Item = &'s (String, String)>,
    endpoints_of: impl Fn(&str, &str, u16) -> (Vec<gatekit_core::Endpoint>, Vec<ConfigError>),
) -> usize {
    let mut updated = 0;
    for service in services {
        let Some(names) = service_upstreams.get(service) else {
            continue;
        };
        for (name, port) in names {
            let (endpoints, errors) = endpoints_of(&service.0, &service.1, *port);
            for error in errors {
                tracing::warn!(%error, upstream = %name, "endpoint ignored");
            }
            if upstreams.set_endpoints(name, &endpoints) {
                updated += 1;
            }
        }
    }
    updated
}

/// The endpoints of Service `ns/name` port `port` in `resources`, as translation
/// computes them (its EndpointSlices in file order).
fn file_endpoints(
    resources: &ResourceSet,
    ns: &str,
    name: &str,
    port: u16,
) -> (Vec<gatekit_core::Endpoint>, Vec<ConfigError>) {
    let in_ns = |meta: &gatekit_k8s::types::ObjectMeta| {
        meta.namespace.as_deref().unwrap_or("default") == ns
    };
    let Some(service) = resources
        .services
        .iter()
        .find(|s| in_ns(&s.metadata) && s.metadata.name.as_deref() == Some(name))
    else {
        return (Vec::new(), Vec::new());
    };
    let slices = resources.endpoint_slices.iter().filter(|s| {
        in_ns(&s.metadata)
            && s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(gatekit_k8s::types::SERVICE_NAME_LABEL))
                .is_some_and(|svc| svc == name)
    });
    let mut errors = Vec::new();
    let endpoints = gatekit_k8s::translate::service_endpoints(service, port, slices, &mut errors);
    (endpoints, errors)
}

/// How often rate limiters drop the keys whose buckets are full again.
const IDLE_KEY_SWEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a reload's route tables find their backends (each upstream, labelled with its
/// metrics per route) and the state of their policies.
struct Lookup<'a> {
    upstreams: &'a Upstreams,
    by_backend: &'a HashMap<String, ByRoute>,
    state: &'a PolicyState,
    metrics: &'a Metrics,
}

impl gatekit_core::Backends for Lookup<'_> {
    fn backend(&self, name: &str) -> Option<Backend> {
        let upstream = self.upstreams.upstream(name)?.clone();
        let by_route = self.by_backend.get(name).cloned().unwrap_or_default();
        Some(Backend::new(Labelled::new(upstream, by_route)))
    }

    fn policy_state(&self) -> Option<&PolicyState> {
        Some(self.state)
    }

    /// Answers a rule gives before any backend (a policy's refusal, the request
    /// timeout) are counted under the route, backend `(none)`.
    fn error_extensions(&self, route: &RouteId) -> Option<http::Extensions> {
        let mut extensions = http::Extensions::new();
        extensions.insert(RouteFallback::new(self.metrics.clone(), route.to_string()));
        Some(extensions)
    }
}

/// `routes` with the gateway's [`TrafficDefaults`] filled in where their rules set
/// nothing: the routes a port's table is built from, and what `/config` shows.
pub(crate) fn with_defaults(routes: &[Arc<Route>], defaults: &TrafficDefaults) -> Vec<Route> {
    let mut routes: Vec<Route> = routes.iter().map(|r| Route::clone(r)).collect();
    if defaults.retry_unsent {
        for rule in routes.iter_mut().flat_map(|r| r.rules.iter_mut()) {
            if rule.policy.retry.is_none() {
                rule.policy.retry = Some(RetryPolicy::unsent_once());
            }
        }
    }
    routes
}

/// The port's route tables, one per listener hostname (listener isolation: a request is
/// matched against the routes of the most specific listener for its host only).
/// Listeners of several Gateways with the same hostname on one port share one table.
/// Problems go to `errors`, each once however many listeners a route is attached to.
pub(crate) fn port_table(
    port: &PortListeners,
    defaults: &TrafficDefaults,
    backends: &dyn Backends,
    errors: &mut Vec<ConfigError>,
) -> PortTable {
    let mut groups: Vec<(Option<&str>, Vec<Route>)> = Vec::new();
    for (listener, routes) in port.routes_by_listener() {
        let routes = with_defaults(routes, defaults);
        match groups.iter_mut().find(|(h, _)| *h == listener.hostname()) {
            Some((_, group)) => group.extend(routes),
            None => groups.push((listener.hostname(), routes)),
        }
    }
    let mut tables = Vec::with_capacity(groups.len());
    for (hostname, routes) in groups {
        let (table, table_errors) = RouteTable::build_partial(routes, backends);
        for e in table_errors {
            if !errors.contains(&e) {
                errors.push(e);
            }
        }
        tables.push((hostname, table));
    }
    PortTable::new(tables).unwrap_or_else(|e| {
        // The translation validates listener hostnames and the groups above are by
        // hostname, so this is not expected; serve nothing rather than mix listeners.
        errors.push(e.within(&format!("port {}", port.port())));
        PortTable::empty()
    })
}

/// What is served on one port.
struct Port {
    protocol: Protocol,
    router: Router,
    certs: Option<Arc<CertStore>>,
    /// The bound address (`None` in an [embedded](Gateway::embedded) gateway).
    local: Option<SocketAddr>,
}

/// A (route, backend) pair with a metrics series.
type SeriesKey = (String, String);

/// Manifests wired to a [`Gateway`]: the upstream registry, a router per port, the file
/// watcher (see the [module docs](self)).
pub struct Wiring {
    /// The metrics of requests that match no route, and whether to log each request.
    metrics: Metrics,
    access_log: bool,
    path_policy: PathPolicy,
    source: Source,
    /// Translates each reload's resources, reusing what the change did not reach.
    translator: Translator,
    upstreams: Upstreams,
    /// The state of traffic policies (limiter buckets, breakers, retry budgets), kept
    /// across reloads by scope and configuration.
    policy_state: Arc<PolicyState>,
    traffic_defaults: TrafficDefaults,
    /// What `/config` says of the rules' policies beyond them: defaults, the store.
    dump_defaults: dump::Defaults,
    ports: BTreeMap<u16, Port>,
    series: BTreeMap<SeriesKey, RequestMetrics>,
    routes_with_series: BTreeSet<String>,
    generation: u64,
    served: bool,
    watcher: Option<DirWatcher>,
    /// Parsed files, so a reload parses only what changed.
    cache: FileCache,
    /// `/config` fragments of the last rendered snapshot, as JSON text.
    rendered: Rendered,
    /// The render of the served snapshot, if still running (see step 6 of the
    /// [module docs](self#a-reload)).
    rendering: Option<tokio::task::JoinHandle<Rendered>>,
    /// `/config`'s `lastReloadError`, as JSON text.
    last_error: String,
    /// The upstreams of each Service (namespace, name): (backend name, Service port).
    service_upstreams: BTreeMap<(String, String), Vec<(String, u16)>>,
    /// Membership, fleet view and status write-back (Kubernetes only).
    replica: Replica,
    /// The input generation and output hash of the last translated snapshot
    /// (Kubernetes only).
    input_generation: u64,
    config_hash: String,
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
            access_log: gateway.options().access_log,
            path_policy: gateway.options().paths.policy(),
            upstreams,
            policy_state: gateway.policy_state().clone(),
            traffic_defaults: gateway.options().traffic_defaults,
            dump_defaults: dump::Defaults::new(gateway),
            source,
            translator: Translator::new(options),
            ports: BTreeMap::new(),
            series: BTreeMap::new(),
            routes_with_series: BTreeSet::new(),
            generation: 0,
            served: false,
            watcher,
            cache: FileCache::default(),
            rendered: Rendered::default(),
            rendering: None,
            last_error: "null".to_owned(),
            service_upstreams: BTreeMap::new(),
            replica,
            input_generation: 0,
            config_hash: String::new(),
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
        self.ports.values().filter_map(|p| p.local).collect()
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
                        local: None,
                    },
                );
                router
            }
        };
        PortService {
            inner: NormalizePath::new(self.port_service(router), self.path_policy),
        }
    }

    /// A port's router behind request metrics.
    fn port_service(&self, router: Router) -> RouterService {
        MetricsLayer::new(self.metrics.request_metrics(UNMATCHED, UNMATCHED))
            .with_access_log(self.access_log)
            .layer(router)
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
        let health_changed = self.upstreams.health_changed();
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
            let pending = &mut self.rendering;
            let rendering = async {
                match pending.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                rendered = rendering => {
                    self.rendering = None;
                    self.rendered(gateway, rendered);
                }
                () = health_changed.notified() => self.refresh_health(gateway),
                _ = idle_keys.tick() => self.policy_state.sweep_idle_keys(),
                changes = kube_changed => self.kube_changed(gateway, &changes).await,
                changed = changed => match changed {
                    Some(()) => {
                        let started = tokio::time::Instant::now();
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
            self.reload(gateway).await;
            tracing::debug!(latency = ?changes.since.elapsed(), "configuration change served");
            return;
        }
        let Source::Kubernetes(provider) = &self.source else {
            return;
        };
        let updated = set_service_endpoints(
            &mut self.upstreams,
            &self.service_upstreams,
            &changes.services,
            |ns, name, port| provider.service_endpoints(ns, name, port),
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
        let mut cache = std::mem::take(&mut self.cache);
        // The first load runs on this thread: nothing is served yet, and with glibc the
        // parse's garbage then stays in the arena the long-lived state is allocated in
        // (a blocking thread's arena kept ~15 MB resident for 5,000 routes).
        let first = !self.served;
        let loaded = if first {
            let loaded = load(&source, &mut cache);
            self.cache = cache;
            loaded
        } else {
            match tokio::task::spawn_blocking(move || {
                let loaded = load(&source, &mut cache);
                (loaded, cache)
            })
            .await
            {
                Ok((loaded, cache)) => {
                    self.cache = cache;
                    loaded
                }
                Err(error) => {
                    tracing::error!(%error, "loading manifests failed");
                    gateway.metrics().record_reload(false);
                    return Vec::new();
                }
            }
        };
        match loaded {
            Err(errors) => {
                self.refuse(gateway, &errors);
                return Vec::new();
            }
            // A late or repeated watcher event: the files are as last loaded.
            Ok(Load::Unchanged) if !first => return Vec::new(),
            Ok(_) => {}
        }
        // Only EndpointSlice files changed: the Services' upstreams get their new
        // endpoints, as on a Kubernetes watch event; nothing is translated again.
        if !first && let Some(services) = self.cache.endpoints_only() {
            let resources = self.cache.resources();
            let updated = set_service_endpoints(
                &mut self.upstreams,
                &self.service_upstreams,
                services,
                |ns, name, port| file_endpoints(resources, ns, name, port),
            );
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
        let loaded = started.elapsed();
        if matches!(self.source, Source::Kubernetes(_)) {
            self.input_generation = replica::input_generation(self.cache.resources());
        }
        // TODO(issue 19): pass the loader's `changed` set (every object changed since the
        // previous translate call, including loads that stopped before translating,
        // such as EndpointSlice-only ones); `None` translates everything.
        let translation = self.translator.translate(self.cache.resources(), None);
        let global = translation.global_rate_limits();
        if !global.is_empty() && gateway.policy_state().shared_limits().is_none() {
            tracing::warn!(
                limits = ?global,
                "Global rate limits run per replica: no `redis` in the settings (N replicas allow up to N times each limit)"
            );
        }
        if matches!(self.source, Source::Kubernetes(_)) {
            self.config_hash = replica::config_hash(&translation);
        }
        let translated = started.elapsed();
        let (bind_errors, errors) = self.apply(gateway, &translation).await;
        let bound: BTreeMap<u16, SocketAddr> = self
            .ports
            .iter()
            .filter_map(|(p, port)| Some((*p, port.local?)))
            .collect();
        let generation = self.generation;
        let defaults = self.dump_defaults.clone();
        self.replica.served(&translation);
        if first {
            // Like the first load, on this thread (see above); nothing waits for it yet.
            self.rendering = None;
            self.rendered = dump::render(generation, &translation, &bound, &errors, &defaults);
            drop(translation);
            self.publish(gateway);
            self.report_config();
            trim::release_free_memory_later();
        } else {
            self.rendering = Some(tokio::task::spawn_blocking(move || {
                let rendered = dump::render(generation, &translation, &bound, &errors, &defaults);
                drop(translation);
                rendered
            }));
        }
        tracing::info!(
            generation = self.generation,
            load_ms = loaded.as_secs_f64() * 1e3,
            translate_ms = (translated - loaded).as_secs_f64() * 1e3,
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

    /// Serves `translation`. Returns the ports that could not be bound and every
    /// configuration problem (for `/config`).
    async fn apply(
        &mut self,
        gateway: &mut Gateway,
        translation: &Translation,
    ) -> (Vec<(u16, String)>, Vec<ConfigError>) {
        let metrics = gateway.metrics().clone();
        let mut errors: Vec<ConfigError> = translation.errors().to_vec();
        errors.extend(self.upstreams.update(translation.upstreams()));

        // Metric handles per (route, backend), looked up once here.
        let mut series = BTreeMap::new();
        let mut by_backend: HashMap<String, HashMap<RouteId, RequestMetrics>> = HashMap::new();
        for port in translation.listeners() {
            for route in port.routes() {
                for name in backend_names(route) {
                    let key = (route.id.to_string(), name.to_owned());
                    let handle = match self.series.get(&key) {
                        Some(handle) => handle.clone(),
                        None => metrics.request_metrics(&key.0, name),
                    };
                    series.insert(key, handle.clone());
                    // `get_mut` first: no key allocation per route for a known backend.
                    let routes = match by_backend.get_mut(name) {
                        Some(routes) => routes,
                        None => by_backend.entry(name.to_owned()).or_default(),
                    };
                    routes.insert(route.id.clone(), handle);
                }
            }
        }
        let by_backend: HashMap<String, ByRoute> = by_backend
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        let lookup = Lookup {
            upstreams: &self.upstreams,
            by_backend: &by_backend,
            state: &self.policy_state,
            metrics: &metrics,
        };

        let mut bind_errors = Vec::new();
        let mut wanted = BTreeSet::new();
        for port in translation.listeners() {
            wanted.insert(port.port());
            let table = port_table(port, &self.traffic_defaults, &lookup, &mut errors);
            let certs = (port.protocol() == Protocol::Https).then(|| cert_set(port, &mut errors));
            match self.ports.get(&port.port()) {
                Some(served) if gateway.is_embedded() => served.router.store(table),
                None if gateway.is_embedded() => {
                    let router = Router::new(table);
                    let served = Port {
                        protocol: port.protocol(),
                        router,
                        certs: None,
                        local: None,
                    };
                    self.ports.insert(port.port(), served);
                }
                Some(served) if served.protocol == port.protocol() && served.local.is_some() => {
                    served.router.store(table);
                    if let (Some(store), Some(set)) = (&served.certs, certs) {
                        store.replace(set);
                    }
                }
                _ => {
                    // A router handed out by `service` (before the port was bound, or
                    // while it served another protocol) stays the port's router.
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
                    let store = certs.map(|set| Arc::new(CertStore::new(set)));
                    let transport = match &store {
                        Some(store) => Transport::Tls(store.clone()),
                        None => Transport::Plain,
                    };
                    let service = self.port_service(router.clone());
                    match gateway
                        .listeners_mut()
                        .add(port.port(), transport, service)
                        .await
                    {
                        Ok(local) => {
                            self.ports.insert(
                                port.port(),
                                Port {
                                    protocol: port.protocol(),
                                    router,
                                    certs: store,
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
        self.upstreams.retain(translation.upstreams());
        // Limiter buckets, breaker counts and budgets of policies no table names any more.
        self.policy_state.sweep();
        let mut service_upstreams: BTreeMap<(String, String), Vec<(String, u16)>> = BTreeMap::new();
        for (name, spec) in translation.upstreams() {
            let service = spec.service();
            service_upstreams
                .entry((
                    service.namespace().unwrap_or_default().to_owned(),
                    service.name().to_owned(),
                ))
                .or_default()
                .push((name.clone(), spec.port()));
        }
        self.service_upstreams = service_upstreams;

        // Forget the series of (route, backend) pairs no longer served.
        for (route, backend) in self.series.keys().filter(|k| !series.contains_key(*k)) {
            metrics.forget_request_metrics(route, backend);
        }
        let routes: BTreeSet<String> = series.keys().map(|(r, _)| r.clone()).collect();
        for route in self.routes_with_series.difference(&routes) {
            metrics.forget_route(route);
        }
        self.series = series;
        self.routes_with_series = routes;

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
            ports = self.ports.len(),
            upstreams = translation.upstreams().len(),
            problems = errors.len(),
            "configuration served"
        );
        (bind_errors, errors)
    }

    /// Publishes a finished render (a render that panicked is logged; `/config` keeps
    /// the previous snapshot).
    fn rendered(&mut self, gateway: &Gateway, rendered: Result<Rendered, tokio::task::JoinError>) {
        match rendered {
            Ok(rendered) => {
                self.rendered = rendered;
                self.publish(gateway);
                self.report_config();
                // The reload's garbage (translation, render) is freed by now.
                trim::release_free_memory_later();
            }
            Err(error) => tracing::error!(%error, "rendering /config failed"),
        }
    }

    /// Labels the membership Lease with the served configuration: its input
    /// generation and output hash.
    fn report_config(&self) {
        self.replica
            .set_config(self.input_generation, &self.config_hash);
    }

    /// Re-renders `/config`'s upstreams after a health change.
    fn refresh_health(&mut self, gateway: &Gateway) {
        self.publish(gateway);
    }

    /// Publishes `/config`: the rendered snapshot, the upstreams' current health and the
    /// last reload error.
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
        let generation = self.rendered.generation.to_string();
        let upstreams = self.upstreams.dump().to_string();
        let (json, ranges) = self.rendered.document(&[
            ("generation", Some(&generation)),
            ("listeners", None),
            ("upstreams", Some(&upstreams)),
            ("resources", None),
            ("errors", None),
            ("lastReloadError", Some(&self.last_error)),
            ("clusters", Some(&clusters)),
        ]);
        let ptr = json.as_ptr();
        let dump = gateway.config_dump();
        dump.publish_json(json);
        // The render's parts are now held once, in the published document.
        self.rendered.published(dump.current(), ptr, ranges);
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

/// The certificate set of an HTTPS port: each listener's first usable certificate under
/// its hostname; the listener without a hostname (else the first listener) is the
/// default for clients that send no or an unknown SNI name.
fn cert_set(port: &PortListeners, errors: &mut Vec<ConfigError>) -> CertSet {
    let mut set = CertSet::new();
    let mut default = None;
    let mut first = None;
    for listener in port.listeners() {
        let key = listener.certificates().iter().find_map(|cert| {
            let origin = format!("secret {}", cert.secret());
            match load_certified_key(cert.cert_pem(), cert.key_pem(), &origin) {
                Ok(key) => Some(key),
                Err(error) => {
                    errors.push(ConfigError::new(
                        format!("listeners[{}].tls.certificateRefs", listener.name()),
                        error.to_string(),
                    ));
                    None
                }
            }
        });
        let Some(key) = key else { continue };
        first.get_or_insert_with(|| key.clone());
        match listener.hostname() {
            Some(hostname) => {
                if let Err(error) = set.insert(hostname, key) {
                    errors.push(ConfigError::new(
                        format!("listeners[{}].hostname", listener.name()),
                        error.to_string(),
                    ));
                }
            }
            None => {
                default.get_or_insert(key);
            }
        }
    }
    if let Some(key) = default.or(first) {
        set.set_default(key);
    }
    set
}

/// A port's router behind request metrics (the router answers errors itself).
type RouterService = MetricsService<Router, RequestMetrics>;

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
