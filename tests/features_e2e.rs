//! Gateway API conformance features proven end to end through the wired gateway:
//! manifests in a directory, real backends on loopback, real clients. Each test asserts
//! what the upstream conformance test of its feature asserts (named after the feature):
//!
//! - `HTTPRouteBackendURLRewrite`: a URLRewrite on a backendRef rewrites the path the
//!   backend sees (ReplaceFullPath and ReplacePrefixMatch).
//! - `HTTPRouteBackendRequestRedirect`: a RequestRedirect on a backendRef answers with that
//!   backendRef's redirect when it is the one chosen, and the backend is never reached.
//! - `GRPCRouteNamedRouteRule`: a GRPCRoute with named rules routes each method to its
//!   rule's backend (a gRPC exchange over h2c, answered with `grpc-status` trailers).
//! - `GRPCRouteRequestHeaderModifier`: a GRPCRoute rule's RequestHeaderModifier sets,
//!   adds and removes the metadata the gRPC backend receives.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gatekit_tests::wired::{Wired, free_port, gateway_http, h2c_service, service};
use gatekit_tests::{EchoBackend, TestClient};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Bounds a step of a test in time.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("not within 10 s")
}

/// Writes `docs` (YAML documents) to a fresh directory and starts the wired gateway on it.
async fn wired(docs: &[String]) -> (Wired, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), docs.join("---\n")).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    (wired, dir)
}

// --- HTTPRouteBackendURLRewrite ---

/// The conformance test's route (`httproute-backend-url-rewrite.yaml`), on Service `v1`.
fn backend_url_rewrite_route() -> String {
    r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: backend-url-rewrite, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /full } }]
    backendRefs:
    - name: v1
      port: 80
      filters:
      - type: URLRewrite
        urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /rewritten-full } }
  - matches: [{ path: { type: PathPrefix, value: /prefix } }]
    backendRefs:
    - name: v1
      port: 80
      filters:
      - type: URLRewrite
        urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /rewritten-prefix } }
"#
    .to_owned()
}

#[tokio::test]
async fn httproute_backend_url_rewrite_rewrites_the_path_the_backend_sees() {
    let mut v1 = EchoBackend::start("v1").await;
    let port = free_port();
    let (_wired, _dir) = wired(&[
        gateway_http(port),
        service("v1", v1.addr),
        backend_url_rewrite_route(),
    ])
    .await;
    let client = TestClient::new();
    for (path, expected) in [
        ("/full/original", "/rewritten-full"),
        ("/prefix/original", "/rewritten-prefix/original"),
        ("/prefix", "/rewritten-prefix"),
        ("/full/original?q=1", "/rewritten-full?q=1"),
    ] {
        let reply = within(client.get(&format!("http://127.0.0.1:{port}{path}"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header("x-backend"), Some("v1"), "{path}");
        let seen = v1.next_seen().await;
        let seen = seen.uri.path_and_query().unwrap().as_str().to_owned();
        assert_eq!(seen, expected, "{path}");
    }
}

// --- HTTPRouteBackendRequestRedirect ---

/// The conformance test's route (`httproute-backend-request-redirect.yaml`): one rule,
/// two backendRefs, each with its own RequestRedirect.
fn backend_request_redirect_route() -> String {
    r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: backend-request-redirect, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: / } }]
    backendRefs:
    - name: v1
      port: 80
      filters:
      - type: RequestRedirect
        requestRedirect: { scheme: https, hostname: redirect-example.com, port: 443, statusCode: 302 }
    - name: v2
      port: 80
      filters:
      - type: RequestRedirect
        requestRedirect: { scheme: http, hostname: redirect-example.com, port: 80, statusCode: 301 }
"#
    .to_owned()
}

#[tokio::test]
async fn httproute_backend_request_redirect_answers_the_chosen_backend_refs_redirect() {
    let v1 = EchoBackend::start("v1").await;
    let v2 = EchoBackend::start("v2").await;
    let port = free_port();
    let (_wired, _dir) = wired(&[
        gateway_http(port),
        service("v1", v1.addr),
        service("v2", v2.addr),
        backend_request_redirect_route(),
    ])
    .await;
    let client = TestClient::new();
    // Each backendRef has weight 1: both redirects show up within a few requests (the
    // chance that 100 requests all pick the same one is 2^-99).
    let mut seen: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for _ in 0..100 {
        let reply = within(client.get(&format!("http://127.0.0.1:{port}/some/path?q=1"))).await;
        let location = reply.header("location").unwrap_or_default().to_owned();
        *seen.entry((reply.status.as_u16(), location)).or_default() += 1;
        if seen.len() >= 2 {
            break;
        }
    }
    let kinds: Vec<_> = seen.keys().cloned().collect();
    assert_eq!(
        kinds,
        [
            (301, "http://redirect-example.com/some/path?q=1".to_owned()),
            (302, "https://redirect-example.com/some/path?q=1".to_owned()),
        ],
        "{seen:?}"
    );
    assert_eq!(
        v1.hits() + v2.hits(),
        0,
        "a redirect never reaches a backend"
    );
}

// --- GRPCRoute ---

/// What a gRPC backend saw of one call.
#[derive(Debug)]
struct Call {
    path: String,
    headers: HeaderMap,
}

/// A real hyper h2c server answering every call like a gRPC server: 200,
/// `content-type: application/grpc`, `x-backend: <name>`, one empty message and
/// `grpc-status: 0` in the trailers. Reports every call.
async fn grpc_backend(name: &'static str) -> (SocketAddr, mpsc::UnboundedReceiver<Call>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let _ = body.collect().await;
                        let _ = tx.send(Call {
                            path: parts.uri.path().to_owned(),
                            headers: parts.headers,
                        });
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames = vec![
                            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/grpc")
                                .header("x-backend", name)
                                .body(StreamBody::new(futures_util::stream::iter(frames)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// The next call a gRPC backend receives.
async fn next_call(rx: &mut mpsc::UnboundedReceiver<Call>) -> Call {
    within(rx.recv()).await.expect("backend stopped")
}

/// One unary gRPC call over a fresh h2c connection to the gateway: the `x-backend` the
/// response names and its `grpc-status` trailer.
async fn grpc_call(port: u16, path: &str, metadata: &[(&str, &str)]) -> (String, String) {
    let tcp = within(TcpStream::connect(("127.0.0.1", port)))
        .await
        .unwrap();
    let (mut sender, conn) = within(hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    ))
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = Request::post(format!("http://grpc.example{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (n, v) in metadata {
        req = req.header(*n, *v);
    }
    let req = req
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let rsp = within(sender.send_request(req)).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK, "{path}");
    let backend = rsp
        .headers()
        .get("x-backend")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = within(rsp.into_body().collect()).await.unwrap();
    let status = body
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (backend, status)
}

/// The conformance test's named-rule GRPCRoute: `Echo` to `v1`, `EchoTwo` to `v2`, in
/// rules named `echo` and `echo-two`.
fn grpc_named_rules_route() -> String {
    r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: grpc-named-rules, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - name: echo
    matches: [{ method: { service: gatekit.test.GrpcEcho, method: Echo } }]
    backendRefs: [{ name: v1, port: 80 }]
  - name: echo-two
    matches: [{ method: { service: gatekit.test.GrpcEcho, method: EchoTwo } }]
    backendRefs: [{ name: v2, port: 80 }]
"#
    .to_owned()
}

#[tokio::test]
async fn grpcroute_named_route_rule_routes_each_method_to_its_rules_backend() {
    let (a1, mut v1) = grpc_backend("v1").await;
    let (a2, mut v2) = grpc_backend("v2").await;
    let port = free_port();
    let (wired, _dir) = wired(&[
        gateway_http(port),
        h2c_service("v1", a1),
        h2c_service("v2", a2),
        grpc_named_rules_route(),
    ])
    .await;
    for (method, backend, rx) in [("Echo", "v1", &mut v1), ("EchoTwo", "v2", &mut v2)] {
        let path = format!("/gatekit.test.GrpcEcho/{method}");
        let (answered_by, status) = grpc_call(port, &path, &[]).await;
        assert_eq!((answered_by.as_str(), status.as_str()), (backend, "0"));
        let call = next_call(rx).await;
        assert_eq!(call.path, path);
        assert_eq!(call.headers["content-type"], "application/grpc");
    }
    // The route and both its named rules were accepted.
    let (status, body) = wired.admin("/config").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("echo-two"), "{body}");
}

/// The conformance test's header-modifier GRPCRoute, one method per rule (the upstream
/// manifest gives three rules the same match, of which only the first can ever win).
fn grpc_header_modifier_route() -> String {
    r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: grpc-request-header-modifier, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches: [{ method: { service: gatekit.test.GrpcEcho, method: Set } }]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: { set: [{ name: X-Header-Set, value: set-overwrites-values }] }
    backendRefs: [{ name: v1, port: 80 }]
  - matches: [{ method: { service: gatekit.test.GrpcEcho, method: Add } }]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: { add: [{ name: X-Header-Add, value: add-appends-values }] }
    backendRefs: [{ name: v1, port: 80 }]
  - matches: [{ method: { service: gatekit.test.GrpcEcho, method: Remove } }]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: { remove: [X-Header-Remove] }
    backendRefs: [{ name: v1, port: 80 }]
  - matches: [{ method: { service: gatekit.test.GrpcEcho, method: EchoTwo } }]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - { name: X-Header-Set-1, value: header-set-1 }
        - { name: X-Header-Set-2, value: header-set-2 }
        add:
        - { name: X-Header-Add-1, value: header-add-1 }
        - { name: X-Header-Add-2, value: header-add-2 }
        remove: [X-Header-Remove-1, X-Header-Remove-2]
    backendRefs: [{ name: v2, port: 80 }]
"#
    .to_owned()
}

/// Every value of header `name`, in order.
fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn grpcroute_request_header_modifier_sets_adds_and_removes_metadata() {
    let (a1, mut v1) = grpc_backend("v1").await;
    let (a2, mut v2) = grpc_backend("v2").await;
    let port = free_port();
    let (_wired, _dir) = wired(&[
        gateway_http(port),
        h2c_service("v1", a1),
        h2c_service("v2", a2),
        grpc_header_modifier_route(),
    ])
    .await;
    let svc = "/gatekit.test.GrpcEcho";
    let call = |method: &'static str, md: &'static [(&'static str, &'static str)]| async move {
        let (backend, status) = grpc_call(port, &format!("{svc}/{method}"), md).await;
        assert_eq!(status, "0", "{method}");
        backend
    };

    // Set: added when absent, overwrites when present; other metadata untouched.
    for md in [
        &[("some-other-header", "this-header-should-be-set")][..],
        &[
            ("some-other-header", "this-header-should-be-set"),
            ("x-header-set", "this-value-should-be-overwritten"),
        ],
    ] {
        assert_eq!(call("Set", md).await, "v1");
        let h = next_call(&mut v1).await.headers;
        assert_eq!(values(&h, "x-header-set"), ["set-overwrites-values"]);
        assert_eq!(
            values(&h, "some-other-header"),
            ["this-header-should-be-set"]
        );
    }

    // Add: added when absent, appended after the original value when present.
    assert_eq!(call("Add", &[("some-other-header", "x")]).await, "v1");
    let h = next_call(&mut v1).await.headers;
    assert_eq!(values(&h, "x-header-add"), ["add-appends-values"]);
    assert_eq!(values(&h, "some-other-header"), ["x"]);
    assert_eq!(
        call("Add", &[("x-header-add", "this-value-should-be-appended")]).await,
        "v1"
    );
    let h = next_call(&mut v1).await.headers;
    let added = values(&h, "x-header-add");
    assert_eq!(
        added.join(","),
        "this-value-should-be-appended,add-appends-values"
    );

    // Remove.
    assert_eq!(
        call("Remove", &[("x-header-remove", "this-should-be-removed")]).await,
        "v1"
    );
    let h = next_call(&mut v1).await.headers;
    assert!(h.get("x-header-remove").is_none(), "{h:?}");

    // Several operations at once, and the filter's canonical names match the request's
    // lowercase metadata.
    assert_eq!(
        call(
            "EchoTwo",
            &[
                ("x-header-set-1", "original-set-1"),
                ("x-header-add-1", "existing-add-1"),
                ("x-header-remove-1", "should-be-removed-1"),
                ("x-header-remove-2", "should-be-removed-2"),
                ("some-other-header", "another-header-val"),
            ],
        )
        .await,
        "v2"
    );
    let h = next_call(&mut v2).await.headers;
    assert_eq!(values(&h, "x-header-set-1"), ["header-set-1"]);
    assert_eq!(values(&h, "x-header-set-2"), ["header-set-2"]);
    assert_eq!(
        values(&h, "x-header-add-1").join(","),
        "existing-add-1,header-add-1"
    );
    assert_eq!(values(&h, "x-header-add-2"), ["header-add-2"]);
    assert!(h.get("x-header-remove-1").is_none(), "{h:?}");
    assert!(h.get("x-header-remove-2").is_none(), "{h:?}");
    assert_eq!(values(&h, "some-other-header"), ["another-header-val"]);
    assert_eq!(values(&h, "content-type"), ["application/grpc"]);
}
