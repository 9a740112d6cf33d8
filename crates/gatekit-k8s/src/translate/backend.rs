//! Backend resolution: Services, ReferenceGrants, EndpointSlices, BackendPolicies.
//!
//! EndpointSlices are joined to a Service by the `kubernetes.io/service-name` label in
//! the Service's namespace. A backendRef names a Service *port number*; the Service port
//! with that number gives a port name (empty for a single unnamed port), and each slice's
//! port with that name and protocol gives the endpoints' port (it may differ per slice).
//! A slice without ports (hand-written manifests) falls back to the Service port's
//! numeric `targetPort`, or the port itself. `FQDN` slices are ignored (no defined
//! semantics; kube-proxy ignores them too). Conditions map as the spec and kube-proxy
//! read them: `ready` (unset = true), `serving` (unset = ready), `terminating`
//! (unset = false); terminating-but-serving is [`EndpointState::Terminating`],
//! ready is [`EndpointState::Ready`], anything else [`EndpointState::NotReady`]. An
//! address present in two slices (during rebalancing) is kept once, in its best state.
//! A slice labelled [`CLUSTER_LABEL`](crate::types::CLUSTER_LABEL) (the Kubernetes provider labels the slices of each
//! cluster it watches) gives its endpoints that cluster, for locality-aware balancing.
//!
//! Scopes: a backendRef to another namespace needs a ReferenceGrant there; with
//! [`TranslateOptions::global_namespaces`](super::TranslateOptions::global_namespaces)
//! set, it must also point into one of those namespaces (see there).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use gatekit_core::{ConfigError, Endpoint, EndpointState};

use super::policy::{Attachment, by_age, invalid, service_ancestor};
use super::{AppProtocol, UpstreamSpec};
use crate::manifest::ResourceSet;
use crate::status::{ResourceRef, ResourceStatus, SharedNames, SharedParents, reason};
use crate::types::compact::CompactServicePort;
use crate::types::{
    APP_PROTOCOL_H2C, APP_PROTOCOL_WS, BackendPolicySpec, CompactEndpointSlice, CompactService,
    Namespace, Object, ReferenceGrant, Secret,
};

/// Backend names that start with this never resolve: translation gives them to
/// backendRefs it refused, so their share of traffic answers 500. Never register a
/// backend under such a name.
pub const INVALID_BACKEND_PREFIX: &str = "!invalid:";

/// The backend name of a Service port: `"<namespace>/<service>:<port>"`.
pub fn backend_name(namespace: &str, service: &str, port: u16) -> String {
    format!("{namespace}/{service}:{port}")
}

/// The backend name of a Service's UDP port: `"<namespace>/<service>:<port>/udp"`
/// (a Service may use one port number for TCP and UDP, as DNS does).
pub fn udp_backend_name(namespace: &str, service: &str, port: u16) -> String {
    format!("{namespace}/{service}:{port}/udp")
}

/// A backendRef that translation refused: why, for `ResolvedRefs`.
#[derive(Clone, Debug)]
pub(crate) struct Unresolved {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// A resolved Service port, to be turned into an upstream if the route is attached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Wanted {
    /// Shared with the route's other names (see `status::SharedNames`) and with the
    /// [`Translator`](super::Translator)'s entry for the upstream.
    pub(crate) namespace: Arc<str>,
    pub(crate) service: Arc<str>,
    pub(crate) port: u16,
    pub(crate) grpc: bool,
    /// A BackendTLSPolicy covers the port: the upstream speaks TLS.
    pub(crate) tls: bool,
    /// The Secret (namespace, name) of the client certificate presented over that TLS
    /// (set per Gateway when the route is attached; see `backend_tls.rs`). Boxed: kept
    /// in every route's uses and rarely set.
    pub(crate) client: Option<Box<(String, String)>>,
    /// Used by a TLSRoute, TCPRoute or UDPRoute: bytes pass through, the port's
    /// `appProtocol` does not matter.
    pub(crate) stream: bool,
    /// A UDP Service port (UDPRoute): its upstream is named [`udp_backend_name`].
    pub(crate) udp: bool,
}

impl Wanted {
    /// The name of the upstream it becomes (for routes of Gateways presenting no
    /// client certificate; see `backend_tls::client_backend_name`).
    pub(crate) fn upstream_name(&self) -> String {
        if self.udp {
            udp_backend_name(&self.namespace, &self.service, self.port)
        } else {
            backend_name(&self.namespace, &self.service, self.port)
        }
    }
}

/// What a backendRef-shaped reference says, defaults not yet applied.
pub(crate) struct RefSpec<'a> {
    pub(crate) group: Option<&'a str>,
    pub(crate) kind: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) port: Option<i32>,
}

/// Services looked up on demand, by (namespace, name); `None`: not there.
type LazyServices<'a> = RefCell<HashMap<(String, String), Option<&'a CompactService>>>;

/// Indexed resources plus what translation accumulates.
pub(crate) struct Context<'a> {
    pub(crate) resources: &'a ResourceSet,
    services: HashMap<(&'a str, &'a str), &'a CompactService>,
    /// A partial context (the incremental [`Translator`](super::Translator)) indexes
    /// no Services up front: it looks each one up when asked, once.
    lazy_services: Option<LazyServices<'a>>,
    namespaces: HashMap<&'a str, &'a Namespace>,
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    grants: HashMap<&'a str, Vec<&'a ReferenceGrant>>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a CompactEndpointSlice>>,
    policies: HashMap<(String, String), BackendPolicySpec>,
    /// The name of the BackendPolicy attached to each Service.
    policy_owners: HashMap<(String, String), String>,
    /// TrafficPolicy values by target (see `policy.rs`).
    pub(crate) traffic: HashMap<super::policy::TargetKey, super::policy::Claimed>,
    /// BackendTrafficPolicy values by target, with the policy's `namespace/name`.
    pub(crate) btp: HashMap<super::policy::TargetKey, (String, crate::types::btp::BtpValues)>,
    /// BackendTrafficPolicy `loadBalancer`/`healthCheck` settings by Service (namespace,
    /// name), with the policy (`namespace/name`) that set each field.
    pub(crate) btp_upstreams: HashMap<(String, String), super::policy::ClaimedUpstream>,
    /// XBackendTrafficPolicy settings by Service (namespace, name).
    pub(crate) x_policies: HashMap<(String, String), super::session::ServiceSettings>,
    /// Names of rate limits from `Global` BackendTrafficPolicies.
    pub(crate) global_rate_limits: std::collections::BTreeSet<String>,
    /// BackendTLSPolicies and Gateway client certificates (see `backend_tls.rs`).
    pub(crate) tls: super::backend_tls::TlsMaps,
    /// SecurityPolicies and SecurityOverrides (see `access.rs`).
    pub(crate) access: super::access::AccessMaps,
    global_namespaces: &'a [String],
    pub(crate) errors: Vec<ConfigError>,
    /// Route parent status lists, shared (see [`SharedParents`]).
    pub(crate) parents: SharedParents,
    /// Route namespaces, shared (see [`SharedNames`]).
    pub(crate) namespace_names: SharedNames,
}

/// What the policy passes leave in a [`Context`] for routes and upstreams to read:
/// kept by the incremental [`Translator`](super::Translator) between calls.
#[derive(Default)]
pub(crate) struct PolicyMaps {
    policies: HashMap<(String, String), BackendPolicySpec>,
    policy_owners: HashMap<(String, String), String>,
    traffic: HashMap<super::policy::TargetKey, super::policy::Claimed>,
    btp: HashMap<super::policy::TargetKey, (String, crate::types::btp::BtpValues)>,
    btp_upstreams: HashMap<(String, String), super::policy::ClaimedUpstream>,
    x_policies: HashMap<(String, String), super::session::ServiceSettings>,
    tls: super::backend_tls::TlsMaps,
    access: super::access::AccessMaps,
}

/// The metadata translation reads, of a parsed object (`ObjectMeta`) or of a kept
/// HTTPRoute ([`CompactMeta`](crate::types::CompactMeta)).
pub(crate) trait MetaView {
    fn namespace_of(&self) -> Option<&str>;
    fn name_of(&self) -> Option<&str>;
    fn generation_of(&self) -> Option<i64>;
    fn created_at(&self) -> Option<&crate::types::Time>;
    fn labels_of(&self) -> Option<&std::collections::BTreeMap<String, String>>;
}

impl MetaView for crate::types::ObjectMeta {
    fn namespace_of(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
    fn name_of(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn generation_of(&self) -> Option<i64> {
        self.generation
    }
    fn created_at(&self) -> Option<&crate::types::Time> {
        self.creation_timestamp.as_ref()
    }
    fn labels_of(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.labels.as_ref()
    }
}

impl MetaView for crate::types::CompactMeta {
    fn namespace_of(&self) -> Option<&str> {
        self.namespace()
    }
    fn name_of(&self) -> Option<&str> {
        Some(self.name())
    }
    fn generation_of(&self) -> Option<i64> {
        self.generation()
    }
    fn created_at(&self) -> Option<&crate::types::Time> {
        self.creation_timestamp()
    }
    fn labels_of(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.labels()
    }
}

pub(crate) fn ns_of(meta: &(impl MetaView + ?Sized)) -> &str {
    meta.namespace_of().unwrap_or("default")
}

pub(crate) fn name_of(meta: &(impl MetaView + ?Sized)) -> &str {
    meta.name_of().unwrap_or("")
}

pub(crate) fn created_of(meta: &(impl MetaView + ?Sized)) -> i64 {
    meta.created_at().map_or(0, |t| t.0.as_second())
}

impl<'a> Context<'a> {
    pub(crate) fn new(resources: &'a ResourceSet, global_namespaces: &'a [String]) -> Self {
        let mut cx = Self::partial(resources, global_namespaces);
        cx.lazy_services = None;
        for s in &resources.services {
            cx.services
                .insert((s.namespace().unwrap_or("default"), s.name()), s);
        }
        for s in &resources.endpoint_slices {
            if let Some(svc) = s.service() {
                cx.slices
                    .entry((s.namespace().unwrap_or("default"), svc))
                    .or_default()
                    .push(s);
            }
        }
        cx
    }

    /// A context that indexes Namespaces, Secrets and ReferenceGrants (few) but
    /// neither Services (looked up on demand) nor EndpointSlices (see
    /// [`upstream`](Self::upstream)): what the incremental path needs for a handful
    /// of routes among thousands.
    pub(crate) fn partial(resources: &'a ResourceSet, global_namespaces: &'a [String]) -> Self {
        let mut cx = Self {
            resources,
            global_namespaces,
            services: HashMap::new(),
            lazy_services: Some(RefCell::new(HashMap::new())),
            namespaces: HashMap::new(),
            secrets: HashMap::new(),
            grants: HashMap::new(),
            slices: HashMap::new(),
            policies: HashMap::new(),
            x_policies: HashMap::new(),
            policy_owners: HashMap::new(),
            traffic: HashMap::new(),
            btp: HashMap::new(),
            btp_upstreams: HashMap::new(),
            global_rate_limits: std::collections::BTreeSet::new(),
            tls: super::backend_tls::TlsMaps::default(),
            access: super::access::AccessMaps::default(),
            errors: Vec::new(),
            parents: SharedParents::default(),
            namespace_names: SharedNames::default(),
        };
        for n in &resources.namespaces {
            cx.namespaces.insert(name_of(&n.metadata), n);
        }
        for s in &resources.secrets {
            cx.secrets
                .insert((ns_of(&s.metadata), name_of(&s.metadata)), s);
        }
        for g in &resources.reference_grants {
            cx.grants.entry(ns_of(&g.metadata)).or_default().push(g);
        }
        cx
    }

    /// Takes what the policy passes left (for the next call's [`restore`](Self::restore)).
    pub(crate) fn take_policy_maps(&mut self) -> PolicyMaps {
        PolicyMaps {
            policies: std::mem::take(&mut self.policies),
            policy_owners: std::mem::take(&mut self.policy_owners),
            traffic: std::mem::take(&mut self.traffic),
            btp: std::mem::take(&mut self.btp),
            btp_upstreams: std::mem::take(&mut self.btp_upstreams),
            x_policies: std::mem::take(&mut self.x_policies),
            tls: self.take_tls_maps(),
            access: std::mem::take(&mut self.access),
        }
    }

    /// Puts back what [`take_policy_maps`](Self::take_policy_maps) took, instead of
    /// running the policy passes again.
    pub(crate) fn restore_policy_maps(&mut self, maps: PolicyMaps) {
        self.policies = maps.policies;
        self.policy_owners = maps.policy_owners;
        self.traffic = maps.traffic;
        self.btp = maps.btp;
        self.btp_upstreams = maps.btp_upstreams;
        self.x_policies = maps.x_policies;
        self.restore_tls_maps(maps.tls);
        self.access = maps.access;
    }

    /// The Service `ns/name`, if it exists.
    pub(crate) fn service(&self, ns: &str, name: &str) -> Option<&'a CompactService> {
        let Some(cache) = &self.lazy_services else {
            return self.services.get(&(ns, name)).copied();
        };
        let key = (ns.to_owned(), name.to_owned());
        if let Some(hit) = cache.borrow().get(&key) {
            return *hit;
        }
        // The last one, as the full index keeps it.
        let found = self.resources.services.iter().rev().find(|s| {
            let n = s.name().as_bytes();
            n.last() == name.as_bytes().last()
                && n == name.as_bytes()
                && s.namespace().unwrap_or("default") == ns
        });
        cache.borrow_mut().insert(key, found);
        found
    }

    /// The EndpointSlices of Service `ns/name`, in resource order (a full context only;
    /// a partial one has none indexed).
    pub(crate) fn slices_of<'s>(
        &'s self,
        ns: &'s str,
        name: &'s str,
    ) -> &'s [&'a CompactEndpointSlice] {
        self.slices
            .get(&(ns, name))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Labels of a namespace; a namespace without an object has only
    /// `kubernetes.io/metadata.name`.
    pub(crate) fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .get(ns)
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        labels
            .entry(crate::types::NAMESPACE_NAME_LABEL.to_owned())
            .or_insert_with(|| ns.to_owned());
        labels
    }

    pub(crate) fn secret(&self, ns: &str, name: &str) -> Option<&'a Secret> {
        self.secrets.get(&(ns, name)).copied()
    }

    /// The bytes under `ca.crt` (a CA bundle, PEM) of the ConfigMap (`data`, then
    /// `binaryData`) or Secret (`stringData`, then `data`) `ns/name`, as a
    /// `caCertificateRefs` entry of kind `kind` names it; `Ok(None)` when it has no
    /// `ca.crt`, an error message when the object is missing. Other kinds: the caller
    /// refuses them first.
    pub(crate) fn ca_pem(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        const CA_KEY: &str = "ca.crt";
        let not_found = || format!("{kind} {ns}/{name} not found");
        if kind == "ConfigMap" {
            let cm = self
                .resources
                .config_maps
                .iter()
                .find(|c| ns_of(&c.metadata) == ns && name_of(&c.metadata) == name)
                .ok_or_else(not_found)?;
            let text = cm.data.as_ref().and_then(|d| d.get(CA_KEY));
            let binary = cm.binary_data.as_ref().and_then(|d| d.get(CA_KEY));
            Ok(text
                .map(|s| s.as_bytes().to_vec())
                .or_else(|| binary.map(|b| b.0.clone())))
        } else {
            let secret = self.secret(ns, name).ok_or_else(not_found)?;
            let text = secret.string_data.as_ref().and_then(|d| d.get(CA_KEY));
            let binary = secret.data.as_ref().and_then(|d| d.get(CA_KEY));
            Ok(text
                .map(|s| s.as_bytes().to_vec())
                .or_else(|| binary.map(|b| b.0.clone())))
        }
    }

    /// Whether a ReferenceGrant in `to_ns` lets `from_kind` objects in `from_ns`
    /// reference the `to_group`/`to_kind` object `to_name`. The grant's `from.group` is
    /// the kind's: `gateway.envoyproxy.io` for a `SecurityPolicy`, `gatekit.io` for a
    /// `SecurityOverride`, the Gateway API group for the others.
    pub(crate) fn grant_allows(
        &self,
        from_kind: &str,
        from_ns: &str,
        to_group: &str,
        to_kind: &str,
        to_ns: &str,
        to_name: &str,
    ) -> bool {
        let from_group = match from_kind {
            "SecurityPolicy" => crate::types::btp::ENVOY_GATEWAY_GROUP,
            "SecurityOverride" => crate::types::GATEKIT_GROUP,
            _ => crate::types::GATEWAY_GROUP,
        };
        self.grants.get(to_ns).is_some_and(|grants| {
            grants.iter().any(|g| {
                g.spec
                    .from
                    .iter()
                    .any(|f| f.group == from_group && f.kind == from_kind && f.namespace == from_ns)
                    && g.spec.to.iter().any(|t| {
                        t.group == to_group
                            && t.kind == to_kind
                            && t.name.as_deref().is_none_or(|n| n == to_name)
                    })
            })
        })
    }

    /// Resolves a backendRef of a `route_kind` in `route_ns` to a Service port that
    /// gatekit speaks HTTP to.
    pub(crate) fn resolve(
        &self,
        route_kind: &str,
        route_ns: &str,
        r: &RefSpec<'_>,
        grpc: bool,
    ) -> Result<Wanted, Unresolved> {
        let (ns, service, sp) = self.resolve_port(route_kind, route_ns, r, "TCP")?;
        let port = sp.port();
        let tls = match self.backend_tls(ns, r.name, sp) {
            Some(Err(why)) => {
                return Err(Unresolved {
                    reason: super::backend_tls::INVALID_BACKEND_TLS_POLICY,
                    message: format!(
                        "Service {ns}/{} port {port} is covered by a BackendTLSPolicy that cannot be used ({why}); its traffic is refused, never sent in cleartext",
                        r.name
                    ),
                });
            }
            Some(Ok(_)) => true,
            None => false,
        };
        if tls {
            if let Err(value) = super::backend_tls::tls_app_protocol(sp.app_protocol(), grpc) {
                return Err(Unresolved {
                    reason: reason::UNSUPPORTED_PROTOCOL,
                    message: format!(
                        "Service {ns}/{} port {port} has appProtocol {value:?}, which gatekit does not speak over TLS (served with a BackendTLSPolicy: none, http, https, h2c, kubernetes.io/h2c, grpc, kubernetes.io/ws, kubernetes.io/wss)",
                        r.name
                    ),
                });
            }
        } else if let Err(value) = app_protocol(sp.app_protocol(), grpc) {
            return Err(Unresolved {
                reason: reason::UNSUPPORTED_PROTOCOL,
                message: format!(
                    "Service {ns}/{} port {port} has appProtocol {value:?}, which gatekit does not speak to backends (served: none, http, h2c, kubernetes.io/h2c, grpc, kubernetes.io/ws; https and kubernetes.io/wss with a BackendTLSPolicy); a backend that asks for TLS is refused rather than sent cleartext",
                    r.name
                ),
            });
        }
        Ok(Wanted {
            namespace: self.namespace_names.get(ns),
            // (The Service's own name, shared: no copy per reference.)
            service: service.name_arc().clone(),
            port: u16::try_from(port).unwrap_or(0),
            grpc,
            tls,
            client: None,
            stream: false,
            udp: false,
        })
    }

    /// Resolves a backendRef of a stream route (TLSRoute, TCPRoute: a `TCP` Service
    /// port; UDPRoute, `udp`: a `UDP` one). Bytes pass through, so the port's
    /// `appProtocol` does not matter.
    pub(crate) fn resolve_stream(
        &self,
        route_kind: &str,
        route_ns: &str,
        r: &RefSpec<'_>,
        udp: bool,
    ) -> Result<Wanted, Unresolved> {
        let transport = if udp { "UDP" } else { "TCP" };
        let (ns, service, sp) = self.resolve_port(route_kind, route_ns, r, transport)?;
        Ok(Wanted {
            namespace: self.namespace_names.get(ns),
            // (The Service's own name, shared: no copy per reference.)
            service: service.name_arc().clone(),
            port: u16::try_from(sp.port()).unwrap_or(0),
            grpc: false,
            tls: false,
            client: None,
            stream: true,
            udp,
        })
    }

    /// The Service port a backendRef names (kind, scopes, ReferenceGrant, Service,
    /// port number with `transport` protocol), with the Service's namespace.
    fn resolve_port<'r>(
        &self,
        route_kind: &str,
        route_ns: &'r str,
        r: &RefSpec<'r>,
        transport: &str,
    ) -> Result<(&'r str, &'a CompactService, &'a CompactServicePort), Unresolved> {
        let group = r.group.unwrap_or("");
        let kind = r.kind.unwrap_or("Service");
        if !group.is_empty() || kind != "Service" {
            return Err(Unresolved {
                reason: reason::INVALID_KIND,
                message: format!(
                    "backendRef kind {group}/{kind} is not supported (only core Services)"
                ),
            });
        }
        let ns = r.namespace.unwrap_or(route_ns);
        if ns != route_ns
            && !self.global_namespaces.is_empty()
            && !self.global_namespaces.iter().any(|g| g == ns)
        {
            return Err(Unresolved {
                reason: reason::REF_NOT_PERMITTED,
                message: format!(
                    "Service {ns}/{} is application-scoped to namespace {ns}; from other namespaces only Services in the global namespaces ({}) may be referenced",
                    r.name,
                    self.global_namespaces.join(", ")
                ),
            });
        }
        if ns != route_ns && !self.grant_allows(route_kind, route_ns, "", "Service", ns, r.name) {
            return Err(Unresolved {
                reason: reason::REF_NOT_PERMITTED,
                message: format!(
                    "backendRef to Service {ns}/{} is not permitted by any ReferenceGrant in namespace {ns}",
                    r.name
                ),
            });
        }
        let Some(port) = r.port else {
            return Err(Unresolved {
                reason: reason::BACKEND_NOT_FOUND,
                message: format!("backendRef to Service {ns}/{} has no port", r.name),
            });
        };
        let Some(service) = self.service(ns, r.name) else {
            return Err(Unresolved {
                reason: reason::BACKEND_NOT_FOUND,
                message: format!("Service {ns}/{} not found", r.name),
            });
        };
        let Some(sp) =
            service_port_of(service, port, transport).or_else(|| service_port(service, port))
        else {
            return Err(Unresolved {
                reason: reason::BACKEND_NOT_FOUND,
                message: format!("Service {ns}/{} has no port {port}", r.name),
            });
        };
        let protocol = sp.protocol().unwrap_or("TCP");
        if protocol != transport {
            return Err(Unresolved {
                reason: reason::UNSUPPORTED_PROTOCOL,
                message: format!(
                    "Service {ns}/{} port {port} is {protocol}, not {transport}",
                    r.name
                ),
            });
        }
        Ok((ns, service, sp))
    }

    /// The upstream for Service port `namespace/service:port` (its `UDP` port when
    /// `udp`) from `slices` (the Service's EndpointSlices, in resource order), spoken
    /// to with h2c when `grpc` (a GRPCRoute uses it) and the port declares no
    /// `appProtocol`, and the problems its endpoints have. `None` when the Service or
    /// port is gone or its protocol is refused (`resolve` refused such references
    /// already); a port only stream routes use (`stream_only`) is never refused for
    /// its `appProtocol` and gets no TLS. A port a BackendTLSPolicy covers is spoken to
    /// over TLS, presenting the client certificate of Secret `client`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn upstream(
        &self,
        namespace: &Arc<str>,
        service_name: &Arc<str>,
        port: u16,
        grpc: bool,
        stream_only: bool,
        udp: bool,
        client: Option<&(String, String)>,
        slices: &[&CompactEndpointSlice],
    ) -> Option<(UpstreamSpec, Vec<ConfigError>)> {
        let service = self.service(namespace, service_name)?;
        let transport = if udp { "UDP" } else { "TCP" };
        let sp = service_port_of(service, i32::from(port), transport)?;
        let covered = if stream_only || udp {
            None
        } else {
            self.backend_tls(namespace, service_name, sp)
        };
        let (app_protocol, tls) = match covered {
            Some(Err(_)) => return None,
            Some(Ok(policy)) => (
                super::backend_tls::tls_app_protocol(sp.app_protocol(), grpc).ok()?,
                Some(super::backend_tls::with_client(
                    policy,
                    client.and_then(|c| self.client_certificate(c)),
                )),
            ),
            None => match app_protocol(sp.app_protocol(), grpc) {
                Ok(p) => (p, None),
                // Bytes pass through: what the port says it speaks does not matter.
                Err(_) if stream_only => (AppProtocol::Http1, None),
                Err(_) => return None,
            },
        };
        let mut errors = Vec::new();
        let endpoints = port_endpoints(sp, slices.iter().copied(), &mut errors);
        // The Service's BackendPolicy, with what it leaves unset taken from
        // BackendTrafficPolicies.
        let key = (namespace.to_string(), service_name.to_string());
        let claimed = self.btp_upstreams.get(&key);
        let proxy_protocol = claimed
            .and_then(|c| c.values.proxy_protocol)
            .map(|v| v.version());
        let policy = match claimed {
            Some(c) if !c.values.sets_policy_fields() => self.policies.get(&key).cloned(),
            Some(c) => Some(c.values.fill(self.policies.get(&key))),
            None => self.policies.get(&key).cloned(),
        };
        let spec = UpstreamSpec {
            // (The names the translator's entry for the upstream has: shared.)
            service: ResourceRef::shared("Service", Some(namespace.clone()), service_name.clone()),
            port,
            endpoints: endpoints.into(),
            app_protocol,
            policy: policy.map(Box::new),
            tls: tls.map(Box::new),
            udp,
            proxy_protocol,
        };
        Some((spec, errors))
    }

    /// The BackendPolicy attached to Service `namespace/name`, if any.
    pub(crate) fn backend_policy(&self, namespace: &str, name: &str) -> Option<&BackendPolicySpec> {
        self.policies.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Whether Service `namespace/name` exists.
    pub(crate) fn has_service(&self, namespace: &str, name: &str) -> bool {
        self.service(namespace, name).is_some()
    }

    /// The XBackendTrafficPolicy settings of Service `namespace/name`, if one is attached.
    pub(crate) fn x_policy(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<&super::session::ServiceSettings> {
        self.x_policies
            .get(&(namespace.to_owned(), name.to_owned()))
    }

    /// The BackendPolicy attached to Service `namespace/name`, with its name.
    pub(crate) fn backend_policy_of(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<(String, &BackendPolicySpec)> {
        let key = (namespace.to_owned(), name.to_owned());
        let spec = self.policies.get(&key)?;
        Some((
            self.policy_owners.get(&key).cloned().unwrap_or_default(),
            spec,
        ))
    }

    /// Attaches each BackendPolicy to its target Services (oldest first; see
    /// `policy.rs` for the statuses).
    pub(crate) fn attach_policies(&mut self, statuses: &mut Vec<ResourceStatus>) {
        for p in by_age(&self.resources.backend_policies, |p| &p.metadata) {
            let ns = ns_of(&p.metadata);
            let name = name_of(&p.metadata);
            let generation = p.metadata.generation;
            let resource = ResourceRef::new("BackendPolicy", Some(ns), name);
            if let Err(problems) = p.spec.validate() {
                let targets = p
                    .spec
                    .target_refs
                    .iter()
                    .map(|t| service_ancestor(ns, &t.name))
                    .collect();
                statuses.push(invalid(
                    resource,
                    generation,
                    targets,
                    problems,
                    &mut self.errors,
                ));
                continue;
            }
            let mut attachment = Attachment::new();
            for t in &p.spec.target_refs {
                let ancestor = service_ancestor(ns, &t.name);
                if self.service(ns, &t.name).is_none() {
                    attachment.not_found(ancestor, format!("Service {ns}/{} not found", t.name));
                    continue;
                }
                let key = (ns.to_owned(), t.name.clone());
                if let Some(older) = self.policy_owners.get(&key)
                    && older != name
                {
                    attachment.conflicted(
                        ancestor,
                        format!(
                            "Service {ns}/{} already has the older BackendPolicy {ns}/{older}",
                            t.name
                        ),
                    );
                    continue;
                }
                self.policy_owners.insert(key.clone(), name.to_owned());
                self.policies.insert(key, p.spec.clone());
                attachment.attached(ancestor);
            }
            statuses.push(attachment.status(resource, generation));
        }
    }
}

/// The endpoints of `service`'s port `port` (the Service port number a backendRef
/// names; its `UDP` port when `udp`, else its `TCP` one, as [`UpstreamSpec::is_udp`]
/// says) from the Service's EndpointSlices (see the `translate` module docs for the
/// rules). Slices of several clusters may be mixed: each endpoint gets its slice's
/// [`CLUSTER_LABEL`](crate::types::CLUSTER_LABEL). Unusable entries (an address that is not an IP) are skipped and
/// reported in `errors`. A port the Service does not have gives no endpoints.
///
/// This is what translation puts in [`UpstreamSpec::endpoints`]; the Kubernetes
/// provider calls it directly when only EndpointSlices changed, without translating
/// (and recompiling routes) again.
pub fn service_endpoints<'s>(
    service: &CompactService,
    port: u16,
    udp: bool,
    slices: impl IntoIterator<Item = &'s CompactEndpointSlice>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Endpoint> {
    let protocol = if udp { "UDP" } else { "TCP" };
    match service_port_of(service, i32::from(port), protocol) {
        Some(sp) => port_endpoints(sp, slices, errors),
        None => Vec::new(),
    }
}

fn port_endpoints<'s>(
    sp: &CompactServicePort,
    slices: impl IntoIterator<Item = &'s CompactEndpointSlice>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Endpoint> {
    let want_name = sp.name().unwrap_or("");
    let want_protocol = sp.protocol().unwrap_or("TCP");
    let fallback_port = sp.target_port().unwrap_or(sp.port());
    let mut by_addr: BTreeMap<SocketAddr, Endpoint> = BTreeMap::new();
    for slice in slices {
        if !slice.is_ip() {
            continue;
        }
        let ports = slice.ports();
        let port = if ports.is_empty() {
            Some(fallback_port)
        } else {
            ports
                .iter()
                .find(|p| {
                    p.name().unwrap_or("") == want_name
                        && p.protocol().unwrap_or("TCP") == want_protocol
                })
                .and_then(|p| p.port())
        };
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) else {
            continue;
        };
        let ns = slice.namespace().unwrap_or("default");
        let slice_name = slice.name();
        // The cluster of the slice's endpoints: its `CLUSTER_LABEL`.
        let cluster = slice.cluster();
        for (i, ep) in slice.endpoints().iter().enumerate() {
            let Some(first) = ep.address() else {
                continue;
            };
            let ip: IpAddr = match first {
                Ok(ip) => ip,
                Err(first) => {
                    errors.push(ConfigError::new(
                        format!("endpoints[{i}].addresses[0]"),
                        format!("EndpointSlice {ns}/{slice_name}: {first:?} is not an IP address; endpoint ignored"),
                    ));
                    continue;
                }
            };
            let addr = SocketAddr::new(ip, port);
            let ready = ep.ready().unwrap_or(true);
            let serving = ep.serving().unwrap_or(ready);
            let terminating = ep.terminating().unwrap_or(false);
            let state = if terminating {
                if serving {
                    EndpointState::Terminating
                } else {
                    EndpointState::NotReady
                }
            } else if ready {
                EndpointState::Ready
            } else {
                EndpointState::NotReady
            };
            let mut e = Endpoint::new(addr).with_state(state);
            if let Some(zone) = ep.zone() {
                e = e.with_zone(zone);
            }
            if let Some(h) = ep.hostname() {
                e = e.with_hostname(h);
            }
            if let Some(cluster) = cluster {
                e = e.with_cluster(cluster);
            }
            match by_addr.get(&addr) {
                Some(old) if rank(old.state()) >= rank(state) => {}
                _ => {
                    by_addr.insert(addr, e);
                }
            }
        }
    }
    by_addr.into_values().collect()
}

fn rank(s: EndpointState) -> u8 {
    match s {
        EndpointState::Ready => 2,
        EndpointState::Terminating => 1,
        _ => 0,
    }
}

/// The protocol gatekit speaks to a Service port with this `appProtocol`, or the value
/// back when gatekit does not speak it. Only values gatekit serves map: none (h2c for a
/// GRPCRoute, HTTP/1.1 otherwise), `http` and `kubernetes.io/ws` (HTTP/1.1, upgrades
/// pass through), `h2c`, `kubernetes.io/h2c` and `grpc` (h2c). Everything else —
/// `https`, `kubernetes.io/wss`, values of other vendors — is refused: sending cleartext
/// to a backend that asked for TLS, or guessing at an unknown protocol, is never the
/// answer. Unprefixed values are IANA service names, which are case-insensitive.
fn app_protocol(value: Option<&str>, grpc: bool) -> Result<AppProtocol, &str> {
    let Some(value) = value else {
        return Ok(if grpc {
            AppProtocol::H2c
        } else {
            AppProtocol::Http1
        });
    };
    let is = |name: &str| value.eq_ignore_ascii_case(name);
    if is("http") || value == APP_PROTOCOL_WS {
        Ok(AppProtocol::Http1)
    } else if is("h2c") || is("grpc") || value == APP_PROTOCOL_H2C {
        Ok(AppProtocol::H2c)
    } else {
        Err(value)
    }
}

/// The Service port with this number and `protocol` (`TCP`, `UDP`; unset is `TCP`).
fn service_port_of<'s>(
    service: &'s CompactService,
    port: i32,
    protocol: &str,
) -> Option<&'s CompactServicePort> {
    service
        .ports()
        .iter()
        .find(|p| p.port() == port && p.protocol().unwrap_or("TCP") == protocol)
}

fn service_port(service: &CompactService, port: i32) -> Option<&CompactServicePort> {
    service.ports().iter().find(|p| p.port() == port)
}
