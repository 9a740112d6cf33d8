//! Test support for gatekit's end-to-end tests: echo backends that tell what they
//! received, a gateway served on a loopback port, and a plain HTTP client.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

pub mod authz;
pub mod raw;
pub mod secrets;
pub mod wired;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use gatekit_core::Body;
use gatekit_core::Router;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// What an echo backend saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A real hyper HTTP/1.1 + h2c server on 127.0.0.1 that answers 200 with
/// `x-backend: <name>` and `x-echo-path: <path?query>`, and reports every request.
#[derive(Debug)]
pub struct EchoBackend {
    pub addr: SocketAddr,
    pub name: &'static str,
    hits: Arc<AtomicUsize>,
    seen: mpsc::UnboundedReceiver<Seen>,
    _stop: oneshot::Sender<()>,
}

impl EchoBackend {
    pub async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let (tx, seen) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let counter = hits.clone();
        tokio::spawn(async move {
            let svc = tower::service_fn(move |req: Request<Body>| {
                let tx = tx.clone();
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let path = parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default();
                    let _ = tx.send(Seen {
                        method: parts.method.clone(),
                        uri: parts.uri.clone(),
                        headers: parts.headers.clone(),
                        body: body.clone(),
                    });
                    let rsp = Response::builder()
                        .header("x-backend", name)
                        .header("x-echo-path", path)
                        .body(Full::new(body))
                        .unwrap();
                    Ok::<_, Infallible>(rsp)
                }
            });
            let server = gatekit_core::server::serve(listener, svc, async {
                let _ = stopped.await;
            });
            let _ = server.await;
        });
        Self {
            addr,
            name,
            hits,
            seen,
            _stop: stop,
        }
    }

    /// How many requests this backend has received.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    /// Every request received and not yet taken, without waiting (path and query of each).
    pub fn drain_seen(&mut self) -> Vec<Seen> {
        let mut all = Vec::new();
        while let Ok(seen) = self.seen.try_recv() {
            all.push(seen);
        }
        all
    }

    /// The next request this backend receives (waits for it).
    pub async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.seen.recv())
            .await
            .expect("backend saw no request in 10 s")
            .expect("backend stopped")
    }
}

/// A gateway serving `router` on a fresh 127.0.0.1 port until dropped.
#[derive(Debug)]
pub struct Gateway {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Gateway {
    pub async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(gatekit_core::server::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Self { addr, _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A keep-alive HTTP/1.1 client for tests.
#[derive(Clone, Debug)]
pub struct TestClient {
    inner: LegacyClient<HttpConnector, Full<Bytes>>,
}

impl Default for TestClient {
    fn default() -> Self {
        Self::new()
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestClient {
    pub fn new() -> Self {
        Self {
            inner: LegacyClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        let rsp = self.inner.request(req).await.unwrap();
        let (parts, body) = rsp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send(Request::get(url).body(Full::default()).unwrap())
            .await
    }
}

/// A port nothing listens on, so connecting to it is refused: one of
/// [`wired::free_port`]'s, below the ephemeral range, where no other test's `bind(0)`
/// backend can come to listen (a closed ephemeral port did, under load, and a "dead"
/// endpoint answered).
pub async fn closed_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], wired::free_port()))
}

/// Keeps `TokioIo` reachable for tests that speak raw HTTP/1.
pub type Io<T> = TokioIo<T>;
