//! Secrets and ConfigMaps watched by the names the configuration references.
//!
//! No cluster-wide watch of Secrets or ConfigMaps: only the objects some Gateway,
//! ListenerSet or policy names ([`crate::refs`]) are watched and held, whatever their
//! type (an Opaque Secret holding a CA bundle under `ca.crt` is read like a TLS pair).
//! Every other Secret of the cluster stays out of gatekit's memory, and its changes
//! never reach translation.
//!
//! After every change of a referring kind (and each first list of a kind), one task
//! ([`reconcile_forever`]) recomputes the references from the config clusters' merged
//! objects and brings each config cluster's watches in line:
//!
//! - each referenced object has its own watch: `Api::namespaced(namespace)` with the
//!   field selector `metadata.name=<name>`, through the same [`run`](super::watch::run)
//!   (Guard, backoff) as the cluster-wide watches, into the same per-cluster store;
//! - a watch per name is one long-lived request to the API server (a LIST then a WATCH),
//!   so when one namespace has more than [`NAMESPACE_WATCH_ABOVE`] referenced names of
//!   one kind, one watch of that namespace replaces them: it drops objects whose name is
//!   not referenced on receipt (they are never stored), and is started again when a
//!   name is added (the dropped objects were never kept);
//! - a reference that is gone: its watch is aborted and its object removed from the
//!   store (a configuration change like any other), so the Secret leaves memory;
//! - a watch the API server refuses (403: RBAC narrowed to the namespaces that hold
//!   certificates, and a reference elsewhere) counts as listed and empty, so the object
//!   is "not found" for translation: one reference someone wrote neither keeps the
//!   replica from becoming ready nor marks the cluster lost. It is tried again every
//!   `backoffMax`.
//!
//! # Readiness and ordering
//!
//! A config cluster is synced only when the references were computed from every config
//! cluster's listed referring kinds and each of their watches has completed its first
//! list, so a replica becomes ready only with the certificates its Gateways name.
//!
//! At runtime, a change of a referring kind is held back from
//! [`Provider::changed`](super::Provider::changed) (EndpointSlice changes still pass)
//! until the watches it adds have listed, for at most [`FIRST_LIST_WAIT`]: a new
//! listener's certificate is then in the same translation as the listener, instead of
//! the listener first being published with its Secret "not found". A watch that has not
//! listed by then (an API server slow to answer) does not hold the change longer; its
//! object comes in a later change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kube::Api;
use kube::runtime::watcher;
use tokio::task::JoinHandle;

use super::Shared;
use super::store::{Delta, Key};
use super::watch::{self, Scope};
use crate::refs::{RefKind, Reference, References, references};
use crate::types::{ConfigMap, Secret};

/// Above this many referenced names of one kind in one namespace, one watch of the
/// namespace replaces the watches by name (each of which is a long-lived request).
pub(crate) const NAMESPACE_WATCH_ABOVE: usize = 16;

/// How long a change that adds references waits for their watches' first list before
/// it is handed out anyway.
pub(crate) const FIRST_LIST_WAIT: Duration = Duration::from_secs(1);

/// The names one watch keeps, in one namespace, and whether it has listed.
#[derive(Debug)]
pub(crate) struct Names {
    namespace: String,
    names: Mutex<BTreeSet<String>>,
    listed: AtomicBool,
}

impl Names {
    fn new(namespace: &str, names: BTreeSet<String>) -> Self {
        Self {
            namespace: namespace.to_owned(),
            names: Mutex::new(names),
            listed: AtomicBool::new(false),
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The names, locked: the watch stores objects and the reconciler changes names and
    /// removes objects under this lock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the first list done; `true` if it was the first.
    pub(crate) fn mark_listed(&self) -> bool {
        !self.listed.swap(true, Ordering::AcqRel)
    }

    fn listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }
}

/// What one watch covers of a (kind, namespace): one name, or the whole namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Selector {
    Name(String),
    Namespace,
}

type UnitKey = (RefKind, String, Selector);

#[derive(Debug)]
struct Unit {
    names: Arc<Names>,
    task: JoinHandle<()>,
}

/// The named watches of one config cluster.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    /// The references were computed once every config cluster's referring kinds had
    /// listed.
    computed: bool,
    /// The provider is gone: start nothing more.
    closed: bool,
    units: BTreeMap<UnitKey, Unit>,
}

impl Watches {
    /// Whether the references are known and every watch has listed.
    pub(crate) fn synced(&self) -> bool {
        self.computed && self.units.values().all(|u| u.names.listed())
    }

    /// Aborts every watch (the provider is dropped).
    pub(crate) fn close(&mut self) {
        self.closed = true;
        for unit in self.units.values() {
            unit.task.abort();
        }
    }

    /// How many watches run, by name and by namespace (for tests and logs).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let by_namespace = self
            .units
            .keys()
            .filter(|(_, _, s)| *s == Selector::Namespace)
            .count();
        (self.units.len() - by_namespace, by_namespace)
    }
}

/// Recomputes the references and reconciles every config cluster's watches whenever a
/// referring kind changes; releases the held change once the new watches have listed
/// (at most [`FIRST_LIST_WAIT`]). Runs until the provider is dropped.
pub(crate) async fn reconcile_forever(shared: Arc<Shared>) {
    loop {
        shared.refs_dirty.notified().await;
        let generation = shared.refs_generation();
        let config: Vec<usize> = (0..shared.clusters.len())
            .filter(|&i| shared.clusters[i].config)
            .collect();
        let complete = config
            .iter()
            .all(|&i| shared.clusters[i].referrers_synced());
        let refs = references(&shared.referrers());
        let mut added = Vec::new();
        for &i in &config {
            added.extend(reconcile(&shared, i, &refs, complete));
        }
        // Readiness may hold now (no references at all, or all listed already).
        shared.synced.notify_waiters();
        let deadline = tokio::time::Instant::now() + FIRST_LIST_WAIT;
        loop {
            let listed = shared.synced.notified();
            tokio::pin!(listed);
            listed.as_mut().enable();
            if added.iter().all(|n| n.listed()) {
                break;
            }
            if tokio::time::timeout_at(deadline, listed).await.is_err() {
                tracing::debug!(
                    waiting = added.iter().filter(|n| !n.listed()).count(),
                    "referenced objects not listed within {FIRST_LIST_WAIT:?}; translating without them"
                );
                break;
            }
        }
        shared.release_refs_hold(generation);
    }
}

/// The watches `refs` needs in one cluster, each with its names.
fn wanted(refs: &References) -> BTreeMap<UnitKey, BTreeSet<String>> {
    let mut grouped: BTreeMap<(RefKind, &str), BTreeSet<String>> = BTreeMap::new();
    for Reference {
        kind,
        namespace,
        name,
    } in refs
    {
        grouped
            .entry((*kind, namespace))
            .or_default()
            .insert(name.clone());
    }
    let mut out = BTreeMap::new();
    for ((kind, ns), names) in grouped {
        if names.len() > NAMESPACE_WATCH_ABOVE {
            out.insert((kind, ns.to_owned(), Selector::Namespace), names);
        } else {
            for name in names {
                let one = BTreeSet::from([name.clone()]);
                out.insert((kind, ns.to_owned(), Selector::Name(name)), one);
            }
        }
    }
    out
}

/// Brings cluster `cluster`'s watches in line with `refs`: watches no longer needed are
/// aborted (their objects that are no longer referenced removed from the store), a
/// namespace watch that lost names forgets them, new ones are started. Returns the
/// names of the watches started.
fn reconcile(
    shared: &Arc<Shared>,
    cluster: usize,
    refs: &References,
    complete: bool,
) -> Vec<Arc<Names>> {
    let c = &shared.clusters[cluster];
    let wanted = wanted(refs);
    let referenced = |kind: RefKind, ns: &str, name: &str| {
        refs.contains(&Reference {
            kind,
            namespace: ns.to_owned(),
            name: name.to_owned(),
        })
    };
    let _applying = shared.applying();
    let mut delta = Delta::default();
    let mut watches = c.named();
    if watches.closed {
        return Vec::new();
    }
    let running: Vec<UnitKey> = watches.units.keys().cloned().collect();
    for key in running {
        let (kind, ns, _) = &key;
        let unit = &watches.units[&key];
        let mut names = unit.names.lock();
        // A watch whose names are still all wanted keeps running (a namespace watch that
        // lost names forgets them); one that gained names is started again (the objects
        // it dropped were never kept).
        let keep = wanted.get(&key).is_some_and(|want| want.is_subset(&names));
        let gone: Vec<String> = names
            .iter()
            .filter(|n| !referenced(*kind, ns, n))
            .cloned()
            .collect();
        for name in &gone {
            delta.merge(remove(c, *kind, &(ns.clone(), String::new(), name.clone())));
            names.remove(name);
        }
        if !keep {
            names.clear();
            drop(names);
            if let Some(unit) = watches.units.remove(&key) {
                unit.task.abort();
            }
        }
    }
    let mut added = Vec::new();
    for (key, names) in wanted {
        if watches.units.contains_key(&key) {
            continue;
        }
        let (kind, ns, selector) = &key;
        let names = Arc::new(Names::new(ns, names));
        let task = spawn(shared, cluster, *kind, selector, names.clone());
        added.push(names.clone());
        watches.units.insert(key, Unit { names, task });
    }
    watches.computed |= complete;
    let counts = (watches.units.len(), added.len());
    drop(watches);
    if !added.is_empty() || !delta.objects.is_empty() {
        tracing::debug!(
            cluster = %c.name,
            watches = counts.0,
            started = counts.1,
            removed = delta.objects.len(),
            "referenced Secrets and ConfigMaps"
        );
    }
    shared.record(cluster, delta, false);
    added
}

/// Removes the referenced object at `key` from the cluster's store of `kind`.
fn remove(c: &super::Cluster, kind: RefKind, key: &Key) -> Delta {
    match kind {
        RefKind::Secret => c.stores.secrets.remove(key),
        RefKind::ConfigMap => c.stores.config_maps.remove(key),
    }
}

/// Starts the watch of `names` (one name, or a namespace's names).
fn spawn(
    shared: &Arc<Shared>,
    cluster: usize,
    kind: RefKind,
    selector: &Selector,
    names: Arc<Names>,
) -> JoinHandle<()> {
    let client = shared.clusters[cluster].client.clone();
    let mut config = watcher::Config::default();
    if let Selector::Name(name) = selector {
        config = config.fields(&format!("metadata.name={name}"));
    }
    let ns = names.namespace().to_owned();
    let scope = Scope::Names(names);
    let shared = shared.clone();
    match kind {
        RefKind::Secret => {
            let api: Api<watch::Guard<Secret>> = Api::namespaced(client, &ns);
            tokio::spawn(watch::run(shared, cluster, api, config, scope))
        }
        RefKind::ConfigMap => {
            let api: Api<watch::Guard<ConfigMap>> = Api::namespaced(client, &ns);
            tokio::spawn(watch::run(shared, cluster, api, config, scope))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(kind: RefKind, ns: &str, n: usize) -> References {
        (0..n)
            .map(|i| Reference {
                kind,
                namespace: ns.to_owned(),
                name: format!("s{i:02}"),
            })
            .collect()
    }

    #[test]
    fn one_watch_per_name_up_to_the_limit_then_one_per_namespace() {
        let mut r = refs(RefKind::Secret, "a", NAMESPACE_WATCH_ABOVE);
        r.extend(refs(RefKind::Secret, "b", NAMESPACE_WATCH_ABOVE + 1));
        r.extend(refs(RefKind::ConfigMap, "a", 2));
        let w = wanted(&r);
        let by_ns: Vec<_> = w
            .iter()
            .filter(|((_, _, s), _)| *s == Selector::Namespace)
            .collect();
        assert_eq!(by_ns.len(), 1);
        assert_eq!(by_ns[0].0.1, "b");
        assert_eq!(by_ns[0].1.len(), NAMESPACE_WATCH_ABOVE + 1);
        assert_eq!(w.len(), 1 + NAMESPACE_WATCH_ABOVE + 2);
        assert!(w.iter().all(|((_, _, s), names)| match s {
            Selector::Name(n) => names.len() == 1 && names.contains(n),
            Selector::Namespace => true,
        }));
        let watches = Watches::default();
        assert_eq!(watches.counts(), (0, 0));
        assert!(
            !watches.synced(),
            "not synced before the references are known"
        );
    }
}
