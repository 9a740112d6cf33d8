//! Verifying an upstream's certificate against a list of subject alternative names
//! (Gateway API `BackendTLSPolicy` `subjectAltNames`), and telling TLS failures apart.
//!
//! [`SanVerifier`] first has webpki check the chain (signatures, validity, key usage)
//! as it would for the configured server name; a mismatch of that *name* is not a
//! failure here, because with a SAN list the name is only the SNI. Then the leaf must
//! carry one of the listed names: a DNS name is checked the way webpki checks server
//! names (wildcards in the certificate included), a URI (for example a SPIFFE ID) must
//! equal one of the certificate's URI SANs (read with `x509-parser`; webpki does not
//! read URI names), ignoring the case of the scheme and host only as far as they are
//! written the same.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// A subject alternative name an upstream's certificate may carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SubjectAltName {
    /// A DNS name (`dNSName`), matched as webpki matches server names.
    Dns(String),
    /// A URI (`uniformResourceIdentifier`), such as a SPIFFE ID; matched exactly.
    Uri(String),
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => write!(f, "DNS:{name}"),
            Self::Uri(uri) => write!(f, "URI:{uri}"),
        }
    }
}

/// Checks the chain with webpki, then the leaf against a SAN list (see the [module
/// docs](self)).
pub(crate) struct SanVerifier {
    inner: Arc<WebPkiServerVerifier>,
    sans: Vec<SubjectAltName>,
}

impl SanVerifier {
    pub(crate) fn new(inner: Arc<WebPkiServerVerifier>, sans: Vec<SubjectAltName>) -> Self {
        Self { inner, sans }
    }

    fn matches(&self, end_entity: &CertificateDer<'_>) -> Result<bool, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let mut uris: Option<Vec<String>> = None;
        for san in &self.sans {
            match san {
                SubjectAltName::Dns(name) => {
                    let Ok(name) = ServerName::try_from(name.as_str()) else {
                        continue;
                    };
                    if verify_server_name(&parsed, &name).is_ok() {
                        return Ok(true);
                    }
                }
                SubjectAltName::Uri(uri) => {
                    let uris = uris.get_or_insert_with(|| uri_sans(end_entity));
                    if uris.iter().any(|u| u == uri) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

impl fmt::Debug for SanVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SanVerifier")
            .field("sans", &self.sans)
            .finish_non_exhaustive()
    }
}

/// The URI SANs of a certificate (none when it cannot be parsed: webpki parsed the
/// same certificate already, so that does not happen for a chain that verified).
fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // The chain verified; whether the SNI name matches plays no part.
            Ok(_)
            | Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            Err(e) => return Err(e),
        }
        if self.matches(end_entity)? {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls error in `err`'s cause chain (an I/O error from a TLS stream carries it
/// as its inner error), if any: the sign that a failure was TLS's.
pub(crate) fn tls_failure<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls);
        }
        cur = e.source();
    }
    None
}

/// A short reason for a TLS failure, for logs: bad certificate, unknown CA, name
/// mismatch, or what rustls says.
pub(crate) fn tls_reason(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "unknown CA (the chain does not verify)".to_owned(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("name mismatch ({c:?})")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired".to_owned()
            }
            other => format!("bad certificate ({other:?})"),
        },
        rustls::Error::AlertReceived(alert) => format!("the upstream sent the alert {alert:?}"),
        other => other.to_string(),
    }
}
