//! A Service port's `appProtocol` through the wired gateway (`gatekit run`'s library entry
//! point): the values gatekit speaks reach real backends in that protocol; `https`,
//! `kubernetes.io/wss` and unknown values are refused (route condition, 500, no byte
//! sent to the backend, no health probe either) instead of being sent cleartext. Under a
//! BackendTLSPolicy, `https` and `kubernetes.io/wss` are served over TLS: see
//! `tests/backend_tls.rs`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{Wired, eventually, free_port, gateway_http, get_raw, ws_echo};
use http::StatusCode;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn dir_with(files: &[(&str, String)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let dirs = vec![dir.path().to_path_buf()];
    (dir, dirs)
}

/// A Service `name` whose port 80 has `app_protocol` (none when `None`), with one
/// endpoint at `addr`, and an HTTPRoute sending `/<name>` to it.
fn service_and_route(name: &str, app_protocol: Option<&str>, addr: SocketAddr) -> String {
    let app = app_protocol
        .map(|p| format!(", appProtocol: \"{p}\""))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{ name: {name}, namespace: default }}
spec:
  ports: [{{ name: http, port: 80{app} }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: {name}-1, namespace: default, labels: {{ kubernetes.io/service-name: {name} }} }}
addressType: IPv4
ports: [{{ name: http, port: {port} }}]
endpoints: [{{ addresses: ["{ip}"] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: {name}, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: "/{name}" }} }}]
    backendRefs: [{{ name: {name}, port: 80 }}]
"#,
        port = addr.port(),
        ip = addr.ip()
    )
}

/// A TCP listener that counts the connections it accepts and closes them.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn every_served_app_protocol_reaches_its_backend_in_that_protocol() {
    // (Service name, appProtocol, spoken over HTTP/2?)
    let cases = [
        ("none", None, false),
        ("http", Some("http"), false),
        ("http-upper", Some("HTTP"), false),
        ("ws", Some("kubernetes.io/ws"), false),
        ("h2c", Some("h2c"), true),
        ("k8s-h2c", Some("kubernetes.io/h2c"), true),
        ("grpc", Some("grpc"), true),
    ];
    let port = free_port();
    let mut files = vec![("gateway.yaml".to_owned(), gateway_http(port))];
    let mut backends = Vec::new();
    for (name, app, _) in cases {
        let b = EchoBackend::start(name).await;
        files.push((format!("{name}.yaml"), service_and_route(name, app, b.addr)));
        backends.push(b);
    }
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let (_dir, dirs) = dir_with(&files);
    let wired = Wired::start(&dirs).await;
    let config = wired.config().await;
    for ((name, app, h2), backend) in cases.iter().zip(&mut backends) {
        let (status, _) = get_raw(
            ([127, 0, 0, 1], port).into(),
            &format!("/{name}/x"),
            "app.example",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{app:?}");
        let seen = backend.next_seen().await;
        // HTTP/2 carries the authority in the URI (`:authority`), HTTP/1.1 in `Host`.
        assert_eq!(
            seen.uri.authority().is_some(),
            *h2,
            "{app:?}: {:?}",
            seen.uri
        );
        assert_eq!(seen.uri.path(), format!("/{name}/x"));
        assert_eq!(
            config["upstreams"][format!("default/{name}:80")]["protocol"],
            if *h2 { "h2c" } else { "http/1.1" },
            "{app:?}: {config}"
        );
    }
}

#[tokio::test]
async fn a_websocket_upgrade_works_through_a_kubernetes_io_ws_port() {
    let upstream = ws_echo().await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        (
            "ws.yaml",
            service_and_route("chat", Some("kubernetes.io/ws"), upstream),
        ),
    ]);
    let _wired = Wired::start(&dirs).await;
    let (mut ws, rsp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/chat")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(rsp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..3 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
}

#[tokio::test]
async fn tls_and_unknown_app_protocols_are_refused_never_sent_cleartext() {
    let refused = ["https", "kubernetes.io/wss", "example.com/custom"];
    let port = free_port();
    let mut files = vec![("gateway.yaml".to_owned(), gateway_http(port))];
    let mut counters = Vec::new();
    for (i, app) in refused.iter().enumerate() {
        let (addr, accepted) = counting_listener().await;
        files.push((
            format!("tls{i}.yaml"),
            service_and_route(&format!("tls{i}"), Some(app), addr),
        ));
        counters.push(accepted);
    }
    // A cleartext Service beside them, health-checked by the same policy: its probes
    // are the event that shows the checker ran.
    let (plain_addr, plain_accepted) = counting_listener().await;
    files.push((
        "plain.yaml".to_owned(),
        service_and_route("plain", None, plain_addr),
    ));
    files.push((
        "policy.yaml".to_owned(),
        r#"apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: hc, namespace: default }
spec:
  targetRefs: [{ kind: Service, name: plain }, { kind: Service, name: tls0 }, { kind: Service, name: tls1 }, { kind: Service, name: tls2 }]
  healthCheck:
    active: { type: tcp, interval: 10ms, timeout: 200ms }
"#
        .to_owned(),
    ));
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let (_dir, dirs) = dir_with(&files);
    let wired = Wired::start(&dirs).await;

    for (i, app) in refused.iter().enumerate() {
        let rsp = gatekit_tests::TestClient::new()
            .get(&format!("http://127.0.0.1:{port}/tls{i}/x"))
            .await;
        assert_eq!(rsp.status, StatusCode::INTERNAL_SERVER_ERROR, "{app}");
        assert_eq!(
            rsp.header("x-gatekit-error"),
            Some("invalid-backend"),
            "{app}"
        );
    }
    let config = wired.config().await;
    let resources = config["resources"].to_string();
    for (i, app) in refused.iter().enumerate() {
        assert!(
            config["upstreams"]
                .get(format!("default/tls{i}:80"))
                .is_none(),
            "{app}: {config}"
        );
        let needle = format!("Service default/tls{i} port 80 has appProtocol \\\"{app}\\\"");
        assert!(resources.contains(&needle), "{needle}: {resources}");
    }
    assert!(resources.contains("UnsupportedProtocol"), "{resources}");
    // The checker probed the cleartext Service a few times ...
    eventually(
        Duration::from_secs(5),
        "the plain Service is probed",
        || {
            let n = plain_accepted.load(Ordering::SeqCst);
            async move { n >= 5 }
        },
    )
    .await;
    // ... and never opened a connection to a port that asked for TLS.
    for (app, accepted) in refused.iter().zip(&counters) {
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "{app}");
    }
}
