//! Runs `examples/axum_balancer.rs` (its `serve`, compiled from the example's own source)
//! against loopback backends: `/api` is balanced over the healthy endpoints, an endpoint
//! whose health check fails gets no request, and the app's own route still answers.
#![allow(clippy::unwrap_used, missing_docs)]

#[allow(dead_code, unreachable_pub)]
#[path = "../axum_balancer.rs"]
mod example;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use gatekit_core::Body;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A loopback backend answering `/healthz` with `health` and anything else with its name.
struct TestBackend {
    addr: SocketAddr,
    api_hits: Arc<AtomicUsize>,
    health_checks: watch::Receiver<usize>,
}

impl TestBackend {
    async fn start(name: &'static str, health: StatusCode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api_hits = Arc::new(AtomicUsize::new(0));
        let (checks_tx, health_checks) = watch::channel(0);
        let checks_tx = Arc::new(checks_tx);
        let hits = api_hits.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let (hits, checks_tx) = (hits.clone(), checks_tx.clone());
            async move {
                let mut rsp = Response::new(Full::new(Bytes::from(name)));
                if req.uri().path() == "/healthz" {
                    *rsp.status_mut() = health;
                    checks_tx.send_modify(|n| *n += 1);
                } else {
                    hits.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, Infallible>(rsp)
            }
        });
        tokio::spawn(gatekit_core::server::serve(
            listener,
            svc,
            std::future::pending(),
        ));
        Self {
            addr,
            api_hits,
            health_checks,
        }
    }

    /// Waits until this backend has seen `n` health checks. Checks of one endpoint run
    /// one after another, so the verdict of check `n - 1` is applied by then.
    async fn checked(&mut self, n: usize) {
        self.health_checks
            .wait_for(|seen| *seen >= n)
            .await
            .unwrap();
    }

    fn hits(&self) -> usize {
        self.api_hits.load(Ordering::Relaxed)
    }
}

#[tokio::test]
async fn axum_balancer_spreads_api_over_healthy_endpoints_only() {
    let mut blue = TestBackend::start("blue", StatusCode::OK).await;
    let mut green = TestBackend::start("green", StatusCode::OK).await;
    let mut sick = TestBackend::start("sick", StatusCode::SERVICE_UNAVAILABLE).await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(example::serve(
        listener,
        vec![blue.addr, green.addr, sick.addr],
        async move {
            let _ = stop_rx.await;
        },
    ));

    // Every endpoint's first verdict is in once its second check arrives.
    for backend in [&mut blue, &mut green, &mut sick] {
        backend.checked(2).await;
    }
    let before_sick = sick.hits();
    let mut answers = std::collections::HashMap::<String, usize>::new();
    for i in 0..60 {
        let (status, body) = gatekit_testkit::get(addr, &format!("/api/items/{i}")).await;
        assert_eq!(status, StatusCode::OK);
        *answers.entry(body).or_default() += 1;
    }
    assert_eq!(
        sick.hits(),
        before_sick,
        "the endpoint failing its health check got traffic"
    );
    assert!(!answers.contains_key("sick"), "{answers:?}");
    assert!(
        answers.get("blue").copied().unwrap_or(0) > 0
            && answers.get("green").copied().unwrap_or(0) > 0,
        "both healthy endpoints take requests: {answers:?}"
    );
    assert_eq!(blue.hits() + green.hits(), 60);

    // The app's own route, and gatekit's 404 outside the route.
    let (status, body) = gatekit_testkit::get(addr, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("axum app"), "{body}");
    assert_eq!(
        gatekit_testkit::get(addr, "/other").await.0,
        StatusCode::NOT_FOUND
    );

    stop_tx.send(()).unwrap();
    app.await.unwrap().unwrap();
}
