//! The codec on real sockets: raw bytes in, raw bytes out.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::Body;
use crate::server::{Drain, Http1Codec, Server, ServerConfig, serve_with};

/// A server answering `GET /echo` with its method, path and body, `/stream` with a
/// chunked body and a trailer, `/fail` with a body that fails after its first frame,
/// `/hang` never (reporting its drop on `dropped`), anything else `ok`.
async fn start(config: ServerConfig) -> (SocketAddr, mpsc::UnboundedReceiver<&'static str>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (events, rx) = mpsc::unbounded_channel();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let events = events.clone();
        async move {
            let path = req.uri().path().to_owned();
            let method = req.method().clone();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let rsp = match path.as_str() {
                "/stream" => {
                    let mut trailers = HeaderMap::new();
                    trailers.insert("x-sum", HeaderValue::from_static("42"));
                    let frames = vec![
                        Ok::<_, Infallible>(Frame::data(Bytes::from("hel"))),
                        Ok(Frame::data(Bytes::from("lo"))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    let rsp = Response::builder()
                        .header("trailer", "x-sum")
                        .body(Body::new(StreamBody::new(futures_util::stream::iter(
                            frames,
                        ))))
                        .unwrap();
                    return Ok::<_, Infallible>(rsp);
                }
                "/fail" => {
                    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
                        Ok(Frame::data(Bytes::from("part"))),
                        Err(std::io::Error::other("upstream reset")),
                    ];
                    let body = Body::new(StreamBody::new(futures_util::stream::iter(frames)));
                    return Ok(Response::new(body));
                }
                "/hang" => {
                    struct Dropped(mpsc::UnboundedSender<&'static str>);
                    impl Drop for Dropped {
                        fn drop(&mut self) {
                            let _ = self.0.send("hang dropped");
                        }
                    }
                    let _guard = Dropped(events.clone());
                    let _ = events.send("hang started");
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                "/echo" => format!("{method} {path} {}", String::from_utf8_lossy(&body)),
                _ => "ok".to_owned(),
            };
            Ok(Response::new(Body::full(rsp)))
        }
    });
    tokio::spawn(serve_with(listener, svc, std::future::pending(), config));
    (addr, rx)
}

/// Sends `bytes`, then reads until the server closes or `until` is seen `count` times.
async fn exchange(addr: SocketAddr, bytes: &[u8], until: &str, count: usize) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    read_until(&mut tcp, until, count).await
}

async fn read_until(tcp: &mut TcpStream, until: &str, count: usize) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).matches(until).count() >= count {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answered in time");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_close_is_honoured() {
    let (addr, _) = start(ServerConfig::default()).await;
    let text = exchange(
        addr,
        b"GET /echo?1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n",
        "\u{0}",
        1,
    )
    .await;
    let answers: Vec<&str> = text.split("HTTP/1.1 200 OK\r\n").skip(1).collect();
    assert_eq!(answers.len(), 3, "{text}");
    assert!(answers[0].ends_with("\r\n\r\nGET /echo "), "{text}");
    assert!(
        answers[1].contains("content-length: 2\r\n"),
        "HEAD keeps its length: {text}"
    );
    assert!(answers[1].ends_with("\r\n\r\n"), "HEAD has no body: {text}");
    assert!(answers[2].contains("connection: close\r\n"), "{text}");
    assert!(answers[2].ends_with("GET /echo "), "{text}");
}

#[tokio::test]
async fn a_connection_goes_to_hyper_at_its_first_body_and_stays_correct() {
    let (addr, _) = start(ServerConfig::default()).await;
    let text = exchange(
        addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloPOST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
        "200 OK",
        4,
    )
    .await;
    let bodies: Vec<&str> = text
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|a| a.split("\r\n\r\n").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        bodies,
        [
            "GET /echo ",
            "POST /echo hello",
            "POST /echo abc",
            "GET /echo "
        ],
        "{text}"
    );
}

#[tokio::test]
async fn the_h2_preface_after_a_served_request_is_not_http2() {
    // Found by the proxy_pipeline fuzz target: the codec served a request, then handed
    // the preface to hyper's automatic builder, which switched the connection to h2.
    let (addr, _) = start(ServerConfig::default()).await;
    let text = exchange(
        addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "\u{0}",
        1,
    )
    .await;
    let rest = text.split_once("GET /echo ").map_or("", |(_, rest)| rest);
    assert!(rest.is_empty() || rest.starts_with("HTTP/1.1 "), "{text:?}");
}

#[tokio::test]
async fn malformed_and_oversized_heads_get_hypers_answers() {
    let (addr, _) = start(ServerConfig::default()).await;
    let text = exchange(addr, b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", "\u{0}", 1).await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for _ in 0..1400 {
        big.extend_from_slice(b"X-Pad: 0123456789012345678901234567890123456789\r\n");
    }
    big.extend_from_slice(b"\r\n");
    let text = exchange(addr, &big, "\u{0}", 1).await;
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
}

#[tokio::test]
async fn streamed_bodies_are_chunked_with_announced_trailers() {
    let (addr, _) = start(ServerConfig::default()).await;
    let text = exchange(
        addr,
        b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
        "\r\n\r\n",
        2,
    )
    .await;
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\nx-sum: 42\r\n\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_body_closes_the_connection() {
    let (addr, _) = start(ServerConfig::default()).await;
    let text = exchange(
        addr,
        b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
        "\u{0}",
        1,
    )
    .await;
    assert!(text.contains("4\r\npart\r\n"), "{text}");
    assert!(
        !text.contains("0\r\n\r\n"),
        "the cut body is not ended: {text}"
    );
    assert_eq!(
        text.matches("HTTP/1.1").count(),
        1,
        "no second answer: {text}"
    );
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_request() {
    let (addr, mut events) = start(ServerConfig::default()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(events.recv().await, Some("hang started"));
    drop(tcp);
    assert_eq!(events.recv().await, Some("hang dropped"));
}

#[tokio::test]
async fn an_idle_connection_closes_at_the_header_read_timeout_a_busy_one_does_not() {
    let config = ServerConfig::default().header_read_timeout(Duration::from_millis(300));
    let (addr, _) = start(config).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // Requests keep coming for longer than the timeout: each restarts it.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(700) {
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let text = read_until(&mut tcp, "ok", 1).await;
        assert!(text.ends_with("ok"), "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then a partial head: closed once the timeout passes.
    tcp.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?} {rest:?}");
}

#[tokio::test]
async fn a_drain_closes_idle_connections_and_ends_in_flight_ones_after_their_response() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let drain = Drain::new();
    let (release_tx, release) = oneshot::channel::<()>();
    let release = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release)));
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let (release, started_tx) = (release.clone(), started_tx.clone());
        async move {
            if req.uri().path() == "/slow"
                && let Some(rx) = release.lock().await.take()
            {
                let _ = started_tx.send(());
                let _ = rx.await;
            }
            Ok::<_, Infallible>(Response::new(Body::full("done")))
        }
    });
    let handle = Server::from_listener(listener)
        .unwrap()
        .drain(&drain)
        .serve(svc);
    let addr = handle.local_addr();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut idle, "done", 1).await;
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    started.recv().await;
    let draining = tokio::spawn({
        let drain = drain.clone();
        async move { drain.drain(Duration::from_secs(10)).await }
    });
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle connection closes: {closed:?}"
    );
    let _ = release_tx.send(());
    let text = read_until(&mut busy, "\u{0}", 1).await;
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("done"), "{text}");
    assert!(draining.await.is_ok());
}

#[tokio::test]
async fn the_codec_can_be_turned_off() {
    let (addr, _) = start(ServerConfig::default().http1_codec(Http1Codec::Hyper)).await;
    let text = exchange(
        addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "\u{0}",
        1,
    )
    .await;
    assert!(text.ends_with("GET /echo "), "{text}");
}

/// What every open connection holds while idle is the serving future's state: it must
/// not carry a request, a response or hyper's state (each is boxed when needed). It was
/// 2.5 KB with the exchange inline.
#[tokio::test]
async fn the_state_an_idle_connection_holds_stays_small() {
    let svc = tower::service_fn(|_req: Request<Body>| async move {
        Ok::<_, Infallible>(Response::new(Body::full("x")))
    });
    let (io, _peer) = tokio::io::duplex(64);
    let info = crate::ConnectionInfo::new(
        ([127, 0, 0, 1], 1).into(),
        ([127, 0, 0, 1], 2).into(),
        false,
    );
    let http = std::sync::Arc::new(crate::server::config::Http::new(&ServerConfig::default()));
    let none = crate::server::drain::DrainSignal::none();
    let serving = super::super::connection::serve_http(io, info, http, svc, none);
    let size = std::mem::size_of_val(&serving);
    assert!(size <= 768, "a connection's future is {size} bytes");
}
