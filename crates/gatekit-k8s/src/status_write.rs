//! Status write-back: translation's conditions, written to the Kubernetes objects.
//!
//! Translation computes what every resource's status should say
//! ([`Translation::statuses`]); [`StatusWriter`] writes it to the `/status` subresource
//! of HTTPRoutes, GRPCRoutes, Gateways, ListenerSets, GatewayClasses, gatekit's BackendPolicies and
//! TrafficPolicies, and Envoy Gateway's BackendTrafficPolicies:
//!
//! - **Routes**: `status.parents` is an *atomic* list shared by every controller that
//!   handles one of the route's parents. gatekit replaces only the entries whose
//!   `controllerName` is its own, keeps every foreign entry as it is, and removes its
//!   own entries for parents it no longer handles. Each entry's `parentRef` is copied
//!   from the route's `spec.parentRefs` (so it matches what the user wrote).
//! - **Gateways**: `conditions` (`Accepted`, `Programmed`), `listeners[]` (name,
//!   `supportedKinds`, `attachedRoutes`, conditions), `attachedListenerSets` and, when
//!   the settings name the Service in front of the replicas
//!   (`kubernetes.gatewayService`), `addresses` (that Service's load-balancer or
//!   cluster addresses); other fields are kept. **ListenerSets** (GEP-1713) the same,
//!   without the count and the addresses. gatekit assigns no address itself.
//! - **GatewayClasses**: `conditions` (`Accepted`) and, on the accepted class,
//!   `supportedFeatures` (GEP-2162, from [`features`](crate::features), sorted).
//! - **Policies** (GEP-713): `status.ancestors` is shared like a route's
//!   `status.parents`, and merged the same way: gatekit's entries (one per target, the
//!   `ancestorRef` being the policy's targetRef, with one `Accepted` condition) are
//!   replaced, foreign ones kept, and gatekit's entries for targets no longer named
//!   dropped. Envoy Gateway's BackendTrafficPolicies (`gateway.envoyproxy.io/v1alpha1`)
//!   carry the same `PolicyStatus` and are written the same way; their CRD is optional:
//!   when it is not installed (404), nothing is written, nothing fails.
//!
//! Every write is a read-modify-write: GET the object, merge, and `replace_status` with
//! the `resourceVersion` just read; a 409 Conflict (someone wrote in between) re-reads
//! and merges again, a few times at most. `lastTransitionTime` is kept when a condition's
//! status did not change, and `observedGeneration` says which generation the condition
//! describes.
//!
//! Writes are deduplicated twice: an object whose merged status equals its current one
//! is not written (only timestamps could differ, and those are kept), and an object
//! whose desired status equals what this writer last wrote or found in place is not
//! even read. The second cache is cleared on every [`resync`](StatusWriter::resync),
//! which [`run`](StatusWriter::run) does whenever this replica becomes leader; a resync
//! also lists the routes and policies to remove gatekit's entries from those it no longer
//! handles.
//!
//! Only one replica writes: [`run`](StatusWriter::run) is gated on a leader flag
//! (from [`LeaderElector`](crate::lease::LeaderElector)). All replicas compute status;
//! followers drop it, and a new leader writes everything current at once.
//!
//! With several config clusters, each cluster's resources must be written to that
//! cluster: give each cluster its own writer with a [`filter`](StatusWriter::filter)
//! that accepts that cluster's resources.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::lease::{Clock, is_status};
use crate::status::{Condition, ResourceRef, ResourceStatus};
use crate::translate::Translation;
use crate::types::btp::ENVOY_GATEWAY_GROUP;
use crate::types::{GATEKIT_GROUP, GATEWAY_GROUP, GATEWAY_X_GROUP};

/// The default controller name (as in [`TranslateOptions`](crate::TranslateOptions)).
pub const DEFAULT_CONTROLLER_NAME: &str = "gatekit.io/gateway-controller";

/// How many objects are read and written at once.
const CONCURRENCY: usize = 8;

/// The Gateway API allows at most this many `status.parents` entries.
const MAX_PARENTS: usize = 32;

/// GEP-713 allows at most this many `status.ancestors` entries.
const MAX_ANCESTORS: usize = 16;

/// The kinds whose status gatekit writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    HttpRoute,
    GrpcRoute,
    TlsRoute,
    /// Written at `v1alpha2`, the version every cluster with the CRD serves.
    TcpRoute,
    /// Written at `v1alpha2`, the version every cluster with the CRD serves.
    UdpRoute,
    BackendTlsPolicy,
    Gateway,
    ListenerSet,
    GatewayClass,
    BackendPolicy,
    TrafficPolicy,
    /// Envoy Gateway's (`gateway.envoyproxy.io/v1alpha1`); the CRD may be absent.
    BackendTrafficPolicy,
    /// The Gateway API's experimental one (`gateway.networking.x-k8s.io/v1alpha1`);
    /// the CRD may be absent.
    XBackendTrafficPolicy,
    /// Envoy Gateway's (`gateway.envoyproxy.io/v1alpha1`); the CRD may be absent.
    ClientTrafficPolicy,
    /// Envoy Gateway's (`gateway.envoyproxy.io/v1alpha1`); the CRD may be absent.
    SecurityPolicy,
    /// gatekit's (`gatekit.io/v1alpha1`).
    SecurityOverride,
}

impl Kind {
    fn of(kind: &str) -> Option<Self> {
        Some(match kind {
            "HTTPRoute" => Self::HttpRoute,
            "GRPCRoute" => Self::GrpcRoute,
            "TLSRoute" => Self::TlsRoute,
            "TCPRoute" => Self::TcpRoute,
            "UDPRoute" => Self::UdpRoute,
            "BackendTLSPolicy" => Self::BackendTlsPolicy,
            "Gateway" => Self::Gateway,
            "ListenerSet" => Self::ListenerSet,
            "GatewayClass" => Self::GatewayClass,
            "BackendPolicy" => Self::BackendPolicy,
            "TrafficPolicy" => Self::TrafficPolicy,
            "BackendTrafficPolicy" => Self::BackendTrafficPolicy,
            "XBackendTrafficPolicy" => Self::XBackendTrafficPolicy,
            "ClientTrafficPolicy" => Self::ClientTrafficPolicy,
            "SecurityPolicy" => Self::SecurityPolicy,
            "SecurityOverride" => Self::SecurityOverride,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::HttpRoute => "HTTPRoute",
            Self::GrpcRoute => "GRPCRoute",
            Self::TlsRoute => "TLSRoute",
            Self::TcpRoute => "TCPRoute",
            Self::UdpRoute => "UDPRoute",
            Self::BackendTlsPolicy => "BackendTLSPolicy",
            Self::Gateway => "Gateway",
            Self::ListenerSet => "ListenerSet",
            Self::GatewayClass => "GatewayClass",
            Self::BackendPolicy => "BackendPolicy",
            Self::TrafficPolicy => "TrafficPolicy",
            Self::BackendTrafficPolicy => "BackendTrafficPolicy",
            Self::XBackendTrafficPolicy => "XBackendTrafficPolicy",
            Self::ClientTrafficPolicy => "ClientTrafficPolicy",
            Self::SecurityPolicy => "SecurityPolicy",
            Self::SecurityOverride => "SecurityOverride",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Self::HttpRoute => "httproutes",
            Self::GrpcRoute => "grpcroutes",
            Self::TlsRoute => "tlsroutes",
            Self::TcpRoute => "tcproutes",
            Self::UdpRoute => "udproutes",
            Self::BackendTlsPolicy => "backendtlspolicies",
            Self::Gateway => "gateways",
            Self::ListenerSet => "listenersets",
            Self::GatewayClass => "gatewayclasses",
            Self::BackendPolicy => "backendpolicies",
            Self::TrafficPolicy => "trafficpolicies",
            Self::BackendTrafficPolicy => "backendtrafficpolicies",
            Self::XBackendTrafficPolicy => "xbackendtrafficpolicies",
            Self::ClientTrafficPolicy => "clienttrafficpolicies",
            Self::SecurityPolicy => "securitypolicies",
            Self::SecurityOverride => "securityoverrides",
        }
    }

    /// The status list shared with other controllers (`parents`, `ancestors`), for the
    /// kinds that have one.
    fn shared_list(self) -> Option<&'static str> {
        match self {
            Self::HttpRoute
            | Self::GrpcRoute
            | Self::TlsRoute
            | Self::TcpRoute
            | Self::UdpRoute => Some("parents"),
            Self::BackendTlsPolicy
            | Self::BackendPolicy
            | Self::TrafficPolicy
            | Self::BackendTrafficPolicy
            | Self::XBackendTrafficPolicy
            | Self::ClientTrafficPolicy
            | Self::SecurityPolicy
            | Self::SecurityOverride => Some("ancestors"),
            Self::Gateway | Self::ListenerSet | Self::GatewayClass => None,
        }
    }

    fn api_resource(self) -> ApiResource {
        let (group, version) = match self {
            Self::BackendPolicy | Self::TrafficPolicy | Self::SecurityOverride => {
                (GATEKIT_GROUP, "v1alpha1")
            }
            Self::BackendTrafficPolicy | Self::ClientTrafficPolicy | Self::SecurityPolicy => {
                (ENVOY_GATEWAY_GROUP, "v1alpha1")
            }
            Self::XBackendTrafficPolicy => (GATEWAY_X_GROUP, "v1alpha1"),
            Self::TcpRoute | Self::UdpRoute => (GATEWAY_GROUP, "v1alpha2"),
            _ => (GATEWAY_GROUP, "v1"),
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, self.name()),
            self.plural(),
        )
    }
}

/// What one write pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteReport {
    /// Objects whose status was replaced.
    pub written: usize,
    /// Objects read whose status already said the same (no write).
    pub unchanged: usize,
    /// Objects not even read: their desired status equals what was last written.
    pub cached: usize,
    /// Objects that do not exist (any more).
    pub missing: usize,
    /// Objects that could not be read or written (retried by the next pass).
    pub failed: usize,
    /// Objects left alone because leadership was lost during the pass.
    pub not_leader: usize,
}

impl WriteReport {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Written => self.written += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Missing => self.missing += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::NotLeader => self.not_leader += 1,
        }
    }
}

enum Outcome {
    Written,
    Unchanged,
    Missing,
    Failed,
    NotLeader,
}

type Filter = Arc<dyn Fn(&ResourceRef) -> bool + Send + Sync>;

/// Writes translation's statuses to the Kubernetes objects; see the [module docs](self).
pub struct StatusWriter {
    client: Client,
    controller_name: String,
    filter: Option<Filter>,
    clock: Clock,
    /// Desired status (without timestamps) last written or found in place, per object.
    cache: HashMap<ResourceRef, Value>,
    /// While [`run`](Self::run)s: the leader flag, checked before every write.
    gate: Option<watch::Receiver<bool>>,
}

impl fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusWriter")
            .field("controller_name", &self.controller_name)
            .field("filtered", &self.filter.is_some())
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// One object to write: where, and what its status should say (without timestamps).
struct Job {
    kind: Kind,
    resource: ResourceRef,
    desired: Value,
    /// Cache the outcome (not for removals from objects translation no longer lists).
    remember: bool,
}

impl StatusWriter {
    /// A writer for controller `gatekit.io/gateway-controller`, handling every resource.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            controller_name: DEFAULT_CONTROLLER_NAME.to_owned(),
            filter: None,
            clock: Clock::new(),
            cache: HashMap::new(),
            gate: None,
        }
    }

    /// The `controllerName` of gatekit's route status entries (the GatewayClass's
    /// `spec.controllerName`).
    #[must_use]
    pub fn controller_name(mut self, name: impl Into<String>) -> Self {
        self.controller_name = name.into();
        self
    }

    /// Handles only the resources `f` accepts (e.g. those of one cluster).
    #[must_use]
    pub fn filter(mut self, f: impl Fn(&ResourceRef) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(f));
        self
    }

    fn accepts(&self, r: &ResourceRef) -> bool {
        self.filter.as_ref().is_none_or(|f| f(r))
    }

    /// Writes what changed since the last pass: objects whose desired status differs
    /// from what this writer last wrote, and gatekit's entries on routes and policies
    /// that dropped out of the translation (removed).
    pub async fn write(&mut self, translation: &Translation) -> WriteReport {
        let mut jobs = self.jobs(translation);
        let mut report = WriteReport::default();
        // Routes and policies written before and absent now: remove our entries.
        let present: std::collections::HashSet<&ResourceRef> =
            jobs.iter().map(|j| &j.resource).collect();
        let gone: Vec<Job> = self
            .cache
            .keys()
            .filter(|r| !present.contains(r))
            .filter_map(|r| {
                let kind = Kind::of(r.kind()).filter(|k| k.shared_list().is_some())?;
                Some(Job {
                    kind,
                    resource: r.clone(),
                    desired: Value::Array(Vec::new()),
                    remember: false,
                })
            })
            .collect();
        for j in &gone {
            self.cache.remove(&j.resource);
        }
        jobs.extend(gone);
        jobs.retain(|j| {
            let same = self.cache.get(&j.resource) == Some(&j.desired);
            if same {
                report.cached += 1;
            }
            !same
        });
        self.execute(jobs, &mut report).await;
        report
    }

    /// Forgets what was written, writes every object again (reading each first, so
    /// unchanged ones are still not written), and removes gatekit's entries from every
    /// route and policy it no longer handles (one LIST per route and policy kind). For a
    /// new leader.
    pub async fn resync(&mut self, translation: &Translation) -> WriteReport {
        self.cache.clear();
        let mut jobs = self.jobs(translation);
        let mut report = WriteReport::default();
        for kind in [
            Kind::HttpRoute,
            Kind::GrpcRoute,
            Kind::TlsRoute,
            Kind::TcpRoute,
            Kind::UdpRoute,
            Kind::BackendTlsPolicy,
            Kind::BackendPolicy,
            Kind::TrafficPolicy,
            Kind::BackendTrafficPolicy,
            Kind::XBackendTrafficPolicy,
            Kind::ClientTrafficPolicy,
            Kind::SecurityPolicy,
            Kind::SecurityOverride,
        ] {
            match self.stale_entries(kind, &jobs).await {
                Ok(stale) => jobs.extend(stale),
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(kind = kind.name(), error = %e, "could not list objects for stale status entries");
                }
            }
        }
        self.execute(jobs, &mut report).await;
        report
    }

    /// Writes status while `leader` is true: on becoming leader, a [`resync`]
    /// (everything current); then a [`write`] per new translation, and again after a
    /// backoff when some objects failed. Returns when `desired` closes (or `leader`
    /// closes, which means the elector is gone).
    ///
    /// [`resync`]: Self::resync
    /// [`write`]: Self::write
    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Arc<Translation>>,
        mut leader: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        self.gate = Some(leader.clone());
        loop {
            if !*leader.borrow_and_update() {
                // Follow: drop translations until leading (or either side goes away).
                tokio::select! {
                    r = leader.changed() => if r.is_err() { return },
                    r = desired.changed() => if r.is_err() { return },
                }
                continue;
            }
            let mut current = desired.borrow_and_update().clone();
            let mut report = self.resync(&current).await;
            log_report("resync as leader", &report);
            loop {
                let retry = if report.failed > 0 {
                    Some(backoff.next_delay())
                } else {
                    backoff.reset();
                    None
                };
                tokio::select! {
                    r = leader.changed() => {
                        if r.is_err() {
                            return;
                        }
                        if !*leader.borrow_and_update() {
                            tracing::info!("no longer leader: status writes stop");
                            self.cache.clear();
                            break;
                        }
                    }
                    r = desired.changed() => {
                        if r.is_err() {
                            return;
                        }
                        current = desired.borrow_and_update().clone();
                        report = self.write(&current).await;
                        log_report("write", &report);
                    }
                    () = sleep_opt(retry) => {
                        report = self.write(&current).await;
                        log_report("retry", &report);
                    }
                }
            }
        }
    }

    /// The objects to write, with their desired status.
    fn jobs(&self, translation: &Translation) -> Vec<Job> {
        translation
            .statuses()
            .iter()
            .filter_map(|s| {
                let kind = Kind::of(s.resource().kind())?;
                if !self.accepts(s.resource()) {
                    return None;
                }
                Some(Job {
                    kind,
                    resource: s.resource().clone(),
                    desired: desired_status(kind, s, &self.controller_name),
                    remember: true,
                })
            })
            .collect()
    }

    /// Routes or policies carrying one of our entries that translation no longer mentions.
    async fn stale_entries(&self, kind: Kind, jobs: &[Job]) -> Result<Vec<Job>, kube::Error> {
        let Some(list_key) = kind.shared_list() else {
            return Ok(Vec::new());
        };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &kind.api_resource());
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            // The kind is not installed (e.g. no GRPCRoute CRD): nothing to clean.
            Err(e) if is_status(&e, 404) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for obj in list.items {
            let (Some(ns), Some(name)) = (&obj.metadata.namespace, &obj.metadata.name) else {
                continue;
            };
            let r = ResourceRef::new(kind.name(), Some(ns), name);
            if !self.accepts(&r) || jobs.iter().any(|j| j.resource == r) {
                continue;
            }
            let ours = obj
                .data
                .get("status")
                .and_then(|s| s.get(list_key))
                .and_then(Value::as_array)
                .is_some_and(|ps| ps.iter().any(|p| self.is_ours(p)));
            if ours {
                out.push(Job {
                    kind,
                    resource: r,
                    desired: Value::Array(Vec::new()),
                    remember: false,
                });
            }
        }
        Ok(out)
    }

    fn is_ours(&self, parent: &Value) -> bool {
        parent.get("controllerName").and_then(Value::as_str) == Some(&self.controller_name)
    }

    async fn execute(&mut self, jobs: Vec<Job>, report: &mut WriteReport) {
        let this = &*self;
        let results: Vec<(Job, Outcome)> = futures_util::stream::iter(jobs)
            .map(|job| async move {
                let outcome = match this.write_one(&job).await {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!(resource = %job.resource, error = %e, "status write failed");
                        Outcome::Failed
                    }
                };
                (job, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (job, outcome) in results {
            report.add(&outcome);
            match outcome {
                Outcome::Written | Outcome::Unchanged if job.remember => {
                    self.cache.insert(job.resource, job.desired);
                }
                Outcome::Written | Outcome::Unchanged => {}
                Outcome::Missing | Outcome::Failed | Outcome::NotLeader => {
                    self.cache.remove(&job.resource);
                }
            }
        }
    }

    /// GET, merge, and replace the status when it changes; re-read on 409.
    async fn write_one(&self, job: &Job) -> Result<Outcome, kube::Error> {
        let ar = job.kind.api_resource();
        let api: Api<DynamicObject> = match job.resource.namespace() {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let name = job.resource.name();
        let mut last = None;
        for _ in 0..3 {
            // `get_opt` knows a 404 `Status` with reason `NotFound`; the API server answers
            // a path of a kind that is not installed (no CRD) with a plain-text 404.
            let mut obj = match api.get_opt(name).await {
                Ok(Some(obj)) => obj,
                Ok(None) => return Ok(Outcome::Missing),
                Err(e) if is_status(&e, 404) => return Ok(Outcome::Missing),
                Err(e) => return Err(e),
            };
            let now = rfc3339_seconds(self.clock.now());
            let old = obj.data.get("status").cloned().unwrap_or(Value::Null);
            let new = match job.kind {
                Kind::HttpRoute
                | Kind::GrpcRoute
                | Kind::TlsRoute
                | Kind::TcpRoute
                | Kind::UdpRoute => {
                    let ns = job.resource.namespace().unwrap_or_default();
                    merge_shared(
                        &old,
                        &job.desired,
                        Shared::PARENTS,
                        obj.data.pointer("/spec/parentRefs"),
                        ns,
                        &self.controller_name,
                        &now,
                    )
                }
                Kind::BackendPolicy
                | Kind::TrafficPolicy
                | Kind::BackendTrafficPolicy
                | Kind::XBackendTrafficPolicy
                | Kind::ClientTrafficPolicy
                | Kind::SecurityPolicy
                | Kind::SecurityOverride
                | Kind::BackendTlsPolicy => {
                    let ns = job.resource.namespace().unwrap_or_default();
                    merge_shared(
                        &old,
                        &job.desired,
                        Shared::ANCESTORS,
                        None,
                        ns,
                        &self.controller_name,
                        &now,
                    )
                }
                Kind::Gateway | Kind::ListenerSet | Kind::GatewayClass => {
                    merge_owned(&old, &job.desired, &now)
                }
            };
            let empty = job
                .kind
                .shared_list()
                .is_some_and(|key| is_empty_list_status(&new, key));
            if new == old || (old.is_null() && empty) {
                return Ok(Outcome::Unchanged);
            }
            if self.gate.as_ref().is_some_and(|g| !*g.borrow()) {
                return Ok(Outcome::NotLeader);
            }
            if let Some(map) = obj.data.as_object_mut() {
                map.insert("status".to_owned(), new);
            }
            match api.replace_status(name, &PostParams::default(), &obj).await {
                Ok(_) => {
                    tracing::debug!(resource = %job.resource, "status written");
                    return Ok(Outcome::Written);
                }
                Err(e) if is_status(&e, 409) => last = Some(e),
                Err(e) if is_status(&e, 404) => return Ok(Outcome::Missing),
                Err(e) => return Err(e),
            }
        }
        match last {
            Some(e) => Err(e),
            None => Ok(Outcome::Failed),
        }
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn log_report(what: &str, r: &WriteReport) {
    if r.written > 0 || r.failed > 0 {
        tracing::info!(
            pass = what,
            written = r.written,
            unchanged = r.unchanged,
            cached = r.cached,
            missing = r.missing,
            failed = r.failed,
            "status write-back"
        );
    }
}

/// `{key: []}` and nothing else.
fn is_empty_list_status(v: &Value, key: &str) -> bool {
    v.get(key)
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.as_object().is_some_and(|m| m.len() == 1)
}

/// `metav1.Time`: RFC 3339 with whole seconds.
fn rfc3339_seconds(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

// === Desired status (no timestamps) ===

fn condition_json(c: &Condition, generation: Option<i64>) -> Value {
    let mut m = Map::new();
    m.insert("type".to_owned(), json!(c.type_()));
    m.insert("status".to_owned(), json!(c.status().as_str()));
    m.insert("reason".to_owned(), json!(c.reason()));
    m.insert("message".to_owned(), json!(c.message()));
    if let Some(g) = c.observed_generation().or(generation) {
        m.insert("observedGeneration".to_owned(), json!(g));
    }
    Value::Object(m)
}

fn conditions_json(cs: &[Condition], generation: Option<i64>) -> Value {
    Value::Array(cs.iter().map(|c| condition_json(c, generation)).collect())
}

/// Routes: the array of our parent entries. Policies: the array of our ancestor entries.
/// Gateways: `{conditions, listeners, attachedListenerSets}`. ListenerSets:
/// `{conditions, listeners}`. GatewayClasses: `{conditions, supportedFeatures}`
/// (the latter on the accepted class only).
fn desired_status(kind: Kind, s: &ResourceStatus, controller: &str) -> Value {
    let generation = s.generation();
    match kind {
        Kind::HttpRoute | Kind::GrpcRoute | Kind::TlsRoute | Kind::TcpRoute | Kind::UdpRoute => {
            Value::Array(
                s.parents()
                    .iter()
                    .map(|p| {
                        let r = p.parent();
                        let mut pr = Map::new();
                        pr.insert("group".to_owned(), json!(GATEWAY_GROUP));
                        pr.insert("kind".to_owned(), json!(r.kind));
                        pr.insert("namespace".to_owned(), json!(r.namespace));
                        pr.insert("name".to_owned(), json!(r.name));
                        if let Some(sn) = &r.section_name {
                            pr.insert("sectionName".to_owned(), json!(sn));
                        }
                        if let Some(port) = r.port {
                            pr.insert("port".to_owned(), json!(port));
                        }
                        json!({
                            "parentRef": Value::Object(pr),
                            "controllerName": controller,
                            "conditions": conditions_json(p.conditions(), generation),
                        })
                    })
                    .collect(),
            )
        }
        Kind::Gateway | Kind::ListenerSet => {
            let mut m = Map::new();
            m.insert(
                "conditions".to_owned(),
                conditions_json(s.conditions(), generation),
            );
            m.insert(
                "listeners".to_owned(),
                s.listeners()
                    .iter()
                    .map(|l| {
                        json!({
                            "name": l.name(),
                            "supportedKinds": l.supported_kinds().iter()
                                .map(|k| json!({"group": GATEWAY_GROUP, "kind": k}))
                                .collect::<Vec<_>>(),
                            "attachedRoutes": l.attached_routes(),
                            "conditions": conditions_json(l.conditions(), generation),
                        })
                    })
                    .collect(),
            );
            if let Some(n) = s.attached_listener_sets() {
                m.insert("attachedListenerSets".to_owned(), json!(n));
            }
            // Written only when translation knows them (the gateway Service is set);
            // otherwise a value someone else wrote is kept.
            if let Some(addresses) = s.addresses() {
                let addresses = addresses
                    .iter()
                    .map(|a| json!({"type": a.type_(), "value": a.value()}))
                    .collect::<Vec<_>>();
                m.insert("addresses".to_owned(), Value::Array(addresses));
            }
            Value::Object(m)
        }
        Kind::GatewayClass => {
            let mut m = Map::new();
            m.insert(
                "conditions".to_owned(),
                conditions_json(s.conditions(), generation),
            );
            if !s.supported_features().is_empty() {
                m.insert(
                    "supportedFeatures".to_owned(),
                    s.supported_features()
                        .iter()
                        .map(|n| json!({ "name": n }))
                        .collect(),
                );
            }
            Value::Object(m)
        }
        Kind::BackendPolicy
        | Kind::TrafficPolicy
        | Kind::BackendTrafficPolicy
        | Kind::XBackendTrafficPolicy
        | Kind::ClientTrafficPolicy
        | Kind::SecurityPolicy
        | Kind::SecurityOverride
        | Kind::BackendTlsPolicy => Value::Array(
            s.ancestors()
                .iter()
                .map(|a| {
                    let r = a.ancestor();
                    let mut ar = Map::new();
                    ar.insert("group".to_owned(), json!(r.group));
                    ar.insert("kind".to_owned(), json!(r.kind));
                    ar.insert("namespace".to_owned(), json!(r.namespace));
                    ar.insert("name".to_owned(), json!(r.name));
                    if let Some(sn) = &r.section_name {
                        ar.insert("sectionName".to_owned(), json!(sn));
                    }
                    json!({
                        "ancestorRef": Value::Object(ar),
                        "controllerName": controller,
                        "conditions": conditions_json(a.conditions(), generation),
                    })
                })
                .collect(),
        ),
    }
}

// === Merging ===

/// Desired conditions, with `lastTransitionTime` from `old` where the status did not
/// change, else `now`.
fn timed(desired: &Value, old: Option<&Value>, now: &str) -> Value {
    let old = old.and_then(Value::as_array);
    let out = desired
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut c = c.clone();
            let prev = old.and_then(|o| o.iter().find(|p| p.get("type") == c.get("type")));
            let time = prev
                .filter(|p| p.get("status") == c.get("status"))
                .and_then(|p| p.get("lastTransitionTime"))
                .cloned()
                .unwrap_or_else(|| json!(now));
            if let Some(m) = c.as_object_mut() {
                m.insert("lastTransitionTime".to_owned(), time);
            }
            c
        })
        .collect();
    Value::Array(out)
}

/// A parentRef with defaults filled in, for comparison.
fn normalized_ref(r: &Value, route_ns: &str) -> (String, String, String, String, Value, Value) {
    let s = |k: &str, d: &str| r.get(k).and_then(Value::as_str).unwrap_or(d).to_owned();
    (
        s("group", GATEWAY_GROUP),
        s("kind", "Gateway"),
        s("namespace", route_ns),
        s("name", ""),
        r.get("sectionName").cloned().unwrap_or(Value::Null),
        r.get("port").cloned().unwrap_or(Value::Null),
    )
}

/// A status list shared by controllers: its field, its entries' reference field, and how
/// many entries the API allows.
#[derive(Clone, Copy)]
struct Shared {
    list: &'static str,
    reference: &'static str,
    max: usize,
}

impl Shared {
    /// A route's `status.parents[].parentRef`.
    const PARENTS: Self = Self {
        list: "parents",
        reference: "parentRef",
        max: MAX_PARENTS,
    };
    /// A policy's `status.ancestors[].ancestorRef` (GEP-713).
    const ANCESTORS: Self = Self {
        list: "ancestors",
        reference: "ancestorRef",
        max: MAX_ANCESTORS,
    };
}

/// Route or policy status: foreign entries kept in place, ours replaced by `desired`
/// (an array of entries), each reference copied from the spec when it matches one
/// (routes' `spec.parentRefs`).
fn merge_shared(
    old: &Value,
    desired: &Value,
    shared: Shared,
    spec_refs: Option<&Value>,
    route_ns: &str,
    controller: &str,
    now: &str,
) -> Value {
    let Shared {
        list,
        reference,
        max,
    } = shared;
    let old_parents: &[Value] = old
        .get(list)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let is_ours = |p: &Value| p.get("controllerName").and_then(Value::as_str) == Some(controller);
    let mut parents: Vec<Value> = old_parents
        .iter()
        .filter(|p| !is_ours(p))
        .cloned()
        .collect();
    let spec_refs = spec_refs.and_then(Value::as_array);
    for entry in desired.as_array().into_iter().flatten() {
        if parents.len() >= max {
            tracing::warn!("status has {max} {list} already; gatekit's entry left out");
            break;
        }
        let Some(want) = entry.get(reference) else {
            continue;
        };
        let key = normalized_ref(want, route_ns);
        let parent_ref = spec_refs
            .and_then(|refs| refs.iter().find(|r| normalized_ref(r, route_ns) == key))
            .unwrap_or(want)
            .clone();
        let prev = old_parents.iter().find(|p| {
            is_ours(p)
                && p.get(reference)
                    .is_some_and(|r| normalized_ref(r, route_ns) == key)
        });
        parents.push(json!({
            reference: parent_ref,
            "controllerName": controller,
            "conditions": timed(
                entry.get("conditions").unwrap_or(&Value::Null),
                prev.and_then(|p| p.get("conditions")),
                now,
            ),
        }));
    }
    let mut status = old.as_object().cloned().unwrap_or_default();
    status.insert(list.to_owned(), Value::Array(parents));
    Value::Object(status)
}

/// Gateway / ListenerSet / GatewayClass status: `conditions` (and `listeners`,
/// `supportedFeatures`, `attachedListenerSets`) replaced, other fields kept.
fn merge_owned(old: &Value, desired: &Value, now: &str) -> Value {
    let mut status = old.as_object().cloned().unwrap_or_default();
    status.insert(
        "conditions".to_owned(),
        timed(
            desired.get("conditions").unwrap_or(&Value::Null),
            old.get("conditions"),
            now,
        ),
    );
    // Fields gatekit owns when it sends them (a Gateway's `addresses` only when the
    // gateway Service is known).
    for key in ["supportedFeatures", "attachedListenerSets", "addresses"] {
        if let Some(value) = desired.get(key) {
            status.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(listeners) = desired.get("listeners").and_then(Value::as_array) {
        let old_listeners = old.get("listeners").and_then(Value::as_array);
        let merged = listeners
            .iter()
            .map(|l| {
                let prev =
                    old_listeners.and_then(|o| o.iter().find(|p| p.get("name") == l.get("name")));
                let mut l = l.clone();
                let conditions = timed(
                    l.get("conditions").unwrap_or(&Value::Null),
                    prev.and_then(|p| p.get("conditions")),
                    now,
                );
                if let Some(m) = l.as_object_mut() {
                    m.insert("conditions".to_owned(), conditions);
                }
                l
            })
            .collect();
        status.insert("listeners".to_owned(), Value::Array(merged));
    }
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "gatekit.io/gateway-controller";

    fn cond(type_: &str, status: &str) -> Value {
        json!({"type": type_, "status": status, "reason": type_, "message": "", "observedGeneration": 1})
    }

    #[test]
    fn route_merge_keeps_foreign_and_times() {
        let old = json!({"parents": [
            {"parentRef": {"name": "other"}, "controllerName": "example.com/x", "conditions": []},
            {"parentRef": {"name": "gw", "namespace": "ns"}, "controllerName": ME,
             "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": 1, "lastTransitionTime": "T0"},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "", "observedGeneration": 1, "lastTransitionTime": "T0"}]},
            {"parentRef": {"name": "stale"}, "controllerName": ME, "conditions": []},
        ]});
        let desired = json!([{
            "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "ns", "name": "gw"},
            "controllerName": ME,
            "conditions": [cond("Accepted", "True"), cond("ResolvedRefs", "False")],
        }]);
        let spec = json!([{"name": "gw"}]);
        let new = merge_shared(&old, &desired, Shared::PARENTS, Some(&spec), "ns", ME, "T1");
        let parents = new["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0]["controllerName"], "example.com/x");
        assert_eq!(parents[1]["parentRef"], json!({"name": "gw"}));
        assert_eq!(parents[1]["conditions"][0]["lastTransitionTime"], "T0");
        assert_eq!(parents[1]["conditions"][1]["lastTransitionTime"], "T1");

        // Merging again changes nothing.
        let again = merge_shared(&new, &desired, Shared::PARENTS, Some(&spec), "ns", ME, "T2");
        assert_eq!(again, new);
    }

    #[test]
    fn policy_merge_keeps_foreign_ancestors_and_drops_stale_own() {
        let target =
            json!({"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": "ns", "name": "r"});
        let old = json!({"ancestors": [
            {"ancestorRef": target, "controllerName": "example.com/x", "conditions": []},
            {"ancestorRef": {"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": "ns", "name": "gone"},
             "controllerName": ME, "conditions": []},
        ]});
        let desired = json!([{
            "ancestorRef": target,
            "controllerName": ME,
            "conditions": [cond("Accepted", "False")],
        }]);
        let new = merge_shared(&old, &desired, Shared::ANCESTORS, None, "ns", ME, "T1");
        let ancestors = new["ancestors"].as_array().unwrap();
        assert_eq!(ancestors.len(), 2, "{new}");
        assert_eq!(ancestors[0]["controllerName"], "example.com/x");
        assert_eq!(ancestors[1]["controllerName"], ME);
        assert_eq!(ancestors[1]["ancestorRef"], target);
        assert_eq!(ancestors[1]["conditions"][0]["lastTransitionTime"], "T1");
        assert!(new.get("parents").is_none());
        let again = merge_shared(&new, &desired, Shared::ANCESTORS, None, "ns", ME, "T2");
        assert_eq!(again, new);
    }

    #[test]
    fn gateway_merge_keeps_addresses() {
        let old = json!({"addresses": [{"value": "10.0.0.1"}], "conditions": [
            {"type": "Accepted", "status": "Unknown", "reason": "Pending", "message": "", "lastTransitionTime": "1970"}]});
        let desired = json!({"conditions": [cond("Accepted", "True")], "listeners": [
            {"name": "http", "supportedKinds": [], "attachedRoutes": 2, "conditions": [cond("Programmed", "True")]}]});
        let new = merge_owned(&old, &desired, "T1");
        assert_eq!(new["addresses"][0]["value"], "10.0.0.1");
        assert_eq!(new["conditions"][0]["lastTransitionTime"], "T1");
        assert_eq!(new["listeners"][0]["attachedRoutes"], 2);
        assert_eq!(merge_owned(&new, &desired, "T2"), new);
    }

    #[test]
    fn time_format() {
        let t = Timestamp::from_second(1_700_000_000).unwrap();
        assert_eq!(rfc3339_seconds(t), "2023-11-14T22:13:20Z");
    }
}
