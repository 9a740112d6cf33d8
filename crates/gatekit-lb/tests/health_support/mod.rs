//! Test backends for the health tests: real hyper servers on 127.0.0.1:0 whose behaviour
//! a test flips through atomics.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::Endpoint;
use gatekit_lb::health::{HealthEvent, HealthEventKind};
use gatekit_lb::{HealthChecker, SharedHealth};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Counts requests a backend (or a group of backends sharing it) handles.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

/// An HTTP backend (HTTP/1.1 and h2c) answering every request with `status` after
/// `delay_ms`.
pub struct HttpBackend {
    pub addr: SocketAddr,
    pub status: Arc<AtomicU16>,
    pub delay_ms: Arc<AtomicU64>,
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpBackend {
    pub async fn start() -> Self {
        Self::with_stats(Arc::new(Stats::default())).await
    }

    pub async fn with_stats(stats: Arc<Stats>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (s, d, st) = (status.clone(), delay_ms.clone(), stats.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, d, st) = (s.clone(), d.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        let (s, d, st) = (s.clone(), d.clone(), st.clone());
                        async move {
                            st.hits.fetch_add(1, Ordering::SeqCst);
                            let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            st.max_in_flight.fetch_max(now, Ordering::SeqCst);
                            let delay = d.load(Ordering::SeqCst);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                            }
                            st.in_flight.fetch_sub(1, Ordering::SeqCst);
                            let status = StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *resp.status_mut() = status;
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            status,
            delay_ms,
            stats,
            task,
        }
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.stats.hits.load(Ordering::SeqCst)
    }
}

/// Accepts connections and never answers.
pub struct SilentBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for SilentBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilentBackend {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self { addr, task }
    }
}

/// A bare TCP listener (accepts and drops connections) that can be closed and reopened
/// on the same port.
pub struct TcpBackend {
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.close();
    }
}

impl TcpBackend {
    pub fn start() -> Self {
        let mut backend = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            task: None,
        };
        backend.open();
        backend
    }

    /// (Re)binds the port; `SO_REUSEADDR` so connections in TIME_WAIT do not block it.
    pub fn open(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(128).unwrap();
        self.addr = listener.local_addr().unwrap();
        self.task = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        }));
    }

    /// Closes the listening socket: connects are refused from now on.
    pub fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What the gRPC backend answers.
pub const SERVING: u8 = 1;
pub const NOT_SERVING: u8 = 2;
/// Answer a trailers-only response with `grpc-status: 5` (NOT_FOUND: unknown service).
pub const UNKNOWN_SERVICE: u8 = 99;

/// An h2c server implementing `grpc.health.v1.Health/Check`, messages encoded by hand.
pub struct GrpcBackend {
    pub addr: SocketAddr,
    pub mode: Arc<AtomicU8>,
    /// The service name of the last request, decoded from the request message.
    pub last_service: Arc<parking_lot::Mutex<Option<String>>>,
    pub hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcBackend {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(SERVING));
        let last_service = Arc::new(parking_lot::Mutex::new(None));
        let hits = Arc::new(AtomicUsize::new(0));
        let (m, ls, h) = (mode.clone(), last_service.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (m, ls, h) = (m.clone(), ls.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (m, ls, h) = (m.clone(), ls.clone(), h.clone());
                        async move { Ok::<_, Infallible>(grpc_answer(req, &m, &ls, &h).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            mode,
            last_service,
            hits,
            task,
        }
    }

    pub fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

type GrpcBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

async fn grpc_answer(
    req: Request<Incoming>,
    mode: &AtomicU8,
    last_service: &parking_lot::Mutex<Option<String>>,
    hits: &AtomicUsize,
) -> Response<GrpcBody> {
    hits.fetch_add(1, Ordering::SeqCst);
    assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
    assert_eq!(req.headers()["content-type"], "application/grpc");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    // Frame: flag 0, u32 length, then HealthCheckRequest { string service = 1 }.
    assert_eq!(body[0], 0);
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let msg = &body[5..5 + len];
    let service = if msg.is_empty() {
        String::new()
    } else {
        assert_eq!(msg[0], 0x0a);
        let n = msg[1] as usize; // names in these tests are < 128 bytes
        String::from_utf8(msg[2..2 + n].to_vec()).unwrap()
    };
    *last_service.lock() = Some(service);

    let mode = mode.load(Ordering::SeqCst);
    let mut builder = Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    let frames = if mode == UNKNOWN_SERVICE {
        builder = builder.header("grpc-status", "5");
        Vec::new()
    } else {
        // HealthCheckResponse { status = 1 (varint) }, framed.
        let data = Bytes::from(vec![0, 0, 0, 0, 2, 0x08, mode]);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        vec![Ok(Frame::data(data)), Ok(Frame::trailers(trailers))]
    };
    builder
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap()
}

/// One endpoint and a fresh health for it.
pub fn ep(addr: SocketAddr) -> (Endpoint, SharedHealth) {
    (Endpoint::new(addr), SharedHealth::new())
}

/// Waits (bounded) for the next event of `kind` for `addr`, skipping others; returns
/// it and when it arrived.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<HealthEvent>,
    addr: SocketAddr,
    kind: HealthEventKind,
    within: Duration,
) -> (HealthEvent, Instant) {
    tokio::time::timeout(within, async {
        loop {
            let ev = rx.recv().await.unwrap();
            if ev.addr() == addr && ev.kind() == kind {
                return (ev, Instant::now());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event for {addr} within {within:?}"))
}

/// Waits (bounded, polling the snapshot every 5 ms) until `cond` holds.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The checker's snapshot row for `addr`.
pub fn row(
    checker: &HealthChecker,
    addr: SocketAddr,
) -> gatekit_lb::health::EndpointHealthSnapshot {
    checker
        .snapshot()
        .into_iter()
        .find(|s| s.addr == addr)
        .unwrap()
}
