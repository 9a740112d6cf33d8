//! External authorization against real servers on loopback: an HTTP authorization
//! service, a gRPC one speaking Envoy's v3 protocol (hyper's HTTP/2 server and the
//! crate's own messages), and an upstream that echoes what it got.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::client::Client;
use gatekit_core::{Backend, Body, ConnectionInfo, error_response};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower_layer::Layer;

use super::*;

/// What a server received.
#[derive(Clone, Debug)]
struct Seen {
    method: http::Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves `handler` (HTTP/1.1 and HTTP/2 prior knowledge) on a loopback port, logging
/// every request it reads whole.
async fn serve<F, Fut>(handler: F) -> (SocketAddr, Log)
where
    F: Fn(Seen) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    let log = log.clone();
                    async move {
                        let (head, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let seen = Seen {
                            method: head.method,
                            uri: head.uri,
                            headers: head.headers,
                            body,
                        };
                        log.lock().unwrap().push(seen.clone());
                        Ok::<_, Infallible>(handler(seen).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, log)
}

/// An upstream answering 200 `upstream` to everything (what it got is in its log).
async fn upstream() -> (Backend, Log) {
    let (addr, log) = serve(|_seen| async { Response::new(Body::from("upstream")) }).await;
    (Backend::single(&Client::new(Default::default()), addr), log)
}

fn request(method: &str, path: &str, body: &'static str) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.example.com")
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut().insert(ConnectionInfo::new(
        "192.0.2.7:40000".parse().unwrap(),
        "127.0.0.1:8080".parse().unwrap(),
        false,
    ));
    req
}

/// Sends `req` through `layer` to `upstream`, errors turned into responses as gatekit
/// does; returns the status, headers and body the client gets.
async fn send(
    layer: &ExtAuthLayer,
    upstream: &Backend,
    req: Request<Body>,
) -> (StatusCode, HeaderMap, String) {
    let svc = layer.layer(upstream.clone());
    let rsp = match tower::ServiceExt::oneshot(svc, req).await {
        Ok(rsp) => rsp,
        Err(err) => error_response(&*err),
    };
    let (head, body) = rsp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        head.status,
        head.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn name(s: &'static str) -> HeaderName {
    HeaderName::from_static(s)
}

// === HTTP mode ===

/// The HTTP authorization service: decides by the checked path (after `/auth`).
async fn http_auth_service() -> (Backend, Log) {
    let (addr, log) = serve(|seen: Seen| async move {
        let path = seen.uri.path().trim_start_matches("/auth");
        match path {
            p if p.starts_with("/allow") => Response::builder()
                .status(204)
                .header("x-user", "alice")
                .header("x-groups", "a")
                .header("x-groups", "b")
                .header("x-not-forwarded", "1")
                .body(Body::empty())
                .unwrap(),
            p if p.starts_with("/deny") => Response::builder()
                .status(401)
                .header("www-authenticate", "Custom realm=\"x\"")
                .header("connection", "x-hop")
                .header("x-hop", "1")
                .body(Body::from("go away"))
                .unwrap(),
            p if p.starts_with("/slow") => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            _ => Response::builder()
                .status(500)
                .body(Body::from("auth broke"))
                .unwrap(),
        }
    })
    .await;
    (Backend::single(&Client::new(Default::default()), addr), log)
}

fn http_layer(auth: &Backend) -> ExtAuthConfig {
    ExtAuthConfig::http(
        auth.clone(),
        HttpService::new()
            .with_path_prefix("/auth/")
            .with_headers_to_backend([name("x-user"), name("x-groups"), name("x-role")]),
    )
    .with_headers_to_ext_auth([name("x-custom")])
}

#[tokio::test]
async fn http_allow_sends_the_head_and_copies_headers_to_backend() {
    let (auth, auth_log) = http_auth_service().await;
    let (up, up_log) = upstream().await;
    let layer = ExtAuthLayer::new(http_layer(&auth));
    let mut req = request("POST", "/allow/items?a=1", "payload");
    for (k, v) in [
        ("authorization", "Bearer t0k3n"),
        ("x-custom", "c1"),
        ("x-secret", "s"),
        ("x-user", "mallory"),
        ("x-role", "admin"),
    ] {
        req.headers_mut()
            .insert(name(k), HeaderValue::from_static(v));
    }
    let (status, _, body) = send(&layer, &up, req).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "upstream"));

    let checked = auth_log.lock().unwrap()[0].clone();
    assert_eq!(checked.method, "POST", "the original method");
    assert_eq!(
        checked.uri, "/auth/allow/items?a=1",
        "prefix + path + query"
    );
    assert_eq!(checked.headers["host"], "app.example.com");
    assert_eq!(checked.headers["authorization"], "Bearer t0k3n");
    assert_eq!(checked.headers["x-custom"], "c1");
    assert!(
        !checked.headers.contains_key("x-secret"),
        "only the named headers"
    );
    assert!(
        checked.body.is_empty(),
        "no body unless body forwarding is on"
    );

    let got = up_log.lock().unwrap()[0].clone();
    assert_eq!(
        got.headers["x-user"], "alice",
        "the service's value replaces the client's"
    );
    let groups: Vec<_> = got.headers.get_all("x-groups").iter().collect();
    assert_eq!(groups, ["a", "b"]);
    assert!(!got.headers.contains_key("x-not-forwarded"));
    assert!(
        !got.headers.contains_key("x-role"),
        "a named header the service did not vouch for is not the client's to set"
    );
    assert_eq!(got.body, "payload", "the body goes on untouched");
    assert_eq!(layer.stats().allowed(), 1);
}

#[tokio::test]
async fn http_deny_returns_the_services_answer_and_never_reaches_the_upstream() {
    let (auth, _) = http_auth_service().await;
    let (up, up_log) = upstream().await;
    let layer = ExtAuthLayer::new(http_layer(&auth));
    let svc = layer.layer(up.clone());
    let rsp = tower::ServiceExt::oneshot(svc, request("GET", "/deny", ""))
        .await
        .unwrap();
    assert!(rsp.extensions().get::<Denied>().is_some());
    let (status, headers, body) = send(&layer, &up, request("GET", "/deny", "")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Custom realm=\"x\"");
    assert!(
        !headers.contains_key("x-hop"),
        "hop-by-hop headers stay behind"
    );
    assert_eq!(body, "go away");
    assert!(up_log.lock().unwrap().is_empty());
    assert_eq!(layer.stats().denied(), 2);
}

#[tokio::test]
async fn http_timeout_fails_closed_with_503_or_open_to_the_upstream() {
    let (auth, _) = http_auth_service().await;
    let (up, up_log) = upstream().await;
    let closed = ExtAuthLayer::new(http_layer(&auth).with_timeout(Duration::from_millis(200)));
    let (status, headers, _) = send(&closed, &up, request("GET", "/slow", "")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-gatekit-error"], "auth-unavailable");
    assert_eq!(closed.stats().failed_closed(), 1);
    assert!(up_log.lock().unwrap().is_empty());

    let open = ExtAuthLayer::new(
        http_layer(&auth)
            .with_timeout(Duration::from_millis(200))
            .with_fail_open(true),
    );
    let (status, _, body) = send(&open, &up, request("POST", "/slow", "kept")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "upstream"));
    assert_eq!(open.stats().failed_open(), 1);
    assert_eq!(up_log.lock().unwrap()[0].body, "kept");
}

#[tokio::test]
async fn http_5xx_and_an_unreachable_service_are_failures_not_denials() {
    let (auth, _) = http_auth_service().await;
    let (up, _) = upstream().await;
    let layer = ExtAuthLayer::new(http_layer(&auth));
    let (status, headers, body) = send(&layer, &up, request("GET", "/other", "")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-gatekit-error"], "auth-unavailable");
    assert!(
        !body.contains("auth broke"),
        "the service's 5xx body is not shown"
    );

    // A port nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let nowhere = Backend::single(&Client::new(Default::default()), dead);
    let layer = ExtAuthLayer::new(ExtAuthConfig::http(nowhere, HttpService::new()));
    let (status, headers, _) = send(&layer, &up, request("GET", "/allow", "")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-gatekit-error"], "auth-unavailable");
}

#[tokio::test]
async fn http_body_forwarding_is_bounded_and_the_body_is_replayed() {
    let (auth, auth_log) = http_auth_service().await;
    let (up, up_log) = upstream().await;
    let layer = ExtAuthLayer::new(http_layer(&auth).with_body(BodyToExtAuth::new(16)));
    let (status, _, _) = send(&layer, &up, request("POST", "/allow", "hello")).await;
    assert_eq!(status, StatusCode::OK);
    let checked = auth_log.lock().unwrap()[0].clone();
    assert_eq!(checked.body, "hello");
    assert_eq!(checked.headers["content-length"], "5");
    assert_eq!(checked.headers["x-envoy-auth-partial-body"], "false");
    assert_eq!(up_log.lock().unwrap()[0].body, "hello");

    const LONG: &str = "0123456789abcdefghijklmnopqrstuvwxyz";
    let (status, headers, _) = send(&layer, &up, request("POST", "/allow", LONG)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["x-gatekit-error"], "payload-too-large");
    assert_eq!(
        auth_log.lock().unwrap().len(),
        1,
        "no check for a body over the limit"
    );
    assert_eq!(layer.stats().too_large(), 1);

    let partial = ExtAuthLayer::new(
        http_layer(&auth).with_body(BodyToExtAuth::new(16).with_allow_partial(true)),
    );
    let (status, _, _) = send(&partial, &up, request("POST", "/allow", LONG)).await;
    assert_eq!(status, StatusCode::OK);
    let checked = auth_log.lock().unwrap()[1].clone();
    assert_eq!(checked.body, &LONG[..16]);
    assert_eq!(checked.headers["x-envoy-auth-partial-body"], "true");
    assert_eq!(
        up_log.lock().unwrap()[1].body,
        LONG,
        "the whole body reaches the upstream"
    );
}

#[tokio::test]
async fn the_policy_guards_a_backend() {
    use gatekit_core::access::AccessPolicy;
    let (auth, _) = http_auth_service().await;
    let (up, _) = upstream().await;
    let policy = ExtAuthPolicy::new(http_layer(&auth));
    let guarded = policy.layer(up);
    let rsp = guarded.send(request("GET", "/deny", "")).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    let rsp = guarded.send(request("GET", "/allow", "")).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(policy.ext_auth_layer().stats().allowed(), 1);
}

// === gRPC mode ===

#[cfg(feature = "grpc")]
mod grpc {
    use gatekit_core::client::Transport;
    use prost::Message;

    use super::super::proto;
    use super::*;

    fn option(
        key: &str,
        value: &str,
        append: Option<bool>,
        action: i32,
    ) -> proto::HeaderValueOption {
        proto::HeaderValueOption {
            header: Some(proto::HeaderValue {
                key: key.into(),
                value: value.into(),
                raw_value: Vec::new(),
            }),
            append: append.map(|value| proto::BoolValue { value }),
            append_action: action,
        }
    }

    /// One gRPC answer: the message framed, then `grpc-status: 0` in the trailers.
    fn answer(msg: &proto::CheckResponse) -> Response<Body> {
        let msg = msg.encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        framed.extend_from_slice(&msg);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let body = http_body_util::Full::new(Bytes::from(framed))
            .map_err(|never: Infallible| match never {})
            .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
        Response::builder()
            .header("content-type", "application/grpc")
            .body(Body::new(body.map_err(|never: Infallible| match never {})))
            .unwrap()
    }

    /// An Envoy v3 `Authorization/Check` server deciding by the checked path.
    async fn grpc_auth_service() -> (Backend, Log) {
        let (addr, log) = serve(|seen: Seen| async move {
            assert_eq!(
                seen.uri.path(),
                "/envoy.service.auth.v3.Authorization/Check"
            );
            assert_eq!(seen.headers["content-type"], "application/grpc");
            let req = proto::CheckRequest::decode(&seen.body[5..]).unwrap();
            let path = req.attributes.unwrap().request.unwrap().http.unwrap().path;
            let ok = |code| {
                Some(proto::Status {
                    code,
                    message: String::new(),
                })
            };
            match path.as_str() {
                p if p.starts_with("/allow") => answer(&proto::CheckResponse {
                    status: ok(0),
                    http_response: Some(proto::HttpResponse::Ok(proto::OkHttpResponse {
                        headers: vec![
                            option("x-user", "alice", None, 0),
                            option("x-tag", "t2", Some(true), 0),
                            option("x-default", "service", None, 1),
                        ],
                        headers_to_remove: vec!["authorization".into(), "host".into()],
                        response_headers_to_add: vec![option("x-authz", "yes", None, 0)],
                    })),
                }),
                p if p.starts_with("/deny") => answer(&proto::CheckResponse {
                    status: ok(7),
                    http_response: Some(proto::HttpResponse::Denied(proto::DeniedHttpResponse {
                        status: Some(proto::HttpStatus { code: 401 }),
                        headers: vec![option("www-authenticate", "Bearer realm=\"opa\"", None, 0)],
                        body: "no entry".into(),
                    })),
                }),
                p if p.starts_with("/bare-deny") => answer(&proto::CheckResponse {
                    status: ok(16),
                    http_response: None,
                }),
                p if p.starts_with("/slow") => {
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                _ => Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "12")
                    .body(Body::empty())
                    .unwrap(),
            }
        })
        .await;
        let backend =
            Backend::single_with(&Client::new(Default::default()), addr, Transport::http2());
        (backend, log)
    }

    fn grpc_config(auth: &Backend) -> ExtAuthConfig {
        ExtAuthConfig::grpc(auth.clone(), GrpcService::new("authz.test:9001").unwrap())
    }

    #[tokio::test]
    async fn grpc_allow_sends_attributes_and_applies_the_ok_response() {
        let (auth, auth_log) = grpc_auth_service().await;
        let (up, up_log) = upstream().await;
        let layer = ExtAuthLayer::new(grpc_config(&auth).with_body(BodyToExtAuth::new(64)));
        let mut req = request("PUT", "/allow/x?q=1", "{\"k\":1}");
        for (k, v) in [
            ("authorization", "Bearer abc"),
            ("x-user", "mallory"),
            ("x-tag", "t1"),
            ("x-default", "client"),
            ("x-request-id", "rid-1"),
        ] {
            req.headers_mut()
                .insert(name(k), HeaderValue::from_static(v));
        }
        let (status, headers, body) = send(&layer, &up, req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "upstream"));
        assert_eq!(headers["x-authz"], "yes", "response_headers_to_add");

        let call = auth_log.lock().unwrap()[0].clone();
        assert_eq!(call.method, "POST");
        assert_eq!(call.headers["te"], "trailers");
        assert_eq!(call.headers["grpc-timeout"], "10000m");
        assert_eq!(call.body[0], 0, "uncompressed");
        let len = u32::from_be_bytes(call.body[1..5].try_into().unwrap()) as usize;
        assert_eq!(call.body.len(), 5 + len);
        let attrs = proto::CheckRequest::decode(&call.body[5..])
            .unwrap()
            .attributes
            .unwrap();
        let source = attrs
            .source
            .unwrap()
            .address
            .unwrap()
            .socket_address
            .unwrap();
        assert_eq!(
            (source.address.as_str(), source.port_value),
            ("192.0.2.7", 40000)
        );
        let http = attrs.request.unwrap().http.unwrap();
        assert_eq!(http.method, "PUT");
        assert_eq!(http.path, "/allow/x?q=1");
        assert_eq!(http.host, "app.example.com");
        assert_eq!(http.scheme, "http");
        assert_eq!(http.id, "rid-1");
        assert_eq!(http.body, "{\"k\":1}");
        assert_eq!(
            http.headers["authorization"], "Bearer abc",
            "all headers by default"
        );
        assert_eq!(http.headers[":method"], "PUT");
        assert_eq!(http.headers[":authority"], "app.example.com");

        let got = up_log.lock().unwrap()[0].clone();
        assert_eq!(got.headers["x-user"], "alice", "unset append replaces");
        let tags: Vec<_> = got.headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["t1", "t2"], "append: true appends");
        assert_eq!(
            got.headers["x-default"], "client",
            "ADD_IF_ABSENT keeps the client's"
        );
        assert!(
            !got.headers.contains_key("authorization"),
            "headers_to_remove"
        );
        assert_eq!(
            got.headers["host"], "app.example.com",
            "Host is never removed"
        );
        assert_eq!(got.body, "{\"k\":1}");
    }

    #[tokio::test]
    async fn grpc_deny_answers_with_the_denied_response() {
        let (auth, _) = grpc_auth_service().await;
        let (up, up_log) = upstream().await;
        let layer = ExtAuthLayer::new(grpc_config(&auth));
        let (status, headers, body) = send(&layer, &up, request("GET", "/deny", "")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"opa\"");
        assert_eq!(body, "no entry");
        let (status, _, body) = send(&layer, &up, request("GET", "/bare-deny", "")).await;
        assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, ""));
        assert!(up_log.lock().unwrap().is_empty());
        assert_eq!(layer.stats().denied(), 2);
    }

    #[tokio::test]
    async fn grpc_timeout_and_failed_calls_fail_closed_or_open() {
        let (auth, _) = grpc_auth_service().await;
        let (up, up_log) = upstream().await;
        let closed = ExtAuthLayer::new(grpc_config(&auth).with_timeout(Duration::from_millis(200)));
        let (status, headers, _) = send(&closed, &up, request("GET", "/slow", "")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["x-gatekit-error"], "auth-unavailable");
        let (status, _, _) = send(&closed, &up, request("GET", "/unimplemented", "")).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "grpc-status 12 is a failure"
        );
        assert_eq!(closed.stats().failed_closed(), 2);
        assert!(up_log.lock().unwrap().is_empty());

        let open = ExtAuthLayer::new(
            grpc_config(&auth)
                .with_timeout(Duration::from_millis(200))
                .with_fail_open(true),
        );
        let (status, _, body) = send(&open, &up, request("GET", "/slow", "")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "upstream"));
        assert_eq!(open.stats().failed_open(), 1);
        assert_eq!(up_log.lock().unwrap().len(), 1);
    }
}

/// A body of several data frames, as a client streaming its upload sends it.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[tokio::test]
async fn a_partial_body_is_cut_for_the_check_and_streamed_whole_with_its_unread_rest() {
    let (auth, auth_log) = http_auth_service().await;
    let (up, up_log) = upstream().await;
    let layer = ExtAuthLayer::new(
        http_layer(&auth).with_body(BodyToExtAuth::new(16).with_allow_partial(true)),
    );
    let chunks = (0..4)
        .map(|i| Bytes::from(format!("chunk-{i}-abcd|")))
        .collect();
    let mut req = request("POST", "/allow", "");
    *req.body_mut() = Body::new(Chunks(chunks));
    let (status, _, _) = send(&layer, &up, req).await;
    assert_eq!(status, StatusCode::OK);
    let checked = auth_log.lock().unwrap()[0].clone();
    assert_eq!(checked.body, "chunk-0-abcd|chu");
    assert_eq!(checked.headers["x-envoy-auth-partial-body"], "true");
    assert_eq!(
        up_log.lock().unwrap()[0].body,
        "chunk-0-abcd|chunk-1-abcd|chunk-2-abcd|chunk-3-abcd|",
        "the frames read for the check, then the ones never read"
    );
}
