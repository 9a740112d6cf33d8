//! Support shared by the examples: tiny named backends to proxy to, and [`measure`],
//! what the measuring tools share. The examples themselves are the other `.rs` files in
//! this folder; see `README.md` beside them.

pub mod measure;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use gatekit_core::Body;
use http::{Request, Response};
use http_body_util::Full;
use tokio::net::TcpListener;

/// Starts a backend on a free 127.0.0.1 port that answers every request with
/// `hello from <name>: <method> <path>` and an `x-backend: <name>` header.
///
/// # Errors
///
/// If no loopback port can be bound.
pub async fn spawn_backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let svc = tower::service_fn(move |req: Request<Body>| async move {
        let text = format!("hello from {name}: {} {}\n", req.method(), req.uri());
        let mut rsp = Response::new(Full::new(Bytes::from(text)));
        rsp.headers_mut()
            .insert("x-backend", http::HeaderValue::from_static(name));
        Ok::<_, Infallible>(rsp)
    });
    tokio::spawn(gatekit_core::server::serve(
        listener,
        svc,
        std::future::pending(),
    ));
    Ok(addr)
}

/// Waits for Ctrl-C.
pub async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "cannot listen for Ctrl-C; running until killed");
        std::future::pending::<()>().await;
    }
}
