//! External authorization's cost per request: a request through an [`ExtAuthLayer`]
//! whose HTTP authorization service (and, with `--features grpc`, an Envoy v3 gRPC one)
//! runs on loopback, beside the same request with no auth. The app behind the layer is
//! an in-process service answering at once, so the difference is the check.
//!
//! The auth servers run on their own thread and runtime; the layer, gatekit's client and
//! its connection tasks run on the benchmark thread, so the allocation counts and the
//! CPU figures printed first are the gateway side's.
//!
//! ```text
//! cargo bench -p gatekit-auth --bench extauth --features grpc
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;

use bytes::Bytes;
use divan::{AllocProfiler, Bencher};
use gatekit_auth::extauth::{ExtAuthConfig, ExtAuthLayer, HttpService};
use gatekit_core::client::Client;
use gatekit_core::{Backend, Body, BoxError};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::ServiceExt;
use tower_layer::Layer;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    // The CPU comparison runs with the full benchmark only, not when a filter is given.
    if std::env::args().skip(1).all(|a| a.starts_with('-')) {
        cpu_per_request();
    }
    divan::main();
}

/// This thread's user + system CPU time in clock ticks (1/100 s).
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The stacks compared: name and service.
fn stacks() -> Vec<(&'static str, Backend)> {
    let out = vec![("no auth", app()), ("ext_authz http", http_guarded())];
    #[cfg(feature = "grpc")]
    let out = {
        let mut out = out;
        out.push(("ext_authz grpc", grpc_guarded()));
        out
    };
    out
}

/// Benchmark-thread CPU time per request of each stack, interleaved over three rounds.
fn cpu_per_request() {
    const N: u64 = 20_000;
    let rt = runtime();
    let stacks = rt.block_on(async { stacks() });
    for round in 0..3 {
        let mut line = format!("round {round}: benchmark-thread CPU per request:");
        for (name, svc) in &stacks {
            let Some(t0) = thread_cpu_ticks() else { return };
            rt.block_on(async {
                for _ in 0..N {
                    one(svc).await;
                }
            });
            let Some(t1) = thread_cpu_ticks() else { return };
            // One tick is 10 ms = 10_000_000 ns.
            line.push_str(&format!(" {name} {} ns;", (t1 - t0) * 10_000_000 / N));
        }
        println!("{line}");
    }
}

async fn one(svc: &Backend) {
    let req = Request::get("/items/42")
        .header("host", "app.example.com")
        .header("authorization", "Bearer bench")
        .body(Body::empty())
        .unwrap();
    let rsp = svc.clone().oneshot(req).await.unwrap();
    assert!(rsp.status().is_success());
    rsp.into_body().collect().await.unwrap();
}

fn app() -> Backend {
    Backend::new(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, BoxError>(Response::new(Body::from("ok")))
    }))
}

fn http_guarded() -> Backend {
    let auth = Backend::single(&Client::default(), *AUTH);
    let layer = ExtAuthLayer::new(ExtAuthConfig::http(auth, HttpService::new()));
    Backend::new(layer.layer(app()))
}

#[cfg(feature = "grpc")]
fn grpc_guarded() -> Backend {
    use gatekit_auth::extauth::GrpcService;
    use gatekit_core::client::Transport;
    let auth = Backend::single_with(&Client::default(), *AUTH, Transport::http2());
    let service = GrpcService::new("authz.bench").unwrap();
    let layer = ExtAuthLayer::new(ExtAuthConfig::grpc(auth, service));
    Backend::new(layer.layer(app()))
}

/// An authorization server (HTTP/1.1 keep-alive and h2c) on its own thread: 200 to
/// every HTTP check, an empty `CheckResponse` (status `OK`) to every gRPC call.
static AUTH: LazyLock<SocketAddr> = LazyLock::new(|| {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = runtime();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: Request<hyper::body::Incoming>| async move {
                            let grpc = req.headers().contains_key("te");
                            req.into_body().collect().await.unwrap();
                            if !grpc {
                                return Ok::<_, Infallible>(Response::new(Body::empty()));
                            }
                            let mut trailers = HeaderMap::new();
                            trailers.insert("grpc-status", HeaderValue::from_static("0"));
                            let body =
                                http_body_util::Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
                                    .map_err(|never: Infallible| match never {})
                                    .with_trailers(
                                        async move { Some(Ok::<_, Infallible>(trailers)) },
                                    );
                            Ok(Response::new(Body::new(
                                body.map_err(|never: Infallible| match never {}),
                            )))
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    addr
});

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench_stack(bencher: Bencher<'_, '_>, pick: usize) {
    let rt = runtime();
    let stacks = rt.block_on(async { stacks() });
    let Some((_, svc)) = stacks.into_iter().nth(pick) else {
        return;
    };
    rt.block_on(one(&svc));
    bencher.bench_local(|| rt.block_on(one(&svc)));
}

#[divan::bench(sample_count = 100, sample_size = 50)]
fn no_auth(bencher: Bencher<'_, '_>) {
    bench_stack(bencher, 0);
}

#[divan::bench(sample_count = 100, sample_size = 50)]
fn ext_authz_http(bencher: Bencher<'_, '_>) {
    bench_stack(bencher, 1);
}

#[cfg(feature = "grpc")]
#[divan::bench(sample_count = 100, sample_size = 50)]
fn ext_authz_grpc(bencher: Bencher<'_, '_>) {
    bench_stack(bencher, 2);
}
