//! Traffic policy end to end through the wired gateway (`gatekit run`'s library entry):
//! retries (HTTPRoute `retry`, TrafficPolicy), body replay, retry budgets, circuit
//! breakers, rate limits, request limits and the defaults that protect with no policy
//! written. Backends are real hyper servers on loopback whose behaviour each test
//! scripts; every count asserted is counted by a backend or the client.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gatekit_bin::Settings;
use gatekit_tests::wired::{Wired, free_port, gateway_http, route_with as route, service_at};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

/// What a scripted backend does with a request.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// Reads the body and answers this status (the body's length and a digest in
    /// `x-body-len` / `x-body-sum`).
    Status(u16),
    /// Waits until the backend's gate opens, then answers 200.
    Gated,
}

type Script = Arc<dyn Fn(&http::request::Parts) -> Act + Send + Sync>;

/// A real hyper HTTP/1.1 server on 127.0.0.1 doing what its script says, counting
/// requests, concurrency and the bodies it received.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    gate: Arc<Notify>,
    open: Arc<AtomicBool>,
    task: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The number of requests in flight, published on every change.
    in_flight_rx: watch::Receiver<usize>,
}

impl Backend {
    async fn start(script: impl Fn(&http::request::Parts) -> Act + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::new(script))
    }

    fn serve(listener: TcpListener, script: Script) -> Self {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Notify::new());
        let open = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (in_flight_tx, in_flight_rx) = watch::channel(0usize);
        let in_flight_tx = Arc::new(in_flight_tx);
        let task = {
            let (hits, in_flight, max_in_flight, bodies, gate, open, conns) = (
                hits.clone(),
                in_flight,
                max_in_flight.clone(),
                bodies.clone(),
                gate.clone(),
                open.clone(),
                conns.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Ok((io, _)) = listener.accept().await else {
                        return;
                    };
                    let (hits, in_flight, max_in_flight, bodies, gate, open, script) = (
                        hits.clone(),
                        in_flight.clone(),
                        max_in_flight.clone(),
                        bodies.clone(),
                        gate.clone(),
                        open.clone(),
                        script.clone(),
                    );
                    let in_flight_tx = in_flight_tx.clone();
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let in_flight_tx = in_flight_tx.clone();
                        let (hits, in_flight, max_in_flight, bodies, gate, open, script) = (
                            hits.clone(),
                            in_flight.clone(),
                            max_in_flight.clone(),
                            bodies.clone(),
                            gate.clone(),
                            open.clone(),
                            script.clone(),
                        );
                        async move {
                            hits.fetch_add(1, Ordering::SeqCst);
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            max_in_flight.fetch_max(now, Ordering::SeqCst);
                            in_flight_tx.send_replace(now);
                            let (parts, body) = req.into_parts();
                            let act = script(&parts);
                            let body = body.collect().await.map(|b| b.to_bytes());
                            let body = body.unwrap_or_default();
                            bodies.lock().unwrap().push(body.clone());
                            let status = match act {
                                Act::Status(s) => s,
                                Act::Gated => {
                                    while !open.load(Ordering::SeqCst) {
                                        let notified = gate.notified();
                                        if open.load(Ordering::SeqCst) {
                                            break;
                                        }
                                        notified.await;
                                    }
                                    200
                                }
                            };
                            let now = in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
                            in_flight_tx.send_replace(now);
                            let rsp = Response::builder()
                                .status(status)
                                .header("x-backend", addr.port().to_string())
                                .header("x-body-len", body.len().to_string())
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .unwrap();
                            Ok::<_, Infallible>(rsp)
                        }
                    });
                    let conn = tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(io), svc)
                            .await;
                    });
                    conns.lock().unwrap().push(conn);
                }
            })
        };
        Self {
            addr,
            hits,
            max_in_flight,
            bodies,
            gate,
            open,
            task,
            conns,
            in_flight_rx,
        }
    }

    /// Waits until `n` requests are in flight at this backend.
    async fn wait_in_flight(&self, n: usize) {
        let mut rx = self.in_flight_rx.clone();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| *v >= n))
            .await
            .expect("requests never reached the backend")
            .unwrap();
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn open_gate(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.gate.notify_waiters();
    }

    /// Stops accepting and closes every connection: the port refuses from now on.
    fn kill(&self) {
        self.task.abort();
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the wired gateway on `docs` (joined as one manifest file).
async fn start(docs: &[String]) -> (Wired, u16, tempfile::TempDir) {
    start_with(docs, Settings::default()).await
}

async fn start_with(docs: &[String], settings: Settings) -> (Wired, u16, tempfile::TempDir) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut text = gateway_http(port);
    for doc in docs {
        text.push_str("---\n");
        text.push_str(doc);
    }
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let wired = Wired::start_with(&[dir.path().to_path_buf()], settings).await;
    (wired, port, dir)
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let rsp = client.request(req).await.unwrap();
    let (parts, body) = rsp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

fn get(port: u16, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://127.0.0.1:{port}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_retry_sends_a_failed_attempt_to_the_other_endpoint() {
    let bad = Backend::start(|_| Act::Status(503)).await;
    let good = Backend::start(|_| Act::Status(200)).await;
    let retry = "    retry: { attempts: 2, codes: [503], backoff: 1ms }\n";
    let (_wired, port, _dir) = start(&[
        service_at("two", &[bad.addr, good.addr]),
        route("r", "/", "two", retry),
    ])
    .await;
    let client = client();
    for _ in 0..20 {
        let (status, headers, _) = send(&client, get(port, "/x")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-backend"], good.addr.port().to_string());
    }
    // Every request the balancer sent to the failing endpoint was retried on the other
    // one (round-robin: about half of them), never twice on the same.
    assert!(bad.hits() > 0, "the failing endpoint was never tried");
    assert_eq!(good.hits(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_body_is_replayed_byte_for_byte_and_one_over_the_bound_is_not_retried() {
    let bad = Backend::start(|_| Act::Status(503)).await;
    let good = Backend::start(|_| Act::Status(200)).await;
    let retry = "    retry: { attempts: 1, codes: [503], backoff: 1ms }\n";
    let policy = r#"apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: small-replay, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: small }]
  retry: { attempts: 1, retryOn: [retriable-status-codes], statusCodes: [503], backoff: { baseInterval: 1ms }, maxReplayBodyBytes: 1024 }
"#
    .to_owned();
    let (_wired, port, _dir) = start(&[
        service_at("two", &[bad.addr, good.addr]),
        route("big", "/big", "two", retry),
        route("small", "/small", "two", ""),
        policy,
    ])
    .await;
    let client = client();
    let body: Bytes = (0..10 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let post = |path: &str| {
        Request::post(format!("http://127.0.0.1:{port}{path}"))
            .body(Full::new(body.clone()))
            .unwrap()
    };
    // 10 KB under the default 64 KiB bound: every request ends 200 with the whole body.
    for _ in 0..6 {
        let (status, headers, _) = send(&client, post("/big")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-body-len"], "10240");
    }
    for received in good.bodies.lock().unwrap().iter() {
        assert_eq!(received, &body, "the replayed body differs");
    }
    // Over a 1 KiB bound: never retried, so a request that reached the failing endpoint
    // gets its 503.
    let before = (bad.hits(), good.hits());
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(send(&client, post("/small")).await.0);
    }
    let (bad_hits, good_hits) = (bad.hits() - before.0, good.hits() - before.1);
    assert_eq!(
        bad_hits + good_hits,
        6,
        "a request was retried: {statuses:?}"
    );
    assert!(bad_hits > 0);
    let failed = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(failed, bad_hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_retry_policy_a_failed_response_is_not_retried() {
    let bad = Backend::start(|_| Act::Status(503)).await;
    let good = Backend::start(|_| Act::Status(200)).await;
    let (_wired, port, _dir) = start(&[
        service_at("two", &[bad.addr, good.addr]),
        route("r", "/", "two", ""),
    ])
    .await;
    let client = client();
    let mut failed = 0;
    for _ in 0..10 {
        if send(&client, get(port, "/")).await.0 == StatusCode::SERVICE_UNAVAILABLE {
            failed += 1;
        }
    }
    assert_eq!(bad.hits() + good.hits(), 10, "something was retried");
    assert_eq!(failed, bad.hits());
    assert!(failed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_budget_caps_the_attempts_against_a_dead_upstream() {
    let dead = Backend::start(|_| Act::Status(503)).await;
    let retry = "    retry: { attempts: 3, codes: [503], backoff: 1ms }\n";
    let policy = r#"apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: budget, namespace: default }
spec:
  targetRefs: [{ kind: Service, name: dead }]
  retryBudget: { percent: 20, interval: 10s, minRetryRate: { count: 1, interval: 10s } }
"#
    .to_owned();
    let (_wired, port, _dir) = start(&[
        service_at("dead", &[dead.addr]),
        route("r", "/", "dead", retry),
        policy,
    ])
    .await;
    let client = client();
    let requests = 50;
    let mut tasks = Vec::new();
    for _ in 0..requests {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            send(&client, get(port, "/")).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // Without a budget: 50 × 4 = 200 attempts. With 20% (+ at most 1 per 10 s): at most
    // 50 + 10 + 1.
    let hits = dead.hits();
    assert!(hits >= requests, "{hits}");
    assert!(
        hits <= requests + 11,
        "the budget let {} retries through",
        hits - requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_caps_parallel_requests_and_recovers() {
    let slow = Backend::start(|_| Act::Gated).await;
    let policy = r#"apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: breaker, namespace: default }
spec:
  targetRefs: [{ kind: Service, name: slow }]
  circuitBreaker: { maxParallelRequests: 4 }
"#
    .to_owned();
    let (_wired, port, _dir) = start(&[
        service_at("slow", &[slow.addr]),
        route("r", "/", "slow", ""),
        policy,
    ])
    .await;
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(
            async move { send(&client, get(port, "/")).await },
        ));
    }
    // 4 requests wait at the backend; the other 12 are refused at once, while the gate
    // is still closed: wait until the breaker counted 12 refusals (a request still on
    // its way when the gate opens would rightly pass).
    slow.wait_in_flight(4).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = _wired.admin("/metrics").await;
        let refusals = metrics
            .lines()
            .find(|l| {
                l.starts_with("gatekit_circuit_breaker_rejected_total{")
                    && l.contains("threshold=\"max-parallel-requests\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if refusals == Some(12.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refusals: {refusals:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    slow.open_gate();
    let mut refused = 0;
    let mut ok = 0;
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    for (status, headers, _) in all {
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert_eq!(headers["x-gatekit-error"], "circuit-open");
                assert!(headers.contains_key("x-gatekit-breaker"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(slow.max_in_flight.load(Ordering::SeqCst), 4);
    assert_eq!(ok, 4);
    assert_eq!(refused, 12);
    // Recovered: the breaker lets requests through again.
    let (status, _, _) = send(&client, get(port, "/")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_50_connections_per_key_and_by_default() {
    let backend = Backend::start(|_| Act::Status(200)).await;
    let policy = r#"apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: limits, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: r }]
  rateLimit:
    rules:
    - name: per-key
      clientSelectors: { headers: [x-api-key] }
      limit: { requests: 10, unit: Second }
      missingKey: { requests: 5, unit: Second }
"#
    .to_owned();
    let (_wired, port, _dir) = start(&[
        service_at("b", &[backend.addr]),
        route("r", "/", "b", ""),
        policy,
    ])
    .await;
    let started = tokio::time::Instant::now();
    let run_for = Duration::from_millis(1500);
    let counts: Arc<Mutex<HashMap<&'static str, (usize, usize)>>> = Default::default();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let counts = counts.clone();
        let key: &'static str = ["a", "b", ""][i % 3];
        tasks.push(tokio::spawn(async move {
            // One connection per task.
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http();
            while started.elapsed() < run_for {
                let mut req = get(port, "/");
                if !key.is_empty() {
                    req.headers_mut().insert("x-api-key", key.parse().unwrap());
                }
                let (status, headers, _) = send(&client, req).await;
                let mut counts = counts.lock().unwrap();
                let entry = counts.entry(key).or_default();
                match status {
                    StatusCode::OK => entry.0 += 1,
                    StatusCode::TOO_MANY_REQUESTS => {
                        entry.1 += 1;
                        assert!(headers.contains_key(http::header::RETRY_AFTER));
                        assert!(headers.contains_key("ratelimit-policy"));
                        assert!(headers.contains_key("ratelimit"));
                    }
                    other => panic!("unexpected {other}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counts = counts.lock().unwrap();
    for (key, rate) in [("a", 10.0), ("b", 10.0), ("", 5.0)] {
        let (ok, limited) = counts[key];
        // Burst (= the rate) plus the rate over the run, and one for a bucket boundary.
        let most = (rate + rate * elapsed).floor() as usize + 1;
        assert!(
            ok <= most,
            "key {key:?}: {ok} passed, at most {most} allowed"
        );
        assert!(ok >= rate as usize, "key {key:?}: only {ok} passed");
        assert!(limited > 0, "key {key:?} was never limited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_inside_the_request_timeout() {
    let hung = Backend::start(|_| Act::Gated).await;
    let extra = "    timeouts: { request: 400ms, backendRequest: 150ms }\n    retry: { attempts: 10, backoff: 1ms }\n";
    let (_wired, port, _dir) = start(&[
        service_at("hung", &[hung.addr]),
        route("r", "/", "hung", extra),
    ])
    .await;
    let client = client();
    let started = tokio::time::Instant::now();
    let (status, headers, _) = send(&client, get(port, "/")).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(headers["x-gatekit-error"], "request-timeout");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // Attempts were made within the deadline (each per-try timeout 150 ms): 2 or 3, not 11.
    let hits = hung.hits();
    assert!((2..=3).contains(&hits), "{hits} attempts");
    hung.open_gate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits_answer_413_and_503() {
    let slow = Backend::start(|_| Act::Gated).await;
    let policy = r#"apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: limits, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: r }]
  limits: { maxConcurrentRequests: 2, maxRequestBodyBytes: 1024 }
"#
    .to_owned();
    let (_wired, port, _dir) = start(&[
        service_at("slow", &[slow.addr]),
        route("r", "/", "slow", ""),
        policy,
    ])
    .await;
    let client = client();
    let big = Request::post(format!("http://127.0.0.1:{port}/"))
        .body(Full::new(Bytes::from(vec![b'x'; 4096])))
        .unwrap();
    let (status, headers, _) = send(&client, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["x-gatekit-error"], "payload-too-large");
    assert_eq!(
        slow.hits(),
        0,
        "the backend saw a request over the body limit"
    );

    let mut held = Vec::new();
    for _ in 0..2 {
        let client = client.clone();
        held.push(tokio::spawn(async move {
            send(&client, get(port, "/")).await.0
        }));
    }
    slow.wait_in_flight(2).await;
    let (status, headers, _) = send(&client, get(port, "/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-gatekit-error"], "overloaded");
    slow.open_gate();
    for h in held {
        assert_eq!(h.await.unwrap(), StatusCode::OK);
    }
}

/// The issue's test: a Service with two endpoints, default settings, 4 keep-alive
/// clients; one endpoint killed under load. With the defaults (a request that never
/// reached a backend is retried once on another endpoint; an endpoint refusing
/// connections is ejected), no request fails after the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_endpoints_under_load_fails_no_request_by_default() {
    let (after, failed) = kill_one_of_two(Settings::default()).await;
    assert!(after > 100, "only {after} requests after the kill");
    assert_eq!(
        failed, 0,
        "{failed} of {after} requests failed after the kill"
    );
}

/// The same with both defaults switched off: requests the balancer sends to the dead
/// endpoint fail (this is what the defaults are for, and what the test above detects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_defaults_off_killing_an_endpoint_fails_requests() {
    let mut settings = Settings::default();
    settings.traffic_defaults.retry_unsent = false;
    settings.traffic_defaults.eject_refusing_endpoints = false;
    let (after, failed) = kill_one_of_two(settings).await;
    assert!(failed > after / 10, "{failed} of {after} failed");
}

/// Runs the kill: (requests sent after it, of which failed).
async fn kill_one_of_two(settings: Settings) -> (usize, usize) {
    let a = Backend::start(|_| Act::Status(200)).await;
    let b = Backend::start(|_| Act::Status(200)).await;
    let (_wired, port, _dir) = start_with(
        &[
            service_at("two", &[a.addr, b.addr]),
            route("r", "/", "two", ""),
        ],
        settings,
    )
    .await;
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let after = Arc::new(AtomicUsize::new(0));
    let failed_after = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (killed, stop, after, failed_after) = (
            killed.clone(),
            stop.clone(),
            after.clone(),
            failed_after.clone(),
        );
        clients.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::SeqCst) {
                let sent_after_kill = killed.load(Ordering::SeqCst);
                let status = client.request(get(port, "/")).await.map(|r| r.status());
                if sent_after_kill {
                    after.fetch_add(1, Ordering::SeqCst);
                    if status.ok() != Some(StatusCode::OK) {
                        failed_after.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    // Load on both, then kill one.
    while a.hits() < 50 || b.hits() < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill();
    killed.store(true, Ordering::SeqCst);
    // Two seconds of load after the kill (a bound on the test, not a synchronisation).
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = tx.send(());
    });
    let _ = rx.await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    (
        after.load(Ordering::SeqCst),
        failed_after.load(Ordering::SeqCst),
    )
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits until the gateway has counted one more reload than `before`, `ok` or not;
/// returns whether the last one was accepted.
async fn next_reload(wired: &Wired, before: (f64, f64)) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = wired.admin("/metrics").await;
        let ok = metric(&text, r#"gatekit_reloads_total{result="ok"}"#).unwrap_or(0.0);
        let failed = metric(&text, r#"gatekit_reloads_total{result="failed"}"#).unwrap_or(0.0);
        if ok + failed > before.0 + before.1 {
            return ok > before.0;
        }
        assert!(tokio::time::Instant::now() < deadline, "no reload in 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn reload_counts(wired: &Wired) -> (f64, f64) {
    let (_, text) = wired.admin("/metrics").await;
    (
        metric(&text, r#"gatekit_reloads_total{result="ok"}"#).unwrap_or(0.0),
        metric(&text, r#"gatekit_reloads_total{result="failed"}"#).unwrap_or(0.0),
    )
}

const MINUTE_LIMIT: &str = r#"apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: per-minute, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: r }]
  rateLimit:
    rules:
    - limit: { requests: 3, unit: Minute }
"#;

/// A limit's buckets survive a reload that leaves it unchanged; an invalid policy is
/// refused as a whole and the last good one (with its buckets) keeps serving; the
/// effective policy and the limiter's counters are visible on the admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_survive_reloads_and_an_invalid_policy_never_replaces_a_good_one() {
    let backend = Backend::start(|_| Act::Status(200)).await;
    let (wired, port, dir) = start(&[
        service_at("b", &[backend.addr]),
        route("r", "/", "b", ""),
        MINUTE_LIMIT.to_owned(),
    ])
    .await;
    let client = client();
    for _ in 0..3 {
        assert_eq!(send(&client, get(port, "/")).await.0, StatusCode::OK);
    }
    assert_eq!(
        send(&client, get(port, "/")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    // An unrelated change: a new route in another file. The limit keeps its buckets.
    let before = reload_counts(&wired).await;
    std::fs::write(
        dir.path().join("other.yaml"),
        route("other", "/other", "b", ""),
    )
    .unwrap();
    assert!(
        next_reload(&wired, before).await,
        "the new route was refused"
    );
    assert_eq!(send(&client, get(port, "/other")).await.0, StatusCode::OK);
    assert_eq!(
        send(&client, get(port, "/")).await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "the reload reset the limit"
    );

    // An invalid policy (0 requests) in a new file: the whole change is refused and the
    // good limit keeps applying.
    let before = reload_counts(&wired).await;
    std::fs::write(
        dir.path().join("bad.yaml"),
        MINUTE_LIMIT
            .replace("per-minute", "broken")
            .replace("requests: 3", "requests: 0"),
    )
    .unwrap();
    assert!(
        !next_reload(&wired, before).await,
        "the invalid policy was accepted"
    );
    assert_eq!(
        send(&client, get(port, "/")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let config = wired.config().await;
    let error = config["lastReloadError"].to_string();
    assert!(error.contains("bad.yaml"), "{error}");
    assert!(error.contains("TrafficPolicy"), "{error}");
    assert!(
        error.contains("spec.rateLimit.rules[0].limit.requests"),
        "{error}"
    );

    // /config shows the effective policy of the rule, /metrics the limiter's decisions.
    let listeners = config["listeners"].to_string();
    assert!(listeners.contains("\"rateLimits\""), "{listeners}");
    assert!(listeners.contains("unsent-once (default)"), "{listeners}");
    let (_, metrics) = wired.admin("/metrics").await;
    let limited = metrics
        .lines()
        .find(|l| {
            l.starts_with("gatekit_rate_limit_requests_total{")
                && l.contains("default/r/rules[0]")
                && l.contains("result=\"limited\"")
        })
        .unwrap_or_else(|| panic!("no limiter series in\n{metrics}"));
    assert!(limited.ends_with(" 3"), "{limited}");
    // The 429s are counted under their route (backend "(none)": no backend was asked),
    // not under "(unmatched)".
    let refused = metrics
        .lines()
        .find(|l| {
            l.starts_with("gatekit_requests_total{")
                && l.contains("route=\"default/r\"")
                && l.contains("backend=\"(none)\"")
                && l.contains("status_class=\"4xx\"")
                && l.contains("error_kind=\"rate-limited\"")
        })
        .unwrap_or_else(|| panic!("no (none) series in\n{metrics}"));
    assert!(refused.ends_with(" 3"), "{refused}");
}

/// `limits.maxConnectionsPerClient` in the settings file: a client address with that many
/// open connections gets its next one closed without an answer; another address is
/// served, and a closed connection frees a place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_client_connection_limit_of_the_settings_applies() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::start(|_| Act::Status(200)).await;
    let mut settings = Settings::default();
    settings.limits.max_connections_per_client = Some(2);
    let (_wired, port, _dir) = start_with(
        &[service_at("b", &[backend.addr]), route("r", "/", "b", "")],
        settings,
    )
    .await;
    let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    async fn exchange(conn: &mut tokio::net::TcpStream, request: &[u8]) -> Vec<u8> {
        if conn.write_all(request).await.is_err() {
            return Vec::new();
        }
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        buf.truncate(n);
        buf
    }
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        exchange(&mut first, request)
            .await
            .starts_with(b"HTTP/1.1 200")
    );
    assert!(
        exchange(&mut second, request)
            .await
            .starts_with(b"HTTP/1.1 200")
    );
    // The third from 127.0.0.1 is closed at once.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(exchange(&mut third, request).await, b"");
    // Another client address is served.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other.connect(addr).await.unwrap();
    assert!(
        exchange(&mut other, request)
            .await
            .starts_with(b"HTTP/1.1 200")
    );
    // Closing one frees a place (the server sees the close before the next accept).
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
        if exchange(&mut again, request)
            .await
            .starts_with(b"HTTP/1.1 200")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Gateway API `HTTPRouteRetryBackendTimeout`: an attempt cut by the rule's
/// `timeouts.backendRequest` is retried, and the retry's answer is the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_retry_backend_timeout_retries_an_attempt_that_timed_out() {
    let seen = Arc::new(AtomicUsize::new(0));
    let backend = {
        let seen = seen.clone();
        // The first attempt hangs; the next ones answer at once.
        Backend::start(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
            0 => Act::Gated,
            _ => Act::Status(200),
        })
        .await
    };
    let extra = "    timeouts: { request: 5s, backendRequest: 150ms }\n    retry: { attempts: 2, backoff: 1ms }\n";
    let (_wired, port, _dir) = start(&[
        service_at("slow", &[backend.addr]),
        route("r", "/", "slow", extra),
    ])
    .await;
    let started = tokio::time::Instant::now();
    let (status, _, _) = send(&client(), get(port, "/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(backend.hits(), 2, "the timed-out attempt and its retry");
    backend.open_gate();
}

/// Gateway API `HTTPRouteRetryConnectionError`: with the gateway's own unsent-retry
/// default off, an HTTPRoute `retry` alone retries a refused connection, on the other
/// endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_retry_connection_error_retries_a_refused_connection() {
    let dead = gatekit_tests::closed_port().await;
    let good = Backend::start(|_| Act::Status(200)).await;
    let mut settings = Settings::default();
    settings.traffic_defaults.retry_unsent = false;
    settings.traffic_defaults.eject_refusing_endpoints = false;
    let count = |retry: &'static str| {
        let settings = settings.clone();
        let good_addr = good.addr;
        async move {
            let (_wired, port, _dir) = start_with(
                &[
                    service_at("two", &[dead, good_addr]),
                    route("r", "/", "two", retry),
                ],
                settings,
            )
            .await;
            let client = client();
            let mut ok = 0;
            for _ in 0..20 {
                if send(&client, get(port, "/")).await.0 == StatusCode::OK {
                    ok += 1;
                }
            }
            ok
        }
    };
    assert_eq!(
        count("    retry: { attempts: 2, backoff: 1ms }\n").await,
        20
    );
    // Without the retry, the balancer's turns on the dead endpoint fail.
    assert!(count("").await < 20);
}
