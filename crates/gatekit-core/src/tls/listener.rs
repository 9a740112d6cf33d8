//! Per-listener TLS settings ([`ListenerTls`]) and the rustls server configuration they
//! make ([`ListenerConfig`]).

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::{CipherSuite, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use super::TlsError;
use crate::proxy::ForwardClientCert;

/// TLS sessions remembered per listener configuration for resumption by session id
/// (TLS 1.2) and stateful TLS 1.3 resumption: bounded, the oldest forgotten first.
pub const SESSION_CACHE_SIZE: usize = 1024;

/// A TLS protocol version rustls offers. TLS 1.0 and 1.1 are not offered by rustls at
/// all, so they cannot be configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tls12 => "1.2",
            Self::Tls13 => "1.3",
        })
    }
}

/// What a listener does with client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientCertMode {
    /// A certificate issued by one of the CAs is required: a client without one, or with
    /// one from another CA, fails the handshake (Gateway API `AllowValidOnly`).
    Required,
    /// A certificate is asked for; a client may send none, but one it sends must verify
    /// (Envoy Gateway `clientValidation.optional`).
    Optional,
    /// A certificate is asked for; a client without one, or with one that does not
    /// verify, is served anyway, without a verified identity (Gateway API
    /// `AllowInsecureFallback`). The client still has to prove it holds the key of the
    /// certificate it sends.
    InsecureFallback,
}

/// The CAs client certificates are verified against, and how strictly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientValidation {
    roots: Arc<[CertificateDer<'static>]>,
    mode: ClientCertMode,
}

impl ClientValidation {
    /// Trusts the CA certificates `roots` (DER), in `mode`.
    pub fn new(roots: Vec<CertificateDer<'static>>, mode: ClientCertMode) -> Self {
        Self {
            roots: roots.into(),
            mode,
        }
    }

    /// The trusted CA certificates.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// How strictly certificates are required.
    pub fn mode(&self) -> ClientCertMode {
        self.mode
    }
}

/// The TLS settings of one listener. `Default` is gatekit's secure default: TLS 1.2 and
/// 1.3, rustls' default cipher suites (`ring` provider: AES-GCM and ChaCha20-Poly1305
/// with ECDHE only), ALPN `h2` then `http/1.1`, session resumption on (stateless
/// tickets and a [bounded cache](SESSION_CACHE_SIZE)), no client certificates, and the
/// `x-forwarded-client-cert` header set from a verified client certificate
/// ([`ForwardClientCert::default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerTls {
    client: Option<ClientValidation>,
    min_version: TlsVersion,
    max_version: TlsVersion,
    cipher_suites: Option<Vec<CipherSuite>>,
    alpn: Option<Vec<Vec<u8>>>,
    tickets: bool,
    session_cache: bool,
    forward_client_cert: ForwardClientCert,
}

impl Default for ListenerTls {
    fn default() -> Self {
        Self {
            client: None,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            cipher_suites: None,
            alpn: None,
            tickets: true,
            session_cache: true,
            forward_client_cert: ForwardClientCert::default(),
        }
    }
}

impl ListenerTls {
    /// Verifies client certificates as `validation` says (default: none asked for).
    #[must_use]
    pub fn client_validation(mut self, validation: Option<ClientValidation>) -> Self {
        self.client = validation;
        self
    }

    /// The client certificate validation, if any.
    pub fn client(&self) -> Option<&ClientValidation> {
        self.client.as_ref()
    }

    /// The protocol versions offered, from `min` to `max` (default 1.2 to 1.3).
    #[must_use]
    pub fn versions(mut self, min: TlsVersion, max: TlsVersion) -> Self {
        self.min_version = min;
        self.max_version = max;
        self
    }

    /// Restricts the cipher suites to `suites` (see [`cipher_suites`]); `None` (default)
    /// keeps rustls' defaults. TLS 1.3 suites stay as rustls has them unless the list
    /// names one (Envoy likewise configures only TLS 1.2 suites by name).
    #[must_use]
    pub fn cipher_suites(mut self, suites: Option<Vec<CipherSuite>>) -> Self {
        self.cipher_suites = suites;
        self
    }

    /// The ALPN protocols offered, in order of preference; `None` (default) offers
    /// `h2` then `http/1.1`.
    #[must_use]
    pub fn alpn(mut self, protocols: Option<Vec<Vec<u8>>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// Whether clients may resume sessions (default `true`): TLS 1.3 stateless tickets
    /// and a bounded server-side cache. `false` makes every handshake a full one.
    #[must_use]
    pub fn resumption(mut self, enabled: bool) -> Self {
        self.tickets = enabled;
        self.session_cache = enabled;
        self
    }

    /// Turns stateless resumption (TLS 1.3 session tickets) and stateful resumption (a
    /// [bounded](SESSION_CACHE_SIZE) server-side session cache) on or off one by one.
    #[must_use]
    pub fn resumption_methods(mut self, tickets: bool, session_cache: bool) -> Self {
        self.tickets = tickets;
        self.session_cache = session_cache;
        self
    }

    /// Checks what [`build`](Self::build) would refuse about the versions and cipher
    /// suites, without building anything.
    ///
    /// # Errors
    ///
    /// [`TlsError::Setting`] naming the problem.
    pub fn check(&self) -> Result<(), TlsError> {
        self.provider_and_versions().map(|_| ())
    }

    /// The `ring` provider with this listener's cipher suites, and the versions offered.
    fn provider_and_versions(
        &self,
    ) -> Result<
        (
            CryptoProvider,
            Vec<&'static rustls::SupportedProtocolVersion>,
        ),
        TlsError,
    > {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(wanted) = &self.cipher_suites {
            let names_tls13 = wanted.iter().any(|s| is_tls13(*s));
            provider.cipher_suites.retain(|suite| {
                let s = suite.suite();
                wanted.contains(&s) || (!names_tls13 && is_tls13(s))
            });
        }
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (TlsVersion::Tls13, &rustls::version::TLS13),
            (TlsVersion::Tls12, &rustls::version::TLS12),
        ]
        .into_iter()
        .filter(|(v, _)| *v >= self.min_version && *v <= self.max_version)
        .map(|(_, v)| v)
        .collect();
        if versions.is_empty() {
            return Err(TlsError::Setting(format!(
                "minimum version {} is above the maximum {}",
                self.min_version, self.max_version
            )));
        }
        let usable = provider
            .cipher_suites
            .iter()
            .any(|suite| versions.iter().any(|v| suite.version() == *v));
        if !usable {
            return Err(TlsError::Setting(
                "no configured cipher suite can be used with the configured TLS versions"
                    .to_owned(),
            ));
        }
        Ok((provider, versions))
    }

    /// What happens to `x-forwarded-client-cert` on this listener's requests.
    #[must_use]
    pub fn forward_client_cert(mut self, forward: ForwardClientCert) -> Self {
        self.forward_client_cert = forward;
        self
    }

    /// What happens to `x-forwarded-client-cert` on this listener's requests.
    pub fn forward_client_cert_policy(&self) -> ForwardClientCert {
        self.forward_client_cert
    }

    /// The rustls configuration of these settings, with certificates chosen by
    /// `resolver`.
    ///
    /// # Errors
    ///
    /// [`TlsError::Setting`] when a CA certificate cannot be used or the cipher suites
    /// leave nothing for the versions; [`TlsError::Config`] when rustls refuses the rest.
    pub fn build(&self, resolver: Arc<dyn ResolvesServerCert>) -> Result<ListenerConfig, TlsError> {
        let (provider, versions) = self.provider_and_versions()?;
        let provider = Arc::new(provider);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(TlsError::Config)?;
        let (mut config, recheck) = match &self.client {
            None => (
                builder.with_no_client_auth().with_cert_resolver(resolver),
                None,
            ),
            Some(client) => {
                let (verifier, recheck) = client_verifier(client, &provider)?;
                (
                    builder
                        .with_client_cert_verifier(verifier)
                        .with_cert_resolver(resolver),
                    recheck,
                )
            }
        };
        config.alpn_protocols = match &self.alpn {
            Some(protocols) => protocols.clone(),
            None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        config.session_storage = if self.session_cache {
            ServerSessionMemoryCache::new(SESSION_CACHE_SIZE)
        } else {
            Arc::new(NoServerSessionStorage {})
        };
        if self.tickets {
            config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
        } else if !self.session_cache {
            config.send_tls13_tickets = 0;
        }
        Ok(ListenerConfig {
            config: Arc::new(config),
            settings: Arc::new(self.clone()),
            recheck,
        })
    }
}

fn is_tls13(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    )
}

/// The verifier a handshake runs with, and the strict one to check its certificate
/// with afterwards (insecure fallback only).
type Verifiers = (
    Arc<dyn ClientCertVerifier>,
    Option<Arc<dyn ClientCertVerifier>>,
);

/// The rustls client certificate verifier of `client`, and for
/// [`ClientCertMode::InsecureFallback`] the strict verifier the handshake's certificate
/// is checked against afterwards (to know whether it is a verified identity).
fn client_verifier(
    client: &ClientValidation,
    provider: &Arc<CryptoProvider>,
) -> Result<Verifiers, TlsError> {
    let mut roots = RootCertStore::empty();
    for root in client.roots.iter() {
        roots
            .add(root.clone())
            .map_err(|e| TlsError::Setting(format!("CA certificate not usable: {e}")))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let built = |b: rustls::server::ClientCertVerifierBuilder| {
        b.build()
            .map_err(|e| TlsError::Setting(format!("client certificate verifier: {e}")))
    };
    match client.mode {
        ClientCertMode::Required => Ok((built(builder)?, None)),
        ClientCertMode::Optional => Ok((built(builder.allow_unauthenticated())?, None)),
        ClientCertMode::InsecureFallback => {
            let strict = built(builder.allow_unauthenticated())?;
            let lenient: Arc<dyn ClientCertVerifier> = Arc::new(AcceptAny {
                inner: strict.clone(),
            });
            Ok((lenient, Some(strict)))
        }
    }
}

/// A verifier that asks for a certificate and accepts any (or none), still checking the
/// handshake signature with it: `AllowInsecureFallback`.
#[derive(Debug)]
struct AcceptAny {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for AcceptAny {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why `der` cannot be a trust anchor for client certificates, or `None` if it can.
pub fn trust_anchor_problem(der: &CertificateDer<'_>) -> Option<String> {
    RootCertStore::empty()
        .add(der.clone().into_owned())
        .err()
        .map(|e| e.to_string())
}

// === impl ListenerConfig ===

/// A listener's [`ListenerTls`] made into a rustls `ServerConfig` (built once per
/// settings, shared by every handshake that picks them).
#[derive(Clone)]
pub struct ListenerConfig {
    config: Arc<ServerConfig>,
    settings: Arc<ListenerTls>,
    recheck: Option<Arc<dyn ClientCertVerifier>>,
}

impl ListenerConfig {
    /// A configuration made elsewhere, served as it is (no client certificates are
    /// expected to be checked afterwards).
    pub fn from_server_config(config: Arc<ServerConfig>) -> Self {
        Self {
            config,
            settings: Arc::new(ListenerTls::default()),
            recheck: None,
        }
    }

    /// The rustls configuration a handshake runs with.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &ListenerTls {
        &self.settings
    }

    /// Whether the client certificate chain `chain` (leaf first) of a completed handshake
    /// is verified: always, unless the mode is
    /// [`InsecureFallback`](ClientCertMode::InsecureFallback), which checks it again
    /// strictly here.
    pub fn is_verified(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        match &self.recheck {
            None => true,
            Some(strict) => strict
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok(),
        }
    }
}

impl fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

// === cipher suite names ===

/// The cipher suites rustls offers (with `ring`), by their OpenSSL/Envoy name and IANA
/// name.
const SUITES: &[(&str, &str, CipherSuite)] = &[
    (
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// The rustls cipher suites an Envoy (BoringSSL/OpenSSL-style) cipher entry names:
/// `ECDHE-RSA-AES128-GCM-SHA256`, an IANA name such as
/// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, or Envoy's equal-preference group
/// `[A|B]`. Names are case-sensitive, as in Envoy.
///
/// # Errors
///
/// A message naming the entry when a name is not one of the suites rustls offers (CBC,
/// RSA key exchange and the other legacy suites are not).
pub fn cipher_suites(entry: &str) -> Result<Vec<CipherSuite>, String> {
    let inner = entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(entry);
    inner
        .split('|')
        .map(|name| {
            let name = name.trim();
            SUITES
                .iter()
                .find(|(openssl, iana, _)| *openssl == name || *iana == name)
                .map(|(_, _, suite)| *suite)
                .ok_or_else(|| {
                    let known: Vec<&str> = SUITES.iter().map(|(n, _, _)| *n).collect();
                    format!(
                        "cipher suite {name:?} is not one rustls offers (known: {})",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_map_to_rustls_suites() {
        assert_eq!(
            cipher_suites("ECDHE-RSA-AES128-GCM-SHA256").unwrap(),
            vec![CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
        assert_eq!(
            cipher_suites("[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            cipher_suites("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384").unwrap(),
            vec![CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
        );
        let err = cipher_suites("AES128-SHA").unwrap_err();
        assert!(err.contains("\"AES128-SHA\""), "{err}");
    }

    #[test]
    fn versions_and_suites_are_checked() {
        let resolver = Arc::new(super::super::CertStore::default());
        let inverted = ListenerTls::default().versions(TlsVersion::Tls13, TlsVersion::Tls12);
        assert!(inverted.build(resolver.clone()).is_err());
        // TLS 1.2 only, with TLS 1.3 suites only: nothing usable.
        let none = ListenerTls::default()
            .versions(TlsVersion::Tls12, TlsVersion::Tls12)
            .cipher_suites(Some(vec![CipherSuite::TLS13_AES_128_GCM_SHA256]));
        assert!(none.build(resolver.clone()).is_err());
        let ok = ListenerTls::default()
            .versions(TlsVersion::Tls13, TlsVersion::Tls13)
            .resumption(false);
        let built = ok.build(resolver).unwrap();
        assert_eq!(built.server_config().send_tls13_tickets, 0);
    }
}
