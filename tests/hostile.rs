//! Hostile input against the wired gateway (`gatekit run`'s library entry point on temp
//! manifests, a real echo backend behind it): request smuggling, malformed heads,
//! oversized targets and heads, absolute-form targets, path traversal, slowloris,
//! connection floods, HTTP/2 floods, upgrades to non-upgrading backends and broken TLS.
//! Each case asserts the exact answer and that the gateway still serves afterwards.
//!
//! Decisions these tests pin down:
//! - `Content-Length` with `Transfer-Encoding: chunked` is not a 400: hyper frames the
//!   body by the chunked coding alone, drops the `Content-Length` and closes the
//!   connection after the response (RFC 9112 §6.1 allows this or a rejection), so no
//!   byte of the body can become a second request. Differing lengths, codings other than
//!   a final `chunked`, `Transfer-Encoding` on HTTP/1.0 and malformed chunk sizes are 400
//!   and closed.
//! - Limits: request target 8 KiB (414, `paths.maxTargetLength`), HTTP/1 head 64 KiB
//!   (431, core's `ServerConfig`), 100 header lines (431, hyper's fixed default), HTTP/2
//!   decoded header list 64 KiB (431), header read and TLS handshake timeouts from the
//!   settings.
//! - An unknown SNI gets the port's default certificate (the listener without a
//!   hostname, else the first one); nothing is routed for a host no route has (404).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use gatekit_bin::Settings;
use gatekit_tests::EchoBackend;
use gatekit_tests::raw::{exchange, read_response, read_until_close};
use gatekit_tests::wired::{Wired, free_port, get_raw, service};
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HOST: &str = "app.example";
const WITHIN: Duration = Duration::from_secs(5);

fn gateway(port: u16) -> String {
    let gateway = gatekit_tests::wired::gateway_http(port);
    format!(
        r#"{gateway}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: app, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  hostnames: ["{HOST}"]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: /public }} }}]
    backendRefs: [{{ name: echo, port: 80 }}]
"#
    )
}

/// The gateway on a temp dir: one listener, `/public` on `app.example` to the echo
/// backend.
struct Fixture {
    port: u16,
    backend: EchoBackend,
    _wired: Wired,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        Self::with(Settings::default()).await
    }

    async fn with(settings: Settings) -> Self {
        let backend = EchoBackend::start("echo").await;
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gw.yaml"), gateway(port)).unwrap();
        std::fs::write(dir.path().join("svc.yaml"), service("echo", backend.addr)).unwrap();
        let dirs: Vec<PathBuf> = vec![dir.path().to_path_buf()];
        let wired = Wired::start_with(&dirs, settings).await;
        assert_eq!(wired.admin("/readyz").await.0, StatusCode::OK);
        Self {
            port,
            backend,
            _wired: wired,
            _dir: dir,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// A normal request on a fresh connection is served by the backend.
    async fn assert_serves(&mut self) {
        let (status, _) = get_raw(self.addr(), "/public/ok", HOST).await;
        assert_eq!(status, StatusCode::OK, "the gateway no longer serves");
        let seen = self.backend.drain_seen();
        assert_eq!(
            seen.last().map(|s| s.uri.path().to_owned()).as_deref(),
            Some("/public/ok")
        );
    }

    /// Paths the backend received since the last call.
    fn backend_paths(&mut self) -> Vec<String> {
        self.backend
            .drain_seen()
            .into_iter()
            .map(|s| s.uri.path_and_query().unwrap().as_str().to_owned())
            .collect()
    }

    async fn raw(&self, bytes: &str) -> gatekit_tests::raw::RawReply {
        exchange(self.addr(), bytes.as_bytes(), WITHIN).await
    }
}

fn settings(f: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings::default();
    f(&mut s);
    s
}

/// `GET target` with `Connection: close` and the given extra header lines.
fn get(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n")
}

// === smuggling ===

#[tokio::test]
async fn cl_with_te_is_framed_by_chunked_alone_and_the_connection_closed() {
    let mut fx = Fixture::start().await;
    // Both header orders. If the Content-Length framed the body, the backend would get
    // 4 (or 40) body bytes and the "smuggled" GET would become a request of its own.
    for head in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 40",
    ] {
        let req = format!(
            "POST /public/a HTTP/1.1\r\nHost: {HOST}\r\n{head}\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        );
        let r = fx.raw(&req).await;
        assert_eq!(r.statuses(), [200], "{head}: {}", r.text);
        assert!(
            r.closed,
            "{head}: the connection must be closed after the response"
        );
        let seen = fx.backend.drain_seen();
        assert_eq!(seen.len(), 1, "{head}");
        assert_eq!(seen[0].uri.path(), "/public/a");
        assert!(seen[0].body.is_empty(), "{head}: framed by Content-Length");
        assert_ne!(
            seen[0].headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"4"[..])
        );
    }
    fx.assert_serves().await;
}

#[tokio::test]
async fn differing_content_lengths_are_400_and_closed() {
    let mut fx = Fixture::start().await;
    for head in [
        "Content-Length: 4\r\nContent-Length: 5",
        "Content-Length: 4, 5",
        "Content-Length: -4",
        "Content-Length: 4x",
        "Content-Length: 99999999999999999999999",
    ] {
        let req = format!(
            "POST /public/a HTTP/1.1\r\nHost: {HOST}\r\n{head}\r\n\r\nabcdeGET /public/smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        );
        let r = fx.raw(&req).await;
        assert_eq!(r.statuses(), [400], "{head}: {}", r.text);
        assert!(r.closed, "{head}");
        assert_eq!(fx.backend_paths(), Vec::<String>::new(), "{head}");
    }
    // Repeated identical lengths are one length (RFC 9110 §8.6).
    let req = format!(
        "POST /public/a HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd"
    );
    let r = fx.raw(&req).await;
    assert_eq!(r.statuses(), [200]);
    let seen = fx.backend.drain_seen();
    assert_eq!(&seen[0].body[..], b"abcd");
    fx.assert_serves().await;
}

#[tokio::test]
async fn transfer_codings_other_than_a_final_chunked_are_400_and_closed() {
    let mut fx = Fixture::start().await;
    for (version, te) in [
        ("1.1", "gzip"),
        ("1.1", "chunked, identity"),
        ("1.1", "xchunked"),
        ("1.1", "chunked\r\nTransfer-Encoding: gzip"),
        ("1.0", "chunked"),
    ] {
        let req = format!(
            "POST /public/a HTTP/{version}\r\nHost: {HOST}\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        );
        let r = fx.raw(&req).await;
        assert_eq!(r.statuses(), [400], "{te}: {}", r.text);
        assert!(r.closed, "{te}");
        assert_eq!(fx.backend_paths(), Vec::<String>::new(), "{te}");
    }
    fx.assert_serves().await;
}

#[tokio::test]
async fn a_chunk_size_overflow_is_400_and_closed_and_nothing_is_smuggled() {
    let mut fx = Fixture::start().await;
    for size in ["FFFFFFFFFFFFFFFFFFFF", "1000000000000000000", "zz"] {
        let req = format!(
            "POST /public/a HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        );
        let r = fx.raw(&req).await;
        assert_eq!(r.statuses(), [400], "{size}: {}", r.text);
        assert!(r.closed, "{size}");
        assert!(
            !fx.backend_paths().iter().any(|p| p.contains("smuggled")),
            "{size}"
        );
    }
    fx.assert_serves().await;
}

// === malformed heads ===

#[tokio::test]
async fn obs_fold_and_invalid_header_bytes_are_400_and_closed() {
    let mut fx = Fixture::start().await;
    for line in [
        "X-A: a\r\n b",       // obs-fold
        "X-A: a\x00b",        // NUL
        "X-A: a\rb",          // CR alone
        "X A: b",             // space in a name
        "X(A): b",            // non-token name character
        "X-A\x7f: b",         // DEL in a name
        "X-\u{e9}: b",        // non-ASCII in a name
        "Host : app.example", // whitespace before the colon (RFC 9112 §5.1)
        ": b",                // empty name
    ] {
        let req = format!("GET /public/a HTTP/1.1\r\nHost: {HOST}\r\n{line}\r\n\r\n");
        let r = fx.raw(&req).await;
        assert_eq!(r.statuses(), [400], "{line:?}: {}", r.text);
        assert!(r.closed, "{line:?}");
    }
    for line in [
        "GET /public/a HTTP/1.1 x",
        "GET  /public/a HTTP/1.1",
        "GET /public/a HTTP/9.9",
        "G\x00T /public/a HTTP/1.1",
    ] {
        let r = fx.raw(&format!("{line}\r\nHost: {HOST}\r\n\r\n")).await;
        assert_eq!(r.statuses(), [400], "{line:?}: {}", r.text);
        assert!(r.closed, "{line:?}");
    }
    assert_eq!(fx.backend_paths(), Vec::<String>::new());
    fx.assert_serves().await;
}

// === Host ===

#[tokio::test]
async fn two_hosts_are_400_and_closed_before_routing() {
    let mut fx = Fixture::start().await;
    // The gateway must not route on one name while the backend acts on the other.
    for hosts in [
        format!("Host: {HOST}\r\nHost: evil.example"),
        format!("Host: evil.example\r\nHost: {HOST}"),
        format!("Host: {HOST}\r\nHost: {HOST}"),
    ] {
        let r = fx
            .raw(&format!("GET /public/a HTTP/1.1\r\n{hosts}\r\n\r\n"))
            .await;
        assert_eq!(r.statuses(), [400], "{hosts:?}: {}", r.text);
        assert!(
            r.text.contains("x-gatekit-error: duplicate-host"),
            "{}",
            r.text
        );
        assert!(r.closed, "{hosts:?}");
    }
    assert_eq!(fx.backend_paths(), Vec::<String>::new());
    fx.assert_serves().await;
}

#[tokio::test]
async fn a_missing_host_on_http_1_1_is_400_and_closed() {
    let mut fx = Fixture::start().await;
    let r = fx.raw("GET /public/a HTTP/1.1\r\nX-A: b\r\n\r\n").await;
    assert_eq!(r.statuses(), [400], "{}", r.text);
    assert!(
        r.text.contains("x-gatekit-error: missing-host"),
        "{}",
        r.text
    );
    assert!(r.closed);
    assert_eq!(fx.backend_paths(), Vec::<String>::new());
    fx.assert_serves().await;
}

#[tokio::test]
async fn an_invalid_host_is_400_and_closed() {
    let mut fx = Fixture::start().await;
    for host in [
        "user@app.example",
        "app.example/public",
        "app.example:80:80",
        "app.example:eighty",
        "app example",
        "[::1",
    ] {
        let r = fx
            .raw(&format!("GET /public/a HTTP/1.1\r\nHost: {host}\r\n\r\n"))
            .await;
        // hyper refuses some of these itself; either way: 400 and closed.
        assert_eq!(r.statuses(), [400], "{host:?}: {}", r.text);
        assert!(r.closed, "{host:?}");
    }
    assert_eq!(fx.backend_paths(), Vec::<String>::new());
    fx.assert_serves().await;
}

// === sizes ===

#[tokio::test]
async fn long_targets_are_414_and_large_or_numerous_headers_431() {
    let mut fx = Fixture::start().await;
    // Up to 8 KiB of target is served; beyond, 414 from the path layer.
    let ok = format!("/public/{}", "a".repeat(8 * 1024 - 8));
    let r = fx.raw(&get(&ok, "")).await;
    assert_eq!(r.statuses(), [200]);
    let long = format!("/public/{}", "a".repeat(8 * 1024));
    let r = fx.raw(&get(&long, "")).await;
    assert_eq!(r.statuses(), [414], "{}", &r.text[..r.text.len().min(200)]);
    // A target longer than the whole 64 KiB head cap is cut by hyper first: 431.
    let huge = format!("/public/{}", "a".repeat(70 * 1024));
    let r = fx.raw(&get(&huge, "")).await;
    assert_eq!(r.statuses(), [431]);
    assert!(r.closed);
    // One 70 KiB header: over the 64 KiB head cap.
    let r = fx
        .raw(&get(
            "/public/a",
            &format!("X-Big: {}\r\n", "b".repeat(70 * 1024)),
        ))
        .await;
    assert_eq!(r.statuses(), [431]);
    assert!(r.closed);
    // 60 KiB of headers in 60 lines: under both limits.
    let lines: String = (0..60)
        .map(|i| format!("X-H{i}: {}\r\n", "c".repeat(1000)))
        .collect();
    let r = fx.raw(&get("/public/a", &lines)).await;
    assert_eq!(r.statuses(), [200]);
    // hyper's 100 header lines: 101 are refused. (96 lines are served here: the
    // gateway adds four X-Forwarded-*/X-Request-Id lines, and the echo backend, a hyper
    // server too, would refuse more than 100.)
    let lines: String = (0..94).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = fx.raw(&get("/public/a", &lines)).await;
    assert_eq!(r.statuses(), [200]);
    let lines: String = (0..99).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = fx.raw(&get("/public/a", &lines)).await;
    assert_eq!(r.statuses(), [431]);
    assert!(r.closed);
    let paths = fx.backend_paths();
    assert_eq!(
        paths.len(),
        3,
        "only the three accepted requests reach the backend"
    );
    fx.assert_serves().await;
}

// === absolute-form targets ===

#[tokio::test]
async fn absolute_form_routes_by_its_authority_and_is_never_an_open_proxy() {
    let mut fx = Fixture::start().await;
    let backend = fx.backend.addr;
    for target in [
        "http://evil.example/public/a".to_owned(),
        format!("http://{backend}/public/a"),
        format!("http://127.0.0.1:{}/public/a", fx.port),
        "https://evil.example:443/public/a".to_owned(),
    ] {
        let r = fx.raw(&get(&target, "")).await;
        assert_eq!(r.statuses(), [404], "{target}: {}", r.text);
        assert!(r.text.contains("x-gatekit-error: no-route"), "{target}");
    }
    assert_eq!(fx.backend_paths(), Vec::<String>::new());
    // The authority wins over a disagreeing Host (RFC 9112 §3.2.2), for routing and
    // for what the upstream sees.
    let req = "GET http://app.example/public/abs?q=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    let r = fx.raw(req).await;
    assert_eq!(r.statuses(), [200]);
    let seen = fx.backend.drain_seen();
    assert_eq!(seen[0].uri, "/public/abs?q=1", "origin-form upstream");
    assert_eq!(seen[0].headers["host"], HOST);
    // And a Host the gateway routes with an authority it does not: 404.
    let req = "GET http://evil.example/public/a HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n";
    assert_eq!(fx.raw(req).await.statuses(), [404]);
    // CONNECT is not proxied anywhere.
    let req = format!("CONNECT {backend} HTTP/1.1\r\nHost: {backend}\r\n\r\n");
    let r = fx.raw(&req).await;
    assert_eq!(r.statuses(), [404], "{}", r.text);
    assert_eq!(fx.backend_paths(), Vec::<String>::new());
    fx.assert_serves().await;
}

// === path traversal ===

#[tokio::test]
async fn traversal_is_normalised_before_routing_and_upstream_by_default() {
    let mut fx = Fixture::start().await;
    for (target, status, upstream) in [
        ("/public/../public/a", 200, Some("/public/a")),
        ("/x/../public/b?q=/../", 200, Some("/public/b?q=/../")),
        ("/x/%2e%2e/public/c", 200, Some("/public/c")),
        ("/x/%2E%2e/%2e/public/d", 200, Some("/public/d")),
        ("/%70ublic/e", 200, Some("/public/e")),
        ("/x\\..\\public/f", 200, Some("/public/f")),
        ("/public/..%2Fadmin", 200, Some("/public/..%2Fadmin")),
        ("/public/..%5cadmin", 200, Some("/public/..%5Cadmin")),
        ("/public/../admin", 404, None),
        ("/public/%2e%2e/admin", 404, None),
        ("/public/.%2e/.%2E/etc/passwd", 404, None),
        ("/public/../../../../etc/passwd", 404, None),
        ("/public\\..\\admin", 404, None),
        ("//public/g", 404, None),
        ("/public/%zz", 400, None),
        ("/public/%", 400, None),
    ] {
        let r = fx.raw(&get(target, "")).await;
        assert_eq!(r.status(), Some(status), "{target}: {}", r.text);
        assert_eq!(
            fx.backend_paths().first().map(String::as_str),
            upstream,
            "{target}"
        );
    }
    fx.assert_serves().await;
}

#[tokio::test]
async fn a_strict_path_policy_rejects_escaped_slashes_and_merges_slashes() {
    let mut fx = Fixture::with(settings(|s| {
        s.paths = serde_yaml_paths("{ mergeSlashes: true, escapedSlashes: reject }");
    }))
    .await;
    for (target, status, upstream) in [
        ("/public/..%2Fadmin", 400, None),
        ("/public/%5c", 400, None),
        ("//public//a//", 200, Some("/public/a/")),
        ("/x//..//public/b", 200, Some("/public/b")),
    ] {
        let r = fx.raw(&get(target, "")).await;
        assert_eq!(r.status(), Some(status), "{target}: {}", r.text);
        assert_eq!(
            fx.backend_paths().first().map(String::as_str),
            upstream,
            "{target}"
        );
    }
    fx.assert_serves().await;
}

fn serde_yaml_paths(yaml: &str) -> gatekit_bin::PathSettings {
    Settings::from_yaml(&format!("paths: {yaml}"), "test")
        .unwrap()
        .paths
}

// === slow and many clients ===

#[tokio::test]
async fn slowloris_is_cut_by_the_header_read_timeout() {
    let mut fx = Fixture::with(settings(|s| {
        s.limits.header_read_timeout = Duration::from_millis(800);
    }))
    .await;
    let mut tcp = TcpStream::connect(fx.addr()).await.unwrap();
    let start = tokio::time::Instant::now();
    let head = format!("GET /public/a HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ");
    let (mut rd, mut wr) = tcp.split();
    let trickle = async {
        for b in head.bytes().chain(std::iter::repeat(b'x')) {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let r = tokio::select! {
        r = read_until_close(&mut rd, WITHIN) => r,
        () = trickle => unreachable!("the trickle only ends when the connection does"),
    };
    let elapsed = start.elapsed();
    assert!(r.closed, "still open after {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_millis(2500),
        "closed after {elapsed:?}, expected near the 800 ms header read timeout"
    );
    assert!(r.statuses().iter().all(|s| *s == 408), "{}", r.text);
    assert_eq!(fx.backend_paths(), Vec::<String>::new());
    fx.assert_serves().await;
}

/// A request on a fresh connection, without panicking when the gateway refuses it.
async fn try_get(addr: std::net::SocketAddr) -> Option<u16> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(get("/public/ok", "").as_bytes()).await.ok()?;
    read_until_close(&mut tcp, WITHIN).await.status()
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_and_service_resumes() {
    let mut fx = Fixture::with(settings(|s| s.limits.max_connections = 3)).await;
    // Three kept-alive connections, each proven accepted by a served request.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(fx.addr()).await.unwrap();
        let req = format!("GET /public/idle HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut tcp).await.0, 200);
        idle.push(tcp);
    }
    // Over the limit: closed at once, without a byte of response.
    for _ in 0..5 {
        let r = fx.raw(&get("/public/over", "")).await;
        assert!(r.closed);
        assert!(r.text.is_empty(), "{}", r.text);
        assert!(r.closed_after.unwrap() < Duration::from_secs(1));
    }
    assert!(!fx.backend_paths().iter().any(|p| p == "/public/over"));
    drop(idle);
    gatekit_tests::wired::eventually(
        WITHIN,
        "served once the idle connections are gone",
        || async { try_get(fx.addr()).await == Some(200) },
    )
    .await;
    fx.assert_serves().await;
}

// === upgrades ===

#[tokio::test]
async fn a_websocket_upgrade_to_a_non_upgrading_backend_is_not_a_tunnel() {
    let mut fx = Fixture::start().await;
    let mut tcp = TcpStream::connect(fx.addr()).await.unwrap();
    let req = format!(
        "GET /public/ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let (status, _, _) = read_response(&mut tcp).await;
    assert_eq!(
        status, 200,
        "not a 101: the backend did not switch protocols"
    );
    // Still HTTP on this connection: the next request is parsed and routed ...
    let req = format!("GET /public/after HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let (status, head, _) = read_response(&mut tcp).await;
    assert_eq!(status, 200);
    assert!(head.contains("x-echo-path: /public/after"), "{head}");
    // ... and WebSocket frame bytes are not relayed but refused as a malformed request.
    tcp.write_all(&[
        0x81,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
        b'\r',
        b'\n',
        b'\r',
        b'\n',
    ])
    .await
    .unwrap();
    let r = read_until_close(&mut tcp, WITHIN).await;
    assert_eq!(r.statuses(), [400], "{}", r.text);
    assert!(r.closed);
    assert_eq!(fx.backend_paths(), ["/public/ws", "/public/after"]);
    fx.assert_serves().await;
}

// === HTTP/2 ===

/// The resident memory may grow this much over a flood (KiB): the floods send tens of
/// megabytes; a server buffering them would grow by as much.
const FLOOD_RSS_BOUND_KIB: u64 = 48 * 1024;

impl Fixture {
    async fn assert_serves_h2(&mut self) {
        assert_eq!(h2_get(self.addr(), "/public/ok", HOST).await, Some(200));
        assert_eq!(self.backend_paths(), ["/public/ok"]);
        self.assert_serves().await;
    }
}

fn headers_frame(id: u32, flags: u8, path: &str) -> Vec<u8> {
    h2_frame(frame::HEADERS, flags, id, &hpack_request(false, path, HOST))
}

#[tokio::test]
async fn h2_rapid_reset_gets_goaway_enhance_your_calm() {
    let mut fx = Fixture::start().await;
    let rss = rss_kib();
    // CVE-2023-44487: open and cancel streams as fast as possible.
    let mut pairs = Vec::new();
    for i in 0..5000u32 {
        let id = 2 * i + 3;
        pairs.extend(headers_frame(
            id,
            flag::END_HEADERS | flag::END_STREAM,
            "/public/rr",
        ));
        pairs.extend(h2_frame(frame::RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let (seen, _) = h2_flood(fx.addr(), &pairs, &[], 0).await;
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    let reached = fx.backend_paths().len();
    assert!(
        reached <= 20,
        "{reached} of 5000 reset streams reached the backend"
    );
    assert!(rss_kib().saturating_sub(rss) < FLOOD_RSS_BOUND_KIB);
    fx.assert_serves_h2().await;
}

#[tokio::test]
async fn h2_settings_and_ping_floods_are_answered_in_bounded_memory() {
    let mut fx = Fixture::start().await;
    let rss = rss_kib();
    // h2 has no flood limit for these: each is answered by one small ACK, and reading
    // stops while ACKs wait to be written, so a client that does not read is stalled by
    // TCP backpressure rather than buffered. Memory stays flat.
    for (name, one) in [
        ("SETTINGS", h2_frame(frame::SETTINGS, 0, 0, &[])),
        (
            "SETTINGS with values",
            h2_frame(
                frame::SETTINGS,
                0,
                0,
                &[0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0],
            ),
        ),
        ("PING", h2_frame(frame::PING, 0, 0, &[7; 8])),
    ] {
        let (seen, written) = h2_flood(fx.addr(), &[], &one, 100_000).await;
        assert_eq!(written, 100_000, "{name}");
        assert!(seen.final_pong, "{name}: every frame processed: {seen:?}");
        assert_eq!(seen.goaway, None, "{name}");
        let acks = seen.frames.get(&if name == "PING" {
            frame::PING
        } else {
            frame::SETTINGS
        });
        assert!(acks.is_some_and(|n| *n >= 100_000), "{name}: {acks:?}");
    }
    // A client that floods PINGs without reading: the server stops reading once its
    // ACKs cannot be written; the writes stall instead of queueing in the gateway.
    let mut tcp = gatekit_tests::raw::h2_connect(fx.addr()).await;
    let batch = h2_frame(frame::PING, 0, 0, &[7; 8]).repeat(10_000);
    let mut batches = 0;
    while batches < 2_000 && write_lossy(&mut tcp, &batch).await {
        batches += 1;
    }
    assert!(
        batches < 2_000,
        "170 MB of PINGs taken without reading an ACK"
    );
    drop(tcp);
    assert!(
        rss_kib().saturating_sub(rss) < FLOOD_RSS_BOUND_KIB,
        "rss {rss} -> {} KiB",
        rss_kib()
    );
    fx.assert_serves_h2().await;
}

#[tokio::test]
async fn h2_empty_data_and_continuation_floods_get_goaway() {
    let mut fx = Fixture::start().await;
    let rss = rss_kib();
    // Empty DATA frames on an open request stream (CVE-2019-9518).
    let open = h2_frame(
        frame::HEADERS,
        flag::END_HEADERS,
        1,
        &hpack_request(true, "/public/data", HOST),
    );
    let (seen, _) = h2_flood(fx.addr(), &open, &h2_frame(frame::DATA, 0, 1, &[]), 100_000).await;
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "empty DATA: {seen:?}");
    // CONTINUATION floods (CVE-2024-27316): a header block that never ends, with small
    // fields or empty frames.
    let mut small = Vec::new();
    gatekit_tests::raw::hpack_literal(&mut small, b"x-c", b"v");
    for (name, cont) in [
        ("small fields", h2_frame(frame::CONTINUATION, 0, 1, &small)),
        ("empty frames", h2_frame(frame::CONTINUATION, 0, 1, &[])),
    ] {
        let open = headers_frame(1, flag::END_STREAM, "/public/cont");
        let (seen, written) = h2_flood(fx.addr(), &open, &cont, 200_000).await;
        assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{name}: {seen:?}");
        assert!(!seen.final_pong, "{name}");
        eprintln!("CONTINUATION {name}: GOAWAY after at most {written} frames written");
    }
    assert!(fx.backend_paths().is_empty());
    assert!(rss_kib().saturating_sub(rss) < FLOOD_RSS_BOUND_KIB);
    fx.assert_serves_h2().await;
}

#[tokio::test]
async fn h2_huge_header_blocks_and_hpack_bombs_are_431() {
    let mut fx = Fixture::start().await;
    // 100 KiB of one header, over HEADERS + CONTINUATION frames: over the 64 KiB
    // decoded header list limit.
    let mut block = hpack_request(false, "/public/big", HOST);
    gatekit_tests::raw::hpack_literal(&mut block, b"x-big", &vec![b'a'; 100 * 1024]);
    let status = send_block(fx.addr(), &block).await;
    assert_eq!(status.statuses, [431], "{status:?}");
    // An HPACK bomb: one 4000-byte field put in the dynamic table, then referenced by
    // its one-byte index 40 times: 300 bytes on the wire, 160 KB decoded.
    let mut block = hpack_request(false, "/public/bomb", HOST);
    block.push(0x40);
    gatekit_tests::raw::hpack_string(&mut block, b"x-bomb");
    gatekit_tests::raw::hpack_string(&mut block, &vec![b'b'; 4000]);
    block.extend(std::iter::repeat_n(0xbe, 40));
    let status = send_block(fx.addr(), &block).await;
    assert_eq!(status.statuses, [431], "{status:?}");
    assert!(fx.backend_paths().is_empty());
    fx.assert_serves_h2().await;
}

/// Sends one request with `block` split over HEADERS and CONTINUATION frames of 16 KiB.
async fn send_block(addr: std::net::SocketAddr, block: &[u8]) -> gatekit_tests::raw::H2Seen {
    let mut tcp = gatekit_tests::raw::h2_connect(addr).await;
    let mut frames = Vec::new();
    let chunks: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    for (i, c) in chunks.iter().enumerate() {
        let kind = if i == 0 {
            frame::HEADERS
        } else {
            frame::CONTINUATION
        };
        let mut flags = if i == 0 { flag::END_STREAM } else { 0 };
        if i + 1 == chunks.len() {
            flags |= flag::END_HEADERS;
        }
        frames.extend(h2_frame(kind, flags, 1, c));
    }
    assert!(write_lossy(&mut tcp, &frames).await);
    h2_read(&mut tcp, WITHIN, true, true).await
}

const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

use gatekit_tests::raw::{
    flag, frame, h2_flood, h2_frame, h2_get, h2_read, hpack_request, rss_kib, write_lossy,
};

// === TLS ===

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
    hostname: {HOST}
    tls: {{ mode: Terminate, certificateRefs: [{{ name: cert }}] }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: app, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: /public }} }}]
    backendRefs: [{{ name: echo, port: 80 }}]
"#
    )
}

/// An HTTPS gateway whose only listener has the hostname `app.example` (so no default
/// certificate: a handshake for another name is refused).
struct TlsFixture {
    fx: Fixture,
    ca: Ca,
    leaf: rustls::pki_types::CertificateDer<'static>,
}

impl TlsFixture {
    async fn start(settings: Settings) -> Self {
        let backend = EchoBackend::start("echo").await;
        let ca = Ca::new();
        let (cert, key, leaf) = ca.leaf(HOST);
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gw.yaml"), gateway_https(port)).unwrap();
        std::fs::write(dir.path().join("svc.yaml"), service("echo", backend.addr)).unwrap();
        std::fs::write(dir.path().join("cert.yaml"), secret("cert", &cert, &key)).unwrap();
        let dirs: Vec<PathBuf> = vec![dir.path().to_path_buf()];
        let wired = Wired::start_with(&dirs, settings).await;
        assert_eq!(wired.admin("/readyz").await.0, StatusCode::OK);
        let fx = Fixture {
            port,
            backend,
            _wired: wired,
            _dir: dir,
        };
        Self { fx, ca, leaf }
    }

    async fn assert_serves(&mut self) {
        let (_, status, _) =
            tls_get(&self.ca.connector(), self.fx.addr(), HOST, "/public/ok").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(self.fx.backend_paths(), ["/public/ok"]);
    }
}

/// A reply that is nothing, or TLS alert records only (content type 21), never HTTP.
fn assert_alert_or_nothing(r: &gatekit_tests::raw::RawReply, what: &str) {
    assert!(r.closed, "{what}: still open");
    let bytes = r.text.as_bytes();
    assert!(
        bytes.is_empty() || bytes[0] == 0x15,
        "{what}: answered {:?}",
        &r.text[..r.text.len().min(80)]
    );
    assert!(!r.text.contains("HTTP/1."), "{what}");
}

#[tokio::test]
async fn tls_garbage_plain_http_and_unknown_sni_are_refused() {
    let mut tls = TlsFixture::start(Settings::default()).await;
    let addr = tls.fx.addr();
    // A handshake record whose body is not a ClientHello.
    let r = exchange(addr, b"\x16\x03\x01\x00\x08garbage!", WITHIN).await;
    assert_alert_or_nothing(&r, "garbage ClientHello");
    assert!(r.closed_after.unwrap() < Duration::from_secs(1));
    // Not TLS at all.
    let r = exchange(addr, &[0xff; 64], WITHIN).await;
    assert_alert_or_nothing(&r, "random bytes");
    // Plain HTTP on the TLS port: closed, no HTTP answer (no nginx-style 400 page).
    let r = exchange(addr, get("/public/a", "").as_bytes(), WITHIN).await;
    assert_alert_or_nothing(&r, "plain HTTP");
    // An SNI no listener has: the port's default certificate is presented (the
    // listener without a hostname, else the first: here app.example's), which a
    // verifying client refuses ...
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("unknown.example").unwrap();
    let err = tls.ca.connector().connect(name, tcp).await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    // ... and a client that does not verify gets nothing routed for that host: 404.
    for sni in ["unknown.example", "127.0.0.1"] {
        let (leaf, status, _) = tls_get(&insecure_connector(), addr, sni, "/public/a").await;
        assert_eq!(leaf, tls.leaf, "{sni}: the default certificate");
        assert_eq!(status, StatusCode::NOT_FOUND, "{sni}");
    }
    assert!(tls.fx.backend_paths().is_empty());
    tls.assert_serves().await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_by_the_handshake_timeout() {
    let mut tls = TlsFixture::start(settings(|s| {
        s.limits.tls_handshake_timeout = Duration::from_millis(800);
    }))
    .await;
    // The first bytes of a ClientHello record announcing 512 bytes, then nothing.
    let mut tcp = TcpStream::connect(tls.fx.addr()).await.unwrap();
    tcp.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .await
        .unwrap();
    let r = read_until_close(&mut tcp, WITHIN).await;
    let after = r.closed_after.expect("the stalled handshake is cut");
    assert!(
        after >= Duration::from_millis(700) && after < Duration::from_millis(2500),
        "cut after {after:?}, expected near the 800 ms handshake timeout"
    );
    assert!(!r.text.contains("HTTP/1."));
    tls.assert_serves().await;
}

use gatekit_tests::wired::{Ca, CaExt, secret, tls_get};

/// A TLS client that accepts any certificate (to see what an attacker gets past a
/// certificate mismatch).
fn insecure_connector() -> tokio_rustls::TlsConnector {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    #[derive(Debug)]
    struct AnyCert(std::sync::Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}
