//! Benchmark harness part: gatekit's Router and upstream client in front of one backend,
//! as `scripts/bench-proxy.sh` measures it. One current-thread runtime, so the process
//! can be pinned to one core and compared with a one-worker NGINX.
//!
//! With a third argument `bare`, the router is left out: the hyper server hands each
//! request straight to gatekit's upstream client, which shows what routing costs on top.
//!
//! ```text
//! cargo run --release -p gatekit-examples --example bench_gateway -- 127.0.0.1:18081 127.0.0.1:18080 [bare]
//! ```
//!
//! `BENCH_EVENT_INTERVAL` and `BENCH_GLOBAL_QUEUE_INTERVAL` in the environment set
//! tokio's scheduler knobs, to measure them on one binary (`docs/benchmarks.md`).

use std::collections::HashMap;

use gatekit_core::client::Client;
use gatekit_core::route::{BackendRef, Match, PathMatch, Route, RouteId, Rule};
use gatekit_core::server::{ServerConfig, serve_with};
use gatekit_core::{Backend, RouteTable, Router};

fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let backend: std::net::SocketAddr = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()?;
    let bare = std::env::args().nth(3).as_deref() == Some("bare");
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    runtime.enable_all();
    // Scheduler knobs for measurements (`docs/benchmarks.md`): how many task polls
    // between checks for I/O events and for the global queue (tokio's defaults: 61, 31).
    if let Some(n) = env_u32("BENCH_EVENT_INTERVAL") {
        runtime.event_interval(n);
    }
    if let Some(n) = env_u32("BENCH_GLOBAL_QUEUE_INTERVAL") {
        runtime.global_queue_interval(n);
    }
    runtime.build()?.block_on(async move {
        let client = Client::new(Default::default());
        let mut backends = HashMap::new();
        backends.insert("app".to_string(), Backend::single(&client, backend));
        let mut rule = Rule::default();
        let mut m = Match::default();
        m.path = Some(PathMatch::Prefix("/".into()));
        rule.matches.push(m);
        rule.backends.push(BackendRef::new("app", 1));
        let mut route = Route::new(RouteId::new("bench", "app"));
        route.rules.push(rule);
        let router = Router::new(RouteTable::build(vec![route], &backends)?);
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        // HTTP/1 only, like the NGINX it is compared with: no h2 preface sniffing.
        let config = ServerConfig::default().http2(false);
        if bare {
            let ep = client.endpoint(backend, Default::default());
            let svc = tower::service_fn(move |req: http::Request<gatekit_core::Body>| {
                let f = ep.send(req);
                async move {
                    Ok::<_, std::convert::Infallible>(
                        f.await
                            .unwrap_or_else(|e| gatekit_core::error_response(&*e)),
                    )
                }
            });
            return serve_with(listener, svc, gatekit_examples::ctrl_c(), config)
                .await
                .map_err(|e| anyhow::anyhow!(e));
        }
        serve_with(listener, router, gatekit_examples::ctrl_c(), config)
            .await
            .map_err(|e| anyhow::anyhow!(e))
    })
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.parse().ok()
}
