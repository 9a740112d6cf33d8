//! [`StreamRouter`]: a port's current [`StreamTable`] and the way of one TCP connection
//! through it.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};

use super::backend::StreamEndpoint;
use super::error::StreamError;
use super::observer::{Refusal, StreamObserver, StreamStats};
use super::relay::{Activity, relay};
use super::table::{ListenerMode, StreamTable};
use crate::ConnectionInfo;
use crate::route::RouteId;
use crate::tls::{DEFAULT_CLIENT_HELLO_TIMEOUT, peek_client_hello};

/// A stream port's routing: the current [`StreamTable`] (swapped atomically with
/// [`store`](Self::store); a connection keeps the table it started with) and the
/// [`StreamObserver`] of its connections. Cheap to clone; clones share the table.
///
/// Give it to a [`Server`](crate::server::Server) with
/// [`serve_streams`](crate::server::Server::serve_streams), or run
/// [`serve_connection`](Self::serve_connection) on a connection accepted elsewhere.
#[derive(Clone)]
pub struct StreamRouter {
    table: Arc<ArcSwap<StreamTable>>,
    observer: Option<Arc<dyn StreamObserver>>,
    client_hello_timeout: Duration,
}

impl StreamRouter {
    /// A router serving `table`.
    pub fn new(table: StreamTable) -> Self {
        Self {
            table: Arc::new(ArcSwap::from_pointee(table)),
            observer: None,
            client_hello_timeout: DEFAULT_CLIENT_HELLO_TIMEOUT,
        }
    }

    /// Tells `observer` of every connection.
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn StreamObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// How long a client of a TLS port has to send its whole ClientHello (default
    /// [`DEFAULT_CLIENT_HELLO_TIMEOUT`]).
    #[must_use]
    pub fn client_hello_timeout(mut self, timeout: Duration) -> Self {
        self.client_hello_timeout = timeout;
        self
    }

    /// Serves `table` from now on; open connections keep theirs, and still count
    /// against their route's `max_connections` in the new table (by route id).
    pub fn store(&self, mut table: StreamTable) {
        table.carry_over(&self.table.load());
        self.table.store(Arc::new(table));
    }

    /// The table being served.
    pub fn load(&self) -> Arc<StreamTable> {
        self.table.load_full()
    }

    pub(crate) fn observer_ref(&self) -> Option<&Arc<dyn StreamObserver>> {
        self.observer.as_ref()
    }

    /// Serves one accepted TCP connection `io` described by `info`: on a TLS port its
    /// ClientHello is read (and replayed) to choose by SNI; then the route and a backend
    /// are chosen, TLS is terminated if the listener says so, the backend is connected
    /// and bytes are relayed both ways until both directions are done or the connection
    /// was idle for its timeout. Connections nothing takes are closed before any
    /// backend is contacted.
    ///
    /// # Errors
    ///
    /// Why the connection was refused, or the relay's I/O error.
    pub async fn serve_connection<IO>(
        &self,
        io: IO,
        info: ConnectionInfo,
    ) -> Result<(), StreamError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let table = self.load();
        let refuse = |route: Option<&RouteId>, reason: Refusal| {
            if let Some(observer) = &self.observer {
                observer.refused(route, reason);
            }
        };
        let (sni, io) = if table.is_tls() {
            match peek_client_hello(io, self.client_hello_timeout).await {
                Ok((hello, io)) => (hello.server_name().map(str::to_owned), io),
                Err(error) => {
                    refuse(None, Refusal::ClientHello);
                    return Err(error.into());
                }
            }
        } else {
            (None, super::Rewind::new(io))
        };
        let Some(selected) = table.select(sni.as_deref()) else {
            refuse(None, Refusal::NoRoute);
            return Err(StreamError::NoRoute(sni));
        };
        let route = selected.route;
        // Decided on the client address as soon as the route is known: before any
        // backend is contacted, a limit place is taken or a TLS byte is relayed.
        if !selected.allows(info.remote_addr().ip()) {
            tracing::debug!(%route, client = %info.remote_addr().ip(), "stream connection denied by its route's client address check");
            refuse(Some(route), Refusal::Denied);
            return Err(StreamError::Denied);
        }
        let Some(backend) = selected.backend else {
            refuse(Some(route), Refusal::InvalidBackend);
            return Err(StreamError::InvalidBackend);
        };
        // Held until the connection ends.
        let Some(_slot) = selected.acquire() else {
            refuse(Some(route), Refusal::Limit);
            return Err(StreamError::Limit);
        };
        match selected.mode {
            ListenerMode::Terminate(acceptor) => {
                let tls = match acceptor.accept(io).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        refuse(Some(route), Refusal::Handshake);
                        return Err(error.into());
                    }
                };
                let (tcp, endpoint) = match backend.connect(&info).await {
                    Ok(connected) => connected,
                    Err(error) => {
                        refuse(Some(route), Refusal::NoBackend);
                        return Err(error);
                    }
                };
                self.relay(route, tls, tcp, endpoint, selected.idle_timeout)
                    .await
            }
            _ => {
                let (tcp, endpoint) = match backend.connect(&info).await {
                    Ok(connected) => connected,
                    Err(error) => {
                        refuse(Some(route), Refusal::NoBackend);
                        return Err(error);
                    }
                };
                self.relay(route, io, tcp, endpoint, selected.idle_timeout)
                    .await
            }
        }
    }

    async fn relay<C>(
        &self,
        route: &RouteId,
        client: C,
        backend: tokio::net::TcpStream,
        endpoint: Box<dyn StreamEndpoint>,
        idle: Duration,
    ) -> Result<(), StreamError>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let activity = Activity::new();
        let mut open = Open {
            route: route.clone(),
            activity: activity.clone(),
            observer: self.observer.clone(),
            endpoint: Some(endpoint),
            error: None,
        };
        if let Some(observer) = &self.observer {
            observer.opened(route);
        }
        let result = relay(client, backend, idle, activity).await;
        if let Err(error) = &result {
            tracing::debug!(%route, %error, "stream connection ended with an error");
        }
        open.error = result.err();
        Ok(())
    }
}

impl fmt::Debug for StreamRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamRouter")
            .field("table", &self.table.load())
            .finish_non_exhaustive()
    }
}

/// A relayed connection: reports its end (bytes, duration, the endpoint's outcome) when
/// dropped, whether it finished or a drain dropped it.
struct Open {
    route: RouteId,
    activity: Arc<Activity>,
    observer: Option<Arc<dyn StreamObserver>>,
    endpoint: Option<Box<dyn StreamEndpoint>>,
    error: Option<io::Error>,
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(endpoint) = self.endpoint.take() {
            endpoint.closed(self.error.as_ref());
        }
        let stats = StreamStats {
            received: self.activity.received(),
            sent: self.activity.sent(),
            duration: self.activity.elapsed(),
        };
        tracing::debug!(
            route = %self.route,
            received = stats.received,
            sent = stats.sent,
            duration = ?stats.duration,
            "stream connection closed"
        );
        if let Some(observer) = &self.observer {
            observer.closed(&self.route, &stats);
        }
    }
}
