//! One watch: kube-runtime's `watcher` on one kind in one cluster, applied to that
//! cluster's store, with gatekit's own backoff.
//!
//! kube-runtime's `StreamBackoff` resets on every `Ok` item, and a ListWatch watcher
//! yields `Ok(Init)` before every list attempt, so a LIST that keeps failing is retried
//! at the first backoff step forever. Here the backoff grows on every error and resets
//! only on progress: a completed list (`InitDone`) or a change (`Apply`, `Delete`).
//!
//! Objects are read through [`Guard`] (kube's `DeserializeGuard` plus gatekit's raw
//! pre-pass, [`Check::prepare`](crate::types::Check::prepare)): one object that does not fit
//! gatekit's types (a CRD version newer or older than the `gateway-api` crate's, a
//! field of an unexpected type) does not fail the whole list, which would keep the
//! replica from ever becoming ready. It is skipped with a warning, and if an earlier
//! version of it was valid, that version keeps serving. An object that parses but fails
//! its [`Check`](crate::types::Check) (a policy with invalid values, which a manifest
//! load refuses) is treated the same way.
//!
//! One [`run`] serves both kinds of watch: a cluster-wide one (every kind but Secrets
//! and ConfigMaps; [`Scope::All`]) and a named one (a referenced Secret or ConfigMap,
//! or a namespace's referenced names; [`Scope::Names`]), which differ only in the API
//! (namespaced), the watcher's field selector and which part of the store they keep.

use std::sync::{Arc, MutexGuard};

use futures_util::StreamExt;
use kube::Api;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::watcher::{self, Event};

use super::Shared;
use super::named::Names;
use super::store::{Delta, Key, Kind, Store, Watched};
use crate::backoff::Backoff;
use crate::types::ObjectMeta;

/// What one watch covers of its kind's store.
#[derive(Debug)]
pub(crate) enum Scope {
    /// Every object of the kind, cluster-wide: the store is this watch's alone, and its
    /// first list marks the store synced.
    All,
    /// Referenced names of one namespace (a named watch's one name, or a namespace
    /// watch's names; see [`named`](super::named)): objects of other names are dropped
    /// on receipt, and a completed list replaces only these names' objects.
    Names(Arc<Names>),
}

/// A [`Scope`] held for one store update: the reconciler changes a watch's names under
/// the same lock, so an object it has just removed is never stored again.
enum Admit<'a> {
    All,
    Names(
        &'a Names,
        MutexGuard<'a, std::collections::BTreeSet<String>>,
    ),
}

impl Scope {
    fn lock(&self) -> Admit<'_> {
        match self {
            Scope::All => Admit::All,
            Scope::Names(names) => Admit::Names(names, names.lock()),
        }
    }
}

impl Admit<'_> {
    fn admits(&self, meta: &ObjectMeta) -> bool {
        match self {
            Admit::All => true,
            Admit::Names(names, set) => {
                meta.namespace.as_deref() == Some(names.namespace())
                    && meta.name.as_deref().is_some_and(|n| set.contains(n))
            }
        }
    }

    /// Replaces what this scope covers with a completed list; `true` if it was the
    /// scope's first.
    fn replace<K: Watched>(&self, store: &Store<K>, mut objects: Vec<K>) -> (Delta, bool) {
        match self {
            Admit::All => {
                let delta = store.replace(objects);
                let first = !store.is_synced();
                store.mark_synced();
                (delta, first)
            }
            Admit::Names(names, set) => {
                objects.retain(|o| self.admits(o.meta()));
                let covers = |key: &Key| key.0 == names.namespace() && set.contains(&key.2);
                let delta = store.replace_where(objects, covers);
                (delta, names.mark_listed())
            }
        }
    }
}

/// The annotation `kubectl apply` writes: a JSON copy of the whole object as last
/// applied (often as large as the object itself).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops, at receipt, the metadata nothing in gatekit reads and that can be the larger
/// part of an object: `managedFields` (server-side apply's field owners) and the
/// last-applied annotation. Stored and merged objects are smaller by that much (each
/// is held twice: in its store and in the consumer's kept resources).
fn strip(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Watches `K` in cluster `cluster` through `api` with `config`, keeping the part of
/// the kind's store `scope` says, until aborted or the provider is dropped.
pub(crate) async fn run<K: Watched>(
    shared: Arc<Shared>,
    cluster: usize,
    api: Api<Guard<K>>,
    config: watcher::Config,
    scope: Scope,
) {
    let name = shared.clusters[cluster].name.clone();
    let store = K::store(&shared.clusters[cluster].stores);
    let mut stream = watcher::watcher(api, config).boxed();
    let mut backoff = Backoff::jittered(shared.settings.backoff_min, shared.settings.backoff_max);
    let mut buffer: Vec<K> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(Guard(obj))) => {
                let meta = match &obj {
                    Ok(obj) => obj.meta(),
                    Err(invalid) => &invalid.metadata,
                };
                if !scope.lock().admits(meta) {
                    // Not referenced (a namespace watch's other objects): never stored.
                    continue;
                }
                match accepted(obj) {
                    Ok(mut obj) => {
                        strip(obj.meta_mut());
                        buffer.push(obj);
                    }
                    Err(invalid) => {
                        let (meta, error) = *invalid;
                        invalid_object(&shared, cluster, K::KIND, &meta, &error);
                        if let Some(old) = store.get(&meta) {
                            buffer.push(old);
                        }
                    }
                }
            }
            Ok(Event::InitDone) => {
                let _applying = shared.applying();
                let (delta, first) = scope.lock().replace(store, std::mem::take(&mut buffer));
                backoff.reset();
                tracing::debug!(cluster = %name, kind = K::KIND.name(), count = store.read().len(), "listed");
                shared.record(cluster, delta, first);
            }
            Ok(Event::Apply(Guard(obj))) => {
                backoff.reset();
                match accepted(obj) {
                    Ok(mut obj) => {
                        strip(obj.meta_mut());
                        let _applying = shared.applying();
                        let admit = scope.lock();
                        if admit.admits(obj.meta()) {
                            let delta = store.apply(obj);
                            drop(admit);
                            shared.record(cluster, delta, false);
                        }
                    }
                    Err(invalid) => {
                        if scope.lock().admits(&invalid.0) {
                            invalid_object(&shared, cluster, K::KIND, &invalid.0, &invalid.1);
                        }
                    }
                }
            }
            Ok(Event::Delete(Guard(obj))) => {
                backoff.reset();
                let meta = match &obj {
                    Ok(obj) => obj.meta(),
                    Err(invalid) => &invalid.metadata,
                };
                let _applying = shared.applying();
                let admit = scope.lock();
                if admit.admits(meta) {
                    let delta = store.delete_meta(meta);
                    drop(admit);
                    shared.record(cluster, delta, false);
                }
            }
            Err(error) => {
                if K::KIND.optional() && is_not_found(&error) {
                    // The CRD is not installed: nothing of this kind exists. Not a
                    // failure of the cluster, neither at the first list nor when the
                    // watcher looks again later.
                    if !store.is_synced() {
                        store.mark_synced();
                        shared.record(cluster, Delta::default(), true);
                        tracing::info!(cluster = %name, kind = K::KIND.name(), "API not served by this cluster; treated as empty");
                    }
                    // Look again now and then, in case it gets installed.
                    tokio::time::sleep(shared.settings.backoff_max).await;
                    continue;
                }
                if let (Scope::Names(names), Some(403)) = (&scope, status_code(&error)) {
                    // Not allowed to read a referenced object (RBAC narrowed to some
                    // namespaces): as if it did not exist (translation says "not
                    // found"); neither the cluster's health nor readiness hangs on one
                    // reference someone wrote.
                    if names.mark_listed() {
                        shared.record(cluster, Delta::default(), true);
                    }
                    tracing::warn!(cluster = %name, kind = K::KIND.name(), namespace = names.namespace(), %error, "not allowed to read a referenced object; treated as missing");
                    tokio::time::sleep(shared.settings.backoff_max).await;
                    continue;
                }
                let delay = backoff.next_delay();
                tracing::warn!(cluster = %name, kind = K::KIND.name(), %error, retry_in = ?delay, "watch failed");
                shared.watch_failed(cluster, &error.to_string());
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// An object as gatekit takes it: deserialized and checked, or its metadata and why not
/// (boxed: the rare path).
fn accepted<K: Watched>(obj: Result<K, InvalidObject>) -> Result<K, Box<(ObjectMeta, String)>> {
    match obj {
        Ok(obj) => match obj.check() {
            Ok(()) => Ok(obj),
            Err(problems) => Err(Box::new((
                obj.meta().clone(),
                problems
                    .iter()
                    .map(|e| format!("{}: {}", e.field(), e.reason()))
                    .collect::<Vec<_>>()
                    .join("; "),
            ))),
        },
        Err(invalid) => Err(Box::new((invalid.metadata, invalid.error))),
    }
}

fn invalid_object(shared: &Shared, cluster: usize, kind: Kind, meta: &ObjectMeta, error: &str) {
    let name = format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    );
    tracing::warn!(
        cluster = %shared.clusters[cluster].name,
        kind = kind.name(),
        %name,
        %error,
        "object does not fit gatekit's types or is invalid; skipped (a previous valid version keeps serving)"
    );
    shared.invalid_object(cluster, &format!("{} {name}: {error}", kind.name()));
}

fn is_not_found(error: &watcher::Error) -> bool {
    status_code(error) == Some(404)
}

/// The API server's status code of a failed list or watch start.
fn status_code(error: &watcher::Error) -> Option<u16> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => Some(status.code),
        _ => None,
    }
}

/// An object of kind `K` as read from the API server: typed, or its metadata and why
/// not. Like kube's `DeserializeGuard`, with [`Check::prepare`](crate::types::Check::prepare)
/// run on the raw object first, as the manifest loader does.
#[derive(Clone, Debug)]
pub(crate) struct Guard<K>(pub(crate) Result<K, InvalidObject>);

impl<'de, K: Watched> serde::Deserialize<'de> for Guard<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut raw = serde_json::Value::deserialize(deserializer)?;
        let metadata = |raw: &serde_json::Value| {
            raw.get("metadata")
                .cloned()
                .and_then(|m| serde_json::from_value::<ObjectMeta>(m).ok())
                .unwrap_or_default()
        };
        let problems = K::prepare(&mut raw);
        if !problems.is_empty() {
            let error = problems
                .iter()
                .map(|e| format!("{}: {}", e.field(), e.reason()))
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(Self(Err(InvalidObject {
                error,
                metadata: metadata(&raw),
            })));
        }
        Ok(Self(match serde_path_to_error::deserialize::<_, K>(&raw) {
            Ok(k) => Ok(k),
            Err(e) => Err(InvalidObject {
                error: e.to_string(),
                metadata: metadata(&raw),
            }),
        }))
    }
}

impl<K: kube::Resource> kube::Resource for Guard<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.as_ref().map_or_else(|e| &e.metadata, K::meta)
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0
            .as_mut()
            .map_or_else(|e| &mut e.metadata, K::meta_mut)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{LAST_APPLIED, strip};
    use crate::types::ObjectMeta;

    #[test]
    fn strip_drops_what_nothing_reads_and_keeps_the_rest() {
        let annotations = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        let mut meta = ObjectMeta {
            name: Some("r".to_owned()),
            resource_version: Some("7".to_owned()),
            managed_fields: Some(vec![Default::default()]),
            annotations: Some(annotations(&[(LAST_APPLIED, "{}"), ("team", "a")])),
            ..Default::default()
        };
        strip(&mut meta);
        assert_eq!(meta.managed_fields, None);
        assert_eq!(meta.annotations, Some(annotations(&[("team", "a")])));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        // Nothing left: no empty map either.
        let mut meta = ObjectMeta {
            annotations: Some(annotations(&[(LAST_APPLIED, "{}")])),
            ..Default::default()
        };
        strip(&mut meta);
        assert_eq!(meta.annotations, None);
    }
}
