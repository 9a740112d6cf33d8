//! HTTPRoute CORS filter (Gateway API feature `HTTPRouteCORS`) end to end through the
//! wired gateway: manifests in a directory, a real hyper backend on loopback that counts
//! what reaches it, a real client. Preflights are answered at the gateway (the backend
//! never sees them), actual requests are proxied and get the CORS response headers, and
//! an origin that is not allowed gets none. A preflight is routed by the method it
//! announces (`Access-Control-Request-Method`), and the gateway's own error responses
//! on a CORS rule carry the CORS headers.
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

// === preflights routed as the request they announce ===

/// Two rules on one path: `PUT` with a CORS filter, `GET` without.
fn method_routes() -> String {
    r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: methods, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /items }, method: PUT }]
    filters:
    - type: CORS
      cors: { allowOrigins: ["https://www.foo.com"], allowMethods: [PUT] }
    backendRefs: [{ name: web, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /items }, method: GET }]
    backendRefs: [{ name: web, port: 80 }]
"#
    .to_owned()
}

/// Starts the gateway on `docs` with the counting backend as Service `web`.
async fn start_with(docs: &[String]) -> Setup {
    let (addr, hits) = backend().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![gateway_http(port), service("web", addr)];
    all.extend(docs.iter().cloned());
    std::fs::write(dir.path().join("all.yaml"), all.join("---\n")).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    Setup {
        _wired: wired,
        _dir: dir,
        port,
        hits,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

/// A rule `method: PUT` with a CORS filter answers the preflight of a `PUT` (an
/// `OPTIONS` request announcing `PUT`), as Envoy Gateway does; a preflight announcing a
/// method no CORS rule matches, and a plain `OPTIONS`, are not taken by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_is_routed_by_the_method_it_announces() {
    let s = start_with(&[method_routes()]).await;
    let origin = ("origin", "https://www.foo.com");

    let (status, h, _) = s
        .send(
            Method::OPTIONS,
            "/items/1",
            &[origin, ("access-control-request-method", "PUT")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(header(&h, "access-control-allow-methods"), Some("PUT"));
    assert_eq!(s.hits(), 0, "the preflight is answered at the gateway");

    // The actual PUT goes to the backend with the CORS headers.
    let (status, h, body) = s.send(Method::PUT, "/items/1", &[origin]).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"backend"[..]));
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(s.hits(), 1);

    // GET's rule has no CORS filter, DELETE no rule: their preflights match nothing,
    // and neither does an OPTIONS that is not a preflight.
    for headers in [
        &[origin, ("access-control-request-method", "GET")][..],
        &[origin, ("access-control-request-method", "DELETE")],
        &[origin],
        &[("access-control-request-method", "PUT")],
    ] {
        let (status, h, _) = s.send(Method::OPTIONS, "/items/1", headers).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{headers:?}");
        assert_eq!(cors_headers(&h), Vec::<String>::new(), "{headers:?}");
    }
    assert_eq!(s.hits(), 1);
}

// === the gateway's own errors carry the CORS headers ===

/// A backend that accepts connections and never answers.
async fn hanging() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((io, _)) = listener.accept().await {
            held.push(io);
        }
    });
    addr
}

/// Rules with a CORS filter whose requests fail at the gateway: an upstream that
/// refuses connections (503), one that never answers within the request timeout (504),
/// and (route `limited`, with a TrafficPolicy) a rate limit of one request (429).
fn failing_routes() -> String {
    let cors = r#"    filters:
    - type: CORS
      cors: { allowOrigins: ["https://www.foo.com"], allowMethods: [GET], exposeHeaders: [x-gatekit-error] }
"#;
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: failing, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: /dead }} }}]
{cors}    backendRefs: [{{ name: dead, port: 80 }}]
  - matches: [{{ path: {{ type: PathPrefix, value: /slow }} }}]
    timeouts: {{ request: 200ms }}
{cors}    backendRefs: [{{ name: slow, port: 80 }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: limited, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: /limited }} }}]
{cors}    backendRefs: [{{ name: web, port: 80 }}]
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: one-per-hour, namespace: default }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: limited }}]
  rateLimit:
    rules:
    - limit: {{ requests: 1, unit: Hour }}
"#
    )
}

/// The gateway's own error responses on a rule with a CORS filter (503 for a refused
/// upstream, 504 for the request timeout, 429 from a rate limit) carry the CORS
/// response headers for an allowed origin, so a browser can read them; a disallowed
/// origin gets only `Vary: Origin`, a request without `Origin` nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_on_a_cors_rule_carry_the_cors_headers() {
    let dead = gatekit_tests::closed_port().await;
    let slow = hanging().await;
    let s = start_with(&[
        service("dead", dead),
        service("slow", slow),
        failing_routes(),
    ])
    .await;
    let allowed = ("origin", "https://www.foo.com");
    let expect_cors = |h: &HeaderMap, what: &str| {
        assert_eq!(
            header(h, "access-control-allow-origin"),
            Some("https://www.foo.com"),
            "{what}"
        );
        assert_eq!(
            header(h, "access-control-expose-headers"),
            Some("x-gatekit-error"),
            "{what}"
        );
        assert!(
            header(h, "vary").is_some_and(|v| v.eq_ignore_ascii_case("origin")),
            "{what}"
        );
    };

    let (status, h, _) = s.send(Method::GET, "/dead", &[allowed]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&h, "x-gatekit-error"), Some("upstream-connect"));
    expect_cors(&h, "503");

    let (status, h, _) = s.send(Method::GET, "/slow", &[allowed]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    expect_cors(&h, "504");

    let (status, _, _) = s.send(Method::GET, "/limited", &[allowed]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, h, _) = s.send(Method::GET, "/limited", &[allowed]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    expect_cors(&h, "429");

    // Not for a disallowed origin (only Vary), nor without an Origin.
    let (status, h, _) = s
        .send(Method::GET, "/dead", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(cors_headers(&h), Vec::<String>::new());
    assert!(header(&h, "vary").is_some_and(|v| v.eq_ignore_ascii_case("origin")));
    let (status, h, _) = s.send(Method::GET, "/dead", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(cors_headers(&h), Vec::<String>::new());
    assert_eq!(header(&h, "vary"), None);
}
