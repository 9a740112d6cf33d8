//! Gateway API HTTPRoute conformance features proven end to end through the wired
//! gateway (manifests in a directory, real echo backends on loopback, a real HTTP
//! client), each test named after its feature and asserting what the spec says MUST
//! happen:
//!
//! - `HTTPRoute303RedirectStatusCode`, `HTTPRoute307RedirectStatusCode`: a
//!   RequestRedirect with that `statusCode` answers it, with the Location the spec
//!   derives, and the backend is never reached.
//! - `HTTPRoutePortRedirect`: a redirect `port` appears in the Location, except a
//!   scheme's well-known port, which is left out.
//! - `HTTPRouteBackendRequestHeaderModification`: a RequestHeaderModifier on a
//!   backendRef sets, adds and removes the headers that backend receives, and only it.
//! - `HTTPRouteNamedRouteRule`: named rules route as unnamed ones and keep their names.
//! - `HTTPRouteRequestMultipleMirrors`: every listed mirror receives a copy.
//! - `HTTPRouteRequestPercentageMirror`: `percent` and `fraction` sample requests.
#![allow(clippy::unwrap_used, missing_docs)]

use std::future::Future;
use std::time::Duration;

use gatekit_tests::wired::{Wired, free_port, gateway_http, service};
use gatekit_tests::{EchoBackend, TestClient};
use http::{Request, StatusCode};
use http_body_util::Full;

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("not within 10 s")
}

/// Writes the Gateway on `port` and `docs` to a directory and starts the gateway.
async fn wired(port: u16, docs: &[String]) -> (Wired, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![gateway_http(port)];
    all.extend_from_slice(docs);
    std::fs::write(dir.path().join("all.yaml"), all.join("---\n")).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    (wired, dir)
}

/// An HTTPRoute `name` on `gw` with `rules` (YAML list items, two-space indented).
fn route(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  parentRefs: [{{ name: gw }}]\n  rules:\n{rules}"
    )
}

fn redirect_rule(path: &str, redirect: &str) -> String {
    format!(
        "  - matches: [{{ path: {{ type: PathPrefix, value: {path} }} }}]\n    \
         filters: [{{ type: RequestRedirect, requestRedirect: {redirect} }}]\n    \
         backendRefs: [{{ name: v1, port: 80 }}]\n"
    )
}

async fn redirect_status_code(code: u16) {
    let v1 = EchoBackend::start("v1").await;
    let port = free_port();
    let rules = [
        redirect_rule("/status", &format!("{{ statusCode: {code} }}")),
        redirect_rule(
            "/host",
            &format!("{{ hostname: example.org, statusCode: {code} }}"),
        ),
    ]
    .concat();
    let (_wired, _dir) = wired(port, &[service("v1", v1.addr), route("r", &rules)]).await;
    let client = TestClient::new();
    let rsp = client
        .get(&format!("http://127.0.0.1:{port}/status?a=1"))
        .await;
    assert_eq!(rsp.status.as_u16(), code);
    assert_eq!(
        rsp.header("location"),
        Some(format!("http://127.0.0.1:{port}/status?a=1").as_str())
    );
    let rsp = client.get(&format!("http://127.0.0.1:{port}/host/x")).await;
    assert_eq!(rsp.status.as_u16(), code);
    assert_eq!(
        rsp.header("location"),
        Some(format!("http://example.org:{port}/host/x").as_str())
    );
    assert_eq!(v1.hits(), 0, "a redirect never reaches the backend");
}

#[tokio::test]
async fn httproute_303_redirect_status_code_answers_303() {
    redirect_status_code(303).await;
}

#[tokio::test]
async fn httproute_307_redirect_status_code_answers_307() {
    redirect_status_code(307).await;
}

#[tokio::test]
async fn httproute_port_redirect_puts_the_port_in_the_location_unless_well_known() {
    let v1 = EchoBackend::start("v1").await;
    let port = free_port();
    let rules = [
        redirect_rule("/port", "{ port: 8083 }"),
        redirect_rule("/port-and-host", "{ hostname: example.org, port: 8083 }"),
        redirect_rule("/well-known", "{ port: 80 }"),
        redirect_rule("/scheme-and-port", "{ scheme: https, port: 443 }"),
        redirect_rule("/scheme-other-port", "{ scheme: https, port: 8443 }"),
    ]
    .concat();
    let (_wired, _dir) = wired(port, &[service("v1", v1.addr), route("r", &rules)]).await;
    let client = TestClient::new();
    for (path, want) in [
        ("/port", "http://127.0.0.1:8083/port"),
        ("/port-and-host", "http://example.org:8083/port-and-host"),
        ("/well-known", "http://127.0.0.1/well-known"),
        ("/scheme-and-port", "https://127.0.0.1/scheme-and-port"),
        (
            "/scheme-other-port",
            "https://127.0.0.1:8443/scheme-other-port",
        ),
    ] {
        let rsp = client.get(&format!("http://127.0.0.1:{port}{path}")).await;
        assert_eq!(rsp.status, StatusCode::FOUND, "{path}");
        assert_eq!(rsp.header("location"), Some(want), "{path}");
    }
    assert_eq!(v1.hits(), 0);
}

#[tokio::test]
async fn httproute_backend_request_header_modification_changes_only_that_backends_request() {
    let mut v1 = EchoBackend::start("v1").await;
    let mut v2 = EchoBackend::start("v2").await;
    let port = free_port();
    // The conformance test's shape: two backendRefs, each with its own modifier.
    let rules = r#"  - backendRefs:
    - name: v1
      port: 80
      weight: 1
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{ name: X-Header-Set, value: set-v1 }]
          add: [{ name: X-Header-Add, value: add-v1 }]
          remove: [X-Header-Remove]
    - name: v2
      port: 80
      weight: 1
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{ name: X-Header-Set, value: set-v2 }]
"#;
    let (_wired, _dir) = wired(
        port,
        &[
            service("v1", v1.addr),
            service("v2", v2.addr),
            route("r", rules),
        ],
    )
    .await;
    let client = TestClient::new();
    let mut seen_v1 = None;
    let mut seen_v2 = None;
    for _ in 0..200 {
        let req = Request::get(format!("http://127.0.0.1:{port}/"))
            .header("x-header-set", "client")
            .header("x-header-add", "client")
            .header("x-header-remove", "client")
            .body(Full::default())
            .unwrap();
        let rsp = client.send(req).await;
        assert_eq!(rsp.status, StatusCode::OK);
        match rsp.header("x-backend") {
            Some("v1") if seen_v1.is_none() => seen_v1 = Some(within(v1.next_seen()).await),
            Some("v2") if seen_v2.is_none() => seen_v2 = Some(within(v2.next_seen()).await),
            _ => {}
        }
        if seen_v1.is_some() && seen_v2.is_some() {
            break;
        }
    }
    let (a, b) = (seen_v1.unwrap(), seen_v2.unwrap());
    let all = |h: &http::HeaderMap, name: &str| -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(all(&a.headers, "x-header-set"), ["set-v1"]);
    assert_eq!(all(&a.headers, "x-header-add"), ["client", "add-v1"]);
    assert!(a.headers.get("x-header-remove").is_none());
    assert_eq!(all(&b.headers, "x-header-set"), ["set-v2"]);
    assert_eq!(all(&b.headers, "x-header-add"), ["client"]);
    assert_eq!(all(&b.headers, "x-header-remove"), ["client"]);
}

#[tokio::test]
async fn httproute_named_route_rule_routes_and_keeps_the_names() {
    let v1 = EchoBackend::start("v1").await;
    let v2 = EchoBackend::start("v2").await;
    let port = free_port();
    let rules = r#"  - name: named-rule
    matches: [{ path: { type: PathPrefix, value: /named } }]
    backendRefs: [{ name: v1, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /unnamed } }]
    backendRefs: [{ name: v2, port: 80 }]
"#;
    let (wired, _dir) = wired(
        port,
        &[
            service("v1", v1.addr),
            service("v2", v2.addr),
            route("r", rules),
        ],
    )
    .await;
    let client = TestClient::new();
    let rsp = client.get(&format!("http://127.0.0.1:{port}/named")).await;
    assert_eq!(rsp.header("x-backend"), Some("v1"));
    let rsp = client
        .get(&format!("http://127.0.0.1:{port}/unnamed"))
        .await;
    assert_eq!(rsp.header("x-backend"), Some("v2"));
    let config = wired.config().await.to_string();
    assert!(config.contains(r#""name":"named-rule""#), "{config}");
}

/// A route `/` to `v1` whose rule mirrors with `mirrors` (filters list items).
fn mirrored(mirrors: &str) -> String {
    route(
        "r",
        &format!(
            "  - matches: [{{ path: {{ type: PathPrefix, value: / }} }}]\n    filters:\n{mirrors}    backendRefs: [{{ name: v1, port: 80 }}]\n"
        ),
    )
}

fn mirror(backend: &str, extra: &str) -> String {
    format!(
        "    - {{ type: RequestMirror, requestMirror: {{ backendRef: {{ name: {backend}, port: 80 }}{extra} }} }}\n"
    )
}

#[tokio::test]
async fn httproute_request_multiple_mirrors_copies_to_every_mirror() {
    let v1 = EchoBackend::start("v1").await;
    let mut m1 = EchoBackend::start("m1").await;
    let mut m2 = EchoBackend::start("m2").await;
    let port = free_port();
    let mirrors = [mirror("m1", ""), mirror("m2", "")].concat();
    let (_wired, _dir) = wired(
        port,
        &[
            service("v1", v1.addr),
            service("m1", m1.addr),
            service("m2", m2.addr),
            mirrored(&mirrors),
        ],
    )
    .await;
    let client = TestClient::new();
    let req = Request::post(format!("http://127.0.0.1:{port}/copy?x=1"))
        .header("x-custom", "mirrored")
        .body(Full::from("payload"))
        .unwrap();
    let rsp = client.send(req).await;
    assert_eq!(rsp.status, StatusCode::OK);
    assert_eq!(rsp.header("x-backend"), Some("v1"), "the primary answers");
    for m in [&mut m1, &mut m2] {
        let seen = within(m.next_seen()).await;
        assert_eq!(seen.method, http::Method::POST);
        assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/copy?x=1");
        assert_eq!(seen.headers["x-custom"], "mirrored");
        assert_eq!(&seen.body[..], b"payload");
    }
}

#[tokio::test]
async fn httproute_request_percentage_mirror_samples_the_requests() {
    const N: usize = 400;
    let v1 = EchoBackend::start("v1").await;
    let mut half = EchoBackend::start("half").await;
    let mut none = EchoBackend::start("none").await;
    let mut fraction = EchoBackend::start("fraction").await;
    let port = free_port();
    let mirrors = [
        mirror("half", ", percent: 50"),
        mirror("none", ", percent: 0"),
        mirror("fraction", ", fraction: { numerator: 1, denominator: 4 }"),
    ]
    .concat();
    let (_wired, _dir) = wired(
        port,
        &[
            service("v1", v1.addr),
            service("half", half.addr),
            service("none", none.addr),
            service("fraction", fraction.addr),
            mirrored(&mirrors),
        ],
    )
    .await;
    let client = TestClient::new();
    for i in 0..N {
        let rsp = client.get(&format!("http://127.0.0.1:{port}/r/{i}")).await;
        assert_eq!(rsp.status, StatusCode::OK);
    }
    assert_eq!(v1.hits(), N);
    // Mirrors are sent in the background: wait for the counts to reach the bottom of
    // a generous band (binomial, > 6 standard deviations), then check the top.
    let band = |share: f64| {
        let mean = N as f64 * share;
        let sd = (N as f64 * share * (1.0 - share)).sqrt();
        ((mean - 6.0 * sd) as usize, (mean + 6.0 * sd) as usize)
    };
    for (m, share) in [(&mut half, 0.5), (&mut fraction, 0.25)] {
        let (lo, hi) = band(share);
        let mut got = 0;
        while got < lo {
            within(m.next_seen()).await;
            got += 1;
        }
        got += m.drain_seen().len();
        assert!(got <= hi, "{got} mirrored, expected {lo}..={hi}");
    }
    assert!(none.drain_seen().is_empty(), "percent 0 mirrors nothing");
}
