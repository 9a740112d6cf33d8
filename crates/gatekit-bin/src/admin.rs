//! The admin server: health, readiness, metrics and the served configuration.
//!
//! | path       | answer                                                                   |
//! |------------|--------------------------------------------------------------------------|
//! | `/healthz` | `200 ok` while the process runs                                          |
//! | `/readyz`  | `200 ready` once the first snapshot serves; `503` before, and while draining |
//! | `/metrics` | the OpenMetrics text exposition of [`Metrics`]                           |
//! | `/config`  | the JSON the process last published with [`ConfigDump::publish`] (or the served snapshot, rendered on a blocking thread when asked for) |
//!
//! The admin API shows the whole configuration, so it listens on loopback unless the
//! settings say otherwise ([`AdminSettings`](crate::AdminSettings)). It is plain
//! HTTP/1.1 and HTTP/2 (prior knowledge); it has no TLS and no authentication.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use gatekit_core::Body;
use gatekit_gateway::{ConfigDump, Metrics, Phase, Readiness};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tower_service::Service;

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

    /// `/config`: rendering a published snapshot takes milliseconds for a large
    /// configuration, so it runs on a blocking thread.
    async fn config(&self) -> Response<Body> {
        let config = self.inner.config.clone();
        match tokio::task::spawn_blocking(move || config.current()).await {
            Ok(body) => json(body),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering /config failed\n",
            ),
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
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let read = request.method() == Method::GET || request.method() == Method::HEAD;
        if read && request.uri().path() == "/config" {
            let this = self.clone();
            return Box::pin(async move { Ok(this.config().await) });
        }
        let response = self.answer(request.method(), request.uri().path());
        Box::pin(std::future::ready(Ok(response)))
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
