//! The endpoint vocabulary: what discovery produces and balancers consume.

use std::net::SocketAddr;
use std::sync::Arc;

/// Whether an endpoint may take new requests, as Kubernetes EndpointSlice conditions
/// describe it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointState {
    /// Ready and serving: takes new requests.
    #[default]
    Ready,
    /// Terminating but still serving: gets new requests only when nothing else is left;
    /// requests already in flight complete.
    Terminating,
    /// Not serving: gets no new requests.
    NotReady,
}

/// One network endpoint of an upstream: an address plus what balancers weigh it by.
///
/// Cheap to clone (the optional labels are shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    addr: SocketAddr,
    weight: u32,
    state: EndpointState,
    zone: Option<Arc<str>>,
    cluster: Option<Arc<str>>,
    hostname: Option<Arc<str>>,
}

impl From<SocketAddr> for Endpoint {
    /// [`Endpoint::new`]: ready, weight 1, no locality.
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr)
    }
}

impl Endpoint {
    /// A ready endpoint at `addr` with weight 1 and no locality.
    pub const fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            weight: 1,
            state: EndpointState::Ready,
            zone: None,
            cluster: None,
            hostname: None,
        }
    }

    /// Sets the relative weight (0 means: never picked while any other endpoint is usable).
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the readiness state.
    #[must_use]
    pub fn with_state(mut self, state: EndpointState) -> Self {
        self.state = state;
        self
    }

    /// Sets the zone (topology locality) label.
    #[must_use]
    pub fn with_zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Sets the cluster this endpoint was discovered in.
    #[must_use]
    pub fn with_cluster(mut self, cluster: impl Into<Arc<str>>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }

    /// Sets the endpoint's host name (for example a pod's hostname), informational.
    #[must_use]
    pub fn with_hostname(mut self, hostname: impl Into<Arc<str>>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// The endpoint's address; it is the endpoint's identity in an upstream.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relative weight.
    pub const fn weight(&self) -> u32 {
        self.weight
    }

    /// The readiness state.
    pub const fn state(&self) -> EndpointState {
        self.state
    }

    /// The zone label, if known.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// The cluster label, if known.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The host name, if known.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }
}

/// A change to an upstream's endpoint set. Endpoints are identified by address.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Adds an endpoint, or updates the one with the same address.
    Insert(Endpoint),
    /// Removes the endpoint with this address; requests in flight to it complete.
    Remove(SocketAddr),
    /// Replaces the whole set (a re-list). Consumers diff it against what they hold, so
    /// endpoints present before and after keep their state.
    Replace(Vec<Endpoint>),
}
