//! Streams that are not HTTP: TLS passthrough and termination routed by the ClientHello's
//! SNI, plain TCP and UDP, as Gateway API TLSRoute, TCPRoute and UDPRoute describe them.
//!
//! This module holds the route model shared by providers (gatekit-k8s translates
//! TLSRoutes, TCPRoutes and UDPRoutes into it) and the stream data plane.
//!
//! # A TCP connection's way
//!
//! ```text
//! Server accept loop (the same as HTTP's: limits, drain, observer, PROXY protocol)
//!   ─▶ StreamRouter::serve_connection, with the table current at accept
//!   ─▶ [TLS port] read the ClientHello under a deadline, keep its bytes (Rewind);
//!      not TLS, malformed, > 16 KiB: closed
//!   ─▶ StreamTable: listener by SNI, route by hostname (or the oldest), backend by weight;
//!      none: closed before any backend is contacted
//!   ─▶ the route's client-address checks (StreamAccess), if any: denied, closed
//!      before any backend is contacted (on a TLS port: after the ClientHello was
//!      read, before any byte of it is relayed or a handshake starts)
//!   ─▶ [Terminate] TLS handshake with the listener's certificates
//!   ─▶ StreamBackend::connect: pick an endpoint, connect under a deadline, another
//!      endpoint after a failure (bounded), [PROXY protocol header]
//!   ─▶ relay: 16 KiB per direction, half-close, idle timeout; bytes counted
//! ```
//!
//! A drain leaves stream connections alone until its deadline, then closes them.
//!
//! # Limits and idle timeouts
//!
//! A route's [`max_connections`](StreamRoute::max_connections) bounds the connections
//! (UDP: flows) open through it on a port; the one over it is closed (its datagrams
//! dropped) before any backend is contacted and reported as [`Refusal::Limit`]. The
//! count is handed from table to table by route id, so a reload neither resets it nor
//! lets it be exceeded. The idle timeout of a connection is its route's, else its
//! listener's ([`StreamListener::idle_timeout`]), else [`DEFAULT_TCP_IDLE_TIMEOUT`] /
//! [`DEFAULT_UDP_IDLE_TIMEOUT`]. A bound on the connections of a whole port is the
//! server's (a [`ConnectionLimit`](crate::server::ConnectionLimit) given with
//! [`Server::port_limit`](crate::server::Server::port_limit)).
//!
//! # Client address checks
//!
//! A route's [`access`](StreamRoute::access) checks ([`StreamAccess`]: ordered allow and
//! deny rules by [`Cidr`](crate::ratelimit::Cidr), first match decides, else a default)
//! are made on the client address
//! ([`ConnectionInfo::remote_addr`](crate::ConnectionInfo::remote_addr): the TCP peer,
//! or the source of a PROXY protocol header from a trusted range) as soon as the route
//! is known: at accept on a TCP port, right after the ClientHello (whose SNI picks the
//! route) on a TLS port, when a UDP flow would start. A denied connection is closed
//! before any backend is contacted, before it takes a place under `max_connections`,
//! and reported as [`Refusal::Denied`]; a denied UDP client gets no flow (its datagrams
//! are dropped). A route without checks pays one emptiness test.
//!
//! # UDP
//!
//! A [`UdpRelay`] keeps one flow per client address: a connected socket of its own to
//! an endpoint picked when the flow starts; replies go back to that client. Flows end
//! after an idle timeout ([`DEFAULT_UDP_IDLE_TIMEOUT`]) and are bounded in number
//! ([`DEFAULT_MAX_UDP_FLOWS`]); a new flow's datagrams beyond the bound are dropped and
//! counted.

mod access;
mod backend;
mod error;
mod model;
mod observer;
mod relay;
mod rewind;
mod router;
mod table;
mod udp;

#[cfg(test)]
mod tests;

pub use self::access::StreamAccess;
pub use self::backend::{
    DEFAULT_CONNECT_ATTEMPTS, DEFAULT_CONNECT_TIMEOUT, StreamBackend, StreamEndpoint,
    StreamUpstream,
};
pub use self::error::StreamError;
pub use self::model::{StreamBackendRef, StreamRoute};
pub use self::observer::{Refusal, StreamObserver, StreamStats};
pub use self::rewind::Rewind;
pub use self::router::StreamRouter;
pub use self::table::{
    DEFAULT_TCP_IDLE_TIMEOUT, DEFAULT_UDP_IDLE_TIMEOUT, ListenerMode, StreamListener, StreamTable,
};
pub use self::udp::{DEFAULT_MAX_UDP_FLOWS, UdpHandle, UdpRelay};
