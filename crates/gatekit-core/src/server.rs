//! Serving a tower service on accepted connections, the way a gateway listener does.
//!
//! [`serve_connection`] runs one connection with hyper-util's automatic HTTP/1.1 / HTTP/2
//! detection (h2 by prior knowledge or ALPN), with upgrades enabled, and adds a
//! [`ConnectionInfo`] to every request's extensions. [`serve`] is a plain accept loop over
//! a `TcpListener` for examples, tests and simple servers; the `gatekit` binary has its
//! own listeners (TLS, draining) built from the same function.
//!
//! # Cost
//!
//! The automatic detection reads the first bytes of every connection to look for the h2
//! preface and then serves through one more layer of futures. A listener that needs no
//! HTTP/2 (a plaintext listener without h2c, or a TLS connection whose ALPN chose
//! `http/1.1`) can skip it with [`ServerConfig::http2`]`(false)` and
//! [`serve_connection_with`]: hyper's HTTP/1 server directly, about 2% less CPU per
//! request on the proxy benchmark (`docs/benchmarks.md`).
//!
//! HTTP/1 responses are written flattened (head and body copied into one buffer and
//! written with one `write`) rather than as a vectored write of separate buffers: for the
//! small messages most requests are, the copy is cheaper than `writev`'s per-buffer
//! bookkeeping in hyper and the kernel.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::{BoxError, ConnectionInfo};

// === impl ServerConfig ===

/// How [`serve_connection_with`] and [`serve_with`] serve connections. `Default` accepts
/// HTTP/1.1 and HTTP/2.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    http2: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { http2: true }
    }
}

impl ServerConfig {
    /// Whether connections may speak HTTP/2 (default `true`): by prior knowledge (h2c)
    /// or, on TLS, after ALPN chose `h2` — detected from the connection's first bytes.
    /// `false` serves HTTP/1.x only, without that detection (see the
    /// [module docs](self#cost)); a client sending the h2 preface then gets an HTTP/1
    /// error.
    #[must_use]
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }
}

/// Serves one connection with `service`, adding `info` to each request's extensions.
/// HTTP/1.1 and HTTP/2 are both accepted (see [`serve_connection_with`]).
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
    serve_connection_with(io, info, service, &ServerConfig::default()).await
}

/// Serves one connection with `service` as `config` says, adding `info` to each
/// request's extensions. Upgrades (WebSocket) are supported on HTTP/1.1.
///
/// # Errors
///
/// The connection's I/O or protocol error, if it ended with one.
pub async fn serve_connection_with<S, B, IO>(
    io: IO,
    info: ConnectionInfo,
    service: S,
    config: &ServerConfig,
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
    if !config.http2 {
        return http1::Builder::new()
            .writev(false)
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades()
            .await
            .map_err(Into::into);
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().writev(false);
    builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await
}

/// Accepts connections on `listener` and serves each with a clone of `service` in its own
/// task, until `shutdown` completes (connections already accepted run to their end).
/// HTTP/1.1 and HTTP/2 are both accepted (see [`serve_with`]).
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
    serve_with(listener, service, shutdown, ServerConfig::default()).await
}

/// [`serve`], with each connection served as `config` says.
///
/// # Errors
///
/// Only if reading the listener's own address fails; accept errors are logged and the
/// loop goes on.
pub async fn serve_with<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    config: ServerConfig,
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
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_connection_with(stream, info, svc, &config).await {
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper::client::conn::{http1 as client_h1, http2 as client_h2};
    use hyper_util::rt::TokioExecutor;

    /// A server whose service answers with the client address it found in the request's
    /// `ConnectionInfo`.
    async fn start(config: ServerConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = tower::service_fn(|req: Request<Incoming>| async move {
            let info = req.extensions().get::<ConnectionInfo>().copied();
            let body = info.map_or("none".to_owned(), |i| i.remote_addr().ip().to_string());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with(
            listener,
            svc,
            async move {
                let _ = stopped.await;
            },
            config,
        ));
        (addr, stop)
    }

    async fn get_h1(addr: SocketAddr) -> String {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut tx, conn) = client_h1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", "x")
            .body(Full::default())
            .unwrap();
        let rsp = tx.send_request(req).await.unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    async fn get_h2(addr: SocketAddr) -> Result<String, hyper::Error> {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut tx, conn) =
            client_h2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), TokioIo::new(tcp))
                .await?;
        tokio::spawn(conn);
        let req = Request::get("http://x/").body(Full::default()).unwrap();
        let rsp = tx.send_request(req).await?;
        let body = rsp.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn default_config_serves_http1_and_h2c_with_connection_info() {
        let (addr, _stop) = start(ServerConfig::default()).await;
        assert_eq!(get_h1(addr).await, "127.0.0.1");
        assert_eq!(get_h2(addr).await.unwrap(), "127.0.0.1");
    }

    #[tokio::test]
    async fn http1_only_config_serves_http1_and_refuses_the_h2_preface() {
        let (addr, _stop) = start(ServerConfig::default().http2(false)).await;
        assert_eq!(get_h1(addr).await, "127.0.0.1");
        let h2 = tokio::time::timeout(std::time::Duration::from_secs(5), get_h2(addr)).await;
        assert!(
            matches!(h2, Ok(Err(_))),
            "h2 must fail on an HTTP/1-only server"
        );
    }
}
