//! Errors of TLS setup and handshakes.

use std::time::Duration;

/// Why a certificate, key or TLS setting could not be loaded, or a handshake failed.
///
/// Each variant names what failed (`origin` is the file path or the label the caller gave,
/// such as `secret default/site-tls`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {origin}: {source}")]
    #[non_exhaustive]
    Io {
        /// The file.
        origin: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate PEM could not be parsed.
    #[error("invalid certificate PEM in {origin}: {source}")]
    #[non_exhaustive]
    CertificatePem {
        /// Where the PEM came from.
        origin: String,
        /// The PEM error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The PEM held no `CERTIFICATE` section.
    #[error("no certificate found in {origin}")]
    #[non_exhaustive]
    NoCertificate {
        /// Where the PEM came from.
        origin: String,
    },
    /// No private key could be read from the PEM.
    #[error(
        "no usable private key (PKCS#1 \"RSA PRIVATE KEY\", PKCS#8 \"PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\") in {origin}: {source}"
    )]
    #[non_exhaustive]
    PrivateKeyPem {
        /// Where the PEM came from.
        origin: String,
        /// The PEM error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The key was read but rustls refused it: unsupported algorithm, or it does not match
    /// the certificate's public key.
    #[error("private key in {origin} rejected: {source}")]
    #[non_exhaustive]
    KeyRejected {
        /// Where the key came from.
        origin: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A hostname given for SNI selection is not a DNS name or a one-label wildcard.
    #[error("invalid certificate hostname {name:?}: {reason}")]
    #[non_exhaustive]
    InvalidHostname {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The certificate's `notAfter` has passed.
    #[error(
        "the certificate in {origin} expired (notAfter {not_after}, seconds since the Unix epoch)"
    )]
    #[non_exhaustive]
    Expired {
        /// Where it came from.
        origin: String,
        /// Its `notAfter`, seconds since the Unix epoch.
        not_after: i64,
    },
    /// The certificate's `notBefore` is still to come.
    #[error(
        "the certificate in {origin} is not valid yet (notBefore {not_before}, seconds since the Unix epoch)"
    )]
    #[non_exhaustive]
    NotYetValid {
        /// Where it came from.
        origin: String,
        /// Its `notBefore`, seconds since the Unix epoch.
        not_before: i64,
    },
    /// A TLS setting cannot be used (a CA certificate, versions, cipher suites).
    #[error("{0}")]
    Setting(String),
    /// rustls refused the server settings.
    #[error("TLS server settings rejected: {0}")]
    Config(#[source] rustls::Error),
    /// The handshake failed (bad client, unknown SNI with no default, protocol error).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
    /// The client did not finish the handshake in time.
    #[error("TLS handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
}
