//! How the client talks to one upstream: protocol and TLS.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

pub use tokio_rustls::client::TlsStream;

use super::verify::{SanVerifier, SubjectAltName, tls_failure, tls_reason};
use crate::{ConfigError, Error, ErrorKind};

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
/// certificate, which name it must carry, and the client certificate gatekit presents.
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
///
/// With [`subject_alt_names`](Self::subject_alt_names), the server name is only the
/// SNI: the certificate must carry one of the listed names instead (see
/// [`SubjectAltName`]).
///
/// # Identity
///
/// Settings built from the same inputs (roots, SANs, client certificate, server name)
/// are equal, however often they are built: transports with equal settings share
/// connection pools, transports with different ones never do (a connection verified
/// for one policy, or authenticated with one client certificate, never carries another
/// one's requests). Settings from [`from_rustls`](Self::from_rustls) are equal only to
/// their own clones.
#[derive(Clone)]
pub struct TlsSettings {
    /// `None` for a configuration given as it is ([`from_rustls`](Self::from_rustls)).
    roots: Option<Arc<rustls::RootCertStore>>,
    sans: Vec<SubjectAltName>,
    client: Option<ClientCert>,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
    identity: Option<Arc<Identity>>,
}

#[derive(Clone)]
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

/// What makes two [`TlsSettings`] the same, by value (the server name is compared
/// beside it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    roots: Roots,
    sans: Vec<SubjectAltName>,
    client_chain: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Roots {
    Webpki,
    System,
    Pem(Vec<Vec<u8>>),
}

/// The operating system's CA certificates, loaded once per process.
fn system_roots() -> &'static Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "could not load a system CA certificate");
        }
        let (added, _) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            tracing::warn!(
                "no system CA certificates found; using the Mozilla roots (webpki-roots) instead"
            );
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        Arc::new(roots)
    })
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
        Self::with_roots(Arc::new(roots), Roots::Webpki)
    }

    /// Verifies upstream certificates against the operating system's CA certificates
    /// (`rustls-native-certs`, loaded once per process; the Mozilla roots when the
    /// system has none): the Gateway API's `wellKnownCACertificates: System`.
    ///
    /// # Errors
    ///
    /// As [`webpki_roots`](Self::webpki_roots).
    pub fn system_roots() -> Result<Self, ConfigError> {
        Self::with_roots(Arc::clone(system_roots()), Roots::System)
    }

    /// Verifies upstream certificates against the CA certificates in a PEM bundle (for
    /// example a cluster-internal CA).
    ///
    /// # Errors
    ///
    /// When the bundle holds no certificate or a certificate that cannot be parsed.
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        let mut der = Vec::new();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert =
                cert.map_err(|e| ConfigError::new("caCertificate", format!("invalid PEM: {e}")))?;
            der.push(cert.as_ref().to_vec());
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
        Self::with_roots(Arc::new(roots), Roots::Pem(der))
    }

    /// Uses a rustls configuration as it is (for a custom verifier). Its ALPN protocols
    /// are replaced according to the [`Protocol`]. Such settings are equal only to
    /// their clones (see [Identity](Self#identity)), and
    /// [`subject_alt_names`](Self::subject_alt_names) and
    /// [`client_certificate`](Self::client_certificate) refuse them.
    pub fn from_rustls(config: rustls::ClientConfig) -> Self {
        Self {
            roots: None,
            sans: Vec::new(),
            client: None,
            config: Arc::new(config),
            server_name: None,
            identity: None,
        }
    }

    fn with_roots(roots: Arc<rustls::RootCertStore>, id: Roots) -> Result<Self, ConfigError> {
        let mut settings = Self {
            roots: Some(roots),
            sans: Vec::new(),
            client: None,
            config: Arc::new(
                rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ConfigError::new("tls", e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
            server_name: None,
            identity: Some(Arc::new(Identity {
                roots: id,
                sans: Vec::new(),
                client_chain: Vec::new(),
            })),
        };
        settings.rebuild()?;
        Ok(settings)
    }

    /// Builds the rustls configuration from the roots, SANs and client certificate.
    fn rebuild(&mut self) -> Result<(), ConfigError> {
        let Some(roots) = &self.roots else {
            return Err(ConfigError::new(
                "tls",
                "settings given as a rustls configuration cannot be changed",
            ));
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("tls", e.to_string()))?;
        let builder = if self.sans.is_empty() {
            builder.with_root_certificates(Arc::clone(roots))
        } else {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::clone(roots),
                provider(),
            )
            .build()
            .map_err(|e| ConfigError::new("tls", e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SanVerifier::new(
                    inner,
                    self.sans.clone(),
                )))
        };
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some(client) => builder
                .with_client_auth_cert(client.chain.clone(), client.key.clone_key())
                .map_err(|e| {
                    ConfigError::new("clientCertificate", format!("unusable key pair: {e}"))
                })?,
        };
        self.config = Arc::new(config);
        if let Some(identity) = &mut self.identity {
            let identity = Arc::make_mut(identity);
            identity.sans.clone_from(&self.sans);
            identity.client_chain = self
                .client
                .iter()
                .flat_map(|c| c.chain.iter().map(|d| d.as_ref().to_vec()))
                .collect();
        }
        Ok(())
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

    /// Verifies the upstream's certificate against these names instead of the server
    /// name: it must carry at least one of them (an empty list restores the server
    /// name check). The chain is verified as before.
    ///
    /// # Errors
    ///
    /// Settings from [`from_rustls`](Self::from_rustls).
    pub fn subject_alt_names(
        mut self,
        names: impl IntoIterator<Item = SubjectAltName>,
    ) -> Result<Self, ConfigError> {
        self.sans = names.into_iter().collect();
        self.rebuild()?;
        Ok(self)
    }

    /// Presents this certificate chain (PEM, leaf first) and private key (PEM: PKCS#8,
    /// PKCS#1 or SEC1) to upstreams that ask for a client certificate (mutual TLS).
    ///
    /// # Errors
    ///
    /// When the PEM holds no certificate or no key, the key does not match the
    /// certificate, or the settings come from [`from_rustls`](Self::from_rustls).
    pub fn client_certificate(
        mut self,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, ConfigError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new("clientCertificate", format!("invalid PEM: {e}")))?;
        if chain.is_empty() {
            return Err(ConfigError::new(
                "clientCertificate",
                "the PEM holds no certificate",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            ConfigError::new("clientCertificate", format!("invalid private key: {e}"))
        })?;
        self.client = Some(ClientCert {
            chain,
            key: Arc::new(key),
        });
        self.rebuild()?;
        Ok(self)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Equal when built from the same inputs (see [Identity](TlsSettings#identity)).
impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name
            && match (&self.identity, &other.identity) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                (None, None) => Arc::ptr_eq(&self.config, &other.config),
                _ => false,
            }
    }
}

impl Eq for TlsSettings {}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .field("subject_alt_names", &self.sans)
            .field("client_certificate", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// How to reach one upstream: the [`Protocol`] and, optionally, TLS.
///
/// Cheap to clone. The rustls configuration (with the ALPN list for the protocol) is
/// built once in [`with_tls`](Self::with_tls), never per connection. Two
/// [`EndpointClient`](super::EndpointClient)s share a connection pool when they target
/// the same address with equal transports; transports are equal when they have the same
/// protocol and equal [`TlsSettings`] (see [Identity](TlsSettings#identity)) or none.
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
    identity: Option<Arc<Identity>>,
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
            identity: tls.identity,
        });
        self
    }

    /// The TLS handshake with the endpoint `addr` over `tcp`, as the client does it
    /// (SNI, verification, ALPN, client certificate): for those that open their own
    /// connections with the upstream's settings, such as health checks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UpstreamTls`] when TLS failed (the certificate did not verify, the
    /// upstream refused the handshake; logged with the reason),
    /// [`ErrorKind::Connect`] when the connection broke otherwise or the transport has
    /// no TLS.
    pub async fn tls_connect(
        &self,
        addr: SocketAddr,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, Error> {
        let Some(tls) = &self.tls else {
            return Err(Error::with_source(
                ErrorKind::Connect,
                "the transport has no TLS settings",
            ));
        };
        let name = match &tls.server_name {
            Some(name) => name.clone(),
            None => addr.ip().into(),
        };
        tls.connector.connect(name, tcp).await.map_err(|e| {
            let kind = match tls_failure(&e) {
                Some(failure) => {
                    tracing::warn!(
                        endpoint = %addr,
                        server_name = ?tls.server_name,
                        reason = %tls_reason(failure),
                        "TLS handshake with the upstream failed"
                    );
                    ErrorKind::UpstreamTls
                }
                None => ErrorKind::Connect,
            };
            Error::with_source(kind, e)
        })
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
                    a.server_name == b.server_name
                        && match (&a.identity, &b.identity) {
                            (Some(x), Some(y)) => Arc::ptr_eq(x, y) || x == y,
                            _ => Arc::ptr_eq(&a.config, &b.config),
                        }
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
            match &tls.identity {
                Some(identity) => identity.hash(state),
                None => (Arc::as_ptr(&tls.config) as usize).hash(state),
            }
            tls.server_name.hash(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn leaf() -> (String, String) {
        let params = rcgen::CertificateParams::new(vec!["client.test".to_owned()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn settings_built_from_equal_inputs_are_equal_and_key_one_pool() {
        let (ca, (cert, key)) = (ca_pem(), leaf());
        let build = |name: &str, sans: Vec<SubjectAltName>, client: bool| {
            let mut s = TlsSettings::from_ca_pem(ca.as_bytes())
                .unwrap()
                .server_name(name)
                .unwrap()
                .subject_alt_names(sans)
                .unwrap();
            if client {
                s = s
                    .client_certificate(cert.as_bytes(), key.as_bytes())
                    .unwrap();
            }
            s
        };
        let dns = || vec![SubjectAltName::Dns("a.test".to_owned())];
        assert_eq!(build("a.test", dns(), true), build("a.test", dns(), true));
        assert_ne!(build("a.test", dns(), true), build("a.test", dns(), false));
        assert_ne!(build("a.test", dns(), false), build("b.test", dns(), false));
        assert_ne!(
            build("a.test", dns(), false),
            build("a.test", Vec::new(), false)
        );
        let other = TlsSettings::from_ca_pem(ca_pem().as_bytes())
            .unwrap()
            .server_name("a.test")
            .unwrap();
        assert_ne!(build("a.test", Vec::new(), false), other);
        // Transports (the pool key with the address) follow the settings.
        let t = |s: TlsSettings| Transport::http1().with_tls(s);
        assert_eq!(
            t(build("a.test", dns(), true)),
            t(build("a.test", dns(), true))
        );
        assert_ne!(
            t(build("a.test", dns(), true)),
            t(build("a.test", dns(), false))
        );
        // A rustls configuration given as it is equals only its clones.
        let custom = TlsSettings::from_rustls((*other.config).clone());
        assert_eq!(custom, custom.clone());
        assert_ne!(custom, TlsSettings::from_rustls((*other.config).clone()));
    }

    #[test]
    fn a_client_key_that_is_not_a_key_is_refused() {
        let (cert, _) = leaf();
        let err = TlsSettings::webpki_roots()
            .unwrap()
            .client_certificate(
                cert.as_bytes(),
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            )
            .unwrap_err();
        assert_eq!(err.field(), "clientCertificate");
        let custom =
            TlsSettings::from_rustls((*TlsSettings::webpki_roots().unwrap().config).clone());
        assert!(custom.subject_alt_names(Vec::new()).is_err());
    }
}
