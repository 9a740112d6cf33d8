//! Skewed latency: ten endpoints, one ten times slower (50 ms vs 5 ms, +0–20% jitter),
//! an open-loop load of 2,000 requests/s for 5 s of virtual time (tokio's paused clock,
//! so it runs in about a second). Prints p50/p99/max latency and the slow endpoint's
//! share for round-robin, least-request and peak-ewma side by side.
//!
//! `cargo run --release -p gatekit-lb --example skew`
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatekit_core::{Backend, Body, BoxError, Change, Endpoint};
use gatekit_lb::{Algorithm, Upstream, UpstreamConfig};
use http::{Request, Response};
use parking_lot::Mutex;
use tokio::time::Instant;

const SLOW: u16 = 9000;

#[derive(Clone)]
struct Sim {
    addr: SocketAddr,
}

type BoxFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, BoxError>> + Send>>;

impl tower::Service<Request<Body>> for Sim {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        let slow = self.addr.port() == SLOW;
        let base = if slow { 50_000 } else { 5_000 };
        let micros = base + fastrand::u64(0..base / 5);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_micros(micros)).await;
            let mut rsp = Response::new(Body::empty());
            if slow {
                rsp.headers_mut()
                    .insert("x-slow", http::HeaderValue::from_static("1"));
            }
            Ok(rsp)
        })
    }
}

async fn run(alg: Algorithm) -> (Duration, Duration, Duration, f64) {
    let up = Upstream::new(UpstreamConfig::new(alg), |ep: &Endpoint| Sim {
        addr: ep.addr(),
    });
    up.apply(Change::Replace(
        (0..10)
            .map(|i| Endpoint::new(SocketAddr::from(([127, 0, 0, 1], SLOW - 9 + i))))
            .collect(),
    ));
    let backend = Backend::new(up);
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(500));
    for _ in 0..10_000 {
        tick.tick().await;
        let (backend, results) = (backend.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let rsp = backend.send(Request::new(Body::empty())).await.unwrap();
            let slow = rsp.headers().contains_key("x-slow");
            results.lock().push((start.elapsed(), slow));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut r = results.lock().clone();
    r.sort();
    let q = |p: f64| r[((r.len() as f64 * p) as usize).min(r.len() - 1)].0;
    let slow_share = r.iter().filter(|x| x.1).count() as f64 / r.len() as f64;
    (q(0.5), q(0.99), r[r.len() - 1].0, slow_share)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    println!("10 endpoints, one 10x slower (50 ms vs 5 ms), 2,000 req/s for 5 s (virtual time)\n");
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>11}",
        "algorithm", "p50", "p99", "max", "slow share"
    );
    for alg in [
        Algorithm::RoundRobin,
        Algorithm::LeastRequest,
        Algorithm::PeakEwma,
    ] {
        let (p50, p99, max, share) = rt.block_on(run(alg));
        println!(
            "{:<14} {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>10.1}%",
            alg.as_str(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            share * 100.0
        );
    }
}
