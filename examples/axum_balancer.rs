//! An axum application that load-balances one route over a set of endpoints with
//! gatekit's pieces: gatekit-lb's least-request balancer in front of gatekit-core's
//! pooled upstream client, active HTTP health checks (`GET /healthz` every second; an
//! endpoint takes traffic once a check passed), and a gatekit route (`PathPrefix /api`)
//! served by the app's `fallback_service`. The app keeps its own routes (`/`).
//!
//! ```text
//! cargo run -p gatekit-examples --example axum_balancer                       # three local backends
//! cargo run -p gatekit-examples --example axum_balancer -- 127.0.0.1:8001 127.0.0.1:8002
//! curl -s http://127.0.0.1:3000/api/users     # answered by one of the endpoints, balanced
//! curl -s http://127.0.0.1:3000/              # the app's own route
//! ```
//!
//! The listen address is `GATEKIT_LISTEN` (default 127.0.0.1:3000); the arguments are
//! the endpoints' addresses. `serve` below is all the gatekit code there is.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use gatekit_core::client::{Client, Transport};
use gatekit_core::route::{Match, Route, RouteId, Rule};
use gatekit_core::{Backend, RouteTable, Router};
use gatekit_lb::health::{CheckKind, HealthCheckConfig, HttpCheck};
use gatekit_lb::{Algorithm, HealthChecker, Upstream, UpstreamConfig};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut endpoints = std::env::args()
        .skip(1)
        .map(|a| a.parse::<SocketAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        for name in ["blue", "green", "red"] {
            endpoints.push(gatekit_examples::spawn_backend(name).await?);
        }
    }
    let listen = std::env::var("GATEKIT_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&listen).await?;
    println!(
        "balancing /api over {endpoints:?}: curl -s http://{listen}/api/users (Ctrl-C to stop)"
    );
    serve(listener, endpoints, gatekit_examples::ctrl_c()).await
}

/// Serves the app on `listener`, balancing `/api` over `endpoints`, until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    endpoints: Vec<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // A backend set: least request over the endpoints, through the pooled client.
    let upstream = Upstream::with_client(
        UpstreamConfig::new(Algorithm::LeastRequest),
        &Client::default(),
        Transport::http1(),
    )
    .with_endpoints(endpoints);
    // Active health checks; kept alive as long as the app serves.
    let _checker = HealthChecker::for_upstream(
        HealthCheckConfig::default()
            .interval(Duration::from_secs(1))
            .start_healthy(false)
            .kind(CheckKind::Http(HttpCheck::default().path("/healthz"))),
        &upstream,
    );
    let backends = HashMap::from([("app".to_owned(), Backend::new(upstream))]);
    // The route, as an HTTPRoute would say it: `/api` prefix to backend `app`.
    let route = Route::new(RouteId::new("default", "api")).with_rule(
        Rule::new()
            .with_match(Match::prefix("/api"))
            .with_backend("app"),
    );
    let router = Router::new(RouteTable::build(vec![route], &backends)?);

    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { "the axum app; /api is balanced by gatekit\n" }),
        )
        .fallback_service(router);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
