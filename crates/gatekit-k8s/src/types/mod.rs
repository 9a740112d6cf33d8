//! The Kubernetes types gatekit reads, in one place.
//!
//! Gateway API kinds come from the `gateway-api` crate (kopium-generated from the
//! Gateway API CRDs, `gateway.networking.k8s.io/v1`), core kinds from `k8s-openapi`.
//! Everything else in this crate names these aliases, so moving to newer crates (or
//! vendored types) touches only this module.
//!
//! `ReferenceGrant` exists as `v1beta1` and `v1` with an identical schema; the crate
//! only has the `v1` type, and gatekit reads `v1beta1` documents into it.
//!
//! `HTTPRoute` is the crate's *experimental* type, a superset of the standard one with
//! the same names: it carries `spec.rules[].retry` (GEP-1731, Standard since Gateway
//! API v1.7, which the crate's standard v1.5 types lack) and the experimental filters,
//! so those are read rather than dropped, whether from files or from clusters.
//!
//! gatekit's own kinds: [`BackendPolicy`] (per Service) and [`TrafficPolicy`] (per
//! Gateway, listener, route or rule), both with a [`PolicyStatus`] (GEP-713 ancestors);
//! and Envoy Gateway's [`BackendTrafficPolicy`], [`ClientTrafficPolicy`] and
//! [`SecurityPolicy`], read for migrations; [`SecurityOverride`] (GEP-713 overrides of
//! access checks, per Gateway or listener).
//!
//! [`XBackendTrafficPolicy`] (`gateway.networking.x-k8s.io/v1alpha1`, GEP-1619 session
//! persistence and GEP-3388 retry constraints per Service) is gatekit's own type: its
//! `sessionPersistence` reads both the Gateway API v1.7 shape (`cookie`, `header`) and
//! the v1.5/v1.6 one the crate carries (see [`xbtp`]).
//!
//! Services and EndpointSlices are parsed as `k8s-openapi` objects and kept in a
//! [`ResourceSet`](crate::ResourceSet) in the compact forms of [`compact`]: only what
//! translation reads. HTTPRoutes are parsed as `gateway-api` objects and kept as
//! [`CompactHttpRoute`]s ([`compact_route`]): the spec as parsed without its unused
//! room, and what is read of the metadata.

pub mod btp;
pub mod compact;
pub mod compact_route;
pub mod ctp;
pub mod policy;
pub mod policy_status;
pub mod security;
pub mod traffic;
pub mod xbtp;

pub use gateway_api::backendtlspolicies::{
    BackendTlsPolicy, BackendTlsPolicySpec, BackendTlsPolicyValidationSubjectAltNamesType,
};
pub use gateway_api::experimental::httproutes::{HttpRoute, HttpRouteSpec};
pub use gateway_api::experimental::tcproutes::{TcpRoute, TcpRouteSpec};
pub use gateway_api::experimental::tlsroutes::{TlsRoute, TlsRouteSpec};
pub use gateway_api::experimental::udproutes::{UdpRoute, UdpRouteSpec};
pub use gateway_api::gatewayclasses::{GatewayClass, GatewayClassSpec};
pub use gateway_api::gateways::{
    Gateway, GatewayAllowedListenersNamespacesFrom, GatewayListeners,
    GatewayListenersAllowedRoutes, GatewayListenersAllowedRoutesNamespaces,
    GatewayListenersAllowedRoutesNamespacesFrom, GatewayListenersTlsCertificateRefs,
    GatewayListenersTlsMode, GatewaySpec,
};
pub use gateway_api::grpcroutes::{GrpcRoute, GrpcRouteSpec};
pub use gateway_api::listenersets::{ListenerSet, ListenerSetListeners, ListenerSetSpec};
pub use gateway_api::referencegrants::{ReferenceGrant, ReferenceGrantSpec};
pub use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
pub use k8s_openapi::api::discovery::v1::EndpointSlice;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

pub use self::btp::{BackendTrafficPolicy, BackendTrafficPolicySpec};
pub use self::compact::{CompactEndpointSlice, CompactService, Object, name_hash};
pub use self::compact_route::{CompactHttpRoute, CompactMeta};
pub use self::ctp::{ClientTrafficPolicy, ClientTrafficPolicySpec};
pub use self::policy::{BackendPolicy, BackendPolicySpec};
pub use self::policy_status::{PolicyAncestorRef, PolicyAncestorStatus, PolicyStatus};
pub use self::security::{
    SecurityOverride, SecurityOverrideSpec, SecurityPolicy, SecurityPolicySpec,
};
pub use self::traffic::{TrafficPolicy, TrafficPolicySpec};
pub use self::xbtp::{
    XBackendTrafficPolicy, XBackendTrafficPolicySpec, XBackendTrafficPolicyStatus,
};
pub use gatekit_core::small_list::SmallList;

use gatekit_core::ConfigError;

/// What a resource must satisfy beyond its schema. The loaders (manifests and the
/// cluster watchers) refuse a resource that fails, exactly as they refuse one that does
/// not parse; translation never sees it. Only gatekit's policies have such checks.
pub(crate) trait Check {
    /// Rewrites the raw document before it is typed, or every problem with its field
    /// path. Both loaders (manifests and the cluster watchers) run it. HTTPRoute's
    /// turns the Gateway API v1.7 `sessionPersistence` of its rules into the v1.6
    /// fields the crate's rule type has (`translate::session`); TLSRoute's fills in the
    /// `hostnames` older versions may leave out.
    fn prepare(_doc: &mut serde_json::Value) -> Vec<ConfigError>
    where
        Self: Sized,
    {
        Vec::new()
    }

    /// Every problem, each with its field path (`spec...`).
    fn check(&self) -> Result<(), Vec<ConfigError>> {
        Ok(())
    }

    /// Remarks on a resource that is read anyway (an abbreviation accepted).
    fn warnings(&self) -> Vec<ConfigError> {
        Vec::new()
    }
}

impl Check for GatewayClass {}
impl Check for Gateway {}
impl Check for HttpRoute {
    fn prepare(doc: &mut serde_json::Value) -> Vec<ConfigError> {
        crate::translate::inline_v17_sessions(doc)
    }
}
impl Check for GrpcRoute {}
impl Check for TlsRoute {
    /// `v1alpha2` and `v1alpha3` TLSRoutes may leave out `hostnames` (every SNI the
    /// listener takes); the crate's type requires the field, so an empty list is put in.
    fn prepare(doc: &mut serde_json::Value) -> Vec<ConfigError> {
        if let Some(spec) = doc
            .get_mut("spec")
            .and_then(serde_json::Value::as_object_mut)
        {
            spec.entry("hostnames")
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        }
        Vec::new()
    }
}
impl Check for TcpRoute {}
impl Check for UdpRoute {}
impl Check for ConfigMap {}
impl Check for BackendTlsPolicy {}
impl Check for ListenerSet {}
impl Check for ReferenceGrant {}
impl Check for Service {}
impl Check for Namespace {}
impl Check for EndpointSlice {}
impl Check for Secret {}
impl Check for XBackendTrafficPolicy {}
impl Check for ClientTrafficPolicy {}
impl Check for SecurityPolicy {}
impl Check for SecurityOverride {}

impl Check for BackendPolicy {
    fn check(&self) -> Result<(), Vec<ConfigError>> {
        self.spec.validate()
    }
}

impl Check for TrafficPolicy {
    fn check(&self) -> Result<(), Vec<ConfigError>> {
        self.spec.validate()
    }
}

impl Check for BackendTrafficPolicy {
    fn check(&self) -> Result<(), Vec<ConfigError>> {
        self.spec.validate()
    }

    fn warnings(&self) -> Vec<ConfigError> {
        self.spec.warnings()
    }
}

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The Gateway API's experimental group (`X`-prefixed kinds).
pub const GATEWAY_X_GROUP: &str = "gateway.networking.x-k8s.io";
/// gatekit's own API group.
pub const GATEKIT_GROUP: &str = "gatekit.io";
/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The name of the Service `slice` belongs to (its [`SERVICE_NAME_LABEL`]), if any.
pub fn slice_service(slice: &EndpointSlice) -> Option<&String> {
    slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)
}
/// The label the Kubernetes provider puts on (its in-memory copies of) EndpointSlices:
/// the name of the cluster they were read from.
pub const CLUSTER_LABEL: &str = "gatekit.io/cluster";
/// The label every Namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The Secret type of TLS certificates.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The `appProtocol` value for cleartext HTTP/2 (prior knowledge).
pub const APP_PROTOCOL_H2C: &str = "kubernetes.io/h2c";
/// The `appProtocol` value for WebSocket over cleartext HTTP/1.1.
pub const APP_PROTOCOL_WS: &str = "kubernetes.io/ws";
