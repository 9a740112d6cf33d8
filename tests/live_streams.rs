//! Open streams across configuration changes (issue 19): WebSockets and HTTP/2 response
//! streams through the wired gateway survive every change that leaves their route and
//! listener in place; a route removed from the manifests closes its WebSockets, and a
//! removed listener its WebSockets and HTTP/2 streams, at the drain deadline, while the
//! others keep flowing.

#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gatekit_bin::Settings;
use gatekit_tests::wired::{Wired, free_port, route, service, service_at, write_atomic, ws_echo};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_millis(600);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// An HTTP backend whose every response is an endless stream of numbered chunks, one
/// every 10 ms.
async fn ticker() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    let ticks = futures_util::stream::unfold(0u64, |n| async move {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let frame = Frame::data(Bytes::from(format!("tick {n}\n")));
                        Some((Ok::<_, std::convert::Infallible>(frame), n + 1))
                    });
                    Ok::<_, std::convert::Infallible>(http::Response::new(StreamBody::new(ticks)))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A plain HTTP backend answering 200.
async fn ok_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A Gateway `gw` with one HTTP listener per port.
fn gateway(ports: &[u16]) -> String {
    let listeners: Vec<String> = ports
        .iter()
        .map(|p| format!("{{ name: l{p}, port: {p}, protocol: HTTP }}"))
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{ name: gw, namespace: default }}\n\
         spec:\n  gatewayClassName: gatekit\n  listeners: [{}]\n",
        listeners.join(", ")
    )
}

async fn ws_connect(port: u16, path: &str) -> Ws {
    let (ws, rsp) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(rsp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    ws
}

async fn ws_echoes(ws: &mut Ws, text: &str, what: &str) {
    ws.send(Message::text(text.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let echoed = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no echo"))
        .unwrap_or_else(|| panic!("{what}: closed"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(echoed, Message::text(text.to_owned()), "{what}");
}

/// An HTTP/2 (prior knowledge) GET of `/stream` on `port`: its response body.
async fn h2_stream(port: u16) -> hyper::body::Incoming {
    let io = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://127.0.0.1:{port}/stream"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = sender.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), http::StatusCode::OK);
    rsp.into_body()
}

/// Reads the next data chunk of a ticker stream.
async fn ticks(body: &mut hyper::body::Incoming, what: &str) -> String {
    loop {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .unwrap_or_else(|_| panic!("{what}: no chunk"))
            .unwrap_or_else(|| panic!("{what}: the stream ended"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if let Ok(data) = frame.into_data() {
            return String::from_utf8_lossy(&data).into_owned();
        }
    }
}

/// Polls `path` on `port` until it answers `status`.
async fn until_status(port: u16, path: &str, status: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        let answered = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(io) => {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                let req = http::Request::get(path)
                    .header("host", "app.example")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                sender
                    .send_request(req)
                    .await
                    .ok()
                    .map(|r| r.status().as_u16())
            }
            Err(_) => None,
        };
        if answered == Some(status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} on {port}: {answered:?}, want {status}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A WebSocket and an HTTP/2 response stream on each listener.
struct Streams {
    /// On a route of its own, which is removed last.
    ws_route: Ws,
    ws_kept: Ws,
    ws_removed: Ws,
    h2_kept: hyper::body::Incoming,
    h2_removed: hyper::body::Incoming,
}

impl Streams {
    /// Every stream still carries data after `what`.
    async fn flow(&mut self, what: &str) {
        let text = format!("after: {what}");
        ws_echoes(
            &mut self.ws_route,
            &text,
            &format!("{what}: WebSocket (own route)"),
        )
        .await;
        ws_echoes(
            &mut self.ws_kept,
            &text,
            &format!("{what}: WebSocket (kept listener)"),
        )
        .await;
        ws_echoes(
            &mut self.ws_removed,
            &text,
            &format!("{what}: WebSocket (other listener)"),
        )
        .await;
        ticks(
            &mut self.h2_kept,
            &format!("{what}: h2 stream (kept listener)"),
        )
        .await;
        ticks(
            &mut self.h2_removed,
            &format!("{what}: h2 stream (other listener)"),
        )
        .await;
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    write_atomic(dir, name, text);
}

#[tokio::test]
async fn open_streams_survive_changes_and_a_removed_route_or_listener_drains_its_own() {
    let (ws_addr, tick_addr, ok_a, ok_b) = (
        ws_echo().await,
        ticker().await,
        ok_backend().await,
        ok_backend().await,
    );
    let (kept, removed) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "gateway.yaml", &gateway(&[kept, removed]));
    write(
        root,
        "ws.yaml",
        &format!(
            "{}---\n{}",
            service("ws", ws_addr),
            route("ws", "/chat", "ws")
        ),
    );
    write(root, "ws2.yaml", &route("ws2", "/chat2", "ws"));
    write(
        root,
        "stream.yaml",
        &format!(
            "{}---\n{}",
            service("ticker", tick_addr),
            route("stream", "/stream", "ticker")
        ),
    );
    let mut settings = Settings::default();
    settings.drain_timeout = DRAIN;
    let wired = Wired::start_with(&[root.to_path_buf()], settings).await;

    // Streams on both listeners.
    let mut streams = Streams {
        ws_route: ws_connect(kept, "/chat2").await,
        ws_kept: ws_connect(kept, "/chat").await,
        ws_removed: ws_connect(removed, "/chat").await,
        h2_kept: h2_stream(kept).await,
        h2_removed: h2_stream(removed).await,
    };
    streams.flow("opened").await;

    // A route added.
    write(
        root,
        "extra.yaml",
        &format!(
            "{}---\n{}",
            service("extra", ok_a),
            route("extra", "/extra", "extra")
        ),
    );
    until_status(kept, "/extra", 200).await;
    streams.flow("route added").await;

    // That route changed.
    write(
        root,
        "extra.yaml",
        &format!(
            "{}---\n{}",
            service("extra", ok_a),
            route("extra", "/extra2", "extra")
        ),
    );
    until_status(kept, "/extra2", 200).await;
    until_status(kept, "/extra", 404).await;
    streams.flow("route changed").await;

    // Its endpoints changed (EndpointSlices only).
    write(
        root,
        "extra.yaml",
        &format!(
            "{}---\n{}",
            service_at("extra", &[ok_a, ok_b]),
            route("extra", "/extra2", "extra")
        ),
    );
    gatekit_tests::wired::eventually(WAIT, "two endpoints", || async {
        wired.config().await["upstreams"]["default/extra:80"]["endpoints"]
            .as_array()
            .is_some_and(|e| e.len() == 2)
    })
    .await;
    streams.flow("endpoints changed").await;

    // The route deleted.
    std::fs::remove_file(root.join("extra.yaml")).unwrap();
    until_status(kept, "/extra2", 404).await;
    streams.flow("route deleted").await;

    // The WebSocket's own route removed: it is closed by the drain deadline (not
    // before it), the others flow on.
    let removed_at = Instant::now();
    std::fs::remove_file(root.join("ws2.yaml")).unwrap();
    let closed = tokio::time::timeout(DRAIN + WAIT, async {
        loop {
            match streams.ws_route.next().await {
                None | Some(Err(_) | Ok(Message::Close(_))) => return Instant::now(),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the removed route's WebSocket is closed");
    let after = closed - removed_at;
    assert!(
        after >= DRAIN,
        "closed {after:?} after its route's removal, before the drain deadline"
    );
    for (ws, what) in [
        (&mut streams.ws_kept, "kept"),
        (&mut streams.ws_removed, "other"),
    ] {
        ws_echoes(
            ws,
            "after the route's removal",
            &format!("WebSocket ({what} listener)"),
        )
        .await;
    }
    ticks(&mut streams.h2_kept, "h2 stream after the route's removal").await;

    // The second listener removed: its streams are closed by the drain deadline (not
    // before it), the first listener's flow on.
    let removed_at = Instant::now();
    write(root, "gateway.yaml", &gateway(&[kept]));
    let ws_closed = async {
        loop {
            match streams.ws_removed.next().await {
                None | Some(Err(_)) => return Instant::now(),
                Some(Ok(Message::Close(_))) => return Instant::now(),
                Some(Ok(_)) => {}
            }
        }
    };
    let h2_closed = async {
        loop {
            match streams.h2_removed.frame().await {
                None | Some(Err(_)) => return Instant::now(),
                Some(Ok(_)) => {}
            }
        }
    };
    let (ws_closed, h2_closed) =
        tokio::time::timeout(DRAIN + WAIT, async { tokio::join!(ws_closed, h2_closed) })
            .await
            .expect("the removed listener's streams are closed");
    for (what, at) in [("WebSocket", ws_closed), ("h2 stream", h2_closed)] {
        let after = at - removed_at;
        assert!(
            after >= DRAIN,
            "{what} closed {after:?} after the removal, before the drain deadline"
        );
        assert!(
            after < DRAIN + Duration::from_secs(5),
            "{what} closed {after:?} after the removal"
        );
    }
    assert!(
        TcpStream::connect(("127.0.0.1", removed)).await.is_err(),
        "the removed listener still accepts"
    );
    ws_echoes(
        &mut streams.ws_kept,
        "after removal",
        "WebSocket (kept listener) after the other's removal",
    )
    .await;
    ticks(
        &mut streams.h2_kept,
        "h2 stream (kept listener) after the other's removal",
    )
    .await;
    wired.stop().await;
}
