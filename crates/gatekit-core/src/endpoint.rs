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
/// Cheap to clone (the optional labels are shared), and small: an endpoint without
/// zone, cluster or hostname is 48 bytes, the labels one pointer when absent.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    addr: SocketAddr,
    weight: u32,
    state: EndpointState,
    /// `None`: no zone, cluster or hostname (most endpoints), without an allocation.
    labels: Option<Arc<Labels>>,
}

/// The optional labels of an [`Endpoint`], kept apart: most endpoints have none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Labels {
    zone: Option<Arc<str>>,
    cluster: Option<Arc<str>>,
    hostname: Option<Arc<str>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("weight", &self.weight)
            .field("state", &self.state)
            .field("zone", &self.zone())
            .field("cluster", &self.cluster())
            .field("hostname", &self.hostname())
            .finish()
    }
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
            labels: None,
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
        self.labels_mut().zone = Some(zone.into());
        self
    }

    /// Sets the cluster this endpoint was discovered in.
    #[must_use]
    pub fn with_cluster(mut self, cluster: impl Into<Arc<str>>) -> Self {
        self.labels_mut().cluster = Some(cluster.into());
        self
    }

    /// Sets the endpoint's host name (for example a pod's hostname), informational.
    #[must_use]
    pub fn with_hostname(mut self, hostname: impl Into<Arc<str>>) -> Self {
        self.labels_mut().hostname = Some(hostname.into());
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
        self.labels.as_deref()?.zone.as_deref()
    }

    /// The cluster label, if known.
    pub fn cluster(&self) -> Option<&str> {
        self.labels.as_deref()?.cluster.as_deref()
    }

    /// The host name, if known.
    pub fn hostname(&self) -> Option<&str> {
        self.labels.as_deref()?.hostname.as_deref()
    }

    /// The labels, made (or unshared) for a change.
    fn labels_mut(&mut self) -> &mut Labels {
        Arc::make_mut(self.labels.get_or_insert_with(Default::default))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cost_nothing_when_absent_and_are_copied_on_change() {
        assert!(std::mem::size_of::<Endpoint>() <= 48);
        let plain = Endpoint::new(SocketAddr::from(([10, 0, 0, 1], 80)));
        assert!(plain.labels.is_none());
        assert_eq!(
            (plain.zone(), plain.cluster(), plain.hostname()),
            (None, None, None)
        );
        let zoned = plain.clone().with_zone("a").with_hostname("h");
        let copy = zoned.clone();
        let moved = copy.clone().with_zone("b").with_cluster("c");
        assert_eq!(
            (zoned.zone(), zoned.cluster(), zoned.hostname()),
            (Some("a"), None, Some("h"))
        );
        assert_eq!(
            (moved.zone(), moved.cluster(), moved.hostname()),
            (Some("b"), Some("c"), Some("h"))
        );
        assert_eq!(copy, zoned);
        assert_ne!(moved, zoned);
        assert_ne!(plain, zoned);
        assert!(format!("{zoned:?}").contains(r#"zone: Some("a")"#));
    }
}
