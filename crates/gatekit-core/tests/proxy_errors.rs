//! Upstream failures through the proxy: refused connects, connections closed before or
//! during a response, and a slow backend that must not block others.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::Arc;

use gatekit_core::client::{Client, Transport};
use gatekit_core::{Backend, Body, Error, ErrorKind};
use http::{Request, Response};
use support::{Mode, backend, gateway, h1_client, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

/// An address nothing listens on: bound, then released.
async fn closed_port() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[tokio::test]
async fn refused_connect_is_a_retry_safe_connect_error_and_a_503() {
    let addr = closed_port().await;
    let client = Client::default();

    let ep = client.endpoint(addr, Transport::http1());
    let err = within(ep.send(Request::get("/").body(Body::empty()).unwrap()))
        .await
        .unwrap_err();
    let err = Error::find(&*err).expect("a gatekit error");
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(err.is_retry_safe());

    let gw = gateway(Backend::single(&client, addr)).await;
    let rsp = within(h1_client().get(format!("http://{gw}/").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["x-gatekit-error"], "upstream-connect");

    // The same for h2c: the shared connect attempt fails for its waiters.
    let ep = client.endpoint(addr, Transport::http2());
    let err = within(ep.send(Request::get("/").body(Body::empty()).unwrap()))
        .await
        .unwrap_err();
    assert_eq!(Error::find(&*err).unwrap().kind(), ErrorKind::Connect);
}

/// A raw TCP backend: reads a request head, then writes `reply` and closes.
async fn raw_backend(reply: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn backend_closing_before_the_response_is_a_502() {
    let addr = raw_backend(b"").await;
    let client = Client::default();

    let ep = client.endpoint(addr, Transport::http1());
    let err = within(ep.send(Request::get("/").body(Body::empty()).unwrap()))
        .await
        .unwrap_err();
    let err = Error::find(&*err).expect("a gatekit error");
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
    assert!(!err.is_retry_safe(), "the request was written");

    let gw = gateway(Backend::single(&client, addr)).await;
    let rsp = within(h1_client().get(format!("http://{gw}/").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 502);
    assert_eq!(rsp.headers()["x-gatekit-error"], "upstream-protocol");
}

#[tokio::test]
async fn backend_closing_mid_response_aborts_the_client_response() {
    let addr = raw_backend(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial").await;
    let client = Client::default();
    let gw = gateway(Backend::single(&client, addr)).await;

    let rsp = within(h1_client().get(format!("http://{gw}/").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let body = within(http_body_util::BodyExt::collect(rsp.into_body())).await;
    assert!(body.is_err(), "a truncated body must not look complete");

    // A malformed status line is a 502 as well.
    let addr = raw_backend(b"HTTP/1.1 abc\r\n\r\n").await;
    let gw = gateway(Backend::single(&client, addr)).await;
    let rsp = within(h1_client().get(format!("http://{gw}/").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 502);
}

#[tokio::test]
async fn a_slow_backend_request_does_not_block_others() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let slow_arrived = Arc::new(Notify::new());
    let arrived = slow_arrived.clone();
    let upstream = backend(Mode::Http1, move |req: Request<hyper::body::Incoming>| {
        let release_rx = release_rx.clone();
        let arrived = arrived.clone();
        async move {
            if req.uri().path() == "/slow" {
                arrived.notify_one();
                if let Some(rx) = release_rx.lock().await.take() {
                    let _ = rx.await;
                }
                return Response::new(Body::from("slow"));
            }
            Response::new(Body::from("fast"))
        }
    })
    .await;
    let client = Client::default();
    let gw = gateway(Backend::single(&client, upstream.addr)).await;

    let slow = tokio::spawn(async move {
        let rsp = h1_client()
            .get(format!("http://{gw}/slow").parse().unwrap())
            .await
            .unwrap();
        support::body_bytes(rsp.into_body()).await
    });
    within(slow_arrived.notified()).await;

    let http = h1_client();
    for _ in 0..5 {
        let rsp = within(http.get(format!("http://{gw}/fast").parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(&support::body_bytes(rsp.into_body()).await[..], b"fast");
    }
    assert!(!slow.is_finished());
    assert_eq!(
        upstream.accepted(),
        2,
        "the slow request holds one connection, the fast ones share another"
    );

    release_tx.send(()).unwrap();
    assert_eq!(&within(slow).await.unwrap()[..], b"slow");
}
