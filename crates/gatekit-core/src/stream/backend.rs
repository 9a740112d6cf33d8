//! Stream backends: a [`StreamUpstream`] picks endpoints (the gateway's balancer, or a
//! fixed list), a [`StreamBackend`] connects to one under a deadline, trying another
//! endpoint after a failure, and reports each outcome.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::error::StreamError;
use crate::ConnectionInfo;
use crate::server::{ProxyVersion, encode_proxy_header};

/// Default time a backend connection may take to be established.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default number of endpoints tried for one connection.
pub const DEFAULT_CONNECT_ATTEMPTS: usize = 3;

/// Picks an endpoint for a stream connection: what a balancer offers gatekit-core
/// (gatekit-core knows no algorithm). Called once per connection attempt, on the
/// connection's task.
pub trait StreamUpstream: Send + Sync + 'static {
    /// An endpoint for a connection described by `info`, preferably not one of `tried`
    /// (the endpoints this connection already failed to reach); `None` when no endpoint
    /// may take it.
    fn pick(&self, info: &ConnectionInfo, tried: &[SocketAddr]) -> Option<Box<dyn StreamEndpoint>>;
}

/// One endpoint picked for one connection. It is held while the connection is open (so
/// a balancer counting open connections sees it) and told how connecting went: the
/// connect is the outcome a balancer should learn from (its latency, or its failure),
/// not the connection's life.
pub trait StreamEndpoint: Send + 'static {
    /// Where to connect.
    fn addr(&self) -> SocketAddr;

    /// The TCP connection to the endpoint was made (before any PROXY protocol header
    /// or byte of the client's); the time since the pick is its connect latency. Not
    /// called for UDP flows (nothing is exchanged to connect).
    fn connected(&mut self) {}

    /// Connecting failed (refused, unreachable, timed out): outlier detection should
    /// hear of it.
    fn connect_failed(self: Box<Self>, error: &io::Error);

    /// The connection (UDP: the flow) to the endpoint has closed; `error` is the I/O
    /// error it ended with, if any (the client's or the backend's doing, not a sign of
    /// the endpoint's health).
    fn closed(self: Box<Self>, error: Option<&io::Error>);
}

/// A backend of stream routes: where connections go, how long connecting may take,
/// how many endpoints one connection tries, and whether a PROXY protocol header is
/// written first. Cheap to clone.
#[derive(Clone)]
pub struct StreamBackend {
    upstream: Arc<dyn StreamUpstream>,
    connect_timeout: Duration,
    attempts: usize,
    proxy_protocol: Option<ProxyVersion>,
}

impl StreamBackend {
    /// A backend picking from `upstream`, with [`DEFAULT_CONNECT_TIMEOUT`],
    /// [`DEFAULT_CONNECT_ATTEMPTS`] and no PROXY protocol.
    pub fn new(upstream: Arc<dyn StreamUpstream>) -> Self {
        Self {
            upstream,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            attempts: DEFAULT_CONNECT_ATTEMPTS,
            proxy_protocol: None,
        }
    }

    /// A backend over fixed addresses, picked in turn (for tests and examples).
    pub fn fixed(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self::new(Arc::new(FixedUpstream {
            addrs: addrs.into_iter().collect(),
            next: AtomicUsize::new(0),
        }))
    }

    /// How long establishing one backend connection may take.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many endpoints one connection tries before it is closed (at least 1).
    #[must_use]
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Writes a PROXY protocol header of `version` (the client's address, the address it
    /// connected to) before any byte of the connection; `None` (default) writes none.
    #[must_use]
    pub fn proxy_protocol(mut self, version: Option<ProxyVersion>) -> Self {
        self.proxy_protocol = version;
        self
    }

    /// An endpoint for a flow or connection `info` (UDP: no connect to try).
    pub(crate) fn pick_endpoint(&self, info: &ConnectionInfo) -> Option<Box<dyn StreamEndpoint>> {
        self.upstream.pick(info, &[])
    }

    /// Connects for the connection `info`: picks an endpoint, connects under the
    /// deadline, on failure reports it and tries another, up to the attempt bound; then
    /// writes the PROXY protocol header if configured.
    ///
    /// # Errors
    ///
    /// [`StreamError::NoEndpoint`] when nothing could be picked,
    /// [`StreamError::Connect`] with the last failure otherwise.
    pub async fn connect(
        &self,
        info: &ConnectionInfo,
    ) -> Result<(TcpStream, Box<dyn StreamEndpoint>), StreamError> {
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut last = None;
        for _ in 0..self.attempts {
            let Some(mut endpoint) = self.upstream.pick(info, &tried) else {
                break;
            };
            let addr = endpoint.addr();
            let result =
                match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                    Ok(result) => result,
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect timed out after {:?}", self.connect_timeout),
                    )),
                };
            match result {
                Ok(mut tcp) => {
                    endpoint.connected();
                    let _ = tcp.set_nodelay(true);
                    if let Some(version) = self.proxy_protocol {
                        let header =
                            encode_proxy_header(version, info.remote_addr(), info.local_addr());
                        if let Err(error) = tcp.write_all(&header).await {
                            endpoint.closed(Some(&error));
                            return Err(StreamError::Connect {
                                addr,
                                source: error,
                            });
                        }
                    }
                    return Ok((tcp, endpoint));
                }
                Err(error) => {
                    tracing::debug!(%addr, %error, "stream backend connect failed");
                    endpoint.connect_failed(&error);
                    tried.push(addr);
                    last = Some((addr, error));
                }
            }
        }
        Err(match last {
            Some((addr, source)) => StreamError::Connect { addr, source },
            None => StreamError::NoEndpoint,
        })
    }
}

impl fmt::Debug for StreamBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamBackend")
            .field("connect_timeout", &self.connect_timeout)
            .field("attempts", &self.attempts)
            .field("proxy_protocol", &self.proxy_protocol)
            .finish_non_exhaustive()
    }
}

/// Fixed addresses in turn, skipping tried ones while others remain.
struct FixedUpstream {
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
}

struct FixedEndpoint(SocketAddr);

impl StreamUpstream for FixedUpstream {
    fn pick(&self, _: &ConnectionInfo, tried: &[SocketAddr]) -> Option<Box<dyn StreamEndpoint>> {
        let n = self.addrs.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let untried = (0..n)
            .map(|i| self.addrs[(start + i) % n])
            .find(|a| !tried.contains(a));
        let addr = untried.unwrap_or(self.addrs[start % n]);
        Some(Box::new(FixedEndpoint(addr)))
    }
}

impl StreamEndpoint for FixedEndpoint {
    fn addr(&self) -> SocketAddr {
        self.0
    }

    fn connect_failed(self: Box<Self>, _: &io::Error) {}

    fn closed(self: Box<Self>, _: Option<&io::Error>) {}
}
