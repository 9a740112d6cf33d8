//! What a server knows about the client connection a request came on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderValue;
use rustls::pki_types::CertificateDer;

use crate::proxy::ForwardClientCertMode;
use crate::tls::{ClientIdentity, ListenerConfig};

/// Facts about the downstream connection, put in request extensions by the server that
/// accepted it, and the request's client.
///
/// Two addresses: [`peer_addr`](Self::peer_addr) is the connection's peer (the socket's,
/// or the source of a trusted PROXY protocol header); [`remote_addr`](Self::remote_addr)
/// is the client, which is the peer unless the listener's
/// [`ClientIpDetection`](crate::client_ip::ClientIpDetection) found the client behind
/// trusted proxies (`X-Forwarded-For`, a custom header). Everything that asks "who is
/// the client" reads `remote_addr`: access rules by CIDR, rate limits keyed or matched
/// by client address, IP-hash balancing, the access log, external authorization.
/// The proxy appends `peer_addr` to `X-Forwarded-For` (the hop it saw) and uses
/// the TLS facts ([`TlsInfo`]) for `X-Forwarded-Proto` and `x-forwarded-client-cert`.
///
/// # Cost
///
/// Every request carries a clone. A plaintext connection's info is plain values
/// (no allocation, no reference count); a TLS connection's facts live behind one `Arc`
/// built once per handshake, so a per-request clone is one reference-count increment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client: `peer`, or the address found behind trusted proxies.
    remote: SocketAddr,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<Arc<TlsInfo>>,
    forward_client_cert: ForwardClientCertMode,
}

impl ConnectionInfo {
    /// Describes a connection from `remote` accepted on `local`; `tls` tells whether it was
    /// TLS-terminated by the gateway (with no further TLS facts; see
    /// [`with_tls`](Self::with_tls)).
    pub fn new(remote: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        Self {
            remote,
            peer: remote,
            local,
            tls: tls.then(|| Arc::new(TlsInfo::default())),
            forward_client_cert: ForwardClientCertMode::default(),
        }
    }

    /// Describes a TLS connection from `remote` accepted on `local`, whose handshake
    /// produced `tls`.
    pub fn with_tls(remote: SocketAddr, local: SocketAddr, tls: TlsInfo) -> Self {
        Self {
            remote,
            peer: remote,
            local,
            forward_client_cert: tls.forward_client_cert,
            tls: Some(Arc::new(tls)),
        }
    }

    /// Sets what happens to a request's `x-forwarded-client-cert` (default
    /// [`SanitizeSet`](ForwardClientCertMode::SanitizeSet), or the mode of the TLS
    /// settings the handshake chose).
    #[must_use]
    pub const fn with_forward_client_cert(mut self, mode: ForwardClientCertMode) -> Self {
        self.forward_client_cert = mode;
        self
    }

    /// What happens to a request's `x-forwarded-client-cert` (see
    /// [`proxy`](crate::proxy::xfcc)).
    pub const fn forward_client_cert(&self) -> ForwardClientCertMode {
        self.forward_client_cert
    }

    /// Names `client` as the request's client, found behind the trusted proxies in front
    /// of the peer: [`remote_addr`](Self::remote_addr) becomes `client` with port 0 (the
    /// client's port is not known), [`peer_addr`](Self::peer_addr) stays.
    #[must_use]
    pub const fn with_client_ip(mut self, client: IpAddr) -> Self {
        self.remote = SocketAddr::new(client, 0);
        self
    }

    /// The client's address: the peer's, or the one the listener's client address
    /// detection found behind trusted proxies (then with port 0).
    pub const fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The connection's peer: the socket's remote address, or the source address of a
    /// PROXY protocol header from a trusted source. The hop gatekit appends to
    /// `X-Forwarded-For`.
    pub const fn peer_addr(&self) -> SocketAddr {
        self.peer
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
/// ALPN protocol agreed on, the certificate chain the client presented and, when the
/// listener verified it, the client's [`ClientIdentity`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    server_name: Option<Box<str>>,
    alpn: Option<Box<[u8]>>,
    version: Option<rustls::ProtocolVersion>,
    peer_certificates: Option<Box<[CertificateDer<'static>]>>,
    identity: Option<ClientIdentity>,
    /// This gateway's `x-forwarded-client-cert` element for `identity`.
    xfcc: Option<HeaderValue>,
    forward_client_cert: ForwardClientCertMode,
    strict_sni: bool,
}

impl TlsInfo {
    /// The facts of the completed handshake on `conn`.
    pub fn from_connection(conn: &rustls::ServerConnection) -> Self {
        Self {
            server_name: conn.server_name().map(Into::into),
            alpn: conn.alpn_protocol().map(Into::into),
            version: conn.protocol_version(),
            peer_certificates: conn
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .map(Into::into),
            ..Self::default()
        }
    }

    /// The facts of the completed handshake on `conn`, which ran with `config`: the
    /// client's identity when `config` verified its certificate, with the
    /// `x-forwarded-client-cert` element `config`'s settings ask for. `strict_sni` marks
    /// a port whose listeners differ in TLS settings: the router then holds a request
    /// to the listener the server name chose even when the client sent none.
    pub fn from_handshake(
        conn: &rustls::ServerConnection,
        config: &ListenerConfig,
        strict_sni: bool,
    ) -> Self {
        let mut info = Self::from_connection(conn);
        let forward = config.settings().forward_client_cert_policy();
        info.forward_client_cert = forward.mode;
        info.strict_sni = strict_sni;
        if config.settings().client().is_some()
            && let Some(chain) = info.peer_certificates.as_deref()
            && config.is_verified(chain)
        {
            info.identity = ClientIdentity::from_chain(chain);
            info.xfcc = info
                .identity
                .as_ref()
                .and_then(|id| crate::proxy::xfcc::element(id, forward.details));
        }
        info
    }

    /// Facts with only a server name, for tests of what reads it.
    #[cfg(test)]
    pub(crate) fn with_server_name(name: &str) -> Self {
        Self {
            server_name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Facts with a verified identity (or none), for tests of what reads it.
    #[cfg(test)]
    pub(crate) fn for_identity(
        identity: Option<ClientIdentity>,
        details: crate::proxy::CertDetails,
    ) -> Self {
        let xfcc = identity
            .as_ref()
            .and_then(|id| crate::proxy::xfcc::element(id, details));
        Self {
            identity,
            xfcc,
            ..Self::default()
        }
    }

    /// The client's verified certificate identity, if the listener asked for a client
    /// certificate and the one presented verified.
    pub fn client_identity(&self) -> Option<&ClientIdentity> {
        self.identity.as_ref()
    }

    /// This gateway's `x-forwarded-client-cert` element for the verified identity.
    pub fn forwarded_client_cert(&self) -> Option<&HeaderValue> {
        self.xfcc.as_ref()
    }

    /// Whether the port's listeners differ in TLS settings, so that a request must go to
    /// the listener the handshake's server name (or its absence) chose.
    pub fn strict_sni(&self) -> bool {
        self.strict_sni
    }

    /// The server name the client sent (SNI), if it sent one.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The application protocol agreed on by ALPN (`h2`, `http/1.1`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// The TLS version negotiated, as logs name it (`TLSv1.3`, `TLSv1.2`).
    pub fn protocol_version(&self) -> Option<&'static str> {
        match self.version? {
            rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            rustls::ProtocolVersion::TLSv1_1 => Some("TLSv1.1"),
            rustls::ProtocolVersion::TLSv1_0 => Some("TLSv1.0"),
            _ => Some("unknown"),
        }
    }

    /// The certificate chain the client presented, end-entity first; `None` when it
    /// presented none or the listener asked for none. Verified unless the listener's
    /// mode is [`InsecureFallback`](crate::tls::ClientCertMode::InsecureFallback): see
    /// [`client_identity`](Self::client_identity).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.peer_certificates.as_deref()
    }
}
