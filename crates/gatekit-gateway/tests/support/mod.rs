//! Shared test support: a test CA, a gateway binding loopback, small HTTP clients.
// Each test binary uses part of this module (and of what it re-exports).
#![allow(dead_code, unused_imports, unreachable_pub, clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;

use gatekit_core::tls::{CertifiedKey, load_certified_key};
use gatekit_core::{Body, ConnectionInfo};
use gatekit_gateway::{Gateway, GatewayOptions};
use http::{Request, Response};
use rustls::pki_types::CertificateDer;

/// The default options.
pub fn options() -> GatewayOptions {
    GatewayOptions::default()
}

/// A gateway whose listeners bind loopback.
pub fn gateway(options: GatewayOptions) -> Gateway {
    Gateway::new(options, "127.0.0.1".parse().unwrap())
}

/// Answers `200 hello tls=<bool> <version>` and echoes the path in `x-path`.
pub fn hello_service() -> impl tower::Service<
    Request<gatekit_core::Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|req: Request<gatekit_core::Body>| async move {
        let tls = req
            .extensions()
            .get::<ConnectionInfo>()
            .map(|c| c.is_tls())
            .unwrap();
        Ok::<_, Infallible>(Response::new(Body::full(format!(
            "hello tls={tls} {:?}",
            req.version()
        ))))
    })
}

pub use gatekit_testkit::{Ca, Sender, closed_by_peer, get, http1, send, tls_connect};

/// The gateway's tests want leaves as rustls certified keys.
pub trait CaExt {
    /// A leaf for `name`, as (certified key, leaf DER).
    fn leaf(&self, name: &str) -> (Arc<CertifiedKey>, CertificateDer<'static>);
    /// A client trusting the CA, offering `alpn`.
    fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector;
}

impl CaExt for Ca {
    fn leaf(&self, name: &str) -> (Arc<CertifiedKey>, CertificateDer<'static>) {
        let (cert, key, der) = self.leaf_pem(&[name]);
        let certified = load_certified_key(cert.as_bytes(), key.as_bytes(), name).unwrap();
        (certified, der)
    }

    fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        self.tls_connector(alpn)
    }
}
