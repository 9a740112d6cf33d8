//! [`StreamObserver`]: who hears of stream connections and UDP flows, for metrics.

use std::time::Duration;

use crate::route::RouteId;

/// Why a stream connection was closed without being relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// Its first bytes were not a usable ClientHello (or none came in time).
    ClientHello,
    /// No listener or route took it (its SNI, or no SNI on a TLS port).
    NoRoute,
    /// Its route's picked backend does not resolve.
    InvalidBackend,
    /// No endpoint of the backend could be connected to.
    NoBackend,
    /// The TLS handshake (termination) failed.
    Handshake,
    /// Its route had `max_connections` open (UDP: flows); closed before any backend
    /// was contacted.
    Limit,
    /// A client-address check of its route ([`StreamAccess`](super::StreamAccess))
    /// denied it; closed before any backend was contacted.
    Denied,
}

impl Refusal {
    /// A short name for logs and metric labels (`no_route`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientHello => "client_hello",
            Self::NoRoute => "no_route",
            Self::InvalidBackend => "invalid_backend",
            Self::NoBackend => "no_backend",
            Self::Handshake => "handshake",
            Self::Limit => "limit",
            Self::Denied => "denied",
        }
    }
}

/// What a stream connection or UDP flow did, reported when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Bytes (UDP: payload bytes) received from the client.
    pub received: u64,
    /// Bytes sent to the client.
    pub sent: u64,
    /// How long it was open.
    pub duration: Duration,
}

/// Hears of a stream port's connections and flows; every method does nothing by
/// default. Called on connection tasks: keep them cheap.
pub trait StreamObserver: Send + Sync + 'static {
    /// A connection (UDP: a flow) was given to `route` and its backend connected.
    fn opened(&self, route: &RouteId) {
        let _ = route;
    }

    /// An [`opened`](Self::opened) connection or flow ended (also when a drain dropped it).
    fn closed(&self, route: &RouteId, stats: &StreamStats) {
        let _ = (route, stats);
    }

    /// A connection was closed without being relayed; `route` when one was chosen.
    fn refused(&self, route: Option<&RouteId>, reason: Refusal) {
        let _ = (route, reason);
    }

    /// A UDP datagram was dropped: a new flow over the listener's flow bound, no route,
    /// or no backend (`route` when one was chosen).
    fn dropped_datagram(&self, route: Option<&RouteId>) {
        let _ = route;
    }
}
