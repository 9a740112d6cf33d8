//! Request limits end to end: gatekit's server, the limit layers, gatekit's upstream
//! client and a real hyper backend, all over loopback.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use gatekit_core::client::{Client, Transport};
use gatekit_core::limit::{BodyLimitLayer, ConcurrencyLimitLayer, InFlightLimit};
use gatekit_core::{Backend, Body, BoxError, HandleErrorLayer};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use support::{Mode, TestBackend, backend, body_bytes, h1_client, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::ServiceBuilder;

const MIB: usize = 1024 * 1024;
const FRAME: usize = 16 * 1024;

/// gatekit's server in front of `backend` through gatekit's client, with the limits of a
/// rule's stack and errors turned into responses.
async fn gateway(backend: Backend, in_flight: Arc<InFlightLimit>, max_body: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServiceBuilder::new()
        .layer(HandleErrorLayer::new())
        .layer(ConcurrencyLimitLayer::new(in_flight))
        .layer(BodyLimitLayer::new(max_body))
        .service(backend);
    tokio::spawn(gatekit_core::server::serve(
        listener,
        svc,
        std::future::pending(),
    ));
    addr
}

/// A backend that reads each request body to its end (or its failure), reports how many
/// bytes it received, then answers 200.
async fn counting_backend(mode: Mode) -> (TestBackend, mpsc::UnboundedReceiver<usize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backend = backend(mode, move |req: Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        async move {
            let mut body = req.into_body();
            let mut received = 0;
            while let Some(Ok(frame)) = body.frame().await {
                received += frame.data_ref().map_or(0, Bytes::len);
            }
            let _ = tx.send(received);
            Response::new(Body::from("read"))
        }
    })
    .await;
    (backend, rx)
}

/// Sends a request head and then `body` (already framed) on a raw connection, while
/// reading the response head; returns the status line and headers. Writing stops at the
/// first error (the gateway may close before reading everything). The writing half stays
/// open until the response is in: hyper's server takes a half-closed connection for an
/// abandoned one.
async fn raw_exchange(addr: SocketAddr, head: String, body: Vec<u8>) -> String {
    let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        let mut out = head.into_bytes();
        out.extend_from_slice(&body);
        let _ = write.write_all(&out).await;
        std::future::pending::<()>().await;
        drop(write);
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        match read.read(&mut buf).await.unwrap() {
            0 => break,
            n => response.extend_from_slice(&buf[..n]),
        }
    }
    writer.abort();
    String::from_utf8_lossy(&response).into_owned()
}

/// `len` bytes in chunked coding, one chunk per `FRAME`.
fn chunked(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + len / FRAME * 16 + 8);
    let mut left = len;
    while left > 0 {
        let n = left.min(FRAME);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(b'x', n));
        out.extend_from_slice(b"\r\n");
        left -= n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A chunked body of 2 MiB against a 1 MiB limit, through gatekit's client speaking
/// `transport` to a backend of `mode`.
async fn chunked_body_over_the_limit(mode: Mode, transport: Transport) {
    let (backend, mut received) = counting_backend(mode).await;
    let upstream = Backend::single_with(&Client::default(), backend.addr, transport);
    let gw = gateway(upstream, Arc::new(InFlightLimit::new(100)), MIB as u64).await;

    let head = "POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
    let response = within(raw_exchange(gw, head.to_owned(), chunked(2 * MIB))).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("x-gatekit-error: payload-too-large"),
        "{response}"
    );

    // The body streamed to the backend (nothing buffered) and stopped at the limit: the
    // frame that would have passed it was not sent.
    let got = within(received.recv()).await.unwrap();
    assert!(got > 0 && got <= MIB, "backend received {got} bytes");
    assert_eq!(backend.accepted(), 1);

    // Within the limit, the same path answers as the backend does.
    let response = within(raw_exchange(gw, head.to_owned(), chunked(MIB))).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(within(received.recv()).await.unwrap(), MIB);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413_and_the_http1_backend_at_most_the_limit() {
    // gatekit's own HTTP/1.1 codec (the client's fast path).
    chunked_body_over_the_limit(Mode::Http1, Transport::http1()).await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413_and_the_h2c_backend_at_most_the_limit() {
    // hyper's HTTP/2 client.
    chunked_body_over_the_limit(Mode::Http2, Transport::http2()).await;
}

#[tokio::test]
async fn a_content_length_over_the_limit_gets_413_and_the_backend_sees_no_request() {
    let (backend, _received) = counting_backend(Mode::Http1).await;
    let upstream = Backend::single(&Client::default(), backend.addr);
    let gw = gateway(upstream, Arc::new(InFlightLimit::new(100)), MIB as u64).await;

    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        2 * MIB
    );
    // Only the head is sent: the refusal needs no byte of the body.
    let response = within(raw_exchange(gw, head, Vec::new())).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("x-gatekit-error: payload-too-large"),
        "{response}"
    );
    assert_eq!(backend.accepted(), 0, "the backend was connected to");
}

#[tokio::test]
async fn a_streaming_response_holds_its_slot_until_its_body_ends() {
    // The first request's response streams from a channel the test holds; later ones
    // answer at once.
    let (chunks_tx, chunks_rx) = mpsc::unbounded_channel::<Bytes>();
    let chunks_rx = Arc::new(parking_lot::Mutex::new(Some(chunks_rx)));
    let backend = backend(Mode::Http1, move |_req| {
        let first = chunks_rx.lock().take();
        async move {
            match first {
                Some(mut rx) => {
                    let stream = futures_util::stream::poll_fn(move |cx| {
                        rx.poll_recv(cx)
                            .map(|next| next.map(|b| Ok::<_, BoxError>(Frame::data(b))))
                    });
                    Response::new(Body::new(StreamBody::new(stream)))
                }
                None => Response::new(Body::from("quick")),
            }
        }
    })
    .await;
    let in_flight = Arc::new(InFlightLimit::new(1));
    let upstream = Backend::single(&Client::default(), backend.addr);
    let gw = gateway(upstream, in_flight.clone(), MIB as u64).await;
    let client = h1_client();
    let uri: http::Uri = format!("http://{gw}/").parse().unwrap();

    let streaming = within(client.get(uri.clone())).await.unwrap();
    assert_eq!(streaming.status(), 200);
    assert_eq!(in_flight.in_flight(), 1);

    let refused = within(client.get(uri.clone())).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["x-gatekit-error"], "overloaded");
    assert_eq!(in_flight.rejected(), 1);

    chunks_tx.send(Bytes::from_static(b"tail")).unwrap();
    drop(chunks_tx);
    assert_eq!(
        &within(body_bytes(streaming.into_body())).await[..],
        b"tail"
    );
    // The gateway's side of the body ended before the client saw its end.
    assert_eq!(in_flight.in_flight(), 0);
    let rsp = within(client.get(uri)).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(&within(body_bytes(rsp.into_body())).await[..], b"quick");
}

/// The upstream client itself reports an upload cut off by a body limit as
/// `PayloadTooLarge` (413, the client's fault), not as the endpoint's protocol error that
/// outlier detection would count against it.
#[tokio::test]
async fn the_client_reports_a_cut_off_upload_as_payload_too_large() {
    use gatekit_core::limit::body::LimitedBody;
    let (backend, _received) = counting_backend(Mode::Http1).await;
    let client = Client::new(Default::default());
    let endpoint = client.endpoint(backend.addr, Transport::http1());
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    tokio::spawn(async move {
        for _ in 0..8 {
            if tx
                .send(Ok(Frame::data(Bytes::from(vec![b'x'; FRAME]))))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let stream = StreamBody::new(tokio_stream_from(rx));
    let body = Body::new(LimitedBody::new(stream, (2 * FRAME) as u64));
    let req = Request::post(format!("http://{}/", backend.addr))
        .body(body)
        .unwrap();
    let err = within(endpoint.send(req)).await.unwrap_err();
    assert_eq!(
        gatekit_core::classify(&*err),
        gatekit_core::ErrorKind::PayloadTooLarge,
        "{err:?}"
    );
}

/// A stream over an mpsc receiver (no tokio-stream dependency).
fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
