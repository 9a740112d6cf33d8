//! Serving a tower service on accepted connections, the way a gateway listener does.
//!
//! [`serve_connection`] runs one connection with hyper-util's automatic HTTP/1.1 / HTTP/2
//! detection (h2 by prior knowledge or ALPN), with upgrades enabled, and adds a
//! [`ConnectionInfo`] to every request's extensions. [`serve`] is a plain accept loop over
//! a `TcpListener` for examples, tests and simple servers; the `gatekit` binary has its
//! own listeners (TLS, draining) built from the same function.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::{BoxError, ConnectionInfo};

/// Serves one connection with `service`, adding `info` to each request's extensions.
///
/// # Errors
///
/// The connection's I/O or protocol error, if it ended with one.
pub async fn serve_connection<S, B, IO>(
    io: IO,
    info: ConnectionInfo,
    service: S,
) -> Result<(), BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(info);
        let mut svc = service.clone();
        svc.call(req)
    });
    auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await
}

/// Accepts connections on `listener` and serves each with a clone of `service` in its own
/// task, until `shutdown` completes (connections already accepted run to their end).
///
/// # Errors
///
/// Only if reading the listener's own address fails; accept errors are logged and the
/// loop goes on.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let local: SocketAddr = listener.local_addr()?;
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let info = ConnectionInfo::new(remote, local, false);
        let svc = service.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_connection(stream, info, svc).await {
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
        });
    }
}
