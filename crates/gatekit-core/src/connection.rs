//! What a server knows about the client connection a request came on.

use std::net::SocketAddr;

/// Facts about the downstream connection, put in request extensions by the server that
/// accepted it. The proxy uses it for `X-Forwarded-For` / `X-Forwarded-Proto`; balancers
/// use the peer address for IP hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    remote: SocketAddr,
    local: SocketAddr,
    tls: bool,
}

impl ConnectionInfo {
    /// Describes a connection from `remote` accepted on `local`; `tls` tells whether it was
    /// TLS-terminated by the gateway.
    pub const fn new(remote: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        Self { remote, local, tls }
    }

    /// The client's address.
    pub const fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The address the connection was accepted on.
    pub const fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the gateway terminated TLS on this connection.
    pub const fn is_tls(&self) -> bool {
        self.tls
    }
}
