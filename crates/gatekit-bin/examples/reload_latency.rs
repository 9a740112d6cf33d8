//! Reload latency of the wired gateway: write → new route serving, with N routes loaded.
//!
//! ```sh
//! cargo run --release -p gatekit-bin --example reload_latency -- 10 1000 5000
//! cargo run --release -p gatekit-bin --example reload_latency -- --write DIR 5000
//! ```
//!
//! For each N: a temp dir with a Gateway, one Service (an in-process backend), N
//! HTTPRoutes (`/r0` … `/rN-1`) and a probe route; the probe route's path is rewritten
//! (atomic rename) 20 times and each time the new path is polled every 200 µs until it
//! answers 200. Reported: median and max of write → served, with the default debounce
//! (3 ms of quiet after the rename completes the write, 20 ms while a write is in
//! progress) and with none (the reload's own cost). `--write DIR N` only writes the
//! manifests (for measuring `gatekit run`'s RSS with N routes).
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use gatekit_bin::{Process, Settings, Source, TranslateOptions, Wiring};
use gatekit_core::Body;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

#[path = "common/manifests.rs"]
mod manifests;
use manifests::{free_port, manifests, route};

fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn status(port: u16, path: &str) -> u16 {
    let io = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "bench")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = sender.send_request(req).await.unwrap();
    let code = rsp.status().as_u16();
    let _ = rsp.into_body().collect().await;
    code
}

async fn backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = tower::service_fn(|_req: http::Request<gatekit_core::Body>| async {
        Ok::<_, Infallible>(http::Response::new(Body::full("ok")))
    });
    tokio::spawn(gatekit_core::server::serve(
        listener,
        svc,
        std::future::pending(),
    ));
    addr
}

async fn measure(routes: usize, debounce: Option<Duration>) -> (Duration, Duration, Duration) {
    let dir = std::env::temp_dir().join(format!("gatekit-reload-{}-{routes}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let (base, probe) = manifests(port, backend().await, routes);
    std::fs::write(dir.join("base.yaml"), base).unwrap();
    std::fs::write(dir.join("probe.yaml"), probe).unwrap();
    let mut settings = Settings::default();
    settings.admin.address = "127.0.0.1:0".parse().unwrap();
    let mut process = Process::start(settings, [127, 0, 0, 1].into())
        .await
        .unwrap();
    let started = Instant::now();
    let mut wiring = Wiring::start(
        process.gateway_mut(),
        Source::Dirs(vec![dir.clone()]),
        TranslateOptions::default(),
    )
    .await
    .unwrap();
    let first = started.elapsed();
    if let Some(d) = debounce {
        wiring.set_debounce(d);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(process.serve(wiring, async {
        let _ = stopped.await;
    }));
    assert_eq!(status(port, "/probe-0").await, 200);
    let mut samples = Vec::new();
    for k in 1..=20 {
        let path = format!("/probe-{k}");
        let written = Instant::now();
        write_atomic(&dir, "probe.yaml", &route("probe", &path));
        loop {
            if status(port, &path).await == 200 {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(10),
                "reload never served"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(written.elapsed());
    }
    let _ = stop.send(());
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() - 1],
        first,
    )
}

#[tokio::main]
async fn main() {
    gatekit_bin::init_logging(gatekit_bin::LogFormat::Text);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--write") {
        let dir = Path::new(&args[1]);
        let routes: usize = args[2].parse().unwrap();
        let port: u16 = args.get(3).map_or(18080, |p| p.parse().unwrap());
        let backend: SocketAddr = args
            .get(4)
            .map_or("127.0.0.1:9".parse().unwrap(), |a| a.parse().unwrap());
        std::fs::create_dir_all(dir).unwrap();
        let (base, probe) = manifests(port, backend, routes);
        std::fs::write(dir.join("base.yaml"), base).unwrap();
        std::fs::write(dir.join("probe.yaml"), probe).unwrap();
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![10, 1000, 5000]
    } else {
        args.iter().map(|a| a.parse().unwrap()).collect()
    };
    println!("routes  debounce  median(write->served)  max       first load");
    // "default": 3 ms settle after a completed write (20 ms while one is in progress).
    for routes in sizes {
        for (label, debounce) in [("default", None), ("0", Some(Duration::ZERO))] {
            let (median, max, first) = measure(routes, debounce).await;
            println!(
                "{routes:>6}  {label:>8}  {:>20.1?}  {:>8.1?}  {:>8.1?}",
                median, max, first
            );
        }
    }
}
