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
//! # Limits
//!
//! Every connection is served with explicit limits rather than library defaults left by
//! accident: an HTTP/1 header read timeout (slowloris), a 64 KiB cap on an HTTP/1
//! request head (431 beyond; at most 100 header lines, hyper's fixed default) and the HTTP/2 limits below
//! (stream count, decoded header size, the "Rapid Reset" and "MadeYouReset" defences,
//! keep-alive pings). A server that watches connections itself (graceful draining) takes
//! the configured hyper builder from [`ServerConfig::auto_builder`] and wraps its service
//! with [`with_connection_info`].
//!
//! HTTP/1 responses are written flattened (head and body copied into one buffer and
//! written with one `write`) rather than as a vectored write of separate buffers: for the
//! small messages most requests are, the copy is cheaper than `writev`'s per-buffer
//! bookkeeping in hyper and the kernel.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::{BoxError, ConnectionInfo};

/// At most this many concurrent HTTP/2 streams per client connection: bounds the work one
/// connection can queue. RFC 9113 recommends at least 100; 256 leaves room for busy
/// multiplexing clients (gRPC) while keeping one connection from monopolising the proxy.
const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 256;

/// Largest HTTP/2 header list accepted, measured decoded (HPACK-expanded): 64 KiB, the
/// order of Envoy's 60 KiB and nginx's request header buffers. A HPACK bomb is cut here.
const HTTP2_MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// Streams a client may open and reset before we accept them, before the connection gets
/// a GOAWAY: the "Rapid Reset" defence (CVE-2023-44487). 20 is the h2 crate's default,
/// written down so an upgrade cannot silently change it.
const HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// Streams we may reset because of client protocol errors before the connection gets a
/// GOAWAY (RUSTSEC-2024-0003 and "MadeYouReset"). hyper's default, written down.
const HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// How often an idle HTTP/2 connection is pinged, so dead peers do not hold a connection
/// slot forever.
const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a keep-alive ping may go unanswered before the connection is closed.
const HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest HTTP/1 request head (request line and headers) hyper buffers: 64 KiB, the
/// order of Envoy's 60 KiB `max_request_headers_kb`. A larger head is answered
/// `431 Request Header Fields Too Large` and the connection closed. (hyper's default is
/// about 400 KiB; its `max_header_size` is not reachable through hyper-util's auto
/// builder, so the read buffer's cap is the limit.) hyper also caps the number of
/// header lines at 100 (a compile-time stack array, `431` beyond); setting a different
/// count would move it to the heap for every request, so that default is kept, on
/// purpose, and pinned by the hostile-input tests.
const HTTP1_MAX_HEAD_BYTES: usize = 64 * 1024;

/// Default time a client has to send a whole HTTP/1 request head.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

// === impl ServerConfig ===

/// How [`serve_connection_with`] and [`serve_with`] serve connections. `Default` accepts
/// HTTP/1.1 and HTTP/2, with a 10 s header read timeout and the HTTP/2 limits of the
/// [module docs](self#limits).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    http2: bool,
    header_read_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http2: true,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
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

    /// How long a client may take to send an HTTP/1 request head (default 10 s); a
    /// slower one (slowloris) has its connection closed.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// hyper's HTTP/1 server configured as this config says.
    fn http1_builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .writev(false)
            .max_buf_size(HTTP1_MAX_HEAD_BYTES)
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
    }

    /// hyper-util's automatic HTTP/1.1 + HTTP/2 server builder with this config's
    /// settings and limits, for servers that drive connections themselves (for example
    /// to watch them for a graceful drain). Serve through it with a service wrapped by
    /// [`with_connection_info`].
    pub fn auto_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .writev(false)
            .max_buf_size(HTTP1_MAX_HEAD_BYTES)
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(HTTP2_MAX_CONCURRENT_STREAMS)
            .max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
            .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS)
            .keep_alive_interval(HTTP2_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(HTTP2_KEEP_ALIVE_TIMEOUT);
        builder
    }
}

/// The per-connection service hyper serves: `service`, with `info` added to every
/// request's extensions. Each request drives a clone of `service` to readiness before
/// calling it (tower's contract; free for the always-ready gatekit services).
pub fn with_connection_info<S, B>(
    service: S,
    info: ConnectionInfo,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<B>,
    Error = Infallible,
    Future = tower::util::Oneshot<S, Request<Incoming>>,
> + Clone
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body,
{
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(info);
        tower::util::Oneshot::new(service.clone(), req)
    })
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
    let svc = with_connection_info(service, info);
    if !config.http2 {
        return config
            .http1_builder()
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades()
            .await
            .map_err(Into::into);
    }
    config
        .auto_builder()
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
