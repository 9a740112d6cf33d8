//! Metrics that explain failures, and the Grafana dashboard that uses them: a wired
//! gateway on real sockets, traffic (a proxied POST, a 404, a refused connection),
//! then `/metrics` read and every dashboard expression checked against it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use bytes::Bytes;
use gatekit_tests::wired::{Wired, free_port, gateway_http, route, service};
use gatekit_tests::{EchoBackend, TestClient, closed_port};
use http::{Request, StatusCode};
use http_body_util::Full;

fn dir_with(files: &[(&str, String)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let dirs = vec![dir.path().to_path_buf()];
    (dir, dirs)
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A gateway that served a proxied POST, a 404 and a refused connection; its
/// `/metrics` text.
async fn metrics_after_traffic() -> (String, u16, EchoBackend) {
    let backend = EchoBackend::start("a").await;
    let dead = closed_port().await;
    let port = free_port();
    let (dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        (
            "services.yaml",
            format!(
                "{}---\n{}",
                service("svc-a", backend.addr),
                service("svc-dead", dead)
            ),
        ),
        (
            "routes.yaml",
            format!(
                "{}---\n{}",
                route("to-a", "/a", "svc-a"),
                route("to-dead", "/d", "svc-dead")
            ),
        ),
    ]);
    let wired = Wired::start(&dirs).await;
    let client = TestClient::new();
    let rsp = client
        .send(
            Request::post(format!("http://127.0.0.1:{port}/a"))
                .body(Full::new(Bytes::from_static(b"0123456789")))
                .unwrap(),
        )
        .await;
    assert_eq!(rsp.status, StatusCode::OK);
    let rsp = client.get(&format!("http://127.0.0.1:{port}/none")).await;
    assert_eq!(rsp.status, StatusCode::NOT_FOUND);
    let rsp = client.get(&format!("http://127.0.0.1:{port}/d")).await;
    assert_eq!(rsp.status, StatusCode::SERVICE_UNAVAILABLE);
    // A short test may not have used one clock tick of CPU (10 ms) yet: work until the
    // kernel counts two, so that the scrape's CPU time has something to show.
    while own_cpu_ticks() < 2 {
        std::hint::black_box((0..10_000u64).sum::<u64>());
    }
    let (_, text) = wired.admin("/metrics").await;
    drop(dir);
    (text, port, backend)
}

/// This process's user and system CPU time so far, in clock ticks (`/proc/self/stat`
/// fields 14 and 15).
fn own_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn requests_are_counted_by_error_kind_with_bytes_attempts_build_and_process() {
    let (text, port, _backend) = metrics_after_traffic().await;
    for (series, expected) in [
        (
            r#"gatekit_requests_total{route="default/to-a",backend="default/svc-a:80",status_class="2xx",error_kind="none"}"#,
            1.0,
        ),
        (
            r#"gatekit_requests_total{route="(unmatched)",backend="(unmatched)",status_class="4xx",error_kind="no-route"}"#,
            1.0,
        ),
        (
            r#"gatekit_requests_total{route="default/to-dead",backend="default/svc-dead:80",status_class="5xx",error_kind="upstream-connect"}"#,
            1.0,
        ),
        (
            &format!(r#"gatekit_request_body_bytes_total{{port="{port}"}}"#),
            10.0,
        ),
        (
            r#"gatekit_upstream_attempt_duration_seconds_count{backend="default/svc-a:80"}"#,
            1.0,
        ),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
    // The echo's 10 bytes and the 404's and 503's reasons.
    let out = value(
        &text,
        &format!(r#"gatekit_response_body_bytes_total{{port="{port}"}}"#),
    )
    .unwrap();
    assert!(out > 10.0, "{out}");
    // The refused endpoint was attempted (the default retry may add one).
    assert!(
        value(
            &text,
            r#"gatekit_upstream_attempt_duration_seconds_count{backend="default/svc-dead:80"}"#
        )
        .unwrap()
            >= 1.0
    );
    let build = text
        .lines()
        .find(|l| l.starts_with("gatekit_build_info{"))
        .unwrap();
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.ends_with(" 1"),
        "{build}"
    );
    assert!(value(&text, "gatekit_process_resident_memory_bytes").unwrap() > 1e6);
    assert!(value(&text, "gatekit_process_open_fds").unwrap() > 3.0);
    assert!(value(&text, "gatekit_process_cpu_seconds_total").unwrap() >= 0.02);
    let started = value(&text, "gatekit_process_start_time_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now + 1.0 && started > now - 3600.0,
        "{started} vs {now}"
    );
    assert!(
        text.contains("# UNIT gatekit_endpoint_update_seconds seconds"),
        "{text}"
    );
}

// === the dashboard ===

/// The metric names an expression refers to, after checking that it tokenises as
/// PromQL: identifiers, numbers, strings, durations `[5m]`, label matchers, balanced
/// brackets. (No full PromQL grammar: gatekit has no PromQL parser dependency.)
fn metric_names(expr: &str) -> Result<Vec<String>, String> {
    const FUNCTIONS: &[&str] = &[
        "sum",
        "by",
        "rate",
        "increase",
        "histogram_quantile",
        "max",
        "min",
        "time",
        "without",
    ];
    let b = expr.as_bytes();
    let mut names = Vec::new();
    let mut stack = Vec::new();
    // Inside `by (...)` / `without (...)`: words are labels.
    let mut grouping = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' => i += 1,
            b'(' | b'[' => {
                stack.push(c);
                if c == b'[' {
                    // A range: digits then a unit.
                    let end = expr[i..].find(']').ok_or("unclosed [")? + i;
                    let range = &expr[i + 1..end];
                    let unit = range.trim_start_matches(|c: char| c.is_ascii_digit());
                    if unit.len() == range.len() || !["s", "m", "h", "d"].contains(&unit) {
                        return Err(format!("bad range [{range}]"));
                    }
                    stack.pop();
                    i = end + 1;
                } else {
                    i += 1;
                }
            }
            b')' => {
                grouping = false;
                if stack.pop() != Some(b'(') {
                    return Err("unbalanced )".into());
                }
                i += 1;
            }
            b'{' => {
                let end = expr[i..].find('}').ok_or("unclosed {")? + i;
                for matcher in expr[i + 1..end].split(',').filter(|m| !m.trim().is_empty()) {
                    let op = ["!=", "=~", "!~", "="]
                        .into_iter()
                        .find(|op| matcher.contains(op))
                        .ok_or(format!("no operator in {matcher}"))?;
                    let (label, val) = matcher.split_once(op).unwrap();
                    let label = label.trim();
                    let val = val.trim();
                    if label.is_empty()
                        || !label
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'_')
                        || !(val.len() >= 2 && val.starts_with('"') && val.ends_with('"'))
                    {
                        return Err(format!("bad matcher {matcher}"));
                    }
                }
                i = end + 1;
            }
            b'+' | b'-' | b'*' | b'/' | b',' => i += 1,
            b'0'..=b'9' | b'.' => {
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &expr[start..i];
                if grouping {
                    // A label of `by (...)`.
                } else if word.starts_with("gatekit_") {
                    names.push(word.to_owned());
                } else if word == "by" || word == "without" {
                    if !expr[i..].trim_start().starts_with('(') {
                        return Err(format!("{word} without a label list"));
                    }
                    grouping = true;
                } else if !FUNCTIONS.contains(&word) {
                    return Err(format!("unknown word {word}"));
                }
            }
            _ => return Err(format!("unexpected {:?}", char::from(c))),
        }
    }
    if !stack.is_empty() {
        return Err("unbalanced (".into());
    }
    Ok(names)
}

/// The family a sample name belongs to (`_total`, `_bucket`, `_count`, `_sum` off).
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_count", "_sum"]
        .into_iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

#[tokio::test]
async fn every_dashboard_expression_parses_and_names_exported_metrics() {
    let (text, _, _backend) = metrics_after_traffic().await;
    let declared: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let sampled: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert!(!names.is_empty(), "{expr} names no gatekit metric");
            for name in names {
                let fam = family(&name);
                assert!(
                    declared.contains(fam) || declared.contains(name.as_str()),
                    "{expr}: {name} is not a metric gatekit exports:\n{text}"
                );
                // A family with samples must have this exact sample name.
                let has_samples = sampled.iter().any(|s| family(s) == fam);
                assert!(
                    !has_samples || sampled.contains(name.as_str()),
                    "{expr}: no sample named {name}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} names checked");
    // The checker itself refuses what is not PromQL or names nothing.
    assert!(metric_names("sum(rate(gatekit_requests_total[5q]))").is_err());
    assert!(metric_names("sum(rate(gatekit_requests_total[5m])").is_err());
    assert!(metric_names(r#"gatekit_requests_total{route=unquoted}"#).is_err());
    assert!(metric_names("sum by route (gatekit_requests_total)").is_err());
    assert!(metric_names("nonsense(gatekit_requests_total)").is_err());
    assert_eq!(
        metric_names("rate(gatekit_nope_total[5m])").unwrap(),
        vec!["gatekit_nope_total".to_owned()]
    );
}
