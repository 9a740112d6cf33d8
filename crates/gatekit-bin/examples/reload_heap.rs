//! Where the heap goes with N routes loaded (the manifests of `reload_latency`).
//!
//! ```sh
//! cargo run --release -p gatekit-bin --example reload_heap -- 5000
//! cargo run --release -p gatekit-bin --example reload_heap -- DIR
//! ```
//!
//! With a number, the manifests are N routes to one shared Service; with a directory,
//! they are its files (`live_change --write DIR N` writes the shape users have: every
//! route with its own Service and EndpointSlice).
//!
//! A counting global allocator ([`stats_alloc`]) gives the live bytes held by each
//! stage on its own — the file text, the parsed [`ResourceSet`], the [`Translation`],
//! the compiled route table — and then by the wired gateway (`Wiring::start` on a
//! `Process`, as `gatekit run` does), after the first load and after reloads, with the
//! process's RSS and the size of `/config`. Each figure is live bytes and live
//! allocations (allocated and not yet freed), in all and per route: malloc's per-chunk
//! overhead makes the number of allocations count as well as their bytes. A separate example from `reload_latency`
//! so that the latency figures are not taken under a counting allocator.
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::System;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gatekit_bin::{Process, Settings, Source, TranslateOptions, Wiring};
use gatekit_core::{Backend, Body, RouteTable};
use gatekit_k8s::{ResourceSet, translate};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[path = "common/manifests.rs"]
mod manifests;
use manifests::{free_port, manifests, route};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live bytes and live allocations (allocations not yet freed) at this point.
#[derive(Clone, Copy)]
struct Live {
    bytes: isize,
    allocs: isize,
}

impl std::ops::Sub for Live {
    type Output = Live;
    fn sub(self, base: Live) -> Live {
        Live {
            bytes: self.bytes - base.bytes,
            allocs: self.allocs - base.allocs,
        }
    }
}

fn live() -> Live {
    let s = GLOBAL.stats();
    Live {
        bytes: s.bytes_allocated as isize - s.bytes_deallocated as isize,
        allocs: s.allocations as isize - s.deallocations as isize,
    }
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Number of routes, for the per-route columns.
static ROUTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// `  12.34 MB  2468 B/route   123456 allocs  24.7/route`
fn mb(held: Live) -> String {
    let routes = ROUTES.load(std::sync::atomic::Ordering::Relaxed).max(1) as f64;
    format!(
        "{:7.2} MB {:6.0} B/route {:8} allocs {:5.1}/route",
        held.bytes as f64 / 1e6,
        held.bytes as f64 / routes,
        held.allocs,
        held.allocs as f64 / routes
    )
}

fn write_manifests(dir: &Path, port: u16, backend: SocketAddr, routes: usize) {
    let (text, probe) = manifests(port, backend, routes);
    std::fs::write(dir.join("base.yaml"), text).unwrap();
    std::fs::write(dir.join("probe.yaml"), probe).unwrap();
}

/// Copies the files of `from` into `to`; the number of HTTPRoutes in them.
fn copy_manifests(from: &Path, to: &Path) -> usize {
    let mut routes = 0;
    for file in std::fs::read_dir(from).unwrap() {
        let path = file.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        routes += text.matches("kind: HTTPRoute").count();
        std::fs::write(to.join(path.file_name().unwrap()), text).unwrap();
    }
    routes
}

async fn config_len(admin: SocketAddr) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut io = tokio::net::TcpStream::connect(admin).await.unwrap();
    io.write_all(b"GET /config HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    io.read_to_end(&mut buf).await.unwrap();
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    buf.len() - head - 4
}

#[tokio::main]
async fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "5000".to_owned());
    let dir = std::env::temp_dir().join(format!("gatekit-heap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let routes = if Path::new(&arg).is_dir() {
        copy_manifests(Path::new(&arg), &dir)
    } else {
        let routes = arg.parse().unwrap();
        write_manifests(&dir, free_port(), "127.0.0.1:9".parse().unwrap(), routes);
        routes
    };
    ROUTES.store(routes, std::sync::atomic::Ordering::Relaxed);
    let dirs = vec![dir.clone()];
    println!("{routes} routes; RSS at start {} KB", rss_kb());

    // Each stage on its own, dropped before the next.
    let base = live();
    let text: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    println!("file text                {}", mb(live() - base));
    drop(text);
    let base = live();
    let (set, _) = ResourceSet::from_dirs(&dirs).unwrap();
    let set_bytes = live() - base;
    println!("ResourceSet              {}", mb(set_bytes));
    let base = live();
    let translation = translate(&set, &TranslateOptions::default());
    println!("Translation              {}", mb(live() - base));
    let base = live();
    let routes_of_port = translation.listeners()[0]
        .routes()
        .iter()
        .map(|r| (**r).clone())
        .collect::<Vec<_>>();
    let lookup = |_: &str| -> Option<Backend> {
        Some(Backend::new(tower::service_fn(|_req| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        })))
    };
    let (table, _) = RouteTable::build_partial(routes_of_port, &lookup);
    println!("RouteTable (+ its routes){}", mb(live() - base));
    drop((table, translation, set));
    let base = live();
    let metrics = gatekit_bin::Metrics::new();
    let handles: Vec<_> = (0..routes)
        .map(|i| metrics.request_metrics(&format!("default/r{i}"), "default/web:80"))
        .collect();
    println!("request metrics          {}", mb(live() - base));
    drop((handles, metrics));

    // The wired gateway, as `gatekit run` holds it.
    let rss0 = rss_kb();
    let base = live();
    let mut settings = Settings::default();
    settings.admin.address = "127.0.0.1:0".parse().unwrap();
    let mut process = Process::start(settings, [127, 0, 0, 1].into())
        .await
        .unwrap();
    let admin = process.admin_addr();
    let wiring = Wiring::start(
        process.gateway_mut(),
        Source::Dirs(dirs.clone()),
        TranslateOptions::default(),
    )
    .await
    .unwrap();
    println!(
        "wired, first load        {}   RSS {} KB (+{} KB)   /config {} bytes",
        mb(live() - base),
        rss_kb(),
        rss_kb() - rss0,
        config_len(admin).await
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(process.serve(wiring, async {
        let _ = stopped.await;
    }));
    for k in 1..=5 {
        let tmp = dir.join(".probe.tmp");
        std::fs::write(&tmp, route("probe", &format!("/probe-{k}"))).unwrap();
        std::fs::rename(&tmp, dir.join("probe.yaml")).unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    println!(
        "wired, after 5 reloads   {}   RSS {} KB (+{} KB)",
        mb(live() - base),
        rss_kb(),
        rss_kb() - rss0
    );
    let _ = stop.send(());
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
}
