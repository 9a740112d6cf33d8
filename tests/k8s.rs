//! The gateway served from Kubernetes API servers: the real kube-rs client and watchers
//! against the in-process API server of `gatekit-k8s-fake` (real list/watch protocol:
//! resourceVersions, bookmarks, 410 Gone), real echo backends, real sockets.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_bin::{DrainOutcome, Settings};
use gatekit_k8s::provider::{ProviderSettings, Readiness};
use gatekit_k8s::{ClusterSpec, Role};
use gatekit_k8s_fake::FakeApiServer;
use gatekit_tests::wired::{Wired, eventually, free_port};
use gatekit_tests::{EchoBackend, TestClient};
use http::StatusCode;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(10);

fn cluster(fake: &FakeApiServer, name: &str, roles: &[Role]) -> ClusterSpec {
    let mut spec = ClusterSpec::new(name, fake.url());
    spec.ca_data = fake.ca_pem();
    spec.roles = roles.to_vec();
    spec
}

fn settings(clusters: Vec<ClusterSpec>) -> Settings {
    let mut kubernetes = ProviderSettings::new(clusters);
    kubernetes.probe_interval = Some(Duration::from_millis(100));
    kubernetes.backoff_min = Some(Duration::from_millis(20));
    kubernetes.backoff_max = Some(Duration::from_millis(200));
    let mut settings = Settings::default();
    settings.kubernetes = Some(kubernetes);
    settings
}

fn gateway(port: u16) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "infra"},
        "spec": {"gatewayClassName": "gatekit", "listeners": [{
            "name": "http", "port": port, "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "All"}}
        }]}
    })
}

/// A route in `ns` sending `path` to Service `backend_ns/backend:80`.
fn route(ns: &str, name: &str, path: &str, backend_ns: &str, backend: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "gw", "namespace": "infra"}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                "backendRefs": [{"name": backend, "namespace": backend_ns, "port": 80}]
            }]
        }
    })
}

fn service(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    })
}

fn grant(ns: &str, from_ns: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": format!("from-{from_ns}"), "namespace": ns},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": from_ns}],
            "to": [{"group": "", "kind": "Service"}]
        }
    })
}

#[derive(Clone, Copy)]
enum State {
    Ready,
    Terminating,
}

/// One slice per endpoint (echo backends listen on different ports of 127.0.0.1, and a
/// slice has one port list).
fn slices(ns: &str, svc: &str, endpoints: &[(&str, SocketAddr, State)]) -> Vec<EndpointSlice> {
    endpoints
        .iter()
        .map(|(id, addr, state)| {
            let (ready, serving, terminating) = match state {
                State::Ready => (true, true, false),
                State::Terminating => (false, true, true),
            };
            serde_json::from_value(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{svc}-{id}"), "namespace": ns,
                    "labels": {"kubernetes.io/service-name": svc}
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": addr.port(), "protocol": "TCP"}],
                "endpoints": [{
                    "addresses": [addr.ip().to_string()],
                    "conditions": {"ready": ready, "serving": serving, "terminating": terminating}
                }]
            }))
            .unwrap()
        })
        .collect()
}

/// A config+endpoints cluster `local` (Gateway on `port`, route `/cart` to
/// `shop/cart`) and an endpoints-only cluster `remote` that also has `shop/cart`, with
/// settings preferring `local`. The remote's spec is `remote_spec` (credentials).
fn two_clusters(
    port: u16,
    local: &FakeApiServer,
    remote: &FakeApiServer,
    remote_spec: ClusterSpec,
) -> Settings {
    local.apply_json(gateway(port));
    local.apply_json(service("shop", "cart"));
    local.apply_json(route("shop", "cart", "/cart", "shop", "cart"));
    remote.apply_json(service("shop", "cart"));
    let mut s = settings(vec![
        cluster(local, "local", &[Role::Config, Role::Endpoints]),
        remote_spec,
    ]);
    s.kubernetes.as_mut().unwrap().local_cluster = Some("local".to_owned());
    s
}

/// Publishes `shop/cart`'s endpoints in `fake`.
fn set_cart(fake: &FakeApiServer, endpoints: &[(&str, SocketAddr, State)]) {
    fake.set_service_endpoints("shop", "cart", slices("shop", "cart", endpoints));
}

/// Waits until the gateway serves `n` endpoints for `shop/cart:80`.
async fn cart_endpoints(wired: &Wired, n: usize, what: &str) {
    eventually(WITHIN, what, || async {
        wired.config().await["upstreams"]["shop/cart:80"]["endpoints"]
            .as_array()
            .is_some_and(|e| e.len() == n)
    })
    .await;
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn backend_of(client: &TestClient, url: &str) -> (StatusCode, Option<String>) {
    let rsp = client.get(url).await;
    (rsp.status, rsp.header("x-backend").map(str::to_owned))
}

/// Waits until `url` is answered by `backend` (or, with `None`, with `status`).
async fn until(client: &TestClient, url: &str, status: StatusCode, backend: Option<&str>) {
    eventually(
        WITHIN,
        &format!("{url} -> {status} {backend:?}"),
        || async {
            let (s, b) = backend_of(client, url).await;
            s == status && b.as_deref() == backend
        },
    )
    .await;
}

async fn ready(wired: &Wired) {
    eventually(WITHIN, "/readyz", || async {
        wired.admin("/readyz").await.0 == StatusCode::OK
    })
    .await;
}

/// A gateway on one fake cluster with a route to `shop/cart`.
async fn one_cluster(port: u16) -> (FakeApiServer, Wired) {
    let fake = FakeApiServer::start().await;
    fake.apply_json(gateway(port));
    fake.apply_json(service("shop", "cart"));
    fake.apply_json(route("shop", "cart", "/cart", "shop", "cart"));
    let wired = Wired::start_kube(settings(vec![cluster(
        &fake,
        "local",
        &[Role::Config, Role::Endpoints],
    )]))
    .await;
    ready(&wired).await;
    (fake, wired)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_slices_without_retranslating() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let port = free_port();
    let (fake, wired) = one_cluster(port).await;
    let client = TestClient::new();
    let url = format!("http://127.0.0.1:{port}/cart");
    // The Service exists but has no endpoints: 503, as the spec says.
    let (status, _) = backend_of(&client, &url).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let generation = wired.config().await["generation"].clone();

    // Scale 0 -> 1 -> 2 -> 1 -> 0.
    set_cart(&fake, &[("a", a.addr, State::Ready)]);
    until(&client, &url, StatusCode::OK, Some("a")).await;
    set_cart(
        &fake,
        &[("a", a.addr, State::Ready), ("b", b.addr, State::Ready)],
    );
    cart_endpoints(&wired, 2, "both endpoints served").await;
    let before = (a.hits(), b.hits());
    for _ in 0..20 {
        assert_eq!(backend_of(&client, &url).await.0, StatusCode::OK);
    }
    assert_eq!(a.hits() - before.0, 10, "round robin over both");
    assert_eq!(b.hits() - before.1, 10);
    set_cart(&fake, &[("b", b.addr, State::Ready)]);
    cart_endpoints(&wired, 1, "a removed").await;
    let a_hits = a.hits();
    for _ in 0..10 {
        assert_eq!(
            backend_of(&client, &url).await,
            (StatusCode::OK, Some("b".to_owned()))
        );
    }
    assert_eq!(a.hits(), a_hits);
    fake.set_service_endpoints("shop", "cart", Vec::new());
    until(&client, &url, StatusCode::SERVICE_UNAVAILABLE, None).await;

    // None of this translated the configuration again: same generation, and every
    // change went through the endpoint path (its latency histogram counts them).
    let config = wired.config().await;
    assert_eq!(config["generation"], generation);
    let (_, metrics) = wired.admin("/metrics").await;
    let count = metric(&metrics, "gatekit_endpoint_update_seconds_count").unwrap();
    let sum = metric(&metrics, "gatekit_endpoint_update_seconds_sum").unwrap();
    assert!(count >= 4.0, "{metrics}");
    println!(
        "endpoint updates: {count} applied, mean {:.3} ms from watch event to served",
        sum / count * 1e3
    );
    assert_eq!(wired.stop().await, DrainOutcome::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_the_cluster() {
    let a = EchoBackend::start("a").await;
    let port = free_port();
    let (fake, wired) = one_cluster(port).await;
    set_cart(&fake, &[("a", a.addr, State::Ready)]);
    let client = TestClient::new();
    let base = format!("http://127.0.0.1:{port}");
    until(&client, &format!("{base}/cart"), StatusCode::OK, Some("a")).await;
    // Added.
    fake.apply_json(route("shop", "basket", "/basket", "shop", "cart"));
    until(
        &client,
        &format!("{base}/basket"),
        StatusCode::OK,
        Some("a"),
    )
    .await;
    // Changed.
    fake.apply_json(route("shop", "basket", "/trolley", "shop", "cart"));
    until(
        &client,
        &format!("{base}/trolley"),
        StatusCode::OK,
        Some("a"),
    )
    .await;
    assert_eq!(
        backend_of(&client, &format!("{base}/basket")).await.0,
        StatusCode::NOT_FOUND
    );
    // Removed.
    assert!(fake.delete::<gatekit_k8s::types::HttpRoute>(Some("shop"), "basket"));
    until(
        &client,
        &format!("{base}/trolley"),
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
    assert_eq!(
        backend_of(&client, &format!("{base}/cart")).await.0,
        StatusCode::OK
    );
    drop(wired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_under_load_fails_no_request() {
    let port = free_port();
    let (fake, wired) = one_cluster(port).await;
    let mut v1 = Vec::new();
    for name in ["v1-0", "v1-1", "v1-2"] {
        v1.push(Some(EchoBackend::start(name).await));
    }
    let mut v2 = Vec::new();
    let mut current: Vec<(String, SocketAddr, State)> = v1
        .iter()
        .flatten()
        .map(|b| (b.name.to_owned(), b.addr, State::Ready))
        .collect();
    let publish = |current: &[(String, SocketAddr, State)]| {
        let eps: Vec<(&str, SocketAddr, State)> = current
            .iter()
            .map(|(n, a, s)| (n.as_str(), *a, *s))
            .collect();
        fake.set_service_endpoints("shop", "cart", slices("shop", "cart", &eps));
    };
    publish(&current);
    let client = TestClient::new();
    let url = format!("http://127.0.0.1:{port}/cart");
    until(&client, &url, StatusCode::OK, Some("v1-0")).await;

    // Steady load: two clients, until the rollout is done.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (stop, sent, failed, url) = (stop.clone(), sent.clone(), failed.clone(), url.clone());
        load.push(tokio::spawn(async move {
            let client = TestClient::new();
            while !stop.load(Ordering::Relaxed) {
                let rsp = client.get(&url).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if rsp.status != StatusCode::OK {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // The rollout, pod by pod, as the Deployment controller and kubelet do it: the new
    // pod becomes ready; the old one turns terminating (not ready, still serving), then
    // leaves the slice, then stops.
    // Each step lets the load send a few requests on the state it made.
    let progress = || {
        let sent = sent.clone();
        async move {
            let mark = sent.load(Ordering::Relaxed);
            eventually(WITHIN, "load progresses", || {
                let sent = sent.clone();
                async move { sent.load(Ordering::Relaxed) >= mark + 5 }
            })
            .await;
        }
    };
    for (i, name) in ["v2-0", "v2-1", "v2-2"].into_iter().enumerate() {
        let new = EchoBackend::start(name).await;
        current.push((name.to_owned(), new.addr, State::Ready));
        v2.push(new);
        publish(&current);
        progress().await;
        current[0].2 = State::Terminating;
        publish(&current);
        progress().await;
        let (old_name, old_addr, _) = current.remove(0);
        publish(&current);
        progress().await;
        // The old pod stops only once the gateway no longer lists it.
        eventually(WITHIN, "old endpoint gone", || async {
            let config = wired.config().await;
            !config["upstreams"]["shop/cart:80"]["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["address"] == old_addr.to_string())
        })
        .await;
        assert_eq!(old_name, format!("v1-{i}"));
        v1[i] = None;
    }
    // Let the load run on the new set for a moment: every v2 pod takes traffic.
    let marks: Vec<usize> = v2.iter().map(EchoBackend::hits).collect();
    eventually(WITHIN, "every new pod serves", || async {
        v2.iter().zip(&marks).all(|(b, m)| b.hits() > *m)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("rolling update: {sent} requests, {failed} failed");
    assert!(
        sent >= 45,
        "the load ran through every step ({sent} requests)"
    );
    assert_eq!(failed, 0);
    drop(wired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_scoped_and_global_upstreams() {
    let auth = EchoBackend::start("auth").await;
    let blog = EchoBackend::start("blog").await;
    let port = free_port();
    let fake = FakeApiServer::start().await;
    fake.apply_json(gateway(port));
    for (ns, name, backend) in [("platform", "auth", &auth), ("blog", "posts", &blog)] {
        fake.apply_json(service(ns, name));
        fake.set_service_endpoints(
            ns,
            name,
            slices(ns, name, &[("0", backend.addr, State::Ready)]),
        );
    }
    // The shop team routes to the platform's global `auth`, and tries the blog team's
    // `posts`, which the blog team even granted.
    fake.apply_json(route("shop", "login", "/login", "platform", "auth"));
    fake.apply_json(route("shop", "steal", "/steal", "blog", "posts"));
    fake.apply_json(grant("blog", "shop"));
    let mut s = settings(vec![cluster(
        &fake,
        "local",
        &[Role::Config, Role::Endpoints],
    )]);
    s.kubernetes.as_mut().unwrap().global_namespaces = vec!["platform".to_owned()];
    let wired = Wired::start_kube(s).await;
    ready(&wired).await;
    let client = TestClient::new();
    let base = format!("http://127.0.0.1:{port}");
    // No grant in `platform` yet: refused, 500 for the share.
    assert_eq!(
        backend_of(&client, &format!("{base}/login")).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let conditions = |config: &Value, route: &str| {
        config["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "HTTPRoute" && r["namespace"] == "shop" && r["name"] == route)
            .map(|r| r.to_string())
            .unwrap_or_default()
    };
    let config = wired.config().await;
    assert!(
        conditions(&config, "login").contains("RefNotPermitted"),
        "{config}"
    );
    // The platform team grants `shop`: served.
    fake.apply_json(grant("platform", "shop"));
    until(
        &client,
        &format!("{base}/login"),
        StatusCode::OK,
        Some("auth"),
    )
    .await;
    // `blog` is not a global namespace: its grant does not open it to other teams.
    assert_eq!(
        backend_of(&client, &format!("{base}/steal")).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(blog.hits(), 0);
    let config = wired.config().await;
    let steal = conditions(&config, "steal");
    assert!(
        steal.contains("RefNotPermitted") && steal.contains("application-scoped"),
        "{steal}"
    );
    drop(wired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_aggregate_with_local_first_and_fail_over() {
    let local_backend = EchoBackend::start("local").await;
    let remote_backend = EchoBackend::start("remote").await;
    let port = free_port();
    let local = FakeApiServer::start().await;
    let remote = FakeApiServer::builder()
        .token("remote-token")
        .tls(true)
        .start()
        .await;
    let mut remote_spec = cluster(&remote, "remote", &[Role::Endpoints]);
    remote_spec.token = Some("remote-token".to_owned());
    let s = two_clusters(port, &local, &remote, remote_spec);
    set_cart(&local, &[("l", local_backend.addr, State::Ready)]);
    set_cart(&remote, &[("r", remote_backend.addr, State::Ready)]);
    // A grant in the endpoints-only cluster must grant nothing.
    remote.apply_json(grant("platform", "shop"));
    remote.apply_json(service("platform", "auth"));
    local.apply_json(route("shop", "login", "/login", "platform", "auth"));
    let wired = Wired::start_kube(s).await;
    ready(&wired).await;
    let client = TestClient::new();
    let url = format!("http://127.0.0.1:{port}/cart");
    // Both clusters' endpoints are in the upstream, labelled; local takes all traffic.
    cart_endpoints(&wired, 2, "both clusters' endpoints").await;
    for _ in 0..10 {
        assert_eq!(
            backend_of(&client, &url).await,
            (StatusCode::OK, Some("local".to_owned()))
        );
    }
    assert_eq!(remote_backend.hits(), 0);
    assert_eq!(
        backend_of(&client, &format!("http://127.0.0.1:{port}/login"))
            .await
            .0,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a grant in an endpoints-only cluster grants nothing"
    );
    // The local endpoints vanish: the remote cluster takes over.
    local.set_service_endpoints("shop", "cart", Vec::new());
    until(&client, &url, StatusCode::OK, Some("remote")).await;
    // And back.
    set_cart(&local, &[("l", local_backend.addr, State::Ready)]);
    until(&client, &url, StatusCode::OK, Some("local")).await;
    drop(wired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_restart_keeps_serving_and_converges() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let port = free_port();
    let (fake, wired) = one_cluster(port).await;
    set_cart(&fake, &[("a", a.addr, State::Ready)]);
    let client = TestClient::new();
    let url = format!("http://127.0.0.1:{port}/cart");
    until(&client, &url, StatusCode::OK, Some("a")).await;

    fake.stop().await;
    // The cluster is seen as lost, and everything it said keeps serving.
    eventually(WITHIN, "cluster lost", || async {
        wired.config().await["clusters"][0]["connected"] == false
    })
    .await;
    for _ in 0..10 {
        assert_eq!(
            backend_of(&client, &url).await,
            (StatusCode::OK, Some("a".to_owned()))
        );
    }
    // While it is down, the cluster changes (the fake's store is still writable).
    set_cart(&fake, &[("b", b.addr, State::Ready)]);
    fake.resume().await;
    until(&client, &url, StatusCode::OK, Some("b")).await;
    eventually(WITHIN, "cluster back", || async {
        wired.config().await["clusters"][0]["connected"] == true
    })
    .await;
    drop(wired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relist_after_410_keeps_upstreams_and_catches_up() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let port = free_port();
    let (fake, wired) = one_cluster(port).await;
    set_cart(
        &fake,
        &[("a", a.addr, State::Ready), ("b", b.addr, State::Ready)],
    );
    let client = TestClient::new();
    let url = format!("http://127.0.0.1:{port}/cart");
    cart_endpoints(&wired, 2, "both endpoints").await;
    let generation = wired.config().await["generation"].clone();
    // History is compacted past every watcher's resourceVersion (a write to a kind
    // gatekit does not watch moves the head), and watches are cut: every watcher's
    // resumed watch gets a 410 and re-lists.
    fake.apply_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "unwatched", "namespace": "shop"}, "spec": {"containers": []}
    }));
    let lists_before = fake
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::GET && !r.is_watch() && r.path.split('/').count() > 3)
        .count();
    fake.compact_all();
    fake.drop_watches();
    // Traffic meanwhile never fails.
    let mut failures = 0;
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        sent += 1;
        if backend_of(&client, &url).await.0 != StatusCode::OK {
            failures += 1;
        }
        let lists = fake
            .requests()
            .iter()
            .filter(|r| {
                r.method == http::Method::GET && !r.is_watch() && r.path.split('/').count() > 3
            })
            .count();
        // Every kind re-listed (12 kinds on a config+endpoints cluster).
        if lists >= lists_before + 12 && fake.active_watches("endpointslices") > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no re-list");
    }
    assert_eq!(failures, 0, "{sent} requests during the re-list");
    // Identical objects re-listed changed nothing: no retranslation.
    assert_eq!(wired.config().await["generation"], generation);
    // A change right after the re-list is seen.
    set_cart(&fake, &[("b", b.addr, State::Ready)]);
    cart_endpoints(&wired, 1, "a removed").await;
    drop(wired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_after_sync() {
    let port = free_port();
    let fake = FakeApiServer::start().await;
    fake.apply_json(gateway(port));
    // The first lists of routes fail a few times.
    fake.fail_next(
        Some(http::Method::GET),
        "/apis/gateway.networking.k8s.io/v1/httproutes*",
        4,
        500,
        None,
    );
    let wired = Wired::start_kube(settings(vec![cluster(
        &fake,
        "local",
        &[Role::Config, Role::Endpoints],
    )]))
    .await;
    assert_eq!(
        wired.admin("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    ready(&wired).await;
    let lists = fake
        .requests()
        .iter()
        .filter(|r| r.is_list_of("httproutes"))
        .count();
    assert!(
        lists >= 5,
        "readiness waited for the failing list to succeed ({lists} lists)"
    );
    drop(wired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_endpoints_cluster_is_stale_then_dropped() {
    let local_backend = EchoBackend::start("local").await;
    let remote_backend = EchoBackend::start("remote").await;
    let port = free_port();
    let local = FakeApiServer::start().await;
    let remote = FakeApiServer::start().await;
    let mut s = two_clusters(
        port,
        &local,
        &remote,
        cluster(&remote, "remote", &[Role::Endpoints]),
    );
    set_cart(&remote, &[("r", remote_backend.addr, State::Ready)]);
    let k = s.kubernetes.as_mut().unwrap();
    k.max_staleness = Some(Duration::from_millis(1500));
    k.readiness = Readiness::ConfigClusters;
    let wired = Wired::start_kube(s).await;
    ready(&wired).await;
    let client = TestClient::new();
    let url = format!("http://127.0.0.1:{port}/cart");
    until(&client, &url, StatusCode::OK, Some("remote")).await;
    remote.stop().await;
    // Stale but kept: still served.
    eventually(WITHIN, "remote lost", || async {
        wired.config().await["clusters"][1]["connected"] == false
    })
    .await;
    assert_eq!(
        backend_of(&client, &url).await,
        (StatusCode::OK, Some("remote".to_owned()))
    );
    // After maxStaleness, dropped: nothing left for the Service.
    until(&client, &url, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let config = wired.config().await;
    assert_eq!(config["clusters"][1]["endpointsDropped"], true, "{config}");
    let (_, metrics) = wired.admin("/metrics").await;
    assert_eq!(
        metric(&metrics, r#"gatekit_cluster_connected{cluster="remote"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"gatekit_cluster_endpoints_dropped{cluster="remote"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, r#"gatekit_cluster_connected{cluster="local"}"#),
        Some(1.0),
        "{}",
        config["clusters"]
    );
    // Local endpoints appear meanwhile, and the remote returns: both serve again.
    set_cart(&local, &[("l", local_backend.addr, State::Ready)]);
    until(&client, &url, StatusCode::OK, Some("local")).await;
    remote.resume().await;
    cart_endpoints(&wired, 2, "remote endpoints restored").await;
    drop(wired);
}

fn lease(fake: &FakeApiServer, name: &str) -> Option<k8s_openapi::api::coordination::v1::Lease> {
    fake.get(Some("gatekit"), name)
}

fn label(lease: &k8s_openapi::api::coordination::v1::Lease, key: &str) -> Option<String> {
    lease.metadata.labels.as_ref()?.get(key).cloned()
}

fn status_writes(fake: &FakeApiServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| {
            r.method != http::Method::GET
                && r.path
                    == "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/cart/status"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_register_and_one_leader_writes_status() {
    let a = EchoBackend::start("a").await;
    let fake = FakeApiServer::start().await;
    let port = free_port();
    fake.apply_json(gateway(port));
    fake.apply_json(service("shop", "cart"));
    fake.apply_json(route("shop", "cart", "/cart", "shop", "cart"));
    set_cart(&fake, &[("a", a.addr, State::Ready)]);
    let replica = |name: &str| {
        let mut s = settings(vec![cluster(
            &fake,
            "local",
            &[Role::Config, Role::Endpoints],
        )]);
        let k = s.kubernetes.as_mut().unwrap();
        let mut id = gatekit_k8s::provider::ReplicaIdentity::new(name, "gatekit");
        id.uid = Some(format!("uid-{name}"));
        k.replica = Some(id);
        k.lease_duration = Some(Duration::from_secs(3));
        s
    };
    // Two replicas on one port would clash: the second listens elsewhere via its own
    // Gateway port? No: both serve the same Gateway; bind them on different addresses.
    let gw0 = Wired::start_kube(replica("gw-0")).await;
    ready(&gw0).await;
    let mut second = replica("gw-1");
    second.kubernetes.as_mut().unwrap().status_writeback = Some(true);
    let gw1 = Wired::start_kube_on(second, "127.0.0.2".parse().unwrap()).await;
    ready(&gw1).await;

    // Each registered itself: holder, owner, fleet, and the same configuration labels.
    eventually(
        WITHIN,
        "both Leases labelled with the served configuration",
        || async {
            let (Some(l0), Some(l1)) = (lease(&fake, "gw-0"), lease(&fake, "gw-1")) else {
                return false;
            };

            let hash = |l| label(l, "gatekit.io/config-hash").filter(|h| !h.is_empty());
            hash(&l0).is_some()
                && hash(&l0) == hash(&l1)
                && label(&l0, "gatekit.io/config-generation")
                    == label(&l1, "gatekit.io/config-generation")
        },
    )
    .await;
    let l0 = lease(&fake, "gw-0").unwrap();
    assert_eq!(
        l0.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("gw-0")
    );
    assert_eq!(label(&l0, "gatekit.io/fleet").as_deref(), Some("gatekit"));
    let owner = &l0.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Pod", "gw-0", "uid-gw-0")
    );

    // The fleet view lists both, without drift.
    eventually(WITHIN, "fleet of two", || async {
        let (_, body) = gw1.admin("/fleet").await;
        let fleet: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        fleet["replicas"].as_array().is_some_and(|r| r.len() == 2)
            && fleet["drift"].as_array().is_some_and(Vec::is_empty)
    })
    .await;

    // `gatekit fleet` agrees (exit 0: no drift) ...
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatekit.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes:\n  clusters:\n    - name: local\n      server: {}\n",
            fake.url()
        ),
    )
    .unwrap();
    let fleet = |config: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            let cli = <gatekit_bin::Cli as clap::Parser>::try_parse_from([
                "gatekit".as_ref(),
                "fleet".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "--namespace".as_ref(),
                "gatekit".as_ref(),
            ])
            .unwrap();
            format!("{:?}", gatekit_bin::main(cli))
        })
        .await
        .unwrap()
    };
    assert_eq!(
        fleet(config.clone()).await,
        format!("{:?}", std::process::ExitCode::SUCCESS)
    );
    // ... and flags a replica that serves something else for the same input (exit 3).
    let mut odd = lease(&fake, "gw-1").unwrap();
    odd.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some("gw-odd".to_owned()),
        namespace: Some("gatekit".to_owned()),
        labels: odd.metadata.labels.clone().map(|mut l| {
            l.insert(
                "gatekit.io/config-hash".to_owned(),
                "0000000000000000".to_owned(),
            );
            l
        }),
        ..Default::default()
    };
    fake.apply(&odd);
    assert_eq!(
        fleet(config.clone()).await,
        format!("{:?}", std::process::ExitCode::from(3))
    );
    assert!(fake.delete::<k8s_openapi::api::coordination::v1::Lease>(Some("gatekit"), "gw-odd"));

    // The route's status was written, by one replica, once.
    eventually(WITHIN, "route status written", || async {
        let route: Option<gatekit_k8s::types::HttpRoute> = fake.get(Some("shop"), "cart");
        route.and_then(|r| r.status).is_some_and(|s| {
            s.parents
                .iter()
                .any(|p| p.controller_name == "gatekit.io/gateway-controller")
        })
    })
    .await;
    assert_eq!(status_writes(&fake), 1);
    // A change that leaves the route's status as it is: both replicas serve it (their
    // Leases show the new generation), and nobody writes the status again.
    let before = label(
        &lease(&fake, "gw-0").unwrap(),
        "gatekit.io/config-generation",
    );
    fake.apply_json(service("shop", "unrelated"));
    eventually(WITHIN, "new generation on both", || async {
        let g0 = lease(&fake, "gw-0").and_then(|l| label(&l, "gatekit.io/config-generation"));
        let g1 = lease(&fake, "gw-1").and_then(|l| label(&l, "gatekit.io/config-generation"));
        g0 != before && g0 == g1
    })
    .await;
    assert_eq!(
        status_writes(&fake),
        1,
        "an unchanged status is not written again"
    );

    // A replica that stops deletes its Lease; the other keeps (or takes) leadership.
    assert_eq!(gw0.stop().await, DrainOutcome::Complete);
    assert!(lease(&fake, "gw-0").is_none(), "Lease deleted on shutdown");
    eventually(WITHIN, "gw-1 leads", || async {
        lease(&fake, "gatekit-status-writer")
            .and_then(|l| l.spec?.holder_identity)
            .as_deref()
            == Some("gw-1")
    })
    .await;
    drop(gw1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_cluster_down_at_start_blocks_readiness_only_when_required() {
    let a = EchoBackend::start("a").await;
    let port = free_port();
    let local = FakeApiServer::start().await;
    let remote = FakeApiServer::start().await;
    let base = two_clusters(
        port,
        &local,
        &remote,
        cluster(&remote, "remote", &[Role::Endpoints]),
    );
    set_cart(&local, &[("a", a.addr, State::Ready)]);
    remote.stop().await;
    let two = |readiness| {
        let mut s = base.clone();
        s.kubernetes.as_mut().unwrap().readiness = readiness;
        s
    };
    // Endpoints clusters may be down: ready and serving from the local cluster.
    let degraded = Wired::start_kube(two(Readiness::ConfigClusters)).await;
    ready(&degraded).await;
    let client = TestClient::new();
    let url = format!("http://127.0.0.1:{port}/cart");
    assert_eq!(
        backend_of(&client, &url).await,
        (StatusCode::OK, Some("a".to_owned()))
    );
    let config = degraded.config().await;
    assert_eq!(config["clusters"][1]["synced"], false, "{config}");
    drop(degraded);
    // Every cluster required: not ready while one is down, ready once it is up.
    let strict = Wired::start_kube(two(Readiness::AllClusters)).await;
    // The local cluster syncs (every one of its 12 kinds listed and watched, by this
    // replica as by the first one) and still the replica is not ready.
    eventually(WITHIN, "local cluster synced", || async {
        local.requests().iter().filter(|r| r.is_watch()).count() >= 24
    })
    .await;
    assert_eq!(
        strict.admin("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    remote.resume().await;
    ready(&strict).await;
    drop(strict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_list_failures_back_off() {
    let fake = FakeApiServer::start().await;
    fake.apply_json(gateway(free_port()));
    // Every list of routes fails (500 is not retried by kube's client itself).
    fake.fail_next(
        Some(http::Method::GET),
        "/apis/gateway.networking.k8s.io/v1/httproutes*",
        10_000,
        500,
        None,
    );
    let mut s = settings(vec![cluster(
        &fake,
        "local",
        &[Role::Config, Role::Endpoints],
    )]);
    let k = s.kubernetes.as_mut().unwrap();
    k.backoff_min = Some(Duration::from_millis(50));
    k.backoff_max = Some(Duration::from_secs(10));
    let wired = Wired::start_kube(s).await;
    let lists = || {
        fake.requests()
            .iter()
            .filter(|r| r.is_list_of("httproutes"))
            .count()
    };
    // Wait for 5 attempts: with doubling steps of 50 ms (jittered to half) they span at
    // least 25+50+100+200 ms; then, in the next 400 ms, at most 2 more can come
    // (the 6th step is 800-1600 ms away... minus jitter, at least 400 ms).
    eventually(WITHIN, "five list attempts", || async { lists() >= 5 }).await;
    let at_five = tokio::time::Instant::now();
    eventually(Duration::from_secs(5), "the sixth attempt", || async {
        lists() >= 6
    })
    .await;
    let gap = at_five.elapsed();
    assert!(
        gap >= Duration::from_millis(300),
        "backoff did not grow: the 6th list came {gap:?} after the 5th"
    );
    // Still failing, so still not ready.
    assert_eq!(
        wired.admin("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    drop(wired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_does_not_fit_is_skipped_not_fatal() {
    let a = EchoBackend::start("a").await;
    let port = free_port();
    let fake = FakeApiServer::start().await;
    fake.apply_json(gateway(port));
    fake.apply_json(service("shop", "cart"));
    set_cart(&fake, &[("a", a.addr, State::Ready)]);
    fake.apply_json(route("shop", "cart", "/cart", "shop", "cart"));
    // An HTTPRoute gatekit's types cannot read (a CRD version skew would look like this):
    // it must not fail the whole list, or the replica would never become ready.
    let mut broken = route("shop", "broken", "/broken", "shop", "cart");
    broken["spec"]["rules"] = json!("not a list");
    fake.apply_json(broken);
    let wired = Wired::start_kube(settings(vec![cluster(
        &fake,
        "local",
        &[Role::Config, Role::Endpoints],
    )]))
    .await;
    ready(&wired).await;
    let client = TestClient::new();
    let base = format!("http://127.0.0.1:{port}");
    until(&client, &format!("{base}/cart"), StatusCode::OK, Some("a")).await;
    assert_eq!(
        backend_of(&client, &format!("{base}/broken")).await.0,
        StatusCode::NOT_FOUND
    );
    // A served route that turns unreadable keeps its last readable version.
    let mut unreadable = route("shop", "cart", "/cart", "shop", "cart");
    unreadable["spec"]["rules"] = json!(42);
    fake.apply_json(unreadable);
    eventually(WITHIN, "the skip is reported", || async {
        wired.config().await["clusters"][0]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("HTTPRoute shop/cart"))
    })
    .await;
    assert_eq!(
        backend_of(&client, &format!("{base}/cart")).await,
        (StatusCode::OK, Some("a".to_owned()))
    );
    drop(wired);
}

/// GEP-1713 in a cluster: a ListenerSet in `team-a` attached to the Gateway (which
/// allows all namespaces) adds `team-a.example.com` to its port; the route attached to
/// the ListenerSet serves it, and the elected replica writes the ListenerSet's status,
/// the Gateway's `attachedListenerSets` and the route's ListenerSet parent back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_set_is_served_and_its_status_written_back() {
    use gatekit_k8s::types::{Gateway, HttpRoute, ListenerSet};

    let a = EchoBackend::start("a").await;
    let fake = FakeApiServer::start().await;
    let port = free_port();
    let mut gw = gateway(port);
    gw["spec"]["allowedListeners"] = json!({"namespaces": {"from": "All"}});
    gw["spec"]["listeners"][0]["hostname"] = json!("gw.example.com");
    fake.apply_json(gw);
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
        "metadata": {"name": "apps", "namespace": "team-a"},
        "spec": {
            "parentRef": {"name": "gw", "namespace": "infra"},
            "listeners": [{
                "name": "web", "port": port, "protocol": "HTTP",
                "hostname": "team-a.example.com"
            }]
        }
    }));
    fake.apply_json(service("team-a", "app"));
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "app", "namespace": "team-a"},
        "spec": {
            "parentRefs": [{"kind": "ListenerSet", "name": "apps", "sectionName": "web"}],
            "rules": [{"backendRefs": [{"name": "app", "port": 80}]}]
        }
    }));
    fake.set_service_endpoints(
        "team-a",
        "app",
        slices("team-a", "app", &[("a", a.addr, State::Ready)]),
    );
    let mut s = settings(vec![cluster(
        &fake,
        "local",
        &[Role::Config, Role::Endpoints],
    )]);
    let mut id = gatekit_k8s::provider::ReplicaIdentity::new("gw-0", "gatekit");
    id.uid = Some("uid-gw-0".to_owned());
    s.kubernetes.as_mut().unwrap().replica = Some(id);
    let wired = Wired::start_kube(s).await;
    ready(&wired).await;

    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    eventually(WITHIN, "team-a.example.com served", || async {
        gatekit_tests::wired::get_raw(addr, "/", "team-a.example.com")
            .await
            .0
            == StatusCode::OK
    })
    .await;
    assert_eq!(a.hits(), 1);

    eventually(WITHIN, "ListenerSet status written", || async {
        let ls: Option<ListenerSet> = fake.get(Some("team-a"), "apps");
        ls.and_then(|l| l.status)
            .is_some_and(|s| s.listeners.is_some_and(|l| l.len() == 1))
    })
    .await;
    let status = fake
        .get::<ListenerSet>(Some("team-a"), "apps")
        .unwrap()
        .status
        .unwrap();
    let conditions: Vec<(String, String, String)> = status
        .conditions
        .unwrap()
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect();
    let own = |t: &str, s: &str, r: &str| (t.to_owned(), s.to_owned(), r.to_owned());
    assert_eq!(
        conditions,
        [
            own("Accepted", "True", "Accepted"),
            own("Programmed", "True", "Programmed")
        ]
    );
    let listener = &status.listeners.unwrap()[0];
    assert_eq!(listener.name, "web");
    assert_eq!(listener.attached_routes, 1);
    let kinds: Vec<&str> = listener
        .supported_kinds
        .iter()
        .flatten()
        .map(|k| k.kind.as_str())
        .collect();
    assert_eq!(kinds, ["HTTPRoute", "GRPCRoute"]);
    let listener_conditions: Vec<(String, String, String)> = listener
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect();
    assert_eq!(
        listener_conditions,
        [
            own("Accepted", "True", "Accepted"),
            own("ResolvedRefs", "True", "ResolvedRefs"),
            own("Programmed", "True", "Programmed"),
            own("Conflicted", "False", "NoConflicts"),
        ]
    );

    eventually(WITHIN, "Gateway attachedListenerSets written", || async {
        let gw: Option<Gateway> = fake.get(Some("infra"), "gw");
        gw.and_then(|g| g.status)
            .is_some_and(|s| s.attached_listener_sets == Some(1))
    })
    .await;
    eventually(WITHIN, "route parent ListenerSet written", || async {
        let route: Option<HttpRoute> = fake.get(Some("team-a"), "app");
        route.and_then(|r| r.status).is_some_and(|s| {
            s.parents.iter().any(|p| {
                p.parent_ref.kind.as_deref() == Some("ListenerSet")
                    && p.parent_ref.name == "apps"
                    && p.conditions.iter().any(|c| {
                        c.type_ == "Accepted" && c.status == "True" && c.reason == "Accepted"
                    })
            })
        })
    })
    .await;
    drop(wired);
}

// === Secrets and ConfigMaps watched by referenced name ===

use gatekit_tests::wired::{Ca, CaExt};
use rustls::pki_types::CertificateDer;

/// Gateway `infra/gw`: an HTTP listener on `http` and, on `https`, one HTTPS listener
/// per (hostname, Secret in `infra`).
fn tls_gateway(http: u16, https: u16, listeners: &[(&str, &str)]) -> Value {
    let mut all = vec![json!({
        "name": "http", "port": http, "protocol": "HTTP",
        "allowedRoutes": {"namespaces": {"from": "All"}}
    })];
    for (i, (host, secret)) in listeners.iter().enumerate() {
        all.push(json!({
            "name": format!("tls{i}"), "port": https, "protocol": "HTTPS", "hostname": host,
            "tls": {"certificateRefs": [{"name": secret}]},
            "allowedRoutes": {"namespaces": {"from": "All"}}
        }));
    }
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "infra"},
        "spec": {"gatewayClassName": "gatekit", "listeners": all}
    })
}

fn tls_secret(ns: &str, name: &str, cert: &str, key: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert, "tls.key": key}
    })
}

/// One GET of `/cart` over a new TLS connection with `sni`: the leaf the gateway
/// presented, if the handshake and a 200 answer succeeded.
async fn https_once(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> Result<CertificateDer<'static>, String> {
    use http_body_util::{BodyExt, Empty};
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("http handshake: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::get("/cart")
        .header("host", sni)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let rsp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = rsp.status();
    let _ = rsp.into_body().collect().await;
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    Ok(leaf)
}

/// A gateway on one fake cluster with an HTTP listener on `http` and the HTTPS
/// `listeners` on `https`, its routes to `shop/cart` served by `backend`.
async fn tls_cluster(
    http: u16,
    https: u16,
    listeners: &[(&str, &str)],
    secrets: &[Value],
    backend: SocketAddr,
) -> (FakeApiServer, Wired) {
    let fake = FakeApiServer::start().await;
    for s in secrets {
        fake.apply_json(s.clone());
    }
    fake.apply_json(tls_gateway(http, https, listeners));
    fake.apply_json(service("shop", "cart"));
    fake.apply_json(route("shop", "cart", "/cart", "shop", "cart"));
    set_cart(&fake, &[("a", backend, State::Ready)]);
    let wired = Wired::start_kube(settings(vec![cluster(
        &fake,
        "local",
        &[Role::Config, Role::Endpoints],
    )]))
    .await;
    ready(&wired).await;
    (fake, wired)
}

/// A listener added with a new Secret is served with that Secret's certificate (the
/// Secret watched by its name from then on); the listener removed, the Secret's watch
/// ends. A Secret nobody references is never requested: every request for Secrets
/// names one referenced Secret in its namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_added_with_a_new_secret_serves_it_and_removed_unwatches_it() {
    let echo = EchoBackend::start("a").await;
    let ca = Ca::new();
    let (a_cert, a_key, a_der) = ca.leaf("a.example");
    let (b_cert, b_key, b_der) = ca.leaf("b.example");
    let (http, https) = (free_port(), free_port());
    let (fake, wired) = tls_cluster(
        http,
        https,
        &[("a.example", "a")],
        &[
            tls_secret("infra", "a", &a_cert, &a_key),
            tls_secret("infra", "b", &b_cert, &b_key),
            tls_secret("infra", "nobody", &b_cert, &b_key),
        ],
        echo.addr,
    )
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    let connector = ca.connector();
    assert_eq!(
        https_once(&connector, addr, "a.example").await.unwrap(),
        a_der
    );
    assert_eq!(fake.active_watches("secrets"), 1);

    fake.apply_json(tls_gateway(
        http,
        https,
        &[("a.example", "a"), ("b.example", "b")],
    ));
    eventually(WITHIN, "b.example served with b's certificate", || async {
        https_once(&connector, addr, "b.example").await.ok() == Some(b_der.clone())
    })
    .await;
    assert_eq!(
        https_once(&connector, addr, "a.example").await.unwrap(),
        a_der
    );

    fake.apply_json(tls_gateway(http, https, &[("a.example", "a")]));
    eventually(WITHIN, "the watch of Secret b to end", || async {
        fake.active_watches("secrets") == 1
    })
    .await;
    eventually(WITHIN, "b.example no longer served", || async {
        https_once(&connector, addr, "b.example").await.ok() != Some(b_der.clone())
    })
    .await;

    let asked: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/secrets"))
        .collect();
    assert!(!asked.is_empty());
    for r in &asked {
        let selector = r.param("fieldSelector");
        assert!(
            r.path == "/api/v1/namespaces/infra/secrets"
                && matches!(selector, Some("metadata.name=a" | "metadata.name=b")),
            "{} {selector:?}",
            r.path
        );
    }
    assert_eq!(wired.stop().await, DrainOutcome::Complete);
}

/// Rotation: the Secret's pair replaced in the API server while 20 clients make HTTPS
/// requests over new connections in a loop: new handshakes get the new certificate,
/// and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_served_to_new_handshakes_without_a_failed_request() {
    let echo = EchoBackend::start("a").await;
    let ca = Ca::new();
    let (old_cert, old_key, old_der) = ca.leaf("secure.example");
    let (new_cert, new_key, new_der) = ca.leaf("secure.example");
    let (http, https) = (free_port(), free_port());
    let (fake, wired) = tls_cluster(
        http,
        https,
        &[("secure.example", "pair")],
        &[tls_secret("infra", "pair", &old_cert, &old_key)],
        echo.addr,
    )
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    let connector = ca.connector();
    assert_eq!(
        https_once(&connector, addr, "secure.example")
            .await
            .unwrap(),
        old_der
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (seen_new, mut new_seen) = tokio::sync::watch::channel(false);
    let seen_new = Arc::new(seen_new);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let (stop, ok, failed, seen_new) =
            (stop.clone(), ok.clone(), failed.clone(), seen_new.clone());
        let (connector, new_der) = (connector.clone(), new_der.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match https_once(&connector, addr, "secure.example").await {
                    Ok(leaf) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if leaf == new_der {
                            seen_new.send_replace(true);
                        }
                    }
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Some traffic before the rotation.
    eventually(WITHIN, "requests before the rotation", || async {
        ok.load(Ordering::Relaxed) >= 40
    })
    .await;
    fake.apply_json(tls_secret("infra", "pair", &new_cert, &new_key));
    tokio::time::timeout(WITHIN, new_seen.wait_for(|seen| *seen))
        .await
        .expect("no handshake saw the new certificate")
        .unwrap();
    let at_rotation = ok.load(Ordering::Relaxed);
    // Some traffic after the first new handshake too.
    eventually(WITHIN, "requests after the rotation", || async {
        ok.load(Ordering::Relaxed) >= at_rotation + 40
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    // Once one handshake saw the new pair, every later one does.
    assert_eq!(
        https_once(&connector, addr, "secure.example")
            .await
            .unwrap(),
        new_der
    );
    println!(
        "rotation: {} requests, 0 failed",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(wired.stop().await, DrainOutcome::Complete);
}

/// A hyper HTTP/1.1 server over rustls on 127.0.0.1 with `cert`/`key`, answering 200
/// `secure` to every request.
async fn tls_backend(cert: &str, key: &str) -> SocketAddr {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"secure")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// A BackendTLSPolicy whose CA is an Opaque Secret (`ca.crt`) works from a cluster:
/// the Secret, which no type filter would have let through, is watched by its name, and
/// requests are re-encrypted to the TLS backend and answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opaque_ca_secret_of_a_backend_tls_policy_works_from_a_cluster() {
    let ca = Ca::new();
    let (cert, key, _) = ca.leaf("cart.shop");
    let backend = tls_backend(&cert, &key).await;
    let fake = FakeApiServer::builder()
        .resource(gatekit_k8s_fake::ResourceType::new(
            "gateway.networking.k8s.io",
            "v1",
            "backendtlspolicies",
            "BackendTLSPolicy",
            true,
            true,
        ))
        .start()
        .await;
    let port = free_port();
    fake.apply_json(gateway(port));
    fake.apply_json(service("shop", "cart"));
    fake.apply_json(route("shop", "cart", "/cart", "shop", "cart"));
    set_cart(&fake, &[("a", backend, State::Ready)]);
    fake.apply_json(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cart-ca", "namespace": "shop"},
        "type": "Opaque",
        "stringData": {"ca.crt": ca.pem()}
    }));
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
        "metadata": {"name": "cart", "namespace": "shop"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "cart"}],
            "validation": {
                "hostname": "cart.shop",
                "caCertificateRefs": [{"group": "", "kind": "Secret", "name": "cart-ca"}]
            }
        }
    }));
    let wired = Wired::start_kube(settings(vec![cluster(
        &fake,
        "local",
        &[Role::Config, Role::Endpoints],
    )]))
    .await;
    ready(&wired).await;
    let client = TestClient::new();
    let rsp = client.get(&format!("http://127.0.0.1:{port}/cart")).await;
    assert_eq!(rsp.status, StatusCode::OK, "{:?}", rsp.body);
    assert_eq!(&rsp.body[..], b"secure");
    let asked = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/secrets"))
        .all(|r| {
            r.path == "/api/v1/namespaces/shop/secrets"
                && r.param("fieldSelector") == Some("metadata.name=cart-ca")
        });
    assert!(asked, "{:?}", fake.requests());
    assert_eq!(wired.stop().await, DrainOutcome::Complete);
}
