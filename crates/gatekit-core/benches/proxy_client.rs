//! gatekit's upstream client against hyper-util's legacy pooled client, side by side:
//! one HTTP/1.1 keep-alive request (128-byte response body, read to the end) per
//! iteration to a local hyper backend.
//!
//! The backend runs on its own thread and runtime; the client and its connection tasks
//! run on the benchmark thread (a current-thread runtime), so the allocation counts are
//! the client side's: request, pool, connection task, response.
//!
//! ```text
//! cargo bench -p gatekit-core --bench proxy_client
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;

use bytes::Bytes;
use divan::{AllocProfiler, Bencher};
use gatekit_core::Body;
use gatekit_core::client::{Client, Transport};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    // The CPU comparison runs with the full benchmark only, not when a filter is given.
    if std::env::args().skip(1).all(|a| a.starts_with('-')) {
        cpu_per_request();
    }
    divan::main();
}

/// This thread's user + system CPU time in clock ticks (1/100 s), from
/// `/proc/thread-self/stat`.
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Wall time per request mostly measures the round trip to the backend thread; the
/// client's own cost is its CPU time. Prints the benchmark thread's CPU time per
/// request (client, its connection tasks and the runtime; not the backend) for each
/// HTTP/1.1 client, interleaved over three rounds of 30,000 requests.
fn cpu_per_request() {
    const N: u64 = 30_000;
    let addr = *BACKEND;
    let rt = runtime();
    let ep = Client::default().endpoint(addr, Transport::http1());
    let legacy =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Body>();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let gatekit = || async {
        let req = Request::get("/")
            .header("host", "bench.test")
            .body(Body::empty())
            .unwrap();
        drain(ep.send(req).await.unwrap().into_body()).await;
    };
    let hyper_util = || async {
        let req = Request::get(uri.clone())
            .header("host", "bench.test")
            .body(Body::empty())
            .unwrap();
        drain(legacy.request(req).await.unwrap().into_body()).await;
    };
    for round in 0..3 {
        let Some(t0) = thread_cpu_ticks() else { return };
        rt.block_on(async {
            for _ in 0..N {
                gatekit().await;
            }
        });
        let Some(t1) = thread_cpu_ticks() else { return };
        rt.block_on(async {
            for _ in 0..N {
                hyper_util().await;
            }
        });
        let Some(t2) = thread_cpu_ticks() else { return };
        // One tick is 10 ms = 10_000_000 ns.
        let per = |ticks: u64| ticks * 10_000_000 / N;
        println!(
            "round {round}: client-thread CPU per HTTP/1.1 request: gatekit {} ns, hyper-util legacy {} ns",
            per(t1 - t0),
            per(t2 - t1)
        );
    }
}

/// A keep-alive hyper backend (HTTP/1.1 and h2c) answering 128 bytes, on its own thread.
static BACKEND: LazyLock<SocketAddr> = LazyLock::new(|| {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(http::Response::new(Body::from(Bytes::from_static(
                            &[b'x'; 128],
                        ))))
                    });
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

async fn drain<B: http_body::Body + Unpin>(mut body: B)
where
    B::Error: std::fmt::Debug,
{
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
}

#[divan::bench(sample_count = 100, sample_size = 50)]
fn gatekit_endpoint_client(bencher: Bencher<'_, '_>) {
    let addr = *BACKEND;
    let rt = runtime();
    let ep = Client::default().endpoint(addr, Transport::http1());
    let send = || async {
        let req = Request::get("/")
            .header("host", "bench.test")
            .body(Body::empty())
            .unwrap();
        let rsp = ep.send(req).await.unwrap();
        drain(rsp.into_body()).await;
    };
    rt.block_on(send());
    bencher.bench_local(|| rt.block_on(send()));
}

#[divan::bench(sample_count = 100, sample_size = 50)]
fn hyper_util_legacy_client(bencher: Bencher<'_, '_>) {
    let addr = *BACKEND;
    let rt = runtime();
    let client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Body>();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let send = || async {
        let req = Request::get(uri.clone())
            .header("host", "bench.test")
            .body(Body::empty())
            .unwrap();
        let rsp = client.request(req).await.unwrap();
        drain(rsp.into_body()).await;
    };
    rt.block_on(send());
    bencher.bench_local(|| rt.block_on(send()));
}

#[divan::bench(sample_count = 100, sample_size = 50)]
fn gatekit_endpoint_client_h2c(bencher: Bencher<'_, '_>) {
    let addr = *BACKEND;
    let rt = runtime();
    let ep = Client::default().endpoint(addr, Transport::http2());
    let send = || async {
        let req = Request::get("/")
            .header("host", "bench.test")
            .body(Body::empty())
            .unwrap();
        let rsp = ep.send(req).await.unwrap();
        drain(rsp.into_body()).await;
    };
    rt.block_on(send());
    bencher.bench_local(|| rt.block_on(send()));
}

#[divan::bench(sample_count = 100, sample_size = 50)]
fn hyper_util_legacy_client_h2c(bencher: Bencher<'_, '_>) {
    let addr = *BACKEND;
    let rt = runtime();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Body>();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let send = || async {
        let req = Request::get(uri.clone()).body(Body::empty()).unwrap();
        let rsp = client.request(req).await.unwrap();
        drain(rsp.into_body()).await;
    };
    rt.block_on(send());
    bencher.bench_local(|| rt.block_on(send()));
}

/// `proxy::prepare_request` + `prepare_response` on a typical browser-like request
/// (no hop-by-hop headers, no X-Forwarded-For yet) and a typical response. Request and
/// response construction are outside the measurement.
#[divan::bench(sample_count = 100, sample_size = 1000)]
fn proxy_prepare_request_and_response(bencher: Bencher<'_, '_>) {
    let info = gatekit_core::ConnectionInfo::new(
        "10.0.0.7:40000".parse().unwrap(),
        "10.0.0.1:80".parse().unwrap(),
        false,
    );
    bencher
        .with_inputs(|| {
            let req = Request::get("/api/v1/items?page=2")
                .header("host", "shop.example.com")
                .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
                .header("accept", "application/json")
                .header("accept-encoding", "gzip, br")
                .header("cookie", "session=abcdef0123456789")
                .body(Body::empty())
                .unwrap();
            let rsp = http::Response::builder()
                .header("content-type", "application/json")
                .header("content-length", "128")
                .header("date", "Sun, 22 Nov 2026 05:00:00 GMT")
                .body(Body::empty())
                .unwrap();
            (req, rsp)
        })
        .bench_local_values(|(mut req, mut rsp)| {
            gatekit_core::proxy::prepare_request(&mut req, Some(&info));
            gatekit_core::proxy::prepare_response(&mut rsp);
            (req, rsp)
        });
}
