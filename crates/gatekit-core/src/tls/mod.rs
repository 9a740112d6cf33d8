//! TLS termination: PEM loading, SNI certificate selection, rustls server settings and
//! an accept path with a handshake deadline.
//!
//! # How a handshake finds its certificate
//!
//! A [`CertStore`] is a rustls [`ResolvesServerCert`](rustls::server::ResolvesServerCert)
//! over an immutable [`CertSet`] held in an `ArcSwap`. For each ClientHello it loads the
//! current set (one atomic load, no lock) and looks the SNI name up:
//!
//! 1. an exact hostname (`api.example.com`);
//! 2. a wildcard covering exactly one leftmost label (`*.example.com` matches
//!    `a.example.com`, not `example.com` nor `a.b.example.com`), looked up by the name's
//!    suffix after its first label — one hash lookup, not a scan;
//! 3. the default certificate, if the set has one (also used when the client sent no SNI).
//!
//! With no match and no default the resolver returns `None` and rustls aborts the
//! handshake with an alert; no certificate for another host is ever shown.
//!
//! # Reloading without a restart
//!
//! [`CertStore::replace`] swaps in a whole new set atomically. Handshakes that already
//! picked a certificate keep it; established connections are not touched (their keys were
//! derived at handshake time); the next handshake sees the new set. Building a set (PEM
//! parsing, key checks) happens before the swap, off the handshake path. A client that
//! resumes a TLS session made before the swap is not shown a certificate at all (that is
//! what resumption means); it sees the new one at its next full handshake.
//!
//! # Settings
//!
//! [`server_config`] builds a `rustls::ServerConfig` with the `ring` provider, TLS 1.3
//! and 1.2 only, and ALPN `h2` then `http/1.1`, so hyper-util's automatic builder serves
//! HTTP/2 to clients that negotiate it (it detects h2 by the connection preface).
//!
//! # Per-listener settings and client certificates
//!
//! A port's listeners can differ in TLS settings ([`ListenerTls`]: client certificate
//! validation, protocol versions, cipher suites, ALPN, session resumption, the
//! `x-forwarded-client-cert` policy). A [`ServerTls`] holds one rustls configuration per
//! distinct settings value, by listener hostname; [`TlsAcceptor`] reads the ClientHello
//! first (rustls' `Acceptor`, through tokio-rustls' `LazyConfigAcceptor`), picks the
//! configuration by its server name exactly as certificates are picked, then completes
//! the handshake with it. A client certificate the listener requires and the client does
//! not send, or one from another CA, fails the handshake. When the listeners differ,
//! [`TlsInfo::strict_sni`](crate::TlsInfo::strict_sni) tells the router to answer 421
//! for a request whose `Host` picks another listener than the handshake did, also when
//! the client sent no server name (which picks the default): settings chosen for one
//! listener never serve another's routes. The verified client certificate becomes a
//! [`ClientIdentity`] (subject, SANs, SHA-256), in the request's extensions and sent
//! upstream as `x-forwarded-client-cert` ([`proxy::xfcc`](crate::proxy::xfcc)).
//!
//! # Accepting
//!
//! [`TlsAcceptor::accept`] runs the handshake under a deadline (10 s by default) so a
//! client that opens a socket and sends nothing cannot hold it forever. Give the
//! acceptor to a [`Server`](crate::server::Server) with
//! [`tls`](crate::server::Server::tls): it runs the handshake on each accepted
//! connection and serves HTTP on the [`TlsStream`], with the handshake's SNI name, ALPN
//! protocol and client certificates in each request's
//! [`ConnectionInfo`](crate::ConnectionInfo).

mod accept;
mod client_hello;
mod error;
mod identity;
mod listener;
mod pem;
mod server;
mod store;

pub use self::accept::{DEFAULT_HANDSHAKE_TIMEOUT, TlsAcceptor, server_config};
pub use self::client_hello::{
    ClientHelloError, ClientHelloInfo, DEFAULT_CLIENT_HELLO_TIMEOUT, MAX_CLIENT_HELLO,
    parse_client_hello, peek_client_hello,
};
pub use self::error::TlsError;
pub use self::identity::{ClientIdentity, certificate_not_after, certificate_not_before};
pub use self::listener::{
    ClientCertMode, ClientValidation, ListenerConfig, ListenerTls, SESSION_CACHE_SIZE, TlsVersion,
    cipher_suites, trust_anchor_problem,
};
pub use self::pem::{
    load_certified_key, load_certified_key_at, load_certified_key_files, load_certs,
    load_private_key,
};
pub use self::server::ServerTls;
pub use self::store::{CertSet, CertStore, SniMap};
pub use rustls::pki_types::CertificateDer;
pub use rustls::sign::CertifiedKey;
pub use tokio_rustls::server::TlsStream;
