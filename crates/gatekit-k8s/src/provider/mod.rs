//! The Kubernetes provider: live resources from one or more API servers.
//!
//! [`Provider::start`] builds one kube-rs client per [`ClusterSpec`] and, per cluster,
//! one kube-runtime watcher per kind its [roles](Role) need:
//!
//! | role | kinds |
//! |---|---|
//! | `config` | GatewayClass, Gateway, ListenerSet, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute, ReferenceGrant, Namespace, BackendPolicy, TrafficPolicy, Envoy Gateway's BackendTrafficPolicy and ClientTrafficPolicy, XBackendTrafficPolicy, BackendTLSPolicy, Service; Secrets and ConfigMaps by referenced name only |
//! | `endpoints` | Service, EndpointSlice |
//!
//! Secrets and ConfigMaps are never watched cluster-wide: only the objects the
//! configuration names (listed by `refs.rs`) are watched, each by its name (or, above 16
//! names in one namespace, through one watch of the namespace), and held; see
//! `named.rs` for the mechanism, readiness, and how a change adding a reference waits
//! (at most 1 s) for its object's first list.
//!
//! Events land in per-cluster stores (see `store.rs`), and each one says what changed:
//! anything but an EndpointSlice is a *configuration* change (the consumer translates
//! the whole [`resources`](Provider::resources) again); an EndpointSlice change names
//! its Service, and the consumer recomputes only that Service's endpoints
//! ([`Provider::service_endpoints`]) and hands them to the upstream — no route table is
//! rebuilt. A re-list (after a 410 Gone, or a reconnect) is diffed against the store:
//! objects that come back unchanged change nothing, so an upstream is never emptied and
//! refilled. [`Provider::changed`] waits for the next batch of changes (bursts coalesce
//! while the consumer is busy).
//!
//! Each batch also names every object whose merged view may have changed
//! ([`Changes::objects`]; `None` when a cluster's endpoints were dropped or restored),
//! so a consumer can keep one [`ResourceSet`] and bring it up to date with
//! [`Provider::update`], which clones only those objects, instead of taking
//! [`resources`](Provider::resources) whole (at 10,000 routes, a deep clone of every
//! object), and hand the same names to an incremental translator.
//!
//! An object that does not fit gatekit's types, or a policy whose values are invalid
//! (what a manifest load refuses with a located error), is skipped with a warning and
//! shown as its cluster's `lastError`; if an earlier version of it was valid, that
//! version keeps serving.
//!
//! # Several clusters
//!
//! Configuration (routes, Gateways, grants, policies, certificates) is read from the
//! `config` clusters only: a ReferenceGrant in an endpoints-only cluster grants nothing.
//! A Service's endpoints are the union of its EndpointSlices in every `endpoints`
//! cluster where it exists, each endpoint labelled with its cluster
//! ([`CLUSTER_LABEL`](crate::types::CLUSTER_LABEL)); with a local cluster configured,
//! balancers prefer local endpoints and fail over to the others (gatekit-lb's priority
//! levels).
//!
//! # Losing a cluster
//!
//! Each cluster's API server is probed (`/version`) every `probeInterval`. A cluster
//! whose probe or watches fail is *lost*: its stores are kept as they were and keep
//! serving, marked stale ([`ClusterStatus`]), for up to `maxStaleness`; then its
//! endpoints are dropped (its Services' endpoints are recomputed without them). When it
//! comes back, the watches resume (from their last resourceVersion, or re-list on 410)
//! and its endpoints return.
//!
//! # Readiness
//!
//! [`Provider::synced`] resolves once every store that readiness needs has completed its
//! first list (and, in config clusters, every referenced Secret and ConfigMap known once
//! the referring kinds are listed has been listed by its named watch): all clusters' (the default), or only the config clusters'
//! ([`Readiness::ConfigClusters`]: an endpoints cluster down at start then does not keep
//! the gateway out of traffic; its endpoints join when it comes up).

mod named;
mod store;
mod watch;

pub use crate::error::ProviderError;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gatekit_core::{ConfigError, Endpoint};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::store::{Delta, Key, Kind, Stores, Watched};
use crate::cluster::{ClusterSpec, Role, opt_duration};
use crate::manifest::ResourceSet;
use crate::status::ResourceRef;
use crate::translate::service_endpoints;
use crate::types::{CompactEndpointSlice, CompactService, EndpointSlice, Object, Service};

/// When the gateway counts as synced (and may become ready).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Readiness {
    /// Every cluster's stores have been listed.
    #[default]
    AllClusters,
    /// The config clusters' stores have been listed; endpoints-only clusters may still
    /// be unreachable.
    ConfigClusters,
}

/// The `kubernetes:` section of the settings file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProviderSettings {
    /// The clusters (at least one with the `config` role).
    pub clusters: Vec<ClusterSpec>,
    /// The cluster gatekit runs in: its endpoints are preferred.
    #[serde(default)]
    pub local_cluster: Option<String>,
    /// Percentage of available local endpoints below which other clusters take a share
    /// of the traffic (default 70).
    #[serde(default)]
    pub failover_threshold: Option<u8>,
    /// What readiness waits for.
    #[serde(default)]
    pub readiness: Readiness,
    /// How long a lost cluster's endpoints keep serving (default 5m).
    #[serde(default, with = "opt_duration")]
    pub max_staleness: Option<Duration>,
    /// How often each API server is probed (default 2s).
    #[serde(default, with = "opt_duration")]
    pub probe_interval: Option<Duration>,
    /// Namespaces of global (platform-owned) upstreams; see
    /// [`TranslateOptions::global_namespaces`](crate::TranslateOptions::global_namespaces).
    #[serde(default)]
    pub global_namespaces: Vec<String>,
    /// The fleet name replicas register under (membership Lease label; default
    /// `gatekit`).
    #[serde(default)]
    pub fleet: Option<String>,
    /// The Service in front of the gateway replicas, `namespace/name`: its load-balancer
    /// addresses (or cluster IPs) are written as every Gateway's `status.addresses`; see
    /// [`TranslateOptions::gateway_service`](crate::TranslateOptions::gateway_service).
    /// Unset, no addresses are written.
    #[serde(default)]
    pub gateway_service: Option<String>,
    /// Whether the elected replica writes statuses back (default true).
    #[serde(default)]
    pub status_writeback: Option<bool>,
    /// This replica's identity, for its membership Lease and leader election
    /// (default: the downward API's `POD_NAME`, `POD_NAMESPACE`, `POD_UID` environment
    /// variables). Without one, the replica neither registers nor writes statuses.
    #[serde(default)]
    pub replica: Option<ReplicaIdentity>,
    /// Duration of the membership and leader Leases (default 15s); they are renewed
    /// every third of it.
    #[serde(default, with = "opt_duration")]
    pub lease_duration: Option<Duration>,
    /// Watch retry backoff, first step (default 250ms).
    #[serde(default, with = "opt_duration")]
    pub backoff_min: Option<Duration>,
    /// Watch retry backoff, cap (default 30s).
    #[serde(default, with = "opt_duration")]
    pub backoff_max: Option<Duration>,
}

impl ProviderSettings {
    /// Settings for these clusters, everything else default.
    pub fn new(clusters: Vec<ClusterSpec>) -> Self {
        Self {
            clusters,
            local_cluster: None,
            failover_threshold: None,
            readiness: Readiness::default(),
            max_staleness: None,
            probe_interval: None,
            global_namespaces: Vec::new(),
            fleet: None,
            gateway_service: None,
            status_writeback: None,
            replica: None,
            lease_duration: None,
            backoff_min: None,
            backoff_max: None,
        }
    }

    /// Checks the cluster list.
    ///
    /// # Errors
    ///
    /// A message naming the field: no clusters, no config cluster, duplicate names, an
    /// unknown local cluster, or an invalid cluster.
    pub fn validate(&self) -> Result<(), String> {
        if !self.clusters.iter().any(|c| c.has_role(Role::Config)) {
            return Err(
                "kubernetes.clusters: at least one cluster must have the config role".into(),
            );
        }
        let mut names = BTreeSet::new();
        for (i, c) in self.clusters.iter().enumerate() {
            c.validate()
                .map_err(|e| format!("kubernetes.clusters[{i}]: {e}"))?;
            if !names.insert(c.name.as_str()) {
                return Err(format!(
                    "kubernetes.clusters[{i}].name: duplicate name {:?}",
                    c.name
                ));
            }
        }
        if let Some(local) = &self.local_cluster
            && !names.contains(local.as_str())
        {
            return Err(format!(
                "kubernetes.localCluster: no cluster named {local:?}"
            ));
        }
        if self.failover_threshold.is_some_and(|t| t > 100) {
            return Err("kubernetes.failoverThreshold: a percentage, 0 to 100".into());
        }
        if let Some(s) = &self.gateway_service
            && self.gateway_service().is_none()
        {
            return Err(format!(
                "kubernetes.gatewayService: {s:?} is not namespace/name"
            ));
        }
        Ok(())
    }

    /// The gateway Service as (namespace, name), if set and well formed.
    pub fn gateway_service(&self) -> Option<(&str, &str)> {
        let (ns, name) = self.gateway_service.as_deref()?.split_once('/')?;
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        (valid(ns) && valid(name)).then_some((ns, name))
    }

    /// How long a lost cluster's endpoints keep serving.
    pub fn max_staleness(&self) -> Duration {
        self.max_staleness.unwrap_or(Duration::from_secs(300))
    }

    /// The fleet name.
    pub fn fleet(&self) -> &str {
        self.fleet.as_deref().unwrap_or("gatekit")
    }
}

/// Which pod this replica is.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReplicaIdentity {
    /// The pod's name (the membership Lease's name and holder).
    pub name: String,
    /// The pod's namespace (where the Leases live).
    pub namespace: String,
    /// The pod's UID (the Lease's ownerReference), if known.
    #[serde(default)]
    pub uid: Option<String>,
}

impl ReplicaIdentity {
    /// An identity.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            uid: None,
        }
    }

    /// From the downward API's `POD_NAME`, `POD_NAMESPACE` and `POD_UID` environment
    /// variables, if the first two are set.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(Self {
            name: var("POD_NAME")?,
            namespace: var("POD_NAMESPACE")?,
            uid: var("POD_UID"),
        })
    }
}

/// A batch of changes, from [`Provider::changed`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Changes {
    /// Configuration changed: translate [`Provider::resources`] again.
    pub config: bool,
    /// Services (namespace, name) whose endpoints changed.
    pub services: BTreeSet<(String, String)>,
    /// Every object (kind as in manifests, namespace, name) whose merged view
    /// ([`Provider::resources`]) may have changed, EndpointSlices included; `None` when
    /// unknown (a cluster's endpoints were dropped or restored): then take
    /// [`Provider::resources`] afresh and translate everything.
    pub objects: Option<BTreeSet<ResourceRef>>,
    /// A cluster was lost, came back, or had its endpoints dropped
    /// ([`Provider::clusters`] changed).
    pub clusters: bool,
    /// When the first change of the batch was received.
    pub since: Instant,
}

/// A cluster's state, for the admin API and metrics.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterStatus {
    /// The cluster's name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<&'static str>,
    /// Whether its API server answers.
    pub connected: bool,
    /// Every store has completed a list.
    pub synced: bool,
    /// How long it has been unreachable (its data is stale), if it is.
    pub stale_seconds: Option<f64>,
    /// Its endpoints were dropped after `maxStaleness`.
    pub endpoints_dropped: bool,
    /// The last watch or probe error.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Pending {
    config: bool,
    clusters: bool,
    services: BTreeSet<(String, String)>,
    objects: BTreeSet<ResourceRef>,
    /// Which objects changed is not known.
    unknown: bool,
    since: Option<Instant>,
    /// A referring kind changed and its new references' watches have not listed yet:
    /// configuration changes are held back (see `named.rs`).
    held: bool,
    /// Counts referring-kind changes, so a release is for the latest one only.
    refs_generation: u64,
}

impl Pending {
    /// Whether a batch is waiting; while `held`, only EndpointSlice changes count.
    fn ready(&self) -> bool {
        if self.held {
            !self.unknown && !self.services.is_empty()
        } else {
            self.config || self.clusters || !self.services.is_empty()
        }
    }
}

#[derive(Debug)]
struct Health {
    connected: bool,
    lost_since: Option<Instant>,
    dropped: bool,
    last_error: Option<String>,
}

pub(crate) struct Cluster {
    pub(crate) name: String,
    pub(crate) config: bool,
    endpoints: bool,
    pub(crate) client: Client,
    pub(crate) stores: Stores,
    health: Mutex<Health>,
    /// The Secrets' and ConfigMaps' watches by referenced name (config clusters).
    named: Mutex<named::Watches>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The kinds watched cluster-wide (Secrets and ConfigMaps are watched by name).
    fn kinds(&self) -> BTreeSet<Kind> {
        let mut kinds = BTreeSet::new();
        if self.config {
            kinds.extend(Kind::CONFIG.iter().copied().filter(|k| !k.by_reference()));
            kinds.insert(Kind::Service);
        }
        if self.endpoints {
            kinds.extend([Kind::Service, Kind::EndpointSlice]);
        }
        kinds
    }

    fn synced(&self) -> bool {
        let s = &self.stores;
        self.kinds().into_iter().all(|kind| s.is_synced(kind))
            && (!self.config || self.named().synced())
    }

    /// Whether every kind that references Secrets and ConfigMaps has been listed.
    pub(crate) fn referrers_synced(&self) -> bool {
        Kind::CONFIG
            .iter()
            .filter(|k| crate::refs::is_referrer(k.name()))
            .all(|&k| self.stores.is_synced(k))
    }

    pub(crate) fn named(&self) -> std::sync::MutexGuard<'_, named::Watches> {
        self.named.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn endpoints_usable(&self) -> bool {
        self.endpoints && !self.health().dropped
    }
}

/// Resolved settings the tasks read.
#[derive(Debug)]
pub(crate) struct Tuning {
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    probe_interval: Duration,
    max_staleness: Duration,
    readiness: Readiness,
}

/// What the watch and probe tasks share with the [`Provider`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: Tuning,
    pub(crate) clusters: Vec<Cluster>,
    pending: Mutex<Pending>,
    /// Watch events being applied and not yet recorded (see [`Provider::settled`]).
    in_flight: AtomicUsize,
    changed: Notify,
    pub(crate) synced: Notify,
    /// A referring kind changed or a kind was first listed: references to recompute.
    pub(crate) refs_dirty: Notify,
}

/// One watch event being applied to a store: counted in `in_flight` until dropped
/// (after the event is recorded).
pub(crate) struct Applying<'a>(&'a AtomicUsize);

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a watch event as being applied until the guard is dropped.
    pub(crate) fn applying(&self) -> Applying<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Applying(&self.in_flight)
    }

    /// Records what an event changed and wakes the consumer (a change of a kind that
    /// references Secrets and ConfigMaps: the reconciler of named watches first).
    pub(crate) fn record(&self, cluster: usize, delta: Delta, first_sync: bool) {
        let c = &self.clusters[cluster];
        let mut changed = delta.config;
        let referrer = delta
            .objects
            .iter()
            .any(|r| crate::refs::is_referrer(r.kind()));
        {
            let mut pending = self.pending();
            pending.config |= delta.config;
            if referrer {
                pending.held = true;
                pending.refs_generation += 1;
            }
            // Slices of a cluster whose endpoints were dropped are not served.
            let usable = c.endpoints_usable();
            for r in delta.objects {
                if usable || r.kind() != Kind::EndpointSlice.name() {
                    pending.objects.insert(r);
                }
            }
            if usable {
                for s in delta.services {
                    pending.services.insert(s);
                    changed = true;
                }
            }
            // Only a change starts a batch's clock: a first sync with nothing new (an
            // empty or missing kind) must not date the next endpoint change back to it.
            if changed {
                pending.since.get_or_insert_with(Instant::now);
            }
        }
        if referrer || first_sync {
            self.refs_dirty.notify_one();
        }
        if changed {
            self.changed.notify_one();
        }
        if first_sync {
            self.synced.notify_waiters();
        }
    }

    /// The count of referring-kind changes so far.
    pub(crate) fn refs_generation(&self) -> u64 {
        self.pending().refs_generation
    }

    /// Hands held configuration changes out, unless a referring kind changed again
    /// after `generation` (then the next reconciliation releases them).
    pub(crate) fn release_refs_hold(&self, generation: u64) {
        let mut pending = self.pending();
        if pending.held && pending.refs_generation == generation {
            pending.held = false;
            let ready = pending.ready();
            drop(pending);
            if ready {
                self.changed.notify_one();
            }
        }
    }

    /// The objects of every kind that references Secrets and ConfigMaps, merged from
    /// the config clusters as [`Provider::resources`] merges them.
    pub(crate) fn referrers(&self) -> ResourceSet {
        let config: Vec<&Cluster> = self.clusters.iter().filter(|c| c.config).collect();
        let mut set = ResourceSet::default();
        for (kind, _) in crate::refs::SOURCES {
            merge_kind(&mut set, &config, kind);
        }
        set
    }

    pub(crate) fn watch_failed(&self, cluster: usize, error: &str) {
        let mut h = self.clusters[cluster].health();
        h.last_error = Some(error.to_owned());
        if h.connected {
            h.connected = false;
            h.lost_since = Some(Instant::now());
            drop(h);
            self.clusters_changed();
        }
    }

    /// An object that does not fit gatekit's types was skipped: shown as the cluster's
    /// last error.
    pub(crate) fn invalid_object(&self, cluster: usize, what: &str) {
        let mut h = self.clusters[cluster].health();
        h.last_error = Some(format!("invalid object skipped: {what}"));
        drop(h);
        self.clusters_changed();
    }

    fn clusters_changed(&self) {
        let mut pending = self.pending();
        pending.clusters = true;
        pending.since.get_or_insert_with(Instant::now);
        drop(pending);
        self.changed.notify_one();
    }

    fn probed(&self, cluster: usize, result: Result<(), String>) {
        // Dropping or restoring endpoints changes the merged view before it is recorded.
        let _applying = self.applying();
        let c = &self.clusters[cluster];
        let now = Instant::now();
        let mut touched = false;
        let mut flipped = false;
        {
            let mut h = c.health();
            match result {
                Ok(()) => {
                    if !h.connected {
                        tracing::info!(cluster = %c.name, "API server reachable");
                        flipped = true;
                    }
                    h.connected = true;
                    h.lost_since = None;
                    if h.dropped {
                        h.dropped = false;
                        touched = true;
                        tracing::info!(cluster = %c.name, "endpoints restored");
                    }
                }
                Err(error) => {
                    if h.connected {
                        tracing::warn!(cluster = %c.name, %error, "API server unreachable; serving its last known state");
                        h.connected = false;
                        flipped = true;
                    }
                    let since = *h.lost_since.get_or_insert(now);
                    h.last_error = Some(error);
                    if c.endpoints && !h.dropped && now - since >= self.settings.max_staleness {
                        h.dropped = true;
                        touched = true;
                        tracing::warn!(cluster = %c.name, stale_for = ?(now - since), "dropping the endpoints of a lost cluster");
                    }
                }
            }
        }
        if flipped && !touched {
            self.clusters_changed();
        }
        if touched {
            let services = c.stores.sliced_services();
            let mut pending = self.pending();
            pending.clusters = true;
            // Every slice of the cluster joined or left the merged view.
            pending.unknown = true;
            pending.services.extend(services);
            pending.since.get_or_insert(now);
            drop(pending);
            self.changed.notify_one();
        }
    }

    fn is_synced(&self) -> bool {
        self.clusters.iter().all(|c| {
            let required = match self.settings.readiness {
                Readiness::AllClusters => true,
                Readiness::ConfigClusters => c.config,
            };
            !required || c.synced()
        })
    }
}

/// Live resources from one or more API servers (see the [module docs](self)).
#[derive(Debug)]
pub struct Provider {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for cluster in &self.shared.clusters {
            cluster.named().close();
        }
    }
}

impl Provider {
    /// Connects to every cluster and starts watching. Returns at once: watches run in
    /// the background, and a cluster that cannot be reached is retried with backoff
    /// without holding up the others.
    ///
    /// # Errors
    ///
    /// Invalid settings, or a cluster whose client cannot be built (unreadable CA,
    /// kubeconfig, in-cluster environment).
    pub async fn start(settings: &ProviderSettings) -> Result<Self, ProviderError> {
        settings.validate().map_err(ProviderError::Settings)?;
        let mut clusters = Vec::new();
        for spec in &settings.clusters {
            let client = spec.client().await?;
            clusters.push(Cluster {
                name: spec.name.clone(),
                config: spec.has_role(Role::Config),
                endpoints: spec.has_role(Role::Endpoints),
                client,
                stores: Stores::default(),
                health: Mutex::new(Health {
                    connected: true,
                    lost_since: None,
                    dropped: false,
                    last_error: None,
                }),
                named: Mutex::new(named::Watches::default()),
            });
        }
        let shared = Arc::new(Shared {
            settings: Tuning {
                backoff_min: settings.backoff_min.unwrap_or(Duration::from_millis(250)),
                backoff_max: settings.backoff_max.unwrap_or(Duration::from_secs(30)),
                probe_interval: settings.probe_interval.unwrap_or(Duration::from_secs(2)),
                max_staleness: settings.max_staleness(),
                readiness: settings.readiness,
            },
            clusters,
            pending: Mutex::new(Pending::default()),
            in_flight: AtomicUsize::new(0),
            changed: Notify::new(),
            synced: Notify::new(),
            refs_dirty: Notify::new(),
        });
        let mut tasks = vec![tokio::spawn(named::reconcile_forever(shared.clone()))];
        for (i, cluster) in shared.clusters.iter().enumerate() {
            for kind in cluster.kinds() {
                tasks.push(spawn_watch(&shared, i, kind, cluster.client.clone()));
            }
            let (shared, client) = (shared.clone(), cluster.client.clone());
            tasks.push(tokio::spawn(async move {
                let interval = shared.settings.probe_interval;
                loop {
                    let result = match tokio::time::timeout(
                        interval.max(Duration::from_secs(1)),
                        client.apiserver_version(),
                    )
                    .await
                    {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("probe timed out".to_owned()),
                    };
                    shared.probed(i, result);
                    tokio::time::sleep(interval).await;
                }
            }));
        }
        Ok(Self { shared, tasks })
    }

    /// Whether every store readiness needs has completed its first list.
    pub fn is_synced(&self) -> bool {
        self.shared.is_synced()
    }

    /// Resolves once [`is_synced`](Self::is_synced).
    pub async fn synced(&self) {
        loop {
            let notified = self.shared.synced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_synced() {
                return;
            }
            notified.await;
        }
    }

    /// Waits for the next batch of changes and takes it.
    pub async fn changed(&self) -> Changes {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(changes) = self.take_changes() {
                return changes;
            }
            notified.await;
        }
    }

    /// Takes the pending changes, if any. While a change that adds references to
    /// Secrets or ConfigMaps waits for their first list (at most 1 s), only
    /// EndpointSlice changes are taken; the rest follow with the referenced objects.
    pub fn take_changes(&self) -> Option<Changes> {
        let mut pending = self.shared.pending();
        if !pending.ready() {
            return None;
        }
        if pending.held {
            // Configuration waits for the new references' first list; endpoints do not.
            let services = std::mem::take(&mut pending.services);
            let slice = Kind::EndpointSlice.name();
            let (slices, rest) = std::mem::take(&mut pending.objects)
                .into_iter()
                .partition(|r| r.kind() == slice);
            pending.objects = rest;
            return Some(Changes {
                config: false,
                clusters: false,
                services,
                objects: Some(slices),
                since: pending.since.unwrap_or_else(Instant::now),
            });
        }
        let refs_generation = pending.refs_generation;
        let taken = std::mem::take(&mut *pending);
        pending.refs_generation = refs_generation;
        Some(Changes {
            config: taken.config,
            clusters: taken.clusters,
            services: taken.services,
            objects: (!taken.unknown).then_some(taken.objects),
            since: taken.since.unwrap_or_else(Instant::now),
        })
    }

    /// Every resource gatekit reads, merged across clusters: configuration kinds from
    /// the config clusters (on a name clash the first cluster listed wins), Services
    /// from every cluster, EndpointSlices from the endpoints clusters whose endpoints
    /// are not dropped, each labelled with its cluster.
    pub fn resources(&self) -> ResourceSet {
        let mut set = ResourceSet::default();
        let config: Vec<&Cluster> = self.shared.clusters.iter().filter(|c| c.config).collect();
        merge_config(&mut set, &config);
        let mut ordered: Vec<&Cluster> = config.clone();
        ordered.extend(self.shared.clusters.iter().filter(|c| !c.config));
        set.services = merged_as(&ordered, |s| &s.services, |s: &Service| s.into());
        for c in self.shared.clusters.iter().filter(|c| c.endpoints_usable()) {
            for slice in c.stores.endpoint_slices.values() {
                set.endpoint_slices.push(labelled(&slice, &c.name));
            }
        }
        set
    }

    /// Brings `set`, a [`resources`](Self::resources) taken earlier, up to date with
    /// the changes since: each of `objects` (from [`Changes::objects`]) gets its merged
    /// value again (same rules as `resources`) or is removed, and the EndpointSlices of
    /// each of `services` (from [`Changes::services`]) are replaced, each list keeping
    /// the order `resources` gives. Only the changed objects are cloned.
    pub fn update(
        &self,
        set: &mut ResourceSet,
        objects: &BTreeSet<ResourceRef>,
        services: &BTreeSet<(String, String)>,
    ) {
        let config: Vec<&Cluster> = self.shared.clusters.iter().filter(|c| c.config).collect();
        let mut ordered: Vec<&Cluster> = config.clone();
        ordered.extend(self.shared.clusters.iter().filter(|c| !c.config));
        for r in objects {
            let key = (
                r.namespace().unwrap_or_default().to_owned(),
                String::new(),
                r.name().to_owned(),
            );
            if upsert_config(set, &config, r.kind(), &key) {
                continue;
            }
            // EndpointSlices go through `services`: a slice's ref does not say which
            // Service it is in.
            if r.kind() == "Service" {
                upsert_as(
                    &mut set.services,
                    &ordered,
                    |s| &s.services,
                    &key,
                    |s: &Service| CompactService::from(s),
                );
            }
        }
        let usable: Vec<&Cluster> = self
            .shared
            .clusters
            .iter()
            .filter(|c| c.endpoints_usable())
            .collect();
        // As `resources` orders them: by cluster, then by their store key (namespace,
        // Service, name).
        let rank = |slice: &CompactEndpointSlice| {
            let cluster = slice
                .cluster()
                .and_then(|name| usable.iter().position(|c| c.name == name))
                .unwrap_or(usize::MAX);
            let ns = slice.namespace().unwrap_or_default().to_owned();
            (cluster, ns, slice.service().unwrap_or_default().to_owned())
        };
        for (ns, svc) in services {
            for (i, c) in usable.iter().enumerate() {
                let at = (i, ns.clone(), svc.clone());
                let start = set.endpoint_slices.partition_point(|s| rank(s) < at);
                let end = start + set.endpoint_slices[start..].partition_point(|s| rank(s) == at);
                let fresh = c.stores.slices_of(ns, svc);
                if fresh.len() == end - start {
                    for (old, new) in set.endpoint_slices[start..end].iter_mut().zip(&fresh) {
                        *old = labelled(new, &c.name);
                    }
                } else {
                    set.endpoint_slices
                        .splice(start..end, fresh.iter().map(|s| labelled(s, &c.name)));
                }
            }
        }
    }

    /// Whether no watch event is pending or being applied: then the stores are what
    /// the changes taken so far say (for consistency checks in tests).
    pub fn settled(&self) -> bool {
        let pending = self.shared.pending();
        self.shared.in_flight.load(Ordering::Acquire) == 0
            && !pending.config
            && !pending.clusters
            && !pending.unknown
            && pending.services.is_empty()
            && pending.objects.is_empty()
    }

    /// The endpoints of Service `namespace/service` port `port` (its `UDP` port when
    /// `udp`, else its `TCP` one), from its EndpointSlices in every usable endpoints
    /// cluster (the same rules as translation). Problems with individual endpoints go to
    /// the returned errors.
    pub fn service_endpoints(
        &self,
        namespace: &str,
        service: &str,
        port: u16,
        udp: bool,
    ) -> (Vec<Endpoint>, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let Some(svc) = self.service(namespace, service) else {
            return (Vec::new(), errors);
        };
        let mut slices: Vec<CompactEndpointSlice> = Vec::new();
        for c in self.shared.clusters.iter().filter(|c| c.endpoints_usable()) {
            for slice in c.stores.slices_of(namespace, service) {
                slices.push(labelled(&slice, &c.name));
            }
        }
        let endpoints = service_endpoints(&svc, port, udp, &slices, &mut errors);
        (endpoints, errors)
    }

    fn service(&self, namespace: &str, name: &str) -> Option<CompactService> {
        let key = (namespace.to_owned(), String::new(), name.to_owned());
        let config = self.shared.clusters.iter().filter(|c| c.config);
        let others = self.shared.clusters.iter().filter(|c| !c.config);
        config.chain(others).find_map(|c| {
            let services = c.stores.services.read();
            services.get(&key).map(|s| CompactService::from(&**s))
        })
    }

    /// Each cluster's state.
    pub fn clusters(&self) -> Vec<ClusterStatus> {
        let now = Instant::now();
        self.shared
            .clusters
            .iter()
            .map(|c| {
                let h = c.health();
                let mut roles = Vec::new();
                if c.config {
                    roles.push("config");
                }
                if c.endpoints {
                    roles.push("endpoints");
                }
                ClusterStatus {
                    name: c.name.clone(),
                    roles,
                    connected: h.connected,
                    synced: c.synced(),
                    stale_seconds: h.lost_since.map(|t| (now - t).as_secs_f64()),
                    endpoints_dropped: h.dropped,
                    last_error: h.last_error.clone(),
                }
            })
            .collect()
    }

    /// The client of the cluster named `name`.
    pub fn client(&self, name: &str) -> Option<Client> {
        self.shared
            .clusters
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.client.clone())
    }

    /// Whether the config cluster `cluster` holds `resource` (an object of a
    /// configuration kind: a Gateway, a route, a policy, ...): status is written to the
    /// cluster a resource came from.
    pub fn holds(&self, cluster: &str, resource: &crate::status::ResourceRef) -> bool {
        let Some(c) = self
            .shared
            .clusters
            .iter()
            .find(|c| c.name == cluster && c.config)
        else {
            return false;
        };
        let key = (
            resource.namespace().unwrap_or_default().to_owned(),
            String::new(),
            resource.name().to_owned(),
        );
        c.stores.holds(resource.kind(), &key)
    }

    /// The clients of the config clusters, by name, in settings order.
    pub fn config_clients(&self) -> Vec<(String, Client)> {
        self.shared
            .clusters
            .iter()
            .filter(|c| c.config)
            .map(|c| (c.name.clone(), c.client.clone()))
            .collect()
    }
}

/// Starts the cluster-wide watch of `kind`.
fn spawn_watch(shared: &Arc<Shared>, cluster: usize, kind: Kind, client: Client) -> JoinHandle<()> {
    fn go<K: Watched>(shared: &Arc<Shared>, cluster: usize, client: Client) -> JoinHandle<()> {
        tokio::spawn(watch::run::<K>(
            shared.clone(),
            cluster,
            Api::all(client),
            kube::runtime::watcher::Config::default(),
            watch::Scope::All,
        ))
    }
    macro_rules! spawn {
        ($($ty:ty => $kind:ident, $field:ident, $name:literal, $optional:literal;)*) => {
            match kind {
                $(Kind::$kind => go::<$ty>(shared, cluster, client),)*
                Kind::Service => go::<Service>(shared, cluster, client),
                Kind::EndpointSlice => go::<EndpointSlice>(shared, cluster, client),
            }
        };
    }
    store::with_config_kinds!(spawn)
}

macro_rules! config_kinds_fns {
    ($($ty:ty => $kind:ident, $field:ident, $name:literal, $optional:literal;)*) => {
        /// Every configuration kind of `set`, merged from the `config` clusters.
        fn merge_config(set: &mut ResourceSet, config: &[&Cluster]) {
            $(set.$field = merged(config, |s| &s.$field);)*
        }

        /// Sets the configuration kind `kind` (as in manifests) of `set` to its objects
        /// merged from the `config` clusters; any other kind: nothing.
        fn merge_kind(set: &mut ResourceSet, config: &[&Cluster], kind: &str) {
            match kind {
                $($name => set.$field = merged(config, |s| &s.$field),)*
                _ => {}
            }
        }

        /// Gives the configuration object `kind` (as in manifests) `key` its merged
        /// value in `set` again (or removes it); `false` for any other kind.
        fn upsert_config(set: &mut ResourceSet, config: &[&Cluster], kind: &str, key: &Key) -> bool {
            match kind {
                $($name => upsert(&mut set.$field, config, |s| &s.$field, key),)*
                _ => return false,
            }
            true
        }
    };
}
store::with_config_kinds!(config_kinds_fns);

/// How a [`ResourceSet`] keeps an object of a watched configuration kind: as it is,
/// or (an HTTPRoute) in its compact form.
trait Kept<K> {
    fn kept(object: &K) -> Self;
}

impl<K: Clone> Kept<K> for K {
    fn kept(object: &K) -> Self {
        object.clone()
    }
}

impl Kept<crate::types::HttpRoute> for crate::types::CompactHttpRoute {
    fn kept(object: &crate::types::HttpRoute) -> Self {
        object.into()
    }
}

/// The objects of one kind across `clusters`, first cluster wins on a name clash, as
/// a [`ResourceSet`] keeps them.
fn merged<K: Watched, T: Kept<K>>(
    clusters: &[&Cluster],
    store: impl Fn(&Stores) -> &store::Store<K>,
) -> Vec<T> {
    merged_as(clusters, store, T::kept)
}

/// [`merged`], each object converted by `convert` (Services to the form a
/// [`ResourceSet`] keeps).
fn merged_as<K: Watched, T>(
    clusters: &[&Cluster],
    store: impl Fn(&Stores) -> &store::Store<K>,
    convert: impl Fn(&K) -> T,
) -> Vec<T> {
    let mut out: BTreeMap<store::Key, Arc<K>> = BTreeMap::new();
    for c in clusters {
        for (key, obj) in store(&c.stores).read().iter() {
            out.entry(key.clone()).or_insert_with(|| obj.clone());
        }
    }
    out.into_values().map(|o| convert(&o)).collect()
}

/// Sets the object at `key` in `list` (sorted as [`merged`] sorts) to its merged value
/// across `clusters` (first cluster wins), or removes it if no cluster holds it.
fn upsert<K: Watched, T: Kept<K> + Object>(
    list: &mut Vec<T>,
    clusters: &[&Cluster],
    store: impl Fn(&Stores) -> &store::Store<K>,
    key: &store::Key,
) {
    upsert_as(list, clusters, store, key, T::kept);
}

/// [`upsert`], the object converted by `convert` (as [`merged_as`] converts).
fn upsert_as<K: Watched, T: Object>(
    list: &mut Vec<T>,
    clusters: &[&Cluster],
    store: impl Fn(&Stores) -> &store::Store<K>,
    key: &store::Key,
    convert: impl Fn(&K) -> T,
) {
    let value = clusters
        .iter()
        .find_map(|c| store(&c.stores).read().get(key).map(|o| convert(o)));
    match (position(list, &key.0, &key.2), value) {
        (Ok(i), Some(v)) => list[i] = v,
        (Ok(i), None) => {
            list.remove(i);
        }
        (Err(i), Some(v)) => list.insert(i, v),
        (Err(_), None) => {}
    }
}

/// Where the object `namespace`/`name` is in `list`, sorted as [`merged`] sorts
/// (`Err`: where it would go).
fn position<K: Object>(list: &[K], namespace: &str, name: &str) -> Result<usize, usize> {
    list.binary_search_by(|o| (o.namespace().unwrap_or_default(), o.name()).cmp(&(namespace, name)))
}

/// The object `r` names (kind as in manifests) in `set`, a [`Provider::resources`]
/// kept up to date with [`Provider::update`] (whose lists are sorted by namespace and
/// name, which this looks up by); `None` if it is not there or is an EndpointSlice
/// (those are kept by Service, see [`Provider::update`]). A consumer that keeps
/// something per object (a sum of per-object hashes, say) reads the old value with it
/// before [`Provider::update`] and the new one after.
pub fn object<'s>(set: &'s ResourceSet, r: &ResourceRef) -> Option<&'s dyn Object> {
    fn find<'s, K: Object>(list: &'s [K], r: &ResourceRef) -> Option<&'s dyn Object> {
        let at = position(list, r.namespace().unwrap_or_default(), r.name()).ok()?;
        Some(&list[at])
    }
    macro_rules! kinds {
        ($($ty:ty => $kind:ident, $field:ident, $name:literal, $optional:literal;)*) => {
            match r.kind() {
                $($name => find(&set.$field, r),)*
                "Service" => find(&set.services, r),
                _ => None,
            }
        };
    }
    store::with_config_kinds!(kinds)
}

/// `slice` as a [`ResourceSet`] keeps it, labelled with its cluster.
fn labelled(slice: &EndpointSlice, cluster: &str) -> CompactEndpointSlice {
    CompactEndpointSlice::from(slice).with_cluster(cluster)
}
