//! End to end through the wired gateway (`gatekit run`'s library entry point): manifests
//! in a temp dir, real echo backends, real sockets, real TLS.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_bin::DrainOutcome;
use gatekit_core::Body;
use gatekit_tests::wired::{
    Ca, CaExt, Wired, eventually, free_port, gateway_http, get_raw, route, secret, service,
    tls_get, write_atomic,
};
use gatekit_tests::{EchoBackend, TestClient};
use http::{Request, Response, StatusCode};
use tokio::sync::{mpsc, watch};

fn dir_with(files: &[(&str, String)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let dirs = vec![dir.path().to_path_buf()];
    (dir, dirs)
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn routes_from_files_reach_their_backends() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let port = free_port();
    let routes = format!(
        "{}---\n{}",
        route("to-a", "/a", "svc-a"),
        route("to-b", "/b", "svc-b")
    );
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        (
            "services.yaml",
            format!(
                "{}---\n{}",
                service("svc-a", a.addr),
                service("svc-b", b.addr)
            ),
        ),
        ("routes.yaml", routes),
    ]);
    let wired = Wired::start(&dirs).await;
    assert_eq!(wired.admin("/readyz").await.0, StatusCode::OK);
    let client = TestClient::new();
    let rsp = client
        .get(&format!("http://127.0.0.1:{port}/a/x?q=1"))
        .await;
    assert_eq!(rsp.status, StatusCode::OK);
    assert_eq!(rsp.header("x-backend"), Some("a"));
    assert_eq!(rsp.header("x-echo-path"), Some("/a/x?q=1"));
    let rsp = client.get(&format!("http://127.0.0.1:{port}/b")).await;
    assert_eq!(rsp.header("x-backend"), Some("b"));
    let rsp = client.get(&format!("http://127.0.0.1:{port}/c")).await;
    assert_eq!(rsp.status, StatusCode::NOT_FOUND);
    assert_eq!((a.hits(), b.hits()), (1, 1));

    // Metrics by route and backend; /config shows what is served.
    let (_, metrics) = wired.admin("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            r#"gatekit_requests_total{route="default/to-a",backend="default/svc-a:80",status_class="2xx",error_kind="none"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"gatekit_requests_total{route="(unmatched)",backend="(unmatched)",status_class="4xx",error_kind="no-route"}"#
        ),
        Some(1.0)
    );
    assert_eq!(metric(&metrics, "gatekit_config_generation"), Some(1.0));
    assert_eq!(
        metric(
            &metrics,
            r#"gatekit_endpoint_healthy{upstream="default/svc-a:80""#
        ),
        Some(1.0)
    );
    let config = wired.config().await;
    assert_eq!(config["generation"], 1);
    assert_eq!(config["listeners"][0]["port"], port);
    let routes: Vec<&str> = config["listeners"][0]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["default/to-a", "default/to-b"]);
    assert_eq!(
        config["upstreams"]["default/svc-a:80"]["endpoints"][0]["address"],
        a.addr.to_string()
    );
    assert!(config["lastReloadError"].is_null());
    // The Gateway's status: the address its listener is bound on, supportedKinds,
    // attachedRoutes.
    let gw = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Gateway")
        .unwrap();
    let bound_ip = config["listeners"][0]["address"]
        .as_str()
        .unwrap()
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .ip()
        .to_string();
    assert_eq!(
        gw["addresses"],
        serde_json::json!([{"type": "IPAddress", "value": bound_ip}])
    );
    assert_eq!(gw["listeners"][0]["attachedRoutes"], 2);
    assert_eq!(
        gw["listeners"][0]["supportedKinds"],
        serde_json::json!([
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
            {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}
        ])
    );
    assert!(wired.stop().await == DrainOutcome::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_route_rewrites_under_load_fail_no_request() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let port = free_port();
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        (
            "services.yaml",
            format!(
                "{}---\n{}",
                service("svc-a", a.addr),
                service("svc-b", b.addr)
            ),
        ),
        ("route.yaml", route("r", "/", "svc-a")),
    ]);
    let wired = Wired::start(&dirs).await;
    let url = format!("http://127.0.0.1:{port}/load");

    // Two keep-alive clients sending back to back for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for _ in 0..2 {
        let (stop, sent, url) = (stop.clone(), sent.clone(), url.clone());
        loops.push(tokio::spawn(async move {
            let client = TestClient::new();
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let rsp = client.get(&url).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if rsp.status != StatusCode::OK {
                    failed.push(rsp.status);
                }
            }
            failed
        }));
    }

    let probe = TestClient::new();
    let mut latencies = Vec::new();
    for i in 0..50 {
        let (svc, name) = if i % 2 == 0 {
            ("svc-b", "b")
        } else {
            ("svc-a", "a")
        };
        let written = tokio::time::Instant::now();
        write_atomic(dir.path(), "route.yaml", &route("r", "/", svc));
        eventually(Duration::from_secs(2), "the rewritten route serves", || {
            let probe = probe.clone();
            let url = url.clone();
            async move { probe.get(&url).await.header("x-backend") == Some(name) }
        })
        .await;
        latencies.push(written.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let failed = l.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
    }
    latencies.sort();
    println!(
        "reload latency (write -> served), 50 rewrites: median {:?}, max {:?}; {} requests sent",
        latencies[25],
        latencies[49],
        sent.load(Ordering::Relaxed)
    );
    assert!(sent.load(Ordering::Relaxed) > 50);
    assert!(latencies[25] < Duration::from_millis(100), "{latencies:?}");
    let (_, metrics) = wired.admin("/metrics").await;
    assert!(metric(&metrics, "gatekit_config_generation").unwrap() >= 51.0);
}

#[tokio::test]
async fn an_invalid_manifest_keeps_the_last_good_config_and_is_reported() {
    let a = EchoBackend::start("a").await;
    let port = free_port();
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("services.yaml", service("svc-a", a.addr)),
        ("route.yaml", route("r", "/", "svc-a")),
    ]);
    let wired = Wired::start(&dirs).await;
    let url = format!("http://127.0.0.1:{port}/");
    let client = TestClient::new();
    assert_eq!(client.get(&url).await.header("x-backend"), Some("a"));

    // A schema error: the port is not a number.
    let broken = route("r", "/", "svc-a").replace("port: 80", "port: eighty");
    write_atomic(dir.path(), "route.yaml", &broken);
    eventually(
        Duration::from_secs(2),
        "the failed reload is counted",
        || async {
            let (_, m) = wired.admin("/metrics").await;
            metric(&m, r#"gatekit_reloads_total{result="failed"}"#) == Some(1.0)
        },
    )
    .await;
    let rsp = client.get(&url).await;
    assert_eq!(rsp.status, StatusCode::OK);
    assert_eq!(rsp.header("x-backend"), Some("a"));
    let config = wired.config().await;
    assert_eq!(config["generation"], 1, "the old snapshot is still served");
    let error = &config["lastReloadError"]["errors"][0];
    assert!(
        error["file"].as_str().unwrap().ends_with("route.yaml"),
        "{error}"
    );
    assert_eq!(error["document"], 0);
    assert_eq!(error["kind"], "HTTPRoute");
    assert_eq!(error["name"], "r");
    assert!(error["field"].as_str().unwrap().contains("port"), "{error}");

    // Fixed: served again, the error is gone.
    write_atomic(dir.path(), "route.yaml", &route("r", "/", "svc-a"));
    eventually(Duration::from_secs(2), "the fix is served", || async {
        wired.config().await["generation"] == 2
    })
    .await;
    assert!(wired.config().await["lastReloadError"].is_null());
}

#[tokio::test]
async fn admin_is_not_ready_until_a_snapshot_serves() {
    let a = EchoBackend::start("a").await;
    let port = free_port();
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("services.yaml", service("svc-a", a.addr)),
        ("route.yaml", "kind: HTTPRoute\nspec: [".to_owned()),
    ]);
    let wired = Wired::start(&dirs).await;
    assert_eq!(wired.admin("/healthz").await.0, StatusCode::OK);
    assert_eq!(
        wired.admin("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let config = wired.config().await;
    assert_eq!(config["generation"], 0);
    assert!(
        config["lastReloadError"]["errors"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("route.yaml")
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );

    write_atomic(dir.path(), "route.yaml", &route("r", "/", "svc-a"));
    eventually(Duration::from_secs(2), "ready once served", || async {
        wired.admin("/readyz").await.0 == StatusCode::OK
    })
    .await;
    let (status, _) = get_raw(([127, 0, 0, 1], port).into(), "/", "x").await;
    assert_eq!(status, StatusCode::OK);
    let config = wired.config().await;
    assert_eq!(
        config["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "HTTPRoute")
            .count(),
        1
    );
}

fn gateway_https(port: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners:
  - name: a
    port: {port}
    protocol: HTTPS
    hostname: a.example.com
    tls: {{ mode: Terminate, certificateRefs: [{{ name: cert-a }}] }}
  - name: b
    port: {port}
    protocol: HTTPS
    hostname: b.example.com
    tls: {{ mode: Terminate, certificateRefs: [{{ name: cert-b }}] }}
"#
    )
}

#[tokio::test]
async fn https_certificates_by_sni_and_rotation_by_secret_change() {
    let a = EchoBackend::start("a").await;
    let ca = Ca::new();
    let (cert_a, key_a, der_a) = ca.leaf("a.example.com");
    let (cert_b, key_b, der_b) = ca.leaf("b.example.com");
    let port = free_port();
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_https(port)),
        ("services.yaml", service("svc-a", a.addr)),
        ("route.yaml", route("r", "/", "svc-a")),
        ("secret-a.yaml", secret("cert-a", &cert_a, &key_a)),
        ("secret-b.yaml", secret("cert-b", &cert_b, &key_b)),
    ]);
    let wired = Wired::start(&dirs).await;
    let addr = ([127, 0, 0, 1], port).into();
    let connector = ca.connector();
    let (leaf, status, _) = tls_get(&connector, addr, "a.example.com", "/").await;
    assert_eq!((leaf, status), (der_a, StatusCode::OK));
    let (leaf, status, _) = tls_get(&connector, addr, "b.example.com", "/").await;
    assert_eq!((leaf, status), (der_b.clone(), StatusCode::OK));

    // Rotate cert-a by rewriting its Secret.
    let (cert_a2, key_a2, der_a2) = ca.leaf("a.example.com");
    write_atomic(
        dir.path(),
        "secret-a.yaml",
        &secret("cert-a", &cert_a2, &key_a2),
    );
    eventually(
        Duration::from_secs(2),
        "the new certificate is presented",
        || {
            let connector = connector.clone();
            let der_a2 = der_a2.clone();
            async move { tls_get(&connector, addr, "a.example.com", "/").await.0 == der_a2 }
        },
    )
    .await;
    let (leaf, _, _) = tls_get(&connector, addr, "b.example.com", "/").await;
    assert_eq!(leaf, der_b, "the other certificate is unchanged");
    drop(wired);
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_request_through_the_wired_gateway() {
    // A backend whose /slow answers only when released.
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (release, release_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let svc = tower::service_fn(move |_req: Request<Body>| {
        let started = started_tx.clone();
        let mut release = release_rx.clone();
        async move {
            let _ = started.send(());
            let _ = release.wait_for(|r| *r).await;
            Ok::<_, Infallible>(Response::new(Body::full("slow done")))
        }
    });
    tokio::spawn(gatekit_core::server::serve(
        listener,
        svc,
        std::future::pending(),
    ));

    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("services.yaml", service("svc-slow", backend)),
        ("route.yaml", route("r", "/", "svc-slow")),
    ]);
    let wired = Wired::start(&dirs).await;
    let admin = wired.admin;
    let in_flight =
        tokio::spawn(async move { get_raw(([127, 0, 0, 1], port).into(), "/slow", "x").await });
    started.recv().await.unwrap();
    let stopping = tokio::spawn(wired.stop());
    eventually(
        Duration::from_secs(2),
        "not ready while draining",
        || async { get_raw(admin, "/readyz", "admin").await.0 == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    assert!(!in_flight.is_finished());
    release.send(true).unwrap();
    assert_eq!(
        in_flight.await.unwrap(),
        (StatusCode::OK, "slow done".to_owned())
    );
    assert_eq!(stopping.await.unwrap(), DrainOutcome::Complete);
}

#[tokio::test]
async fn demo_splits_70_20_10_and_routes_the_canary_header() {
    let mut settings = gatekit_bin::Settings::default();
    settings.admin.address = "127.0.0.1:0".parse().unwrap();
    let port = free_port();
    let demo = gatekit_bin::demo::Demo::start(settings, port)
        .await
        .unwrap();
    let admin = demo.admin_addr();
    assert!(
        demo.instructions()
            .contains(&format!("curl -s http://127.0.0.1:{port}/"))
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(demo.serve(async {
        let _ = stopped.await;
    }));

    let client = TestClient::new();
    let url = format!("http://127.0.0.1:{port}/");
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for _ in 0..400 {
        let rsp = client.get(&url).await;
        assert_eq!(rsp.status, StatusCode::OK);
        *counts
            .entry(String::from_utf8_lossy(&rsp.body).trim().to_owned())
            .or_default() += 1;
    }
    let (blue, green, canary) = (counts["blue"], counts["green"], counts["canary"]);
    assert!(blue > green && green > canary && canary > 0, "{counts:?}");
    assert!((220..=340).contains(&blue), "{counts:?}");

    for _ in 0..10 {
        let req = Request::get(&url)
            .header("x-canary", "true")
            .body(http_body_util::Full::default())
            .unwrap();
        let rsp = client.send(req).await;
        assert_eq!(&rsp.body[..], b"canary\n");
    }
    let (_, body) = get_raw(admin, "/config", "admin").await;
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        config["upstreams"]["default/blue:80"]["activeHealthCheck"],
        true
    );
    assert_eq!(
        config["upstreams"]["default/blue:80"]["algorithm"],
        "least-request"
    );
    stop.send(()).unwrap();
    assert_eq!(task.await.unwrap(), DrainOutcome::Complete);
}

/// A ConfigMap volume: files are symlinks through `..data`, which is swapped atomically
/// to a new timestamped directory on update.
#[cfg(unix)]
#[tokio::test]
async fn a_configmap_style_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write_version = |version: &str, backend: &str| {
        let data = root.join(version);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("gateway.yaml"), gateway_http(port)).unwrap();
        std::fs::write(
            data.join("services.yaml"),
            format!(
                "{}---\n{}",
                service("svc-a", a.addr),
                service("svc-b", b.addr)
            ),
        )
        .unwrap();
        std::fs::write(data.join("route.yaml"), route("r", "/", backend)).unwrap();
    };
    write_version("..2026_01", "svc-a");
    symlink("..2026_01", root.join("..data")).unwrap();
    for file in ["gateway.yaml", "services.yaml", "route.yaml"] {
        symlink(format!("..data/{file}"), root.join(file)).unwrap();
    }
    let wired = Wired::start(&[root.to_path_buf()]).await;
    let url = format!("http://127.0.0.1:{port}/");
    let client = TestClient::new();
    assert_eq!(client.get(&url).await.header("x-backend"), Some("a"));

    // The kubelet's update: new directory, new symlink, atomic rename over ..data.
    write_version("..2026_02", "svc-b");
    symlink("..2026_02", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_01")).unwrap();
    eventually(Duration::from_secs(2), "the swapped version serves", || {
        let client = client.clone();
        let url = url.clone();
        async move { client.get(&url).await.header("x-backend") == Some("b") }
    })
    .await;
    assert!(wired.config().await["lastReloadError"].is_null());
}

#[tokio::test]
async fn active_health_checks_mark_a_dead_endpoint_in_metrics_and_config() {
    let a = EchoBackend::start("a").await;
    let dead = gatekit_tests::closed_port().await;
    let port = free_port();
    let slice = |addrs: &[std::net::SocketAddr]| {
        let endpoints: Vec<String> = addrs
            .iter()
            .map(|a| format!("{{ addresses: [\"{}\"] }}", a.ip()))
            .collect();
        // One slice per port: the two endpoints listen on different ports.
        addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                format!(
                    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{ name: web-{i}, namespace: default, labels: {{ kubernetes.io/service-name: web }} }}\naddressType: IPv4\nports: [{{ name: http, port: {} }}]\nendpoints: [{}]\n",
                    addr.port(),
                    endpoints[i]
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    };
    let manifests = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{ name: web, namespace: default }}
spec:
  ports: [{{ name: http, port: 80 }}]
---
{}---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: {{ name: hc, namespace: default }}
spec:
  targetRefs: [{{ kind: Service, name: web }}]
  healthCheck:
    active: {{ type: http, path: /, interval: 20ms, timeout: 200ms, unhealthyThreshold: 2 }}
"#,
        slice(&[a.addr, dead])
    );
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("web.yaml", manifests),
        ("route.yaml", route("r", "/", "web")),
    ]);
    let wired = Wired::start(&dirs).await;
    let dead_series =
        format!(r#"gatekit_endpoint_healthy{{upstream="default/web:80",endpoint="{dead}"}}"#);
    eventually(
        Duration::from_secs(3),
        "the dead endpoint is unhealthy in /metrics",
        || async {
            let (_, m) = wired.admin("/metrics").await;
            metric(&m, &dead_series) == Some(0.0)
        },
    )
    .await;
    let (_, m) = wired.admin("/metrics").await;
    let live = format!(
        r#"gatekit_endpoint_healthy{{upstream="default/web:80",endpoint="{}"}}"#,
        a.addr
    );
    assert_eq!(metric(&m, &live), Some(1.0));
    let config = wired.config().await;
    let endpoints = config["upstreams"]["default/web:80"]["endpoints"]
        .as_array()
        .unwrap();
    let dead_entry = endpoints
        .iter()
        .find(|e| e["address"] == dead.to_string())
        .unwrap();
    assert_eq!(dead_entry["healthy"], false, "{config}");
    // Traffic only reaches the live endpoint now.
    let client = TestClient::new();
    for _ in 0..10 {
        let rsp = client.get(&format!("http://127.0.0.1:{port}/")).await;
        assert_eq!(rsp.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn reloads_bind_and_close_ports_and_rebuild_upstreams_on_policy_change() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let (p1, p2) = (free_port(), free_port());
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(p1)),
        ("services.yaml", service("svc-a", a.addr)),
        ("route.yaml", route("r", "/", "svc-a")),
    ]);
    let wired = Wired::start(&dirs).await;
    let config = wired.config().await;
    assert_eq!(
        config["upstreams"]["default/svc-a:80"]["algorithm"],
        "round-robin"
    );

    // A second listener port appears: bound on reload.
    let two_ports = gateway_http(p1).replace(
        "listeners: [{ name: http, port",
        &format!("listeners: [{{ name: second, port: {p2}, protocol: HTTP }}, {{ name: http, port"),
    );
    write_atomic(dir.path(), "gateway.yaml", &two_ports);
    eventually(
        Duration::from_secs(2),
        "the new port serves",
        || async move {
            match tokio::net::TcpStream::connect(("127.0.0.1", p2)).await {
                Ok(_) => get_raw(([127, 0, 0, 1], p2).into(), "/", "x").await.0 == StatusCode::OK,
                Err(_) => false,
            }
        },
    )
    .await;

    // A BackendPolicy and a second endpoint: the upstream is rebuilt with the new
    // algorithm and both endpoints take traffic.
    let slice_b = service("svc-a", b.addr)
        .split("---\n")
        .nth(1)
        .unwrap()
        .replace("svc-a-1", "svc-a-2");
    let policy = "apiVersion: gatekit.io/v1alpha1\nkind: BackendPolicy\nmetadata: { name: p, namespace: default }\nspec:\n  targetRefs: [{ kind: Service, name: svc-a }]\n  loadBalancer: { algorithm: least-request }\n";
    write_atomic(
        dir.path(),
        "services.yaml",
        &format!("{}---\n{slice_b}---\n{policy}", service("svc-a", a.addr)),
    );
    eventually(Duration::from_secs(2), "the policy applies", || async {
        let config = wired.config().await;
        config["upstreams"]["default/svc-a:80"]["algorithm"] == "least-request"
            && config["upstreams"]["default/svc-a:80"]["endpoints"]
                .as_array()
                .is_some_and(|e| e.len() == 2)
    })
    .await;
    let client = TestClient::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        let rsp = client.get(&format!("http://127.0.0.1:{p1}/")).await;
        seen.insert(rsp.header("x-backend").unwrap().to_owned());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // The second port disappears: closed on reload.
    write_atomic(dir.path(), "gateway.yaml", &gateway_http(p1));
    eventually(
        Duration::from_secs(2),
        "the removed port is closed",
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", p2))
                .await
                .is_err()
        },
    )
    .await;
    assert_eq!(
        get_raw(([127, 0, 0, 1], p1).into(), "/", "x").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_h2c_service_is_spoken_to_over_http2() {
    let mut a = EchoBackend::start("a").await;
    let port = free_port();
    let h2c = service("svc-a", a.addr).replace(
        "ports: [{ name: http, port: 80 }]",
        "ports: [{ name: http, port: 80, appProtocol: kubernetes.io/h2c }]",
    );
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("services.yaml", h2c),
        ("route.yaml", route("r", "/", "svc-a")),
    ]);
    let wired = Wired::start(&dirs).await;
    assert_eq!(
        wired.config().await["upstreams"]["default/svc-a:80"]["protocol"],
        "h2c"
    );
    let (status, _) = get_raw(([127, 0, 0, 1], port).into(), "/h2", "example.com").await;
    assert_eq!(status, StatusCode::OK);
    let seen = a.next_seen().await;
    // HTTP/2 carries the authority in the URI (`:authority`), HTTP/1.1 in `Host`.
    assert_eq!(
        seen.uri.authority().map(|a| a.as_str()),
        Some("example.com")
    );
    assert_eq!(seen.uri.path(), "/h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_rewrites_are_read_once_the_file_is_closed() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let port = free_port();
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        (
            "services.yaml",
            format!(
                "{}---\n{}",
                service("svc-a", a.addr),
                service("svc-b", b.addr)
            ),
        ),
        ("route.yaml", route("r", "/", "svc-a")),
    ]);
    let wired = Wired::start(&dirs).await;
    let url = format!("http://127.0.0.1:{port}/");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, url) = (stop.clone(), url.clone());
        tokio::spawn(async move {
            let client = TestClient::new();
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let rsp = client.get(&url).await;
                if rsp.status != StatusCode::OK {
                    failed.push(rsp.status);
                }
            }
            failed
        })
    };
    let probe = TestClient::new();
    for i in 0..20 {
        let (svc, name) = if i % 2 == 0 {
            ("svc-b", "b")
        } else {
            ("svc-a", "a")
        };
        // Truncate, write, close: the reload waits for the close.
        std::fs::write(dir.path().join("route.yaml"), route("r", "/", svc)).unwrap();
        eventually(Duration::from_secs(2), "the rewritten route serves", || {
            let probe = probe.clone();
            let url = url.clone();
            async move { probe.get(&url).await.header("x-backend") == Some(name) }
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(load.await.unwrap(), Vec::<StatusCode>::new());
    let (_, metrics) = wired.admin("/metrics").await;
    assert_eq!(
        metric(&metrics, r#"gatekit_reloads_total{result="failed"}"#),
        Some(0.0)
    );
}

/// `GatewayPort8080`: a listener on port 8080 serves, and a redirect that names no
/// scheme or port keeps the listener's port while one that changes the scheme uses the
/// scheme's well-known port (the conformance test `HTTPRouteRedirectPortAndScheme` on
/// its 8080 listener). Bound on 127.0.80.80 so nothing else on the machine's loopback
/// 8080 is in the way.
#[tokio::test]
async fn gateway_port_8080_serves_and_redirects_keep_the_listener_port() {
    let a = EchoBackend::start("a").await;
    let redirects = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: redirects, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /hostname } }]
    filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org } }]
  - matches: [{ path: { type: PathPrefix, value: /scheme } }]
    filters: [{ type: RequestRedirect, requestRedirect: { scheme: https } }]
"#;
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(8080)),
        ("services.yaml", service("svc-a", a.addr)),
        (
            "routes.yaml",
            format!("{}---\n{redirects}", route("to-a", "/a", "svc-a")),
        ),
    ]);
    let ip: std::net::IpAddr = "127.0.80.80".parse().unwrap();
    let _wired = Wired::start_on(&dirs, gatekit_bin::Settings::default(), ip).await;
    let client = TestClient::new();
    let rsp = client.get("http://127.0.80.80:8080/a").await;
    assert_eq!(rsp.status, StatusCode::OK);
    assert_eq!(rsp.header("x-backend"), Some("a"));

    let rsp = client.get("http://127.0.80.80:8080/hostname").await;
    assert_eq!(rsp.status, StatusCode::FOUND);
    assert_eq!(
        rsp.header("location"),
        Some("http://example.org:8080/hostname")
    );
    let rsp = client.get("http://127.0.80.80:8080/scheme").await;
    assert_eq!(rsp.status, StatusCode::FOUND);
    assert_eq!(rsp.header("location"), Some("https://127.0.80.80/scheme"));
}

/// `HTTPRouteDestinationPortMatching` (the conformance test
/// `HTTPRouteListenerPortMatching`): listeners on three ports with hostnames, routes
/// attached by parentRef `port` (and one by `port` + `sectionName`): each port serves
/// only the routes attached to its listeners, for only those listeners' hostnames,
/// whatever port the Host header carries.
#[tokio::test]
async fn httproute_destination_port_matching_routes_by_the_listener_port() {
    let v1 = EchoBackend::start("v1").await;
    let v2 = EchoBackend::start("v2").await;
    let v3 = EchoBackend::start("v3").await;
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let gateway = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners:
  - {{ name: listener-1, port: {p1}, protocol: HTTP, hostname: foo.com }}
  - {{ name: listener-2, port: {p2}, protocol: HTTP, hostname: foo.com }}
  - {{ name: listener-3, port: {p2}, protocol: HTTP, hostname: bar.com }}
  - {{ name: listener-4, port: {p3}, protocol: HTTP, hostname: foo.com }}
  - {{ name: listener-5, port: {p3}, protocol: HTTP, hostname: bar.com }}
"#
    );
    let route = |name: &str, parent: &str, backend: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{ name: {name}, namespace: default }}\n\
             spec:\n  parentRefs: [{{ name: gw, {parent} }}]\n\
             \x20 rules: [{{ backendRefs: [{{ name: {backend}, port: 80 }}] }}]\n"
        )
    };
    let routes = [
        route("backend-v1", &format!("port: {p1}"), "v1"),
        route("backend-v2", &format!("port: {p2}"), "v2"),
        route(
            "backend-v3",
            &format!("port: {p3}, sectionName: listener-4"),
            "v3",
        ),
    ]
    .join("---\n");
    let services = [
        service("v1", v1.addr),
        service("v2", v2.addr),
        service("v3", v3.addr),
    ]
    .join("---\n");
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway),
        ("services.yaml", services),
        ("routes.yaml", routes),
    ]);
    let _wired = Wired::start(&dirs).await;
    let at = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let cases = [
        (p1, "foo.com", Some("v1")),
        (p1, "bar.com", None),
        (p2, "foo.com", Some("v2")),
        (p2, "bar.com", Some("v2")),
        (p3, "foo.com", Some("v3")),
        (p3, "bar.com", None),
    ];
    let backends = [("v1", &v1), ("v2", &v2), ("v3", &v3)];
    let hits = || backends.map(|(_, b)| b.hits());
    for (port, host, want) in cases {
        for host in [host.to_owned(), format!("{host}:{port}")] {
            let before = hits();
            let (status, body) = get_raw(at(port), "/", &host).await;
            let after = hits();
            let reached: Vec<&str> = backends
                .iter()
                .zip(before.iter().zip(after))
                .filter(|(_, (b, a))| a > *b)
                .map(|((name, _), _)| *name)
                .collect();
            match want {
                Some(backend) => {
                    assert_eq!(status, StatusCode::OK, "{host} on {port}: {body}");
                    assert_eq!(reached, [backend], "{host} on {port}");
                }
                None => {
                    assert_eq!(status, StatusCode::NOT_FOUND, "{host} on {port}: {body}");
                    assert!(reached.is_empty(), "{host} on {port} reached {reached:?}");
                }
            }
        }
    }
}

/// Many endpoints of one upstream turning unhealthy at once (more than a broadcast
/// channel would hold): every one's `gatekit_endpoint_healthy` gauge reaches 0 (the
/// upstream's event callback sets each gauge as its event is sent; none is missed).
#[tokio::test]
async fn a_burst_of_health_changes_larger_than_the_event_channel_reaches_every_gauge() {
    const DEAD: usize = 40;
    let a = EchoBackend::start("a").await;
    let mut dead = Vec::new();
    for _ in 0..DEAD {
        dead.push(gatekit_tests::closed_port().await);
    }
    let port = free_port();
    let slices: Vec<String> = std::iter::once(a.addr)
        .chain(dead.iter().copied())
        .enumerate()
        .map(|(i, addr)| {
            format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{ name: web-{i}, namespace: default, labels: {{ kubernetes.io/service-name: web }} }}\naddressType: IPv4\nports: [{{ name: http, port: {} }}]\nendpoints: [{{ addresses: [\"{}\"] }}]\n",
                addr.port(),
                addr.ip()
            )
        })
        .collect();
    let manifests = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: web, namespace: default }}\n\
         spec:\n  ports: [{{ name: http, port: 80 }}]\n---\n{}---\n\
         apiVersion: gatekit.io/v1alpha1\nkind: BackendPolicy\n\
         metadata: {{ name: hc, namespace: default }}\nspec:\n  \
         targetRefs: [{{ kind: Service, name: web }}]\n  healthCheck:\n    \
         active: {{ type: http, path: /, interval: 20ms, timeout: 200ms, unhealthyThreshold: 1 }}\n",
        slices.join("---\n")
    );
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("web.yaml", manifests),
        ("route.yaml", route("r", "/", "web")),
    ]);
    let wired = Wired::start(&dirs).await;
    eventually(
        Duration::from_secs(5),
        "every dead endpoint's gauge is 0",
        || async {
            let (_, m) = wired.admin("/metrics").await;
            dead.iter().all(|d| {
                let series = format!(
                    r#"gatekit_endpoint_healthy{{upstream="default/web:80",endpoint="{d}"}}"#
                );
                metric(&m, &series) == Some(0.0)
            })
        },
    )
    .await;
}

/// An EndpointSlice file rewritten alone reaches the balancer without a translation
/// (the `/config` generation stays), like a Kubernetes watch event: the new endpoint
/// gets the traffic and the old one none. Any other change still reloads.
#[tokio::test]
async fn an_endpoint_slice_file_change_updates_endpoints_without_a_reload() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let port = free_port();
    let slice = |addr: std::net::SocketAddr| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{ name: web-1, namespace: default, labels: {{ kubernetes.io/service-name: web }} }}\naddressType: IPv4\nports: [{{ name: http, port: {} }}]\nendpoints: [{{ addresses: [\"{}\"] }}]\n",
            addr.port(),
            addr.ip()
        )
    };
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        (
            "service.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: { name: web, namespace: default }\nspec:\n  ports: [{ name: http, port: 80 }]\n".to_owned(),
        ),
        ("slice.yaml", slice(a.addr)),
        ("route.yaml", route("r", "/", "web")),
    ]);
    let wired = Wired::start(&dirs).await;
    let client = TestClient::new();
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(client.get(&url).await.header("x-backend"), Some("a"));
    let generation = wired.config().await["generation"].clone();

    write_atomic(dir.path(), "slice.yaml", &slice(b.addr));
    eventually(Duration::from_secs(5), "b serves", || async {
        client.get(&url).await.header("x-backend") == Some("b")
    })
    .await;
    let hits_a = a.hits();
    for _ in 0..20 {
        assert_eq!(client.get(&url).await.header("x-backend"), Some("b"));
    }
    assert_eq!(a.hits(), hits_a, "the removed endpoint gets no request");
    let config = wired.config().await;
    assert_eq!(config["generation"], generation, "no reload: {config}");
    let endpoints = config["upstreams"]["default/web:80"]["endpoints"].to_string();
    assert!(endpoints.contains(&b.addr.to_string()), "{endpoints}");
    assert!(!endpoints.contains(&a.addr.to_string()), "{endpoints}");

    // A route change is a reload.
    write_atomic(dir.path(), "route.yaml", &route("r", "/v2", "web"));
    eventually(
        Duration::from_secs(5),
        "the route change is served",
        || async {
            client
                .get(&format!("http://127.0.0.1:{port}/v2"))
                .await
                .status
                == StatusCode::OK
                && client.get(&url).await.status == StatusCode::NOT_FOUND
        },
    )
    .await;
    // `/config` is rendered after the new table serves.
    eventually(
        Duration::from_secs(5),
        "/config shows the reload",
        || async { wired.config().await["generation"] != generation },
    )
    .await;
}

/// `/config` is rendered when asked for: between two requests with no reload, an
/// endpoint's health change shows (read from the live upstream, not from the last
/// reload); after a reload, the new routes and generation show.
#[tokio::test]
async fn config_is_rendered_when_asked_with_the_health_of_that_moment() {
    // A backend that answers 200 while `up`, 503 otherwise.
    let up = Arc::new(AtomicBool::new(true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let state = up.clone();
    let svc = tower::service_fn(move |_req: Request<Body>| {
        let up = state.load(Ordering::SeqCst);
        async move {
            let mut rsp = Response::new(Body::full("ok"));
            if !up {
                *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok::<_, Infallible>(rsp)
        }
    });
    tokio::spawn(gatekit_core::server::serve(
        listener,
        svc,
        std::future::pending(),
    ));
    let port = free_port();
    let policy = "---\napiVersion: gatekit.io/v1alpha1\nkind: BackendPolicy\nmetadata: { name: hc, namespace: default }\nspec:\n  targetRefs: [{ kind: Service, name: web }]\n  healthCheck:\n    active: { type: http, path: /, interval: 20ms, timeout: 200ms, unhealthyThreshold: 1, healthyThreshold: 1 }\n";
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("web.yaml", format!("{}{policy}", service("web", backend))),
        ("route.yaml", route("r", "/before", "web")),
    ]);
    let wired = Wired::start(&dirs).await;
    let healthy = |config: &serde_json::Value| {
        config["upstreams"]["default/web:80"]["endpoints"][0]["healthy"].as_bool()
    };
    let first = wired.config().await;
    let generation = first["generation"].clone();
    assert_eq!(healthy(&first), Some(true), "{first}");
    up.store(false, Ordering::SeqCst);
    eventually(
        Duration::from_secs(3),
        "/config shows the endpoint unhealthy",
        || async { healthy(&wired.config().await) == Some(false) },
    )
    .await;
    assert_eq!(wired.config().await["generation"], generation, "no reload");
    up.store(true, Ordering::SeqCst);
    eventually(
        Duration::from_secs(3),
        "/config shows the endpoint healthy again",
        || async { healthy(&wired.config().await) == Some(true) },
    )
    .await;

    write_atomic(dir.path(), "route.yaml", &route("r", "/after", "web"));
    eventually(
        Duration::from_secs(3),
        "/config shows the reload",
        || async {
            let config = wired.config().await;
            config["generation"] != generation && config.to_string().contains("\"/after\"")
        },
    )
    .await;
    let config = wired.config().await;
    assert!(!config.to_string().contains("\"/before\""), "{config}");
    assert_eq!(healthy(&config), Some(true), "{config}");
}

/// A route's request series are registered at its first request: absent from `/metrics`
/// before it, all status classes and the histogram after; they keep counting across a
/// reload that rebuilds the route, and are forgotten when the route is removed.
#[tokio::test]
async fn request_series_appear_at_the_first_request_and_keep_counting_across_reloads() {
    let a = EchoBackend::start("a").await;
    let port = free_port();
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        (
            "services.yaml",
            format!(
                "{}---\n{}",
                service("svc-a", a.addr),
                service("svc-b", a.addr)
            ),
        ),
        ("a.yaml", route("to-a", "/a", "svc-a")),
        ("b.yaml", route("to-b", "/b", "svc-b")),
    ]);
    let wired = Wired::start(&dirs).await;
    let ok = r#"gatekit_requests_total{route="default/to-a",backend="default/svc-a:80",status_class="2xx",error_kind="none"}"#;
    let (_, text) = wired.admin("/metrics").await;
    assert!(
        !text.contains(r#"route="default/to-a""#),
        "no series before a request:\n{text}"
    );

    let client = TestClient::new();
    let get = |path: &'static str| {
        let client = &client;
        async move {
            let rsp = client.get(&format!("http://127.0.0.1:{port}{path}")).await;
            assert_eq!(rsp.status, StatusCode::OK);
        }
    };
    get("/a").await;
    let (_, text) = wired.admin("/metrics").await;
    assert_eq!(metric(&text, ok), Some(1.0), "{text}");
    let class_4xx = ok.replace("2xx", "4xx");
    assert_eq!(metric(&text, &class_4xx), Some(0.0), "{text}");
    assert_eq!(
        metric(
            &text,
            r#"gatekit_request_duration_seconds_count{route="default/to-a"}"#
        ),
        Some(1.0)
    );
    assert!(
        !text.contains(r#"route="default/to-b""#),
        "to-b served nothing:\n{text}"
    );

    // An edit rebuilds the route: the same series keeps counting.
    let generation = wired.config().await["generation"].clone();
    write_atomic(dir.path(), "a.yaml", &route("to-a", "/a2", "svc-a"));
    eventually(Duration::from_secs(3), "the edit is served", || async {
        let config = wired.config().await;
        config["generation"] != generation && config.to_string().contains("\"/a2\"")
    })
    .await;
    get("/a2").await;
    let (_, text) = wired.admin("/metrics").await;
    assert_eq!(metric(&text, ok), Some(2.0), "{text}");

    // Removed: forgotten.
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    eventually(Duration::from_secs(3), "the removal is served", || async {
        !wired.config().await.to_string().contains("\"/a2\"")
    })
    .await;
    let (_, text) = wired.admin("/metrics").await;
    assert!(!text.contains(r#"route="default/to-a""#), "{text}");
}
