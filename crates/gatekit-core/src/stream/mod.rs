//! Streams that are not HTTP: TLS passthrough (routed by the ClientHello's SNI), TCP
//! and UDP, as Gateway API TLSRoute, TCPRoute and UDPRoute describe them.
//!
//! This module holds the route model shared by providers (gatekit-k8s translates
//! TLSRoutes, TCPRoutes and UDPRoutes into it) and the stream data plane.

mod model;

pub use self::model::{StreamBackendRef, StreamRoute};
