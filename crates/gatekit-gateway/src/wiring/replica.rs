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

use gatekit_k8s::provider::{ProviderSettings, ReplicaIdentity};
use gatekit_k8s::{
    ElectionSpec, FleetView, LeaderElector, MemberSpec, Membership, Provider, StatusWriter,
    Translation,
};
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

/// FNV-1a, 64 bits: a stable hash (the same on every replica and every build), for
/// configuration generations and hashes compared across a fleet.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>, mut hash: u64) -> u64 {
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The FNV-1a offset basis.
pub(crate) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The hash of what a translation serves: listeners, routes and upstream definitions
/// (not endpoints, not the addresses sockets are bound on). Two replicas that serve
/// the same input must agree on it; if they do not, the fleet view shows drift.
pub(crate) fn config_hash(translation: &Translation) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    for port in translation.listeners() {
        let _ = write!(text, "{}:{:?}:", port.port(), port.protocol());
        for l in port.listeners() {
            let _ = write!(text, "{}/{:?};", l.name(), l.hostname());
        }
        let _ = write!(text, "{:?}", port.routes());
    }
    for (name, spec) in translation.upstreams() {
        let _ = write!(
            text,
            "{name}:{:?}:{:?};",
            spec.app_protocol(),
            spec.policy()
        );
    }
    format!("{:016x}", fnv1a(text.bytes(), FNV_START))
}

/// The input generation of a Kubernetes snapshot: a stable hash of every object's
/// kind, namespace, name and resourceVersion. Replicas that read the same objects get
/// the same generation, whatever their reload history.
pub(crate) fn input_generation(set: &gatekit_k8s::ResourceSet) -> u64 {
    use kube::Resource;
    fn add<K: Resource<DynamicType = ()>>(hash: &mut u64, objects: &[K]) {
        let mut keys: Vec<String> = objects
            .iter()
            .map(|o| {
                let m = o.meta();
                format!(
                    "{}/{}/{}@{}",
                    K::kind(&()),
                    m.namespace.as_deref().unwrap_or(""),
                    m.name.as_deref().unwrap_or(""),
                    m.resource_version.as_deref().unwrap_or("")
                )
            })
            .collect();
        keys.sort_unstable();
        for k in keys {
            *hash = fnv1a(k.bytes().chain([0]), *hash);
        }
    }
    let mut h = FNV_START;
    add(&mut h, &set.gateway_classes);
    add(&mut h, &set.gateways);
    add(&mut h, &set.http_routes);
    add(&mut h, &set.grpc_routes);
    add(&mut h, &set.reference_grants);
    add(&mut h, &set.services);
    add(&mut h, &set.namespaces);
    add(&mut h, &set.secrets);
    add(&mut h, &set.backend_policies);
    // Endpoints are not configuration: they change without a new generation.
    h & 0x7fff_ffff_ffff_ffff
}
