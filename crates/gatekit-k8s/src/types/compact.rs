//! Services and EndpointSlices as [`ResourceSet`](crate::ResourceSet) keeps them: what
//! translation reads, not the whole Kubernetes object.
//!
//! A configuration brings one or more of each per route, and the file cache and the
//! Kubernetes provider keep them between reloads. As `k8s-openapi` objects they cost
//! 824 bytes (a Service) and 432 bytes plus about 300 per endpoint (an EndpointSlice)
//! before any string, mostly `None` fields, and a labels map of its own for the one
//! `kubernetes.io/service-name` label. [`CompactService`] and [`CompactEndpointSlice`]
//! keep only the fields translation reads (listed on each), built from the parsed,
//! checked object ([`From`]); two objects that differ only in fields not kept are
//! equal, so a change to such a field is no change to translate. A Service's one
//! port and a slice's one port and one endpoint (the common case: one block each, three
//! per route in the shape users have) are kept inline ([`SmallList`]).
//!
//! Every resource kind of a [`ResourceSet`](crate::ResourceSet) is an [`Object`]: its
//! namespace, name and `resourceVersion`, what the loaders and the replica's input
//! generation read of any object.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use gatekit_core::route::FoldBuild;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CLUSTER_LABEL, EndpointSlice, SERVICE_NAME_LABEL, Service, SmallList};
use crate::status::GatewayAddress;

/// What every kept resource says of itself: its namespace, name and `resourceVersion`.
pub trait Object {
    /// `metadata.namespace` (`None` for cluster-scoped kinds).
    fn namespace(&self) -> Option<&str>;
    /// `metadata.name` (empty when missing).
    fn name(&self) -> &str;
    /// `metadata.resourceVersion` (objects read from a cluster have one).
    fn resource_version(&self) -> Option<&str>;
    /// [`name_hash`] of the namespace (`default` when unset) and the name, when the
    /// object keeps it inline (a scan for a few names then compares it first and
    /// reads no other object's name).
    fn name_hash(&self) -> Option<u32> {
        None
    }
}

/// A 32-bit hash of a namespace and a name, kept inline by the compact resources so
/// that a scan of thousands of them for a few names reads no string but the matches'
/// (see the translator's `find_named`). A filter, not a key: equal hashes are
/// confirmed by comparing the names.
pub fn name_hash(namespace: &str, name: &str) -> u32 {
    let h = FoldBuild.hash_one((namespace, name));
    (h >> 32) as u32 ^ h as u32
}

impl<K: kube::Resource> Object for K {
    fn namespace(&self) -> Option<&str> {
        self.meta().namespace.as_deref()
    }

    fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    fn resource_version(&self) -> Option<&str> {
        self.meta().resource_version.as_deref()
    }
}

/// A protocol as written (`TCP`, `UDP`, `SCTP` without an allocation each; any other
/// value, rare, behind one thin pointer, so the type is two words).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Protocol {
    Unset,
    Tcp,
    Udp,
    Sctp,
    // (A thin pointer, where `Box<str>` would be two words.)
    #[allow(clippy::box_collection)]
    Other(Box<String>),
}

impl Protocol {
    fn new(value: Option<&str>) -> Self {
        match value {
            None => Self::Unset,
            Some("TCP") => Self::Tcp,
            Some("UDP") => Self::Udp,
            Some("SCTP") => Self::Sctp,
            Some(other) => Self::Other(Box::new(other.to_owned())),
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Self::Unset => None,
            Self::Tcp => Some("TCP"),
            Self::Udp => Some("UDP"),
            Self::Sctp => Some("SCTP"),
            Self::Other(v) => Some(v.as_str()),
        }
    }
}

fn boxed(value: Option<&String>) -> Option<Box<str>> {
    value.map(|v| v.as_str().into())
}

/// Namespace names, one `Arc` per distinct name for the whole process: every Service
/// and EndpointSlice of a namespace shares it (a `Box<str>` each would be a block per
/// object). Names no object holds any more are dropped when the set has doubled since
/// it was last pruned, so it follows the namespaces in use.
struct Namespaces {
    names: std::collections::HashSet<Arc<str>, gatekit_core::route::FoldBuild>,
    /// The size at which the next insert prunes first.
    prune_at: usize,
}

static NAMESPACES: std::sync::Mutex<Namespaces> = std::sync::Mutex::new(Namespaces {
    names: std::collections::HashSet::with_hasher(gatekit_core::route::FoldBuild),
    prune_at: 64,
});

/// `value` as the process's shared name (see [`Namespaces`]).
fn namespace(value: Option<&String>) -> Option<Arc<str>> {
    let value = value?.as_str();
    // (A poisoned lock: a panic elsewhere while inserting; the set is still whole.)
    let mut set = NAMESPACES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(shared) = set.names.get(value) {
        return Some(shared.clone());
    }
    if set.names.len() >= set.prune_at {
        set.names.retain(|n| Arc::strong_count(n) > 1);
        set.prune_at = (2 * set.names.len()).max(64);
    }
    let shared: Arc<str> = Arc::from(value);
    set.names.insert(shared.clone());
    Some(shared)
}

// === impl CompactService ===

/// A core Service as translation reads it: namespace, name, `resourceVersion`, its
/// ports (name, port, protocol, `appProtocol`, a numeric `targetPort`) and the
/// addresses it is reached at (load-balancer ingress and external IPs; for a Service
/// with neither and of a type that has cluster IPs, those: what a gateway Service's
/// Gateways report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactService {
    /// Shared with every object of the namespace (see [`Namespaces`]).
    namespace: Option<Arc<str>>,
    /// Shared with the translator's indexes and upstreams (no copy of its own).
    name: Arc<str>,
    resource_version: Option<Box<str>>,
    /// Its one port inline (nearly every Service has one).
    ports: SmallList<CompactServicePort>,
    addresses: Box<[GatewayAddress]>,
}

/// A port of a [`CompactService`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactServicePort {
    name: Option<Box<str>>,
    app_protocol: Option<Box<str>>,
    protocol: Protocol,
    port: i32,
    target_port: Option<i32>,
}

impl CompactService {
    /// The name, shared.
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The Service's ports, in its order.
    pub fn ports(&self) -> &[CompactServicePort] {
        &self.ports
    }

    /// The addresses the Service is reached at (see the type's docs), without repeats.
    pub fn addresses(&self) -> &[GatewayAddress] {
        &self.addresses
    }
}

impl Object for CompactService {
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }
}

impl From<&Service> for CompactService {
    fn from(service: &Service) -> Self {
        let meta = &service.metadata;
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .map(|ports| ports.iter().map(CompactServicePort::from).collect())
            .unwrap_or_default();
        Self {
            namespace: namespace(meta.namespace.as_ref()),
            name: meta.name.as_deref().unwrap_or_default().into(),
            resource_version: boxed(meta.resource_version.as_ref()),
            ports,
            addresses: service_addresses(service).into_boxed_slice(),
        }
    }
}

impl From<Service> for CompactService {
    fn from(service: Service) -> Self {
        Self::from(&service)
    }
}

impl CompactServicePort {
    /// `name` (unset for a Service's single unnamed port).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// `port`.
    pub fn port(&self) -> i32 {
        self.port
    }

    /// `protocol` as written (unset means `TCP`).
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_str()
    }

    /// `appProtocol`.
    pub fn app_protocol(&self) -> Option<&str> {
        self.app_protocol.as_deref()
    }

    /// `targetPort` when it is a number (a named one is `None`).
    pub fn target_port(&self) -> Option<i32> {
        self.target_port
    }
}

impl From<&k8s_openapi::api::core::v1::ServicePort> for CompactServicePort {
    fn from(p: &k8s_openapi::api::core::v1::ServicePort) -> Self {
        Self {
            name: boxed(p.name.as_ref()),
            app_protocol: boxed(p.app_protocol.as_ref()),
            protocol: Protocol::new(p.protocol.as_deref()),
            port: p.port,
            target_port: match &p.target_port {
                Some(IntOrString::Int(n)) => Some(*n),
                _ => None,
            },
        }
    }
}

/// The addresses a Service is reached at: load-balancer ingress and external IPs; for
/// a Service with neither and of a type that has cluster IPs, those. Repeats dropped.
fn service_addresses(service: &Service) -> Vec<GatewayAddress> {
    let mut out = Vec::new();
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for i in ingress.into_iter().flatten() {
        if let Some(ip) = i.ip.as_deref().filter(|v| !v.is_empty()) {
            out.push(GatewayAddress::ip(ip));
        }
        if let Some(host) = i.hostname.as_deref().filter(|v| !v.is_empty()) {
            out.push(GatewayAddress::hostname(host));
        }
    }
    if let Some(spec) = service.spec.as_ref() {
        out.extend(spec.external_ips.iter().flatten().map(GatewayAddress::ip));
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if out.is_empty() && kind != "LoadBalancer" && kind != "ExternalName" {
            let ips = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter());
            out.extend(
                ips.filter(|ip| !ip.is_empty() && *ip != "None")
                    .map(GatewayAddress::ip),
            );
        }
    }
    let mut unique: Vec<GatewayAddress> = Vec::with_capacity(out.len());
    for a in out {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    unique
}

// === impl CompactEndpointSlice ===

/// A `discovery.k8s.io/v1` EndpointSlice as translation reads it: namespace, name, its
/// Service (the `kubernetes.io/service-name` label), its cluster (the
/// `gatekit.io/cluster` label the Kubernetes provider sets), whether its addresses are
/// IPs (`addressType` `IPv4` or `IPv6`), its ports (name, protocol, port) and its
/// endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactEndpointSlice {
    /// Shared with every object of the namespace (see [`Namespaces`]).
    namespace: Option<Arc<str>>,
    /// Shared with the translator's indexes and upstreams (no copy of its own).
    name: Arc<str>,
    service: Option<Box<str>>,
    cluster: Option<Box<str>>,
    ip: bool,
    /// [`name_hash`] of the namespace (`default` when unset) and `service`, 0 without
    /// one: a scan for a Service's slices compares it first, without reading
    /// `service`.
    service_hash: u32,
    /// Its one port and one endpoint inline (a slice of one Service port and one
    /// endpoint costs no allocation for either).
    ports: SmallList<CompactSlicePort>,
    endpoints: SmallList<CompactEndpoint>,
}

/// A port of a [`CompactEndpointSlice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactSlicePort {
    name: Option<Box<str>>,
    protocol: Protocol,
    port: Option<i32>,
}

/// An endpoint of a [`CompactEndpointSlice`]: its first address, conditions, zone and
/// hostname.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactEndpoint {
    address: Option<Address>,
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
    /// Zone and hostname, boxed together: often both unset.
    placed: Option<Box<Placed>>,
}

/// An endpoint's `zone` and `hostname`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placed {
    zone: Option<Box<str>>,
    hostname: Option<Box<str>>,
}

/// An endpoint's first address: an IP, or the text that is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Address {
    Ip(IpAddr),
    Invalid(Box<str>),
}

impl CompactEndpointSlice {
    /// The name, shared.
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// [`name_hash`] of the namespace (`default` when unset) and [`service`](Self::service)
    /// (0 without one).
    pub fn service_hash(&self) -> u32 {
        self.service_hash
    }

    /// The cluster it was read from (its `gatekit.io/cluster` label).
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The same slice with `cluster` as its cluster (what the Kubernetes provider
    /// labels its slices with).
    #[must_use]
    pub fn with_cluster(mut self, cluster: &str) -> Self {
        self.cluster = Some(cluster.into());
        self
    }

    /// Whether its `addressType` is `IPv4` or `IPv6` (`FQDN` slices are not read).
    pub fn is_ip(&self) -> bool {
        self.ip
    }

    /// Its ports (none: hand-written manifests).
    pub fn ports(&self) -> &[CompactSlicePort] {
        &self.ports
    }

    /// Its endpoints, in its order.
    pub fn endpoints(&self) -> &[CompactEndpoint] {
        &self.endpoints
    }
}

impl Object for CompactEndpointSlice {
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn resource_version(&self) -> Option<&str> {
        None
    }
}

impl From<&EndpointSlice> for CompactEndpointSlice {
    fn from(slice: &EndpointSlice) -> Self {
        let meta = &slice.metadata;
        let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key));
        let ns = meta.namespace.as_deref().unwrap_or("default");
        Self {
            service_hash: label(SERVICE_NAME_LABEL).map_or(0, |s| name_hash(ns, s)),
            namespace: namespace(meta.namespace.as_ref()),
            name: meta.name.as_deref().unwrap_or_default().into(),
            service: boxed(label(SERVICE_NAME_LABEL)),
            cluster: boxed(label(CLUSTER_LABEL)),
            ip: slice.address_type == "IPv4" || slice.address_type == "IPv6",
            ports: slice
                .ports
                .iter()
                .flatten()
                .map(|p| CompactSlicePort {
                    name: boxed(p.name.as_ref()),
                    protocol: Protocol::new(p.protocol.as_deref()),
                    port: p.port,
                })
                .collect(),
            endpoints: slice
                .endpoints
                .iter()
                .flatten()
                .map(|ep| {
                    let c = ep.conditions.as_ref();
                    CompactEndpoint {
                        address: ep.addresses.first().map(|a| match a.parse() {
                            Ok(ip) => Address::Ip(ip),
                            Err(_) => Address::Invalid(a.as_str().into()),
                        }),
                        ready: c.and_then(|c| c.ready),
                        serving: c.and_then(|c| c.serving),
                        terminating: c.and_then(|c| c.terminating),
                        placed: (ep.zone.is_some() || ep.hostname.is_some()).then(|| {
                            Box::new(Placed {
                                zone: boxed(ep.zone.as_ref()),
                                hostname: boxed(ep.hostname.as_ref()),
                            })
                        }),
                    }
                })
                .collect(),
        }
    }
}

impl From<EndpointSlice> for CompactEndpointSlice {
    fn from(slice: EndpointSlice) -> Self {
        Self::from(&slice)
    }
}

impl CompactSlicePort {
    /// `name` (unset: the Service's single unnamed port).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// `protocol` as written (unset means `TCP`).
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_str()
    }

    /// `port`.
    pub fn port(&self) -> Option<i32> {
        self.port
    }
}

impl CompactEndpoint {
    /// The first of its addresses: `Ok` an IP, `Err` the text when it is not one;
    /// `None` when it has no address.
    pub fn address(&self) -> Option<Result<IpAddr, &str>> {
        self.address.as_ref().map(|a| match a {
            Address::Ip(ip) => Ok(*ip),
            Address::Invalid(text) => Err(&**text),
        })
    }

    /// `conditions.ready`.
    pub fn ready(&self) -> Option<bool> {
        self.ready
    }

    /// `conditions.serving`.
    pub fn serving(&self) -> Option<bool> {
        self.serving
    }

    /// `conditions.terminating`.
    pub fn terminating(&self) -> Option<bool> {
        self.terminating
    }

    /// `zone`.
    pub fn zone(&self) -> Option<&str> {
        self.placed.as_ref()?.zone.as_deref()
    }

    /// `hostname`.
    pub fn hostname(&self) -> Option<&str> {
        self.placed.as_ref()?.hostname.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> CompactService {
        let s: Service = serde_norway::from_str(yaml).unwrap();
        CompactService::from(&s)
    }

    fn slice(yaml: &str) -> CompactEndpointSlice {
        let s: EndpointSlice = serde_norway::from_str(yaml).unwrap();
        CompactEndpointSlice::from(&s)
    }

    const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: apps
  resourceVersion: "42"
  labels: { app: web }
  annotations: { note: x }
spec:
  type: ClusterIP
  clusterIP: 10.96.0.7
  selector: { app: web }
  ports:
  - { name: http, port: 80, targetPort: 8080, appProtocol: kubernetes.io/h2c }
  - { name: dns, port: 53, protocol: UDP, targetPort: dns }
  - { port: 9000, protocol: SCTP }
  - { port: 9001, protocol: Weird }
"#;

    #[test]
    fn a_service_keeps_what_translation_reads() {
        let s = service(SERVICE);
        assert_eq!(
            (s.namespace(), s.name(), s.resource_version()),
            (Some("apps"), "web", Some("42"))
        );
        let ports: Vec<_> = s
            .ports()
            .iter()
            .map(|p| {
                (
                    p.name(),
                    p.port(),
                    p.protocol(),
                    p.app_protocol(),
                    p.target_port(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                (
                    Some("http"),
                    80,
                    None,
                    Some("kubernetes.io/h2c"),
                    Some(8080)
                ),
                (Some("dns"), 53, Some("UDP"), None, None),
                (None, 9000, Some("SCTP"), None, None),
                (None, 9001, Some("Weird"), None, None),
            ]
        );
        // A ClusterIP Service without ingress or external IPs: its cluster IP.
        assert_eq!(s.addresses(), [GatewayAddress::ip("10.96.0.7")]);
    }

    #[test]
    fn a_service_is_reached_at_its_ingress_then_external_ips_without_repeats() {
        let s = service(
            r#"
metadata: { name: gw }
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.1
  externalIPs: [192.0.2.1, 192.0.2.9]
status:
  loadBalancer:
    ingress: [{ ip: 192.0.2.9 }, { hostname: lb.example.com }]
"#,
        );
        assert_eq!(
            s.addresses(),
            [
                GatewayAddress::ip("192.0.2.9"),
                GatewayAddress::hostname("lb.example.com"),
                GatewayAddress::ip("192.0.2.1"),
            ]
        );
        let pending =
            service("metadata: { name: gw }\nspec: { type: LoadBalancer, clusterIP: 10.96.0.1 }\n");
        assert!(pending.addresses().is_empty());
    }

    #[test]
    fn fields_translation_does_not_read_are_no_difference() {
        let unread = SERVICE
            .replace("app: web }\n  annotations", "app: other }\n  annotations")
            .replace("note: x", "note: y")
            .replace("selector: { app: web }", "selector: { app: api }");
        assert_eq!(service(SERVICE), service(&unread));
        let read = SERVICE.replace("targetPort: 8080", "targetPort: 8081");
        assert_ne!(service(SERVICE), service(&read));
    }

    #[test]
    fn the_kept_forms_are_a_few_words() {
        // What a list moves per object when a file's chunk is spliced in before it
        // (the `k8s-openapi` objects: 824 and 432 bytes), with one port and one
        // endpoint inline (before: 80 and 104 bytes, and a block of 72 for the
        // Service's port, blocks of 48 and 64 for the slice's port and endpoint).
        let word = std::mem::size_of::<usize>();
        assert!(std::mem::size_of::<CompactService>() <= 16 * word);
        assert!(std::mem::size_of::<CompactEndpointSlice>() <= 19 * word);
        assert!(std::mem::size_of::<CompactEndpoint>() <= 5 * word);
        assert!(std::mem::size_of::<CompactSlicePort>() <= 5 * word);
    }

    #[test]
    fn one_port_and_one_endpoint_are_inline() {
        let s = service(
            "metadata: { name: web, namespace: apps }
spec: { ports: [{ port: 80 }] }
",
        );
        assert!(matches!(s.ports, SmallList::One(ref p) if p.port() == 80));
        let sl = slice(
            "metadata: { name: web-1, namespace: apps }
addressType: IPv4
ports: [{ port: 8080 }]
endpoints: [{ addresses: [10.0.0.1] }]
",
        );
        assert!(matches!(sl.ports, SmallList::One(_)));
        assert!(matches!(sl.endpoints, SmallList::One(ref e) if e.zone().is_none()));
        // Objects of one namespace share its name.
        let ns = |o: &dyn Object| o.namespace().map(str::as_ptr);
        assert_eq!(ns(&s), ns(&sl));
        assert_eq!(ns(&s), ns(&service(SERVICE)));
    }

    const SLICE: &str = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-x1
  namespace: apps
  labels: { kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: x }
addressType: IPv6
ports: [{ name: http, port: 8080 }, { name: dns, port: 5353, protocol: UDP }, { name: none }]
endpoints:
- addresses: ["2001:db8::1", "2001:db8::2"]
  conditions: { ready: false, serving: true, terminating: true }
  zone: z1
  hostname: web-0
  nodeName: n1
  targetRef: { kind: Pod, name: web-0 }
- addresses: ["not-an-ip"]
- addresses: []
"#;

    #[test]
    fn a_slice_keeps_what_translation_reads() {
        let s = slice(SLICE);
        assert_eq!((s.namespace(), s.name()), (Some("apps"), "web-x1"));
        assert_eq!(
            (s.service(), s.cluster(), s.is_ip()),
            (Some("web"), None, true)
        );
        let ports: Vec<_> = s
            .ports()
            .iter()
            .map(|p| (p.name(), p.protocol(), p.port()))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("http"), None, Some(8080)),
                (Some("dns"), Some("UDP"), Some(5353)),
                (Some("none"), None, None),
            ]
        );
        let [first, second, third] = s.endpoints() else {
            panic!("three endpoints: {:?}", s.endpoints());
        };
        assert_eq!(first.address(), Some(Ok("2001:db8::1".parse().unwrap())));
        assert_eq!(
            (first.ready(), first.serving(), first.terminating()),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(
            (first.zone(), first.hostname()),
            (Some("z1"), Some("web-0"))
        );
        assert_eq!(second.address(), Some(Err("not-an-ip")));
        assert_eq!(
            (second.ready(), second.serving(), second.terminating()),
            (None, None, None)
        );
        assert_eq!(third.address(), None);

        let labelled = s.clone().with_cluster("east");
        assert_eq!(labelled.cluster(), Some("east"));
        assert_ne!(labelled, s);
        let fqdn = slice(&SLICE.replace("addressType: IPv6", "addressType: FQDN"));
        assert!(!fqdn.is_ip());
        let read = slice(&SLICE.replace("zone: z1", "zone: z2"));
        assert_ne!(read, s);
        let unread = slice(&SLICE.replace("nodeName: n1", "nodeName: n2"));
        assert_eq!(unread, s);
    }
}
