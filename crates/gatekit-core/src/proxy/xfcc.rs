//! `x-forwarded-client-cert` (XFCC): the client certificate the gateway verified, told
//! to the backend in Envoy's format.
//!
//! # Format
//!
//! The header is a comma-separated list of elements, one per proxy that verified a
//! client certificate, the nearest last. An element is `;`-separated `key=value` pairs
//! in this order:
//!
//! - `Hash`: the SHA-256 of the client's leaf certificate (DER), lowercase hex (always);
//! - `Cert`: the leaf in PEM, URL-encoded, in double quotes;
//! - `Chain`: the whole chain in PEM, URL-encoded, in double quotes;
//! - `Subject`: the leaf's subject, in double quotes (`"` and `\` escaped with `\`);
//! - `URI`: each URI subject alternative name (one pair per name);
//! - `DNS`: each DNS subject alternative name (one pair per name).
//!
//! `Hash` is always present; the others as [`CertDetails`] asks (gatekit's default:
//! `Subject`, `URI` and `DNS`). A `URI` or `DNS` value holding `,`, `;`, `=` or `"` is
//! double-quoted. Envoy's `By` (the gateway's own URI SAN) is not sent. Example:
//!
//! ```text
//! x-forwarded-client-cert: Hash=9ba6...e2;Subject="CN=client";URI=spiffe://example/ns/a;DNS=client.example
//! ```
//!
//! # Modes
//!
//! A client can send the header itself, so what arrives is removed unless
//! [`ForwardClientCertMode`] (Envoy Gateway's `xForwardedClientCert.mode`) says
//! otherwise; gatekit's default is [`SanitizeSet`](ForwardClientCertMode::SanitizeSet).
//! A connection without a verified client certificate never gets an element added.

use std::fmt::Write as _;

use base64::Engine as _;
use http::HeaderValue;
use http::header::{HeaderMap, HeaderName};

use crate::ConnectionInfo;
use crate::tls::ClientIdentity;

/// The header's name.
pub static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// What happens to `x-forwarded-client-cert` (Envoy's `forward_client_cert_details`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ForwardClientCertMode {
    /// Removed; nothing is sent.
    Sanitize,
    /// Forwarded as the client sent it when the connection presented a verified
    /// certificate, removed otherwise.
    ForwardOnly,
    /// With a verified certificate, this gateway's element is appended to what the
    /// client sent; removed otherwise.
    AppendForward,
    /// Removed, then set to this gateway's element when the connection presented a
    /// verified certificate (gatekit's default).
    #[default]
    SanitizeSet,
    /// Forwarded as the client sent it, always (only behind a proxy that sets it).
    AlwaysForwardOnly,
}

/// Which details an element carries besides `Hash` (Envoy Gateway's `certDetailsToAdd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(clippy::struct_excessive_bools)]
pub struct CertDetails {
    /// `Cert`: the leaf in URL-encoded PEM.
    pub cert: bool,
    /// `Chain`: the chain in URL-encoded PEM.
    pub chain: bool,
    /// `Subject`.
    pub subject: bool,
    /// `URI` subject alternative names.
    pub uri: bool,
    /// `DNS` subject alternative names.
    pub dns: bool,
}

impl Default for CertDetails {
    /// `Subject`, `URI` and `DNS`: the identity, not the certificate.
    fn default() -> Self {
        Self {
            cert: false,
            chain: false,
            subject: true,
            uri: true,
            dns: true,
        }
    }
}

impl CertDetails {
    /// Only `Hash` (Envoy's default when `certDetailsToAdd` is empty).
    pub const HASH_ONLY: Self = Self {
        cert: false,
        chain: false,
        subject: false,
        uri: false,
        dns: false,
    };
}

/// A listener's `x-forwarded-client-cert` policy: the mode and the details of the
/// element it adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ForwardClientCert {
    /// What happens to the header.
    pub mode: ForwardClientCertMode,
    /// What an added element carries.
    pub details: CertDetails,
}

/// This gateway's element for `identity` (see the [module docs](self)), or `None` if
/// it cannot be a header value. Built once per handshake.
pub fn element(identity: &ClientIdentity, details: CertDetails) -> Option<HeaderValue> {
    let mut out = String::with_capacity(128);
    out.push_str("Hash=");
    out.push_str(&identity.sha256_hex());
    if details.cert
        && let Some(leaf) = identity.chain().first()
    {
        out.push_str(";Cert=\"");
        url_encode_into(&pem(leaf.as_ref()), &mut out);
        out.push('"');
    }
    if details.chain {
        out.push_str(";Chain=\"");
        let chain: String = identity.chain().iter().map(|c| pem(c.as_ref())).collect();
        url_encode_into(&chain, &mut out);
        out.push('"');
    }
    if details.subject {
        out.push_str(";Subject=");
        quoted_into(identity.subject(), &mut out);
    }
    if details.uri {
        for uri in identity.uris() {
            out.push_str(";URI=");
            value_into(uri, &mut out);
        }
    }
    if details.dns {
        for dns in identity.dns_names() {
            out.push_str(";DNS=");
            value_into(dns, &mut out);
        }
    }
    HeaderValue::from_str(&out).ok()
}

/// Applies `conn`'s mode to `headers` (see the [module docs](self)); without `conn`,
/// the header is removed.
pub(crate) fn apply(headers: &mut HeaderMap, conn: Option<&ConnectionInfo>) {
    let Some(conn) = conn else {
        headers.remove(&X_FORWARDED_CLIENT_CERT);
        return;
    };
    let ours = conn.tls().and_then(crate::TlsInfo::forwarded_client_cert);
    match (conn.forward_client_cert(), ours) {
        (ForwardClientCertMode::AlwaysForwardOnly, _)
        | (ForwardClientCertMode::ForwardOnly, Some(_)) => {}
        (ForwardClientCertMode::SanitizeSet, Some(ours)) => {
            headers.insert(X_FORWARDED_CLIENT_CERT.clone(), ours.clone());
        }
        (ForwardClientCertMode::AppendForward, Some(ours)) => {
            let mut joined = Vec::new();
            for value in headers.get_all(&X_FORWARDED_CLIENT_CERT) {
                let value = value.as_bytes().trim_ascii();
                if !value.is_empty() {
                    joined.extend_from_slice(value);
                    joined.push(b',');
                }
            }
            joined.extend_from_slice(ours.as_bytes());
            match HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
                Ok(value) => {
                    headers.insert(X_FORWARDED_CLIENT_CERT.clone(), value);
                }
                Err(_) => {
                    headers.insert(X_FORWARDED_CLIENT_CERT.clone(), ours.clone());
                }
            }
        }
        (
            ForwardClientCertMode::Sanitize
            | ForwardClientCertMode::ForwardOnly
            | ForwardClientCertMode::AppendForward
            | ForwardClientCertMode::SanitizeSet,
            _,
        ) => {
            headers.remove(&X_FORWARDED_CLIENT_CERT);
        }
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_encode_into(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `text` in double quotes, `"` and `\` escaped; control characters dropped.
fn quoted_into(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// `text`, double-quoted when it holds a separator.
fn value_into(text: &str, out: &mut String) {
    if text.contains([',', ';', '=', '"']) {
        quoted_into(text, out);
    } else {
        out.extend(text.chars().filter(|c| !c.is_control()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TlsInfo;
    use rustls::pki_types::CertificateDer;
    use std::net::SocketAddr;

    fn identity() -> ClientIdentity {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client \"x\"");
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://td/a").unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let der: CertificateDer<'static> = params.self_signed(&key).unwrap().der().clone();
        ClientIdentity::from_chain(&[der]).unwrap()
    }

    fn conn(mode: ForwardClientCertMode, id: Option<&ClientIdentity>) -> ConnectionInfo {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let tls = TlsInfo::for_identity(id.cloned(), CertDetails::default());
        ConnectionInfo::with_tls(addr, addr, tls).with_forward_client_cert(mode)
    }

    #[test]
    fn element_format() {
        let id = identity();
        let value = element(&id, CertDetails::default()).unwrap();
        let text = value.to_str().unwrap();
        assert_eq!(
            text,
            format!(
                "Hash={};Subject=\"CN=client \\\"x\\\"\";URI=spiffe://td/a;DNS=a.example",
                id.sha256_hex()
            )
        );
        let all = CertDetails {
            cert: true,
            chain: true,
            ..CertDetails::HASH_ONLY
        };
        let text = element(&id, all).unwrap().to_str().unwrap().to_owned();
        assert!(
            text.contains(";Cert=\"-----BEGIN%20CERTIFICATE-----%0A"),
            "{text}"
        );
        assert!(text.contains(";Chain=\""), "{text}");
        assert!(!text.contains("Subject"), "{text}");
    }

    #[test]
    fn modes() {
        let id = identity();
        let ours = element(&id, CertDetails::default()).unwrap();
        let run = |mode, id: Option<&ClientIdentity>| {
            let mut headers = HeaderMap::new();
            headers.insert(
                &X_FORWARDED_CLIENT_CERT,
                HeaderValue::from_static("Hash=forged"),
            );
            apply(&mut headers, Some(&conn(mode, id)));
            headers
                .get(&X_FORWARDED_CLIENT_CERT)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        use ForwardClientCertMode::*;
        let ours = ours.to_str().unwrap().to_owned();
        assert_eq!(run(Sanitize, Some(&id)), None);
        assert_eq!(run(SanitizeSet, Some(&id)), Some(ours.clone()));
        assert_eq!(run(SanitizeSet, None), None);
        assert_eq!(run(ForwardOnly, Some(&id)), Some("Hash=forged".to_owned()));
        assert_eq!(run(ForwardOnly, None), None);
        assert_eq!(
            run(AppendForward, Some(&id)),
            Some(format!("Hash=forged,{ours}"))
        );
        assert_eq!(run(AppendForward, None), None);
        assert_eq!(run(AlwaysForwardOnly, None), Some("Hash=forged".to_owned()));
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_CLIENT_CERT, HeaderValue::from_static("x"));
        apply(&mut headers, None);
        assert!(headers.is_empty());
    }
}
