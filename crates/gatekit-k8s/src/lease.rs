//! Leases: per-replica membership and leader election (`coordination.k8s.io/v1`).
//!
//! # Membership
//!
//! Every gatekit replica owns one Lease, named after its pod, in its pod's namespace
//! ([`Membership`]). The Lease says who holds it (`holderIdentity` = pod name), for how
//! long (`leaseDurationSeconds`) and when it was last renewed (`renewTime`); labels say
//! which fleet the replica belongs to and which configuration (generation and hash) it
//! serves. Peers and operators list the fleet's Leases by label and count the
//! non-expired ones ([`FleetView`](crate::fleet::FleetView)); this is the pattern of the
//! kube-apiserver identity Leases (KEP-1965).
//!
//! The Lease carries an ownerReference to the Pod (when its UID is known, from the
//! downward API), so Kubernetes' garbage collector deletes it when the Pod object goes,
//! even after a crash. A graceful shutdown deletes it explicitly
//! ([`Membership::vacate`]).
//!
//! A background task creates the Lease when absent and renews it every renew interval.
//! Each write is a `replace` carrying the `resourceVersion` read before, so a concurrent
//! writer makes it fail with 409 Conflict instead of being silently overwritten; the
//! task then re-reads and tries again. Errors are logged and retried with exponential
//! backoff (capped at the renew interval); the task never panics. A configuration
//! change ([`Membership::set_config`]) is written at once, not at the next renewal.
//!
//! # Leader election
//!
//! [`LeaderElector`] competes for one named Lease (e.g. `gatekit-status-writer`) with
//! the other replicas, the way client-go's `leaderelection` does:
//!
//! - absent Lease: create it with ourselves as holder (a concurrent create loses with
//!   409 AlreadyExists and becomes a follower);
//! - held by us: renew `renewTime`;
//! - free (no holder) or expired (`renewTime + leaseDurationSeconds < now`): take it
//!   over, bumping `leaseTransitions`;
//! - held by someone else and live: follow, and look again after the renew interval.
//!
//! Every write carries the `resourceVersion` of the Lease just read, so of two replicas
//! racing for an expired Lease exactly one write succeeds; the other gets 409, re-reads
//! and finds a live holder. A leader that cannot renew for the renew deadline (by
//! default two thirds of the Lease duration) steps down on its own, before another
//! replica may take over. [`LeaderElector::vacate`] clears the holder, so a follower
//! takes over at its next look instead of waiting for expiry.
//!
//! Trade-offs: expiry compares the Lease's `renewTime` with the local wall clock, so
//! clock skew between nodes shortens or lengthens the effective Lease (client-go avoids
//! this by timing its own observations; gatekit's leader only gates status writes,
//! where a short overlap is harmless because writes are read-modify-write with
//! preconditions). Followers poll rather than watch: one GET per renew interval per
//! replica.
//!
//! Time is measured with `tokio::time` (the wall clock is read once and advanced with
//! the monotonic clock), so tests can pause and advance time.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use tokio::time::Instant;

/// Label: the tool that manages the Lease (`gatekit`).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label: the fleet (a group of replicas serving the same gateway) a replica belongs to.
pub const FLEET_LABEL: &str = "gatekit.io/fleet";
/// Label: the configuration generation a replica serves.
pub const GENERATION_LABEL: &str = "gatekit.io/config-generation";
/// Label: the hash of the configuration a replica serves.
pub const HASH_LABEL: &str = "gatekit.io/config-hash";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "gatekit";

/// How many times one sync re-reads after a 409 before giving up until the next round.
const CONFLICT_ATTEMPTS: usize = 3;

// === Clock ===

/// Wall-clock time advanced by `tokio::time`, so paused tests control it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    wall: Timestamp,
    mono: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            wall: Timestamp::now(),
            mono: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        let elapsed = self.mono.elapsed();
        self.wall
            .checked_add(elapsed)
            .unwrap_or_else(|_| Timestamp::now())
    }
}

/// Whether the API answered with this HTTP status code.
pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

/// Turns any string into a valid label value: at most 63 characters from
/// `[A-Za-z0-9-_.]`, starting and ending with an alphanumeric character (others are
/// replaced by `_` or trimmed).
pub fn label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

// === MemberSpec ===

/// What a replica's membership Lease says: where it lives, who owns it, which fleet,
/// and timing.
#[derive(Clone, Debug)]
pub struct MemberSpec {
    namespace: String,
    pod_name: String,
    pod_uid: Option<String>,
    fleet: String,
    lease_duration: Duration,
    renew_interval: Duration,
    generation: u64,
    hash: String,
}

impl MemberSpec {
    /// A Lease named `pod_name` in `namespace`, in fleet `fleet`; Lease duration 30 s,
    /// renewed every 10 s, configuration generation 0 with an empty hash.
    pub fn new(
        namespace: impl Into<String>,
        pod_name: impl Into<String>,
        fleet: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            pod_name: pod_name.into(),
            pod_uid: None,
            fleet: fleet.into(),
            lease_duration: Duration::from_secs(30),
            renew_interval: Duration::from_secs(10),
            generation: 0,
            hash: String::new(),
        }
    }

    /// The Pod's UID (downward API `metadata.uid`): adds an ownerReference to the Pod,
    /// so Kubernetes deletes the Lease with the Pod.
    #[must_use]
    pub fn pod_uid(mut self, uid: impl Into<String>) -> Self {
        let uid = uid.into();
        self.pod_uid = (!uid.is_empty()).then_some(uid);
        self
    }

    /// `leaseDurationSeconds` (whole seconds, at least 1).
    #[must_use]
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.lease_duration = d;
        self
    }

    /// How often the Lease is renewed; should be well under the Lease duration.
    #[must_use]
    pub fn renew_interval(mut self, d: Duration) -> Self {
        self.renew_interval = d.max(Duration::from_millis(10));
        self
    }

    /// The configuration served at start.
    #[must_use]
    pub fn config(mut self, generation: u64, hash: impl Into<String>) -> Self {
        self.generation = generation;
        self.hash = hash.into();
        self
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1)
    }

    /// Writes everything this replica owns into `lease` (keeping foreign labels).
    fn apply(&self, lease: &mut Lease, config: &ConfigLabels, now: Timestamp) {
        let meta = &mut lease.metadata;
        meta.name = Some(self.pod_name.clone());
        meta.namespace = Some(self.namespace.clone());
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
        labels.insert(FLEET_LABEL.to_owned(), label_value(&self.fleet));
        labels.insert(GENERATION_LABEL.to_owned(), config.generation.to_string());
        labels.insert(HASH_LABEL.to_owned(), label_value(&config.hash));
        if let Some(uid) = &self.pod_uid {
            let owners = meta.owner_references.get_or_insert_with(Vec::new);
            if !owners.iter().any(|o| &o.uid == uid) {
                owners.push(OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Pod".to_owned(),
                    name: self.pod_name.clone(),
                    uid: uid.clone(),
                    block_owner_deletion: None,
                    controller: None,
                });
            }
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.pod_name.clone());
        spec.lease_duration_seconds = Some(self.duration_seconds());
        if spec.acquire_time.is_none() {
            spec.acquire_time = Some(micro(now));
        }
        spec.renew_time = Some(micro(now));
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ConfigLabels {
    generation: u64,
    hash: String,
}

// === Membership ===

/// A replica's membership Lease, kept alive by a background task.
///
/// Dropping it stops renewing (the Lease then expires and is garbage-collected with
/// the Pod); [`vacate`](Self::vacate) also deletes it.
pub struct Membership {
    api: Api<Lease>,
    name: String,
    config: watch::Sender<ConfigLabels>,
    writes: watch::Receiver<u64>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("name", &self.name)
            .field("config", &*self.config.borrow())
            .field("writes", &*self.writes.borrow())
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Spawns the task that creates and renews the Lease. Returns at once; the first
    /// write happens in the background (see [`writes`](Self::writes)).
    pub fn start(client: Client, spec: MemberSpec) -> Self {
        let api: Api<Lease> = Api::namespaced(client, &spec.namespace);
        let name = spec.pod_name.clone();
        let (config, config_rx) = watch::channel(ConfigLabels {
            generation: spec.generation,
            hash: spec.hash.clone(),
        });
        let (writes_tx, writes) = watch::channel(0);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run_member(api.clone(), spec, config_rx, stop_rx, writes_tx));
        Self {
            api,
            name,
            config,
            writes,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The Lease's name (the pod name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records the configuration now served; the labels are written at once.
    pub fn set_config(&self, generation: u64, hash: &str) {
        self.config.send_if_modified(|c| {
            let new = ConfigLabels {
                generation,
                hash: hash.to_owned(),
            };
            let changed = *c != new;
            *c = new;
            changed
        });
    }

    /// Counts the successful writes (creation, renewals, label updates) of the Lease.
    pub fn writes(&self) -> watch::Receiver<u64> {
        self.writes.clone()
    }

    /// Stops renewing and deletes the Lease (for a graceful shutdown). A Lease already
    /// gone is fine; other errors are logged (the Lease then expires and is
    /// garbage-collected with the Pod).
    pub async fn vacate(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        match self.api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(lease = %self.name, "membership Lease deleted"),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "could not delete membership Lease");
            }
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run_member(
    api: Api<Lease>,
    spec: MemberSpec,
    mut config: watch::Receiver<ConfigLabels>,
    mut stop: oneshot::Receiver<()>,
    writes: watch::Sender<u64>,
) {
    let clock = Clock::new();
    let mut cached: Option<Lease> = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), spec.renew_interval);
    let mut config_open = true;
    loop {
        let labels = config.borrow_and_update().clone();
        let delay = match sync_member(&api, &spec, &labels, &clock, &mut cached).await {
            Ok(()) => {
                writes.send_modify(|n| *n += 1);
                backoff.reset();
                spec.renew_interval
            }
            Err(e) => {
                cached = None;
                let d = backoff.next_delay();
                tracing::warn!(lease = %spec.pod_name, error = %e, retry_in = ?d, "membership Lease write failed");
                d
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(delay) => {}
            r = config.changed(), if config_open => {
                if r.is_err() {
                    config_open = false;
                }
            }
        }
    }
}

/// Creates or renews the membership Lease, re-reading after a conflict.
async fn sync_member(
    api: &Api<Lease>,
    spec: &MemberSpec,
    labels: &ConfigLabels,
    clock: &Clock,
    cached: &mut Option<Lease>,
) -> Result<(), kube::Error> {
    let pp = PostParams::default();
    let mut last_err = None;
    for _ in 0..CONFLICT_ATTEMPTS {
        let current = match cached.take() {
            Some(l) => Some(l),
            None => api.get_opt(&spec.pod_name).await?,
        };
        let now = clock.now();
        let result = match current {
            None => {
                let mut lease = Lease::default();
                spec.apply(&mut lease, labels, now);
                api.create(&pp, &lease).await
            }
            Some(mut lease) => {
                spec.apply(&mut lease, labels, now);
                api.replace(&spec.pod_name, &pp, &lease).await
            }
        };
        match result {
            Ok(lease) => {
                *cached = Some(lease);
                return Ok(());
            }
            // Someone else wrote (or deleted) it since we read it: read again.
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        kube::Error::Api(Box::new(kube::core::Status::failure(
            "conflict retries exhausted",
            "Conflict",
        )))
    }))
}

// === ElectionSpec ===

/// Settings of a [`LeaderElector`].
#[derive(Clone, Debug)]
pub struct ElectionSpec {
    namespace: String,
    lease_name: String,
    identity: String,
    lease_duration: Duration,
    renew_interval: Duration,
    renew_deadline: Option<Duration>,
}

impl ElectionSpec {
    /// Election for the Lease `lease_name` in `namespace`, as `identity` (the pod
    /// name); Lease duration 15 s, renew (and follower poll) interval 2 s.
    pub fn new(
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(2),
            renew_deadline: None,
        }
    }

    /// `leaseDurationSeconds` (whole seconds, at least 1): how long after the last
    /// renewal others may take over.
    #[must_use]
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.lease_duration = d;
        self
    }

    /// How often the leader renews and followers look at the Lease.
    #[must_use]
    pub fn renew_interval(mut self, d: Duration) -> Self {
        self.renew_interval = d.max(Duration::from_millis(10));
        self
    }

    /// How long a leader keeps leading without a successful renewal (default: two
    /// thirds of the Lease duration). Must be shorter than the Lease duration.
    #[must_use]
    pub fn renew_deadline(mut self, d: Duration) -> Self {
        self.renew_deadline = Some(d);
        self
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1)
    }

    fn deadline(&self) -> Duration {
        self.renew_deadline.unwrap_or_else(|| {
            Duration::from_secs(u64::try_from(self.duration_seconds()).unwrap_or(1)) * 2 / 3
        })
    }
}

/// Whether a Lease's holder has let it expire at `now`.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    match renewed.0.checked_add(SignedDuration::from_secs(secs)) {
        Ok(deadline) => deadline < now,
        Err(_) => false,
    }
}

fn holder(spec: Option<&LeaseSpec>) -> Option<&str> {
    spec.and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

// === LeaderElector ===

/// Lease-based leader election among replicas; see the [module docs](self).
pub struct LeaderElector {
    api: Api<Lease>,
    spec: ElectionSpec,
    leader: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<watch::Sender<bool>>>,
}

impl fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElector")
            .field("lease", &self.spec.lease_name)
            .field("identity", &self.spec.identity)
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}

enum Role {
    Leader,
    Follower,
}

impl LeaderElector {
    /// Spawns the election task; [`leader`](Self::leader) reports the outcome.
    pub fn start(client: Client, spec: ElectionSpec) -> Self {
        let api: Api<Lease> = Api::namespaced(client, &spec.namespace);
        let (leader_tx, leader) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run_election(api.clone(), spec.clone(), leader_tx, stop_rx));
        Self {
            api,
            spec,
            leader,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Whether this replica leads, now and as it changes.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Stops competing; if leading, reports `false` first and then clears the Lease's
    /// holder so another replica takes over at once (instead of after expiry).
    pub async fn vacate(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(tx) => {
                    tx.send_replace(false);
                }
                Err(e) => tracing::warn!(error = %e, "leader election task failed"),
            }
        }
        if let Err(e) = release(&self.api, &self.spec).await {
            tracing::warn!(lease = %self.spec.lease_name, error = %e, "could not release leader Lease");
        }
    }
}

impl Drop for LeaderElector {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run_election(
    api: Api<Lease>,
    spec: ElectionSpec,
    leader: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) -> watch::Sender<bool> {
    let clock = Clock::new();
    let mut last_renew: Option<Instant> = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), spec.renew_interval);
    loop {
        let delay = match try_acquire_or_renew(&api, &spec, &clock).await {
            Ok(Role::Leader) => {
                if last_renew.is_none() {
                    tracing::info!(lease = %spec.lease_name, identity = %spec.identity, "became leader");
                }
                last_renew = Some(Instant::now());
                leader.send_if_modified(|l| !std::mem::replace(l, true));
                backoff.reset();
                spec.renew_interval
            }
            Ok(Role::Follower) => {
                if last_renew.take().is_some() {
                    tracing::info!(lease = %spec.lease_name, identity = %spec.identity, "lost leadership");
                }
                leader.send_if_modified(|l| std::mem::replace(l, false));
                backoff.reset();
                spec.renew_interval
            }
            Err(e) => {
                let d = backoff.next_delay();
                tracing::warn!(lease = %spec.lease_name, error = %e, retry_in = ?d, "leader Lease read or write failed");
                if let Some(at) = last_renew
                    && at.elapsed() >= spec.deadline()
                {
                    tracing::warn!(lease = %spec.lease_name, "renew deadline passed: stepping down");
                    last_renew = None;
                    leader.send_replace(false);
                }
                d
            }
        };
        tokio::select! {
            _ = &mut stop => return leader,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    spec: &ElectionSpec,
    clock: &Clock,
) -> Result<Role, kube::Error> {
    let pp = PostParams::default();
    let mut last_err = None;
    for _ in 0..CONFLICT_ATTEMPTS {
        let now = clock.now();
        let result = match api.get_opt(&spec.lease_name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(spec.lease_name.clone()),
                        namespace: Some(spec.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            MANAGED_BY_LABEL.to_owned(),
                            MANAGED_BY.to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(spec.identity.clone()),
                        lease_duration_seconds: Some(spec.duration_seconds()),
                        acquire_time: Some(micro(now)),
                        renew_time: Some(micro(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                match api.create(&pp, &lease).await {
                    Err(e) if is_status(&e, 409) => {
                        // Created by someone else in the meantime: look at it.
                        last_err = Some(e);
                        continue;
                    }
                    r => r,
                }
            }
            Some(mut lease) => {
                let current = holder(lease.spec.as_ref()).map(str::to_owned);
                let s = lease.spec.get_or_insert_with(LeaseSpec::default);
                if current.as_deref() == Some(spec.identity.as_str()) {
                    s.renew_time = Some(micro(now));
                    s.lease_duration_seconds = Some(spec.duration_seconds());
                } else if current.is_none() || expired(s, now) {
                    s.holder_identity = Some(spec.identity.clone());
                    s.acquire_time = Some(micro(now));
                    s.renew_time = Some(micro(now));
                    s.lease_duration_seconds = Some(spec.duration_seconds());
                    s.lease_transitions = Some(s.lease_transitions.unwrap_or(0).saturating_add(1));
                } else {
                    return Ok(Role::Follower);
                }
                api.replace(&spec.lease_name, &pp, &lease).await
            }
        };
        match result {
            Ok(_) => return Ok(Role::Leader),
            // Lost a race (or the Lease vanished): re-read and decide again.
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        kube::Error::Api(Box::new(kube::core::Status::failure(
            "conflict retries exhausted",
            "Conflict",
        )))
    }))
}

/// Clears the holder of the election Lease if we hold it.
async fn release(api: &Api<Lease>, spec: &ElectionSpec) -> Result<(), kube::Error> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let Some(mut lease) = api.get_opt(&spec.lease_name).await? else {
            return Ok(());
        };
        if holder(lease.spec.as_ref()) != Some(spec.identity.as_str()) {
            return Ok(());
        }
        if let Some(s) = lease.spec.as_mut() {
            s.holder_identity = None;
            s.acquire_time = None;
            s.renew_time = None;
        }
        match api
            .replace(&spec.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(lease = %spec.lease_name, identity = %spec.identity, "leadership released");
                return Ok(());
            }
            Err(e) if is_status(&e, 409) => continue,
            Err(e) if is_status(&e, 404) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_safe() {
        assert_eq!(label_value("sha256:abc/def"), "sha256_abc_def");
        assert_eq!(label_value("-x-"), "x");
        assert_eq!(label_value(""), "");
        assert_eq!(label_value(&"a".repeat(100)).len(), 63);
        assert_eq!(label_value("a.b-c_D9"), "a.b-c_D9");
    }

    #[test]
    fn expiry() {
        let now = Timestamp::from_second(1_000).unwrap();
        let spec = |renew: i64, secs: i32| LeaseSpec {
            renew_time: Some(MicroTime(Timestamp::from_second(renew).unwrap())),
            lease_duration_seconds: Some(secs),
            ..LeaseSpec::default()
        };
        assert!(!expired(&spec(990, 15), now));
        assert!(expired(&spec(980, 15), now));
        assert!(expired(&LeaseSpec::default(), now));
    }

    #[tokio::test(start_paused = true)]
    async fn clock_follows_tokio_time() {
        let c = Clock::new();
        let t0 = c.now();
        tokio::time::advance(Duration::from_secs(60)).await;
        let d = c.now().duration_since(t0);
        assert!(d >= SignedDuration::from_secs(60), "{d:?}");
    }
}
