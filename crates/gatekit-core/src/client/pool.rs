//! One endpoint's connections: connecting, the HTTP/1.1 idle stacks (to which response
//! bodies return their connections, through [`Recycle`]), and the shared HTTP/2
//! connection.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::config::ClientConfig;
use super::h1::{self, RawConn, to_origin_form};
use super::limits::{ConnSlot, PoolLimits};
use super::transport::{Protocol, Transport};
use crate::body::{Pooled, Recycle};
use crate::{Body, Error, ErrorKind};

/// What every pool of a client shares: the configuration and prebuilt hyper builders.
pub(crate) struct Settings {
    pub(crate) config: ClientConfig,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Settings {
    pub(crate) fn new(config: ClientConfig) -> Self {
        let mut h1 = http1::Builder::new();
        // Requests are written flattened (head and body copied into one buffer, one
        // `write`) rather than vectored: cheaper for the small requests most are; see
        // `docs/benchmarks.md`.
        h1.writev(false);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .initial_stream_window_size(config.http2_initial_stream_window_size)
            .initial_connection_window_size(config.http2_initial_connection_window_size)
            .keep_alive_interval(config.http2_keep_alive_interval)
            .keep_alive_timeout(config.http2_keep_alive_timeout);
        Self { config, h1, h2 }
    }
}

/// A freshly opened connection, HTTP/1.1 or HTTP/2 (as ALPN decided for `Auto`).
pub(crate) enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// Opens connections to one address. Kept apart from the pool so an HTTP/2 connect
/// future shared by waiters holds no reference to the pool.
struct Connector {
    addr: SocketAddr,
    transport: Transport,
    settings: Arc<Settings>,
}

impl Connector {
    /// TCP connect (with TCP_NODELAY), TLS handshake when configured, then the HTTP
    /// handshake. `upgrades` spawns an HTTP/1.1 connection that supports upgrades.
    /// `hold` (the connection's [`ConnSlot`]) lives in the connection's task, so it is
    /// dropped when the connection ends, or here if connecting fails.
    async fn connect<H: Send + 'static>(&self, upgrades: bool, hold: H) -> Result<Conn, Error> {
        let timeout = self.settings.config.connect_timeout;
        match tokio::time::timeout(timeout, self.connect_inner(upgrades, hold)).await {
            Ok(conn) => conn,
            Err(elapsed) => Err(Error::with_source(ErrorKind::Connect, elapsed)),
        }
    }

    async fn connect_inner<H: Send + 'static>(
        &self,
        upgrades: bool,
        hold: H,
    ) -> Result<Conn, Error> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| Error::with_source(ErrorKind::Connect, e))?;
        // Not fatal: the connection works without it, only with more latency.
        let _ = tcp.set_nodelay(true);
        if !self.transport.is_tls() {
            return match self.transport.protocol() {
                Protocol::Http2 => self.handshake_h2(tcp, hold).await,
                Protocol::Http1 | Protocol::Auto => self.handshake_h1(tcp, upgrades, hold).await,
            };
        }
        let stream = self.transport.tls_connect(self.addr, tcp).await?;
        let h2 = match self.transport.protocol() {
            Protocol::Http2 => true,
            Protocol::Http1 => false,
            Protocol::Auto => stream.get_ref().1.alpn_protocol() == Some(b"h2"),
        };
        if h2 {
            self.handshake_h2(stream, hold).await
        } else {
            self.handshake_h1(stream, upgrades, hold).await
        }
    }

    async fn handshake_h1<I, H>(&self, io: I, upgrades: bool, hold: H) -> Result<Conn, Error>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        H: Send + 'static,
    {
        let (tx, conn) = self
            .settings
            .h1
            .handshake::<_, Body>(TokioIo::new(io))
            .await
            .map_err(|e| Error::with_source(ErrorKind::Connect, e))?;
        if upgrades {
            tokio::spawn(async move {
                let _hold = hold;
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            });
        } else {
            tokio::spawn(async move {
                let _hold = hold;
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            });
        }
        Ok(Conn::H1(tx))
    }

    async fn handshake_h2<I, H>(&self, io: I, hold: H) -> Result<Conn, Error>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        H: Send + 'static,
    {
        let (tx, conn) = self
            .settings
            .h2
            .handshake::<_, Body>(TokioIo::new(io))
            .await
            .map_err(|e| Error::with_source(ErrorKind::Connect, e))?;
        tokio::spawn(async move {
            let _hold = hold;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended with an error");
            }
        });
        Ok(Conn::H2(tx))
    }
}

type SharedConnect = Shared<BoxFuture<'static, Result<http2::SendRequest<Body>, Arc<Error>>>>;

enum H2Slot {
    Empty,
    Connecting(SharedConnect),
    /// The shared connection and the streams opened on it (counted for
    /// `max_requests_per_connection`).
    Ready {
        tx: http2::SendRequest<Body>,
        streams: u32,
    },
}

/// What taking a stream on the shared HTTP/2 connection gave.
enum H2Stream {
    Ready(http2::SendRequest<Body>),
    Connect(SharedConnect),
}

struct Idle {
    tx: http1::SendRequest<Body>,
    since: Instant,
    /// Its request count, when the pool retires connections (see [`Counted`]).
    counted: Option<Arc<Counted>>,
}

/// The request count of one hyper HTTP/1.1 connection, when the pool retires
/// connections after `max_requests_per_connection` requests. Its response bodies return
/// the connection here rather than to the pool, so the count travels with it; one
/// allocation per connection, none per request. Holds the pool weakly: idle entries
/// hold it, and the pool holds them.
pub(crate) struct Counted {
    pool: Weak<EndpointPool>,
    served: AtomicU32,
}

/// An idle connection of the fast path (gatekit's own HTTP/1.1 codec, see `h1.rs`).
struct IdleRaw {
    conn: Box<RawConn>,
    since: Instant,
}

struct H1Idle {
    /// Ordered by `since`: pushed on return, popped from the top (LIFO), so the oldest
    /// entries are at the bottom, where the reaper removes them.
    stack: Vec<Idle>,
    /// The same for fast-path connections.
    raw: Vec<IdleRaw>,
    reaper_running: bool,
}

impl H1Idle {
    fn len(&self) -> usize {
        self.stack.len() + self.raw.len()
    }

    /// When the oldest idle connection was returned.
    fn oldest(&self) -> Option<Instant> {
        match (self.stack.first(), self.raw.first()) {
            (Some(a), Some(b)) => Some(a.since.min(b.since)),
            (Some(a), None) => Some(a.since),
            (None, Some(b)) => Some(b.since),
            (None, None) => None,
        }
    }
}

/// The pool of one (address, transport, limits).
pub(crate) struct EndpointPool {
    connector: Arc<Connector>,
    limits: PoolLimits,
    h1: parking_lot::Mutex<H1Idle>,
    h2: parking_lot::Mutex<H2Slot>,
    /// `Auto` over TLS: set once an upstream connection negotiated h2, after which
    /// requests go the HTTP/2 way.
    prefers_h2: AtomicBool,
    /// Cleartext HTTP/1.1: bodiless requests take gatekit's own codec (`h1.rs`).
    fast: bool,
}

impl EndpointPool {
    pub(crate) fn new(
        addr: SocketAddr,
        transport: Transport,
        settings: Arc<Settings>,
        limits: PoolLimits,
    ) -> Self {
        let prefers_h2 = transport.protocol() == Protocol::Http2;
        let fast = transport.tls().is_none() && transport.protocol() != Protocol::Http2;
        Self {
            connector: Arc::new(Connector {
                addr,
                transport,
                settings,
            }),
            limits,
            h1: parking_lot::Mutex::new(H1Idle {
                stack: Vec::new(),
                raw: Vec::new(),
                reaper_running: false,
            }),
            h2: parking_lot::Mutex::new(H2Slot::Empty),
            prefers_h2: AtomicBool::new(prefers_h2),
            fast,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.connector.addr
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.connector.transport
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.h1.lock().len()
    }

    fn config(&self) -> &ClientConfig {
        &self.connector.settings.config
    }

    /// Opens a connection for an upgrade. Its slot under the connection cap is shared
    /// by the connection's task and the caller, who keeps it for as long as the
    /// upgraded connection is copied.
    pub(crate) async fn connect_upgradable(&self) -> Result<(Conn, Arc<ConnSlot>), Error> {
        let slot = Arc::new(self.limits.connection_slot()?);
        let conn = self.connector.connect(true, slot.clone()).await?;
        Ok((conn, slot))
    }

    /// A new hyper HTTP/1.1 connection's request count, if connections are retired.
    fn counted(self: &Arc<Self>) -> Option<Arc<Counted>> {
        self.limits.max_requests_per_connection().map(|_| {
            Arc::new(Counted {
                pool: Arc::downgrade(self),
                served: AtomicU32::new(0),
            })
        })
    }

    /// Closes this pool's oldest idle HTTP/1.1 connection to make room under the
    /// connection cap: one of gatekit's own codec when `raw` (its slot frees at once),
    /// else one of hyper's. Whether one was closed.
    pub(crate) fn evict_idle(&self, raw: bool) -> bool {
        let mut idle = self.h1.lock();
        if raw {
            if idle.raw.is_empty() {
                return false;
            }
            let conn = idle.raw.remove(0);
            drop(idle);
            drop(conn);
        } else {
            if idle.stack.is_empty() {
                return false;
            }
            let conn = idle.stack.remove(0);
            drop(idle);
            drop(conn);
        }
        true
    }

    /// Sends one request over a pooled or new connection.
    pub(crate) async fn send(self: Arc<Self>, req: Request<Body>) -> Result<Response<Body>, Error> {
        // Relaxed: a hint; a stale read only sends one more request the HTTP/1 way,
        // whose connect then finds h2.
        if self.prefers_h2.load(Ordering::Relaxed) {
            self.send_h2(req).await
        } else {
            self.send_h1(req).await
        }
    }

    // --- HTTP/1.1 ---

    /// Starts a request, choosing its path before any future exists, so the common case
    /// (a warm pooled HTTP/1.1 connection) gets a small future of its own instead of one
    /// sized by every path's largest state (connecting, h2: about 2 KB).
    pub(crate) fn start(self: &Arc<Self>, mut req: Request<Body>) -> crate::backend::BoxFuture {
        let pool = self.clone();
        if self.prefers_h2.load(Ordering::Relaxed) {
            return Box::pin(async move { pool.send(req).await.map_err(crate::BoxError::from) });
        }
        to_origin_form(&mut req, self.addr());
        if self.fast
            && let Some(plan) = h1::plan(&req)
        {
            let conn = self.checkout_raw();
            return Box::pin(h1::Exchange::start(pool, conn, req, plan));
        }
        match self.checkout() {
            // hyper queues the request on the connection now; the future only waits.
            Some((mut tx, counted)) => {
                let sent = tx.try_send_request(req);
                Box::pin(PooledResponse {
                    sent,
                    conn: Some((tx, pool, counted)),
                    retry: None,
                })
            }
            None => {
                Box::pin(
                    async move { pool.send_h1_fresh(req).await.map_err(crate::BoxError::from) },
                )
            }
        }
    }

    async fn finish_pooled(
        self: Arc<Self>,
        sent: impl Future<
            Output = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>>,
        >,
        tx: http1::SendRequest<Body>,
        counted: Option<Arc<Counted>>,
    ) -> Result<Response<Body>, Error> {
        match sent.await {
            Ok(rsp) => Ok(self.finish_h1(rsp, tx, counted)),
            Err(mut err) => match err.take_message() {
                // The pooled connection died before the request was written: nothing
                // was sent, so sending it once more is safe.
                Some(unsent) => Box::pin(self.send_h1_fresh(unsent)).await,
                None => Err(send_error(err.into_error(), false)),
            },
        }
    }

    async fn send_h1(self: Arc<Self>, mut req: Request<Body>) -> Result<Response<Body>, Error> {
        to_origin_form(&mut req, self.addr());
        if let Some((mut tx, counted)) = self.checkout() {
            let sent = tx.try_send_request(req);
            return self.finish_pooled(sent, tx, counted).await;
        }
        // The rare path is boxed so its connect state does not bloat every request's
        // future (the response future is boxed once per request and sized by its
        // largest state).
        Box::pin(self.send_h1_fresh(req)).await
    }

    /// Sends on a new connection (nothing pooled, or the pooled one was dead).
    /// A request that fails before any byte of it is written comes back in the error
    /// (not at the connection cap: that refusal is not retry-safe).
    async fn send_h1_fresh(self: Arc<Self>, req: Request<Body>) -> Result<Response<Body>, Error> {
        let slot = self.limits.connection_slot()?;
        let conn = match self.connector.connect(false, slot).await {
            Ok(conn) => conn,
            Err(e) => return Err(super::hand_back(e, req)),
        };
        match conn {
            Conn::H1(mut tx) => match tx.try_send_request(req).await {
                Ok(rsp) => {
                    let counted = self.counted();
                    Ok(self.finish_h1(rsp, tx, counted))
                }
                Err(mut err) => {
                    let unsent = err.take_message();
                    let error = send_error(err.into_error(), unsent.is_some());
                    Err(with_unsent(error, unsent))
                }
            },
            Conn::H2(tx) => {
                // `Auto` over TLS and the upstream chose h2: keep this connection as
                // the endpoint's shared one and go the HTTP/2 way from now on.
                self.prefers_h2.store(true, Ordering::Relaxed);
                *self.h2.lock() = H2Slot::Ready {
                    tx: tx.clone(),
                    streams: 1,
                };
                send_on_h2(tx, req, self.transport().is_tls(), self.addr())
                    .await
                    .map_err(|(e, unsent)| with_unsent(e, unsent))
            }
        }
    }

    /// Pops the most recently returned connection that is ready for a request, dropping
    /// expired and closed ones on the way. Never waits: only ready connections are put
    /// on the stack, so one that is not ready any more is closing.
    fn checkout(&self) -> Option<(http1::SendRequest<Body>, Option<Arc<Counted>>)> {
        let timeout = self.config().pool_idle_timeout;
        loop {
            let idle = self.h1.lock().stack.pop()?;
            if idle.since.elapsed() >= timeout {
                // The stack is ordered by age: everything below is older still.
                let expired = std::mem::take(&mut self.h1.lock().stack);
                drop(expired);
                return None;
            }
            if idle.tx.is_ready() {
                return Some((idle.tx, idle.counted));
            }
        }
    }

    /// Pops the most recently returned fast-path connection that the upstream has not
    /// closed, dropping expired and dead ones on the way.
    fn checkout_raw(&self) -> Option<Box<RawConn>> {
        let timeout = self.config().pool_idle_timeout;
        loop {
            let idle = self.h1.lock().raw.pop()?;
            if idle.since.elapsed() >= timeout {
                // The stack is ordered by age: everything below is older still.
                let expired = std::mem::take(&mut self.h1.lock().raw);
                drop(expired);
                return None;
            }
            if idle.conn.is_reusable() {
                return Some(idle.conn);
            }
        }
    }

    /// Returns a fast-path connection (at the end of a response) to the idle stack, if
    /// the stack has room and the connection is not retired.
    fn put_raw(self: &Arc<Self>, mut conn: Box<RawConn>) {
        if self.limits.retires_after(conn.count_request()) {
            // Served its share: dropping it closes it.
            return;
        }
        let max = self.config().pool_max_idle_per_endpoint;
        let since = Instant::now();
        let mut idle = self.h1.lock();
        if idle.len() >= max {
            drop(idle);
            drop(conn);
            return;
        }
        idle.raw.push(IdleRaw { conn, since });
        self.ensure_reaper(idle);
    }

    /// Opens a TCP connection for the fast path (connect timeout, TCP_NODELAY). The
    /// slot under the connection cap is taken now: at the cap, the future fails on its
    /// first poll, without any I/O.
    fn connect_raw(self: Arc<Self>) -> h1::Connecting {
        let slot = self.limits.connection_slot();
        Box::pin(async move {
            let slot = slot?;
            let timeout = self.config().connect_timeout;
            let tcp = match tokio::time::timeout(timeout, TcpStream::connect(self.addr())).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => return Err(Error::with_source(ErrorKind::Connect, e)),
                Err(elapsed) => return Err(Error::with_source(ErrorKind::Connect, elapsed)),
            };
            // Not fatal: the connection works without it, only with more latency.
            let _ = tcp.set_nodelay(true);
            Ok((tcp, slot))
        })
    }

    /// Starts the idle reaper if it is not running (called with the idle lock held).
    fn ensure_reaper(self: &Arc<Self>, mut idle: parking_lot::MutexGuard<'_, H1Idle>) {
        if idle.reaper_running {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to run the reaper on: do not keep idle connections.
            let stack = std::mem::take(&mut idle.stack);
            let raw = std::mem::take(&mut idle.raw);
            drop(idle);
            drop((stack, raw));
            return;
        };
        idle.reaper_running = true;
        drop(idle);
        runtime.spawn(reap(Arc::downgrade(self)));
    }

    /// Wraps the response body so the connection returns to the pool at end of stream.
    fn finish_h1(
        self: Arc<Self>,
        rsp: Response<Incoming>,
        tx: http1::SendRequest<Body>,
        counted: Option<Arc<Counted>>,
    ) -> Response<Body> {
        if http_body::Body::is_end_stream(rsp.body()) {
            // Nothing more to read: hyper is done with this response already.
            self.put(tx, counted);
            return rsp.map(Body::from);
        }
        let owner: Arc<dyn Recycle<http1::SendRequest<Body>>> = match counted {
            Some(counted) => counted,
            None => self,
        };
        rsp.map(|body| Body::from(Pooled::hyper(body, tx, owner)))
    }

    /// Returns a connection whose response ended to the idle stack, if it is open, not
    /// retired and the stack has room.
    fn put(self: &Arc<Self>, tx: http1::SendRequest<Body>, counted: Option<Arc<Counted>>) {
        if let Some(counted) = &counted {
            let served = counted.served.fetch_add(1, Ordering::Relaxed) + 1;
            if self.limits.retires_after(served) {
                // Served its share: dropping the sender closes the connection.
                return;
            }
        }
        self.put_idle(tx, counted);
    }

    fn put_idle(self: &Arc<Self>, mut tx: http1::SendRequest<Body>, counted: Option<Arc<Counted>>) {
        if tx.is_closed() {
            return;
        }
        if !tx.is_ready() {
            // Rare (the response ended before the connection task went idle, or the
            // request body is still being sent): wait off the request path.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let pool = self.clone();
                runtime.spawn(async move {
                    if tx.ready().await.is_ok() && tx.is_ready() {
                        pool.put_idle(tx, counted);
                    }
                });
            }
            return;
        }
        let max = self.config().pool_max_idle_per_endpoint;
        let since = Instant::now();
        let mut idle = self.h1.lock();
        if idle.len() >= max {
            drop(idle);
            drop(tx);
            return;
        }
        idle.stack.push(Idle { tx, since, counted });
        self.ensure_reaper(idle);
    }

    // --- HTTP/2 ---

    async fn send_h2(self: Arc<Self>, mut req: Request<Body>) -> Result<Response<Body>, Error> {
        let tls = self.transport().is_tls();
        for attempt in 0..2 {
            let tx = match self.h2_sender().await {
                Ok(tx) => tx,
                Err(e) => return Err(super::hand_back(e, req)),
            };
            match send_on_h2(tx, req, tls, self.addr()).await {
                Ok(rsp) => return Ok(rsp),
                // The shared connection was closing and handed the request back: try
                // once more on a new connection.
                Err((err, Some(unsent))) if attempt == 0 => {
                    drop(err);
                    self.clear_h2_if_closed();
                    req = unsent;
                }
                Err((err, unsent)) => return Err(with_unsent(err, unsent)),
            }
        }
        Err(Error::new(ErrorKind::UpstreamProtocol))
    }

    fn clear_h2_if_closed(&self) {
        let mut slot = self.h2.lock();
        if let H2Slot::Ready { tx, .. } = &*slot
            && tx.is_closed()
        {
            *slot = H2Slot::Empty;
        }
    }

    /// A stream on the endpoint's shared HTTP/2 connection, connecting if there is none;
    /// concurrent callers share one connect attempt. A connection that has opened
    /// `max_requests_per_connection` streams is retired: it takes no new ones, finishes
    /// those it has, and closes.
    async fn h2_sender(&self) -> Result<http2::SendRequest<Body>, Error> {
        let mut last = None;
        // The stream is taken (and counted) after the connect, on the next pass; if
        // other requests used up the new connection meanwhile, there is another connect.
        // Past a few passes the request takes the connection it waited for, uncounted.
        for _ in 0..3 {
            let connect = match self.h2_stream()? {
                H2Stream::Ready(tx) => return Ok(tx),
                H2Stream::Connect(connect) => connect,
            };
            let result = connect.clone().await;
            let mut slot = self.h2.lock();
            if let H2Slot::Connecting(current) = &*slot
                && current.ptr_eq(&connect)
            {
                *slot = match &result {
                    Ok(tx) => H2Slot::Ready {
                        tx: tx.clone(),
                        streams: 0,
                    },
                    Err(_) => H2Slot::Empty,
                };
            }
            drop(slot);
            last = Some(result.map_err(|e| Error::with_source(e.kind(), e).retry_safe(true))?);
        }
        last.ok_or_else(|| Error::new(ErrorKind::UpstreamProtocol))
    }

    /// Takes a stream on the ready HTTP/2 connection, or the connect attempt to wait
    /// for (starting one if needed: at the connection cap, the error).
    fn h2_stream(&self) -> Result<H2Stream, Error> {
        let mut slot = self.h2.lock();
        if let H2Slot::Ready { tx, streams } = &mut *slot
            && !tx.is_closed()
        {
            let tx = tx.clone();
            *streams += 1;
            if self.limits.retires_after(*streams) {
                *slot = H2Slot::Empty;
            }
            return Ok(H2Stream::Ready(tx));
        }
        if let H2Slot::Connecting(connect) = &*slot {
            return Ok(H2Stream::Connect(connect.clone()));
        }
        let conn_slot = self.limits.connection_slot()?;
        let connector = self.connector.clone();
        let connect = async move {
            match connector.connect(false, conn_slot).await {
                Ok(Conn::H2(tx)) => Ok(tx),
                Ok(Conn::H1(_)) => Err(Arc::new(Error::with_source(
                    ErrorKind::Connect,
                    "the upstream did not negotiate h2",
                ))),
                Err(e) => Err(Arc::new(e)),
            }
        }
        .boxed()
        .shared();
        *slot = H2Slot::Connecting(connect.clone());
        Ok(H2Stream::Connect(connect))
    }
}

// The fast path's connections come from and return to this pool.
impl h1::RawPool for EndpointPool {
    fn connect(self: Arc<Self>) -> h1::Connecting {
        self.connect_raw()
    }

    fn put(self: &Arc<Self>, conn: Box<RawConn>) {
        self.put_raw(conn);
    }
}

// Response bodies return their connections here (see `crate::body::Pooled`).
impl Recycle<Box<RawConn>> for EndpointPool {
    fn recycle(self: Arc<Self>, conn: Box<RawConn>) {
        self.put_raw(conn);
    }
}

impl Recycle<http1::SendRequest<Body>> for EndpointPool {
    fn recycle(self: Arc<Self>, tx: http1::SendRequest<Body>) {
        self.put(tx, None);
    }
}

impl Recycle<http1::SendRequest<Body>> for Counted {
    fn recycle(self: Arc<Self>, tx: http1::SendRequest<Body>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(tx, Some(self));
        }
    }
}

impl fmt::Debug for EndpointPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointPool")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

/// Closes HTTP/1.1 connections idle longer than the idle timeout. Runs while the stack
/// is not empty; holds only a weak reference, so a dropped pool ends it.
async fn reap(pool: Weak<EndpointPool>) {
    loop {
        let deadline = {
            let Some(pool) = pool.upgrade() else { return };
            let timeout = pool.config().pool_idle_timeout;
            let mut idle = pool.h1.lock();
            match idle.oldest() {
                Some(oldest) => oldest + timeout,
                None => {
                    idle.reaper_running = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(deadline).await;
        let Some(pool) = pool.upgrade() else { return };
        let timeout = pool.config().pool_idle_timeout;
        let now = Instant::now();
        let expired: (Vec<Idle>, Vec<IdleRaw>) = {
            let mut idle = pool.h1.lock();
            let n = idle
                .stack
                .partition_point(|i| now.saturating_duration_since(i.since) >= timeout);
            let m = idle
                .raw
                .partition_point(|i| now.saturating_duration_since(i.since) >= timeout);
            (
                idle.stack.drain(..n).collect(),
                idle.raw.drain(..m).collect(),
            )
        };
        // Dropping the senders closes the idle connections, outside the lock.
        drop(expired);
    }
}

/// Sends on an HTTP/2 connection. On failure, hands the request back if it was not sent.
async fn send_on_h2(
    mut tx: http2::SendRequest<Body>,
    mut req: Request<Body>,
    tls: bool,
    addr: SocketAddr,
) -> Result<Response<Body>, (Error, Option<Request<Body>>)> {
    to_absolute_form(&mut req, tls, addr).map_err(|e| (e, None))?;
    match tx.try_send_request(req).await {
        Ok(rsp) => Ok(rsp.map(Body::from)),
        Err(mut err) => {
            let unsent = err.take_message();
            let error = send_error(err.into_error(), unsent.is_some());
            Err((error, unsent))
        }
    }
}

/// `error`, carrying the request hyper handed back unsent, if any.
fn with_unsent(error: Error, unsent: Option<Request<Body>>) -> Error {
    match unsent {
        Some(req) => error.with_unsent_request(req),
        None => error,
    }
}

/// Classifies an error from sending a request: a protocol error (502), retry-safe when
/// the request was not sent or the h2 stream was refused before processing.
fn send_error(err: hyper::Error, unsent: bool) -> Error {
    let refused = is_refused_stream(&err);
    let kind = if err.is_timeout() {
        ErrorKind::Timeout
    } else if err.is_user()
        && let Some(cause) = std::error::Error::source(&err)
    {
        // The request body failed while being streamed upstream.
        super::request_body_error_kind(cause)
    } else if let Some(failure) = super::verify::tls_failure(&err) {
        // The upstream refused the connection's TLS after the handshake (a TLS 1.3
        // server checks the client certificate then).
        tracing::warn!(
            reason = %super::verify::tls_reason(failure),
            "TLS with the upstream failed after the handshake"
        );
        ErrorKind::UpstreamTls
    } else {
        ErrorKind::UpstreamProtocol
    };
    Error::with_source(kind, err).retry_safe(unsent || refused)
}

fn is_refused_stream(err: &hyper::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        cur = e.source();
    }
    false
}

// --- request forms ---

/// HTTP/2 upstream: absolute URI with the `Host` as authority, no `Host` header.
fn to_absolute_form(req: &mut Request<Body>, tls: bool, addr: SocketAddr) -> Result<(), Error> {
    *req.version_mut() = Version::HTTP_2;
    let authority = match req.headers_mut().remove(header::HOST) {
        Some(host) => Authority::try_from(host.as_bytes())
            .map_err(|e| Error::with_source(ErrorKind::BadRequest, e))?,
        None => match req.uri().authority() {
            Some(authority) => authority.clone(),
            None => Authority::try_from(addr.to_string())
                .map_err(|e| Error::with_source(ErrorKind::BadRequest, e))?,
        },
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|e| Error::with_source(ErrorKind::BadRequest, e))?;
    Ok(())
}

// --- the pooled request's response future ---

pin_project! {
    /// The response future of a request sent on a pooled HTTP/1.1 connection: the hot
    /// path, written by hand because the `async` version was 1.9 KB (the compiler kept
    /// separate slots for hyper's send future, each holding a 296-byte `Request`, in the
    /// outer and inner state machines). That is past glibc's per-thread cache of small
    /// blocks (1 KiB), so every request paid a slow-path `malloc` and a consolidation of
    /// the free lists; this one is about 350 bytes.
    struct PooledResponse<F> {
        #[pin]
        sent: F,
        conn: Option<(http1::SendRequest<Body>, Arc<EndpointPool>, Option<Arc<Counted>>)>,
        // The pooled connection died before the request was written: the request is
        // sent once more on a new connection (boxed: rare, and large).
        retry: Option<crate::backend::BoxFuture>,
    }
}

impl<F> Future for PooledResponse<F>
where
    F: Future<
        Output = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>>,
    >,
{
    type Output = Result<Response<Body>, crate::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(retry) = this.retry {
            return retry.as_mut().poll(cx);
        }
        let result = ready!(this.sent.poll(cx));
        let Some((tx, pool, counted)) = this.conn.take() else {
            // Polled after completion: a caller's contract bug, answered with an error.
            return Poll::Ready(Err(Error::new(ErrorKind::UpstreamProtocol).into()));
        };
        match result {
            Ok(rsp) => Poll::Ready(Ok(pool.finish_h1(rsp, tx, counted))),
            Err(mut err) => match err.take_message() {
                // Nothing was sent, so sending it once more is safe for any method.
                Some(unsent) => {
                    let retry = this.retry.insert(Box::pin(async move {
                        pool.send_h1_fresh(unsent)
                            .await
                            .map_err(crate::BoxError::from)
                    }));
                    retry.as_mut().poll(cx)
                }
                None => Poll::Ready(Err(send_error(err.into_error(), false).into())),
            },
        }
    }
}
