//! A flood of wrong basic-auth passwords against a real server, and what it does to a
//! logged-in user.
//!
//! A hyper server on loopback with a bcrypt (cost 10) user behind [`BasicAuthLayer`]
//! with its default permits; 32 clients send distinct wrong passwords for 3 s while one
//! logged-in user sends requests one after the other. It prints the process's CPU use
//! (cores busy: the flooding clients included), the checks run, the 401s and 503s, and
//! the valid user's latencies with and without the flood.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gatekit_auth::basic::{BasicAuthConfig, BasicAuthLayer};
use gatekit_core::{Body, HandleErrorLayer};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::time::Instant;
use tower::ServiceBuilder;

use crate::cpu::process_ns;
use crate::stacks::{basic_header, bcrypt_line};

pub fn run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = BasicAuthLayer::new(BasicAuthConfig::new(
            "staff",
            bcrypt_line("alice", "alice-pw", 10),
        ))
        .unwrap();
        let svc = ServiceBuilder::new()
            .layer(HandleErrorLayer::new())
            .map_request(|req: Request<Incoming>| req.map(Body::new))
            .layer(layer.clone())
            .service(tower::service_fn(|_: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Body::from("ok")))
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (io, _) = listener.accept().await.unwrap();
                let svc = TowerToHyperService::new(svc.clone());
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let send = move |auth: String| {
            let client = client.clone();
            async move {
                let req = Request::get(format!("http://{addr}/"))
                    .header("authorization", auth)
                    .body(Empty::new())
                    .unwrap();
                let rsp = client.request(req).await.unwrap();
                let status = rsp.status();
                let _ = rsp.into_body().collect().await;
                status
            }
        };
        let alice = basic_header("alice", "alice-pw");
        assert_eq!(send(alice.clone()).await, StatusCode::OK);
        let measure = |n: usize| {
            let send = &send;
            let alice = alice.clone();
            async move {
                let mut lat = Vec::with_capacity(n);
                for _ in 0..n {
                    let start = Instant::now();
                    assert_eq!(send(alice.clone()).await, StatusCode::OK);
                    lat.push(start.elapsed());
                }
                lat.sort();
                lat
            }
        };
        let quiet = measure(200).await;

        let stop = Arc::new(AtomicBool::new(false));
        let (unauthorized, overloaded) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let cpu0 = process_ns();
        let start = Instant::now();
        let flooders: Vec<_> = (0..32)
            .map(|n| {
                let (stop, u, o) = (stop.clone(), unauthorized.clone(), overloaded.clone());
                let send = send.clone();
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        match send(basic_header("alice", &format!("guess-{n}-{i}"))).await {
                            StatusCode::UNAUTHORIZED => u.fetch_add(1, Ordering::Relaxed),
                            StatusCode::SERVICE_UNAVAILABLE => o.fetch_add(1, Ordering::Relaxed),
                            other => panic!("{other}"),
                        };
                    }
                })
            })
            .collect();
        let flooded = measure(200).await;
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(start.elapsed())).await;
        stop.store(true, Ordering::Relaxed);
        for f in flooders {
            f.await.unwrap();
        }
        let wall = start.elapsed();
        let cpu = process_ns()
            .zip(cpu0)
            .map(|(a, b)| Duration::from_nanos(a.saturating_sub(b)));
        let stats = layer.stats();
        let pct = |l: &[Duration], p: usize| l[(l.len() * p / 100).min(l.len() - 1)];
        println!(
            "basic-auth flood ({} cores, 32 clients, bcrypt cost 10, {wall:.1?}):",
            cores()
        );
        if let Some(cpu) = cpu {
            println!(
                "  process CPU {:.2} cores busy (clients included)",
                cpu.as_secs_f64() / wall.as_secs_f64()
            );
        }
        println!(
            "  {} checks ({:.0}/s, at most {} at once), {} x 401, {} x 503 overloaded",
            stats.verifications,
            stats.verifications as f64 / wall.as_secs_f64(),
            stats.max_concurrent_verifications,
            unauthorized.load(Ordering::Relaxed),
            overloaded.load(Ordering::Relaxed)
        );
        println!(
            "  valid user, quiet:   p50 {:?} p99 {:?} max {:?}",
            pct(&quiet, 50),
            pct(&quiet, 99),
            quiet[quiet.len() - 1]
        );
        println!(
            "  valid user, flooded: p50 {:?} p99 {:?} max {:?}",
            pct(&flooded, 50),
            pct(&flooded, 99),
            flooded[flooded.len() - 1]
        );
    });
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
