//! Translation of Kubernetes resources into gatekit's core model, to the Gateway API rules.
//!
//! [`translate`] is a function of a [`ResourceSet`]: no I/O, and one clock read, to
//! tell whether a listener's certificate is valid now ([`unix_now`]). It runs in four
//! passes:
//!
//! 1. **Policies.** Each `BackendPolicy` is attached to the Services its `targetRefs`
//!    name (oldest policy wins a Service; later ones are `Conflicted`), each
//!    `TrafficPolicy` to its Gateways, listeners, routes and rules (field by field; see
//!    `policy.rs`), each Envoy Gateway `BackendTrafficPolicy` to its targets, and its
//!    `loadBalancer`/`healthCheck` to the Services they reach, each
//!    `XBackendTrafficPolicy` to its Services (session persistence, retry constraints;
//!    see `session.rs`), each `BackendTLSPolicy` to its Services and ports, and each
//!    Gateway's backend client certificate resolved (TLS to backends; see
//!    `backend_tls.rs` and [`UpstreamTls`]). The loaders already refused invalid gatekit policies; an invalid
//!    XBackendTrafficPolicy is refused here (`Accepted=False`, `Invalid`).
//! 2. **Listeners.** Gateways whose `gatewayClassName` is the configured class are
//!    served (a `GatewayClass` object is not required). Their listeners are grouped by
//!    port across all Gateways: one socket per port. A listener is programmed when its
//!    protocol is HTTP, HTTPS, TLS, TCP or UDP, its certificates resolve (HTTPS, and TLS
//!    in `Terminate` mode, the default; `Passthrough` needs none; Secrets of type
//!    `kubernetes.io/tls`, cross-namespace only with a ReferenceGrant), its route kinds
//!    are supported (HTTPRoute and GRPCRoute on HTTP and HTTPS, TLSRoute on TLS,
//!    TCPRoute on TCP, UDPRoute on UDP: the default when `allowedRoutes.kinds` is
//!    unset; any other kind is `InvalidRouteKinds`), and it does not conflict with an
//!    earlier listener on the same port (different protocol, or same hostname; TCP and
//!    UDP listeners have no hostname, so two on one port conflict; TLS listeners of
//!    both modes may share a port, told apart by hostname). Earlier means older
//!    Gateway, then listener order. ListenerSets (GEP-1713) add listeners to the Gateway their `parentRef`
//!    names when its `spec.allowedListeners` allows their namespace (none by default:
//!    `NotAllowed`); they come right after that Gateway's own listeners, oldest first,
//!    then by namespace/name, and a ListenerSet listener that conflicts with an earlier
//!    one is not accepted (`Conflicted`, the others keep serving). Certificates resolve
//!    in the ListenerSet's namespace; a ReferenceGrant must name ListenerSets.
//! 3. **Routes.** Each HTTPRoute and GRPCRoute is converted once to core
//!    [`Rule`](gatekit_core::route::Rule)s, then attached through each parentRef: the
//!    Gateway or ListenerSet (namespace defaults to the route's; a Gateway parentRef
//!    reaches the Gateway's own listeners only), `sectionName` and `port` pick
//!    listeners, `allowedRoutes` (namespaces Same/All/Selector and kinds) filters them,
//!    and hostnames are intersected. A route attached to several listeners of one port
//!    becomes one [`Route`] there, with the union of the intersected hostnames.
//!    TLSRoutes, TCPRoutes and UDPRoutes attach the same way and become
//!    [`StreamRoute`]s of their listeners (see `stream.rs`).
//! 4. **Backends.** A backendRef to a Service port becomes an upstream named
//!    `"<namespace>/<service>:<port>"` (see [`backend_name`]) whose endpoints come from
//!    the Service's EndpointSlices. A backendRef that cannot be used (missing Service or
//!    port, cross-namespace without ReferenceGrant, wrong kind) stays in the rule under a
//!    name starting with [`INVALID_BACKEND_PREFIX`], which never resolves: that share of
//!    traffic answers 500, as the spec requires, and the route's `ResolvedRefs` says why.
//!
//! HTTPRoute `retry` (GEP-1731) becomes the rule's
//! [`RetryPolicy`](gatekit_core::retry::RetryPolicy): `attempts` retries (2 when unset,
//! Envoy Gateway's default; 0 disables), on the `codes` listed (400-599; the
//! gateway-error class 502/503/504 when unset), always also on requests that never
//! reached a backend, connect failures, resets and per-attempt timeouts (the spec retries
//! "after timing out"; a reset after the request was sent may replay it, which the spec
//! asks implementations to document), waiting at least `backoff` (25 ms when unset)
//! before each retry. TrafficPolicies fill in rules' retries, rate limits and request
//! limits; a BackendPolicy's circuit breaker and retry budget go on every backendRef to
//! its Service (not on mirrors).
//!
//! An `ExternalAuth` filter (GEP-1494) becomes an access policy of its rule (see
//! `access.rs`). Rules that use something gatekit cannot do (ExtensionRef filters,
//! unsupported values) are kept but lose their backends and filters, so requests they match answer
//! 500 instead of falling through to another route; the route reports
//! `PartiallyInvalid`, or `Accepted=False/UnsupportedValue` when every rule is invalid.
//!
//! The result is not validated against the core route table here (regexes, paths):
//! callers build a table per port from [`Translation::routes_for_port`] and report
//! what the table refuses.
//!
//! **Incremental translation.** A translation is a *frame* (passes 1 and 2, the
//! Gateway addresses), one piece per route (its `Arc<Route>` per listener, its
//! `Arc<ResourceStatus>`, its errors, the listeners it counts in `attachedRoutes`,
//! the upstreams it uses) and the upstreams (each built once from its Service port,
//! slices and policy, h2c when a GRPCRoute uses a port that declares no
//! `appProtocol`; endpoint errors reported before the errors of the first route
//! using it), put together in route order. [`translate`] builds all of it;
//! a [`Translator`] keeps the pieces and upstreams and, given the objects that
//! changed, rebuilds the pieces of routes that changed or whose references name a
//! changed Service, and the upstreams whose Service, EndpointSlices or users changed.
//! Its result equals `translate`'s; everything else keeps its `Arc`. The per-listener
//! route lists and the route statuses are [`Chunked`]: the translator keeps them and
//! replaces a changed route's entry in its chunk, so a one-route change neither walks
//! nor copies every route ([`PortListeners::route_lists`]; the flat
//! [`PortListeners::routes`] and [`Translation::statuses`] are made when asked for). A change of
//! another kind (Gateway, ListenerSet, GatewayClass, ReferenceGrant, Namespace, Secret,
//! policy, BackendTLSPolicy, ConfigMap), of a route or Service a policy targets, of the
//! gateway's own Service, or any route or Service change while a BackendTrafficPolicy,
//! a BackendTLSPolicy or a Gateway backend client certificate exists, translates
//! everything.

mod access;
mod address;
mod backend;
mod backend_tls;
mod ctp;
mod frontend;
mod hostname;
mod listener;
mod policy;
mod route;
mod session;
mod small_set;
mod stream;
mod translator;
#[cfg(feature = "client")]
pub(crate) use backend::ns_of;
pub use listener::unix_now;
pub(crate) use session::inline_v17_sessions;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use gatekit_core::chunked::Chunked;
use gatekit_core::route::Route;
use gatekit_core::stream::StreamRoute;
use gatekit_core::{ConfigError, Endpoint};

use crate::manifest::ResourceSet;
use crate::status::{ResourceRef, ResourceStatus};
use crate::types::BackendPolicySpec;

pub use self::access::oidc::{
    ClientSecret, OidcHeaderMatch, OidcRedirect, OidcSpec, OidcStringMatch, SameSite,
};
pub use self::access::{
    AccessEntry, AccessSpec, ApiKeyConsumer, ApiKeySpec, AuthzRuleSpec, AuthzSpec, BasicSpec,
    CredentialFrom, ExtAuthMode, ExtAuthSpec, JwksSource, JwtProviderSpec, JwtSpec,
};
pub use self::backend::{
    INVALID_BACKEND_PREFIX, backend_name, service_endpoints, udp_backend_name,
};
pub use self::backend_tls::{
    INVALID_BACKEND_TLS_POLICY, INVALID_CA_CERTIFICATE_REF, INVALID_CLIENT_CERTIFICATE_REF,
    NO_VALID_CA_CERTIFICATE, TlsRoots, UpstreamTls,
};
pub use self::translator::Translator;

/// Translation settings.
#[derive(Clone, Debug)]
pub struct TranslateOptions {
    gateway_class_name: String,
    controller_name: String,
    pub(crate) global_namespaces: Vec<String>,
    pub(crate) shared_rate_limits: bool,
    pub(crate) gateway_service: Option<(String, String)>,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self {
            gateway_class_name: "gatekit".to_owned(),
            controller_name: "gatekit.io/gateway-controller".to_owned(),
            global_namespaces: Vec::new(),
            shared_rate_limits: false,
            gateway_service: None,
        }
    }
}

impl TranslateOptions {
    /// Says whether `Global` rate limits have a shared store (a Redis in the gateway's
    /// settings): without one they run per replica, and the policies' statuses say so
    /// (default: no store).
    #[must_use]
    pub fn shared_rate_limits(mut self, shared: bool) -> Self {
        self.shared_rate_limits = shared;
        self
    }

    /// Names the Service in front of the gateway replicas (`namespace`, `name`): its
    /// load-balancer addresses (or cluster IPs) become every Gateway's
    /// `status.addresses`, and a Gateway is `Programmed=False` (`AddressNotAssigned`)
    /// while the Service has none. Unset (the default), translation reports no
    /// addresses.
    #[must_use]
    pub fn gateway_service(
        mut self,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        self.gateway_service = Some((namespace.into(), name.into()));
        self
    }

    /// Sets the GatewayClass name whose Gateways are served (default `gatekit`).
    #[must_use]
    pub fn gateway_class_name(mut self, name: impl Into<String>) -> Self {
        self.gateway_class_name = name.into();
        self
    }

    /// Sets the controller name GatewayClasses are matched against (default
    /// `gatekit.io/gateway-controller`).
    #[must_use]
    pub fn controller_name(mut self, name: impl Into<String>) -> Self {
        self.controller_name = name.into();
        self
    }

    /// The GatewayClass name whose Gateways are served.
    pub fn served_class(&self) -> &str {
        &self.gateway_class_name
    }

    /// The controller name GatewayClasses are matched against.
    pub fn controller(&self) -> &str {
        &self.controller_name
    }

    /// Sets the namespaces whose Services are *global upstreams* (platform-owned,
    /// shared by every team).
    ///
    /// Empty (the default) is the Gateway API's rule: a route may reference a Service in
    /// another namespace wherever a ReferenceGrant in that namespace allows it. Non-empty
    /// enforces gatekit's two-tier model: a route uses the Services of its own namespace
    /// (*application-scoped* upstreams) and, where a ReferenceGrant allows it, Services in
    /// these namespaces; a reference into any other team's namespace is refused
    /// (`ResolvedRefs=False`, `RefNotPermitted`, 500 for its share) even if that team
    /// wrote a grant, so one team's change cannot reach another team's backends.
    #[must_use]
    pub fn global_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.global_namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }
}

/// The protocol clients speak to a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// Cleartext HTTP (HTTP/1.1, and h2c when the server offers it).
    Http,
    /// HTTP over TLS.
    Https,
    /// TLS streams routed by SNI (TLSRoute): passed through untouched or terminated at
    /// the gateway ([`ListenerSpec::tls_mode`]).
    Tls,
    /// TCP streams (TCPRoute).
    Tcp,
    /// UDP datagrams, in per-client flows (UDPRoute).
    Udp,
}

impl Protocol {
    /// Whether it runs over UDP. A port number is a TCP port and a UDP port: a `UDP`
    /// listener shares its number with listeners of any other (TCP-based) protocol
    /// without conflict, and each is served on its own socket.
    pub fn is_udp(self) -> bool {
        self == Self::Udp
    }
}

/// What a `TLS` listener does with TLS ([`ListenerSpec::tls_mode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsMode {
    /// TLS ends at the gateway; the plaintext bytes go on to the backend.
    Terminate,
    /// The gateway reads the ClientHello's SNI only; the client's TLS reaches the
    /// backend untouched.
    Passthrough,
}

/// A TLS certificate and key from a `kubernetes.io/tls` Secret, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    secret: ResourceRef,
    cert_pem: Arc<[u8]>,
    key_pem: Arc<[u8]>,
    /// Why the pair cannot be served (malformed, key mismatch, expired), naming the
    /// Secret.
    problem: Option<String>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("secret", &self.secret)
            .field("cert_pem_len", &self.cert_pem.len())
            .field("problem", &self.problem)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// The Secret it came from.
    pub fn secret(&self) -> &ResourceRef {
        &self.secret
    }

    /// The certificate chain (`tls.crt`), PEM.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// The private key (`tls.key`), PEM (PKCS#1, PKCS#8 or SEC1, as written).
    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }

    /// Why this Secret's pair cannot be served (malformed PEM, no key, a key that is not
    /// the certificate's, expired or not yet valid), naming the Secret; `None` when it
    /// can. A listener whose Secret turned bad keeps serving the last good pair (the
    /// gateway remembers it), so bad pairs stay in the list.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }
}

/// One programmed listener: a Gateway's own, or one a ListenerSet adds to it.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    gateway: ResourceRef,
    listener_set: Option<ResourceRef>,
    name: String,
    hostname: Option<String>,
    certificates: Vec<Certificate>,
    /// Its TLS settings (ClientTrafficPolicy, Gateway `spec.tls.frontend`); `None`:
    /// gatekit's defaults.
    tls_settings: Option<Arc<gatekit_core::tls::ListenerTls>>,
    /// PROXY protocol required before anything else (a ClientTrafficPolicy).
    proxy_protocol: bool,
    /// Idle timeout of its stream connections (a ClientTrafficPolicy).
    idle_timeout: Option<std::time::Duration>,
    /// Most connections open on its port (a ClientTrafficPolicy).
    connection_limit: Option<usize>,
    /// How its requests' clients are found (a ClientTrafficPolicy).
    client_ip: Option<Arc<gatekit_core::client_ip::ClientIpDetection>>,
    /// `Some` on `TLS` listeners only.
    tls_mode: Option<TlsMode>,
    /// Its routes in [`PortListeners::routes`].
    routes: std::ops::Range<usize>,
    /// Its stream routes in [`PortListeners::stream_routes`].
    stream_routes: std::ops::Range<usize>,
}

impl ListenerSpec {
    /// The Gateway it belongs to.
    pub fn gateway(&self) -> &ResourceRef {
        &self.gateway
    }

    /// The ListenerSet that declares it (GEP-1713), or `None` for the Gateway's own.
    pub fn listener_set(&self) -> Option<&ResourceRef> {
        self.listener_set.as_ref()
    }

    /// The listener name (unique within its Gateway or ListenerSet only).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hostname (exact or wildcard, lowercase); `None` matches every host.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }

    /// Certificates (HTTPS, and TLS in `Terminate` mode), in `certificateRefs` order,
    /// invalid ones left out.
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    /// Its TLS settings: client certificate validation (the Gateway's
    /// `spec.tls.frontend`, else a ClientTrafficPolicy's), versions, cipher suites,
    /// ALPN, session resumption, the `x-forwarded-client-cert` policy. `None`: gatekit's
    /// defaults ([`ListenerTls::default`](gatekit_core::tls::ListenerTls)).
    pub fn tls_settings(&self) -> Option<&Arc<gatekit_core::tls::ListenerTls>> {
        self.tls_settings.as_ref()
    }

    /// Whether a ClientTrafficPolicy requires a PROXY protocol header on its
    /// connections.
    pub fn proxy_protocol(&self) -> bool {
        self.proxy_protocol
    }

    /// How long its stream connections (`TLS`, `TCP` listeners) may pass no byte before
    /// they are closed: a ClientTrafficPolicy's `timeout.tcp.idleTimeout`; `None`: the
    /// default (1 hour).
    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        self.idle_timeout
    }

    /// Most connections open at once on its port: a ClientTrafficPolicy's
    /// `connection.connectionLimit.value`; `None`: no bound of its own.
    pub fn connection_limit(&self) -> Option<usize> {
        self.connection_limit
    }

    /// How the client of its requests is found behind trusted proxies: a
    /// ClientTrafficPolicy's `clientIPDetection`; `None`: the connection's peer (HTTP and
    /// HTTPS listeners only; no effect on stream listeners).
    pub fn client_ip(&self) -> Option<&Arc<gatekit_core::client_ip::ClientIpDetection>> {
        self.client_ip.as_ref()
    }

    /// The TLS mode of a [`Protocol::Tls`] listener; `None` for other protocols.
    pub fn tls_mode(&self) -> Option<TlsMode> {
        self.tls_mode
    }
}

/// Everything served on one port: the protocol, the listeners sharing it, the routes.
#[derive(Clone)]
pub struct PortListeners {
    port: u16,
    protocol: Protocol,
    listeners: Vec<ListenerSpec>,
    /// Each listener's routes (index-aligned with `listeners`), in chunks shared with
    /// the previous translation of an incremental [`Translator`] where no route changed.
    lists: Vec<Chunked<Arc<Route>>>,
    /// The routes of every listener in one list, made when first asked for
    /// ([`routes`](Self::routes)): the apply stage reads `lists`.
    flat: OnceLock<Vec<Arc<Route>>>,
    /// TLSRoutes, TCPRoutes and UDPRoutes (on `TLS`, `TCP` and `UDP` ports only).
    stream_routes: Vec<Arc<StreamRoute>>,
}

/// The routes as one list (chunk boundaries and the flat copy do not show).
impl std::fmt::Debug for PortListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortListeners")
            .field("port", &self.port)
            .field("protocol", &self.protocol)
            .field("listeners", &self.listeners)
            .field(
                "routes",
                &self
                    .lists
                    .iter()
                    .flat_map(Chunked::iter)
                    .collect::<Vec<_>>(),
            )
            .field("stream_routes", &self.stream_routes)
            .finish()
    }
}

impl PortListeners {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The protocol every listener on the port speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The listeners sharing the port (several Gateways may contribute).
    pub fn listeners(&self) -> &[ListenerSpec] {
        &self.listeners
    }

    /// The routes of every listener of the port, listener after listener (a route
    /// attached to several listeners is there once per listener), hostnames already
    /// intersected with the listener's. Made into one list when first asked for (a
    /// copy of every pointer): a caller that follows changes reads
    /// [`route_lists`](Self::route_lists).
    pub fn routes(&self) -> &[Arc<Route>] {
        self.flat.get_or_init(|| {
            let mut out = Vec::with_capacity(self.lists.iter().map(Chunked::len).sum());
            for list in &self.lists {
                out.extend(list.iter().cloned());
            }
            out
        })
    }

    /// The routes attached to `listener` (one of [`listeners`](Self::listeners)), its
    /// hostname already intersected with each route's. Listener isolation: a request
    /// this listener takes is matched against these routes only.
    pub fn listener_routes(&self, listener: &ListenerSpec) -> &[Arc<Route>] {
        self.routes().get(listener.routes.clone()).unwrap_or(&[])
    }

    /// Each listener with its routes (see [`listener_routes`](Self::listener_routes)).
    pub fn routes_by_listener(&self) -> impl Iterator<Item = (&ListenerSpec, &[Arc<Route>])> {
        self.listeners.iter().map(|l| (l, self.listener_routes(l)))
    }

    /// Each listener with its routes as a [`Chunked`] list: after an incremental
    /// [`Translator`] call, the chunks no changed route is in are the previous
    /// result's (the same `Arc`s), so a consumer finds what changed by comparing one
    /// pointer per chunk.
    pub fn route_lists(&self) -> impl Iterator<Item = (&ListenerSpec, &Chunked<Arc<Route>>)> {
        self.listeners.iter().zip(&self.lists)
    }

    /// The stream routes (TLSRoute, TCPRoute, UDPRoute) of every listener of a `TLS`,
    /// `TCP` or `UDP` port, listener after listener, hostnames already intersected with
    /// the listener's. Empty on HTTP and HTTPS ports.
    pub fn stream_routes(&self) -> &[Arc<StreamRoute>] {
        &self.stream_routes
    }

    /// The stream routes attached to `listener` (one of
    /// [`listeners`](Self::listeners)); a connection this listener takes (by SNI on
    /// `TLS` ports) is matched against these only.
    pub fn listener_stream_routes(&self, listener: &ListenerSpec) -> &[Arc<StreamRoute>] {
        self.stream_routes
            .get(listener.stream_routes.clone())
            .unwrap_or(&[])
    }
}

/// The protocol gatekit speaks to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AppProtocol {
    /// HTTP/1.1.
    Http1,
    /// Cleartext HTTP/2 with prior knowledge.
    H2c,
    /// HTTP/1.1 over TLS (ALPN `http/1.1`): a port a BackendTLSPolicy covers.
    Https,
    /// HTTP/2 over TLS (ALPN `h2`): a covered port whose `appProtocol` says HTTP/2
    /// (`h2c`, `kubernetes.io/h2c`, `grpc`) or that a GRPCRoute uses without one.
    H2,
}

/// An upstream: one Service port, its endpoints and its policy.
///
/// One per Service port in use, kept by the translator and the translation: the
/// rarely set parts (a policy, TLS) are boxed, so an upstream without them is small,
/// and its one endpoint (a Service of one endpoint) is inline.
#[derive(Clone, Debug)]
pub struct UpstreamSpec {
    service: ResourceRef,
    port: u16,
    endpoints: crate::types::SmallList<Endpoint>,
    app_protocol: AppProtocol,
    policy: Option<Box<BackendPolicySpec>>,
    tls: Option<Box<UpstreamTls>>,
    udp: bool,
    proxy_protocol: Option<gatekit_core::server::ProxyVersion>,
}

impl UpstreamSpec {
    /// Whether it is the Service's `UDP` port (a UDPRoute's backend, named
    /// [`udp_backend_name`]); its endpoints come from that port, which may share its
    /// number with a `TCP` one (see [`service_endpoints`]).
    pub fn is_udp(&self) -> bool {
        self.udp
    }

    /// The Service.
    pub fn service(&self) -> &ResourceRef {
        &self.service
    }

    /// The Service port (not the target port).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Endpoints from every EndpointSlice of the Service, deduplicated by address,
    /// sorted by address.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The protocol to speak to endpoints: `H2c` when the Service port's `appProtocol`
    /// is `h2c`, `kubernetes.io/h2c` or `grpc`, or when it has none and a GRPCRoute uses
    /// it (gRPC needs HTTP/2); HTTP/1.1 for none, `http` and `kubernetes.io/ws`. A port a
    /// BackendTLSPolicy covers speaks the same over TLS (`Https`, `H2`; `https` and
    /// `kubernetes.io/wss` are `Https` then). A port with any other value (`https`,
    /// `kubernetes.io/wss` without a policy, unknown) never becomes an upstream: its
    /// backendRefs are refused with `UnsupportedProtocol`.
    pub fn app_protocol(&self) -> AppProtocol {
        self.app_protocol
    }

    /// TLS to the endpoints, when a BackendTLSPolicy covers the port (with the client
    /// certificate of the Gateways this upstream serves; see
    /// [`UpstreamTls`]).
    pub fn tls(&self) -> Option<&UpstreamTls> {
        self.tls.as_deref()
    }

    /// The BackendPolicy attached to the Service, if any, with the fields it leaves
    /// unset filled from Envoy Gateway BackendTrafficPolicies' `loadBalancer` and
    /// `healthCheck` (or only those, when the Service has no BackendPolicy).
    pub fn policy(&self) -> Option<&BackendPolicySpec> {
        self.policy.as_deref()
    }

    /// The PROXY protocol header stream connections to the Service start with (an Envoy
    /// Gateway BackendTrafficPolicy's `proxyProtocol` reaching it through a TCPRoute or
    /// TLSRoute); HTTP requests to it get none (the policy's status says so).
    pub fn proxy_protocol(&self) -> Option<gatekit_core::server::ProxyVersion> {
        self.proxy_protocol
    }
}

/// What an incremental [`Translator`] result changed relative to the translator's
/// previous result ([`Translation::changes`]).
///
/// Everything not named here is the same `Arc` as in the previous result: a route
/// whose id is not in [`route_ids`](Self::route_ids) is served by the same `Arc<Route>`s,
/// an upstream not in [`upstreams`](Self::upstreams) has the same `Arc<UpstreamSpec>`
/// (or is still absent).
#[derive(Clone, Debug, Default)]
pub struct Changes {
    route_ids: BTreeSet<gatekit_core::route::RouteId>,
    routes: Vec<Arc<Route>>,
    ports: BTreeSet<u16>,
    upstreams: BTreeSet<String>,
}

impl Changes {
    /// The ids of the routes translated again: added, changed or removed.
    pub fn route_ids(&self) -> &BTreeSet<gatekit_core::route::RouteId> {
        &self.route_ids
    }

    /// The routes now served under [`route_ids`](Self::route_ids), one per listener
    /// they attach to (none for a removed route), in no particular order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The ports whose route lists ([`PortListeners::routes`]) differ from the
    /// previous result's (a route of a changed id was or is there).
    pub fn ports(&self) -> &BTreeSet<u16> {
        &self.ports
    }

    /// The upstream names whose spec was added, replaced or removed.
    pub fn upstreams(&self) -> &BTreeSet<String> {
        &self.upstreams
    }
}

/// The result of [`translate`].
#[derive(Clone, Default)]
pub struct Translation {
    listeners: Vec<PortListeners>,
    /// Shared with the [`Translator`] and the next translation while no upstream
    /// changes.
    upstreams: Arc<BTreeMap<String, Arc<UpstreamSpec>>>,
    statuses: Statuses,
    errors: Vec<ConfigError>,
    global_rate_limits: BTreeSet<String>,
    /// Access policies by name (SecurityPolicies, SecurityOverrides).
    access: Arc<BTreeMap<String, AccessEntry>>,
    /// Set by an incremental [`Translator`] call only.
    changes: Option<Arc<Changes>>,
}

/// The statuses of a [`Translation`]: those before the routes' (GatewayClasses,
/// policies, Gateways, ListenerSets), the HTTPRoutes' and GRPCRoutes' in route order
/// (in chunks an incremental [`Translator`] shares with its previous result), those
/// after (stream routes). One list is made when first asked for: only `/config`, the
/// status writer and callers of [`Translation::statuses`] need it.
#[derive(Clone, Default)]
pub(crate) struct Statuses {
    pub(crate) head: Vec<Arc<ResourceStatus>>,
    pub(crate) routes: Chunked<Arc<ResourceStatus>>,
    pub(crate) tail: Vec<Arc<ResourceStatus>>,
    flat: OnceLock<Vec<Arc<ResourceStatus>>>,
}

impl Statuses {
    pub(crate) fn new(
        head: Vec<Arc<ResourceStatus>>,
        routes: Chunked<Arc<ResourceStatus>>,
        tail: Vec<Arc<ResourceStatus>>,
    ) -> Self {
        Self {
            head,
            routes,
            tail,
            flat: OnceLock::new(),
        }
    }

    fn all(&self) -> &[Arc<ResourceStatus>] {
        self.flat.get_or_init(|| self.joined())
    }

    fn joined(&self) -> Vec<Arc<ResourceStatus>> {
        let mut out = Vec::with_capacity(self.head.len() + self.routes.len() + self.tail.len());
        out.extend_from_slice(&self.head);
        out.extend(self.routes.iter().cloned());
        out.extend_from_slice(&self.tail);
        out
    }

    /// Changes the list: from then on it is what [`all`](Self::all) says.
    fn modify(&mut self, change: impl FnOnce(&mut [Arc<ResourceStatus>])) {
        let mut list = match self.flat.take() {
            Some(list) => list,
            None => self.joined(),
        };
        change(&mut list);
        self.flat = OnceLock::from(list);
    }
}

/// Everything but [`Translation::changes`]: the debug form of a translation is the
/// same however it was computed (debug builds compare an incremental result with a
/// full one by it).
impl std::fmt::Debug for Translation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translation")
            .field("listeners", &self.listeners)
            .field("upstreams", &self.upstreams)
            .field("statuses", &self.statuses.all())
            .field("errors", &self.errors)
            .field("global_rate_limits", &self.global_rate_limits)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Translation {
    /// What changed relative to the previous result of the same [`Translator`]:
    /// `None` after a full translation (from [`translate`], a translator's first
    /// call, or any change it translates in full), meaning "assume everything
    /// changed".
    pub fn changes(&self) -> Option<&Changes> {
        self.changes.as_deref()
    }

    /// Takes [`changes`](Self::changes) out (`None` from then on). A caller that keeps
    /// the translation after applying it (for `/config`, a status writer) takes them
    /// first: they name every route and upstream a change reached (all of them, when
    /// every route was deleted), and kept, those names would hold memory until the
    /// next translation.
    pub fn take_changes(&mut self) -> Option<Changes> {
        self.changes.take().map(Arc::unwrap_or_clone)
    }

    /// Programmed listeners, by port (ascending; a number served over TCP and UDP
    /// twice, TCP first).
    pub fn listeners(&self) -> &[PortListeners] {
        &self.listeners
    }

    /// What is served on `port` over TCP (HTTP, HTTPS, TLS, TCP), else over UDP, if
    /// anything.
    pub fn port(&self, port: u16) -> Option<&PortListeners> {
        self.listeners.iter().find(|p| p.port == port)
    }

    /// What is served on `port` over UDP (`udp`) or over TCP, if anything.
    pub fn port_over(&self, port: u16, udp: bool) -> Option<&PortListeners> {
        self.listeners
            .iter()
            .find(|p| p.port == port && p.protocol.is_udp() == udp)
    }

    /// The routes for one port, ready for the caller to build a route table from
    /// (with backends named as in [`upstreams`](Self::upstreams)). Empty when nothing
    /// listens on `port`.
    pub fn routes_for_port(&self, port: u16) -> &[Arc<Route>] {
        self.port(port).map_or(&[], PortListeners::routes)
    }

    /// Upstreams by backend name (see [`backend_name`]).
    pub fn upstreams(&self) -> &BTreeMap<String, Arc<UpstreamSpec>> {
        &self.upstreams
    }

    /// The conditions of every resource gatekit handles (shared: a route's status is
    /// the same `Arc` from one [`Translator`] result to the next while the route is
    /// not translated again).
    pub fn statuses(&self) -> &[Arc<ResourceStatus>] {
        self.statuses.all()
    }

    /// The status of one resource: `kind` as in manifests (`HTTPRoute`, `Gateway`, ...),
    /// `namespace` `None` for cluster-scoped kinds.
    pub fn status(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&ResourceStatus> {
        self.statuses()
            .iter()
            .find(|s| {
                let r = s.resource();
                r.kind() == kind && r.namespace() == namespace && r.name() == name
            })
            .map(|s| &**s)
    }

    /// Names of the rate limits that come from `Global` Envoy Gateway
    /// BackendTrafficPolicies. They run per replica until a shared store is configured
    /// (the policies' statuses say so).
    pub fn global_rate_limits(&self) -> &BTreeSet<String> {
        &self.global_rate_limits
    }

    /// The access policies route rules name in
    /// [`RulePolicy::access`](gatekit_core::route::RulePolicy::access), by name
    /// (`SecurityPolicy/<namespace>/<name>/<mechanism>`; see [`AccessEntry`]). A name
    /// a rule lists whose entry has no spec cannot be served: the rule refuses.
    pub fn access_policies(&self) -> &BTreeMap<String, AccessEntry> {
        &self.access
    }

    /// Problems that made part of a route (or listener, or policy) unusable, each with
    /// its field path.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Marks the SecurityPolicies and SecurityOverrides whose access policies could
    /// not be built (`failures`: the access policy's name and the builder's error, its
    /// field a path under the policy's `spec`): each one's status, for the policy and
    /// every target, becomes `Accepted=False`, `Invalid`, the message naming the field,
    /// as if translation had refused it. Built outside this crate (the gateway builds
    /// specs into `gatekit-auth` layers), such an error would otherwise reach only the
    /// log and `/config`. Names of other sources (an HTTPRoute's `ExternalAuth` filter)
    /// or unknown names are skipped.
    pub fn refuse_access_policies<'e>(
        &mut self,
        failures: impl IntoIterator<Item = (&'e str, &'e ConfigError)>,
    ) {
        let access = &self.access;
        self.statuses
            .modify(|statuses| access::refuse_built(access, statuses, failures));
    }
}

/// Translates resources into listeners, routes, upstreams and statuses: everything,
/// from scratch (see [`Translator`] for the incremental form).
pub fn translate(resources: &ResourceSet, options: &TranslateOptions) -> Translation {
    translator::translate_full(resources, options)
}
