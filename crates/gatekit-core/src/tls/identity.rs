//! The verified client certificate of a connection: [`ClientIdentity`].
//!
//! Certificates are parsed with [`x509-parser`](x509_parser) (the Rusticata project's
//! X.509 parser: maintained, no unsafe code of ours, already in gatekit's tree through
//! the Kubernetes client): rustls verifies chains but does not expose names, and writing
//! a DER parser here would be the kind of code a security review distrusts first.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Who a client proved to be with a certificate the listener verified: the leaf's
/// subject, its DNS and URI subject alternative names and its SHA-256 fingerprint.
/// Built once per handshake; cheap to clone (one `Arc`). Found in the request's
/// extensions, and in its [`TlsInfo`](crate::TlsInfo), when the connection presented a
/// verified certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    inner: Arc<Inner>,
}

#[derive(PartialEq, Eq)]
struct Inner {
    subject: Box<str>,
    dns: Box<[Box<str>]>,
    uri: Box<[Box<str>]>,
    sha256: [u8; 32],
    chain: Box<[CertificateDer<'static>]>,
}

impl ClientIdentity {
    /// The identity of the chain `chain` (leaf first), or `None` when the chain is empty
    /// or its leaf cannot be parsed.
    pub fn from_chain(chain: &[CertificateDer<'static>]) -> Option<Self> {
        let leaf = chain.first()?;
        let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
        let mut dns = Vec::new();
        let mut uri = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns.push((*n).into()),
                    GeneralName::URI(u) => uri.push((*u).into()),
                    _ => {}
                }
            }
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        Some(Self {
            inner: Arc::new(Inner {
                subject: cert.subject().to_string().into(),
                dns: dns.into(),
                uri: uri.into(),
                sha256,
                chain: chain.into(),
            }),
        })
    }

    /// The leaf's subject distinguished name (`CN=client, O=example`), empty when it has
    /// none.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The leaf's DNS subject alternative names.
    pub fn dns_names(&self) -> &[Box<str>] {
        &self.inner.dns
    }

    /// The leaf's URI subject alternative names (a SPIFFE id, for example).
    pub fn uris(&self) -> &[Box<str>] {
        &self.inner.uri
    }

    /// The SHA-256 digest of the leaf's DER.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.inner.sha256
    }

    /// The SHA-256 digest of the leaf's DER in lowercase hex (as in
    /// `x-forwarded-client-cert`'s `Hash`).
    pub fn sha256_hex(&self) -> String {
        hex(&self.inner.sha256)
    }

    /// The verified chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.chain
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject", &self.inner.subject)
            .field("dns", &self.inner.dns)
            .field("uri", &self.inner.uri)
            .field("sha256", &self.sha256_hex())
            .finish()
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// When the certificate `der` stops being valid (its `notAfter`), in seconds since the
/// Unix epoch; `None` when it cannot be parsed.
pub fn certificate_not_after(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// When the certificate `der` starts being valid (its `notBefore`), in seconds since the
/// Unix epoch; `None` when it cannot be parsed.
pub fn certificate_not_before(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(cert.validity().not_before.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hash_of_a_leaf() {
        let mut params = rcgen::CertificateParams::new(vec!["client.example".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client one");
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://example/ns/a").unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().clone();
        let id = ClientIdentity::from_chain(std::slice::from_ref(&der)).unwrap();
        assert_eq!(id.subject(), "CN=client one");
        assert_eq!(&*id.dns_names()[0], "client.example");
        assert_eq!(&*id.uris()[0], "spiffe://example/ns/a");
        let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        assert_eq!(id.sha256_hex(), hex(digest.as_ref()));
        assert_eq!(id.sha256_hex().len(), 64);
        assert!(certificate_not_after(&der).is_some());
        assert!(ClientIdentity::from_chain(&[]).is_none());
        assert!(ClientIdentity::from_chain(&[CertificateDer::from(vec![1, 2, 3])]).is_none());
    }
}
