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
