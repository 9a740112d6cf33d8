//! Serving a tower service to clients: the one serving path of gatekit, used by the
//! `gatekit` binary's listeners, the examples, the tests and the fuzz targets alike.
//!
//! # Per connection
//!
//! ```text
//! Server: accept (a pause after an accept error)
//!   ─▶ over its client's PerClientLimit, or over the ConnectionLimit? close at once
//!      (counted, ConnectionObserver::rejected)
//!   ─▶ [PROXY protocol header from a trusted source: its source is the client]
//!   ─▶ a stream router (TLS/TCP, see crate::stream), or:
//!   ─▶ [TLS handshake under a deadline; certificate by SNI from a CertStore]
//!   ─▶ gatekit's HTTP/1.1 codec (requests without a body; see "HTTP/1.1" below), or
//!      from the first request it leaves to hyper on: hyper-util's auto builder
//!      (HTTP/1.1 or HTTP/2; h2 by preface, or at once after ALPN chose h2 on TLS)
//!   ─▶ each request gets the connection's ConnectionInfo (addresses; SNI, ALPN and the
//!      client's certificates on TLS); with a client address detection, the client
//!      found behind trusted proxies as its remote address (crate::client_ip; a
//!      fail-closed one answers 403); with a path policy, its Host and target are
//!      checked and its path normalised (gatekit_core::path: 400, 414)
//!   ─▶ a clone of the service
//! ```
//!
//! A [`Server`] is one listening socket; [`Server::serve`] returns a [`ServerHandle`]
//! that [stops](ServerHandle::stop) it. [`Server::serve_streams`] serves TLS and TCP
//! streams ([`crate::stream`]) through the same accept loop, limits and drain instead of
//! HTTP. Listeners share a [`ConnectionLimit`], a
//! [`PerClientLimit`] and a [`Drain`] group by being given clones. [`serve_connection_with`] serves one already
//! accepted connection (any byte stream: a TLS stream, an in-memory duplex) through the
//! same code; [`serve`] and [`serve_with`] are a listener served until a future
//! completes, for examples and tests.
//!
//! # Draining
//!
//! [`Drain::drain`] stops the group's listeners (new connections are refused), asks
//! every connection to finish (HTTP/1: close after the in-flight response; HTTP/2:
//! GOAWAY, open streams complete) and waits up to a deadline, after which the rest are
//! dropped; it reports a [`DrainOutcome`].
//!
//! # HTTP/1.1
//!
//! A connection starts with gatekit's own HTTP/1.1 codec: it serves requests without a
//! body (most proxied requests) with no buffer held while the connection is idle, and
//! hands the connection to hyper, from the first byte of the first request that is
//! anything else (a body, an upgrade, `Expect`, HTTP/1.0, the h2 preface, a malformed
//! or oversized head), for the rest of its life; hyper's verdict on such bytes is the
//! one clients get. [`ServerConfig::http1_codec`] turns it off. Details, and what a
//! fuzz target checks against hyper's parser: `h1/mod.rs`.
//!
//! # Cost
//!
//! The automatic detection reads the first bytes of every connection to look for the h2
//! preface and then serves through one more layer of futures. A listener that needs no
//! HTTP/2 (a plaintext listener without h2c, or a TLS connection whose ALPN chose
//! `http/1.1`) can skip it with [`ServerConfig::http2`]`(false)`: hyper's HTTP/1 server
//! directly, about 2% less CPU per request on the proxy benchmark (`docs/benchmarks.md`).
//!
//! # Limits
//!
//! Connections are counted when accepted, before any byte is read or any TLS work done:
//!
//! - a [`ConnectionLimit`] bounds the open connections of every listener given a clone;
//! - a [`PerClientLimit`] bounds the open connections from one client IP address, so
//!   one client cannot take the whole connection budget (its map holds an entry only per
//!   address with an open connection).
//!
//! A connection over either is closed at once, without an HTTP answer (nothing is read
//! from it); the limit counts it
//! ([`ConnectionLimit::rejected`], [`PerClientLimit::rejected`]) and the
//! [`ConnectionObserver`] hears [`rejected`](ConnectionObserver::rejected). The
//! per-client limit is checked first, so a client over its own limit does not count
//! against the global one. Limits per request (concurrency, body size) are layers of a
//! rule's stack: see [`crate::limit`].
//!
//! Every connection is served with explicit limits rather than library defaults left by
//! accident: an HTTP/1 header read timeout (slowloris), a 64 KiB cap on an HTTP/1
//! request head (431 beyond; at most 100 header lines, hyper's fixed default) and the
//! HTTP/2 limits of [`ServerConfig`] (stream count, decoded header size, the "Rapid
//! Reset" and "MadeYouReset" defences, keep-alive pings).
//!
//! HTTP/1 responses are written flattened (head and body copied into one buffer and
//! written with one `write`) rather than as a vectored write of separate buffers: for the
//! small messages most requests are, the copy is cheaper than `writev`'s per-buffer
//! bookkeeping in hyper and the kernel.

mod config;
mod connection;
mod drain;
pub(crate) mod h1;
mod limit;
mod listener;
pub mod proxy_protocol;

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower_service::Service;

pub use self::config::{Http1Codec, ServerConfig};
pub use self::drain::{Drain, DrainOutcome, Retirement};
pub(crate) use self::drain::{DrainSignal, Phase, RetiredSignal};
pub use self::limit::{ConnectionLimit, ConnectionObserver, PerClientLimit};
pub use self::listener::{Server, ServerHandle};
pub use self::proxy_protocol::{
    ProxyHeader, ProxyProtocol, ProxyProtocolError, ProxyVersion, encode as encode_proxy_header,
    parse as parse_proxy_header,
};
use crate::{Body, BoxError, ConnectionInfo};

/// A service the server can run for every connection: answers
/// `Request<Body>` with `Response<B>`, never fails (errors are responses), and is
/// cloned into each connection's task. Implemented for every such service. (A request
/// read by hyper carries hyper's `Incoming` body inside the [`Body`].)
pub trait HttpService<B>:
    Service<Request<Body>, Response = Response<B>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// A response body the server can write: `Default` (the empty body of a refusal by the
/// request-head checks). Implemented for every such body.
pub trait ResponseBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Default + Send + 'static
{
}

impl<B> ResponseBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Default + Send + 'static
{
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
    S: HttpService<B>,
    B: ResponseBody,
{
    serve_connection_with(io, info, service, &ServerConfig::default()).await
}

/// Serves one already accepted connection with `service` as `config` says, adding
/// `info` to each request's extensions: the code a [`Server`] runs for each connection
/// after accepting it (and after the TLS handshake), outside any [`Drain`] group.
/// Upgrades (WebSocket) are supported on HTTP/1.1.
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
    S: HttpService<B>,
    B: ResponseBody,
{
    let http = std::sync::Arc::new(config::Http::new(config));
    connection::serve_http(io, info, http, service, drain::DrainSignal::none()).await
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
    S: HttpService<B>,
    B: ResponseBody,
{
    serve_with(listener, service, shutdown, ServerConfig::default()).await
}

/// [`serve`], with each connection served as `config` says: a [`Server`] on `listener`,
/// [stopped](ServerHandle::stop) when `shutdown` completes.
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
    S: HttpService<B>,
    B: ResponseBody,
{
    let handle = Server::from_listener(listener)?
        .config(config)
        .serve(service);
    shutdown.await;
    handle.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests;
