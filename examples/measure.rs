//! What the measuring tools (`live_change`, `k8s_scale`) share: backends that note their
//! hits, a blocking keep-alive client, a steady request load, the `gatekit` process
//! handle (readiness, RSS, its `reload timings` log lines), the routes' hosts and paths,
//! percentiles and number formatting. Loopback only.

use std::convert::Infallible;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use gatekit_core::Body;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// Time between two polling requests.
pub const POLL: Duration = Duration::from_micros(200);
/// Longest wait for one change to serve.
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(20);

// --- time base -------------------------------------------------------------------------

/// The instant [`now_ns`] counts from (fixed on first use).
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since [`base`], never 0 (0 means "none").
pub fn now_ns() -> u64 {
    u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX) | 1
}

// --- backends --------------------------------------------------------------------------

/// What one backend saw.
#[derive(Debug, Default)]
pub struct Hits {
    /// Requests received.
    pub count: AtomicU64,
    /// First request since the last [`Hits::arm`] ([`now_ns`]; 0: none yet).
    pub first: AtomicU64,
    /// Last request ([`now_ns`]).
    pub last: AtomicU64,
}

impl Hits {
    /// Forgets the first request: the next one is noted in [`Hits::first`].
    pub fn arm(&self) {
        self.first.store(0, Ordering::SeqCst);
    }

    fn record(&self) {
        let now = now_ns();
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .first
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        self.last.fetch_max(now, Ordering::SeqCst);
    }
}

/// Serves `addr`: every request is answered 200 `ok`, its `x-edit` header copied to the
/// response, and noted in the returned [`Hits`]. Must be called inside a Tokio runtime.
///
/// # Errors
///
/// If `addr` cannot be bound.
pub async fn backend(addr: SocketAddr) -> Result<Arc<Hits>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding backend {addr}"))?;
    let hits = Arc::new(Hits::default());
    let seen = hits.clone();
    let svc = tower::service_fn(move |req: Request<Body>| {
        seen.record();
        let edit = req.headers().get("x-edit").cloned();
        async move {
            let mut rsp = Response::new(Full::new(Bytes::from_static(b"ok")));
            if let Some(edit) = edit {
                rsp.headers_mut().insert("x-edit", edit);
            }
            Ok::<_, Infallible>(rsp)
        }
    });
    tokio::spawn(gatekit_core::server::serve(
        listener,
        svc,
        std::future::pending(),
    ));
    Ok(hits)
}

// --- a blocking keep-alive client ------------------------------------------------------

/// One HTTP/1.1 keep-alive connection to `127.0.0.1:port`, driven from a plain thread
/// (so it can pace its requests with `thread::sleep`, which is finer than tokio's 1 ms
/// timer).
pub struct Client {
    rt: tokio::runtime::Runtime,
    port: u16,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("port", &self.port).finish()
    }
}

/// An answer: status and its `x-edit` header.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `x-edit` header, if any.
    pub edit: Option<String>,
}

impl Client {
    /// A client of `127.0.0.1:port` (connects on the first request).
    ///
    /// # Errors
    ///
    /// If its runtime cannot be built.
    pub fn new(port: u16) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            rt,
            port,
            sender: None,
        })
    }

    /// One GET; a failed connection is dropped (the next call connects again).
    ///
    /// # Errors
    ///
    /// Connection and protocol errors.
    pub fn get(&mut self, host: &str, path: &str) -> Result<Answer> {
        let port = self.port;
        let mut sender = self.sender.take();
        let result = self.rt.block_on(async {
            let mut s = match sender.take() {
                Some(s) if !s.is_closed() => s,
                _ => {
                    let io = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                    io.set_nodelay(true)?;
                    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
                    tokio::spawn(conn);
                    s
                }
            };
            s.ready().await?;
            let req = Request::get(path)
                .header("host", host)
                .body(Empty::<Bytes>::new())?;
            let rsp = s.send_request(req).await?;
            let status = rsp.status().as_u16();
            let edit = rsp
                .headers()
                .get("x-edit")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            rsp.into_body().collect().await?;
            anyhow::Ok((s, Answer { status, edit }))
        });
        match result {
            Ok((s, answer)) => {
                self.sender = Some(s);
                Ok(answer)
            }
            Err(error) => Err(error),
        }
    }

    /// Polls `host` `path` every [`POLL`] until `done` says yes; the time since `since`.
    ///
    /// # Errors
    ///
    /// If `done` did not say yes within [`CHANGE_DEADLINE`].
    pub fn wait_for(
        &mut self,
        since: Instant,
        host: &str,
        path: &str,
        done: impl Fn(&Answer) -> bool,
    ) -> Result<Duration> {
        loop {
            if let Ok(answer) = self.get(host, path)
                && done(&answer)
            {
                return Ok(since.elapsed());
            }
            if since.elapsed() > CHANGE_DEADLINE {
                bail!("{host}{path} did not change within {CHANGE_DEADLINE:?}");
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A client thread sending requests to one host and path until stopped, counting the
/// answers that are not 2xx (and failed connections) as errors.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(u64, u64)>>,
}

impl Load {
    /// Starts sending to `127.0.0.1:port`. `paced`: a request every `interval` (sooner
    /// after a slow one, to keep the rate); otherwise `interval` between an answer and
    /// the next request.
    pub fn start(port: u16, host: String, path: String, interval: Duration, paced: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || -> Result<(u64, u64)> {
            let mut c = Client::new(port)?;
            let (mut requests, mut errors) = (0, 0);
            let mut next = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                requests += 1;
                match c.get(&host, &path) {
                    Ok(a) if (200..300).contains(&a.status) => {}
                    _ => errors += 1,
                }
                if paced {
                    next = (next + interval).max(Instant::now());
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                } else {
                    std::thread::sleep(interval);
                }
            }
            Ok((requests, errors))
        });
        Self { stop, thread }
    }

    /// Stops the client: (requests, errors).
    ///
    /// # Errors
    ///
    /// If its runtime could not be built or the thread panicked.
    pub fn stop(self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("load client panicked"))?
    }
}

// --- routes ----------------------------------------------------------------------------

/// Host and path of route `i`: even routes have a hostname of their own (prefix `/`),
/// odd ones share a hostname with 9 others and have their own path prefix.
pub fn route_target(i: usize) -> (String, String) {
    if i.is_multiple_of(2) {
        (format!("r{i}.bench.test"), "/".to_owned())
    } else {
        (format!("shared{}.bench.test", i / 20), format!("/r{i}"))
    }
}

// --- the gatekit process ---------------------------------------------------------------

/// A running `gatekit run`; killed when dropped.
#[derive(Debug)]
pub struct Gatekit {
    child: Child,
    log: PathBuf,
    admin: u16,
}

impl Gatekit {
    /// Starts `bin run --config WORK/gatekit.yaml ARGS...` with `config` as the settings
    /// file (its admin server on `127.0.0.1:admin`), logging at `info` to
    /// `WORK/gatekit-LABEL.log`. The process id is written to `WORK/gatekit.pid` (for a
    /// script's cleanup).
    ///
    /// # Errors
    ///
    /// If a file cannot be written or the process cannot be started.
    pub fn start(
        bin: &Path,
        work: &Path,
        args: &[&OsStr],
        config: &str,
        admin: u16,
        label: &str,
    ) -> Result<Self> {
        let config_file = work.join("gatekit.yaml");
        std::fs::write(&config_file, config)?;
        let log = work.join(format!("gatekit-{label}.log"));
        let child = Command::new(bin)
            .arg("run")
            .args(args)
            .arg("--config")
            .arg(&config_file)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        std::fs::write(work.join("gatekit.pid"), child.id().to_string())?;
        Ok(Self { child, log, admin })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `/readyz`; the time it took since `since`.
    ///
    /// # Errors
    ///
    /// If the process exits or is not ready within 300 s.
    pub fn ready(&mut self, since: Instant) -> Result<Duration> {
        let mut admin = Client::new(self.admin)?;
        loop {
            if let Ok(a) = admin.get("127.0.0.1", "/readyz")
                && a.status == 200
            {
                return Ok(since.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("gatekit exited ({status}); see {}", self.log.display());
            }
            if since.elapsed() > Duration::from_secs(300) {
                bail!("gatekit not ready after 300 s; see {}", self.log.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `VmRSS` and `VmHWM` in MB.
    ///
    /// # Errors
    ///
    /// If `/proc/PID/status` cannot be read or lacks them.
    pub fn rss(&self) -> Result<(f64, f64)> {
        self.status_mb(["VmRSS:", "VmHWM:"])
            .map(|[rss, hwm]| (rss, hwm))
    }

    /// `VmRSS`'s parts in MB: anonymous (`RssAnon`: heap, stacks) and file-backed
    /// (`RssFile`: the binary's and libraries' pages in use).
    ///
    /// # Errors
    ///
    /// If `/proc/PID/status` cannot be read or lacks them.
    pub fn rss_parts(&self) -> Result<(f64, f64)> {
        self.status_mb(["RssAnon:", "RssFile:"])
            .map(|[anon, file]| (anon, file))
    }

    fn status_mb<const N: usize>(&self, names: [&str; N]) -> Result<[f64; N]> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> Result<f64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| anyhow!("no {name} in /proc status"))?;
            let kb: f64 = line
                .split_whitespace()
                .nth(1)
                .ok_or_else(|| anyhow!("bad {name} line"))?
                .parse()?;
            Ok(kb / 1024.0)
        };
        let mut out = [0.0; N];
        for (o, name) in out.iter_mut().zip(names) {
            *o = field(name)?;
        }
        Ok(out)
    }

    /// The log's length so far (to read the lines logged after it).
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The `reload timings` lines logged from byte `from` on: (load, translate, apply) ms.
    pub fn reload_timings(&self, from: u64) -> Vec<[f64; 3]> {
        let Ok(text) = std::fs::read(&self.log) else {
            return Vec::new();
        };
        let from = usize::try_from(from).unwrap_or(0).min(text.len());
        let text = strip_ansi(&String::from_utf8_lossy(&text[from..]));
        text.lines()
            .filter(|l| l.contains("reload timings"))
            .filter_map(|l| {
                let value = |key: &str| -> Option<f64> {
                    let at = l.find(key)? + key.len();
                    l[at..].split_whitespace().next()?.parse().ok()
                };
                Some([
                    value("load_ms=")?,
                    value("translate_ms=")?,
                    value("apply_ms=")?,
                ])
            })
            .collect()
    }
}

impl Drop for Gatekit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// --- statistics and formatting ---------------------------------------------------------

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile `p` (0..=1) of `samples`; NaN when there are none.
pub fn pct(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// Milliseconds with 3 significant digits or so (`–` for NaN).
pub fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// `p50 / p99` of `samples` in milliseconds.
pub fn fmt_p50_p99(samples: &[f64]) -> String {
    format!(
        "{} / {}",
        fmt_ms(pct(samples, 0.5)),
        fmt_ms(pct(samples, 0.99))
    )
}

/// The samples sorted, two decimals, space-separated.
pub fn fmt_samples(samples: &[f64]) -> String {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s.iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `n` with thousands separators (`10,000`).
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Per-phase p50 of `reload timings` lines: `load / translate / apply ms`.
pub fn fmt_reloads(reloads: &[[f64; 3]]) -> String {
    let phase = |i: usize| pct(&reloads.iter().map(|r| r[i]).collect::<Vec<_>>(), 0.5);
    format!("{:.1} / {:.1} / {:.1} ms", phase(0), phase(1), phase(2))
}

/// A markdown table: a header row `label | column...`, then one row per label.
#[derive(Debug, Default)]
pub struct Table {
    text: String,
}

impl Table {
    /// Adds the row `label | cell(column)...`; the first row is the header, followed by
    /// the alignment row.
    pub fn row<T>(&mut self, label: &str, columns: &[T], cell: impl Fn(&T) -> String) {
        use std::fmt::Write as _;
        let first = self.text.is_empty();
        let _ = write!(self.text, "| {label} |");
        for c in columns {
            let _ = write!(self.text, " {} |", cell(c));
        }
        self.text.push('\n');
        if first {
            self.text.push_str("| --- |");
            for _ in columns {
                self.text.push_str(" ---: |");
            }
            self.text.push('\n');
        }
    }

    /// The table's text.
    pub fn text(&self) -> &str {
        &self.text
    }
}
