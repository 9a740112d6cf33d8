//! Circuit breaking against real backends on loopback: the upstream client's connection
//! thresholds (`max_connections` as a [`ConnectionCap`], `max_requests_per_connection`)
//! on each of its paths (gatekit's own HTTP/1.1 codec, hyper's HTTP/1.1, HTTP/2,
//! upgrades), the connection count when connections close for any reason, and the
//! request breaker's 503 through a gateway.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use gatekit_core::breaker::{
    BREAKER_HEADER, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, THRESHOLD_HEADER,
};
use gatekit_core::client::{
    Client, ClientConfig, ConnectionCap, EndpointClient, PoolLimits, Transport,
};
use gatekit_core::{Backend, Body, BoxError, Error, ErrorKind, error_response};
use http::{Request, Response};
use hyper::body::Incoming;
use support::{Mode, TestBackend, backend, body_bytes, gateway, h1_client, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tower::Layer;

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "breaker.test")
        .body(Body::empty())
        .unwrap()
}

/// A request with framing of its own (`Transfer-Encoding`): the client sends it the
/// hyper way rather than with its own codec.
fn chunked_post(path: &str) -> Request<Body> {
    Request::post(path)
        .header("host", "breaker.test")
        .header("transfer-encoding", "chunked")
        .body(Body::from("hello"))
        .unwrap()
}

async fn fetch(ep: &EndpointClient, req: Request<Body>) -> String {
    let rsp = within(ep.send(req)).await.unwrap();
    assert!(rsp.status().is_success(), "{}", rsp.status());
    let body = within(body_bytes(rsp.into_body())).await;
    String::from_utf8(body.to_vec()).unwrap()
}

fn capped(cap: &ConnectionCap) -> PoolLimits {
    PoolLimits::new().with_max_connections(cap.clone())
}

fn per_connection(n: u32) -> PoolLimits {
    PoolLimits::new().with_max_requests_per_connection(NonZeroU32::new(n).unwrap())
}

/// Asserts that `err` is the connection cap's refusal.
fn assert_cap_refusal(err: &BoxError, cap: &str) {
    let found = Error::find(&**err).unwrap();
    assert_eq!(found.kind(), ErrorKind::CircuitOpen);
    assert!(!found.is_retry_safe(), "not retried into the same cap");
    let rsp = error_response(&**err);
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()[BREAKER_HEADER], cap);
    assert_eq!(rsp.headers()[THRESHOLD_HEADER], "max-connections");
}

/// Waits (bounded) until `cond` holds: for counts that change when a connection task
/// of hyper's ends, which nothing else reports.
async fn eventually(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// A backend that holds every request until the test lets it answer: reports each
/// arrival, reads the request body, then waits for a permit.
struct Slow {
    backend: TestBackend,
    gate: Arc<Semaphore>,
    arrived: mpsc::UnboundedReceiver<()>,
}

async fn slow_backend(mode: Mode) -> Slow {
    let gate = Arc::new(Semaphore::new(0));
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let g = gate.clone();
    let backend = backend(mode, move |req: Request<Incoming>| {
        let gate = g.clone();
        let arrived = arrived_tx.clone();
        async move {
            let _ = body_bytes(req.into_body()).await;
            let _ = arrived.send(());
            gate.acquire().await.unwrap().forget();
            Response::new(Body::from("slow"))
        }
    })
    .await;
    Slow {
        backend,
        gate,
        arrived,
    }
}

/// A backend answering "ok" at once, after reading the request body.
async fn quick_backend(mode: Mode) -> TestBackend {
    backend(mode, |req: Request<Incoming>| async move {
        let _ = body_bytes(req.into_body()).await;
        Response::new(Body::from("ok"))
    })
    .await
}

// === max_connections ===

async fn a_third_concurrent_request_fails_fast(request: fn(&str) -> Request<Body>) {
    let mut slow = slow_backend(Mode::Http1).await;
    let cap = ConnectionCap::new("default/web", 2);
    let client = Client::default();
    let ep = client.endpoint_with(slow.backend.addr, Transport::http1(), capped(&cap));

    let first = tokio::spawn(ep.send(request("/1")));
    let second = tokio::spawn(ep.send(request("/2")));
    within(slow.arrived.recv()).await.unwrap();
    within(slow.arrived.recv()).await.unwrap();
    assert_eq!(cap.open(), 2);
    assert!(cap.is_open());

    // At the cap with nothing idle: refused on the first poll, without any I/O.
    let err = ep
        .send(request("/3"))
        .now_or_never()
        .expect("refused at once")
        .unwrap_err();
    assert_cap_refusal(&err, "default/web");
    assert_eq!(cap.rejected(), 1);
    assert_eq!(
        slow.backend.accepted(),
        2,
        "the backend accepted exactly two"
    );

    slow.gate.add_permits(1000);
    for rsp in [first, second] {
        let rsp = within(rsp).await.unwrap().unwrap();
        assert_eq!(&body_bytes(rsp.into_body()).await[..], b"slow");
    }
    // Once answered, the connections are reused: sequentially and two at a time.
    for i in 0..4 {
        assert_eq!(fetch(&ep, request(&format!("/again/{i}"))).await, "slow");
    }
    let (a, b) = tokio::join!(fetch(&ep, request("/a")), fetch(&ep, request("/b")));
    assert_eq!((a.as_str(), b.as_str()), ("slow", "slow"));
    assert_eq!(slow.backend.accepted(), 2);
    assert_eq!(cap.open(), 2);
    assert_eq!(cap.rejected(), 1);
}

#[tokio::test]
async fn at_the_cap_a_third_request_fails_fast_and_connections_are_reused() {
    a_third_concurrent_request_fails_fast(get).await;
}

#[tokio::test]
async fn at_the_cap_a_third_request_fails_fast_on_hyper_connections_too() {
    a_third_concurrent_request_fails_fast(chunked_post).await;
}

#[tokio::test]
async fn one_h2_connection_carries_concurrent_requests_under_a_cap_of_one() {
    let mut slow = slow_backend(Mode::Http2).await;
    let cap = ConnectionCap::new("h2", 1);
    let client = Client::default();
    let ep = client.endpoint_with(slow.backend.addr, Transport::http2(), capped(&cap));
    let requests: Vec<_> = (0..5)
        .map(|i| tokio::spawn(ep.send(get(&format!("/{i}")))))
        .collect();
    for _ in 0..5 {
        within(slow.arrived.recv()).await.unwrap();
    }
    slow.gate.add_permits(5);
    for rsp in requests {
        within(rsp).await.unwrap().unwrap();
    }
    assert_eq!(slow.backend.accepted(), 1);
    assert_eq!(cap.open(), 1);
    assert_eq!(cap.rejected(), 0);
}

#[tokio::test]
async fn connections_the_backend_closes_free_their_place() {
    // Answers with `connection: close`: the connection ends with each response.
    let closing = backend(Mode::Http1, |_req: Request<Incoming>| async {
        Response::builder()
            .header("connection", "close")
            .body(Body::from("bye"))
            .unwrap()
    })
    .await;
    let cap = ConnectionCap::new("closing", 1);
    let client = Client::default();
    for request in [get, chunked_post] {
        let ep = client.endpoint_with(closing.addr, Transport::http1(), capped(&cap));
        for i in 0..3 {
            assert_eq!(fetch(&ep, request(&format!("/{i}"))).await, "bye");
            // gatekit's codec drops the connection with the response; hyper's task ends
            // a moment later.
            eventually(|| cap.open() == 0).await;
        }
    }
    assert_eq!(closing.accepted(), 6);
    assert_eq!(cap.rejected(), 0);
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_backend_while_idle_frees_its_place() {
    // Answers one request per connection with keep-alive semantics, then closes it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    head.extend_from_slice(&buf[..n]);
                }
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                drop(stream);
                let _ = closed_tx.send(());
            });
        }
    });
    let cap = ConnectionCap::new("one", 1);
    let client = Client::default();
    let ep = client.endpoint_with(addr, Transport::http1(), capped(&cap));
    for _ in 0..3 {
        assert_eq!(fetch(&ep, get("/")).await, "ok");
        within(closed.recv()).await.unwrap();
        // Pooled, dead, and still counted until something looks at it: the next
        // request's checkout drops it and so finds room.
        assert_eq!(cap.open(), 1);
        assert_eq!(ep.idle_connections(), 1);
    }
    assert_eq!(cap.rejected(), 0);
}

#[tokio::test]
async fn failures_free_their_place() {
    // A backend that promises 100 bytes, sends 10 and closes: a body error.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                    .await;
            });
        }
    });
    let cap = ConnectionCap::new("failing", 1);
    let client = Client::default();
    let ep = client.endpoint_with(addr, Transport::http1(), capped(&cap));
    for _ in 0..3 {
        let rsp = within(ep.send(get("/"))).await.unwrap();
        let body = within(http_body_util::BodyExt::collect(rsp.into_body())).await;
        assert!(body.is_err());
        assert_eq!(cap.open(), 0);
    }

    // Refused connections: the slot taken for the attempt is given back.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    for request in [get, chunked_post] {
        let ep = client.endpoint_with(nowhere, Transport::http1(), capped(&cap));
        for _ in 0..3 {
            let err = within(ep.send(request("/"))).await.unwrap_err();
            assert_eq!(Error::find(&*err).unwrap().kind(), ErrorKind::Connect);
            assert_eq!(cap.open(), 0);
        }
    }
    assert_eq!(cap.rejected(), 0);
}

#[tokio::test]
async fn idle_connections_reaped_after_the_idle_timeout_free_their_place() {
    let mut upstream = quick_backend(Mode::Http1).await;
    let cap = ConnectionCap::new("reaped", 1);
    let client = Client::new(ClientConfig::default().pool_idle_timeout(Duration::from_millis(50)));
    let ep = client.endpoint_with(upstream.addr, Transport::http1(), capped(&cap));
    assert_eq!(fetch(&ep, get("/")).await, "ok");
    assert_eq!(cap.open(), 1);
    within(upstream.closed.recv()).await.unwrap();
    assert_eq!(cap.open(), 0, "closed by the reaper");
    assert_eq!(fetch(&ep, chunked_post("/")).await, "ok");
    within(upstream.closed.recv()).await.unwrap();
    eventually(|| cap.open() == 0).await;
}

#[tokio::test]
async fn at_the_cap_an_idle_connection_to_another_endpoint_makes_room() {
    let mut a = quick_backend(Mode::Http1).await;
    let b = quick_backend(Mode::Http1).await;
    let cap = ConnectionCap::new("two-pods", 1);
    let limits = capped(&cap);
    let client = Client::default();
    let to_a = client.endpoint_with(a.addr, Transport::http1(), limits.clone());
    let to_b = client.endpoint_with(b.addr, Transport::http1(), limits);

    assert_eq!(fetch(&to_a, get("/")).await, "ok");
    assert_eq!(to_a.idle_connections(), 1);
    // b's request closes a's idle connection rather than fail.
    assert_eq!(fetch(&to_b, get("/")).await, "ok");
    within(a.closed.recv()).await.unwrap();
    assert_eq!(to_a.idle_connections(), 0);
    assert_eq!(cap.open(), 1);
    assert_eq!(cap.rejected(), 0);
}

#[tokio::test]
async fn an_upgraded_connection_counts_until_it_closes() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = upstream.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let cap = ConnectionCap::new("ws", 1);
    let client = Client::default();
    let ep = client.endpoint_with(upstream_addr, Transport::http1(), capped(&cap));
    let gw = gateway(Backend::new(ep)).await;

    let (mut ws, _) = within(tokio_tungstenite::connect_async(format!("ws://{gw}/")))
        .await
        .unwrap();
    within(ws.send("hi".into())).await.unwrap();
    assert_eq!(within(ws.next()).await.unwrap().unwrap(), "hi".into());
    assert_eq!(
        cap.open(),
        1,
        "hyper's task is done, the upgraded connection is not"
    );

    // A second WebSocket finds the cap reached.
    let refused = within(tokio_tungstenite::connect_async(format!("ws://{gw}/"))).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(rsp)) => {
            assert_eq!(rsp.status(), 503);
            assert_eq!(rsp.headers()[THRESHOLD_HEADER], "max-connections");
        }
        other => panic!("expected a 503, got {other:?}"),
    }

    within(ws.close(None)).await.unwrap();
    drop(ws);
    eventually(|| cap.open() == 0).await;
    let (mut ws, _) = within(tokio_tungstenite::connect_async(format!("ws://{gw}/")))
        .await
        .unwrap();
    within(ws.send("again".into())).await.unwrap();
    assert_eq!(within(ws.next()).await.unwrap().unwrap(), "again".into());
}

// === max_requests_per_connection ===

async fn nine_requests_three_connections(
    mode: Mode,
    transport: Transport,
    request: fn(&str) -> Request<Body>,
) {
    let upstream = quick_backend(mode).await;
    let client = Client::default();
    let ep = client.endpoint_with(upstream.addr, transport, per_connection(3));
    for i in 0..9 {
        assert_eq!(fetch(&ep, request(&format!("/{i}"))).await, "ok");
    }
    assert_eq!(upstream.accepted(), 3);
}

#[tokio::test]
async fn three_requests_per_connection_nine_requests_three_connections() {
    nine_requests_three_connections(Mode::Http1, Transport::http1(), get).await;
}

#[tokio::test]
async fn three_requests_per_connection_on_hyper_connections() {
    nine_requests_three_connections(Mode::Http1, Transport::http1(), chunked_post).await;
}

#[tokio::test]
async fn three_streams_per_h2_connection() {
    nine_requests_three_connections(Mode::Http2, Transport::http2(), get).await;
}

#[tokio::test]
async fn a_retired_h2_connection_counts_until_its_streams_are_done() {
    let mut slow = slow_backend(Mode::Http2).await;
    let cap = ConnectionCap::new("h2-retire", 1);
    let client = Client::default();
    let limits = capped(&cap).with_max_requests_per_connection(NonZeroU32::new(2).unwrap());
    let ep = client.endpoint_with(slow.backend.addr, Transport::http2(), limits);

    let first = tokio::spawn(ep.send(get("/1")));
    let second = tokio::spawn(ep.send(get("/2")));
    within(slow.arrived.recv()).await.unwrap();
    within(slow.arrived.recv()).await.unwrap();
    // The connection is retired (two streams) but still open: no room for another.
    let err = within(ep.send(get("/3"))).await.unwrap_err();
    assert_cap_refusal(&err, "h2-retire");

    slow.gate.add_permits(1000);
    for rsp in [first, second] {
        within(rsp).await.unwrap().unwrap();
    }
    within(slow.backend.closed.recv()).await.unwrap();
    eventually(|| cap.open() == 0).await;
    assert_eq!(fetch(&ep, get("/4")).await, "slow");
    assert_eq!(slow.backend.accepted(), 2);
}

#[test]
fn pool_limits_from_a_breaker_config() {
    let mut config = CircuitBreakerConfig::default();
    config.max_connections = Some(7);
    config.max_requests_per_connection = Some(0);
    let limits = PoolLimits::from_config("default/web", &config);
    let cap = limits.max_connections().unwrap();
    assert_eq!((cap.name(), cap.max(), cap.open()), ("default/web", 7, 0));
    assert_eq!(limits.max_requests_per_connection(), None, "0 is no limit");

    config.max_connections = None;
    config.max_requests_per_connection = Some(100);
    let limits = PoolLimits::from_config("default/web", &config);
    assert!(limits.max_connections().is_none());
    assert_eq!(limits.max_requests_per_connection().unwrap().get(), 100);
}

// === the request breaker over the real client ===

#[tokio::test]
async fn the_breaker_answers_503_with_its_headers_through_a_gateway() {
    let mut slow = slow_backend(Mode::Http1).await;
    let mut config = CircuitBreakerConfig::default();
    config.max_parallel_requests = Some(1);
    let breaker = Arc::new(CircuitBreaker::new("default/web/0/api", config));
    let client = Client::default();
    let guarded = CircuitBreakerLayer::new(breaker.clone())
        .layer(Backend::single(&client, slow.backend.addr));
    let gw = gateway(Backend::new(guarded)).await;
    let http = h1_client();
    let uri = |path: &str| format!("http://{gw}{path}");

    let first =
        tokio::spawn(http.request(Request::get(uri("/first")).body(Body::empty()).unwrap()));
    within(slow.arrived.recv()).await.unwrap();
    let rsp = within(http.request(Request::get(uri("/second")).body(Body::empty()).unwrap()))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["x-gatekit-error"], "circuit-open");
    assert_eq!(rsp.headers()[BREAKER_HEADER], "default/web/0/api");
    assert_eq!(rsp.headers()[THRESHOLD_HEADER], "max-parallel-requests");
    assert!(breaker.is_open());

    slow.gate.add_permits(1000);
    let rsp = within(first).await.unwrap().unwrap();
    assert_eq!(&body_bytes(rsp.into_body()).await[..], b"slow");
    eventually(|| breaker.stats().in_flight == 0).await;
    let rsp = within(http.request(Request::get(uri("/third")).body(Body::empty()).unwrap()))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(slow.backend.accepted(), 1);
}
