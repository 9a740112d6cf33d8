//! Benchmark harness part: live change at scale (issue 19), measured from outside
//! against the release `gatekit` binary, as `scripts/bench-live-change.sh` runs it.
//!
//! ```text
//! cargo build --release -p gatekit-bin --locked
//! cargo run --release -p gatekit-examples --example live_change -- \
//!     --gatekit target/release/gatekit --work /tmp/lc 10 1000 3000 5000 10000
//! ```
//!
//! For each size N it writes manifests shaped as users have them — every route with its
//! own Service and EndpointSlice, 100 routes to a file, half of the routes told apart by
//! hostname, half by path prefix on shared hostnames (10 to a host), one Gateway with an
//! HTTP listener — and starts `gatekit run --resources DIR --config FILE` (fresh process
//! per phase, waits for `/readyz`). Then:
//!
//! - RSS (`VmRSS` of `/proc/PID/status`) of the fresh process with N routes, and its
//!   anonymous and file-backed parts (`RssAnon`, `RssFile`);
//! - a route added as a new file, changed (its path edited) and deleted (the file
//!   removed), `--repeats` times each: time from the write (write to a hidden temporary
//!   file, then rename: the atomic write of kubectl-style tools) until the new path
//!   answers 200 (added, changed) or the path answers 404 (deleted); requests every
//!   0.2 ms on one keep-alive connection;
//! - an EndpointSlice file rewritten to move a Service between two backends (both
//!   served here, each noting when it gets a request) while a client sends requests to
//!   that Service's route every 0.2 ms: time until the new endpoint gets its first
//!   request, and how long the old one still gets requests after the write;
//! - `--edits` rewrites of the first route file (one route's header filter edited; each
//!   waited for until it serves) while two clients send `--rate` requests/s in total to
//!   the edited route and another one: non-2xx answers and connection errors;
//! - RSS of an idle gateway (no routes), after the N routes are written into it (and its
//!   peak, `VmHWM`), and after they are all deleted.
//!
//! The binary's own `reload timings` log lines (load / translate / apply) of the
//! add/change/delete phase are summarised per size. Loopback only; ports `--port P`
//! (default 19300) to P+4: listener, admin, the routes' backend, the two endpoint
//! backends. The gatekit process started is written to `WORK/gatekit.pid` (for the
//! script's cleanup) and killed when this exits.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use gatekit_examples::measure::{
    CHANGE_DEADLINE, Client, Gatekit, Hits, Load, POLL, Table, backend, base, fmt_ms, fmt_p50_p99,
    fmt_reloads, fmt_samples, ms, now_ns, pct, route_target, thousands,
};
use tokio::time::Instant;

/// Routes to a manifest file.
const PER_FILE: usize = 100;

// --- manifests -------------------------------------------------------------------------

/// Ports: listener, admin, the routes' backend, endpoint backends A and B.
#[derive(Clone, Copy)]
struct Ports {
    listener: u16,
    admin: u16,
    backend: u16,
    ep_a: u16,
    ep_b: u16,
}

/// An HTTPRoute `name` for `host` `path` to Service `service`, with an optional
/// `x-edit` request header set, followed by its Service and EndpointSlice.
fn route_docs(name: &str, host: &str, path: &str, edit: Option<&str>, backend: u16) -> String {
    let filters = edit.map_or(String::new(), |e| {
        format!(
            "\n    filters: [{{ type: RequestHeaderModifier, requestHeaderModifier: {{ set: [{{ name: x-edit, value: \"{e}\" }}] }} }}]"
        )
    });
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: {name}, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  hostnames: ["{host}"]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: "{path}" }} }}]
    backendRefs: [{{ name: {name}, port: 80 }}]{filters}
---
apiVersion: v1
kind: Service
metadata: {{ name: {name}, namespace: default }}
spec:
  ports: [{{ name: http, port: 80 }}]
{}"#,
        slice(name, &format!("{name}-x7k2p"), backend)
    )
}

/// An EndpointSlice of Service `service` with one ready endpoint 127.0.0.1:`port`.
fn slice(service: &str, name: &str, port: u16) -> String {
    format!(
        r#"---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: {name}, namespace: default, labels: {{ kubernetes.io/service-name: {service} }} }}
addressType: IPv4
ports: [{{ name: http, port: {port} }}]
endpoints: [{{ addresses: ["127.0.0.1"], conditions: {{ ready: true }} }}]
"#
    )
}

/// Route file `f` of `routes` (routes `f*100 ..`), route 0 with `edit` if given.
fn route_file(f: usize, routes: usize, ports: Ports, edit: Option<&str>) -> String {
    let mut text = String::new();
    for i in f * PER_FILE..((f + 1) * PER_FILE).min(routes) {
        let (host, path) = route_target(i);
        let edit = if i == 0 { edit } else { None };
        text.push_str(&route_docs(
            &format!("r{i}"),
            &host,
            &path,
            edit,
            ports.backend,
        ));
    }
    text
}

fn route_file_name(f: usize) -> String {
    format!("routes-{f:03}.yaml")
}

/// Writes `text` to `dir/name` atomically (a hidden temporary file renamed).
fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).with_context(|| format!("renaming to {name}"))?;
    Ok(())
}

/// A directory with the Gateway, the endpoint-switch route (its Service's slice in a
/// file of its own, on backend A) and `routes` routes.
fn write_manifests(dir: &Path, routes: usize, ports: Ports) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("gateway.yaml"),
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{ name: gw, namespace: default }}\nspec:\n  gatewayClassName: gatekit\n  listeners: [{{ name: http, port: {}, protocol: HTTP }}]\n",
            ports.listener
        ),
    )?;
    std::fs::write(dir.join("ep.yaml"), ep_route())?;
    std::fs::write(dir.join("ep-slice.yaml"), slice("ep", "ep-1", ports.ep_a))?;
    for f in 0..routes.div_ceil(PER_FILE) {
        std::fs::write(
            dir.join(route_file_name(f)),
            route_file(f, routes, ports, None),
        )?;
    }
    Ok(())
}

fn ep_route() -> String {
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: ep, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n  hostnames: [\"ep.bench.test\"]\n  rules:\n  - backendRefs: [{ name: ep, port: 80 }]\n---\napiVersion: v1\nkind: Service\nmetadata: { name: ep, namespace: default }\nspec:\n  ports: [{ name: http, port: 80 }]\n".to_owned()
}

/// The figures of one size.
#[derive(Default)]
struct Figures {
    routes: usize,
    ready_ms: f64,
    rss_fresh: f64,
    /// `rss_fresh`'s anonymous and file-backed parts.
    rss_fresh_parts: (f64, f64),
    added: Vec<f64>,
    changed: Vec<f64>,
    deleted: Vec<f64>,
    reloads: Vec<[f64; 3]>,
    ep_first: Vec<f64>,
    ep_old_last: Vec<f64>,
    ep_overlap: Vec<f64>,
    ep_requests: u64,
    ep_errors: u64,
    edits: Vec<f64>,
    load_requests: u64,
    load_errors: u64,
    rss_idle: f64,
    written_ms: f64,
    rss_written: f64,
    hwm_written: f64,
    rss_deleted: f64,
}

// --- the phases ------------------------------------------------------------------------

struct Bench {
    bin: PathBuf,
    work: PathBuf,
    ports: Ports,
    repeats: usize,
    edits: usize,
    rate: u32,
    ep_a: Arc<Hits>,
    ep_b: Arc<Hits>,
}

impl Bench {
    /// `gatekit run --resources DIR` with its admin server on the admin port.
    fn gatekit(&self, dir: &Path, label: &str) -> Result<Gatekit> {
        Gatekit::start(
            &self.bin,
            &self.work,
            &["--resources".as_ref(), dir.as_os_str()],
            &format!("admin: {{ address: \"127.0.0.1:{}\" }}\n", self.ports.admin),
            self.ports.admin,
            label,
        )
    }

    fn size(&self, routes: usize) -> Result<Figures> {
        let mut fig = Figures {
            routes,
            ..Figures::default()
        };
        let ports = self.ports;
        let dir = self.work.join(format!("m{routes}"));
        write_manifests(&dir, routes, ports)?;

        // Fresh process with N routes.
        let started = Instant::now();
        let mut gk = self.gatekit(&dir, &format!("{routes}"))?;
        fig.ready_ms = ms(gk.ready(started)?);
        let mut probe = Client::new(ports.listener)?;
        let (host, path) = route_target(routes - 1);
        probe.wait_for(Instant::now(), &host, &path, |a| a.status == 200)?;
        for i in 0..50 {
            let (host, path) = route_target(i * routes / 50);
            probe.get(&host, &path)?;
        }
        std::thread::sleep(Duration::from_secs(1));
        fig.rss_fresh = gk.rss()?.0;
        fig.rss_fresh_parts = gk.rss_parts()?;
        eprintln!(
            "  {routes} routes: ready in {:.0} ms, RSS {:.1} MB",
            fig.ready_ms, fig.rss_fresh
        );

        // Add, change, delete a route (a file of its own), on a shared hostname.
        let host = route_target(1).0;
        let log_from = gk.log_len();
        let mut gap = Duration::from_millis(50);
        for k in 0..self.repeats {
            let name = format!("probe-{k}.yaml");
            let (p1, p2) = (format!("/probe-{k}"), format!("/probe-{k}-v2"));
            let docs =
                |path: &str| route_docs(&format!("probe-{k}"), &host, path, None, ports.backend);
            let t = Instant::now();
            write_atomic(&dir, &name, &docs(&p1))?;
            let d = probe.wait_for(t, &host, &p1, |a| a.status == 200)?;
            fig.added.push(ms(d));
            gap = gap.max(d);
            std::thread::sleep(gap);
            let t = Instant::now();
            write_atomic(&dir, &name, &docs(&p2))?;
            fig.changed
                .push(ms(probe.wait_for(t, &host, &p2, |a| a.status == 200)?));
            std::thread::sleep(gap);
            let t = Instant::now();
            std::fs::remove_file(dir.join(&name))?;
            fig.deleted
                .push(ms(probe.wait_for(t, &host, &p2, |a| a.status == 404)?));
            std::thread::sleep(gap);
        }
        fig.reloads = gk.reload_timings(log_from);
        eprintln!(
            "  add/change/delete p50: {:.1} / {:.1} / {:.1} ms",
            pct(&fig.added, 0.5),
            pct(&fig.changed, 0.5),
            pct(&fig.deleted, 0.5)
        );

        self.endpoint_switch(&dir, &mut fig, gap)?;
        self.edits_under_load(&dir, &mut fig, gap)?;
        drop(gk);

        // Idle, N routes written into the running gateway, all deleted.
        let idle = self.work.join(format!("idle{routes}"));
        write_manifests(&idle, 0, ports)?;
        let mut gk = self.gatekit(&idle, &format!("{routes}-written"))?;
        gk.ready(Instant::now())?;
        let mut probe = Client::new(ports.listener)?;
        probe.wait_for(Instant::now(), "ep.bench.test", "/", |a| a.status == 200)?;
        std::thread::sleep(Duration::from_secs(1));
        fig.rss_idle = gk.rss()?.0;
        let t = Instant::now();
        for f in 0..routes.div_ceil(PER_FILE) {
            write_atomic(
                &idle,
                &route_file_name(f),
                &route_file(f, routes, ports, None),
            )?;
        }
        let (host, path) = route_target(routes - 1);
        fig.written_ms = ms(probe.wait_for(t, &host, &path, |a| a.status == 200)?);
        std::thread::sleep(Duration::from_secs(1));
        (fig.rss_written, fig.hwm_written) = gk.rss()?;
        let t = Instant::now();
        for f in 0..routes.div_ceil(PER_FILE) {
            std::fs::remove_file(idle.join(route_file_name(f)))?;
        }
        probe.wait_for(t, &host, &path, |a| a.status == 404)?;
        let (host, path) = route_target(0);
        probe.wait_for(t, &host, &path, |a| a.status == 404)?;
        std::thread::sleep(Duration::from_secs(1));
        fig.rss_deleted = gk.rss()?.0;
        drop(gk);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&idle);
        Ok(fig)
    }

    /// The `ep` Service's slice moved between backends A and B, `repeats` times, while
    /// a client sends a request to its route every [`POLL`].
    fn endpoint_switch(&self, dir: &Path, fig: &mut Figures, gap: Duration) -> Result<()> {
        let client = Load::start(
            self.ports.listener,
            "ep.bench.test".to_owned(),
            "/".to_owned(),
            POLL,
            false,
        );
        let mut result = Ok(());
        for k in 0..self.repeats {
            // The slice starts on A: even rounds move it to B, odd ones back to A.
            let (new, old, port) = if k.is_multiple_of(2) {
                (&self.ep_b, &self.ep_a, self.ports.ep_b)
            } else {
                (&self.ep_a, &self.ep_b, self.ports.ep_a)
            };
            std::thread::sleep(gap.max(Duration::from_millis(50)));
            new.arm();
            let t = now_ns();
            if let Err(e) = write_atomic(dir, "ep-slice.yaml", &slice("ep", "ep-1", port)) {
                result = Err(e);
                break;
            }
            let deadline = Instant::now() + CHANGE_DEADLINE;
            let first = loop {
                let first = new.first.load(Ordering::SeqCst);
                if first != 0 {
                    break first;
                }
                if Instant::now() > deadline {
                    break 0;
                }
                std::thread::sleep(POLL);
            };
            if first == 0 {
                result = Err(anyhow!(
                    "the new endpoint got no request in {CHANGE_DEADLINE:?}"
                ));
                break;
            }
            // Requests still in flight to the old endpoint land within this.
            std::thread::sleep(Duration::from_millis(200));
            let last = old.last.load(Ordering::SeqCst);
            #[allow(clippy::cast_precision_loss)]
            let to_ms = |ns: u64| ns as f64 / 1e6;
            fig.ep_first.push(to_ms(first - t));
            fig.ep_old_last.push(to_ms(last.saturating_sub(t)));
            fig.ep_overlap.push(to_ms(last.saturating_sub(first)));
        }
        let (requests, errors) = client.stop()?;
        fig.ep_requests = requests;
        fig.ep_errors = errors;
        eprintln!(
            "  endpoint switch p50: new endpoint after {:.1} ms, old one until {:.1} ms; {errors} errors in {requests} requests",
            pct(&fig.ep_first, 0.5),
            pct(&fig.ep_old_last, 0.5)
        );
        result
    }

    /// `edits` rewrites of route file 0 (route r0's header filter), each waited for,
    /// while two clients send `rate` requests/s in total to r0 and another route.
    fn edits_under_load(&self, dir: &Path, fig: &mut Figures, gap: Duration) -> Result<()> {
        let routes = fig.routes;
        let interval = Duration::from_secs_f64(2.0 / f64::from(self.rate.max(2)));
        let mut clients = Vec::new();
        for target in [0, routes / 2 + 1] {
            let (host, path) = route_target(target.min(routes - 1));
            clients.push(Load::start(self.ports.listener, host, path, interval, true));
        }
        let mut probe = Client::new(self.ports.listener)?;
        let (host, path) = route_target(0);
        let mut result = Ok(());
        std::thread::sleep(Duration::from_millis(200));
        for k in 1..=self.edits {
            let edit = format!("e{k}");
            let t = Instant::now();
            let written = write_atomic(
                dir,
                &route_file_name(0),
                &route_file(0, routes, self.ports, Some(&edit)),
            );
            let served = written.and_then(|()| {
                probe.wait_for(t, &host, &path, |a| {
                    a.edit.as_deref() == Some(edit.as_str())
                })
            });
            match served {
                Ok(d) => fig.edits.push(ms(d)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            std::thread::sleep(gap.min(Duration::from_millis(100)));
        }
        std::thread::sleep(Duration::from_millis(200));
        for c in clients {
            let (requests, errors) = c.stop()?;
            fig.load_requests += requests;
            fig.load_errors += errors;
        }
        eprintln!(
            "  {} edits under load: p50 {:.1} ms; {} errors in {} requests",
            fig.edits.len(),
            pct(&fig.edits, 0.5),
            fig.load_errors,
            fig.load_requests
        );
        result
    }
}

// --- output ----------------------------------------------------------------------------

fn table(all: &[Figures], repeats: usize) -> String {
    let mut t = Table::default();
    let mut row = |label: &str, cell: &dyn Fn(&Figures) -> String| t.row(label, all, cell);
    let p = fmt_p50_p99;
    let mb = |v: f64| format!("{v:.1} MB");
    row("routes already served", &|f| thousands(f.routes));
    row(
        &format!("route added (new file) → 200, p50 / p99 of {repeats}"),
        &|f| p(&f.added),
    );
    row(
        "route changed (path edited) → new path 200, p50 / p99",
        &|f| p(&f.changed),
    );
    row("route deleted (file removed) → 404, p50 / p99", &|f| {
        p(&f.deleted)
    });
    row(
        "EndpointSlice rewrite → new endpoint's first request, p50 / p99",
        &|f| p(&f.ep_first),
    );
    row(
        "removed endpoint's last request after the write, p50 (max)",
        &|f| {
            format!(
                "{} ({})",
                fmt_ms(pct(&f.ep_old_last, 0.5)),
                fmt_ms(pct(&f.ep_old_last, 1.0))
            )
        },
    );
    row(
        "removed endpoint's last request after the new one's first, p50 (max)",
        &|f| {
            format!(
                "{} ({})",
                fmt_ms(pct(&f.ep_overlap, 0.5)),
                fmt_ms(pct(&f.ep_overlap, 1.0))
            )
        },
    );
    row("RSS, fresh process with that many routes", &|f| {
        mb(f.rss_fresh)
    });
    row(
        "… of which anonymous (heap, stacks) / file-backed (the binary's pages)",
        &|f| format!("{} / {}", mb(f.rss_fresh_parts.0), mb(f.rss_fresh_parts.1)),
    );
    row("start → /readyz", &|f| fmt_ms(f.ready_ms));
    row("RSS idle (no routes)", &|f| mb(f.rss_idle));
    row(
        "routes written into the running gateway → last one 200",
        &|f| fmt_ms(f.written_ms),
    );
    row("RSS after writing them (peak)", &|f| {
        format!("{} ({})", mb(f.rss_written), mb(f.hwm_written))
    });
    row("RSS after deleting them all", &|f| mb(f.rss_deleted));
    row("route file edit under load → served, p50 / p99", &|f| {
        p(&f.edits)
    });
    row("errors during the edits under load / requests", &|f| {
        format!("{} / {}", f.load_errors, f.load_requests)
    });
    row("errors during endpoint churn / requests", &|f| {
        format!("{} / {}", f.ep_errors, f.ep_requests)
    });
    row(
        "reload log p50: load / translate / apply (add/change/delete)",
        &|f| fmt_reloads(&f.reloads),
    );
    t.text().to_owned()
}

fn raw(f: &Figures) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "routes {}:", f.routes);
    let _ = writeln!(t, "  added ms:    {}", fmt_samples(&f.added));
    let _ = writeln!(t, "  changed ms:  {}", fmt_samples(&f.changed));
    let _ = writeln!(t, "  deleted ms:  {}", fmt_samples(&f.deleted));
    let _ = writeln!(t, "  endpoint new first ms: {}", fmt_samples(&f.ep_first));
    let _ = writeln!(
        t,
        "  endpoint old last ms:  {}",
        fmt_samples(&f.ep_old_last)
    );
    let _ = writeln!(t, "  endpoint overlap ms:   {}", fmt_samples(&f.ep_overlap));
    let _ = writeln!(t, "  edits under load ms:   {}", fmt_samples(&f.edits));
    let _ = writeln!(
        t,
        "  reloads ({}), load/translate/apply ms: {}",
        f.reloads.len(),
        f.reloads
            .iter()
            .map(|r| format!("{:.1}/{:.1}/{:.1}", r[0], r[1], r[2]))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        t,
        "  ready {:.0} ms; RSS fresh {:.1} MB; idle {:.1} MB, written {:.1} MB (peak {:.1} MB, in {:.0} ms), deleted {:.1} MB",
        f.ready_ms,
        f.rss_fresh,
        f.rss_idle,
        f.rss_written,
        f.hwm_written,
        f.written_ms,
        f.rss_deleted
    );
    let _ = writeln!(
        t,
        "  errors: edits under load {} / {} requests; endpoint churn {} / {} requests",
        f.load_errors, f.load_requests, f.ep_errors, f.ep_requests
    );
    t
}

// --- main ------------------------------------------------------------------------------

fn usage() -> anyhow::Error {
    anyhow!(
        "usage: live_change --gatekit BIN --work DIR [--repeats 30] [--edits 100] [--rate 500] [--port 19300] [--table FILE] SIZE...\n       live_change --write DIR [--port 19300] SIZE   (only writes the manifests)"
    )
}

fn main() -> Result<()> {
    let mut bin = None;
    let mut work = None;
    let mut table_file = None;
    let mut write = None;
    let (mut repeats, mut edits, mut rate, mut port) = (30, 100, 500, 19300);
    let mut sizes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(usage);
        match arg.as_str() {
            "--gatekit" => bin = Some(PathBuf::from(value()?)),
            "--work" => work = Some(PathBuf::from(value()?)),
            "--table" => table_file = Some(PathBuf::from(value()?)),
            "--repeats" => repeats = value()?.parse()?,
            "--edits" => edits = value()?.parse()?,
            "--rate" => rate = value()?.parse()?,
            "--port" => port = value()?.parse()?,
            "--write" => write = Some(PathBuf::from(value()?)),
            size => sizes.push(size.parse::<usize>().map_err(|_| usage())?),
        }
    }
    let ports = Ports {
        listener: port,
        admin: port + 1,
        backend: port + 2,
        ep_a: port + 3,
        ep_b: port + 4,
    };
    if let (Some(dir), [routes]) = (&write, sizes.as_slice()) {
        return write_manifests(dir, *routes, ports);
    }
    let (Some(bin), Some(work)) = (bin, work) else {
        return Err(usage());
    };
    if sizes.is_empty() || sizes.contains(&0) || repeats == 0 {
        return Err(usage());
    }
    std::fs::create_dir_all(&work)?;
    base();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (_main, ep_a, ep_b) = rt.block_on(async {
        anyhow::Ok((
            backend(SocketAddr::from(([127, 0, 0, 1], ports.backend))).await?,
            backend(SocketAddr::from(([127, 0, 0, 1], ports.ep_a))).await?,
            backend(SocketAddr::from(([127, 0, 0, 1], ports.ep_b))).await?,
        ))
    })?;
    let bench = Bench {
        bin,
        work,
        ports,
        repeats,
        edits,
        rate,
        ep_a,
        ep_b,
    };
    let mut all = Vec::new();
    for routes in sizes {
        eprintln!("== {routes} routes");
        let fig = bench.size(routes)?;
        print!("{}", raw(&fig));
        std::io::stdout().flush()?;
        all.push(fig);
        if let Some(file) = &table_file {
            std::fs::write(file, table(&all, repeats))?;
        }
    }
    println!();
    print!("{}", table(&all, repeats));
    Ok(())
}
