//! The access log and the request id end to end: the wired gateway on real sockets,
//! echo backends, lines captured from the log's sink.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use bytes::Bytes;
use gatekit_bin::Settings;
use gatekit_gateway::{AccessLogField, AccessLogFormat, AccessLogSettings, AccessLogSink};
use gatekit_tests::wired::{Ca, CaExt, Wired, free_port, route, secret, service, tls_get};
use gatekit_tests::{EchoBackend, TestClient, closed_port};
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::sync::mpsc;

fn dir_with(files: &[(&str, String)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let dirs = vec![dir.path().to_path_buf()];
    (dir, dirs)
}

/// A Gateway `gw` with an HTTP listener on each of `ports`.
fn gateway_on(ports: &[u16]) -> String {
    let listeners: Vec<String> = ports
        .iter()
        .map(|p| format!("{{ name: http-{p}, port: {p}, protocol: HTTP }}"))
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{ name: gw, namespace: default }}\nspec:\n  gatewayClassName: gatekit\n  listeners: [{}]\n",
        listeners.join(", ")
    )
}

/// Settings whose access log is `log`, its lines sent to the returned receiver.
fn settings_with(log: AccessLogSettings) -> (Settings, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut settings = Settings::default();
    settings.log.access_log = log.with_sink(AccessLogSink::from_fn(move |line| {
        let _ = tx.send(line.to_owned());
    }));
    (settings, rx)
}

/// The line written for the last response (written before the response's last byte
/// left, so it is there once the client has read the response).
fn take_line(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    rx.try_recv().expect("no access log line for the response")
}

#[tokio::test]
async fn json_line_carries_the_request_id_the_client_and_backend_saw_and_the_upstream() {
    let mut backend = EchoBackend::start("a").await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_on(&[port])),
        ("services.yaml", service("svc-a", backend.addr)),
        ("routes.yaml", route("to-a", "/a", "svc-a")),
    ]);
    let (settings, mut lines) = settings_with(AccessLogSettings::on());
    let wired = Wired::start_with(&dirs, settings).await;
    let client = TestClient::new();

    let body = Bytes::from_static(b"hello, gateway");
    let rsp = client
        .send(
            Request::post(format!("http://127.0.0.1:{port}/a/x?q=1"))
                .header("host", "api.example")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(Full::new(body.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(rsp.status, StatusCode::OK);
    let id = rsp
        .header("x-request-id")
        .expect("request id returned")
        .to_owned();
    assert_eq!(id.len(), 32, "a generated id: {id}");
    let seen = backend.next_seen().await;
    assert_eq!(
        seen.headers["x-request-id"],
        id.as_str(),
        "the backend saw the same id"
    );

    let line = take_line(&mut lines);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["request_id"], id.as_str(), "{line}");
    assert_eq!(v["upstream"], backend.addr.to_string(), "{line}");
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["status"], 200);
    assert_eq!(v["method"], "POST");
    assert_eq!(v["host"], "api.example");
    assert_eq!(v["path"], "/a/x?q=1");
    assert_eq!(v["route"], "default/to-a");
    assert_eq!(v["backend"], "default/svc-a:80");
    assert_eq!(v["bytes_in"], body.len());
    assert_eq!(v["bytes_out"], body.len(), "the echo's body");
    assert_eq!(v["error_kind"], serde_json::Value::Null);
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        v["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{line}"
    );
    assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["time"].as_str().unwrap().ends_with('Z'), "{line}");

    // A client's own id is kept, and returned.
    let rsp = client
        .send(
            Request::get(format!("http://127.0.0.1:{port}/a"))
                .header("x-request-id", "client-chosen-1")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(rsp.header("x-request-id"), Some("client-chosen-1"));
    let v: serde_json::Value = serde_json::from_str(&take_line(&mut lines)).unwrap();
    assert_eq!(v["request_id"], "client-chosen-1");
    drop(wired);
}

#[tokio::test]
async fn upstream_connect_failure_is_logged_and_counted_by_error_kind() {
    let dead = closed_port().await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_on(&[port])),
        ("services.yaml", service("svc-dead", dead)),
        ("routes.yaml", route("to-dead", "/d", "svc-dead")),
    ]);
    let (settings, mut lines) = settings_with(AccessLogSettings::on());
    let wired = Wired::start_with(&dirs, settings).await;
    let rsp = TestClient::new()
        .get(&format!("http://127.0.0.1:{port}/d"))
        .await;
    assert_eq!(rsp.status, StatusCode::SERVICE_UNAVAILABLE);
    let id = rsp.header("x-request-id").unwrap().to_owned();

    let line = take_line(&mut lines);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error_kind"], "upstream-connect", "{line}");
    assert_eq!(v["status"], 503);
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(v["upstream"], dead.to_string(), "{line}");
    assert!(v["attempts"].as_u64().unwrap() >= 1, "{line}");
    assert_eq!(v["route"], "default/to-dead");

    let (_, metrics) = wired.admin("/metrics").await;
    let counted = metrics
        .lines()
        .find(|l| {
            l.starts_with(r#"gatekit_requests_total{route="default/to-dead",backend="default/svc-dead:80",status_class="5xx",error_kind="upstream-connect"}"#)
        })
        .unwrap_or_else(|| panic!("no connect series in\n{metrics}"));
    assert!(counted.ends_with(" 1"), "{counted}");
}

#[tokio::test]
async fn text_format_with_a_field_subset() {
    let backend = EchoBackend::start("a").await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_on(&[port])),
        ("services.yaml", service("svc-a", backend.addr)),
        ("routes.yaml", route("to-a", "/a", "svc-a")),
    ]);
    let log = AccessLogSettings::on()
        .with_format(AccessLogFormat::Text)
        .with_fields([
            AccessLogField::Method,
            AccessLogField::Path,
            AccessLogField::Status,
            AccessLogField::RequestId,
            AccessLogField::ErrorKind,
        ]);
    let (settings, mut lines) = settings_with(log);
    let _wired = Wired::start_with(&dirs, settings).await;
    let rsp = TestClient::new()
        .send(
            Request::get(format!("http://127.0.0.1:{port}/a/b"))
                .header("x-request-id", "id with space")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(rsp.status, StatusCode::OK);
    assert_eq!(
        take_line(&mut lines),
        "method=GET path=/a/b status=200 request_id=\"id with space\" error_kind=-\n"
    );
    // No route: the listener's series and the error kind.
    let rsp = TestClient::new()
        .send(
            Request::get(format!("http://127.0.0.1:{port}/nothing"))
                .header("x-request-id", "r2")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(rsp.status, StatusCode::NOT_FOUND);
    assert_eq!(
        take_line(&mut lines),
        "method=GET path=/nothing status=404 request_id=r2 error_kind=no-route\n"
    );
}

#[tokio::test]
async fn the_log_is_switched_off_per_listener_port_and_the_id_still_returned() {
    let backend = EchoBackend::start("a").await;
    let (on, off) = (free_port(), free_port());
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_on(&[on, off])),
        ("services.yaml", service("svc-a", backend.addr)),
        ("routes.yaml", route("to-a", "/a", "svc-a")),
    ]);
    let (settings, mut lines) = settings_with(AccessLogSettings::on().with_port(off, false));
    let _wired = Wired::start_with(&dirs, settings).await;
    let client = TestClient::new();
    let quiet = client.get(&format!("http://127.0.0.1:{off}/a/quiet")).await;
    assert_eq!(quiet.status, StatusCode::OK);
    assert_eq!(quiet.header("x-request-id").map(str::len), Some(32));
    let loud = client.get(&format!("http://127.0.0.1:{on}/a/loud")).await;
    assert_eq!(loud.status, StatusCode::OK);
    let line = take_line(&mut lines);
    assert!(line.contains("\"path\":\"/a/loud\""), "{line}");
    assert!(lines.try_recv().is_err(), "the silenced port logged a line");
}

#[tokio::test]
async fn a_tls_request_logs_its_server_name() {
    let backend = EchoBackend::start("a").await;
    let ca = Ca::new();
    let (cert, key, _) = ca.leaf("a.example.com");
    let port = free_port();
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{ name: gw, namespace: default }}\nspec:\n  gatewayClassName: gatekit\n  listeners:\n  - name: a\n    port: {port}\n    protocol: HTTPS\n    hostname: a.example.com\n    tls: {{ mode: Terminate, certificateRefs: [{{ name: cert-a }}] }}\n"
    );
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway),
        ("services.yaml", service("svc-a", backend.addr)),
        ("route.yaml", route("r", "/", "svc-a")),
        ("secret.yaml", secret("cert-a", &cert, &key)),
    ]);
    let log = AccessLogSettings::on().with_fields([
        AccessLogField::Host,
        AccessLogField::Status,
        AccessLogField::TlsSni,
        AccessLogField::TlsVersion,
        AccessLogField::Protocol,
    ]);
    let (settings, mut lines) = settings_with(log);
    let _wired = Wired::start_with(&dirs, settings).await;
    let addr = ([127, 0, 0, 1], port).into();
    let (_, status, _) = tls_get(&ca.connector(), addr, "a.example.com", "/x").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        take_line(&mut lines),
        "{\"host\":\"a.example.com\",\"status\":200,\"tls_sni\":\"a.example.com\",\"tls_version\":\"TLSv1.3\",\"protocol\":\"HTTP/1.1\"}\n"
    );
}
