//! The stream route model: plain data, built by providers or code.

use std::sync::Arc;
use std::time::Duration;

use super::access::StreamAccess;
use crate::route::RouteId;

/// A route for streams: which connections (or UDP flows) it takes and the weighted
/// backends they go to. One model for TLSRoute (hostnames match the ClientHello's SNI),
/// TCPRoute and UDPRoute (no hostnames).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamRoute {
    /// Identity, also the last precedence tie-breaker (namespace/name, alphabetical).
    pub id: RouteId,
    /// Hostnames (exact or `*.` wildcard, lowercase), already intersected with the
    /// listener's; matched against the SNI. Empty matches every connection.
    pub hostnames: Vec<String>,
    /// Creation time (for example Unix seconds of `metadata.creationTimestamp`); older
    /// routes win precedence ties.
    pub created: i64,
    /// Weighted backends; a connection picks one by weight. None (or none that
    /// resolves): the connection is closed.
    pub backends: Vec<StreamBackendRef>,
    /// How long a connection (or UDP flow) may pass no byte before it is closed;
    /// `None`: the listener's default.
    pub idle_timeout: Option<Duration>,
    /// Most connections (UDP: flows) open through this route at once, on each port
    /// that serves it; beyond it a new one is closed (a UDP flow's datagrams dropped)
    /// before any backend is contacted. `None`: no limit of its own.
    pub max_connections: Option<u32>,
    /// Checks of the client address (outermost first); a connection (UDP: flow) one
    /// of them denies is closed (its datagrams dropped) before any backend is
    /// contacted and reported as [`Refusal::Denied`](super::Refusal::Denied). Empty:
    /// no check, and no cost.
    pub access: Vec<Arc<StreamAccess>>,
}

impl StreamRoute {
    /// An empty route with this id: every hostname, created at time 0, no backends.
    pub fn new(id: RouteId) -> Self {
        Self {
            id,
            hostnames: Vec::new(),
            created: 0,
            backends: Vec::new(),
            idle_timeout: None,
            max_connections: None,
            access: Vec::new(),
        }
    }
}

/// A weighted reference to a stream backend, by name (the same names as HTTP
/// backends: `"<namespace>/<service>:<port>"` from Kubernetes).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamBackendRef {
    /// The backend's name. A name that does not resolve gets no connection (its share
    /// of connections is closed, as an invalid HTTP backendRef answers 500).
    pub name: String,
    /// Relative weight; 0 means never chosen.
    pub weight: u32,
}

impl StreamBackendRef {
    /// A reference to `name` with `weight`.
    pub fn new(name: impl Into<String>, weight: u32) -> Self {
        Self {
            name: name.into(),
            weight,
        }
    }
}
