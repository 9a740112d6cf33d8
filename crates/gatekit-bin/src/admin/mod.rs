//! The admin server: health, readiness, metrics and the served configuration.
//!
//! | path       | kind        | answer                                                       |
//! |------------|-------------|--------------------------------------------------------------|
//! | `/healthz` | probe       | `200 ok` while the process runs                              |
//! | `/readyz`  | probe       | `200 ready` once the first snapshot serves; `503` before, and while draining |
//! | `/metrics` | probe       | the OpenMetrics text exposition of [`Metrics`]               |
//! | `/config`  | operational | the JSON the process last published with [`ConfigDump::publish`] (or the served snapshot, rendered on a blocking thread when asked for) |
//! | `/fleet`   | operational | the live replicas and their configuration drift (`null` without a cluster) |
//!
//! Two listeners can serve it ([`AdminSettings`](crate::AdminSettings)):
//!
//! - the admin address (loopback by default) serves every path. The operational paths
//!   show the whole configuration, so a non-loopback admin address needs a bearer
//!   token ([`AdminToken`]); without or with a wrong one they answer `401` and nothing
//!   else. The probe paths need no token.
//! - the probe address, if set, serves only the probe paths ([`AdminService::probes`]);
//!   the operational ones are `404` there. This is the one to publish on a pod IP for
//!   the kubelet and Prometheus.
//!
//! Both are plain HTTP/1.1 and HTTP/2 (prior knowledge), without TLS.

mod token;

pub use self::token::{AdminToken, AdminTokenError};

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use gatekit_core::Body;
use gatekit_gateway::{ConfigDump, Metrics, Phase, Readiness};
use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tower_service::Service;

// === impl AdminService ===

/// The admin API as a tower service (always ready). Serve it with
/// [`serve_admin`] or any hyper server.
#[derive(Clone, Debug)]
pub struct AdminService {
    inner: Arc<AdminState>,
    probes_only: bool,
    token: Option<AdminToken>,
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Healthz,
    Readyz,
    Metrics,
    Config,
    Fleet,
    Unknown,
}

impl Endpoint {
    fn of(path: &str) -> Self {
        match path {
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/metrics" => Self::Metrics,
            "/config" => Self::Config,
            "/fleet" => Self::Fleet,
            _ => Self::Unknown,
        }
    }

    /// Whether it shows or changes the configuration (not a probe).
    fn is_operational(self) -> bool {
        matches!(self, Self::Config | Self::Fleet)
    }
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
            probes_only: false,
            token: None,
        }
    }

    /// The same API restricted to the probes and metrics (`/healthz`, `/readyz`,
    /// `/metrics`): every other path, `/config` and `/fleet` included, is `404`. For a
    /// listener the kubelet and Prometheus reach.
    #[must_use]
    pub fn probes(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            probes_only: true,
            token: None,
        }
    }

    /// Requires `Authorization: Bearer <token>` on the operational endpoints
    /// (`/config`, `/fleet`); a request without it or with another token gets `401`
    /// with an empty body. Probes stay open.
    #[must_use]
    pub fn with_token(mut self, token: AdminToken) -> Self {
        self.token = Some(token);
        self
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

    /// The answer to everything but an authorised `GET /config` (which
    /// [`config`](Self::config) renders off the runtime).
    fn answer(&self, endpoint: Endpoint, parts: &http::request::Parts) -> Response<Body> {
        if self.probes_only && (endpoint.is_operational() || endpoint == Endpoint::Unknown) {
            return text(
                StatusCode::NOT_FOUND,
                "not found; try /healthz, /readyz or /metrics\n",
            );
        }
        if endpoint.is_operational() && !self.admits(parts) {
            return unauthorized();
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        match endpoint {
            Endpoint::Healthz => text(StatusCode::OK, "ok\n"),
            Endpoint::Readyz => match self.inner.readiness.phase() {
                Phase::Ready => text(StatusCode::OK, "ready\n"),
                Phase::Starting => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
                _ => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            },
            Endpoint::Metrics => {
                let mut response = Response::new(Body::full(self.inner.metrics.encode()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            Endpoint::Fleet => json(self.inner.fleet.current()),
            Endpoint::Config => json(self.inner.config.current()),
            Endpoint::Unknown => text(
                StatusCode::NOT_FOUND,
                "not found; try /healthz, /readyz, /metrics, /config or /fleet\n",
            ),
        }
    }

    /// Whether the request may reach an operational endpoint.
    fn admits(&self, parts: &http::request::Parts) -> bool {
        self.token.as_ref().is_none_or(|token| token.admits(parts))
    }
}

/// `401` with the scheme to use and no detail.
fn unauthorized() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
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
        let (parts, _body) = request.into_parts();
        let endpoint = Endpoint::of(parts.uri.path());
        let read = parts.method == Method::GET || parts.method == Method::HEAD;
        if endpoint == Endpoint::Config && read && !self.probes_only && self.admits(&parts) {
            let this = self.clone();
            return Box::pin(async move { Ok(this.config().await) });
        }
        let response = self.answer(endpoint, &parts);
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
