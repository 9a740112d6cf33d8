//! Shared test support: a process on ephemeral ports, small HTTP clients.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use gatekit_bin::{Process, Settings};
use gatekit_core::{Body, ConnectionInfo};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Settings with the admin API on an ephemeral loopback port.
pub fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.admin.address = "127.0.0.1:0".parse().unwrap();
    settings
}

pub async fn process(settings: Settings) -> Process {
    Process::start(settings, "127.0.0.1".parse().unwrap())
        .await
        .unwrap()
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
