//! `h1_server`: gatekit's HTTP/1.1 server codec against hyper's, on the same bytes.
//!
//! The codec serves a subset of requests itself and leaves every other one to hyper
//! (see `server/h1`). The oracle: each request head it accepts, hyper's server accepts
//! too, at the same place in the byte stream, with the same method, target, version and
//! header fields (names, values, order) and an empty body. Heads are taken one after
//! another, as a pipelining client sends them, until the codec declines one, needs more
//! bytes, or one asks to close. Where the codec declines, hyper's verdict is what the
//! client gets, so there is nothing to compare.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use http::{HeaderMap, Method, Request, Response, Uri, Version};

use crate::server::h1::{Parsed, parse};

/// What a server saw of one request.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    empty_body: bool,
}

impl Seen {
    fn of<B: http_body::Body>(req: &Request<B>) -> Self {
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: pairs(req.headers()),
            empty_body: req.body().is_end_stream(),
        }
    }
}

fn pairs(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    // The map's own iteration groups a name's values; the codec and hyper both append
    // in arrival order, so equal maps iterate equally.
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// Most heads taken from one input.
const MAX_REQUESTS: usize = 8;

/// Runs the oracle on `data`; panics on a disagreement.
pub fn h1_server(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut ours = Vec::new();
    while ours.len() < MAX_REQUESTS && !buf.is_empty() {
        match parse(&mut buf) {
            Parsed::Request {
                request,
                keep_alive,
            } => {
                ours.push(Seen::of(&request));
                if !keep_alive {
                    break;
                }
            }
            Parsed::Partial | Parsed::Decline => break,
        }
    }
    if ours.is_empty() {
        return;
    }
    let theirs = hyper_sees(data, ours.len());
    assert!(
        theirs.len() >= ours.len(),
        "the codec accepted {} request(s), hyper {}: ours {ours:?}, hyper's {theirs:?}",
        ours.len(),
        theirs.len()
    );
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "request {i} differs (left: the codec, right: hyper)");
        assert!(a.empty_body, "the codec accepted a request with a body");
    }
}

/// The first `max` requests hyper's HTTP/1 server hands its service when a client sends
/// `data` and then closes its side.
fn hyper_sees(data: &[u8], max: usize) -> Vec<Seen> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return Vec::new();
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(data.len() + 64 * 1024);
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            if let Ok(mut seen) = recorder.lock()
                && seen.len() < max
            {
                seen.push(Seen::of(&req));
            }
            async {
                Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new()))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.writev(false).max_buf_size(64 * 1024);
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let send = async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            // Read the answers so hyper's writes never block.
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        };
        let _ = tokio::join!(conn, send);
    });
    let Ok(mut seen) = seen.lock() else {
        return Vec::new();
    };
    std::mem::take(&mut *seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_on_plain_and_pipelined_requests() {
        h1_server(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nAccept: */*\r\n\r\n");
        h1_server(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: y\r\n\r\nGET /c HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\nGET /d HTTP/1.1\r\n\r\n");
        h1_server(b"\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
        h1_server(b"GET http://x.example/p HTTP/1.1\r\nHost: x.example\r\n\r\n");
    }

    #[test]
    fn the_codec_takes_only_what_it_serves() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\ncontent-LENGTH : 5\r\n\r\nhello",
            b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(head);
            assert!(
                matches!(parse(&mut buf), Parsed::Decline),
                "{:?}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(&buf[..], head, "a declined head is left whole");
        }
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
        assert!(matches!(parse(&mut buf), Parsed::Partial));
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        big.extend(
            std::iter::repeat_n(b"X-Pad: 0123456789012345678901234567890123456789\r\n", 1400)
                .flatten(),
        );
        let mut buf = BytesMut::from(&big[..]);
        assert!(
            matches!(parse(&mut buf), Parsed::Decline),
            "a head over 64 KiB is hyper's (431)"
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let mut buf = BytesMut::from(&many[..]);
        assert!(
            matches!(parse(&mut buf), Parsed::Decline),
            "101 fields are hyper's (431)"
        );
    }

    #[test]
    fn the_oracle_fails_when_the_codec_disagrees() {
        // hyper sees the request with its header; a codec that dropped it would differ.
        let ours = Seen {
            method: Method::GET,
            uri: Uri::from_static("/"),
            version: Version::HTTP_11,
            headers: vec![],
            empty_body: true,
        };
        let theirs = hyper_sees(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1);
        assert_eq!(theirs.len(), 1);
        assert_ne!(ours, theirs[0]);
    }
}
