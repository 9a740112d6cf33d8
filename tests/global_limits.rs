//! Global rate limits end to end: two gateway replicas (the wired gateway `gatekit run`
//! serves, each on its own listener port) take from one budget kept in a real
//! `redis-server`; when Redis dies each falls back as its settings say and takes Redis
//! back when it returns. The limits come from an Envoy Gateway BackendTrafficPolicy
//! with `type: Global`, as users migrating from Envoy Gateway write them.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use gatekit_bin::Settings;
use gatekit_gateway::{RedisFallback, RedisSettings};
use gatekit_testkit::redis::RedisServer;
use gatekit_tests::wired::{Wired, eventually, free_port, gateway_http, route, service};
use gatekit_tests::{EchoBackend, TestClient};
use http::{Request, StatusCode};
use http_body_util::Full;

/// A Global limit of `per_minute` requests per distinct `x-api-key`.
fn global_policy(per_minute: u32) -> String {
    format!(
        r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: per-key, namespace: default }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}]
  rateLimit:
    type: Global
    global:
      rules:
      - clientSelectors: [{{ headers: [{{ name: x-api-key, type: Distinct }}] }}]
        limit: {{ requests: {per_minute}, unit: Minute }}
"#
    )
}

/// One replica's manifests: its own Gateway port, the same route and policy as every
/// other replica (so the same limit scopes, so the same Redis buckets).
fn replica_dir(backend: SocketAddr, per_minute: u32) -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = [
        gateway_http(port),
        service("web", backend),
        route("web", "/", "web"),
        global_policy(per_minute),
    ]
    .join("---\n");
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    (dir, port)
}

fn with_redis(url: &str, fallback: RedisFallback) -> Settings {
    let mut settings = Settings::default();
    // A generous timeout: this shared machine may stall a loopback answer for
    // milliseconds, and a fallback here would be a flaky count.
    settings.redis = Some(
        RedisSettings::new(url)
            .with_fallback(fallback)
            .with_timeout(Duration::from_millis(500)),
    );
    settings
}

async fn get(client: &TestClient, port: u16, key: &str) -> StatusCode {
    let req = Request::get(format!("http://127.0.0.1:{port}/"))
        .header("x-api-key", key)
        .body(Full::<Bytes>::default())
        .unwrap();
    client.send(req).await.status
}

/// Sends `n` requests with `key`, alternating between `ports`; counts the 200s and
/// fails on anything but 200 or 429.
async fn send_alternating(client: &TestClient, ports: &[u16], key: &str, n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        match get(client, ports[i % ports.len()], key).await {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("key {key}: {other} from port {}", ports[i % ports.len()]),
        }
    }
    ok
}

/// The value of the metric line starting with `prefix` (name and labels).
async fn metric(gw: &Wired, prefix: &str) -> Option<u64> {
    let (_, body) = gw.admin("/metrics").await;
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

const LIMIT: &str = "default/web/rules[0]/rateLimits[0]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget_fall_back_locally_without_redis_and_share_again() {
    let mut redis = RedisServer::start();
    let backend = EchoBackend::start("web").await;
    let (dir_a, port_a) = replica_dir(backend.addr, 10);
    let (dir_b, port_b) = replica_dir(backend.addr, 10);
    let settings = with_redis(&redis.url(), RedisFallback::Local);
    let a = Wired::start_with(&[PathBuf::from(dir_a.path())], settings.clone()).await;
    let b = Wired::start_with(&[PathBuf::from(dir_b.path())], settings).await;
    let client = TestClient::new();
    let both = [port_a, port_b];

    // Shared: 10 per key in total across both replicas, whichever serves (a GCRA
    // bucket refills one request per 6 s: one more may pass on a slow run).
    for key in ["alice", "bob"] {
        let ok = send_alternating(&client, &both, key, 30).await;
        assert!((10..=11).contains(&ok), "key {key}: {ok} passed in total");
    }
    // The policy says where it runs, the metrics count the decisions.
    let config = a.config().await.to_string();
    assert!(
        config.contains(&format!("\"store\":\"{}\"", redis.url())),
        "{config}"
    );
    let allowed = metric(
        &a,
        &format!("gatekit_rate_limit_requests_total{{limit=\"{LIMIT}\",result=\"allowed\"}}"),
    )
    .await;
    let limited = metric(
        &a,
        &format!("gatekit_rate_limit_requests_total{{limit=\"{LIMIT}\",result=\"limited\"}}"),
    )
    .await;
    assert_eq!(
        allowed.unwrap() + limited.unwrap(),
        30,
        "replica a decided half of 60"
    );

    // Redis dies: each replica decides alone with the same quota (10 each), and
    // nothing but 200s and 429s reach the client.
    redis.stop();
    let ok_a = send_alternating(&client, &[port_a], "carol", 15).await;
    let ok_b = send_alternating(&client, &[port_b], "carol", 15).await;
    assert_eq!(
        (ok_a, ok_b),
        (10, 10),
        "local fallback: the quota per replica"
    );
    for gw in [&a, &b] {
        let fallbacks = metric(
            gw,
            &format!("gatekit_rate_limit_store_fallbacks_total{{limit=\"{LIMIT}\"}}"),
        )
        .await;
        assert!(fallbacks.unwrap() >= 15, "{fallbacks:?}");
        let degraded = metric(
            gw,
            &format!("gatekit_rate_limit_store_degraded{{limit=\"{LIMIT}\"}}"),
        )
        .await;
        assert_eq!(degraded, Some(1));
    }

    // Redis is back (empty): once each replica's probe found it, shared again.
    redis.restart();
    for (gw, port) in [(&a, port_a), (&b, port_b)] {
        eventually(
            Duration::from_secs(10),
            "the replica asks Redis again",
            || async {
                let _ = get(&client, port, "probe").await;
                metric(
                    gw,
                    &format!("gatekit_rate_limit_store_degraded{{limit=\"{LIMIT}\"}}"),
                )
                .await
                    == Some(0)
            },
        )
        .await;
    }
    let ok = send_alternating(&client, &both, "dave", 30).await;
    assert!(
        (10..=11).contains(&ok),
        "shared again: {ok} passed in total"
    );

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_allows_everything_while_redis_is_away() {
    let mut redis = RedisServer::start();
    let backend = EchoBackend::start("web").await;
    let (dir, port) = replica_dir(backend.addr, 3);
    let gw = Wired::start_with(
        &[PathBuf::from(dir.path())],
        with_redis(&redis.url(), RedisFallback::FailOpen),
    )
    .await;
    let client = TestClient::new();
    assert_eq!(send_alternating(&client, &[port], "k", 6).await, 3);
    redis.stop();
    assert_eq!(
        send_alternating(&client, &[port], "k", 6).await,
        6,
        "fail-open: every request passes while Redis is away"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_global_limit_runs_per_replica_and_says_so() {
    let backend = EchoBackend::start("web").await;
    let (dir, port) = replica_dir(backend.addr, 3);
    let gw = Wired::start(&[PathBuf::from(dir.path())]).await;
    let client = TestClient::new();
    assert_eq!(send_alternating(&client, &[port], "k", 6).await, 3);
    let config = gw.config().await.to_string();
    assert!(config.contains("no Redis configured"), "{config}");
    assert!(
        config.contains("limits are per replica"),
        "the policy's status: {config}"
    );
    gw.stop().await;
}
