//! The admin server: health, readiness, metrics and the served configuration.
//!
//! | path       | answer                                                                   |
//! |------------|--------------------------------------------------------------------------|
//! | `/healthz` | `200 ok` while the process runs                                          |
//! | `/readyz`  | `200 ready` once the first snapshot serves; `503` before, and while draining |
//! | `/metrics` | the OpenMetrics text exposition of [`Metrics`]                           |
//! | `/config`  | the JSON the process last published with [`ConfigDump::publish`]         |
//!
//! The admin API shows the whole configuration, so it listens on loopback unless the
//! settings say otherwise ([`AdminSettings`](crate::AdminSettings)). It is plain
//! HTTP/1.1 and HTTP/2 (prior knowledge); it has no TLS and no authentication.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use gatekit_core::Body;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_service::Service;

use crate::Metrics;

// === impl Readiness ===

/// Where the process is in its life, as `/readyz` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Phase {
    /// Started; no configuration snapshot serves yet. Not ready.
    Starting,
    /// The first snapshot serves. Ready.
    Ready,
    /// A shutdown began: not ready, listeners still accepting while the change is
    /// announced.
    NotReady,
    /// Listeners closed; in-flight requests are finishing. Not ready.
    Draining,
    /// Drained; the process is about to exit. Not ready.
    Stopped,
}

/// The process's readiness, shared by whoever serves the first snapshot, the shutdown
/// sequence and `/readyz`. Cheap to clone. Phases only move forward.
#[derive(Clone)]
pub struct Readiness {
    phase: Arc<watch::Sender<Phase>>,
}

impl Readiness {
    /// A process in [`Phase::Starting`].
    pub fn new() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Starting)),
        }
    }

    /// Marks the first snapshot as served: `/readyz` answers 200 from now on (unless a
    /// shutdown already began).
    pub fn mark_served(&self) {
        self.advance(Phase::Ready);
    }

    /// Moves to `phase` if it is later than the current one.
    pub fn advance(&self, phase: Phase) {
        self.phase.send_if_modified(|current| {
            if phase > *current {
                *current = phase;
                true
            } else {
                false
            }
        });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }

    /// Resolves once the phase is `phase` or later.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|current| *current >= phase).await;
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Readiness").field(&self.phase()).finish()
    }
}

// === impl ConfigDump ===

/// The JSON `/config` serves: whatever the process last published (the wiring publishes
/// the served snapshot and each resource's conditions). Cheap to clone; publishing is one
/// atomic swap. Kept serialized: a `serde_json::Value` of a large configuration costs
/// several times its text in memory (a map node per object).
#[derive(Clone)]
pub struct ConfigDump {
    current: Arc<ArcSwap<Bytes>>,
}

impl ConfigDump {
    /// A dump that serves `null` until something is published.
    pub fn new() -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(Bytes::from_static(b"null"))),
        }
    }

    /// Replaces what `/config` serves.
    pub fn publish(&self, value: serde_json::Value) {
        let text = serde_json::to_vec_pretty(&value).unwrap_or_else(|_| b"null".to_vec());
        self.current.store(Arc::new(Bytes::from(text)));
    }

    /// Replaces what `/config` serves with JSON text already rendered (the caller
    /// guarantees it is valid JSON).
    pub fn publish_json(&self, json: String) {
        self.current.store(Arc::new(Bytes::from(json)));
    }

    /// What `/config` serves now, as JSON text.
    pub fn current(&self) -> Bytes {
        Bytes::clone(&self.current.load())
    }
}

impl Default for ConfigDump {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ConfigDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigDump").finish_non_exhaustive()
    }
}

// === impl AdminService ===

/// The admin API as a tower service (always ready). Serve it with
/// [`serve_admin`] or any hyper server.
#[derive(Clone, Debug)]
pub struct AdminService {
    inner: Arc<AdminState>,
}

#[derive(Debug)]
struct AdminState {
    readiness: Readiness,
    metrics: Metrics,
    config: ConfigDump,
    fleet: ConfigDump,
}

impl AdminService {
    /// The admin API over these handles.
    pub fn new(readiness: Readiness, metrics: Metrics, config: ConfigDump) -> Self {
        Self::with_fleet(readiness, metrics, config, ConfigDump::new())
    }

    /// The admin API with a fleet view: `/fleet` serves what is published to `fleet`
    /// (the live replicas and their configuration drift, refreshed by the wiring when
    /// running from Kubernetes; `null` otherwise).
    pub fn with_fleet(
        readiness: Readiness,
        metrics: Metrics,
        config: ConfigDump,
        fleet: ConfigDump,
    ) -> Self {
        Self {
            inner: Arc::new(AdminState {
                readiness,
                metrics,
                config,
                fleet,
            }),
        }
    }

    fn answer(&self, method: &Method, path: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.inner.readiness.phase() {
                Phase::Ready => text(StatusCode::OK, "ready\n"),
                Phase::Starting => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
                _ => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            },
            "/metrics" => {
                let mut response = Response::new(Body::full(self.inner.metrics.encode()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            "/config" => json(self.inner.config.current()),
            "/fleet" => json(self.inner.fleet.current()),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /healthz, /readyz, /metrics, /config or /fleet\n",
            ),
        }
    }
}

fn json(body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::full(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Body::full(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl<B> Service<Request<B>> for AdminService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        std::future::ready(Ok(self.answer(request.method(), request.uri().path())))
    }
}

/// Serves `service` on `listener` until `shutdown` completes.
///
/// # Errors
///
/// Only if the listener's address cannot be read.
pub async fn serve_admin(
    listener: TcpListener,
    service: AdminService,
    shutdown: impl Future<Output = ()>,
) -> Result<(), gatekit_core::BoxError> {
    gatekit_core::server::serve(listener, service, shutdown).await
}
