//! Session persistence (GEP-1619) end to end through the wired gateway (`gatekit run`'s
//! library entry) on manifest files: real echo backends on loopback say which endpoint
//! served each request (`x-backend`), the client keeps the cookie or header the gateway
//! returned. Configured inline on the HTTPRoute rule (deprecated, still read) and by an
//! `XBackendTrafficPolicy` on the Service; every balancer gatekit has; weighted splits;
//! endpoints removed or stopped.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{Wired, eventually, free_port, gateway_http, service_at, write_atomic};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const WITHIN: Duration = Duration::from_secs(10);

/// Every balancing algorithm gatekit has (BackendPolicy `loadBalancer.algorithm`).
const ALGORITHMS: [&str; 7] = [
    "round-robin",
    "weighted-round-robin",
    "least-request",
    "random",
    "peak-ewma",
    "ip-hash",
    "consistent-hash",
];

/// Where the session persistence is configured.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// The HTTPRoute rule's `sessionPersistence`.
    Inline,
    /// An `XBackendTrafficPolicy` on the Service.
    Policy,
}

/// How the token travels.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Cookie,
    Header,
}

fn session_yaml(mode: Mode) -> &'static str {
    match mode {
        Mode::Cookie => "{ sessionName: sid, type: Cookie }",
        Mode::Header => "{ sessionName: X-Session, type: Header }",
    }
}

/// A route `r` on `/` to the `backends` (name, weight), with rule-level persistence when
/// `session` is given.
fn route(backends: &[(&str, u32)], session: Option<&str>) -> String {
    let refs: Vec<String> = backends
        .iter()
        .map(|(n, w)| format!("{{ name: {n}, port: 80, weight: {w} }}"))
        .collect();
    let mut out = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{ name: r, namespace: default }}\n\
         spec:\n  parentRefs: [{{ name: gw }}]\n  rules:\n\
         \x20 - matches: [{{ path: {{ type: PathPrefix, value: / }} }}]\n\
         \x20   backendRefs: [{}]\n",
        refs.join(", ")
    );
    if let Some(s) = session {
        out.push_str(&format!("    sessionPersistence: {s}\n"));
    }
    out
}

fn x_policy(service: &str, session: &str) -> String {
    format!(
        "apiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackendTrafficPolicy\n\
         metadata: {{ name: sticky-{service}, namespace: default }}\n\
         spec:\n  targetRefs: [{{ group: \"\", kind: Service, name: {service} }}]\n\
         \x20 sessionPersistence: {session}\n"
    )
}

fn backend_policy(service: &str, algorithm: &str, extra: &str) -> String {
    let hash = if algorithm == "consistent-hash" {
        ", hashKey: { type: Header, name: x-user }"
    } else {
        ""
    };
    format!(
        "apiVersion: gatekit.io/v1alpha1\nkind: BackendPolicy\n\
         metadata: {{ name: lb-{service}, namespace: default }}\n\
         spec:\n  targetRefs: [{{ kind: Service, name: {service} }}]\n\
         \x20 loadBalancer: {{ algorithm: {algorithm}{hash} }}\n{extra}"
    )
}

struct Gw {
    wired: Wired,
    port: u16,
    dir: tempfile::TempDir,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Gw {
    async fn start(docs: &[String]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let gw = Self::text(port, docs);
        std::fs::write(dir.path().join("all.yaml"), gw).unwrap();
        let wired = Wired::start(&[dir.path().to_path_buf()]).await;
        Self {
            wired,
            port,
            dir,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn text(port: u16, docs: &[String]) -> String {
        let mut text = gateway_http(port);
        for doc in docs {
            text.push_str("---\n");
            text.push_str(doc);
        }
        text
    }

    /// Replaces the manifests (the directory provider reloads).
    fn rewrite(&self, docs: &[String]) {
        write_atomic(self.dir.path(), "all.yaml", &Self::text(self.port, docs));
    }

    /// GET / with `headers`: (status, the `x-backend` that served, response headers).
    async fn get(&self, headers: &[(&str, &str)]) -> (StatusCode, String, HeaderMap) {
        let mut req = Request::get(format!("http://127.0.0.1:{}/", self.port));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let rsp = self
            .client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let (parts, body) = rsp.into_parts();
        body.collect().await.unwrap();
        let served = parts
            .headers
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (parts.status, served, parts.headers)
    }
}

/// What the client sends back: `("cookie", "sid=...")` or `("x-session", "...")`.
fn token_of(mode: Mode, headers: &HeaderMap) -> Option<(&'static str, String)> {
    match mode {
        Mode::Cookie => {
            let c = headers.get("set-cookie")?.to_str().unwrap();
            Some(("cookie", c.split(';').next().unwrap().to_owned()))
        }
        Mode::Header => Some((
            "x-session",
            headers.get("x-session")?.to_str().unwrap().to_owned(),
        )),
    }
}

async fn backends(names: &[&'static str]) -> Vec<EchoBackend> {
    let mut out = Vec::new();
    for n in names {
        out.push(EchoBackend::start(n).await);
    }
    out
}

/// 100 requests carrying the session land on one endpoint under `algorithm`, while
/// requests without it spread (varying `x-user`, the consistent-hash key; not for
/// `ip-hash`, which sends one client to one endpoint anyway).
async fn sticks_under(algorithm: &str, place: Place, mode: Mode) {
    let eps = backends(&["a", "b", "c"]).await;
    let addrs: Vec<_> = eps.iter().map(|e| e.addr).collect();
    let session = session_yaml(mode);
    let mut docs = vec![
        service_at("web", &addrs),
        backend_policy("web", algorithm, ""),
    ];
    match place {
        Place::Inline => docs.push(route(&[("web", 1)], Some(session))),
        Place::Policy => {
            docs.push(route(&[("web", 1)], None));
            docs.push(x_policy("web", session));
        }
    }
    let gw = Gw::start(&docs).await;
    let (status, first, headers) = gw.get(&[("x-user", "u0")]).await;
    assert_eq!(status, StatusCode::OK, "{algorithm}");
    let (name, value) = token_of(mode, &headers)
        .unwrap_or_else(|| panic!("{algorithm} {place:?}: no session token in {headers:?}"));
    assert!(
        !value.contains("127.0.0.1"),
        "the token names no address: {value}"
    );
    for i in 0..100 {
        let user = format!("u{i}");
        let (status, served, _) = gw.get(&[(name, &value), ("x-user", &user)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            served, first,
            "{algorithm} {place:?} {mode:?}: request {i} with the session left its endpoint"
        );
    }
    if algorithm != "ip-hash" {
        let mut seen = HashSet::new();
        for i in 0..60 {
            let user = format!("v{i}");
            seen.insert(gw.get(&[("x-user", &user)]).await.1);
        }
        assert!(
            seen.len() > 1,
            "{algorithm}: requests without a session all went to {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_stick_under_round_robin() {
    sticks_under("round-robin", Place::Inline, Mode::Cookie).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_stick_under_least_request() {
    sticks_under("least-request", Place::Inline, Mode::Cookie).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_from_an_xbackendtrafficpolicy_stick_under_every_balancer() {
    for algorithm in ALGORITHMS {
        sticks_under(algorithm, Place::Policy, Mode::Cookie).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_sessions_stick_under_round_robin_and_least_request() {
    for algorithm in ["round-robin", "least-request"] {
        sticks_under(algorithm, Place::Inline, Mode::Header).await;
        sticks_under(algorithm, Place::Policy, Mode::Header).await;
    }
}

/// Gateway API v1.7's shape: `cookie.name` and `cookie.path` reach the `Set-Cookie` the
/// gateway issues, and the session sticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_7_xbackendtrafficpolicy_names_the_cookie_and_its_path() {
    let eps = backends(&["a", "b", "c"]).await;
    let addrs: Vec<_> = eps.iter().map(|e| e.addr).collect();
    let gw = Gw::start(&[
        service_at("web", &addrs),
        route(&[("web", 1)], None),
        x_policy(
            "web",
            "{ type: Cookie, cookie: { name: my-session, path: /api } }",
        ),
    ])
    .await;
    let (status, first, headers) = gw.get(&[]).await;
    assert_eq!(status, StatusCode::OK);
    let set = headers
        .get("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie in {headers:?}"))
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set.starts_with("my-session="), "{set}");
    assert!(set.contains("; Path=/api"), "{set}");
    assert!(!set.contains("Max-Age"), "a session cookie: {set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    for i in 0..30 {
        let (status, served, _) = gw.get(&[("cookie", &cookie)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            served, first,
            "request {i} with the session left its endpoint"
        );
    }
    // Without the cookie, requests spread over the endpoints.
    let mut seen = HashSet::new();
    for _ in 0..30 {
        seen.insert(gw.get(&[]).await.1);
    }
    assert!(seen.len() > 1, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_sticks_to_its_service_and_endpoint_in_a_weighted_split() {
    let eps = backends(&["a1", "a2", "b1", "b2"]).await;
    let gw = Gw::start(&[
        service_at("sa", &[eps[0].addr, eps[1].addr]),
        service_at("sb", &[eps[2].addr, eps[3].addr]),
        route(&[("sa", 50), ("sb", 50)], Some(session_yaml(Mode::Cookie))),
    ])
    .await;
    let mut firsts = HashSet::new();
    // Several sessions, so both Services get some; each sticks to its own.
    for _ in 0..8 {
        let (_, first, headers) = gw.get(&[]).await;
        firsts.insert(first.chars().next().unwrap());
        let (name, value) = token_of(Mode::Cookie, &headers).unwrap();
        for _ in 0..25 {
            let (status, served, headers) = gw.get(&[(name, &value)]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(served, first, "the session left its Service or endpoint");
            assert!(headers.get("set-cookie").is_none(), "an unchanged session");
        }
    }
    // Without a session the split is honoured (8 draws of a fair coin: 1/128 that one
    // side gets none; then the loop below still sees both).
    let mut seen: HashSet<char> = firsts;
    for _ in 0..40 {
        seen.insert(gw.get(&[]).await.1.chars().next().unwrap());
    }
    assert_eq!(seen.len(), 2, "both Services serve new sessions: {seen:?}");
    let dump = gw.wired.config().await.to_string();
    assert!(
        dump.contains("\"sessionPersistence\""),
        "/config shows it: {dump}"
    );
    assert!(dump.contains("\"name\":\"sid\""), "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_endpoint_moves_the_session_without_an_error() {
    for (place, mode) in [(Place::Inline, Mode::Cookie), (Place::Policy, Mode::Header)] {
        let eps = backends(&["a", "b"]).await;
        let session = session_yaml(mode);
        let docs = |addrs: &[std::net::SocketAddr]| {
            let mut docs = vec![service_at("web", addrs)];
            match place {
                Place::Inline => docs.push(route(&[("web", 1)], Some(session))),
                Place::Policy => {
                    docs.push(route(&[("web", 1)], None));
                    docs.push(x_policy("web", session));
                }
            }
            docs
        };
        let gw = Gw::start(&docs(&[eps[0].addr, eps[1].addr])).await;
        let (_, first, headers) = gw.get(&[]).await;
        let (name, old) = token_of(mode, &headers).unwrap();
        let other = eps.iter().find(|e| e.name != first).unwrap();
        gw.rewrite(&docs(&[other.addr]));
        // Every request meanwhile succeeds; once the endpoint is gone the session moves.
        let moved = std::sync::Mutex::new(None);
        eventually(
            WITHIN,
            "the session moves off the removed endpoint",
            || async {
                let (status, served, headers) = gw.get(&[(name, &old)]).await;
                assert_eq!(status, StatusCode::OK, "{place:?} {mode:?}");
                if served == first {
                    return false;
                }
                assert_eq!(served, other.name);
                *moved.lock().unwrap() = Some(headers);
                true
            },
        )
        .await;
        let headers = moved.lock().unwrap().take().unwrap();
        let (_, new) = token_of(mode, &headers).expect("a moved session gets a new token");
        assert_ne!(new, old);
        for _ in 0..20 {
            let (status, served, _) = gw.get(&[(name, &new)]).await;
            assert_eq!((status, served.as_str()), (StatusCode::OK, other.name));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_endpoint_moves_the_session() {
    let mut eps = backends(&["a", "b"]).await;
    let health = "  healthCheck: { active: { type: tcp, interval: 10ms, timeout: 200ms } }\n";
    let gw = Gw::start(&[
        service_at("web", &[eps[0].addr, eps[1].addr]),
        backend_policy("web", "least-request", health),
        route(&[("web", 1)], None),
        x_policy("web", session_yaml(Mode::Cookie)),
    ])
    .await;
    let (_, first, headers) = gw.get(&[]).await;
    let (name, old) = token_of(Mode::Cookie, &headers).unwrap();
    let at = eps.iter().position(|e| e.name == first).unwrap();
    // The session's endpoint stops: its port refuses connections, the health check
    // marks it down. The session moves; no request fails.
    let gone = eps.remove(at);
    let gone_addr = gone.addr.to_string();
    drop(gone);
    eventually(
        WITHIN,
        "the health check marks the endpoint down",
        || async {
            let dump = gw.wired.config().await;
            dump["upstreams"]["default/web:80"]["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["address"] == gone_addr.as_str() && e["healthy"] == false)
        },
    )
    .await;
    let other = eps[0].name;
    let (status, served, headers) = gw.get(&[(name, &old)]).await;
    assert_eq!((status, served.as_str()), (StatusCode::OK, other));
    let (_, new) = token_of(Mode::Cookie, &headers).expect("a moved session gets a new cookie");
    for _ in 0..20 {
        let (status, served, _) = gw.get(&[(name, &new)]).await;
        assert_eq!((status, served.as_str()), (StatusCode::OK, other));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_expired_cookie_starts_a_new_session() {
    let eps = backends(&["a", "b"]).await;
    let gw = Gw::start(&[
        service_at("web", &[eps[0].addr, eps[1].addr]),
        route(
            &[("web", 1)],
            Some(
                "{ sessionName: sid, absoluteTimeout: 2s, cookieConfig: { lifetimeType: Permanent } }",
            ),
        ),
    ])
    .await;
    let (_, _, headers) = gw.get(&[]).await;
    let set = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("Max-Age=2"), "a permanent cookie: {set}");
    assert!(set.contains("Path=/") && set.contains("HttpOnly"), "{set}");
    for bad in ["sid=garbage", "sid=1", "sid="] {
        let (status, _, headers) = gw.get(&[("cookie", bad)]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.get("set-cookie").is_some(), "{bad}: a new session");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let (_, _, headers) = gw.get(&[("cookie", &cookie)]).await;
    assert!(headers.get("set-cookie").is_none(), "still live");
    // The absolute timeout is what is under test: wait for it. Tokens count whole
    // seconds, so 2 s leaves a second of margin for "still live" above, and 3.1 s of
    // sleep is past it whatever the second the session began in.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, _, headers) = gw.get(&[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers.get("set-cookie").is_some(),
        "expired: a new session"
    );
}

/// From a cluster: the XBackendTrafficPolicy is watched like the other kinds, pins
/// sessions, and its status is written back by the elected replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xbackendtrafficpolicy_from_a_cluster_pins_sessions_and_gets_its_status() {
    use gatekit_bin::Settings;
    use gatekit_k8s::provider::{ProviderSettings, ReplicaIdentity};
    use gatekit_k8s::types::XBackendTrafficPolicy;
    use gatekit_k8s::{ClusterSpec, Role};
    use gatekit_k8s_fake::FakeApiServer;
    use serde_json::json;

    let eps = backends(&["a", "b", "c"]).await;
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
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }));
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": eps[0].addr.port(), "protocol": "TCP"}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
    });
    // One slice per backend: each listens on its own port.
    let slices = eps
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut s = slice.clone();
            s["metadata"]["name"] = json!(format!("web-{i}"));
            s["ports"][0]["port"] = json!(e.addr.port());
            serde_json::from_value(s).unwrap()
        })
        .collect();
    fake.set_service_endpoints("default", "web", slices);
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
            "backendRefs": [{"name": "web", "port": 80}],
        }, {
            // Gateway API v1.7's shape inline: read by the watcher too.
            "matches": [{"path": {"type": "PathPrefix", "value": "/v17"}}],
            "backendRefs": [{"name": "web", "port": 80}],
            "sessionPersistence": {"type": "Cookie", "cookie": {"name": "rule-cookie"}},
        }]},
    }));
    // Gateway API v1.7's shape (v1.6's is read the same way; see the manifest tests).
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.x-k8s.io/v1alpha1", "kind": "XBackendTrafficPolicy",
        "metadata": {"name": "sticky", "namespace": "default"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                 "sessionPersistence": {"type": "Cookie", "cookie": {"name": "sid", "path": "/"}}},
    }));
    let mut cluster = ClusterSpec::new("local", fake.url());
    cluster.ca_data = fake.ca_pem();
    cluster.roles = vec![Role::Config, Role::Endpoints];
    let mut kubernetes = ProviderSettings::new(vec![cluster]);
    kubernetes.backoff_min = Some(Duration::from_millis(20));
    kubernetes.backoff_max = Some(Duration::from_millis(200));
    kubernetes.replica = Some(ReplicaIdentity::new("gw-0", "gatekit"));
    kubernetes.lease_duration = Some(Duration::from_secs(3));
    let mut settings = Settings::default();
    settings.kubernetes = Some(kubernetes);
    let wired = Wired::start_kube(settings).await;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let get = |cookie: Option<String>| {
        let client = client.clone();
        async move {
            let mut req = Request::get(format!("http://127.0.0.1:{port}/"));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let rsp = client
                .request(req.body(Full::new(Bytes::new())).unwrap())
                .await
                .ok()?;
            let served = rsp.headers().get("x-backend")?.to_str().ok()?.to_owned();
            let set = rsp
                .headers()
                .get("set-cookie")
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
            Some((served, set))
        }
    };
    let first = std::sync::Mutex::new(None);
    eventually(
        WITHIN,
        "a session cookie from the cluster's policy",
        || async {
            match get(None).await {
                Some((served, Some(cookie))) => {
                    *first.lock().unwrap() = Some((served, cookie));
                    true
                }
                _ => false,
            }
        },
    )
    .await;
    let (served, cookie) = first.lock().unwrap().take().unwrap();
    assert!(cookie.starts_with("sid="), "{cookie}");
    for _ in 0..50 {
        let (again, _) = get(Some(cookie.clone())).await.unwrap();
        assert_eq!(again, served);
    }
    let rsp = client
        .request(
            Request::get(format!("http://127.0.0.1:{port}/v17"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let set = rsp.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        set.starts_with("rule-cookie="),
        "the rule's v1.7 cookie: {set}"
    );
    eventually(WITHIN, "the policy's status written back", || async {
        fake.get::<XBackendTrafficPolicy>(Some("default"), "sticky")
            .and_then(|p| serde_json::to_value(p).ok())
            .is_some_and(|p| {
                p["status"]["ancestors"][0]["conditions"][0]["reason"] == "Accepted"
                    && p["status"]["ancestors"][0]["ancestorRef"]["kind"] == "Service"
            })
    })
    .await;
    drop(wired);
}
