//! What a server knows about the client connection a request came on.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// Facts about the downstream connection, put in request extensions by the server that
/// accepted it. The proxy uses it for `X-Forwarded-For` / `X-Forwarded-Proto`; balancers
/// use the peer address for IP hashing; policies read the TLS facts ([`TlsInfo`]).
///
/// # Cost
///
/// Every request carries a clone. A plaintext connection's info is three plain values
/// (no allocation, no reference count); a TLS connection's facts live behind one `Arc`
/// built once per handshake, so a per-request clone is one reference-count increment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    remote: SocketAddr,
    local: SocketAddr,
    tls: Option<Arc<TlsInfo>>,
}

impl ConnectionInfo {
    /// Describes a connection from `remote` accepted on `local`; `tls` tells whether it was
    /// TLS-terminated by the gateway (with no further TLS facts; see
    /// [`with_tls`](Self::with_tls)).
    pub fn new(remote: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        Self {
            remote,
            local,
            tls: tls.then(|| Arc::new(TlsInfo::default())),
        }
    }

    /// Describes a TLS connection from `remote` accepted on `local`, whose handshake
    /// produced `tls`.
    pub fn with_tls(remote: SocketAddr, local: SocketAddr, tls: TlsInfo) -> Self {
        Self {
            remote,
            local,
            tls: Some(Arc::new(tls)),
        }
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
        self.tls.is_some()
    }

    /// What the TLS handshake established, when the gateway terminated TLS.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }
}

/// What a server-side TLS handshake established: the SNI name the client asked for, the
/// ALPN protocol agreed on and the certificate chain the client presented.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    server_name: Option<Box<str>>,
    alpn: Option<Box<[u8]>>,
    peer_certificates: Option<Box<[CertificateDer<'static>]>>,
}

impl TlsInfo {
    /// The facts of the completed handshake on `conn`.
    pub fn from_connection(conn: &rustls::ServerConnection) -> Self {
        Self {
            server_name: conn.server_name().map(Into::into),
            alpn: conn.alpn_protocol().map(Into::into),
            peer_certificates: conn
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .map(Into::into),
        }
    }

    /// Facts with only a server name, for tests of what reads it.
    #[cfg(test)]
    pub(crate) fn with_server_name(name: &str) -> Self {
        Self {
            server_name: Some(name.into()),
            ..Self::default()
        }
    }

    /// The server name the client sent (SNI), if it sent one.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The application protocol agreed on by ALPN (`h2`, `http/1.1`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// The certificate chain the client presented, end-entity first; `None` when it
    /// presented none. (gatekit does not request client certificates yet, so this is
    /// `None` unless the server's rustls config asks for one.)
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.peer_certificates.as_deref()
    }
}
