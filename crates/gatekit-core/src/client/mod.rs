//! The upstream HTTP client: pooled HTTP/1.1, HTTP/2 (h2 and h2c), TLS to backends and
//! HTTP/1.1 upgrades (WebSocket).
//!
//! A [`Client`] holds the settings and a registry of per-endpoint pools. For each
//! endpoint address a gateway calls [`Client::endpoint`] once (when the endpoint
//! appears), and keeps the returned [`EndpointClient`]: a cheap-to-clone, always-ready
//! `tower::Service` bound to that endpoint's pool. A request therefore does no map
//! lookup and no hashing to find its pool.
//!
//! # Why not hyper-util's pooled client
//!
//! hyper-util's legacy `Client` costs, per request, a boxed future, a pool checkout
//! under a mutex keyed by a SipHash map, channel hops and often a spawned task to return
//! the connection. This client uses hyper's connection API
//! (`hyper::client::conn::{http1, http2}`) directly; each connection's `Connection`
//! future runs as its own tokio task (hyper needs that), and everything else happens in
//! the caller's task:
//!
//! - **HTTP/1.1**: a per-endpoint LIFO stack of idle `SendRequest`s behind a
//!   `parking_lot` mutex held only for a `push`/`pop`. A request pops the most recently
//!   used connection (warm, least likely to have been closed by the upstream), drops
//!   ones that are no longer ready (closing), and sends with `try_send_request`; the
//!   checkout never waits. The connection returns to the stack when its response body
//!   reaches end of stream (the body is wrapped to do that) and only if it is open and
//!   ready for the next request (in the rare case hyper's connection task has not gone
//!   idle yet, a small task waits for it off the request path); a body dropped early or
//!   failed closes the connection. If
//!   a pooled connection turns out dead *before* the request was written, hyper hands
//!   the request back and it is sent once more on a fresh connection: nothing reached
//!   the upstream, so this is safe for any method.
//! - **HTTP/1.1 fast path**: on a cleartext HTTP/1.1 endpoint, a request (with or
//!   without a body; not an upgrade) does not use hyper at all: gatekit's own codec
//!   (`h1.rs`) writes the request head from the connection's reusable buffer, parses the
//!   response head with `httparse` and frames the body itself, all in the caller's task
//!   (no connection task, no dispatch channel, no oneshot, no fresh 8 KiB read buffer per
//!   message). Those connections sit on their own idle stack; upgrades, TLS, HTTP/2 and
//!   requests with unusual framing headers take hyper's connections described above.
//! - **Idle connections**: each idle entry records when it was returned. Checkout drops
//!   expired entries; a per-endpoint reaper task, running only while the stack is not
//!   empty, closes connections idle longer than [`ClientConfig::pool_idle_timeout`].
//!   The stack holds at most [`ClientConfig::pool_max_idle_per_endpoint`] connections;
//!   a connection returned to a full stack is closed.
//! - **HTTP/2**: one multiplexed connection per endpoint, shared by cloning its
//!   `SendRequest` (an `Arc` increment). It is re-established when closed; requests
//!   that arrive while it connects wait on the same connect attempt (a shared future).
//! - **Upgrades**: a request with `Connection: upgrade` and `Upgrade` is sent on a
//!   fresh, unpooled HTTP/1.1 connection; on `101 Switching Protocols` a task copies
//!   bytes both ways between the client's and the upstream's upgraded connections.
//!
//! The per-request cost is one boxed response future (hyper's `send_request` future
//! cannot be named; rare paths such as connecting and upgrades are boxed separately so
//! they do not inflate it) and, for HTTP/1, one `Arc` increment for the body wrapper,
//! which [`Body`] carries without boxing.
//!
//! # Limits (Envoy's connection thresholds)
//!
//! [`Client::endpoint_with`] binds an endpoint client to [`PoolLimits`], shared by the
//! endpoint clients of one upstream (see the [`breaker`](crate::breaker) module for the
//! request thresholds and the full table):
//!
//! - `max_connections`, a [`ConnectionCap`]: the upstream's open connections, counted
//!   across its endpoints from connect to close on every path (this codec's, hyper's
//!   HTTP/1.1 and HTTP/2, upgraded connections until both directions close). A request
//!   that finds no usable idle connection at the cap first closes the upstream's
//!   oldest idle connection; if there is none, it fails on its first poll, without I/O,
//!   with [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen) (503,
//!   `x-gatekit-breaker-threshold: max-connections`, not retry-safe).
//! - `max_requests_per_connection`: an HTTP/1.1 connection that has served that many
//!   responses is closed instead of pooled; an HTTP/2 connection that has opened that
//!   many streams takes no new ones (the next request opens a new connection) and
//!   closes once its streams end.
//!
//! Without limits ([`Client::endpoint`]) nothing is counted and nothing is allocated
//! for them.
//!
//! # Request form
//!
//! An HTTP/1.1 upstream gets an origin-form target (`/path?query`) and a `Host` header
//! (the client's, or the URI authority when an HTTP/2 client sent none). An HTTP/2
//! upstream gets an absolute URI (`http`/`https` and the `Host` as authority) and no
//! `Host` header (h2 carries it as `:authority`). Header hygiene (hop-by-hop headers,
//! `X-Forwarded-*`) is [`crate::proxy`]'s job, not the client's.
//!
//! # Errors
//!
//! Failures are [`crate::Error`]s:
//! - refused, unreachable: [`ErrorKind::Connect`](crate::ErrorKind::Connect)
//!   (503, retry safe);
//! - a TLS failure (the upstream's certificate does not verify: unknown CA, name or
//!   SAN mismatch, expired; or the upstream refused gatekit's client certificate,
//!   during the handshake or, with TLS 1.3, on the first request):
//!   [`ErrorKind::UpstreamTls`](crate::ErrorKind::UpstreamTls) (502, `upstream-tls`,
//!   retry safe when nothing was sent), logged with the reason;
//! - connect timeout (TCP connect plus TLS handshake): also `Connect`, not `Timeout`.
//!   Like Envoy's "upstream connect error ... connection timeout" (503), a connect
//!   timeout means the request never reached the upstream, so it is retry-safe and a
//!   503, unlike a response timeout (504, not retry-safe);
//! - a connection closed or reset, a malformed response:
//!   [`ErrorKind::UpstreamProtocol`](crate::ErrorKind::UpstreamProtocol) (502), retry
//!   safe only when hyper reports the request was not sent or the HTTP/2 stream was
//!   refused (`REFUSED_STREAM`), or when gatekit's HTTP/1.1 codec wrote a request
//!   without a body and of a safe method (GET, HEAD, OPTIONS, TRACE) on a pooled
//!   connection that then closed before a byte of response: the keep-alive race with the
//!   upstream's idle timeout, which Go's `net/http` and NGINX also answer by sending such
//!   a request again. That request comes back in the error as an unsent one does.
//!
//! A request that fails before any byte of it was written comes back whole in the
//! error ([`crate::Error::with_unsent_request`]), so a retry can resend it without
//! having copied it: a failed connect (refused, unreachable, timed out, TLS or HTTP
//! handshake) on every path (gatekit's HTTP/1.1 codec, hyper's HTTP/1.1 and HTTP/2,
//! upgrades), a request hyper gave back unwritten, and one whose pooled connection died
//! before it was written and whose new connection then failed. Its head is as the client
//! prepared it (an HTTP/1.1 request in origin form with a `Host`); its body was never
//! polled (a body that the HTTP/1.1 codec would not send at all, under a
//! `content-length: 0`, comes back empty). Not handed back: a refusal at the connection
//! cap (not retry-safe), and an HTTP/2 stream refused after hyper took the request.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::{Backend, Body, BoxError};

mod config;
mod h1;
mod limits;
mod pool;
mod transport;
mod upgrade;
mod verify;

pub use self::config::ClientConfig;
pub use self::limits::{ConnectionCap, PoolLimits};
pub use self::transport::{Protocol, TlsSettings, TlsStream, Transport};
pub(crate) use self::upgrade::is_upgrade as is_upgrade_request;
pub use self::verify::SubjectAltName;

use self::pool::{EndpointPool, Settings};

// === impl Client ===

/// The upstream HTTP client: settings plus the registry of per-endpoint connection
/// pools. Cheap to clone (an `Arc` inside).
///
/// TCP_NODELAY is set on every connection. Connections run on the tokio runtime that is
/// current when they are opened.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    settings: Arc<Settings>,
    pools: parking_lot::Mutex<Registry>,
}

/// A pool's key: endpoint clients share a pool when address, transport and limits are
/// the same (limits by identity: the same cap, the same per-connection request limit).
type PoolKey = (SocketAddr, Transport, limits::LimitsKey);

struct Registry {
    pools: HashMap<PoolKey, Weak<EndpointPool>>,
    prune_at: usize,
}

impl Client {
    /// A client with `config`.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            inner: Arc::new(ClientInner {
                settings: Arc::new(Settings::new(config)),
                pools: parking_lot::Mutex::new(Registry {
                    pools: HashMap::new(),
                    prune_at: 64,
                }),
            }),
        }
    }

    /// The client for one endpoint address, speaking `transport`.
    ///
    /// Endpoint clients for the same address and an equal [`Transport`] share one
    /// connection pool, which lives as long as any of them. Call this when an endpoint
    /// appears, not per request.
    pub fn endpoint(&self, addr: SocketAddr, transport: Transport) -> EndpointClient {
        self.endpoint_with(addr, transport, PoolLimits::default())
    }

    /// The client for one endpoint address of an upstream whose connections are
    /// limited by `limits` (Envoy's connection thresholds, see [`PoolLimits`]).
    ///
    /// Endpoint clients for the same address, an equal [`Transport`] and the same
    /// limits (the same [`ConnectionCap`], not an equal one) share one connection pool.
    /// Give every endpoint client of an upstream a clone of one `PoolLimits`, so its
    /// cap counts the connections of all its endpoints.
    pub fn endpoint_with(
        &self,
        addr: SocketAddr,
        transport: Transport,
        limits: PoolLimits,
    ) -> EndpointClient {
        let mut registry = self.inner.pools.lock();
        let key = (addr, transport, limits.key());
        if let Some(pool) = registry.pools.get(&key).and_then(Weak::upgrade) {
            return EndpointClient { pool };
        }
        let cap = limits.max_connections().cloned();
        let settings = match limits.configure(&self.inner.settings.config) {
            Some(config) => Arc::new(Settings::new(config)),
            None => self.inner.settings.clone(),
        };
        let pool = Arc::new(EndpointPool::new(addr, key.1.clone(), settings, limits));
        if let Some(cap) = cap {
            cap.register(&pool);
        }
        registry.pools.insert(key, Arc::downgrade(&pool));
        if registry.pools.len() >= registry.prune_at {
            registry.pools.retain(|_, pool| pool.strong_count() > 0);
            registry.prune_at = (registry.pools.len() * 2).max(64);
        }
        EndpointClient { pool }
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new(ClientConfig::default())
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.settings.config)
            .finish_non_exhaustive()
    }
}

// === impl EndpointClient ===

/// A client bound to one endpoint's connection pool: an always-ready
/// `tower::Service<Request<Body>>`. Cloning is one `Arc` increment.
#[derive(Clone)]
pub struct EndpointClient {
    pool: Arc<EndpointPool>,
}

impl EndpointClient {
    /// Sends a request to the endpoint.
    pub fn send(&self, req: Request<Body>) -> ResponseFuture {
        ResponseFuture {
            inner: self.start(req),
        }
    }

    /// Starts a request: an upgrade on a connection of its own (see `upgrade.rs`),
    /// anything else through the pool.
    fn start(&self, req: Request<Body>) -> crate::backend::BoxFuture {
        if self.pool.transport().protocol() != Protocol::Http2 && upgrade::is_upgrade(&req) {
            let pool = self.pool.clone();
            return Box::pin(async move { upgrade::send(pool, req).await.map_err(BoxError::from) });
        }
        self.pool.start(req)
    }

    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.pool.addr()
    }

    /// How many idle HTTP/1.1 connections the endpoint's pool holds now.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }
}

impl fmt::Debug for EndpointClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointClient")
            .field("addr", &self.pool.addr())
            .field("transport", self.pool.transport())
            .finish()
    }
}

impl Service<Request<Body>> for EndpointClient {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture {
        self.send(req)
    }
}

/// The response future of an [`EndpointClient`].
pub struct ResponseFuture {
    inner: crate::backend::BoxFuture,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

// === impl Backend ===

impl Backend {
    /// A backend that sends every request to one address over cleartext HTTP/1.1.
    pub fn single(client: &Client, addr: SocketAddr) -> Backend {
        Self::single_with(client, addr, Transport::http1())
    }

    /// A backend that sends every request to one address over `transport`.
    pub fn single_with(client: &Client, addr: SocketAddr, transport: Transport) -> Backend {
        Backend::from_call(client.endpoint(addr, transport))
    }
}

// The backend takes the client's own boxed future as its box: one allocation per
// request, not two.
impl crate::backend::Call for EndpointClient {
    fn call(&self, req: Request<Body>) -> crate::backend::BoxFuture {
        self.start(req)
    }
}

/// `error`, handing back `req` when the error is retry-safe: a failure before any byte
/// of the request was written (a refused or timed-out connect), so a retry can resend it
/// without a copy (see [`crate::Error::with_unsent_request`]). A refusal that is not
/// retry-safe (the connection cap) drops the request.
pub(crate) fn hand_back(error: crate::Error, req: Request<Body>) -> crate::Error {
    if error.is_retry_safe() {
        error.with_unsent_request(req)
    } else {
        error
    }
}

/// What a request body's error while it was streamed upstream means: a gatekit
/// [`Error`](crate::Error) in its causes keeps its kind (a body limit's
/// [`PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge): 413, and not the endpoint's
/// fault, so outlier detection does not count it); a hyper error means reading the body
/// from the client failed (a malformed chunk, a bad length): the client's fault, 400;
/// anything else is an upstream protocol error.
pub(crate) fn request_body_error_kind(err: &(dyn std::error::Error + 'static)) -> crate::ErrorKind {
    if let Some(e) = crate::Error::find(err) {
        return e.kind();
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<hyper::Error>() {
            return crate::ErrorKind::BadRequest;
        }
        cur = e.source();
    }
    crate::ErrorKind::UpstreamProtocol
}
