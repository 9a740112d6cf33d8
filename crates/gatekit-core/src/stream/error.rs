//! [`StreamError`]: why a stream connection or UDP flow ended without being relayed.

use std::net::SocketAddr;

use crate::tls::{ClientHelloError, TlsError};

/// Why a stream connection was closed before (or while) being relayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The connection did not start with a usable TLS ClientHello.
    #[error(transparent)]
    ClientHello(#[from] ClientHelloError),
    /// The TLS port has no listener or route for the connection's SNI (or it sent none).
    #[error("no stream route for server name {0:?}")]
    NoRoute(Option<String>),
    /// The route's picked backend does not resolve (its share of connections is closed).
    #[error("the stream route's backend is not valid")]
    InvalidBackend,
    /// The route already had its `max_connections` open.
    #[error("the stream route has its most connections open")]
    Limit,
    /// A client-address check of the route denied the client.
    #[error("the stream route's client address check denied the connection")]
    Denied,
    /// The backend had no endpoint to pick.
    #[error("no endpoint to connect to")]
    NoEndpoint,
    /// Connecting to the backend failed (the last attempt's error).
    #[error("connecting to {addr} failed")]
    Connect {
        /// The endpoint of the last attempt.
        addr: SocketAddr,
        /// Its error.
        #[source]
        source: std::io::Error,
    },
    /// Terminating TLS failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
}
