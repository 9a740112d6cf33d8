//! [`Server`]: a listening socket and its accept loop; [`ServerHandle`] to stop it.

use super::{HttpService, ResponseBody};
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use pin_project_lite::pin_project;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;

use super::ServerConfig;
use super::config::Http;
use super::connection::serve_accepted;
use super::drain::{Drain, DrainSignal, Phase, Tracked};
use super::limit::{ClientSlot, ConnectionLimit, ConnectionObserver, PerClientLimit};
use crate::stream::{Rewind, StreamRouter};
use crate::tls::TlsAcceptor;
use crate::{BoxError, ConnectionInfo};

/// How long an accept loop pauses after an accept error (typically running out of file
/// descriptors) so it does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// One listening socket, configured with setters, then [served](Self::serve): see the
/// [module docs](super) for what happens to each connection.
///
/// ```no_run
/// # async fn run(store: std::sync::Arc<gatekit_core::tls::CertStore>) -> Result<(), gatekit_core::BoxError> {
/// use std::time::Duration;
/// use gatekit_core::server::{ConnectionLimit, Drain, PerClientLimit, Server, ServerConfig};
/// use gatekit_core::tls::{TlsAcceptor, server_config};
///
/// # let router = gatekit_core::Router::new(gatekit_core::RouteTable::default());
/// let drain = Drain::new();
/// let limit = ConnectionLimit::new(10_000);
/// let per_client = PerClientLimit::new(100);
/// let config = ServerConfig::default().path_policy(Some(Default::default()));
/// let tls = TlsAcceptor::new(std::sync::Arc::new(server_config(store)?));
/// let https = Server::bind("127.0.0.1:8443".parse()?)
///     .await?
///     .config(config)
///     .tls(tls)
///     .limit(limit.clone())
///     .per_client_limit(per_client.clone())
///     .drain(&drain)
///     .serve(router);
/// println!("listening on {}", https.local_addr());
/// // ... on SIGTERM:
/// let outcome = drain.drain(Duration::from_secs(30)).await;
/// # let _ = outcome; Ok(()) }
/// ```
pub struct Server {
    listener: TcpListener,
    local: SocketAddr,
    config: ServerConfig,
    tls: Option<TlsAcceptor>,
    limit: Option<ConnectionLimit>,
    port_limit: Option<ConnectionLimit>,
    per_client: Option<PerClientLimit>,
    drain: Drain,
    observer: Option<Arc<dyn ConnectionObserver>>,
}

impl Server {
    /// Binds a TCP socket on `addr` (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// The I/O error of binding.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::from_listener(TcpListener::bind(addr).await?)
    }

    /// Serves on an already bound `listener`.
    ///
    /// # Errors
    ///
    /// The I/O error of reading the listener's address.
    pub fn from_listener(listener: TcpListener) -> io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            listener,
            local,
            config: ServerConfig::default(),
            tls: None,
            limit: None,
            port_limit: None,
            per_client: None,
            drain: Drain::new(),
            observer: None,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How connections are served (default [`ServerConfig::default`]).
    #[must_use]
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Terminates TLS on every connection with `acceptor` (its handshake deadline
    /// applies); requests carry the handshake's facts in their [`ConnectionInfo`](crate::ConnectionInfo).
    #[must_use]
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Counts connections against `limit` (default: no limit), shared with every other
    /// server given a clone.
    #[must_use]
    pub fn limit(mut self, limit: ConnectionLimit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Counts connections also against `limit`, a bound of this listener's own (for
    /// example Envoy Gateway's `connectionLimit` of one port), checked after the shared
    /// [`limit`](Self::limit): a connection over either is closed at once, before any
    /// byte is read, and counted by the limit that refused it.
    #[must_use]
    pub fn port_limit(mut self, limit: ConnectionLimit) -> Self {
        self.port_limit = Some(limit);
        self
    }

    /// Counts connections against `limit` per client IP address (default: no limit),
    /// shared with every other server given a clone. A client over it has its new
    /// connection closed at once, before the [`limit`](Self::limit) is consulted.
    #[must_use]
    pub fn per_client_limit(mut self, limit: PerClientLimit) -> Self {
        self.per_client = Some(limit);
        self
    }

    /// Joins the shutdown group `drain` (default: a group of its own, which nobody
    /// drains: [`ServerHandle::stop`] then leaves connections to end by themselves).
    #[must_use]
    pub fn drain(mut self, drain: &Drain) -> Self {
        self.drain = drain.clone();
        self
    }

    /// Tells `observer` of each connection opened, closed or rejected.
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn ConnectionObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Starts accepting on a task of its own, serving each connection with a clone of
    /// `service` (cloned per connection and per request: keep it an `Arc` inside).
    /// Refusals of the [path policy](ServerConfig::path_policy) carry an empty
    /// `B::default()` body. Must be called within a tokio runtime.
    pub fn serve<S, B>(self, service: S) -> ServerHandle
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let handler = HttpHandler {
            tls: self.tls.clone(),
            http: Arc::new(Http::new(&self.config)),
            service,
            _body: PhantomData,
        };
        self.spawn(handler)
    }

    /// Starts accepting on a task of its own, serving each connection with `router`
    /// (TLS passthrough or termination by SNI, TCP; see [`crate::stream`]) instead of
    /// HTTP. The connection limits, PROXY protocol, observer and drain group apply as
    /// for HTTP; a drain leaves stream connections open until its deadline, then closes
    /// them. [`tls`](Self::tls) and the HTTP settings of the config are not used.
    pub fn serve_streams(self, router: StreamRouter) -> ServerHandle {
        self.spawn(router)
    }

    fn spawn<H: Handler>(self, handler: H) -> ServerHandle {
        let (stop, stopped) = oneshot::channel();
        let local = self.local;
        let tls = self.tls.is_some();
        let task = tokio::spawn(self.run(handler, stopped));
        tracing::debug!(%local, tls, "listening");
        ServerHandle {
            local,
            tls,
            stop,
            task,
        }
    }

    async fn run<H: Handler>(self, handler: H, mut stopped: oneshot::Receiver<()>) {
        let Self {
            listener,
            local,
            config,
            tls: _,
            limit,
            port_limit,
            per_client,
            drain,
            observer,
        } = self;
        let mut draining = drain.stop_accepting();
        let proxy_protocol = config.proxy_protocol_settings().cloned().map(Arc::new);
        loop {
            // A stop or a drain wins over a pending connection; `stopped` also fires
            // when the handle is dropped.
            let accepted = tokio::select! {
                biased;
                _ = &mut stopped => break,
                _ = draining.wait_for(|stop| *stop) => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, %local, "accept failed");
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = draining.wait_for(|stop| *stop) => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                    }
                }
            };
            let client = match &per_client {
                None => None,
                Some(per_client) => match per_client.try_acquire(remote.ip()) {
                    Some(slot) => Some(slot),
                    None => {
                        if let Some(observer) = &observer {
                            observer.rejected();
                        }
                        tracing::debug!(%remote, %local, "per-client connection limit reached; closing");
                        continue;
                    }
                },
            };
            let permit = match &limit {
                None => None,
                Some(limit) => match limit.try_acquire() {
                    Some(permit) => Some(permit),
                    None => {
                        if let Some(observer) = &observer {
                            observer.rejected();
                        }
                        tracing::debug!(%remote, %local, "connection limit reached; closing");
                        continue;
                    }
                },
            };
            let port_permit = match &port_limit {
                None => None,
                Some(limit) => match limit.try_acquire() {
                    Some(permit) => Some(permit),
                    None => {
                        if let Some(observer) = &observer {
                            observer.rejected();
                        }
                        tracing::debug!(%remote, %local, "the port's connection limit reached; closing");
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let permits = [permit, port_permit];
            let guard = ConnectionGuard::new(drain.connection(), permits, client, observer.clone());
            let hard_stop = guard.tracked.signal.clone().into_reached(Phase::Hard);
            let signal = guard.tracked.signal.clone();
            let handler = handler.clone();
            // No `async` wrapper around the connection's future (it would keep a second
            // copy of the handler): the PROXY protocol case alone is one, boxed.
            let serve = match proxy_protocol.clone() {
                None => Either::Left(handler.handle(Rewind::new(tcp), remote, local, signal)),
                Some(pp) => Either::Right(Box::pin(async move {
                    let (header, io) = pp.read(tcp, remote.ip()).await?;
                    let source = header.and_then(|h| h.source()).unwrap_or(remote);
                    handler.handle(io, source, local, signal).await
                })),
            };
            tokio::spawn(ConnectionTask {
                serve,
                hard_stop,
                remote,
                _guard: guard,
            });
        }
        // The socket closes before the drain hears that this loop ended.
        drop(listener);
        drop(draining);
        tracing::debug!(%local, "stopped listening");
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local", &self.local)
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("limit", &self.limit)
            .field("port_limit", &self.port_limit)
            .field("per_client", &self.per_client)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// A connection's task: its future, until it ends or the drain's deadline passes
    /// (then it is dropped, and the connection closes).
    struct ConnectionTask<F, H> {
        #[pin]
        serve: F,
        #[pin]
        hard_stop: H,
        remote: SocketAddr,
        _guard: ConnectionGuard,
    }
}

impl<F, H> Future for ConnectionTask<F, H>
where
    F: Future<Output = Result<(), BoxError>>,
    H: Future<Output = ()>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Poll::Ready(result) = this.serve.poll(cx) {
            if let Err(error) = result {
                let remote = *this.remote;
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
            return Poll::Ready(());
        }
        this.hard_stop.poll(cx)
    }
}

/// What a listener does with each accepted connection (after the limits and the
/// PROXY protocol header): HTTP, or a stream router.
trait Handler: Clone + Send + 'static {
    fn handle(
        self,
        io: Rewind<TcpStream>,
        remote: SocketAddr,
        local: SocketAddr,
        drain: DrainSignal,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// HTTP (with TLS termination when configured) with a clone of the service.
struct HttpHandler<S, B> {
    tls: Option<TlsAcceptor>,
    http: Arc<Http>,
    service: S,
    _body: PhantomData<fn() -> B>,
}

impl<S: Clone, B> Clone for HttpHandler<S, B> {
    fn clone(&self) -> Self {
        Self {
            tls: self.tls.clone(),
            http: self.http.clone(),
            service: self.service.clone(),
            _body: PhantomData,
        }
    }
}

impl<S, B> Handler for HttpHandler<S, B>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    // Not an `async fn`: the connection's future is `serve_accepted`'s own, without a
    // copy of the handler kept beside it.
    fn handle(
        self,
        io: Rewind<TcpStream>,
        remote: SocketAddr,
        local: SocketAddr,
        drain: DrainSignal,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        serve_accepted(io, remote, local, self.tls, self.http, self.service, drain)
    }
}

impl Handler for StreamRouter {
    async fn handle(
        self,
        io: Rewind<TcpStream>,
        remote: SocketAddr,
        local: SocketAddr,
        _drain: DrainSignal,
    ) -> Result<(), BoxError> {
        // Stream connections ignore the graceful phase: the accept loop's task drops
        // them at the drain's deadline.
        let info = ConnectionInfo::new(remote, local, false);
        self.serve_connection(io, info).await.map_err(Into::into)
    }
}

/// A listener started by [`Server::serve`]. Dropping it stops accepting, as
/// [`stop`](Self::stop) does, without waiting for the socket to close.
#[derive(Debug)]
pub struct ServerHandle {
    local: SocketAddr,
    tls: bool,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the listener terminates TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Stops accepting and returns once the socket is closed (new connections are
    /// refused). Open connections go on until they end or their [`Drain`] drains them.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, local = %self.local, "accept loop failed");
        }
    }
}

/// One open connection: holds its slots under the limits and its place in the drain
/// group, and tells the observer when it ends (after freeing its slots, so an observer
/// that hears `closed` finds them free).
struct ConnectionGuard {
    tracked: Tracked,
    /// Under the shared limit and the port's own.
    permits: [Option<OwnedSemaphorePermit>; 2],
    client: Option<ClientSlot>,
    observer: Option<Arc<dyn ConnectionObserver>>,
}

impl ConnectionGuard {
    fn new(
        tracked: Tracked,
        permits: [Option<OwnedSemaphorePermit>; 2],
        client: Option<ClientSlot>,
        observer: Option<Arc<dyn ConnectionObserver>>,
    ) -> Self {
        if let Some(observer) = &observer {
            observer.opened();
        }
        Self {
            tracked,
            permits,
            client,
            observer,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        drop(self.permits.each_mut().map(Option::take));
        drop(self.client.take());
        if let Some(observer) = &self.observer {
            observer.closed();
        }
    }
}
