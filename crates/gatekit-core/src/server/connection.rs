//! One connection, from an accepted socket to its end: the TLS handshake (if any), then
//! HTTP/1.1 (gatekit's own codec for requests without a body, hyper for the rest) or
//! HTTP/2 with the request-head checks, watched for a drain. Every way
//! gatekit serves a connection ([`Server`](super::Server), [`serve_connection_with`](super::serve_connection_with),
//! the fuzz targets) runs [`serve_http`].

use super::{HttpService, ResponseBody};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::Either;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::util::Oneshot;
use tower_service::Service;

use super::config::{Http, Http1Codec};
use super::drain::{DrainSignal, Phase};
use super::h1;
use crate::client_ip::ClientIpDetection;
use crate::path::{NormalizePath, ResponseFuture};
use crate::tls::TlsAcceptor;
use crate::{Body, BoxError, ConnectionInfo, ErrorKind};

/// Serves a freshly accepted connection from `remote` on `local`: terminates TLS with
/// `tls` (under its handshake deadline) when given, then [`serve_http`].
///
/// These functions compose futures and return them rather than being `async fn`s: each
/// `async fn` layer would keep its own copy of the arguments (the service among them)
/// for the connection's whole life, and that state is what every open connection holds.
pub(super) fn serve_accepted<IO, S, B>(
    io: IO,
    remote: SocketAddr,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    http: Arc<Http>,
    service: S,
    drain: DrainSignal,
) -> impl Future<Output = Result<(), BoxError>> + Send
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: ResponseBody,
{
    match tls {
        None => {
            let info = ConnectionInfo::new(remote, local, false)
                .with_forward_client_cert(http.forward_client_cert);
            Either::Left(serve_http(io, info, http, service, drain))
        }
        // Boxed: a plaintext connection does not carry the size of the TLS state.
        Some(acceptor) => Either::Right(Box::pin(async move {
            let (stream, facts) = acceptor.handshake(io).await?;
            let info = ConnectionInfo::with_tls(remote, local, facts);
            serve_http(stream, info, http, service, drain).await
        })),
    }
}

/// Serves HTTP on `io` as `http` says, with `info` in every request's extensions and
/// the request-head checks of its path policy in front of `service`. When `drain`
/// reaches [`Phase::Graceful`], the connection is asked to finish (HTTP/1: close after
/// the in-flight response; HTTP/2: GOAWAY, open streams complete).
pub(super) fn serve_http<IO, S, B>(
    io: IO,
    info: ConnectionInfo,
    http: Arc<Http>,
    service: S,
    drain: DrainSignal,
) -> impl Future<Output = Result<(), BoxError>> + Send
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: ResponseBody,
{
    let svc = ConnService {
        service,
        info,
        path_policy: http.path_policy,
        client_ip: http.client_ip.clone(),
        drain: drain.clone(),
    };
    let h2_by_alpn = svc.info.tls().and_then(crate::TlsInfo::alpn_protocol) == Some(b"h2");
    if http.codec == Http1Codec::Gatekit && !h2_by_alpn {
        let timeout = http.header_read_timeout;
        let signal = drain.clone();
        let handoff =
            move |io, svc, fresh| async move { serve_hyper(io, svc, &http, fresh, drain).await };
        Either::Left(h1::serve(io, svc, timeout, signal, handoff))
    } else {
        // Boxed: connections the codec serves do not carry the size of hyper's state.
        Either::Right(Box::pin(async move {
            serve_hyper(io, svc, &http, true, drain).await
        }))
    }
}

/// Serves the connection with hyper: HTTP/1.1 and, when enabled and the connection is
/// `fresh` (no request served on it yet), HTTP/2 by preface. A connection the codec
/// has served requests on stays HTTP/1.1: the h2 preface there is a malformed request.
async fn serve_hyper<IO, S, B>(
    io: IO,
    svc: ConnService<S>,
    http: &Http,
    fresh: bool,
    drain: DrainSignal,
) -> Result<(), BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: ResponseBody,
{
    let io = TokioIo::new(io);
    match &http.auto {
        Some(auto) if fresh => {
            let conn = auto.serve_connection_with_upgrades(io, svc);
            until_drained(conn, |c| c.graceful_shutdown(), drain).await
        }
        _ => {
            let conn = http.http1.serve_connection(io, svc).with_upgrades();
            until_drained(conn, |c| c.graceful_shutdown(), drain).await
        }
    }
}

/// Drives `conn` to its end, calling `graceful` on it once `drain` turns graceful.
async fn until_drained<C, E>(
    conn: C,
    graceful: fn(Pin<&mut C>),
    mut drain: DrainSignal,
) -> Result<(), BoxError>
where
    C: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result.map_err(Into::into),
        () = drain.reached(Phase::Graceful) => graceful(conn.as_mut()),
    }
    conn.await.map_err(Into::into)
}

/// The per-connection service hyper serves: adds the connection's [`ConnectionInfo`]
/// (with the request's client when a [`ClientIpDetection`] is configured; a fail-closed
/// one refuses a request without a valid address, 403) and the client's verified
/// [`ClientIdentity`](crate::tls::ClientIdentity), if any, to each request, applies the
/// path policy, and drives a clone of the service to readiness before calling it
/// (tower's contract; free for the always-ready gatekit services).
#[derive(Clone)]
struct ConnService<S> {
    service: S,
    info: ConnectionInfo,
    path_policy: Option<crate::path::PathPolicy>,
    client_ip: Option<Arc<ClientIpDetection>>,
    /// Given to upgrade requests (see [`DrainSignal`]).
    drain: DrainSignal,
}

impl<S, B> ConnService<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
    B: Default,
{
    /// Answers one request of the connection, whichever codec read it.
    fn call_with(&self, mut req: Request<Body>) -> ConnFuture<S> {
        if let Some(identity) = self.info.tls().and_then(crate::TlsInfo::client_identity) {
            req.extensions_mut().insert(identity.clone());
        }
        let info = match &self.client_ip {
            None => self.info.clone(),
            Some(detection) => match detection.resolve(self.info.peer_addr().ip(), req.headers()) {
                Ok(None) => self.info.clone(),
                Ok(Some(client)) => self.info.clone().with_client_ip(client),
                Err(_) => {
                    let kind = ErrorKind::Forbidden;
                    return ResponseFuture::refused(kind.status(), kind.as_str());
                }
            },
        };
        req.extensions_mut().insert(info);
        if crate::client::is_upgrade_request(&req) {
            req.extensions_mut().insert(self.drain.clone());
        }
        let service = self.service.clone();
        ResponseFuture::inner(match self.path_policy {
            Some(policy) => Either::Left(Oneshot::new(NormalizePath::new(service, policy), req)),
            None => Either::Right(Oneshot::new(service, req)),
        })
    }
}

/// The future of one request of a connection.
type ConnFuture<S> =
    ResponseFuture<Either<Oneshot<NormalizePath<S>, Request<Body>>, Oneshot<S, Request<Body>>>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ConnFuture<S>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.call_with(req.map(Body::from))
    }
}

impl<S, B> h1::Serve for ConnService<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static,
    B: ResponseBody,
{
    type Body = B;
    type Future = ConnFuture<S>;

    fn serve(&self, request: Request<Body>) -> Self::Future {
        self.call_with(request)
    }
}
