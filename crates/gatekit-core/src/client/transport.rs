//! How the client talks to one upstream: protocol and TLS.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::ConfigError;

/// The HTTP protocol spoken to an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive (the default). Connections are pooled, one request at a
    /// time each.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge: over TLS with ALPN `h2`, or cleartext (h2c) without
    /// TLS, as for a Kubernetes Service port with `appProtocol: kubernetes.io/h2c`. One
    /// multiplexed connection per endpoint.
    Http2,
    /// With TLS: offer ALPN `h2` then `http/1.1` and use what the upstream picks. Without
    /// TLS: HTTP/1.1 (there is no negotiation in cleartext without an upgrade round trip).
    Auto,
}

/// TLS settings for connections to an upstream: which roots verify the upstream's
/// certificate and which name it must carry.
///
/// Verification is always on; there is deliberately no "skip verification" switch.
///
/// # Server name
///
/// The name sent as SNI and verified against the certificate is the configured
/// [`server_name`](Self::server_name). Without one, the endpoint's IP address is used
/// (the certificate then needs an IP address SAN). The name is never taken from a
/// request's `Host`: connections are pooled per endpoint and shared by every request to
/// it, so a connection verified for one host must not carry another host's requests.
/// This matches the Gateway API's `BackendTLSPolicy`, whose `hostname` is required.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl TlsSettings {
    /// Verifies upstream certificates against the Mozilla root program (webpki-roots).
    ///
    /// # Errors
    ///
    /// When rustls's crypto provider supports no safe protocol version (not expected
    /// with the `ring` provider).
    pub fn webpki_roots() -> Result<Self, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// Verifies upstream certificates against the CA certificates in a PEM bundle (for
    /// example a cluster-internal CA).
    ///
    /// # Errors
    ///
    /// When the bundle holds no certificate or a certificate that cannot be parsed.
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert =
                cert.map_err(|e| ConfigError::new("caCertificate", format!("invalid PEM: {e}")))?;
            roots.add(cert).map_err(|e| {
                ConfigError::new("caCertificate", format!("invalid CA certificate: {e}"))
            })?;
        }
        if roots.is_empty() {
            return Err(ConfigError::new(
                "caCertificate",
                "the PEM bundle holds no certificate",
            ));
        }
        Self::with_roots(roots)
    }

    /// Uses a rustls configuration as it is (for client certificates or a custom
    /// verifier). Its ALPN protocols are replaced according to the [`Protocol`].
    pub fn from_rustls(config: rustls::ClientConfig) -> Self {
        Self {
            config: Arc::new(config),
            server_name: None,
        }
    }

    fn with_roots(roots: rustls::RootCertStore) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("tls", e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::from_rustls(config))
    }

    /// Sets the name sent as SNI and verified against the upstream's certificate (a DNS
    /// name or an IP address).
    ///
    /// # Errors
    ///
    /// When `name` is neither a valid DNS name nor an IP address.
    pub fn server_name(mut self, name: &str) -> Result<Self, ConfigError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| ConfigError::new("hostname", format!("invalid server name: {e}")))?;
        self.server_name = Some(name);
        Ok(self)
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// How to reach one upstream: the [`Protocol`] and, optionally, TLS.
///
/// Cheap to clone. The rustls configuration (with the ALPN list for the protocol) is
/// built once in [`with_tls`](Self::with_tls), never per connection. Two
/// [`EndpointClient`](super::EndpointClient)s share a connection pool when they target
/// the same address with equal transports; transports are equal when they have the same
/// protocol, server name and the *same* TLS configuration (clones of one `Transport`).
#[derive(Clone, Default)]
pub struct Transport {
    protocol: Protocol,
    tls: Option<Tls>,
}

#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) connector: tokio_rustls::TlsConnector,
    config: Arc<rustls::ClientConfig>,
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl Transport {
    /// A cleartext transport speaking `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            tls: None,
        }
    }

    /// Cleartext HTTP/1.1.
    pub fn http1() -> Self {
        Self::new(Protocol::Http1)
    }

    /// HTTP/2 with prior knowledge (h2c without TLS).
    pub fn http2() -> Self {
        Self::new(Protocol::Http2)
    }

    /// Adds TLS. Builds the rustls configuration with the ALPN list of the protocol:
    /// `http/1.1` for [`Protocol::Http1`], `h2` for [`Protocol::Http2`], both (h2 first)
    /// for [`Protocol::Auto`].
    #[must_use]
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        let mut config = (*tls.config).clone();
        config.alpn_protocols = match self.protocol {
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
            Protocol::Http2 => vec![b"h2".to_vec()],
            Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        let config = Arc::new(config);
        self.tls = Some(Tls {
            connector: tokio_rustls::TlsConnector::from(config.clone()),
            config,
            server_name: tls.server_name,
        });
        self
    }

    /// The protocol spoken to the upstream.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.is_some())
            .field(
                "server_name",
                &self.tls.as_ref().and_then(|t| t.server_name.as_ref()),
            )
            .finish()
    }
}

impl PartialEq for Transport {
    fn eq(&self, other: &Self) -> bool {
        self.protocol == other.protocol
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    Arc::ptr_eq(&a.config, &b.config) && a.server_name == b.server_name
                }
                _ => false,
            }
    }
}

impl Eq for Transport {}

impl Hash for Transport {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.protocol.hash(state);
        if let Some(tls) = &self.tls {
            (Arc::as_ptr(&tls.config) as usize).hash(state);
            tls.server_name.hash(state);
        }
    }
}
