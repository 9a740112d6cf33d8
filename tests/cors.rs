//! HTTPRoute CORS filter (Gateway API feature `HTTPRouteCORS`) end to end through the
//! wired gateway: manifests in a directory, a real hyper backend on loopback that counts
//! what reaches it, a real client. Preflights are answered at the gateway (the backend
//! never sees them), actual requests are proxied and get the CORS response headers, and
//! an origin that is not allowed gets none.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use gatekit_tests::wired::{Wired, free_port, gateway_http, service};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A backend answering 200 `backend` with `x-header-3: from-backend`, counting requests.
async fn backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("x-header-3", "from-backend")
                                .body(Full::new(Bytes::from_static(b"backend")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// An HTTPRoute with three rules: `/cors` with a rule-level CORS filter, `/plain`
/// without one, `/per-backend` with CORS on its backendRef.
fn cors_route() -> String {
    r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: cors, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /cors } }]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3, x-header-4]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{ name: web, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /plain } }]
    backendRefs: [{ name: web, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /per-backend } }]
    backendRefs:
    - name: web
      port: 80
      filters:
      - type: CORS
        cors: { allowOrigins: ["*"], allowMethods: ["*"] }
"#
    .to_owned()
}

struct Setup {
    _wired: Wired,
    _dir: tempfile::TempDir,
    port: u16,
    hits: Arc<AtomicUsize>,
    client: Client<HttpConnector, Full<Bytes>>,
}

async fn start() -> Setup {
    let (addr, hits) = backend().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let text = [gateway_http(port), service("web", addr), cors_route()].join("---\n");
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    Setup {
        _wired: wired,
        _dir: dir,
        port,
        hits,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl Setup {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port));
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let rsp = self
            .client
            .request(b.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let (parts, body) = rsp.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

fn cors_headers(h: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = h
        .keys()
        .map(|n| n.as_str().to_owned())
        .filter(|n| n.starts_with("access-control-"))
        .collect();
    out.sort();
    out
}

const PREFLIGHT: [(&str, &str); 3] = [
    ("origin", "https://www.foo.com"),
    ("access-control-request-method", "GET"),
    ("access-control-request-headers", "x-header-1, x-header-2"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_cors_preflight_is_answered_without_the_backend() {
    let s = start().await;
    // The route is accepted and serves: the plain rule reaches the backend.
    let (status, _, body) = s.send(Method::GET, "/plain", &[]).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"backend"[..]));
    let before = s.hits();

    let (status, h, body) = s.send(Method::OPTIONS, "/cors/x", &PREFLIGHT).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        header(&h, "access-control-allow-methods"),
        Some("GET, OPTIONS")
    );
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("x-header-1, x-header-2")
    );
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("x-header-3, x-header-4")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("3600"));
    assert_eq!(header(&h, "vary"), Some("origin"));

    // A wildcard origin, many labels deep.
    let (status, h, _) = s
        .send(
            Method::OPTIONS,
            "/cors",
            &[
                ("origin", "https://xpto.www.bar.com"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://xpto.www.bar.com")
    );

    // A backendRef's CORS filter answers too, echoing the wildcard method.
    let (status, h, _) = s
        .send(
            Method::OPTIONS,
            "/per-backend",
            &[
                ("origin", "https://anywhere.example"),
                ("access-control-request-method", "PUT"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://anywhere.example")
    );
    assert_eq!(header(&h, "access-control-allow-methods"), Some("PUT"));
    assert_eq!(header(&h, "access-control-max-age"), Some("5"));
    assert_eq!(header(&h, "access-control-allow-credentials"), None);

    assert_eq!(s.hits(), before, "no preflight reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_cors_actual_request_is_proxied_with_cors_headers() {
    let s = start().await;
    let (status, h, body) = s
        .send(Method::GET, "/cors", &[("origin", "https://www.foo.com")])
        .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"backend"[..]));
    assert_eq!(s.hits(), 1);
    assert_eq!(header(&h, "x-header-3"), Some("from-backend"));
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("x-header-3, x-header-4")
    );
    assert_eq!(header(&h, "vary"), Some("origin"));
    // Preflight-only headers stay off actual responses.
    assert_eq!(header(&h, "access-control-allow-methods"), None);
    assert_eq!(header(&h, "access-control-max-age"), None);

    // No Origin: proxied, untouched.
    let (status, h, _) = s.send(Method::GET, "/cors", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.hits(), 2);
    assert!(cors_headers(&h).is_empty(), "{h:?}");
    assert_eq!(header(&h, "vary"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_cors_disallowed_origin_gets_no_cors_headers() {
    let s = start().await;
    for origin in [
        "https://foobar.com",
        "http://www.foo.com",
        "https://bar.com",
    ] {
        let (status, h, _) = s
            .send(
                Method::OPTIONS,
                "/cors",
                &[("origin", origin), ("access-control-request-method", "GET")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{origin}");
        assert!(cors_headers(&h).is_empty(), "{origin}: {h:?}");
    }
    assert_eq!(
        s.hits(),
        0,
        "a refused preflight is answered at the gateway too"
    );

    let (status, h, body) = s
        .send(Method::GET, "/cors", &[("origin", "https://foobar.com")])
        .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"backend"[..]));
    assert_eq!(s.hits(), 1, "the actual request is still proxied");
    assert!(cors_headers(&h).is_empty(), "{h:?}");
    assert_eq!(header(&h, "vary"), Some("origin"));
}
