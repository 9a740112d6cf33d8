//! Hostile input against the wired gateway (`gatekit run`'s library entry point on temp
//! manifests, a real echo backend behind it): request smuggling, malformed heads,
//! oversized targets and heads, absolute-form targets, path traversal, slowloris,
//! connection floods, HTTP/2 floods, upgrades to non-upgrading backends and broken TLS.
//! Each case asserts the exact answer and that the gateway still serves afterwards.
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
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: {port}, protocol: HTTP }}]
---
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

// === smuggling ===

#[tokio::test]
async fn smuggling_cl_te_probe() {
    let mut fx = Fixture::start().await;
    for (name, req) in [
        (
            "cl+te",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: app.example\r\n\r\n",
        ),
        (
            "te+cl",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: app.example\r\n\r\n",
        ),
        (
            "cl dup",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcdeGET /public/smuggled HTTP/1.1\r\nHost: app.example\r\n\r\n",
        ),
        (
            "cl list",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 4, 5\r\n\r\nabcde",
        ),
        (
            "cl same",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        (
            "te gzip",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
        ),
        (
            "te chunked,identity",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "te xchunked",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "te http/1.0",
            "POST /public/a HTTP/1.0\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunk overflow",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: app.example\r\n\r\n",
        ),
        (
            "chunk bad",
            "POST /public/a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n4;\x00\r\nabcd\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: app.example\r\n\r\n",
        ),
        (
            "obs-fold",
            "GET /public/a HTTP/1.1\r\nHost: app.example\r\nX-A: a\r\n b\r\n\r\n",
        ),
        (
            "nul",
            "GET /public/a HTTP/1.1\r\nHost: app.example\r\nX-A: a\x00b\r\n\r\n",
        ),
        (
            "cr",
            "GET /public/a HTTP/1.1\r\nHost: app.example\r\nX-A: a\rb\r\n\r\n",
        ),
        (
            "name space",
            "GET /public/a HTTP/1.1\r\nHost: app.example\r\nX A: b\r\n\r\n",
        ),
        (
            "name paren",
            "GET /public/a HTTP/1.1\r\nHost: app.example\r\nX(A): b\r\n\r\n",
        ),
        (
            "space colon",
            "GET /public/a HTTP/1.1\r\nHost : app.example\r\n\r\n",
        ),
        (
            "backslash",
            "GET /public\\..\\x HTTP/1.1\r\nHost: app.example\r\n\r\n",
        ),
        ("lf only", "GET /public/a HTTP/1.1\nHost: app.example\n\n"),
        (
            "abs evil",
            "GET http://evil.example/public/a HTTP/1.1\r\nHost: app.example\r\n\r\n",
        ),
        (
            "abs good",
            "GET http://app.example/public/a HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        ),
        (
            "ws",
            "GET /public/ws HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        ),
    ] {
        let r = fx.raw(req).await;
        let seen = fx.backend.drain_seen();
        eprintln!(
            "{name}: {:?} closed={} {:?}\n   backend: {:?}",
            r.statuses(),
            r.closed,
            r.text.lines().next(),
            seen.iter()
                .map(|s| (
                    s.uri.to_string(),
                    s.headers.get("host").cloned(),
                    s.body.len()
                ))
                .collect::<Vec<_>>()
        );
    }
    fx.assert_serves().await;
}
