//! Gateway listeners: sockets, TLS, limits and draining (see [`Listeners`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::path::{NormalizePath, PathPolicy};
use gatekit_core::server::{ServerConfig, with_connection_info};
use gatekit_core::tls::{CertStore, TlsAcceptor, TlsError};
use gatekit_core::{BoxError, ConnectionInfo};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tower_service::Service;

use crate::Metrics;
use crate::settings::Settings;

/// How long an accept loop pauses after an accept error (typically running out of file
/// descriptors) so it does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// Why a listener could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    #[non_exhaustive]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A listener already serves this port.
    #[error("port {0} already has a listener")]
    PortInUse(u16),
    /// The TLS settings could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// How the listeners bind and limit connections.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ListenerSettings {
    /// The address every listener binds on (the port comes from each listener).
    pub bind: IpAddr,
    /// Open connections across all listeners; beyond it new ones are closed at once.
    pub max_connections: usize,
    /// How long a client may take to send a complete HTTP/1 request head.
    pub header_read_timeout: Duration,
    /// How long a client may take to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// How request paths are checked and normalised before the listener's service
    /// sees them (414 for long targets, 400 for refused paths).
    pub path_policy: PathPolicy,
}

impl ListenerSettings {
    /// The limits of `settings`, binding on `bind`.
    pub fn from_settings(settings: &Settings, bind: IpAddr) -> Self {
        Self {
            bind,
            max_connections: settings.limits.max_connections,
            header_read_timeout: settings.limits.header_read_timeout,
            tls_handshake_timeout: settings.limits.tls_handshake_timeout,
            path_policy: settings.paths.policy(),
        }
    }
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self::from_settings(&Settings::default(), IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
}

/// Plain HTTP or TLS-terminated HTTPS.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Transport {
    /// HTTP/1.1 and HTTP/2 (prior knowledge) in the clear.
    Plain,
    /// TLS with certificates chosen by SNI from the store; ALPN `h2` and `http/1.1`.
    /// Replace the store's set to rotate certificates.
    Tls(Arc<CertStore>),
}

/// How [`Listeners::drain`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrainOutcome {
    /// Every connection finished in time.
    Complete,
    /// The deadline passed; this many connections were dropped.
    TimedOut {
        /// Connections still open at the deadline.
        dropped: usize,
    },
}

/// The gateway's listening sockets and their connections: one TCP socket per port, plain
/// or TLS, serving a tower service with connection limits, header deadlines and graceful
/// draining.
///
/// # Per connection
///
/// ```text
/// accept ─▶ over maxConnections? close at once (counted)
///        ─▶ [TLS handshake under a deadline, certificate by SNI from a CertStore]
///        ─▶ hyper-util auto builder (HTTP/1.1 or HTTP/2; h2 by preface or ALPN)
///        ─▶ each request gets ConnectionInfo; its target is checked and its path
///           normalised (gatekit_core::path: 414, 400) before
///        ─▶ a clone of the listener's service
/// ```
///
/// The service passed to [`add`](Self::add) is cloned per connection and per request, so
/// it should be an `Arc` inside. To change routing without rebinding, pass a service that
/// reads its configuration from an `ArcSwap` (as gatekit-core's router does); sockets,
/// limits and connections are untouched by a reload.
///
/// # Draining
///
/// Every connection is watched by one hyper-util [`GracefulShutdown`]. [`drain`](Self::drain)
/// stops every accept loop (the sockets close, so new connections are refused), asks every
/// connection to finish gracefully (HTTP/1: close after the in-flight response; HTTP/2:
/// GOAWAY, in-flight streams complete), and waits for them up to a deadline, after which the
/// remaining connections are dropped.
pub struct Listeners {
    settings: ListenerSettings,
    builder: auto::Builder<TokioExecutor>,
    metrics: Metrics,
    limit: Arc<Semaphore>,
    active: Arc<AtomicUsize>,
    graceful: Arc<GracefulShutdown>,
    hard_stop: watch::Sender<bool>,
    bound: HashMap<u16, Bound>,
}

struct Bound {
    local: SocketAddr,
    tls: bool,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Listeners {
    /// No listeners yet; connections will be recorded in `metrics`.
    pub fn new(settings: ListenerSettings, metrics: Metrics) -> Self {
        // Header read timeout, HTTP/2 limits and write strategy are core's: the same
        // hardened settings a library user gets from `gatekit_core::server`.
        let builder = ServerConfig::default()
            .header_read_timeout(settings.header_read_timeout)
            .auto_builder();
        let limit = Arc::new(Semaphore::new(
            settings.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        Self {
            settings,
            builder,
            metrics,
            limit,
            active: Arc::new(AtomicUsize::new(0)),
            graceful: Arc::new(GracefulShutdown::new()),
            hard_stop: watch::Sender::new(false),
            bound: HashMap::new(),
        }
    }

    /// Binds `port` on the configured address and starts accepting, serving each
    /// connection with a clone of `service`, behind the settings' path policy
    /// ([`NormalizePath`]; its refusals have an empty `B::default()` body). Port 0 picks a free port. Returns the bound
    /// address; the listener is known by its port from then on.
    ///
    /// # Errors
    ///
    /// [`ListenError::Bind`] if the socket cannot be bound, [`ListenError::PortInUse`] if
    /// this set already listens there, [`ListenError::Tls`] if the TLS settings cannot be
    /// built.
    pub async fn add<S, B>(
        &mut self,
        port: u16,
        transport: Transport,
        service: S,
    ) -> Result<SocketAddr, ListenError>
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Default + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if port != 0 && self.bound.contains_key(&port) {
            return Err(ListenError::PortInUse(port));
        }
        let tls = match &transport {
            Transport::Plain => None,
            Transport::Tls(store) => {
                let config = gatekit_core::tls::server_config(store.clone())?;
                Some(
                    TlsAcceptor::new(Arc::new(config))
                        .with_handshake_timeout(self.settings.tls_handshake_timeout),
                )
            }
        };
        let addr = SocketAddr::new(self.settings.bind, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ListenError::Bind { addr, source })?;
        let (stop, stopped) = oneshot::channel();
        let accept = AcceptLoop {
            listener,
            local,
            tls: tls.clone(),
            service: NormalizePath::new(service, self.settings.path_policy),
            builder: self.builder.clone(),
            metrics: self.metrics.clone(),
            gauge: self.metrics.connection_gauge(local.port()),
            limit: self.limit.clone(),
            active: self.active.clone(),
            graceful: self.graceful.clone(),
            hard_stop: self.hard_stop.subscribe(),
        };
        let task = tokio::spawn(accept.run(stopped));
        tracing::info!(%local, tls = tls.is_some(), "listening");
        self.bound.insert(
            local.port(),
            Bound {
                local,
                tls: tls.is_some(),
                stop,
                task,
            },
        );
        Ok(local)
    }

    /// Stops accepting on `port` and closes its socket; its open connections go on until
    /// they end or the listeners drain. Returns whether such a listener existed.
    pub async fn remove(&mut self, port: u16) -> bool {
        let Some(bound) = self.bound.remove(&port) else {
            return false;
        };
        let _ = bound.stop.send(());
        let _ = bound.task.await;
        tracing::info!(local = %bound.local, "stopped listening");
        true
    }

    /// The bound address of each listener, with whether it terminates TLS.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, bool)> {
        let mut addrs: Vec<_> = self.bound.values().map(|b| (b.local, b.tls)).collect();
        addrs.sort();
        addrs
    }

    /// Open client connections across all listeners.
    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Stops every listener and closes its socket; open connections go on.
    pub async fn close(&mut self) {
        let ports: Vec<u16> = self.bound.keys().copied().collect();
        for port in ports {
            self.remove(port).await;
        }
    }

    /// Stops every listener ([`close`](Self::close)), lets open connections finish
    /// gracefully for up to `timeout`, then drops the rest. See [draining](Listeners#draining).
    pub async fn drain(mut self, timeout: Duration) -> DrainOutcome {
        self.close().await;
        // Every accept loop has ended, so this is the last reference.
        let Some(graceful) = Arc::into_inner(self.graceful) else {
            tracing::error!("connections cannot be drained: the shutdown handle is still shared");
            let _ = self.hard_stop.send(true);
            return DrainOutcome::TimedOut {
                dropped: self.active.load(Ordering::Relaxed),
            };
        };
        let open = self.active.load(Ordering::Relaxed);
        tracing::info!(connections = open, ?timeout, "draining connections");
        match tokio::time::timeout(timeout, graceful.shutdown()).await {
            Ok(()) => DrainOutcome::Complete,
            Err(_) => {
                let dropped = self.active.load(Ordering::Relaxed);
                tracing::warn!(
                    connections = dropped,
                    "drain deadline passed; closing connections"
                );
                let _ = self.hard_stop.send(true);
                DrainOutcome::TimedOut { dropped }
            }
        }
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("settings", &self.settings)
            .field("listening", &self.local_addrs())
            .field("active_connections", &self.active_connections())
            .finish_non_exhaustive()
    }
}

// === accept loop ===

struct AcceptLoop<S> {
    listener: TcpListener,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    service: S,
    builder: auto::Builder<TokioExecutor>,
    metrics: Metrics,
    gauge: Gauge,
    limit: Arc<Semaphore>,
    active: Arc<AtomicUsize>,
    graceful: Arc<GracefulShutdown>,
    hard_stop: watch::Receiver<bool>,
}

impl<S, B> AcceptLoop<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async fn run(self, mut stop: oneshot::Receiver<()>) {
        loop {
            let (tcp, remote) = tokio::select! {
                biased;
                _ = &mut stop => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, local = %self.local, "accept failed");
                        tokio::select! {
                            _ = &mut stop => return,
                            () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                        }
                    }
                },
            };
            let Ok(permit) = self.limit.clone().try_acquire_owned() else {
                self.metrics.record_rejected_connection();
                tracing::debug!(%remote, "connection limit reached; closing");
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let guard = ConnectionGuard::new(self.gauge.clone(), self.active.clone(), permit);
            let info = ConnectionInfo::new(remote, self.local, self.tls.is_some());
            let conn = Connection {
                tls: self.tls.clone(),
                service: self.service.clone(),
                builder: self.builder.clone(),
                watcher: self.graceful.watcher(),
                hard_stop: self.hard_stop.clone(),
            };
            tokio::spawn(async move {
                let _guard = guard;
                if let Err(error) = conn.serve(tcp, info).await {
                    tracing::debug!(%error, %remote, "connection ended with an error");
                }
            });
        }
    }
}

/// Counts one open connection (gauge and total) and holds its slot under the limit.
struct ConnectionGuard {
    gauge: Gauge,
    active: Arc<AtomicUsize>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ConnectionGuard {
    fn new(
        gauge: Gauge,
        active: Arc<AtomicUsize>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        gauge.inc();
        active.fetch_add(1, Ordering::Relaxed);
        Self {
            gauge,
            active,
            _permit: permit,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Connection<S> {
    tls: Option<TlsAcceptor>,
    service: S,
    builder: auto::Builder<TokioExecutor>,
    /// Taken at accept time, so a connection still in its TLS handshake when the drain
    /// begins is waited for too (and told to stop as soon as it is served).
    watcher: Watcher,
    hard_stop: watch::Receiver<bool>,
}

impl<S, B> Connection<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async fn serve(self, tcp: TcpStream, info: ConnectionInfo) -> Result<(), BoxError> {
        let Self {
            tls,
            service,
            builder,
            watcher,
            mut hard_stop,
        } = self;
        let serve = async move {
            match tls {
                None => http(tcp, info, service, &builder, watcher).await,
                Some(acceptor) => {
                    let tls = acceptor.accept(tcp).await?;
                    http(tls, info, service, &builder, watcher).await
                }
            }
        };
        tokio::select! {
            result = serve => result,
            _ = hard_stop.wait_for(|stop| *stop) => Ok(()),
        }
    }
}

async fn http<IO, S, B>(
    io: IO,
    info: ConnectionInfo,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
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
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    watcher.watch(conn).await
}
