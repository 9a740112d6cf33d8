//! HTTPRoute `timeouts` end to end through the wired gateway (`gatekit run`'s library
//! entry point): a real hyper backend whose handler hangs; the client gets a 504 naming
//! the timeout once it expires, and the backend sees its connection closed (its hung
//! handler's future is dropped by hyper when the gateway closes the connection).
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gatekit_tests::wired::{Wired, free_port, gateway_http, route_with, service};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the hanging backend reports.
#[derive(Debug, PartialEq)]
enum Event {
    /// A connection was accepted (its ordinal).
    Accepted(usize),
    /// A request arrived and its handler now hangs.
    Hung,
    /// A hung handler's future was dropped: hyper saw the connection close.
    Dropped,
}

struct OnDrop(mpsc::UnboundedSender<Event>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(Event::Dropped);
    }
}

/// A hyper HTTP/1 backend whose every request hangs forever.
async fn hanging_backend() -> (SocketAddr, mpsc::UnboundedReceiver<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 1.. {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            let _ = tx.send(Event::Accepted(n));
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let guard = OnDrop(tx.clone());
                    let _ = tx.send(Event::Hung);
                    async move {
                        let _guard = guard;
                        std::future::pending::<()>().await;
                        Ok::<_, std::convert::Infallible>(Response::new(String::new()))
                    }
                });
                // hyper's default (no half-close) closes the connection, dropping the
                // handler, when the peer closes it mid-request.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn route_with_timeouts(name: &str, path: &str, timeouts: &str) -> String {
    route_with(name, path, "slow", &format!("    timeouts: {timeouts}\n"))
}

async fn get(addr: SocketAddr, path: &str) -> Response<Incoming> {
    let io = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "example.com")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    sender.send_request(req).await.unwrap()
}

async fn next(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("backend event within 5 s")
        .unwrap()
}

/// Sends one request on `path`, expects a 504 naming `kind` between `at_least` and
/// `at_least + 250 ms`, and the backend's hung handler dropped (its connection closed).
async fn expect_timeout(
    gateway: SocketAddr,
    events: &mut mpsc::UnboundedReceiver<Event>,
    path: &str,
    kind: &str,
    at_least: Duration,
    connection: usize,
) {
    let start = Instant::now();
    let rsp = get(gateway, path).await;
    let took = start.elapsed();
    assert_eq!(rsp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(rsp.headers()["x-gatekit-error"], kind);
    assert!(
        took >= at_least,
        "answered after {took:?}, before {at_least:?}"
    );
    assert!(
        took <= at_least + Duration::from_millis(250),
        "answered after {took:?}"
    );
    // A fresh upstream connection each time: the abandoned one never went back to the
    // pool, and the backend sees it closed.
    assert_eq!(next(events).await, Event::Accepted(connection));
    assert_eq!(next(events).await, Event::Hung);
    assert_eq!(next(events).await, Event::Dropped);
}

#[tokio::test]
async fn route_timeouts_answer_504_and_cancel_the_upstream_request() {
    let (backend, mut events) = hanging_backend().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("gateway.yaml", gateway_http(port)),
        ("service.yaml", service("slow", backend)),
        (
            "routes.yaml",
            format!(
                "{}---\n{}",
                route_with_timeouts("whole", "/whole", "{ request: 300ms }"),
                route_with_timeouts(
                    "attempt",
                    "/attempt",
                    "{ request: 10s, backendRequest: 300ms }"
                ),
            ),
        ),
    ];
    for (name, text) in &files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let dirs: Vec<PathBuf> = vec![dir.path().to_path_buf()];
    let wired = Wired::start(&dirs).await;
    let gateway = SocketAddr::from(([127, 0, 0, 1], port));

    let at_least = Duration::from_millis(300);
    expect_timeout(
        gateway,
        &mut events,
        "/whole",
        "request-timeout",
        at_least,
        1,
    )
    .await;
    expect_timeout(
        gateway,
        &mut events,
        "/attempt",
        "backend-request-timeout",
        at_least,
        2,
    )
    .await;
    wired.stop().await;
}
