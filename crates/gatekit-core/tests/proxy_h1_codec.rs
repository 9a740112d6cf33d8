//! gatekit's own HTTP/1.1 codec (the client's fast path for bodiless requests on
//! cleartext connections) against raw TCP backends that write exact bytes: chunked
//! bodies with trailers, 1xx responses, HEAD, close-delimited bodies, responses that
//! arrive a byte at a time, and connection reuse.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gatekit_core::client::{Client, EndpointClient, Transport};
use gatekit_core::{Body, Error, ErrorKind};
use http::Request;
use http_body_util::BodyExt;
use support::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw backend: on each connection, for each request head read, writes the next reply
/// of `replies` (`byte_by_byte`: one byte per write); closes after the last reply.
/// Returns its address and a counter of accepted connections.
async fn scripted(
    replies: Vec<&'static [u8]>,
    byte_by_byte: bool,
) -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    Arc<parking_lot::Mutex<Vec<u8>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (counter, seen2) = (accepted.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let replies = replies.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut pending = Vec::new();
                for reply in replies {
                    while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    seen.lock().extend(pending.drain(..end));
                    if byte_by_byte {
                        for b in reply {
                            stream.write_all(&[*b]).await.unwrap();
                            tokio::task::yield_now().await;
                        }
                    } else {
                        stream.write_all(reply).await.unwrap();
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, accepted, seen)
}

fn endpoint(addr: std::net::SocketAddr) -> EndpointClient {
    Client::default().endpoint(addr, Transport::http1())
}

fn req(method: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "codec.test")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn chunked_bodies_with_trailers_after_a_1xx_and_the_connection_is_reused() {
    let reply: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
        HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n\
        5;ext\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n";
    let (addr, accepted, seen) = scripted(vec![reply, reply], false).await;
    let ep = endpoint(addr);

    for _ in 0..2 {
        let rsp = within(ep.send(req("GET", "/c?q=1"))).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["x-a"], "1");
        let collected = within(rsp.into_body().collect()).await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-checksum"], "42");
        assert_eq!(&collected.to_bytes()[..], b"hello world");
        assert_eq!(
            ep.idle_connections(),
            1,
            "the connection is back at end of body"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for both"
    );
    let seen = String::from_utf8(seen.lock().clone()).unwrap();
    assert!(
        seen.starts_with("GET /c?q=1 HTTP/1.1\r\nhost: codec.test\r\n"),
        "{seen}"
    );
}

#[tokio::test]
async fn head_and_204_responses_have_no_body_and_keep_the_connection() {
    let (addr, accepted, seen) = scripted(
        vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ],
        false,
    )
    .await;
    let ep = endpoint(addr);

    let rsp = within(ep.send(req("HEAD", "/"))).await.unwrap();
    assert_eq!(rsp.headers()["content-length"], "10");
    assert!(
        within(rsp.into_body().collect())
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    let rsp = within(ep.send(req("DELETE", "/x"))).await.unwrap();
    assert_eq!(rsp.status(), 204);
    assert!(
        within(rsp.into_body().collect())
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    let rsp = within(ep.send(req("GET", "/"))).await.unwrap();
    assert_eq!(
        &within(rsp.into_body().collect()).await.unwrap().to_bytes()[..],
        b"ok"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let seen = String::from_utf8(seen.lock().clone()).unwrap();
    assert!(
        seen.contains("DELETE /x HTTP/1.1\r\nhost: codec.test\r\ncontent-length: 0\r\n\r\n"),
        "a bodiless DELETE says so: {seen}"
    );
}

#[tokio::test]
async fn a_close_delimited_body_is_read_to_the_end_and_not_pooled() {
    let (addr, _, _) = scripted(vec![b"HTTP/1.1 200 OK\r\nx: y\r\n\r\nuntil the end"], false).await;
    let ep = endpoint(addr);
    let rsp = within(ep.send(req("GET", "/"))).await.unwrap();
    let body = within(rsp.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"until the end");
    assert_eq!(ep.idle_connections(), 0);
}

#[tokio::test]
async fn a_response_arriving_a_byte_at_a_time_is_parsed() {
    let (addr, _, _) = scripted(
        vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nwxyz",
        ],
        true,
    )
    .await;
    let ep = endpoint(addr);
    let rsp = within(ep.send(req("GET", "/"))).await.unwrap();
    assert_eq!(
        &within(rsp.into_body().collect()).await.unwrap().to_bytes()[..],
        b"abc"
    );
    let rsp = within(ep.send(req("GET", "/"))).await.unwrap();
    assert_eq!(
        &within(rsp.into_body().collect()).await.unwrap().to_bytes()[..],
        b"wxyz"
    );
}

#[tokio::test]
async fn malformed_framing_is_a_typed_502() {
    // Conflicting lengths: the head is rejected.
    let (addr, _, _) = scripted(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nx"],
        false,
    )
    .await;
    let err = within(endpoint(addr).send(req("GET", "/")))
        .await
        .unwrap_err();
    assert_eq!(
        Error::find(&*err).unwrap().kind(),
        ErrorKind::UpstreamProtocol
    );

    // A bad chunk size: the body fails with a gatekit error.
    let (addr, _, _) = scripted(
        vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"],
        false,
    )
    .await;
    let rsp = within(endpoint(addr).send(req("GET", "/"))).await.unwrap();
    let err = within(rsp.into_body().collect()).await.unwrap_err();
    assert_eq!(
        Error::find(&*err).unwrap().kind(),
        ErrorKind::UpstreamProtocol
    );
}

/// A body fed by a channel: frames as they are sent, pending until then.
fn channel_body() -> (
    tokio::sync::mpsc::Sender<http_body::Frame<bytes::Bytes>>,
    Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<http_body::Frame<bytes::Bytes>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, std::convert::Infallible>(frame), rx))
    });
    (tx, Body::new(http_body_util::StreamBody::new(stream)))
}

/// A hyper backend that answers with the request's framing, body and `x-sum` trailer.
async fn echo_backend() -> support::TestBackend {
    support::backend(
        support::Mode::Http1,
        |req: Request<hyper::body::Incoming>| async move {
            let framing = if req.headers().contains_key("transfer-encoding") {
                "chunked".to_owned()
            } else {
                format!(
                    "length {}",
                    req.headers()["content-length"].to_str().unwrap()
                )
            };
            let collected = req.into_body().collect().await.unwrap();
            let sum = collected
                .trailers()
                .and_then(|t| t.get("x-sum"))
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = collected.to_bytes();
            http::Response::builder()
                .header("x-framing", framing)
                .header("x-sum", sum)
                .body(Body::from(body))
                .unwrap()
        },
    )
    .await
}

#[tokio::test]
async fn request_bodies_stream_chunked_or_sized_and_the_connection_is_reused() {
    let upstream = echo_backend().await;
    let ep = endpoint(upstream.addr);

    // Unknown length: chunked, with trailers, sent as the frames arrive.
    let (tx, body) = channel_body();
    let mut req = Request::post("/up").body(body).unwrap();
    req.headers_mut()
        .insert("host", "codec.test".parse().unwrap());
    let sending = tokio::spawn(async move {
        for part in ["one ", "two ", "three"] {
            tx.send(http_body::Frame::data(bytes::Bytes::from(part)))
                .await
                .unwrap();
        }
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", "42".parse().unwrap());
        tx.send(http_body::Frame::trailers(trailers)).await.unwrap();
    });
    let rsp = within(ep.send(req)).await.unwrap();
    within(sending).await.unwrap();
    assert_eq!(rsp.headers()["x-framing"], "chunked");
    assert_eq!(rsp.headers()["x-sum"], "42");
    let body = within(rsp.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"one two three");

    // A known length: Content-Length, the body written with the head.
    let req = Request::put("/up").body(Body::from("sized body")).unwrap();
    let rsp = within(ep.send(req)).await.unwrap();
    assert_eq!(rsp.headers()["x-framing"], "length 10");
    let body = within(rsp.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"sized body");

    assert_eq!(upstream.accepted(), 1, "both on one connection");
    assert_eq!(ep.idle_connections(), 1);
}

#[tokio::test]
async fn an_early_response_ends_the_upload_and_the_connection_is_not_reused() {
    // Answers 413 as soon as it has the head, without reading the body.
    let (addr, _, seen) = scripted(
        vec![b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\n\r\nbig!"],
        false,
    )
    .await;
    let ep = endpoint(addr);
    let (tx, body) = channel_body();
    let req = Request::post("/up")
        .header("content-length", "1000000")
        .body(body)
        .unwrap();
    tx.send(http_body::Frame::data(bytes::Bytes::from_static(b"first")))
        .await
        .unwrap();
    // The rest of the body never comes: the response must not wait for it.
    let rsp = within(ep.send(req)).await.unwrap();
    assert_eq!(rsp.status(), 413);
    let body = within(rsp.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"big!");
    assert_eq!(
        ep.idle_connections(),
        0,
        "the upstream did not read the whole request"
    );
    assert!(tx.is_closed(), "the request body was dropped");
    let seen = String::from_utf8(seen.lock().clone()).unwrap();
    assert!(seen.contains("content-length: 1000000\r\n"), "{seen}");
}

#[tokio::test]
async fn a_response_that_starts_before_the_upload_ends_streams_full_duplex() {
    // The backend answers at once with a body that is the request body, streamed back as
    // it arrives: each frame must make it through before the next one is sent.
    let upstream = support::backend(
        support::Mode::Http1,
        |req: Request<hyper::body::Incoming>| async move {
            http::Response::new(Body::from(req.into_body()))
        },
    )
    .await;
    let ep = endpoint(upstream.addr);
    let (tx, body) = channel_body();
    let req = Request::post("/duplex")
        .header("host", "codec.test")
        .body(body)
        .unwrap();
    tx.send(http_body::Frame::data(bytes::Bytes::from_static(b"ping 1")))
        .await
        .unwrap();
    let rsp = within(ep.send(req)).await.unwrap();
    let mut body = rsp.into_body();
    for i in 1..=3 {
        let frame = within(body.frame()).await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), format!("ping {i}").as_bytes());
        if i < 3 {
            let next = format!("ping {}", i + 1);
            tx.send(http_body::Frame::data(bytes::Bytes::from(next)))
                .await
                .unwrap();
        }
    }
    drop(tx);
    assert!(within(body.frame()).await.is_none(), "ends with the upload");
    assert_eq!(
        ep.idle_connections(),
        0,
        "an early response's connection is not reused"
    );
}
