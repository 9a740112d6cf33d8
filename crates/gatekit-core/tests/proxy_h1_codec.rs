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
