//! Proxying through `gatekit_core::client` and `gatekit_core::proxy`: HTTP/1.1 and
//! HTTP/2 on both sides, header hygiene, connection reuse, gRPC-style trailers.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use gatekit_core::client::{Client, Transport};
use gatekit_core::{Backend, Body};
use http::{HeaderMap, Request, Response, Version};
use http_body::Frame;
use http_body_util::StreamBody;
use parking_lot::Mutex;
use support::{Mode, backend, body_bytes, gateway, h1_client, h2_client, within};

/// What a backend saw of each request.
#[derive(Clone, Debug)]
struct Seen {
    version: Version,
    uri: http::Uri,
    headers: HeaderMap,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A backend handler that records each request and echoes its body.
fn recording_echo(
    log: Log,
) -> impl Fn(
    Request<hyper::body::Incoming>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |req: Request<hyper::body::Incoming>| {
        let log = log.clone();
        Box::pin(async move {
            log.lock().push(Seen {
                version: req.version(),
                uri: req.uri().clone(),
                headers: req.headers().clone(),
            });
            let body = body_bytes(req.into_body()).await;
            Response::builder()
                .header("connection", "x-resp-hop")
                .header("x-resp-hop", "1")
                .header("keep-alive", "timeout=5")
                .header("x-backend", "echo")
                .body(Body::from(body))
                .unwrap()
        })
    }
}

#[tokio::test]
async fn keep_alive_reuses_upstream_connections_and_strips_hop_by_hop_headers() {
    let log = Log::default();
    let upstream = backend(Mode::Http1, recording_echo(log.clone())).await;
    let client = Client::default();
    let gw = gateway(Backend::single(&client, upstream.addr)).await;

    let http = h1_client();
    const N: usize = 10;
    for i in 0..N {
        let req = Request::post(format!("http://{gw}/echo?i={i}"))
            .header("host", "example.test")
            .header("connection", "keep-alive, x-custom")
            .header("x-custom", "secret")
            .header("keep-alive", "timeout=300")
            .header("x-forwarded-for", "203.0.113.9")
            .body(Body::from(format!("body {i}")))
            .unwrap();
        let rsp = within(http.request(req)).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["x-backend"], "echo");
        assert!(!rsp.headers().contains_key("x-resp-hop"));
        assert!(!rsp.headers().contains_key("keep-alive"));
        assert_eq!(
            &body_bytes(rsp.into_body()).await[..],
            format!("body {i}").as_bytes()
        );
    }

    assert!(
        upstream.accepted() < N,
        "the upstream saw {} connections for {N} sequential requests",
        upstream.accepted()
    );
    assert_eq!(upstream.accepted(), 1);
    let seen = log.lock().clone();
    assert_eq!(seen.len(), N);
    let mut ids = std::collections::HashSet::new();
    for (i, s) in seen.iter().enumerate() {
        let h = &s.headers;
        assert_eq!(s.version, Version::HTTP_11);
        assert_eq!(s.uri, format!("/echo?i={i}").as_str());
        assert_eq!(h["host"], "example.test");
        for gone in ["connection", "keep-alive", "x-custom"] {
            assert!(!h.contains_key(gone), "backend received {gone}");
        }
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.test");
        let id = h["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32);
        ids.insert(id);
    }
    assert_eq!(ids.len(), N, "request ids are unique");
}

#[tokio::test]
async fn h2_client_is_proxied_to_an_http1_backend() {
    let log = Log::default();
    let upstream = backend(Mode::Http1, recording_echo(log.clone())).await;
    let client = Client::default();
    let gw = gateway(Backend::single(&client, upstream.addr)).await;

    let http = h2_client();
    let req = Request::get(format!("http://{gw}/path?q=1"))
        .body(Body::empty())
        .unwrap();
    let rsp = within(http.request(req)).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.version(), Version::HTTP_2);

    let seen = log.lock()[0].clone();
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.uri, "/path?q=1");
    // The h2 client sent no Host: the backend gets the request's authority.
    assert_eq!(seen.headers["host"], gw.to_string().as_str());
}

#[tokio::test]
async fn h1_client_is_proxied_to_an_h2c_backend_over_one_connection() {
    let log = Log::default();
    let upstream = backend(Mode::Http2, recording_echo(log.clone())).await;
    let client = Client::default();
    let gw = gateway(Backend::single_with(
        &client,
        upstream.addr,
        Transport::http2(),
    ))
    .await;

    let http = h1_client();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::post(format!("http://{gw}/h2/{i}"))
                .header("host", "example.test")
                .body(Body::from(format!("hello {i}")))
                .unwrap();
            let rsp = within(http.request(req)).await.unwrap();
            assert_eq!(rsp.status(), 200);
            assert_eq!(
                &body_bytes(rsp.into_body()).await[..],
                format!("hello {i}").as_bytes()
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(upstream.accepted(), 1, "h2 requests share one connection");
    let seen = log.lock().clone();
    assert_eq!(seen.len(), 8);
    for s in &seen {
        assert_eq!(s.version, Version::HTTP_2);
        assert_eq!(s.uri.authority().unwrap(), "example.test");
        assert_eq!(s.uri.scheme_str(), Some("http"));
        assert!(!s.headers.contains_key("host"));
        assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    }
}

#[tokio::test]
async fn grpc_trailers_reach_an_h2_client() {
    let te_seen = Arc::new(Mutex::new(Vec::new()));
    let te_log = te_seen.clone();
    let upstream = backend(Mode::Http2, move |req: Request<hyper::body::Incoming>| {
        let te_log = te_log.clone();
        async move {
            te_log.lock().push(req.headers().get("te").cloned());
            let (status, message) = if req.uri().path() == "/pkg.Svc/Ok" {
                ("0", "")
            } else {
                ("13", "internal failure")
            };
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", status.parse().unwrap());
            if !message.is_empty() {
                trailers.insert("grpc-message", message.parse().unwrap());
            }
            let frames = vec![
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))),
                Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x02yo"))),
                Ok(Frame::trailers(trailers)),
            ];
            Response::builder()
                .header("content-type", "application/grpc")
                .body(Body::new(StreamBody::new(futures_util::stream::iter(
                    frames,
                ))))
                .unwrap()
        }
    })
    .await;
    let client = Client::default();
    let gw = gateway(Backend::single_with(
        &client,
        upstream.addr,
        Transport::http2(),
    ))
    .await;

    let http = h2_client();
    for (path, status) in [("/pkg.Svc/Ok", "0"), ("/pkg.Svc/Fail", "13")] {
        let req = Request::post(format!("http://{gw}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Body::from(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let rsp = within(http.request(req)).await.unwrap();
        assert_eq!(rsp.status(), 200);
        let collected = within(http_body_util::BodyExt::collect(rsp.into_body()))
            .await
            .unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers["grpc-status"], status);
        if status != "0" {
            assert_eq!(trailers["grpc-message"], "internal failure");
        }
        assert_eq!(collected.to_bytes().len(), 14);
    }
    for te in te_seen.lock().iter() {
        assert_eq!(te.as_ref().unwrap(), "trailers");
    }
}
