//! Shared test support: a test CA, a gateway binding loopback, small HTTP clients.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use gatekit_core::tls::{CertifiedKey, load_certified_key};
use gatekit_core::{Body, ConnectionInfo};
use gatekit_gateway::{Gateway, GatewayOptions};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

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
    Request<hyper::body::Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|req: Request<hyper::body::Incoming>| async move {
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

pub type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// An HTTP/1.1 client connection on any stream.
pub async fn http1<IO>(io: IO) -> Sender
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

pub async fn send(sender: &mut Sender, path: &str) -> (StatusCode, String) {
    let req = Request::get(path)
        .header("host", "test")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// One GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let mut sender = http1(TcpStream::connect(addr).await.unwrap()).await;
    send(&mut sender, path).await
}

/// A test CA issuing leaf certificates, so clients verify chains for real.
pub struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        Self { params, key, der }
    }

    /// A leaf for `name`, as (certified key, leaf DER).
    pub fn leaf(&self, name: &str) -> (Arc<CertifiedKey>, CertificateDer<'static>) {
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let certified =
            load_certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), name)
                .unwrap();
        (certified, cert.der().clone())
    }

    pub fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption = rustls::client::Resumption::disabled();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

pub async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
}

/// Reads until the peer closes; `true` if it did (EOF or reset) within five seconds.
pub async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut buf),
    )
    .await;
    match read {
        Ok(Ok(_)) | Ok(Err(_)) => true,
        Err(_) => false,
    }
}
