//! Envoy Gateway's BackendTrafficPolicy end to end through the wired gateway
//! (`gatekit run`'s library entry): the course module's examples (a per-API-key rate
//! limit with a default limit, a circuit breaker, a retry, a request timeout) applied
//! from manifest files and from the in-process API server, each checked against real
//! hyper backends on loopback whose behaviour the test scripts. Every count asserted
//! is counted by a backend or the client; nothing waits on a sleep.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gatekit_bin::Settings;
use gatekit_k8s::provider::{ProviderSettings, ReplicaIdentity};
use gatekit_k8s::types::BackendTrafficPolicy;
use gatekit_k8s::{ClusterSpec, Role};
use gatekit_k8s_fake::FakeApiServer;
use gatekit_tests::wired::{Wired, eventually, free_port, gateway_http, route};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const WITHIN: Duration = Duration::from_secs(10);

// === Scripted backends ===

/// What a backend does with its `n`th request (from 0).
#[derive(Clone, Copy, Debug)]
enum Act {
    /// Answers this status at once.
    Status(u16),
    /// Holds the request until the backend is dropped: never answers.
    Hold,
}

/// A real hyper HTTP/1.1 server on 127.0.0.1 doing what its script says, counting the
/// requests it received and publishing how many are in flight.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    in_flight: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl Backend {
    async fn start(script: impl Fn(usize) -> Act + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let (in_flight_tx, in_flight) = watch::channel(0usize);
        let (in_flight_tx, script) = (Arc::new(in_flight_tx), Arc::new(script));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((io, _)) = listener.accept().await else {
                    return;
                };
                let (hits, in_flight_tx, script) =
                    (counter.clone(), in_flight_tx.clone(), script.clone());
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let n = hits.fetch_add(1, Ordering::SeqCst);
                    let act = script(n);
                    let in_flight_tx = in_flight_tx.clone();
                    async move {
                        in_flight_tx.send_modify(|v| *v += 1);
                        let status = match act {
                            Act::Status(s) => s,
                            Act::Hold => std::future::pending().await,
                        };
                        in_flight_tx.send_modify(|v| *v -= 1);
                        let rsp = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap();
                        Ok::<_, Infallible>(rsp)
                    }
                });
                // Aborted with the accept loop (the set is dropped with it).
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            hits,
            in_flight,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests are in flight at this backend.
    async fn wait_in_flight(&self, n: usize) {
        let mut rx = self.in_flight.clone();
        tokio::time::timeout(WITHIN, rx.wait_for(|v| *v >= n))
            .await
            .expect("requests never reached the backend")
            .unwrap();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === The gateway from manifest files ===

/// A Service `name` (port 80) with one EndpointSlice pointing at `addr`.
fn service(name: &str, addr: SocketAddr) -> String {
    gatekit_tests::wired::service(name, addr)
}

/// A BackendTrafficPolicy `name` on HTTPRoute `r`, its spec body being `spec` (YAML
/// lines indented by two spaces).
fn policy(name: &str, spec: &str) -> String {
    format!(
        r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: {name}, namespace: default }}
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: r
{spec}"#
    )
}

/// The course module's rate limit: 3 a minute per `x-api-key` value, and a default of
/// 10 a minute for all traffic of the route.
const RATE_LIMIT: &str = r#"  rateLimit:
    type: Local
    local:
      rules:
      - clientSelectors:
        - headers:
          - name: x-api-key
            type: Distinct
        limit: { requests: 3, unit: Minute }
      - limit: { requests: 10, unit: Minute }
"#;

/// The gateway serving a Gateway on a free port, a Service `b` on `backend`, route `r`
/// (`/`) to it, and `docs`, all in one manifest file.
async fn start(backend: SocketAddr, docs: &[String]) -> (Wired, u16, tempfile::TempDir) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut text = gateway_http(port);
    for doc in [service("b", backend), route("r", "/", "b")]
        .iter()
        .chain(docs)
    {
        text.push_str("---\n");
        text.push_str(doc);
    }
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    ready(&wired).await;
    (wired, port, dir)
}

async fn ready(wired: &Wired) {
    eventually(WITHIN, "/readyz", || async {
        wired.admin("/readyz").await.0 == StatusCode::OK
    })
    .await;
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A GET of `/` with `x-api-key: key` (none when empty): (status, headers).
async fn get(client: &HttpClient, port: u16, key: &str) -> (StatusCode, HeaderMap) {
    let mut req = Request::get(format!("http://127.0.0.1:{port}/"));
    if !key.is_empty() {
        req = req.header("x-api-key", key);
    }
    let rsp = tokio::time::timeout(WITHIN, client.request(req.body(Full::default()).unwrap()))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let (parts, body) = rsp.into_parts();
    body.collect().await.unwrap();
    (parts.status, parts.headers)
}

/// Sends `n` requests with `key` one after the other; their statuses.
async fn statuses(client: &HttpClient, port: u16, key: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(client, port, key).await.0.as_u16());
    }
    out
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        .to_str()
        .unwrap()
}

/// A 429 carries `Retry-After` and the draft RateLimit headers of the refusing limit.
fn assert_limited_by(headers: &HeaderMap, policy: &str) {
    let retry_after: u64 = header(headers, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let declared = header(headers, "ratelimit-policy");
    assert!(declared.contains(policy), "RateLimit-Policy {declared}");
    let remaining = header(headers, "ratelimit");
    assert!(remaining.contains(";r=0;"), "RateLimit {remaining}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_key_rate_limit_and_a_default_limit_from_a_file() {
    let backend = Backend::start(|_| Act::Status(200)).await;
    let (_wired, port, _dir) = start(backend.addr, &[policy("course", RATE_LIMIT)]).await;
    let client = client();

    // Key a: its own 3, then refused by its rule (which consumes nothing elsewhere).
    assert_eq!(statuses(&client, port, "a", 3).await, [200; 3]);
    let (status, headers) = get(&client, port, "a").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_limited_by(&headers, r#""default/course/0";q=3;w=60"#);
    // Key b has its own bucket.
    assert_eq!(statuses(&client, port, "b", 4).await, [200, 200, 200, 429]);
    // Without the key only the default limit applies: 10 a minute for the route, of
    // which the 6 keyed requests allowed took 6 (refused requests took none).
    assert_eq!(statuses(&client, port, "", 4).await, [200; 4]);
    let (status, headers) = get(&client, port, "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_limited_by(&headers, r#""default/course/1";q=10;w=60"#);
    // A fresh key still has its own 3, but the default limit is spent: refused by it.
    let (status, headers) = get(&client, port, "c").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_limited_by(&headers, r#""default/course/1";q=10;w=60"#);
    assert_eq!(backend.hits(), 10, "every allowed request, and only those");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_refuses_a_second_parallel_request() {
    let held = Backend::start(|_| Act::Hold).await;
    let breaker = "  circuitBreaker: { maxParallelRequests: 1, maxPendingRequests: 0 }\n";
    let (_wired, port, _dir) = start(held.addr, &[policy("breaker", breaker)]).await;
    let client = client();

    let first = {
        let client = client.clone();
        tokio::spawn(async move {
            let req = Request::get(format!("http://127.0.0.1:{port}/"))
                .body(Full::default())
                .unwrap();
            client.request(req).await
        })
    };
    held.wait_in_flight(1).await;
    let started = tokio::time::Instant::now();
    let (status, headers) = get(&client, port, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&headers, "x-gatekit-error"), "circuit-open");
    assert!(!header(&headers, "x-gatekit-breaker").is_empty());
    assert_eq!(
        header(&headers, "x-gatekit-breaker-threshold"),
        "max-parallel-requests",
        "no queue: refused by the parallel limit"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "not at once");
    assert_eq!(
        held.hits(),
        1,
        "the refused request never reached the backend"
    );
    assert!(!first.is_finished(), "the first request is still held");
    first.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_5xx_turns_two_failures_into_a_success() {
    let flaky = Backend::start(|n| Act::Status(if n < 2 { 503 } else { 200 })).await;
    let retry = "  retry:\n    numRetries: 2\n    retryOn: { triggers: [5xx] }\n    \
                 perRetry: { backOff: { baseInterval: 1ms, maxInterval: 10ms } }\n";
    let (_wired, port, _dir) = start(flaky.addr, &[policy("retry", retry)]).await;
    let client = client();

    let (status, _) = get(&client, port, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(flaky.hits(), 3, "one attempt and two retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_num_retries() {
    let down = Backend::start(|_| Act::Status(503)).await;
    let retry = "  retry:\n    numRetries: 2\n    retryOn: { httpStatusCodes: [503] }\n    \
                 perRetry: { backOff: { baseInterval: 1ms, maxInterval: 10ms } }\n";
    let (_wired, port, _dir) = start(down.addr, &[policy("retry", retry)]).await;
    let client = client();

    let (status, _) = get(&client, port, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.hits(), 3, "one attempt and two retries, no more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_timeout_answers_504_in_time() {
    let silent = Backend::start(|_| Act::Hold).await;
    let timeout = "  timeout:\n    http: { requestTimeout: 200ms }\n";
    let (_wired, port, _dir) = start(silent.addr, &[policy("timeout", timeout)]).await;
    let client = client();

    let started = tokio::time::Instant::now();
    let (status, headers) = get(&client, port, "").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(header(&headers, "x-gatekit-error"), "request-timeout");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(silent.hits(), 1);
}

// === The gateway from the in-process API server ===

/// Creates the BackendTrafficPolicy of `yaml` in the fake, read by gatekit's own manifest
/// loader (the same text as the file tests).
fn apply_policy(fake: &FakeApiServer, yaml: &str) {
    let (set, _) = gatekit_k8s::ResourceSet::from_documents([("policy.yaml", yaml)]).unwrap();
    fake.apply(&set.backend_traffic_policies[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_rate_limit_from_the_api_server_selected_by_label_is_served_and_accepted() {
    let backend = Backend::start(|_| Act::Status(200)).await;
    let fake = FakeApiServer::start().await;
    let port = free_port();
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default"},
        "spec": {"gatewayClassName": "gatekit",
                 "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]},
    }));
    fake.apply_json(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "b", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }));
    fake.set_service_endpoints(
        "default",
        "b",
        vec![
            serde_json::from_value(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "b-1", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "b"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": backend.addr.port(), "protocol": "TCP"}],
                "endpoints": [{"addresses": [backend.addr.ip().to_string()],
                               "conditions": {"ready": true}}],
            }))
            .unwrap(),
        ],
    );
    let route = |name: &str, path: &str| {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"limits": if name == "r" { "course" } else { "none" }}},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                "backendRefs": [{"name": "b", "port": 80}],
            }]},
        })
    };
    // `r` carries the policy, selected by its label (kept from the API server) rather
    // than named; `probe` (no policy) tells when the configuration is served without
    // spending the limit.
    fake.apply_json(route("r", "/"));
    fake.apply_json(route("probe", "/probe"));
    let selecting = policy("course", RATE_LIMIT).replace(
        "  targetRefs:\n  - group: gateway.networking.k8s.io\n    kind: HTTPRoute\n    name: r\n",
        "  targetSelectors:\n  - kind: HTTPRoute\n    matchLabels: { limits: course }\n",
    );
    assert!(selecting.contains("targetSelectors"), "{selecting}");
    apply_policy(&fake, &selecting);

    let mut cluster = ClusterSpec::new("local", fake.url());
    cluster.ca_data = fake.ca_pem();
    cluster.roles = vec![Role::Config, Role::Endpoints];
    let mut kubernetes = ProviderSettings::new(vec![cluster]);
    kubernetes.backoff_min = Some(Duration::from_millis(20));
    kubernetes.backoff_max = Some(Duration::from_millis(200));
    // A replica identity: it registers, is elected and writes statuses back.
    kubernetes.replica = Some(ReplicaIdentity::new("gw-0", "gatekit"));
    kubernetes.lease_duration = Some(Duration::from_secs(3));
    let mut settings = Settings::default();
    settings.kubernetes = Some(kubernetes);
    let wired = Wired::start_kube(settings).await;
    ready(&wired).await;
    let client = client();
    eventually(WITHIN, "the probe route served", || async {
        let req = Request::get(format!("http://127.0.0.1:{port}/probe"))
            .body(Full::default())
            .unwrap();
        client
            .request(req)
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    let probes = backend.hits();

    assert_eq!(statuses(&client, port, "a", 4).await, [200, 200, 200, 429]);
    let (status, headers) = get(&client, port, "a").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_limited_by(&headers, r#""default/course/0";q=3;w=60"#);
    assert_eq!(
        statuses(&client, port, "", 8).await,
        [200, 200, 200, 200, 200, 200, 200, 429]
    );
    assert_eq!(backend.hits() - probes, 10);

    // The status written back: gatekit's ancestor entry for the route's Gateway (where
    // Envoy Gateway reports a route target), Accepted.
    eventually(WITHIN, "the policy's status written back", || async {
        fake.get::<BackendTrafficPolicy>(Some("default"), "course")
            .and_then(|p| serde_json::to_value(p).ok())
            .is_some_and(|p| !p["status"]["ancestors"].is_null())
    })
    .await;
    let status = serde_json::to_value(
        fake.get::<BackendTrafficPolicy>(Some("default"), "course")
            .unwrap(),
    )
    .unwrap()["status"]
        .clone();
    let ancestors = status["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 1, "{status}");
    let own = &ancestors[0];
    assert_eq!(own["controllerName"], "gatekit.io/gateway-controller");
    assert_eq!(
        own["ancestorRef"],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
               "namespace": "default", "name": "gw"})
    );
    let accepted = own["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap();
    assert_eq!(accepted["status"], "True", "{status}");
    assert_eq!(accepted["reason"], "Accepted");
}

/// Requests allowed out of 3 to each of two routes of the Gateway, under a
/// Gateway-targeted limit of 4 a minute, `shared` or not.
async fn allowed_across_two_routes(shared: bool) -> usize {
    let backend = Backend::start(|_| Act::Status(200)).await;
    let gateway_policy = format!(
        r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: gw-limit, namespace: default }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }}]
  rateLimit:
    type: Local
    local:
      rules:
      - limit: {{ requests: 4, unit: Minute }}
        shared: {shared}
"#
    );
    let (_wired, port, _dir) =
        start(backend.addr, &[route("r2", "/two", "b"), gateway_policy]).await;
    let client = client();
    let mut ok = 0;
    for path in ["/", "/two", "/", "/two", "/", "/two"] {
        let req = Request::get(format!("http://127.0.0.1:{port}{path}"))
            .body(Full::default())
            .unwrap();
        let rsp = tokio::time::timeout(WITHIN, client.request(req))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        match rsp.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{path}: {other}"),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_rule_is_one_budget_across_the_policys_routes() {
    // Envoy Gateway: a Gateway's limit applies per route unless the rule is shared.
    assert_eq!(
        allowed_across_two_routes(false).await,
        6,
        "3 per route, under 4 each"
    );
    assert_eq!(
        allowed_across_two_routes(true).await,
        4,
        "one budget of 4 for both"
    );
}
