//! Bodies stream through the proxy: a 1 GiB upload and a 1 GiB download, generated on
//! the fly and checked by byte count, with bounded memory.
//!
//! One test in this file on purpose: tests in one binary share the process, and the RSS
//! bound must not see another test's allocations.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use gatekit_core::client::Client;
use gatekit_core::{Backend, Body};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::StreamBody;
use support::{Mode, backend, body_bytes, gateway, h1_client, rss_bytes};

const CHUNK: usize = 64 * 1024;
const TOTAL: u64 = 1 << 30;
const RSS_BOUND: u64 = 64 << 20;

/// A body of `TOTAL` bytes made of one shared 64 KiB chunk.
fn generated_body() -> Body {
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let n = TOTAL / CHUNK as u64;
    let frames = (0..n).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
    Body::new(StreamBody::new(futures_util::stream::iter(frames)))
}

/// The highest RSS seen while bodies were read.
static PEAK_RSS: AtomicU64 = AtomicU64::new(0);

/// Reads a body to its end, counting bytes and sampling the RSS every 256 frames.
async fn count<B>(mut body: B) -> u64
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut total = 0u64;
    let mut frames = 0u64;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(data) = frame.unwrap().into_data() {
            total += data.len() as u64;
            frames += 1;
            if frames.is_multiple_of(256) {
                PEAK_RSS.fetch_max(rss_bytes(), Ordering::Relaxed);
            }
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_streams_both_ways_in_bounded_memory() {
    let upstream = backend(
        Mode::Http1,
        |req: Request<hyper::body::Incoming>| async move {
            if req.uri().path() == "/download" {
                return Response::builder()
                    .header("content-length", TOTAL.to_string())
                    .body(generated_body())
                    .unwrap();
            }
            // Upload: count what arrives, answer with the count.
            let received = count(req.into_body()).await;
            Response::new(Body::from(received.to_string()))
        },
    )
    .await;
    let client = Client::default();
    let gw = gateway(Backend::single(&client, upstream.addr)).await;
    let http = h1_client();

    let before = rss_bytes();
    PEAK_RSS.store(before, Ordering::Relaxed);

    let rsp = http
        .get(format!("http://{gw}/download").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(count(rsp.into_body()).await, TOTAL);

    let upload = Request::post(format!("http://{gw}/upload"))
        .header("content-length", TOTAL.to_string())
        .body(generated_body())
        .unwrap();
    let rsp = http.request(upload).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let received = body_bytes(rsp.into_body()).await;
    assert_eq!(std::str::from_utf8(&received).unwrap(), TOTAL.to_string());

    let growth = PEAK_RSS.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!("RSS growth while streaming 2 GiB: {} KiB", growth >> 10);
    assert!(
        growth < RSS_BOUND,
        "RSS grew by {} MiB while streaming",
        growth >> 20
    );
}
