//! The real client address behind trusted proxies end to end through the wired gateway
//! (`gatekit run`'s library entry), from manifest files: an Envoy Gateway
//! ClientTrafficPolicy `clientIPDetection` decides whom a SecurityPolicy `authorization`
//! CIDR rule and a BackendTrafficPolicy rate limit keyed by client address see; without
//! it an `X-Forwarded-For` header a client writes changes nothing; a fail-closed custom
//! header refuses requests without it; what gatekit cannot honour refuses the policy.
//! Real sockets on loopback: every request comes from 127.0.0.1.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;

use bytes::Bytes;
use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{Wired, free_port, gateway_http, route, service};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

// === support ===

/// Starts the wired gateway on the Gateway `gw` (one HTTP listener), Service `app` on
/// `backend`, HTTPRoute `app` (`/`) to it, and `docs`.
async fn start(backend: SocketAddr, docs: &[String]) -> (Wired, SocketAddr, tempfile::TempDir) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut text = gateway_http(port);
    for doc in [service("app", backend), route("app", "/", "app")]
        .iter()
        .chain(docs)
    {
        text.push_str("---\n");
        text.push_str(doc);
    }
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    (wired, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// A ClientTrafficPolicy `name` on Gateway `gw` with `clientIPDetection` `detection`
/// (flow YAML).
fn ctp(name: &str, created: &str, detection: &str) -> String {
    format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\n\
         metadata: {{ name: {name}, namespace: default, creationTimestamp: \"{created}\" }}\n\
         spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }}]\n\
         \x20 clientIPDetection: {detection}\n"
    )
}

/// A SecurityPolicy on HTTPRoute `app`: allow clients in 10.1.0.0/16, deny the rest.
fn allow_10_1() -> String {
    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\n\
     metadata: { name: office, namespace: default }\n\
     spec:\n  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }]\n\
     \x20 authorization:\n    defaultAction: Deny\n    rules:\n\
     \x20   - action: Allow\n      principal: { clientCIDRs: [\"10.1.0.0/16\"] }\n"
        .to_owned()
}

/// A BackendTrafficPolicy on HTTPRoute `app`: one request an hour per client address.
fn one_per_client() -> String {
    "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\n\
     metadata: { name: per-client, namespace: default }\n\
     spec:\n  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }]\n\
     \x20 rateLimit:\n    type: Local\n    local:\n      rules:\n\
     \x20     - clientSelectors: [{ sourceCIDR: { type: Distinct, value: 0.0.0.0/0 } }]\n\
     \x20       limit: { requests: 1, unit: Hour }\n"
        .to_owned()
}

/// One GET of `/` on a fresh connection with `headers`: (status, headers).
async fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap) {
    let io = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get("/");
    if !headers.iter().any(|(k, _)| *k == "host") {
        req = req.header("host", "example.test");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let rsp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = rsp.into_parts();
    body.collect().await.unwrap();
    (parts.status, parts.headers)
}

async fn status(addr: SocketAddr, headers: &[(&str, &str)]) -> StatusCode {
    get(addr, headers).await.0
}

fn xff(value: &str) -> [(&str, &str); 1] {
    [("x-forwarded-for", value)]
}

/// The `Accepted` condition of ClientTrafficPolicy `name` in `/config`.
fn accepted(config: &serde_json::Value, name: &str) -> serde_json::Value {
    let resource = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ClientTrafficPolicy" && r["name"] == name)
        .unwrap_or_else(|| panic!("ClientTrafficPolicy {name} not in /config"));
    resource["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone()
}

/// `/config`'s `clientIPDetection` of the one HTTP port.
fn port_detection(config: &serde_json::Value) -> serde_json::Value {
    config["listeners"][0]["clientIPDetection"].clone()
}

// === tests ===

/// With one trusted hop, the last `X-Forwarded-For` address is the client the
/// authorization rule sees: 10.1.2.3 is allowed, 192.0.2.1 is not, and an address a
/// client wrote left of the proxy's entry is not read. The backend gets the header with
/// the peer (the trusted proxy) appended.
#[tokio::test]
async fn one_trusted_hop_makes_the_forwarded_client_the_one_authorization_sees() {
    let mut app = EchoBackend::start("app").await;
    let (wired, addr, _dir) = start(
        app.addr,
        &[
            allow_10_1(),
            ctp(
                "lb",
                "2024-01-01T00:00:00Z",
                "{ xForwardedFor: { numTrustedHops: 1 } }",
            ),
        ],
    )
    .await;
    let config = wired.config().await;
    assert_eq!(accepted(&config, "lb")["status"], "True", "{config}");
    assert_eq!(port_detection(&config), "xForwardedFor numTrustedHops=1");

    assert_eq!(status(addr, &xff("10.1.2.3")).await, StatusCode::OK);
    let seen = app.next_seen().await;
    assert_eq!(seen.headers["x-forwarded-for"], "10.1.2.3, 127.0.0.1");

    assert_eq!(status(addr, &xff("192.0.2.1")).await, StatusCode::FORBIDDEN);
    // The client wrote 10.1.2.3 itself; the proxy appended 192.0.2.1.
    let spoofed = xff("10.1.2.3, 192.0.2.1");
    assert_eq!(status(addr, &spoofed).await, StatusCode::FORBIDDEN);
    // No header, or a malformed one: the peer (127.0.0.1) is the client.
    assert_eq!(status(addr, &[]).await, StatusCode::FORBIDDEN);
    assert_eq!(
        status(addr, &xff("10.1.2.3:80")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.hits(), 1);
}

/// Without `clientIPDetection` a client's own `X-Forwarded-For` does not change the
/// decision; nor does it when the ranges trusted to send it leave out the peer. With the
/// peer's range trusted, it does.
#[tokio::test]
async fn a_forwarded_for_header_is_read_only_when_trusted() {
    let app = EchoBackend::start("app").await;
    let (wired, addr, _dir) = start(app.addr, &[allow_10_1()]).await;
    assert!(port_detection(&wired.config().await).is_null());
    assert_eq!(status(addr, &xff("10.1.2.3")).await, StatusCode::FORBIDDEN);
    drop(wired);

    let untrusted_peer = ctp(
        "lb",
        "2024-01-01T00:00:00Z",
        "{ xForwardedFor: { trustedCIDRs: [\"10.0.0.0/8\"] } }",
    );
    let (_wired, addr, _dir2) = start(app.addr, &[allow_10_1(), untrusted_peer]).await;
    assert_eq!(status(addr, &xff("10.1.2.3")).await, StatusCode::FORBIDDEN);

    let trusted_peer = ctp(
        "lb",
        "2024-01-01T00:00:00Z",
        "{ xForwardedFor: { trustedCIDRs: [\"127.0.0.0/8\", \"10.9.0.0/16\"] } }",
    );
    let (_wired, addr, _dir3) = start(app.addr, &[allow_10_1(), trusted_peer]).await;
    assert_eq!(status(addr, &xff("10.1.2.3")).await, StatusCode::OK);
    // Trusted proxies' entries are skipped; the first other address is the client.
    assert_eq!(
        status(addr, &xff("10.1.2.3, 10.9.0.1")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(addr, &xff("10.1.2.3, 192.0.2.1, 10.9.0.1")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.hits(), 2);
}

/// A rate limit keyed by client address counts two forwarded clients apart when the
/// port trusts the header, and as one (the peer) when it does not.
#[tokio::test]
async fn a_rate_limit_by_client_address_separates_forwarded_clients_only_when_trusted() {
    let app = EchoBackend::start("app").await;
    let hop = ctp(
        "lb",
        "2024-01-01T00:00:00Z",
        "{ xForwardedFor: { numTrustedHops: 1 } }",
    );
    let (_wired, addr, _dir) = start(app.addr, &[one_per_client(), hop]).await;
    assert_eq!(status(addr, &xff("198.51.100.1")).await, StatusCode::OK);
    assert_eq!(
        status(addr, &xff("198.51.100.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(addr, &xff("198.51.100.2")).await, StatusCode::OK);

    let (_wired, addr, _dir) = start(app.addr, &[one_per_client()]).await;
    assert_eq!(status(addr, &xff("198.51.100.1")).await, StatusCode::OK);
    assert_eq!(
        status(addr, &xff("198.51.100.2")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A custom header names the client; with `failClosed`, a request without a valid one
/// is refused with 403 before any route or backend sees it.
#[tokio::test]
async fn a_fail_closed_custom_header_names_the_client_or_refuses() {
    let app = EchoBackend::start("app").await;
    let header = ctp(
        "cdn",
        "2024-01-01T00:00:00Z",
        "{ customHeader: { name: X-Real-IP, failClosed: true } }",
    );
    let (wired, addr, _dir) = start(app.addr, &[allow_10_1(), header]).await;
    assert_eq!(
        port_detection(&wired.config().await),
        "customHeader x-real-ip failClosed"
    );
    assert_eq!(
        status(addr, &[("x-real-ip", "10.1.2.3")]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(addr, &[("x-real-ip", "192.0.2.1")]).await,
        StatusCode::FORBIDDEN
    );
    for bad in [
        vec![],
        vec![("x-real-ip", "not-an-address")],
        xff("10.1.2.3").to_vec(),
    ] {
        let (status, headers) = get(addr, &bad).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{bad:?}");
        assert_eq!(headers["x-gatekit-error"], "forbidden");
    }
    assert_eq!(app.hits(), 1);
}

/// What Envoy Gateway's schema forbids, or gatekit does not know, refuses the policy by
/// name; the port then reads no header.
#[tokio::test]
async fn detection_gatekit_cannot_honour_is_refused_by_name() {
    let app = EchoBackend::start("app").await;
    let (wired, addr, _dir) = start(
        app.addr,
        &[
            allow_10_1(),
            ctp(
                "both",
                "2024-01-01T00:00:00Z",
                "{ xForwardedFor: { numTrustedHops: 1 }, customHeader: { name: x-real-ip } }",
            ),
            ctp(
                "two-ways",
                "2024-01-02T00:00:00Z",
                "{ xForwardedFor: { numTrustedHops: 1, trustedCIDRs: [\"10.0.0.0/8\"] } }",
            ),
            ctp(
                "bad-cidr",
                "2024-01-03T00:00:00Z",
                "{ xForwardedFor: { trustedCIDRs: [\"10.0.0.0/33\"] } }",
            ),
            ctp(
                "unknown",
                "2024-01-04T00:00:00Z",
                "{ xForwardedFor: { numTrustedHops: 1, skipHops: 2 } }",
            ),
        ],
    )
    .await;
    let config = wired.config().await;
    for (name, says) in [
        ("both", "spec.clientIPDetection"),
        ("two-ways", "spec.clientIPDetection.xForwardedFor"),
        (
            "bad-cidr",
            "spec.clientIPDetection.xForwardedFor.trustedCIDRs[0]",
        ),
        ("unknown", "clientIPDetection.xForwardedFor.skipHops"),
    ] {
        let cond = accepted(&config, name);
        assert_eq!(cond["status"], "False", "{name}: {cond}");
        assert!(
            cond["message"].as_str().unwrap().contains(says),
            "{name}: {cond}"
        );
    }
    assert!(port_detection(&config).is_null());
    assert_eq!(status(addr, &xff("10.1.2.3")).await, StatusCode::FORBIDDEN);
}

/// The client is found before `Host` picks a listener, so two listeners of one port that
/// disagree get none: a client's header is never read for the listener that did not ask,
/// and the disagreement is reported.
#[tokio::test]
async fn listeners_of_one_port_that_disagree_read_no_header() {
    let app = EchoBackend::start("app").await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{ name: gw, namespace: default }}\nspec:\n  gatewayClassName: gatekit\n  \
         listeners:\n  - {{ name: a, port: {port}, protocol: HTTP, hostname: a.test }}\n  \
         - {{ name: b, port: {port}, protocol: HTTP, hostname: b.test }}\n"
    );
    let only_a = ctp(
        "lb",
        "2024-01-01T00:00:00Z",
        "{ xForwardedFor: { numTrustedHops: 1 } }",
    )
    .replace("name: gw }]", "name: gw, sectionName: a }]");
    let text = [
        gateway,
        service("app", app.addr),
        route("app", "/", "app"),
        allow_10_1(),
        only_a,
    ]
    .join("---\n");
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let config = wired.config().await;
    assert_eq!(accepted(&config, "lb")["status"], "True", "{config}");
    assert!(port_detection(&config).is_null());
    let errors = config["errors"].to_string();
    assert!(
        errors.contains(&format!("listeners[port={port}].clientIPDetection")),
        "{errors}"
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (status, _) = get_host(addr, "a.test", &xff("10.1.2.3")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// [`get`] with `Host: host`.
async fn get_host(
    addr: SocketAddr,
    host: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap) {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    get(addr, &all).await
}
