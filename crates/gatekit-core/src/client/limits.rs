//! Per-upstream pool limits: Envoy's connection thresholds (`max_connections`,
//! `max_requests_per_connection`), enforced where connections are opened and returned,
//! and the upstream's own connect and idle timeouts.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::HeaderValue;

use super::pool::EndpointPool;
use crate::Error;
use crate::breaker::{CircuitBreakerConfig, Threshold, header_value, open_error};

/// Limits on the connections of one upstream's endpoint clients, given to
/// [`Client::endpoint_with`](super::Client::endpoint_with). `Default`: no limits (what
/// [`Client::endpoint`](super::Client::endpoint) uses).
///
/// Cheap to clone: the [`ConnectionCap`] inside is shared, so clones given to every
/// endpoint client of an upstream count against one cap.
#[derive(Clone, Debug, Default)]
pub struct PoolLimits {
    max_connections: Option<ConnectionCap>,
    max_requests_per_connection: Option<NonZeroU32>,
    connect_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
}

impl PoolLimits {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection thresholds of a circuit breaker's `config`, for the upstream
    /// called `name`: a new [`ConnectionCap`] when `max_connections` is set, and
    /// `max_requests_per_connection` (0 meaning none, as in Envoy). Build it once per
    /// upstream and clone it into each of its endpoint clients.
    pub fn from_config(name: impl Into<Arc<str>>, config: &CircuitBreakerConfig) -> Self {
        Self {
            max_connections: config
                .max_connections
                .map(|max| ConnectionCap::new(name, max)),
            max_requests_per_connection: config
                .max_requests_per_connection
                .and_then(NonZeroU32::new),
            connect_timeout: None,
            idle_timeout: None,
        }
    }

    /// This upstream's connect timeout (TCP connect plus TLS handshake) instead of the
    /// client's [`ClientConfig::connect_timeout`](super::ClientConfig::connect_timeout)
    /// (Envoy Gateway's `timeout.tcp.connectTimeout`).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// This upstream's idle timeout (an idle pooled connection is closed after it)
    /// instead of the client's
    /// [`ClientConfig::pool_idle_timeout`](super::ClientConfig::pool_idle_timeout)
    /// (Envoy Gateway's `timeout.http.connectionIdleTimeout`).
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The connect timeout, when this upstream has its own.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// The idle timeout, when this upstream has its own.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The client configuration with this upstream's own timeouts, if it has any.
    pub(super) fn configure(&self, config: &super::ClientConfig) -> Option<super::ClientConfig> {
        if self.connect_timeout.is_none() && self.idle_timeout.is_none() {
            return None;
        }
        let mut config = config.clone();
        if let Some(t) = self.connect_timeout {
            config = config.connect_timeout(t);
        }
        if let Some(t) = self.idle_timeout {
            config = config.pool_idle_timeout(t);
        }
        Some(config)
    }

    /// Counts every connection against `cap` (Envoy's `max_connections`): at the cap,
    /// a request that finds no usable idle connection fails at once.
    #[must_use]
    pub fn with_max_connections(mut self, cap: ConnectionCap) -> Self {
        self.max_connections = Some(cap);
        self
    }

    /// Retires a connection after it has served `max` requests (Envoy's
    /// `max_requests_per_connection`): an HTTP/1.1 connection is closed instead of
    /// going back to the pool, an HTTP/2 connection takes no new streams (it closes
    /// once its streams are done).
    #[must_use]
    pub fn with_max_requests_per_connection(mut self, max: NonZeroU32) -> Self {
        self.max_requests_per_connection = Some(max);
        self
    }

    /// The connection cap, if any.
    pub fn max_connections(&self) -> Option<&ConnectionCap> {
        self.max_connections.as_ref()
    }

    /// The requests a connection serves before it is retired, if limited.
    pub fn max_requests_per_connection(&self) -> Option<NonZeroU32> {
        self.max_requests_per_connection
    }

    /// Whether a connection that has served `served` requests is done.
    pub(super) fn retires_after(&self, served: u32) -> bool {
        self.max_requests_per_connection
            .is_some_and(|max| served >= max.get())
    }

    /// Identifies the limits for the client's pool registry: endpoint clients share a
    /// pool only when they share these limits.
    pub(super) fn key(&self) -> LimitsKey {
        (
            self.max_connections
                .as_ref()
                .map_or(0, |cap| Arc::as_ptr(&cap.inner) as usize),
            self.max_requests_per_connection.map_or(0, NonZeroU32::get),
            self.connect_timeout,
            self.idle_timeout,
        )
    }

    /// A slot for one more connection: always given without a cap.
    pub(super) fn connection_slot(&self) -> Result<ConnSlot, Error> {
        match &self.max_connections {
            None => Ok(ConnSlot(None)),
            Some(cap) => cap.acquire(),
        }
    }
}

/// What tells pools with different limits apart in the client's registry.
pub(super) type LimitsKey = (usize, u32, Option<Duration>, Option<Duration>);

// === impl ConnectionCap ===

/// The most connections one upstream may have open, across all its endpoints (Envoy's
/// `max_connections`).
///
/// Shared by cloning: every endpoint client built with (a clone of) the same cap counts
/// against it. A connection counts from the moment it is being opened until it is
/// closed, whatever closes it: the gateway (idle timeout, a full idle pool, a response
/// dropped early, an error, retirement after `max_requests_per_connection`) or the
/// upstream. HTTP/1.1 connections of gatekit's own codec give their slot back the
/// moment they are dropped; connections driven by hyper (TLS, HTTP/2, upgrades and
/// unusual request framing) when their connection task ends; an upgraded connection
/// (WebSocket) when both directions are closed.
///
/// At the cap, a request that needs a new connection first closes the oldest idle
/// connection of the upstream (any endpoint): an idle connection is worth less than a
/// request, and otherwise idle connections to one endpoint could keep another from
/// connecting until they time out. If none is idle, or the one closed is hyper's (its
/// slot frees when its task notices, a moment later), the request fails at once with
/// [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen), threshold
/// `max-connections`. That error is marked not retry-safe although nothing was sent, so
/// a retry layer does not send it straight back into the same cap.
#[derive(Clone)]
pub struct ConnectionCap {
    inner: Arc<CapInner>,
}

pub(crate) struct CapInner {
    name: Arc<str>,
    header: HeaderValue,
    max: AtomicU32,
    open: AtomicU32,
    rejected: AtomicU64,
    /// The pools counting against the cap, to find idle connections to close.
    pools: parking_lot::Mutex<Vec<Weak<EndpointPool>>>,
}

impl ConnectionCap {
    /// A cap of `max` connections, called `name` in the `x-gatekit-breaker` header of
    /// refused requests.
    pub fn new(name: impl Into<Arc<str>>, max: u32) -> Self {
        let name = name.into();
        Self {
            inner: Arc::new(CapInner {
                header: header_value(&name),
                name,
                max: AtomicU32::new(max),
                open: AtomicU32::new(0),
                rejected: AtomicU64::new(0),
                pools: parking_lot::Mutex::new(Vec::new()),
            }),
        }
    }

    /// The cap's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The most connections allowed.
    pub fn max(&self) -> u32 {
        self.inner.max.load(Ordering::Relaxed)
    }

    /// Changes the cap in place (a reload). Lowering it closes nothing: new connections
    /// wait for the count to fall below it.
    pub fn set_max(&self, max: u32) {
        self.inner.max.store(max, Ordering::Relaxed);
    }

    /// Connections open (or being opened) now.
    pub fn open(&self) -> u32 {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Requests refused at the cap so far.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// Whether the cap is reached now (Envoy's `cx_open` gauge).
    pub fn is_open(&self) -> bool {
        self.open() >= self.max()
    }

    /// Counts `pool` against the cap.
    pub(super) fn register(&self, pool: &Arc<EndpointPool>) {
        let mut pools = self.inner.pools.lock();
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    /// A slot for one more connection, closing an idle one to make room if needed.
    fn acquire(&self) -> Result<ConnSlot, Error> {
        if let Some(slot) = self.inner.try_take() {
            return Ok(slot);
        }
        if self.evict_idle()
            && let Some(slot) = self.inner.try_take()
        {
            return Ok(slot);
        }
        self.inner.rejected.fetch_add(1, Ordering::Relaxed);
        Err(open_error(&self.inner.header, Threshold::MaxConnections))
    }

    /// Closes the oldest idle connection of the upstream, one of gatekit's own codec
    /// (its slot frees now) if any, else one of hyper's. Whether a slot freed now.
    fn evict_idle(&self) -> bool {
        let pools: Vec<Arc<EndpointPool>> = self
            .inner
            .pools
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        if pools.iter().any(|pool| pool.evict_idle(true)) {
            return true;
        }
        for pool in &pools {
            if pool.evict_idle(false) {
                break;
            }
        }
        false
    }
}

impl CapInner {
    fn try_take(self: &Arc<Self>) -> Option<ConnSlot> {
        let max = self.max.load(Ordering::Relaxed);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnSlot(Some(self.clone())))
    }
}

impl fmt::Debug for ConnectionCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionCap")
            .field("name", &self.inner.name)
            .field("max", &self.max())
            .field("open", &self.open())
            .finish()
    }
}

/// One connection's place under a [`ConnectionCap`] (or nothing, without one): given
/// back when dropped, so whatever owns the connection (its codec state, its hyper task)
/// owns the slot too.
pub(crate) struct ConnSlot(Option<Arc<CapInner>>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Some(cap) = &self.0 {
            cap.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnSlot").field(&self.0.is_some()).finish()
    }
}
