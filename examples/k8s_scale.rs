//! Benchmark harness part: the Kubernetes path at scale (issue 19), measured from
//! outside against the release `gatekit` binary, as `scripts/bench-k8s-scale.sh` runs it.
//!
//! ```text
//! cargo build --release -p gatekit-bin --locked
//! cargo run --profile bench -p gatekit-examples --example k8s_scale -- \
//!     --gatekit target/release/gatekit --work /tmp/ks 1000 10000
//! ```
//!
//! For each size N this process starts the in-process Kubernetes API server
//! `gatekit-k8s-fake` (TLS, real list/watch protocol) and fills it as a cluster looks:
//! one Gateway with an HTTP listener on 127.0.0.1, N HTTPRoutes, each with its own
//! Service and one EndpointSlice of 5 endpoints (127.0.0.1 to 127.0.0.5, each a real
//! backend served here), half of the routes told apart by hostname, half by path prefix on
//! shared hostnames (as `live_change` does), and a route `ep.bench.test` whose Service's
//! fifth endpoint is moved between two noting backends (127.0.0.6, 127.0.0.7). gatekit runs
//! as in a cluster: `gatekit run --config FILE` with a `kubernetes:` cluster (server URL,
//! `caData`, roles `config` and `endpoints`), no replica identity (so no Leases and no
//! status writes). Then, in one process:
//!
//! - start → `/readyz`, start → the last route answering 200, RSS then (`VmRSS`, `VmHWM`);
//! - a route added through the API (Service, EndpointSlice, HTTPRoute applied) → 200, its
//!   path changed → the new path 200, it deleted → 404, `--repeats` times each, while a
//!   client sends `--rate` requests/s to another route (its errors are counted); the
//!   binary's `reload timings` log lines of this phase;
//! - the `ep` EndpointSlice changed (its fifth endpoint moved to the other noting
//!   backend) → that backend's first request, `--repeats` times, while a client sends a
//!   request to that route every 0.2 ms;
//! - `--more` routes (with Services and slices) applied: time until the last answers
//!   200, and (RSS after − before) / `--more` as the memory of one route; then `--more`
//!   endpoints (a second slice of 5 endpoints on another port for `--more`/5 Services):
//!   (RSS after − before) / `--more` per endpoint;
//! - `--secrets` unrelated Secrets (`kubernetes.io/tls`, ~2 KB of data each, referenced
//!   by nothing) applied: RSS before and after (once it settles), and the reloads they
//!   caused; then a fresh process with them present (the extra routes and endpoints
//!   deleted again): start → `/readyz`, RSS.
//!
//! Loopback only; ports `--port P` (default 19430) to P+3: listener, admin, the routes'
//! backends (on 127.0.0.1-7), the extra endpoints' backends (on 127.0.0.1-5); the API
//! server takes a free port. The gatekit process started is written to `WORK/gatekit.pid`
//! and killed when this exits.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use base64::Engine as _;
use gatekit_examples::measure::{
    CHANGE_DEADLINE, Client, Gatekit, Hits, Load, POLL, Table, backend, base, fmt_ms, fmt_p50_p99,
    fmt_reloads, fmt_samples, ms, now_ns, pct, route_target, thousands,
};
use gatekit_k8s::types::HttpRoute;
use gatekit_k8s_fake::FakeApiServer;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Endpoints in a route's EndpointSlice.
const ENDPOINTS: u8 = 5;
/// The last octets of the two backends the `ep` Service's fifth endpoint moves between.
const SWITCH: [u8; 2] = [6, 7];

// --- objects ---------------------------------------------------------------------------

/// Ports: listener, admin, the routes' backends, the extra endpoints' backends.
#[derive(Clone, Copy)]
struct Ports {
    listener: u16,
    admin: u16,
    backend: u16,
    extra: u16,
}

fn gateway(port: u16) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default"},
        "spec": {"gatewayClassName": "gatekit",
                 "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}
    })
}

/// HTTPRoute `name`: `host` `path` (prefix) to Service `name` port 80.
fn route(name: &str, host: &str, path: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [host],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                "backendRefs": [{"name": name, "port": 80}]
            }]
        }
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    })
}

/// EndpointSlice `name` of Service `service`: one ready endpoint per address
/// `127.0.0.<octet>`, all on `port`.
fn slice(service: &str, name: &str, octets: &[u8], port: u16) -> Value {
    let endpoints: Vec<Value> = octets
        .iter()
        .map(|o| json!({"addresses": [format!("127.0.0.{o}")], "conditions": {"ready": true}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}],
        "endpoints": endpoints
    })
}

/// A TLS Secret nobody references, with ~2 KB of data unique to `i`.
fn unrelated_secret(i: usize) -> Value {
    // xorshift: distinct, incompressible bytes per Secret.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (i as u64 + 1);
    let mut bytes = |n: usize| -> String {
        let raw: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": format!("unrelated-{i}"), "namespace": "default"},
        "data": {"tls.crt": bytes(900), "tls.key": bytes(600)}
    })
}

/// All endpoint octets of a route's slice.
fn route_octets() -> Vec<u8> {
    (1..=ENDPOINTS).collect()
}

/// Applies route `name` with its Service and EndpointSlice (in the order an application
/// is deployed: Service, endpoints, then its route).
fn apply_route(fake: &FakeApiServer, name: &str, host: &str, path: &str, ports: Ports) {
    fake.apply_json(service(name));
    fake.apply_json(slice(
        name,
        &format!("{name}-x7k2p"),
        &route_octets(),
        ports.backend,
    ));
    fake.apply_json(route(name, host, path));
}

fn apply_numbered(fake: &FakeApiServer, i: usize, ports: Ports) {
    let (host, path) = route_target(i);
    apply_route(fake, &format!("r{i}"), &host, &path, ports);
}

fn delete_route(fake: &FakeApiServer, name: &str) {
    fake.delete::<HttpRoute>(Some("default"), name);
    fake.delete::<Service>(Some("default"), name);
    fake.delete::<EndpointSlice>(Some("default"), &format!("{name}-x7k2p"));
}

fn ep_slice(fifth: u8, ports: Ports) -> Value {
    slice("ep", "ep-1", &[1, 2, 3, 4, fifth], ports.backend)
}

// --- figures ---------------------------------------------------------------------------

/// The figures of one size.
#[derive(Default)]
struct Figures {
    routes: usize,
    ready_ms: f64,
    served_ms: f64,
    rss_start: f64,
    hwm_start: f64,
    added: Vec<f64>,
    changed: Vec<f64>,
    deleted: Vec<f64>,
    reloads: Vec<[f64; 3]>,
    load_requests: u64,
    load_errors: u64,
    ep_first: Vec<f64>,
    ep_requests: u64,
    ep_errors: u64,
    more: usize,
    more_routes_ms: f64,
    rss_before_routes: f64,
    rss_after_routes: f64,
    more_endpoints_ms: f64,
    rss_after_endpoints: f64,
    secrets: usize,
    secrets_settled_ms: f64,
    secret_reloads: Vec<[f64; 3]>,
    rss_after_secrets: f64,
    hwm_after_secrets: f64,
    ready_ms_secrets: f64,
    served_ms_secrets: f64,
    rss_start_secrets: f64,
    hwm_start_secrets: f64,
}

impl Figures {
    fn kb_per_route(&self) -> f64 {
        per_item_kb(self.rss_after_routes - self.rss_before_routes, self.more)
    }

    fn kb_per_endpoint(&self) -> f64 {
        per_item_kb(self.rss_after_endpoints - self.rss_after_routes, self.more)
    }
}

#[allow(clippy::cast_precision_loss)]
fn per_item_kb(mb: f64, n: usize) -> f64 {
    mb * 1024.0 / n.max(1) as f64
}

// --- the phases ------------------------------------------------------------------------

struct Bench {
    bin: PathBuf,
    work: PathBuf,
    ports: Ports,
    repeats: usize,
    rate: u32,
    more: usize,
    secrets: usize,
    rt: tokio::runtime::Runtime,
    /// The backends the `ep` Service's fifth endpoint moves between.
    switch: [Arc<Hits>; 2],
    /// The extra endpoints' backends.
    extra: Vec<Arc<Hits>>,
}

impl Bench {
    /// `gatekit run --config FILE` with `fake` as its one cluster.
    fn gatekit(&self, fake: &FakeApiServer, label: &str) -> Result<Gatekit> {
        let ca = fake
            .ca_pem()
            .ok_or_else(|| anyhow!("the API server serves no TLS"))?;
        let config = format!(
            "admin: {{ address: \"127.0.0.1:{admin}\" }}\nkubernetes:\n  clusters:\n  - name: bench\n    server: \"{url}\"\n    caData: {ca}\n    roles: [config, endpoints]\n",
            admin = self.ports.admin,
            url = fake.url(),
            ca = serde_json::to_string(&ca)?,
        );
        Gatekit::start(&self.bin, &self.work, &[], &config, self.ports.admin, label)
    }

    /// A fresh process: start → `/readyz`, start → route `last` 200; (ready, served) ms.
    fn start(&self, gk: &mut Gatekit, started: Instant, last: usize) -> Result<(f64, f64)> {
        let ready = ms(gk.ready(started)?);
        let mut probe = Client::new(self.ports.listener)?;
        let (host, path) = route_target(last);
        let served = ms(probe.wait_for(started, &host, &path, |a| a.status == 200)?);
        Ok((ready, served))
    }

    fn size(&self, routes: usize) -> Result<Figures> {
        let mut fig = Figures {
            routes,
            more: self.more,
            secrets: self.secrets,
            ..Figures::default()
        };
        let ports = self.ports;
        let fake = self.rt.block_on(
            FakeApiServer::builder()
                .tls(true)
                .event_log_capacity(1_000_000)
                .start(),
        );
        fake.apply_json(gateway(ports.listener));
        fake.apply_json(route("ep", "ep.bench.test", "/"));
        fake.apply_json(service("ep"));
        fake.apply_json(ep_slice(SWITCH[0], ports));
        for i in 0..routes {
            apply_numbered(&fake, i, ports);
        }

        // A fresh process with N routes.
        let started = Instant::now();
        let mut gk = self.gatekit(&fake, &format!("{routes}"))?;
        (fig.ready_ms, fig.served_ms) = self.start(&mut gk, started, routes - 1)?;
        let mut probe = Client::new(ports.listener)?;
        for i in 0..50 {
            let (host, path) = route_target(i * routes / 50);
            let a = probe.get(&host, &path)?;
            if a.status != 200 {
                bail!("{host}{path} answered {}", a.status);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        (fig.rss_start, fig.hwm_start) = gk.rss()?;
        eprintln!(
            "  {routes} routes: ready in {:.0} ms, last route 200 after {:.0} ms, RSS {:.1} MB (peak {:.1} MB)",
            fig.ready_ms, fig.served_ms, fig.rss_start, fig.hwm_start
        );

        self.add_change_delete(&fake, &mut probe, &gk, &mut fig)?;
        self.endpoint_switch(&fake, &mut fig)?;
        self.more_routes_and_endpoints(&fake, &mut probe, &gk, &mut fig)?;
        self.unrelated_secrets(&fake, &gk, &mut fig)?;
        drop(gk);

        // A fresh process with the Secrets present (and N routes again).
        for i in routes..routes + self.more {
            delete_route(&fake, &format!("r{i}"));
        }
        for i in 0..self.more / usize::from(ENDPOINTS) {
            fake.delete::<EndpointSlice>(Some("default"), &format!("r{i}-extra"));
        }
        let started = Instant::now();
        let mut gk = self.gatekit(&fake, &format!("{routes}-secrets"))?;
        (fig.ready_ms_secrets, fig.served_ms_secrets) = self.start(&mut gk, started, routes - 1)?;
        std::thread::sleep(Duration::from_secs(1));
        (fig.rss_start_secrets, fig.hwm_start_secrets) = gk.rss()?;
        eprintln!(
            "  fresh with {} Secrets: ready in {:.0} ms, RSS {:.1} MB (peak {:.1} MB)",
            self.secrets, fig.ready_ms_secrets, fig.rss_start_secrets, fig.hwm_start_secrets
        );
        drop(gk);
        Ok(fig)
    }

    /// A route added, its path changed, and deleted through the API, `repeats` times,
    /// while a client sends `rate` requests/s to route 0.
    fn add_change_delete(
        &self,
        fake: &FakeApiServer,
        probe: &mut Client,
        gk: &Gatekit,
        fig: &mut Figures,
    ) -> Result<()> {
        let (host, path) = route_target(0);
        let interval = Duration::from_secs_f64(1.0 / f64::from(self.rate.max(1)));
        let load = Load::start(self.ports.listener, host, path, interval, true);
        let host = route_target(1).0;
        let log_from = gk.log_len();
        let mut gap = Duration::from_millis(50);
        let mut result = Ok(());
        for k in 0..self.repeats {
            let name = format!("probe-{k}");
            let (p1, p2) = (format!("/probe-{k}"), format!("/probe-{k}-v2"));
            let round = (|| -> Result<()> {
                let t = Instant::now();
                apply_route(fake, &name, &host, &p1, self.ports);
                let d = probe.wait_for(t, &host, &p1, |a| a.status == 200)?;
                fig.added.push(ms(d));
                gap = gap.max(d);
                std::thread::sleep(gap);
                let t = Instant::now();
                fake.apply_json(route(&name, &host, &p2));
                fig.changed
                    .push(ms(probe.wait_for(t, &host, &p2, |a| a.status == 200)?));
                std::thread::sleep(gap);
                let t = Instant::now();
                fake.delete::<HttpRoute>(Some("default"), &name);
                fig.deleted
                    .push(ms(probe.wait_for(t, &host, &p2, |a| a.status == 404)?));
                delete_route(fake, &name);
                std::thread::sleep(gap);
                Ok(())
            })();
            if let Err(e) = round {
                result = Err(e);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        (fig.load_requests, fig.load_errors) = load.stop()?;
        fig.reloads = gk.reload_timings(log_from);
        eprintln!(
            "  add/change/delete p50: {:.1} / {:.1} / {:.1} ms; {} reloads, p50 {}; {} errors in {} requests",
            pct(&fig.added, 0.5),
            pct(&fig.changed, 0.5),
            pct(&fig.deleted, 0.5),
            fig.reloads.len(),
            fmt_reloads(&fig.reloads),
            fig.load_errors,
            fig.load_requests
        );
        result
    }

    /// The `ep` slice's fifth endpoint moved between the two noting backends, `repeats`
    /// times, while a client sends a request to its route every [`POLL`].
    fn endpoint_switch(&self, fake: &FakeApiServer, fig: &mut Figures) -> Result<()> {
        let load = Load::start(
            self.ports.listener,
            "ep.bench.test".to_owned(),
            "/".to_owned(),
            POLL,
            false,
        );
        let mut result = Ok(());
        for k in 0..self.repeats {
            // The endpoint starts on SWITCH[0]: even rounds move it to SWITCH[1].
            let to = (k + 1) % 2;
            let new = &self.switch[to];
            std::thread::sleep(Duration::from_millis(50));
            new.arm();
            let t = now_ns();
            fake.apply_json(ep_slice(SWITCH[to], self.ports));
            let deadline = Instant::now() + CHANGE_DEADLINE;
            let first = loop {
                let first = new.first.load(Ordering::SeqCst);
                if first != 0 || Instant::now() > deadline {
                    break first;
                }
                std::thread::sleep(POLL);
            };
            if first == 0 {
                result = Err(anyhow!(
                    "the new endpoint got no request in {CHANGE_DEADLINE:?}"
                ));
                break;
            }
            #[allow(clippy::cast_precision_loss)]
            fig.ep_first.push((first - t) as f64 / 1e6);
        }
        (fig.ep_requests, fig.ep_errors) = load.stop()?;
        eprintln!(
            "  endpoint moved → first request p50 {:.2} ms; {} errors in {} requests",
            pct(&fig.ep_first, 0.5),
            fig.ep_errors,
            fig.ep_requests
        );
        result
    }

    /// `more` routes applied, then `more` endpoints (a second slice of 5 on the extra
    /// port for `more / 5` Services); RSS before and after each.
    fn more_routes_and_endpoints(
        &self,
        fake: &FakeApiServer,
        probe: &mut Client,
        gk: &Gatekit,
        fig: &mut Figures,
    ) -> Result<()> {
        let routes = fig.routes;
        std::thread::sleep(Duration::from_secs(2));
        fig.rss_before_routes = gk.rss()?.0;
        let t = Instant::now();
        for i in routes..routes + self.more {
            apply_numbered(fake, i, self.ports);
        }
        let (host, path) = route_target(routes + self.more - 1);
        fig.more_routes_ms = ms(probe.wait_for(t, &host, &path, |a| a.status == 200)?);
        std::thread::sleep(Duration::from_secs(2));
        fig.rss_after_routes = gk.rss()?.0;

        let services = self.more / usize::from(ENDPOINTS);
        let hits = || -> u64 {
            self.extra
                .iter()
                .map(|h| h.count.load(Ordering::Relaxed))
                .sum()
        };
        let before = hits();
        let t = Instant::now();
        for i in 0..services {
            fake.apply_json(slice(
                &format!("r{i}"),
                &format!("r{i}-extra"),
                &route_octets(),
                self.ports.extra,
            ));
        }
        // The last Service changed reaches an extra endpoint: every slice before it is in.
        let (host, path) = route_target(services.saturating_sub(1));
        loop {
            probe.get(&host, &path)?;
            if hits() > before {
                break;
            }
            if t.elapsed() > CHANGE_DEADLINE {
                bail!("{host}{path} never reached an extra endpoint");
            }
            std::thread::sleep(POLL);
        }
        fig.more_endpoints_ms = ms(t.elapsed());
        std::thread::sleep(Duration::from_secs(2));
        fig.rss_after_endpoints = gk.rss()?.0;
        eprintln!(
            "  {} more routes: served in {:.0} ms, {:.1} KB each; {} more endpoints: served in {:.0} ms, {:.2} KB each",
            self.more,
            fig.more_routes_ms,
            fig.kb_per_route(),
            self.more,
            fig.more_endpoints_ms,
            fig.kb_per_endpoint()
        );
        Ok(())
    }

    /// `secrets` unrelated TLS Secrets applied; RSS once it has settled (no change over
    /// 0.25 MB for 2 s, at least 3 s, at most 60 s after the last write).
    fn unrelated_secrets(
        &self,
        fake: &FakeApiServer,
        gk: &Gatekit,
        fig: &mut Figures,
    ) -> Result<()> {
        let log_from = gk.log_len();
        let t = Instant::now();
        for i in 0..self.secrets {
            fake.apply_json(unrelated_secret(i));
        }
        let written = Instant::now();
        let mut last = gk.rss()?.0;
        let mut stable_since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let now = gk.rss()?.0;
            if (now - last).abs() > 0.25 {
                last = now;
                stable_since = Instant::now();
            }
            let settled = stable_since.elapsed() >= Duration::from_secs(2)
                && written.elapsed() >= Duration::from_secs(3);
            if settled || written.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        fig.secrets_settled_ms = ms(stable_since.duration_since(t));
        (fig.rss_after_secrets, fig.hwm_after_secrets) = gk.rss()?;
        fig.secret_reloads = gk.reload_timings(log_from);
        eprintln!(
            "  {} unrelated Secrets: RSS {:.1} → {:.1} MB (peak {:.1} MB), {} reloads",
            self.secrets,
            fig.rss_after_endpoints,
            fig.rss_after_secrets,
            fig.hwm_after_secrets,
            fig.secret_reloads.len()
        );
        Ok(())
    }
}

// --- output ----------------------------------------------------------------------------

fn table(all: &[Figures], repeats: usize, rate: u32) -> String {
    let mut t = Table::default();
    let mut row = |label: &str, cell: &dyn Fn(&Figures) -> String| t.row(label, all, cell);
    let mb = |v: f64| format!("{v:.1} MB");
    row("routes (endpoints) in the API server", &|f| {
        format!(
            "{} ({})",
            thousands(f.routes),
            thousands(f.routes * usize::from(ENDPOINTS))
        )
    });
    row("start → /readyz", &|f| fmt_ms(f.ready_ms));
    row("start → last route 200", &|f| fmt_ms(f.served_ms));
    row("RSS then (peak)", &|f| {
        format!("{} ({})", mb(f.rss_start), mb(f.hwm_start))
    });
    row(
        &format!(
            "route added (Service + EndpointSlice + HTTPRoute applied) → 200, p50 / p99 of {repeats}"
        ),
        &|f| fmt_p50_p99(&f.added),
    );
    row("route's path changed → new path 200, p50 / p99", &|f| {
        fmt_p50_p99(&f.changed)
    });
    row("route deleted → 404, p50 / p99", &|f| {
        fmt_p50_p99(&f.deleted)
    });
    row(
        "reload log p50: load / translate / apply (add/change/delete)",
        &|f| format!("{} ({} reloads)", fmt_reloads(&f.reloads), f.reloads.len()),
    );
    row(
        &format!("errors / requests at {rate}/s to another route meanwhile"),
        &|f| format!("{} / {}", f.load_errors, f.load_requests),
    );
    row(
        "EndpointSlice changed (one endpoint moved) → first request there, p50 / p99",
        &|f| fmt_p50_p99(&f.ep_first),
    );
    row("errors / requests to that Service meanwhile", &|f| {
        format!("{} / {}", f.ep_errors, f.ep_requests)
    });
    row(
        "more routes applied (each + Service + slice) → last one 200",
        &|f| format!("{}: {}", thousands(f.more), fmt_ms(f.more_routes_ms)),
    );
    row("memory per route (RSS delta / routes added)", &|f| {
        format!(
            "{:.1} KB ({} → {})",
            f.kb_per_route(),
            mb(f.rss_before_routes),
            mb(f.rss_after_routes)
        )
    });
    row(
        "more endpoints applied (second slices of 5) → served",
        &|f| format!("{}: {}", thousands(f.more), fmt_ms(f.more_endpoints_ms)),
    );
    row("memory per endpoint (RSS delta / endpoints added)", &|f| {
        format!(
            "{:.2} KB (→ {})",
            f.kb_per_endpoint(),
            mb(f.rss_after_endpoints)
        )
    });
    row(
        "unrelated TLS Secrets (~2 KB) applied: RSS before → after (peak)",
        &|f| {
            format!(
                "{}: {} → {} ({})",
                thousands(f.secrets),
                mb(f.rss_after_endpoints),
                mb(f.rss_after_secrets),
                mb(f.hwm_after_secrets)
            )
        },
    );
    row(
        "reloads those Secrets caused (p50 load / translate / apply)",
        &|f| {
            if f.secret_reloads.is_empty() {
                "0".to_owned()
            } else {
                format!(
                    "{} ({})",
                    f.secret_reloads.len(),
                    fmt_reloads(&f.secret_reloads)
                )
            }
        },
    );
    row(
        "fresh start with the Secrets present: /readyz, last route 200",
        &|f| {
            format!(
                "{}, {}",
                fmt_ms(f.ready_ms_secrets),
                fmt_ms(f.served_ms_secrets)
            )
        },
    );
    row("RSS then (peak), vs. without the Secrets", &|f| {
        format!(
            "{} ({}) vs. {}",
            mb(f.rss_start_secrets),
            mb(f.hwm_start_secrets),
            mb(f.rss_start)
        )
    });
    t.text().to_owned()
}

fn raw(f: &Figures) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(t, "routes {}:", f.routes);
    let _ = writeln!(t, "  added ms:    {}", fmt_samples(&f.added));
    let _ = writeln!(t, "  changed ms:  {}", fmt_samples(&f.changed));
    let _ = writeln!(t, "  deleted ms:  {}", fmt_samples(&f.deleted));
    let _ = writeln!(t, "  endpoint moved ms: {}", fmt_samples(&f.ep_first));
    for (what, reloads) in [
        ("add/change/delete", &f.reloads),
        ("secrets", &f.secret_reloads),
    ] {
        let _ = writeln!(
            t,
            "  reloads {what} ({}), load/translate/apply ms: {}",
            reloads.len(),
            reloads
                .iter()
                .map(|r| format!("{:.1}/{:.1}/{:.1}", r[0], r[1], r[2]))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let _ = writeln!(
        t,
        "  start: ready {:.0} ms, served {:.0} ms, RSS {:.1} MB (peak {:.1}); with secrets: ready {:.0} ms, served {:.0} ms, RSS {:.1} MB (peak {:.1})",
        f.ready_ms,
        f.served_ms,
        f.rss_start,
        f.hwm_start,
        f.ready_ms_secrets,
        f.served_ms_secrets,
        f.rss_start_secrets,
        f.hwm_start_secrets
    );
    let _ = writeln!(
        t,
        "  RSS: before more routes {:.1} MB, after {:.1} MB ({:.0} ms), after more endpoints {:.1} MB ({:.0} ms), after secrets {:.1} MB (peak {:.1}; settled {:.0} ms after the first write)",
        f.rss_before_routes,
        f.rss_after_routes,
        f.more_routes_ms,
        f.rss_after_endpoints,
        f.more_endpoints_ms,
        f.rss_after_secrets,
        f.hwm_after_secrets,
        f.secrets_settled_ms
    );
    let _ = writeln!(
        t,
        "  errors: steady load {} / {} requests; endpoint churn {} / {} requests",
        f.load_errors, f.load_requests, f.ep_errors, f.ep_requests
    );
    t
}

// --- main ------------------------------------------------------------------------------

fn usage() -> anyhow::Error {
    anyhow!(
        "usage: k8s_scale --gatekit BIN --work DIR [--repeats 20] [--rate 200] [--more 1000] [--secrets 10000] [--port 19430] [--table FILE] SIZE..."
    )
}

fn main() -> Result<()> {
    let mut bin = None;
    let mut work = None;
    let mut table_file = None;
    let (mut repeats, mut rate, mut more, mut secrets, mut port) = (20, 200, 1000, 10_000, 19430);
    let mut sizes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(usage);
        match arg.as_str() {
            "--gatekit" => bin = Some(PathBuf::from(value()?)),
            "--work" => work = Some(PathBuf::from(value()?)),
            "--table" => table_file = Some(PathBuf::from(value()?)),
            "--repeats" => repeats = value()?.parse()?,
            "--rate" => rate = value()?.parse()?,
            "--more" => more = value()?.parse()?,
            "--secrets" => secrets = value()?.parse()?,
            "--port" => port = value()?.parse()?,
            size => sizes.push(size.parse::<usize>().map_err(|_| usage())?),
        }
    }
    let (Some(bin), Some(work)) = (bin, work) else {
        return Err(usage());
    };
    if sizes.is_empty() || sizes.contains(&0) || repeats == 0 || more < usize::from(ENDPOINTS) {
        return Err(usage());
    }
    let ports = Ports {
        listener: port,
        admin: port + 1,
        backend: port + 2,
        extra: port + 3,
    };
    std::fs::create_dir_all(&work)?;
    base();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let at = |octet: u8, port: u16| SocketAddr::from((Ipv4Addr::new(127, 0, 0, octet), port));
    let (switch, extra) = rt.block_on(async {
        for o in route_octets() {
            backend(at(o, ports.backend)).await?;
        }
        let switch = [
            backend(at(SWITCH[0], ports.backend)).await?,
            backend(at(SWITCH[1], ports.backend)).await?,
        ];
        let mut extra = Vec::new();
        for o in route_octets() {
            extra.push(backend(at(o, ports.extra)).await?);
        }
        anyhow::Ok((switch, extra))
    })?;
    let bench = Bench {
        bin,
        work,
        ports,
        repeats,
        rate,
        more,
        secrets,
        rt,
        switch,
        extra,
    };
    let mut all = Vec::new();
    for routes in sizes {
        eprintln!("== {routes} routes");
        let fig = bench.size(routes)?;
        print!("{}", raw(&fig));
        std::io::stdout().flush()?;
        all.push(fig);
        if let Some(file) = &table_file {
            std::fs::write(file, table(&all, repeats, rate))?;
        }
    }
    println!();
    print!("{}", table(&all, repeats, rate));
    Ok(())
}
