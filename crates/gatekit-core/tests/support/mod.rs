//! Shared parts of the proxy integration tests: a test gateway, backends with
//! connection counting, clients and test certificates.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::{Backend, Body, ConnectionInfo, error_response, proxy};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Time limit for anything a test awaits.
pub const LIMIT: Duration = Duration::from_secs(20);

pub async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("test step timed out")
}

/// Starts a gateway in front of `backend`: gatekit's server (h1 + h2c, upgrades, the
/// request's `ConnectionInfo`), whose service prepares the request, calls the backend,
/// prepares the response, and turns errors into responses.
pub async fn gateway(backend: Backend) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let backend = backend.clone();
        async move {
            let mut req = req.map(Body::from);
            let info = req.extensions().get::<ConnectionInfo>().cloned();
            proxy::prepare_request(&mut req, info.as_ref());
            let rsp = match backend.send(req).await {
                Ok(mut rsp) => {
                    proxy::prepare_response(&mut rsp);
                    rsp
                }
                Err(e) => error_response(&*e),
            };
            Ok::<_, Infallible>(rsp)
        }
    });
    tokio::spawn(gatekit_core::server::serve(
        listener,
        svc,
        std::future::pending(),
    ));
    addr
}

/// Which server a test backend runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// hyper's HTTP/1.1 server with upgrades.
    Http1,
    /// hyper's HTTP/2 server (prior knowledge, h2c).
    Http2,
}

/// A running test backend.
pub struct TestBackend {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepts: Arc<AtomicUsize>,
    /// One message per connection that ended.
    pub closed: mpsc::UnboundedReceiver<()>,
}

impl TestBackend {
    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// Starts a backend on 127.0.0.1:0 serving `handler` for each request.
pub async fn backend<F, Fut>(mode: Mode, handler: F) -> TestBackend
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let counter = accepts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                serve(mode, TokioIo::new(stream), handler).await;
                let _ = closed_tx.send(());
            });
        }
    });
    TestBackend {
        addr,
        accepts,
        closed,
    }
}

/// Serves one connection of a test backend.
pub async fn serve<I, F, Fut>(mode: Mode, io: I, handler: F)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let svc = service_fn(move |req| {
        let fut = handler(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    match mode {
        Mode::Http1 => {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades()
                .await;
        }
        Mode::Http2 => {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, svc)
                .await;
        }
    }
}

/// An HTTP/1.1 test client (hyper-util's pooled client).
pub fn h1_client()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 (prior knowledge) test client.
pub fn h2_client()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub async fn body_bytes<B>(body: B) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes()
}

/// A test CA and a leaf certificate for `name`, signed by it.
pub struct TestPki {
    pub ca_pem: String,
    pub leaf_der: rustls::pki_types::CertificateDer<'static>,
    pub leaf_key: rustls::pki_types::PrivateKeyDer<'static>,
}

pub fn pki(name: &str) -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gatekit test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        leaf_der: leaf.der().clone(),
        leaf_key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    }
}

/// A rustls server configuration presenting the leaf of `pki`, offering `alpn`.
pub fn tls_server_config(pki: &TestPki, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf_der.clone()], pki.leaf_key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Current resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}
