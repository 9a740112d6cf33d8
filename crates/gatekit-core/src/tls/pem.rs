//! Reading certificate chains and private keys from PEM.
//!
//! Uses `rustls-pki-types`' [`PemObject`] parser. Private keys are accepted in PKCS#1
//! (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`) and SEC1 (`EC PRIVATE KEY`); the first key
//! section in the input wins.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::TlsError;

/// Parses every `CERTIFICATE` section of `pem`, leaf first. `origin` names the source in
/// errors.
///
/// # Errors
///
/// [`TlsError::CertificatePem`] on malformed PEM, [`TlsError::NoCertificate`] when there is
/// no certificate at all.
pub fn load_certs(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::CertificatePem {
            origin: origin.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            origin: origin.to_owned(),
        });
    }
    Ok(certs)
}

/// Parses the first private key of `pem` (PKCS#1, PKCS#8 or SEC1).
///
/// # Errors
///
/// [`TlsError::PrivateKeyPem`] when the PEM is malformed or holds no key.
pub fn load_private_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| TlsError::PrivateKeyPem {
        origin: origin.to_owned(),
        source,
    })
}

/// Builds a rustls [`CertifiedKey`] from a PEM certificate chain and a PEM private key,
/// checking with the `ring` provider that the key is supported and matches the leaf
/// certificate. `origin` names the source in errors (a path, `secret ns/name`, ...).
///
/// # Errors
///
/// Any [`TlsError`] of [`load_certs`] and [`load_private_key`], and
/// [`TlsError::KeyRejected`] when the key is unsupported or not the certificate's.
pub fn load_certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: &str,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certs(cert_pem, origin)?;
    let key = load_private_key(key_pem, origin)?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key, &provider)
        .map(Arc::new)
        .map_err(|source| TlsError::KeyRejected {
            origin: origin.to_owned(),
            source,
        })
}

/// [`load_certified_key`], and checks that the leaf is valid at `now` (seconds since
/// the Unix epoch): not before its `notBefore`, not after its `notAfter`. Returns the
/// key and the leaf's `notAfter`.
///
/// # Errors
///
/// As [`load_certified_key`]; [`TlsError::Expired`] or [`TlsError::NotYetValid`] when
/// the leaf is not valid at `now`; [`TlsError::CertificatePem`]-like parse failures of
/// the leaf's validity are [`TlsError::Setting`].
pub fn load_certified_key_at(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: &str,
    now: i64,
) -> Result<(Arc<CertifiedKey>, i64), TlsError> {
    let key = load_certified_key(cert_pem, key_pem, origin)?;
    let leaf = key.cert.first().ok_or_else(|| TlsError::NoCertificate {
        origin: origin.to_owned(),
    })?;
    let (Some(not_before), Some(not_after)) = (
        super::certificate_not_before(leaf),
        super::certificate_not_after(leaf),
    ) else {
        return Err(TlsError::Setting(format!(
            "the certificate in {origin} cannot be parsed (X.509)"
        )));
    };
    if now > not_after {
        return Err(TlsError::Expired {
            origin: origin.to_owned(),
            not_after,
        });
    }
    if now < not_before {
        return Err(TlsError::NotYetValid {
            origin: origin.to_owned(),
            not_before,
        });
    }
    Ok((key, not_after))
}

/// Reads `cert_path` and `key_path` and builds a [`CertifiedKey`] (see
/// [`load_certified_key`]). This is blocking file I/O: call it from a blocking task or at
/// start-up, not from a handshake.
///
/// # Errors
///
/// [`TlsError::Io`] when a file cannot be read, otherwise as [`load_certified_key`], with
/// the file's path as origin.
pub fn load_certified_key_files(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Io {
            origin: path.display().to_string(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let certs = load_certs(&cert_pem, &cert_path.display().to_string())?;
    let key = load_private_key(&key_pem, &key_path.display().to_string())?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key, &provider)
        .map(Arc::new)
        .map_err(|source| TlsError::KeyRejected {
            origin: key_path.display().to_string(),
            source,
        })
}
