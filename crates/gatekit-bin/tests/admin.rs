//! The admin API over real sockets: health, readiness, metrics text, config dump.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use gatekit_bin::{Phase, Transport};
use http::StatusCode;
use support::{get, hello_service, process, settings};

#[tokio::test]
async fn healthz_and_readyz_follow_the_process() {
    let process = process(settings()).await;
    let admin = process.admin_addr();

    assert_eq!(
        get(admin, "/healthz").await,
        (StatusCode::OK, "ok\n".into())
    );
    assert_eq!(
        get(admin, "/readyz").await,
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into())
    );

    process.readiness().mark_served();
    assert_eq!(
        get(admin, "/readyz").await,
        (StatusCode::OK, "ready\n".into())
    );
    assert_eq!(get(admin, "/healthz").await.0, StatusCode::OK);

    // A phase never goes back: once draining, serving a snapshot does not make it ready.
    process.readiness().advance(Phase::NotReady);
    process.readiness().mark_served();
    assert_eq!(
        get(admin, "/readyz").await,
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
    );
    assert_eq!(get(admin, "/nope").await.0, StatusCode::NOT_FOUND);
}

/// Checks the OpenMetrics text line by line: comments are `# TYPE|HELP|UNIT|EOF`, samples
/// are `name{labels} value` with a numeric value; it ends with `# EOF`. Returns the
/// declared families.
fn parse_openmetrics(text: &str) -> Vec<(String, String)> {
    let mut families = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no EOF marker");
    for line in &lines {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.push((name.to_owned(), kind.to_owned()));
        } else if line.starts_with("# HELP ") || line.starts_with("# UNIT ") || *line == "# EOF" {
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let name = series.split('{').next().unwrap();
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "bad labels in {line:?}"
                );
            }
        }
    }
    families
}

#[tokio::test]
async fn metrics_text_parses_and_has_every_family() {
    let mut process = process(settings()).await;
    let admin = process.admin_addr();
    let metrics = process.metrics().clone();
    let handle = metrics.request_metrics("default/web", "web:80");
    let svc = tower::Layer::layer(&gatekit_bin::MetricsLayer::new(handle), hello_service());
    let addr = process
        .listeners_mut()
        .add(0, Transport::Plain, svc)
        .await
        .unwrap();
    metrics.record_reload(true);
    metrics.set_config_generation(3);
    metrics
        .endpoint_health("web", "10.0.0.1:80".parse().unwrap())
        .set(1);

    // A real request through the listener, recorded by the MetricsLayer.
    assert_eq!(get(addr, "/").await.0, StatusCode::OK);

    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let families = parse_openmetrics(&text);
    for (name, kind) in [
        ("gatekit_requests", "counter"),
        ("gatekit_request_duration_seconds", "histogram"),
        ("gatekit_active_connections", "gauge"),
        ("gatekit_connections_rejected", "counter"),
        ("gatekit_endpoint_healthy", "gauge"),
        ("gatekit_reloads", "counter"),
        ("gatekit_config_generation", "gauge"),
    ] {
        assert!(
            families.contains(&(name.to_owned(), kind.to_owned())),
            "no {kind} family {name} in\n{text}"
        );
    }
    for line in [
        r#"gatekit_requests_total{route="default/web",backend="web:80",status_class="2xx",error_kind="none"} 1"#,
        r#"gatekit_request_duration_seconds_count{route="default/web"} 1"#,
        r#"gatekit_reloads_total{result="ok"} 1"#,
        "gatekit_config_generation 3",
        r#"gatekit_endpoint_healthy{upstream="web",endpoint="10.0.0.1:80"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // The listener's port appears in the connection gauge.
    assert!(text.contains(&format!(
        "gatekit_active_connections{{port=\"{}\"}}",
        addr.port()
    )));
}

#[tokio::test]
async fn config_serves_what_was_published() {
    let process = process(settings()).await;
    let admin = process.admin_addr();
    let (status, body) = get(admin, "/config").await;
    assert_eq!((status, body.trim()), (StatusCode::OK, "null"));

    let published = serde_json::json!({
        "generation": 2,
        "gateways": [{"name": "default/edge", "conditions": [{"type": "Programmed", "status": "True"}]}],
    });
    process.config_dump().publish(published.clone());
    let (status, body) = get(admin, "/config").await;
    assert_eq!(status, StatusCode::OK);
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got, published);
}

#[tokio::test]
async fn admin_stops_with_the_process() {
    let process = process(settings()).await;
    let admin = process.admin_addr();
    let outcome = tokio::time::timeout(Duration::from_secs(5), process.shutdown())
        .await
        .unwrap();
    assert_eq!(outcome, gatekit_bin::DrainOutcome::Complete);
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
}

/// A GET with an optional `Authorization` header: (status, `WWW-Authenticate`, body).
async fn get_with_auth(
    addr: std::net::SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    use http_body_util::{BodyExt, Empty};
    let mut sender = support::http1(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    let mut req = http::Request::get(path).header("host", "admin");
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let resp = sender
        .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, challenge, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_probe_address_serves_probes_and_metrics_but_not_config() {
    let mut s = settings();
    s.admin.probe_address = Some("127.0.0.1:0".parse().unwrap());
    let process = process(s).await;
    let probes = process.probe_addr().unwrap();
    let admin = process.admin_addr();
    assert_ne!(probes, admin);
    process.readiness().mark_served();
    process
        .config_dump()
        .publish(serde_json::json!({"generation": 1}));

    assert_eq!(
        get(probes, "/healthz").await,
        (StatusCode::OK, "ok\n".into())
    );
    assert_eq!(
        get(probes, "/readyz").await,
        (StatusCode::OK, "ready\n".into())
    );
    let (status, text) = get(probes, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.ends_with("# EOF\n"), "{text}");
    for path in ["/config", "/fleet", "/nope"] {
        let (status, body) = get(probes, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !body.contains("generation") && !body.contains("/config"),
            "{body}"
        );
    }
    // The operational endpoints stay on the (loopback) admin address.
    let (status, body) = get(admin, "/config").await;
    assert_eq!(status, StatusCode::OK);
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got, serde_json::json!({"generation": 1}));
    assert_eq!(get(admin, "/healthz").await.0, StatusCode::OK);

    // Both stop with the process.
    process.shutdown().await;
    assert!(tokio::net::TcpStream::connect(probes).await.is_err());
}

#[tokio::test]
async fn a_non_loopback_admin_address_is_refused_without_a_token() {
    let mut s = settings();
    s.admin.address = "0.0.0.0:0".parse().unwrap();
    let err = gatekit_bin::Process::start(s, "127.0.0.1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("admin.tokenFile"), "{err}");
}

#[tokio::test]
async fn with_a_token_config_and_fleet_need_it_and_probes_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken-abc\n").unwrap();
    let mut s = settings();
    // Every interface: reachable off loopback, allowed because of the token.
    s.admin.address = "0.0.0.0:0".parse().unwrap();
    s.admin.token_file = Some(token_file);
    let process = process(s).await;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], process.admin_addr().port()));
    process
        .config_dump()
        .publish(serde_json::json!({"generation": 7}));

    for path in ["/config", "/fleet"] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer t0ken-ab"),
            Some("Basic t0ken-abc"),
            Some("t0ken-abc"),
        ] {
            let (status, challenge, body) = get_with_auth(admin, path, auth).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {auth:?}");
            assert_eq!(challenge.as_deref(), Some("Bearer"));
            assert_eq!(body, "", "no detail in a 401");
        }
    }
    let (status, _, body) = get_with_auth(admin, "/config", Some("Bearer t0ken-abc")).await;
    assert_eq!(status, StatusCode::OK);
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got, serde_json::json!({"generation": 7}));
    let (status, _, _) = get_with_auth(admin, "/fleet", Some("bearer t0ken-abc")).await;
    assert_eq!(status, StatusCode::OK);
    // Probes and metrics need no token.
    assert_eq!(get(admin, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(admin, "/metrics").await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_unreadable_or_empty_token_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.admin.token_file = Some(dir.path().join("missing"));
    let err = gatekit_bin::Process::start(s.clone(), "127.0.0.1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let empty = dir.path().join("blank");
    std::fs::write(&empty, "\n").unwrap();
    s.admin.token_file = Some(empty);
    let err = gatekit_bin::Process::start(s, "127.0.0.1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}
