//! The HTTP/1.1 connection pool: reuse, idle timeout, early-dropped bodies, connections
//! closed by the upstream while idle, pool sharing between endpoint clients.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use gatekit_core::Body;
use gatekit_core::client::{Client, ClientConfig, EndpointClient, PoolLimits, Transport};
use http::{Request, Response};
use support::{Mode, backend, body_bytes, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "pool.test")
        .body(Body::empty())
        .unwrap()
}

async fn fetch(ep: &EndpointClient, path: &str) -> Bytes {
    let rsp = within(ep.send(get(path))).await.unwrap();
    assert!(rsp.status().is_success());
    within(body_bytes(rsp.into_body())).await
}

/// A backend answering `/big` with 1 MiB, `/empty` with 204, anything else with "ok".
async fn sized_backend() -> support::TestBackend {
    backend(
        Mode::Http1,
        |req: Request<hyper::body::Incoming>| async move {
            match req.uri().path() {
                "/big" => Response::new(Body::from(Bytes::from(vec![7u8; 1 << 20]))),
                "/empty" => Response::builder().status(204).body(Body::empty()).unwrap(),
                _ => Response::new(Body::from("ok")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let mut upstream = sized_backend().await;
    let idle_timeout = Duration::from_millis(200);
    let client = Client::new(ClientConfig::default().pool_idle_timeout(idle_timeout));
    let ep = client.endpoint(upstream.addr, Transport::http1());

    assert_eq!(&fetch(&ep, "/").await[..], b"ok");
    let returned = Instant::now();
    assert_eq!(ep.idle_connections(), 1);

    // The reaper closes the idle connection: the backend sees it end.
    within(upstream.closed.recv()).await.unwrap();
    assert!(returned.elapsed() >= idle_timeout);
    assert_eq!(ep.idle_connections(), 0);

    assert_eq!(&fetch(&ep, "/").await[..], b"ok");
    assert_eq!(
        upstream.accepted(),
        2,
        "a new connection after the idle one closed"
    );
}

#[tokio::test]
async fn an_upstreams_own_idle_timeout_wins_over_the_clients() {
    let mut upstream = sized_backend().await;
    // The client's is an hour: only the upstream's own 200 ms can close the connection.
    let client = Client::new(ClientConfig::default().pool_idle_timeout(Duration::from_secs(3600)));
    let idle_timeout = Duration::from_millis(200);
    let ep = client.endpoint_with(
        upstream.addr,
        Transport::http1(),
        PoolLimits::new().with_idle_timeout(idle_timeout),
    );
    assert_eq!(&fetch(&ep, "/").await[..], b"ok");
    let returned = Instant::now();
    within(upstream.closed.recv()).await.unwrap();
    assert!(returned.elapsed() >= idle_timeout);
    assert_eq!(ep.idle_connections(), 0);
    // An endpoint client of the same address without its own timeout is another pool.
    let plain = client.endpoint(upstream.addr, Transport::http1());
    assert_eq!(&fetch(&plain, "/").await[..], b"ok");
    assert_eq!(plain.idle_connections(), 1);
    assert_eq!(ep.idle_connections(), 0);
}

#[tokio::test]
async fn a_connection_whose_body_was_dropped_early_is_not_reused() {
    let upstream = sized_backend().await;
    let client = Client::default();
    let ep = client.endpoint(upstream.addr, Transport::http1());

    // Fully read bodies (including empty ones) return the connection.
    assert_eq!(fetch(&ep, "/big").await.len(), 1 << 20);
    assert_eq!(fetch(&ep, "/empty").await.len(), 0);
    assert_eq!(fetch(&ep, "/").await.len(), 2);
    assert_eq!(upstream.accepted(), 1);
    assert_eq!(ep.idle_connections(), 1);

    // Headers only, body dropped: the connection has unread bytes and is closed.
    let rsp = within(ep.send(get("/big"))).await.unwrap();
    assert_eq!(ep.idle_connections(), 0);
    drop(rsp);
    assert_eq!(ep.idle_connections(), 0);

    assert_eq!(&fetch(&ep, "/").await[..], b"ok");
    assert_eq!(upstream.accepted(), 2);
}

#[tokio::test]
async fn a_connection_closed_by_the_upstream_while_idle_is_not_used() {
    // Answers one request per connection with keep-alive semantics, then closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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

    let client = Client::default();
    let ep = client.endpoint(addr, Transport::http1());
    assert_eq!(&fetch(&ep, "/").await[..], b"ok");
    within(closed_rx.recv()).await.unwrap();
    // The pooled connection is dead; the next request still succeeds, on a new one.
    assert_eq!(&fetch(&ep, "/").await[..], b"ok");
    assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// What a timeout does to an upstream request: the response future is dropped while the
/// request is in flight. The connection must close (the upstream sees EOF) and never go
/// back to the pool.
#[tokio::test]
async fn a_request_dropped_in_flight_closes_its_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 1.. {
            let (mut stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    head.extend_from_slice(&buf[..n]);
                }
                if head.starts_with(b"GET /hang ") {
                    let _ = tx.send(("head", n));
                    // Hang: the next read returns 0 once the client closes.
                    let read = stream.read(&mut buf).await.unwrap_or(0);
                    let _ = tx.send((if read == 0 { "eof" } else { "data" }, n));
                } else {
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                    let _ = tx.send(("answered", n));
                }
            });
        }
    });

    let client = Client::default();
    let ep = client.endpoint(addr, Transport::http1());
    let mut hung = Box::pin(ep.send(get("/hang")));
    tokio::select! {
        _ = &mut hung => panic!("the hanging request answered"),
        event = events.recv() => assert_eq!(event, Some(("head", 1))),
    }
    drop(hung);
    assert_eq!(within(events.recv()).await, Some(("eof", 1)));
    assert_eq!(ep.idle_connections(), 0);
    // The next request opens a new connection.
    assert_eq!(&fetch(&ep, "/").await[..], b"ok");
    assert_eq!(within(events.recv()).await, Some(("answered", 2)));
}

#[tokio::test]
async fn endpoint_clients_for_the_same_address_share_a_pool() {
    let upstream = sized_backend().await;
    let client = Client::default();
    let a = client.endpoint(upstream.addr, Transport::http1());
    let b = client.endpoint(upstream.addr, Transport::http1());
    let h2 = client.endpoint(upstream.addr, Transport::http2());

    assert_eq!(&fetch(&a, "/").await[..], b"ok");
    assert_eq!(b.idle_connections(), 1, "b sees a's idle connection");
    assert_eq!(&fetch(&b, "/").await[..], b"ok");
    assert_eq!(upstream.accepted(), 1);
    assert_eq!(h2.idle_connections(), 0, "another transport, another pool");
}

#[tokio::test]
async fn the_idle_stack_is_bounded() {
    let upstream = sized_backend().await;
    let client = Client::new(ClientConfig::default().pool_max_idle_per_endpoint(2));
    let ep = client.endpoint(upstream.addr, Transport::http1());

    // Four requests in flight at once need four connections...
    let responses = futures_util::future::join_all((0..4).map(|_| ep.send(get("/big")))).await;
    assert_eq!(upstream.accepted(), 4);
    // ...but only two are kept once their bodies are read.
    for rsp in responses {
        assert_eq!(body_bytes(rsp.unwrap().into_body()).await.len(), 1 << 20);
    }
    assert_eq!(ep.idle_connections(), 2);
}

#[tokio::test]
async fn the_h2_connection_is_reestablished_after_the_upstream_closes_it() {
    // An h2c backend that answers, then shuts its connection down gracefully (GOAWAY).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let answered = std::sync::Arc::new(tokio::sync::Notify::new());
                let notify = answered.clone();
                let svc = hyper::service::service_fn(move |_req| {
                    notify.notify_one();
                    async { Ok::<_, std::convert::Infallible>(Response::new(Body::from("h2"))) }
                });
                let builder =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = answered.notified() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
                let _ = closed_tx.send(());
            });
        }
    });

    let client = Client::default();
    let ep = client.endpoint(addr, Transport::http2());
    assert_eq!(&fetch(&ep, "/").await[..], b"h2");
    within(closed_rx.recv()).await.unwrap();
    assert_eq!(&fetch(&ep, "/").await[..], b"h2");
    assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 2);
}
