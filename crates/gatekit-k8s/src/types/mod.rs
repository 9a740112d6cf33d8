//! The Kubernetes types gatekit reads, in one place.
//!
//! Gateway API kinds come from the `gateway-api` crate (kopium-generated from the
//! Gateway API CRDs, `gateway.networking.k8s.io/v1`), core kinds from `k8s-openapi`.
//! Everything else in this crate names these aliases, so moving to newer crates (or
//! vendored types) touches only this module.
//!
//! `ReferenceGrant` exists as `v1beta1` and `v1` with an identical schema; the crate
//! only has the `v1` type, and gatekit reads `v1beta1` documents into it.

pub mod policy;

pub use gateway_api::gatewayclasses::{GatewayClass, GatewayClassSpec};
pub use gateway_api::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutes,
    GatewayListenersAllowedRoutesNamespaces, GatewayListenersAllowedRoutesNamespacesFrom,
    GatewayListenersTlsCertificateRefs, GatewayListenersTlsMode, GatewaySpec,
};
pub use gateway_api::grpcroutes::{GrpcRoute, GrpcRouteSpec};
pub use gateway_api::httproutes::{HttpRoute, HttpRouteSpec};
pub use gateway_api::referencegrants::{ReferenceGrant, ReferenceGrantSpec};
pub use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
pub use k8s_openapi::api::discovery::v1::EndpointSlice;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use self::policy::{BackendPolicy, BackendPolicySpec};

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// gatekit's own API group.
pub const GATEKIT_GROUP: &str = "gatekit.io";
/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
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
