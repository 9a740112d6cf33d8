//! HTTP/1.1 upgrades through the proxy: WebSocket echo with tokio-tungstenite on both
//! ends, and an upgrade request the backend declines.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use futures_util::{SinkExt, StreamExt};
use gatekit_core::client::Client;
use gatekit_core::{Backend, Body};
use http::{Request, Response};
use support::{Mode, backend, body_bytes, gateway, h1_client, within};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo server (tokio-tungstenite does the HTTP handshake itself).
async fn ws_echo_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    } else if msg.is_close() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let upstream = ws_echo_backend().await;
    let client = Client::default();
    let gw = gateway(Backend::single(&client, upstream)).await;

    let (mut ws, rsp) = within(tokio_tungstenite::connect_async(format!("ws://{gw}/ws")))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 101);
    for i in 0..10 {
        let text = format!("message {i}");
        within(ws.send(Message::text(text.clone()))).await.unwrap();
        let echoed = within(ws.next()).await.unwrap().unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    let big = vec![0xabu8; 256 * 1024];
    within(ws.send(Message::binary(big.clone()))).await.unwrap();
    let echoed = within(ws.next()).await.unwrap().unwrap();
    assert_eq!(echoed.into_data().len(), big.len());
    within(ws.close(None)).await.unwrap();
}

#[tokio::test]
async fn a_declined_upgrade_returns_the_backend_response() {
    let upstream = backend(
        Mode::Http1,
        |req: Request<hyper::body::Incoming>| async move {
            let saw_upgrade = req.headers().get("upgrade").cloned();
            Response::builder()
                .status(426)
                .header("x-saw-upgrade", saw_upgrade.unwrap())
                .body(Body::from("no upgrade here"))
                .unwrap()
        },
    )
    .await;
    let client = Client::default();
    let gw = gateway(Backend::single(&client, upstream.addr)).await;

    let req = Request::get(format!("http://{gw}/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Body::empty())
        .unwrap();
    let rsp = within(h1_client().request(req)).await.unwrap();
    assert_eq!(rsp.status(), 426);
    assert_eq!(rsp.headers()["x-saw-upgrade"], "websocket");
    assert_eq!(&body_bytes(rsp.into_body()).await[..], b"no upgrade here");
}
