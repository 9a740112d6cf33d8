//! Per-cluster typed object stores, fed by watch events, and the record of what changed.
//!
//! A [`Store`] holds the objects of one kind from one cluster, by key. Watch events are
//! applied as kube-runtime's reflector would (an `Apply`/`Delete` at once; `Init …
//! InitDone` buffered and swapped in at `InitDone`), but every application also says
//! *what changed*, so the provider can tell a route edit (translate again) from an
//! EndpointSlice edit (recompute one Service's endpoints) — and so that a re-list after
//! a 410 that returns the same objects changes nothing at all.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use kube::Resource;
use serde::de::DeserializeOwned;

use crate::status::ResourceRef;
use crate::types::ObjectMeta;

use crate::types::{Check, EndpointSlice, Service};

/// Calls `$m!` once with every configuration kind the provider watches, each as
/// `Type => Variant, store_field, "Kind", optional;` (`store_field` is also the
/// [`ResourceSet`](crate::ResourceSet) field; `optional`: the kind's API may be missing
/// from a cluster, a CRD not installed, and a 404 on its list counts as "synced,
/// empty"). Services and EndpointSlices are listed apart: they come from every cluster.
/// One table, so a new kind is one line here.
macro_rules! with_config_kinds {
    ($m:ident) => {
        $m! {
            crate::types::GatewayClass => GatewayClass, gateway_classes, "GatewayClass", true;
            crate::types::Gateway => Gateway, gateways, "Gateway", false;
            crate::types::ListenerSet => ListenerSet, listener_sets, "ListenerSet", true;
            crate::types::HttpRoute => HttpRoute, http_routes, "HTTPRoute", false;
            crate::types::GrpcRoute => GrpcRoute, grpc_routes, "GRPCRoute", true;
            crate::types::TlsRoute => TlsRoute, tls_routes, "TLSRoute", true;
            crate::types::TcpRoute => TcpRoute, tcp_routes, "TCPRoute", true;
            crate::types::UdpRoute => UdpRoute, udp_routes, "UDPRoute", true;
            crate::types::ReferenceGrant => ReferenceGrant, reference_grants, "ReferenceGrant", true;
            crate::types::Namespace => Namespace, namespaces, "Namespace", false;
            crate::types::Secret => Secret, secrets, "Secret", false;
            crate::types::ConfigMap => ConfigMap, config_maps, "ConfigMap", false;
            crate::types::BackendPolicy => BackendPolicy, backend_policies, "BackendPolicy", true;
            crate::types::TrafficPolicy => TrafficPolicy, traffic_policies, "TrafficPolicy", true;
            crate::types::BackendTrafficPolicy => BackendTrafficPolicy, backend_traffic_policies, "BackendTrafficPolicy", true;
            crate::types::XBackendTrafficPolicy => XBackendTrafficPolicy, x_backend_traffic_policies, "XBackendTrafficPolicy", true;
            crate::types::BackendTlsPolicy => BackendTlsPolicy, backend_tls_policies, "BackendTLSPolicy", true;
            crate::types::ClientTrafficPolicy => ClientTrafficPolicy, client_traffic_policies, "ClientTrafficPolicy", true;
            crate::types::SecurityPolicy => SecurityPolicy, security_policies, "SecurityPolicy", true;
            crate::types::SecurityOverride => SecurityOverride, security_overrides, "SecurityOverride", true;
        }
    };
}
pub(crate) use with_config_kinds;

impl Kind {
    /// Kinds watched only by the names the configuration references (see
    /// [`crate::refs`]), never cluster-wide.
    pub(crate) fn by_reference(self) -> bool {
        matches!(self, Kind::Secret | Kind::ConfigMap)
    }
}

/// A store key: namespace ("" for cluster-scoped kinds), a grouping ("" except for
/// EndpointSlices: their Service's name, so a Service's slices are one range), name.
pub(crate) type Key = (String, String, String);

macro_rules! kinds {
    ($($ty:ty => $kind:ident, $field:ident, $name:literal, $optional:literal;)*) => {
        /// The kinds the provider watches.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub(crate) enum Kind {
            $($kind,)*
            Service,
            EndpointSlice,
        }

        impl Kind {
            /// The configuration kinds (every kind but Services and EndpointSlices).
            pub(crate) const CONFIG: &'static [Kind] = &[$(Kind::$kind,)*];

            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Kind::$kind => $name,)*
                    Kind::Service => "Service",
                    Kind::EndpointSlice => "EndpointSlice",
                }
            }

            /// Kinds whose API may legitimately be missing from a cluster (a CRD not
            /// installed): a 404 on their list counts as "synced, empty".
            pub(crate) fn optional(self) -> bool {
                match self {
                    $(Kind::$kind => $optional,)*
                    Kind::Service | Kind::EndpointSlice => false,
                }
            }
        }

        /// The stores of one cluster, one per kind.
        #[derive(Debug, Default)]
        pub(crate) struct Stores {
            $(pub(crate) $field: Store<$ty>,)*
            pub(crate) services: Store<Service>,
            pub(crate) endpoint_slices: Store<EndpointSlice>,
        }

        impl Stores {
            /// Whether the store of `kind` has had its first full list.
            pub(crate) fn is_synced(&self, kind: Kind) -> bool {
                match kind {
                    $(Kind::$kind => self.$field.is_synced(),)*
                    Kind::Service => self.services.is_synced(),
                    Kind::EndpointSlice => self.endpoint_slices.is_synced(),
                }
            }

            /// Whether the store of the configuration kind named `kind` (as in
            /// manifests) holds `key`; `false` for any other kind.
            pub(crate) fn holds(&self, kind: &str, key: &Key) -> bool {
                match kind {
                    $($name => self.$field.read().contains_key(key),)*
                    _ => false,
                }
            }
        }

        $(impl Watched for $ty {
            const KIND: Kind = Kind::$kind;
            fn store(stores: &Stores) -> &Store<Self> {
                &stores.$field
            }
        })*
    };
}
with_config_kinds!(kinds);

/// What one event changed in a store.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    /// Something other than EndpointSlices changed.
    pub(crate) config: bool,
    /// Services (namespace, name) whose EndpointSlices changed.
    pub(crate) services: Vec<(String, String)>,
    /// Every object added, removed or modified (EndpointSlices included).
    pub(crate) objects: Vec<ResourceRef>,
}

impl Delta {
    /// Adds what `other` changed.
    pub(crate) fn merge(&mut self, other: Delta) {
        self.config |= other.config;
        for s in other.services {
            if !self.services.contains(&s) {
                self.services.push(s);
            }
        }
        self.objects.extend(other.objects);
    }
}

/// A kind the provider watches: where its store is, and how it is keyed. An object
/// that fails its [`Check`] is treated like one that does not fit the type.
pub(crate) trait Watched:
    Resource<DynamicType = ()> + Check + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    const KIND: Kind;
    fn store(stores: &Stores) -> &Store<Self>;
    fn key(&self) -> Key {
        let meta = self.meta();
        (
            meta.namespace.clone().unwrap_or_default(),
            String::new(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

impl Watched for Service {
    const KIND: Kind = Kind::Service;
    fn store(stores: &Stores) -> &Store<Self> {
        &stores.services
    }
}

/// EndpointSlices are keyed by their Service, so a Service's slices are one range.
impl Watched for EndpointSlice {
    const KIND: Kind = Kind::EndpointSlice;
    fn store(stores: &Stores) -> &Store<Self> {
        &stores.endpoint_slices
    }
    fn key(&self) -> Key {
        let meta = &self.metadata;
        let service = crate::types::slice_service(self)
            .cloned()
            .unwrap_or_default();
        (
            meta.namespace.clone().unwrap_or_default(),
            service,
            meta.name.clone().unwrap_or_default(),
        )
    }
}

/// The EndpointSlice store lives outside the macro (its key differs).
impl Stores {
    pub(crate) fn slices_of(&self, ns: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        let lo = (ns.to_owned(), service.to_owned(), String::new());
        let map = self.endpoint_slices.read();
        map.range(lo..)
            .take_while(|((n, s, _), _)| n == ns && s == service)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every Service (namespace, name) that has slices here.
    pub(crate) fn sliced_services(&self) -> Vec<(String, String)> {
        let map = self.endpoint_slices.read();
        let mut out: Vec<(String, String)> = map
            .keys()
            .map(|(ns, svc, _)| (ns.clone(), svc.clone()))
            .collect();
        out.dedup();
        out
    }
}

/// The objects of one kind from one cluster.
#[derive(Debug)]
pub(crate) struct Store<K> {
    map: RwLock<BTreeMap<Key, Arc<K>>>,
    synced: AtomicBool,
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Self {
            map: RwLock::new(BTreeMap::new()),
            synced: AtomicBool::new(false),
        }
    }
}

impl<K: Watched> Store<K> {
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Key, Arc<K>>> {
        // A poisoned lock only means a panic elsewhere mid-write of a plain map.
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Key, Arc<K>>> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub(crate) fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    pub(crate) fn values(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// Applies an added or modified object.
    pub(crate) fn apply(&self, obj: K) -> Delta {
        let key = obj.key();
        let mut delta = Delta::default();
        let mut map = self.write();
        // An EndpointSlice can move between Services (its label changed): drop the old
        // key.
        let moved = locate::<K>(&map, &key.0, &key.2).filter(|old| *old != key);
        if let Some(old_key) = moved {
            map.remove(&old_key);
            note(&mut delta, K::KIND, &old_key);
        }
        let same = map.get(&key).is_some_and(|old| same_version(&**old, &obj));
        if !same {
            map.insert(key.clone(), Arc::new(obj));
            note(&mut delta, K::KIND, &key);
        }
        delta
    }

    /// The stored object with this metadata's namespace and name.
    pub(crate) fn get(&self, meta: &ObjectMeta) -> Option<K> {
        let ns = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        let map = self.read();
        let key = locate::<K>(&map, ns, name)?;
        map.get(&key).map(|v| (**v).clone())
    }

    /// Applies a deletion.
    #[cfg(test)]
    pub(crate) fn delete(&self, obj: &K) -> Delta {
        self.delete_meta(obj.meta())
    }

    /// Applies the deletion of the object with this metadata's namespace and name.
    pub(crate) fn delete_meta(&self, meta: &ObjectMeta) -> Delta {
        let mut delta = Delta::default();
        let ns = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        let mut map = self.write();
        if let Some(key) = locate::<K>(&map, ns, name) {
            map.remove(&key);
            note(&mut delta, K::KIND, &key);
        }
        delta
    }

    /// Replaces the whole content (a completed list), reporting only real differences:
    /// objects that appeared, disappeared or changed resourceVersion.
    pub(crate) fn replace(&self, objects: Vec<K>) -> Delta {
        self.replace_where(objects, |_| true)
    }

    /// Replaces the objects whose keys `covers` (a completed list of a watch that
    /// covers only those: a named watch's one name), leaving the others as they are,
    /// and reports only real differences, as [`replace`](Self::replace) does.
    pub(crate) fn replace_where(&self, objects: Vec<K>, covers: impl Fn(&Key) -> bool) -> Delta {
        let mut fresh: BTreeMap<Key, Arc<K>> = BTreeMap::new();
        for obj in objects {
            fresh.insert(obj.key(), Arc::new(obj));
        }
        let mut delta = Delta::default();
        let mut map = self.write();
        for (key, obj) in &fresh {
            if !map.get(key).is_some_and(|old| same_version(&**old, &**obj)) {
                note(&mut delta, K::KIND, key);
            }
        }
        map.retain(|key, _| {
            let gone = covers(key) && !fresh.contains_key(key);
            if gone {
                note(&mut delta, K::KIND, key);
            }
            !gone
        });
        map.extend(fresh);
        delta
    }

    /// Removes the object at `key`, if stored (a reference that is gone).
    pub(crate) fn remove(&self, key: &Key) -> Delta {
        let mut delta = Delta::default();
        if self.write().remove(key).is_some() {
            note(&mut delta, K::KIND, key);
        }
        delta
    }
}

/// The key of the object `namespace/name` in `map`, if stored: a direct lookup, except
/// for EndpointSlices, whose key also holds their Service (searched within the
/// namespace only).
fn locate<K: Watched>(map: &BTreeMap<Key, Arc<K>>, namespace: &str, name: &str) -> Option<Key> {
    if K::KIND != Kind::EndpointSlice {
        let key = (namespace.to_owned(), String::new(), name.to_owned());
        return map.contains_key(&key).then_some(key);
    }
    let start = (namespace.to_owned(), String::new(), String::new());
    map.range(start..)
        .map(|(k, _)| k)
        .take_while(|(n, _, _)| n == namespace)
        .find(|(_, _, nm)| nm == name)
        .cloned()
}

fn same_version<K: Resource>(a: &K, b: &K) -> bool {
    let (a, b) = (a.meta(), b.meta());
    a.resource_version.is_some() && a.resource_version == b.resource_version && a.uid == b.uid
}

fn note(delta: &mut Delta, kind: Kind, key: &Key) {
    let namespace = (!key.0.is_empty()).then_some(key.0.as_str());
    delta
        .objects
        .push(ResourceRef::new(kind.name(), namespace, &key.2));
    if kind == Kind::EndpointSlice {
        let service = (key.0.clone(), key.1.clone());
        if !delta.services.contains(&service) {
            delta.services.push(service);
        }
    } else {
        delta.config = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, svc: &str, rv: &str) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("ns".to_owned()),
                resource_version: Some(rv.to_owned()),
                labels: Some(
                    [(crate::types::SERVICE_NAME_LABEL.to_owned(), svc.to_owned())].into(),
                ),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".to_owned(),
            endpoints: None,
            ports: None,
        }
    }

    #[test]
    fn slices_group_by_service_and_report_their_service() {
        let stores = Stores::default();
        let d = stores.endpoint_slices.apply(slice("a-1", "a", "1"));
        assert!(!d.config);
        assert_eq!(d.services, vec![("ns".to_owned(), "a".to_owned())]);
        stores.endpoint_slices.apply(slice("a-2", "a", "2"));
        stores.endpoint_slices.apply(slice("b-1", "b", "3"));
        assert_eq!(stores.slices_of("ns", "a").len(), 2);
        assert_eq!(stores.slices_of("ns", "b").len(), 1);
        // The same version again changes nothing.
        assert!(
            stores
                .endpoint_slices
                .apply(slice("a-1", "a", "1"))
                .services
                .is_empty()
        );
        // A slice relabelled to another Service touches both.
        let d = stores.endpoint_slices.apply(slice("a-2", "b", "4"));
        assert_eq!(d.services.len(), 2);
        assert_eq!(stores.slices_of("ns", "a").len(), 1);
        assert_eq!(stores.slices_of("ns", "b").len(), 2);
        let d = stores.endpoint_slices.delete(&slice("b-1", "b", "5"));
        assert_eq!(d.services, vec![("ns".to_owned(), "b".to_owned())]);
    }

    fn secret(ns: &str, name: &str, rv: &str) -> crate::types::Secret {
        crate::types::Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(ns.to_owned()),
                resource_version: Some(rv.to_owned()),
                ..ObjectMeta::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_scoped_list_replaces_only_what_it_covers() {
        let store: Store<crate::types::Secret> = Store::default();
        store.apply(secret("a", "one", "1"));
        store.apply(secret("a", "two", "2"));
        store.apply(secret("b", "one", "3"));
        // A named watch of a/one lists nothing: a/one is gone, the others stay.
        let d = store.replace_where(Vec::new(), |k| k.0 == "a" && k.2 == "one");
        assert_eq!(d.objects.len(), 1);
        assert_eq!(store.read().len(), 2);
        // The same list again changes nothing; a listed object that is unchanged
        // neither.
        assert!(
            store
                .replace_where(Vec::new(), |k| k.2 == "one" && k.0 == "a")
                .objects
                .is_empty()
        );
        let d = store.replace_where(vec![secret("a", "two", "2")], |k| k.0 == "a");
        assert!(d.objects.is_empty() && !d.config);
        let d = store.remove(&("b".to_owned(), String::new(), "one".to_owned()));
        assert!(d.config && store.read().len() == 1);
    }

    #[test]
    fn relist_reports_only_differences() {
        let store: Store<EndpointSlice> = Store::default();
        store.replace(vec![slice("a-1", "a", "1"), slice("b-1", "b", "2")]);
        // Same objects again (a re-list after 410 with nothing changed): no delta.
        let d = store.replace(vec![slice("a-1", "a", "1"), slice("b-1", "b", "2")]);
        assert!(d.services.is_empty() && !d.config);
        // b changed, c appeared, a vanished.
        let d = store.replace(vec![slice("b-1", "b", "7"), slice("c-1", "c", "8")]);
        let mut services: Vec<_> = d.services.into_iter().map(|(_, s)| s).collect();
        services.sort();
        assert_eq!(services, ["a", "b", "c"]);
    }
}
