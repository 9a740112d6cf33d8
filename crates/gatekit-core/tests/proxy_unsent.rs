//! Requests the upstream client fails before sending any byte of them come back whole in
//! the error (`take_unsent_request`): head, extensions and the body, never polled. One
//! test per way through the client: gatekit's HTTP/1.1 codec (sized and chunked bodies),
//! hyper's HTTP/1.1 connections (own framing headers, TLS), HTTP/2, upgrades, a connect
//! timeout; and the connection cap, whose refusal is not retry-safe, hands nothing back.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::client::{
    Client, ClientConfig, ConnectionCap, EndpointClient, PoolLimits, Protocol, TlsSettings,
    Transport,
};
use gatekit_core::{Body, BoxError, Error, ErrorKind, take_unsent_request};
use http::{Request, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use support::within;
use tokio::net::TcpListener;

/// An address nothing listens on: bound, then released.
async fn refused_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A request body that notes whether it was ever polled. `sized`: its size hint is
/// exact (sent with a Content-Length), else unknown (chunked).
struct Watched {
    data: Option<Bytes>,
    sized: bool,
    polled: Arc<AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.polled.store(true, Ordering::SeqCst);
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.sized) {
            (Some(d), true) => SizeHint::with_exact(d.len() as u64),
            (None, _) => SizeHint::with_exact(0),
            (Some(_), false) => SizeHint::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Tag(u32);

const PAYLOAD: &[u8] = b"{\"id\":7,\"name\":\"a request that never left\"}";

/// A POST in origin form with a `Host`, as the proxy hands the client a request, with
/// an extension and a watched body; `extra` headers are added.
fn post(sized: bool, extra: &[(&'static str, &'static str)]) -> (Request<Body>, Arc<AtomicBool>) {
    let polled = Arc::new(AtomicBool::new(false));
    let body = Body::new(Watched {
        data: Some(Bytes::from_static(PAYLOAD)),
        sized,
        polled: polled.clone(),
    });
    let mut req = Request::post("/items?id=7")
        .header(header::HOST, "api.example.com")
        .header("x-request-id", "r-1")
        .body(body)
        .unwrap();
    for (name, value) in extra {
        req.headers_mut().append(*name, value.parse().unwrap());
    }
    req.extensions_mut().insert(Tag(42));
    (req, polled)
}

/// Sends the request through `ep`, expects a retry-safe `kind` error, and checks the
/// request that comes back: the same head and extensions, the body never polled and
/// whole.
async fn assert_handed_back(
    ep: &EndpointClient,
    sized: bool,
    extra: &[(&'static str, &'static str)],
    kind: ErrorKind,
) {
    let (req, polled) = post(sized, extra);
    let headers = req.headers().clone();
    let err = within(ep.send(req)).await.unwrap_err();
    let gatekit = Error::find(&*err).expect("a gatekit error");
    assert_eq!(gatekit.kind(), kind, "{err}");
    assert!(gatekit.is_retry_safe());

    let back = take_unsent_request::<Body>(&*err).expect("the request comes back");
    assert_eq!(back.method(), http::Method::POST);
    assert_eq!(back.uri(), "/items?id=7");
    for (name, value) in &headers {
        assert_eq!(back.headers().get(name), Some(value), "{name}");
    }
    assert_eq!(back.extensions().get::<Tag>(), Some(&Tag(42)));
    assert!(!polled.load(Ordering::SeqCst), "the body was never polled");
    let body = back.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], PAYLOAD);
    // Taken once.
    assert!(take_unsent_request::<Body>(&*err).is_none());
}

#[tokio::test]
async fn gatekits_h1_codec_hands_back_a_request_it_could_not_connect_for() {
    let addr = refused_port().await;
    let ep = Client::default().endpoint(addr, Transport::http1());
    // Content-Length framing, then chunked.
    assert_handed_back(&ep, true, &[], ErrorKind::Connect).await;
    assert_handed_back(&ep, false, &[], ErrorKind::Connect).await;
}

#[tokio::test]
async fn hypers_h1_connections_hand_back_a_request_they_could_not_connect_for() {
    let addr = refused_port().await;
    let client = Client::default();
    // A request with a Transfer-Encoding of its own goes the hyper way.
    let ep = client.endpoint(addr, Transport::http1());
    assert_handed_back(
        &ep,
        false,
        &[("transfer-encoding", "chunked")],
        ErrorKind::Connect,
    )
    .await;
    // So does every request to a TLS endpoint.
    let tls = TlsSettings::webpki_roots().unwrap();
    for protocol in [Protocol::Http1, Protocol::Auto] {
        let ep = client.endpoint(addr, Transport::new(protocol).with_tls(tls.clone()));
        assert_handed_back(&ep, true, &[], ErrorKind::Connect).await;
    }
}

#[tokio::test]
async fn h2_hands_back_a_request_it_could_not_connect_for() {
    let addr = refused_port().await;
    let client = Client::default();
    let ep = client.endpoint(addr, Transport::http2());
    assert_handed_back(&ep, true, &[], ErrorKind::Connect).await;
    assert_handed_back(&ep, false, &[], ErrorKind::Connect).await;
    let tls = TlsSettings::webpki_roots().unwrap();
    let ep = client.endpoint(addr, Transport::http2().with_tls(tls));
    assert_handed_back(&ep, true, &[], ErrorKind::Connect).await;
}

#[tokio::test]
async fn an_upgrade_hands_back_a_request_it_could_not_connect_for() {
    let addr = refused_port().await;
    let ep = Client::default().endpoint(addr, Transport::http1());
    assert_handed_back(
        &ep,
        true,
        &[("connection", "upgrade"), ("upgrade", "websocket")],
        ErrorKind::Connect,
    )
    .await;
}

/// A listener that accepts nothing and whose accept queue is full: a connect to it
/// hangs (the kernel drops the SYNs). The listener and the connections filling its
/// queue live as long as the returned guard.
fn black_hole() -> (SocketAddr, (TcpListener, Vec<std::net::TcpStream>)) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => break,
        }
    }
    (addr, (listener, fillers))
}

#[tokio::test]
async fn a_connect_timeout_hands_the_request_back() {
    let (addr, _guard) = black_hole();
    let client = Client::new(ClientConfig::default().connect_timeout(Duration::from_millis(100)));
    let ep = client.endpoint(addr, Transport::http1());
    assert_handed_back(&ep, true, &[], ErrorKind::Connect).await;
    let ep = client.endpoint(addr, Transport::http2());
    assert_handed_back(&ep, true, &[], ErrorKind::Connect).await;
}

#[tokio::test]
async fn the_connection_cap_hands_nothing_back() {
    let addr = refused_port().await;
    let limits = PoolLimits::new().with_max_connections(ConnectionCap::new("default/web", 0));
    let client = Client::default();
    for transport in [Transport::http1(), Transport::http2()] {
        let ep = client.endpoint_with(addr, transport, limits.clone());
        let (req, _) = post(true, &[]);
        let err = within(ep.send(req)).await.unwrap_err();
        let gatekit = Error::find(&*err).unwrap();
        assert_eq!(gatekit.kind(), ErrorKind::CircuitOpen);
        assert!(!gatekit.is_retry_safe());
        assert!(take_unsent_request::<Body>(&*err).is_none());
    }
}
