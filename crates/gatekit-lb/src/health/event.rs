//! Observable health: state-change events and point-in-time snapshots.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

/// Capacity of each event channel. A receiver that falls further behind gets
/// `RecvError::Lagged` and misses the oldest events; snapshots stay exact. tokio
/// allocates every slot up front (~90 bytes each), when the first receiver subscribes.
const EVENT_CAPACITY: usize = 64;

/// Where a [`HealthChecker`](super::HealthChecker)'s or an
/// [`OutlierDetector`](crate::outlier::OutlierDetector)'s [`HealthEvent`]s go: to a
/// callback, if it was made [`with_callback`](Self::with_callback), and to the
/// receivers of [`subscribe`](Self::subscribe). Cheap to clone; clones are one sink
/// (give the same one to a checker and a detector for one stream of every change).
///
/// Nothing is allocated for subscribers until the first one subscribes; events sent
/// before are not kept (a late subscriber reads the current state from the
/// endpoints' health or a snapshot, and receives the changes from then on).
#[derive(Clone)]
pub struct HealthEvents {
    inner: Arc<EventsInner<Callback>>,
}

/// What a [`HealthEvents`] calls with each event.
type Callback = dyn Fn(&HealthEvent) + Send + Sync;

/// The sink, with its callback inline (one allocation for both).
struct EventsInner<F: ?Sized> {
    channel: OnceLock<broadcast::Sender<HealthEvent>>,
    /// Whether `callback` is the caller's (not the no-op of [`HealthEvents::new`]).
    has_callback: bool,
    /// Set by [`HealthEvents::close_callback`].
    closed: AtomicBool,
    callback: F,
}

impl Default for HealthEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthEvents {
    /// A sink with no callback: events reach subscribers only.
    pub fn new() -> Self {
        Self::build(false, |_: &HealthEvent| {})
    }

    /// A sink that calls `callback` with every event, on the thread that sends it (a
    /// checker's task, or the request that made a detector eject), before any
    /// subscriber gets it. Keep it short; it must not block.
    pub fn with_callback(callback: impl Fn(&HealthEvent) + Send + Sync + 'static) -> Self {
        Self::build(true, callback)
    }

    fn build(has_callback: bool, callback: impl Fn(&HealthEvent) + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(EventsInner {
                channel: OnceLock::new(),
                has_callback,
                closed: AtomicBool::new(false),
                callback,
            }),
        }
    }

    /// Stops calling the callback from now on (subscribers still get every event): for
    /// a callback whose owner is gone while a checker or a detector holding the sink
    /// may still send (an event racing this call may still reach it).
    pub fn close_callback(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.inner
            .channel
            .get_or_init(|| broadcast::channel(EVENT_CAPACITY).0)
            .subscribe()
    }

    /// Sends `event` to the callback and the subscribers.
    pub(crate) fn send(&self, event: HealthEvent) {
        if self.inner.has_callback && !self.inner.closed.load(Ordering::Relaxed) {
            (self.inner.callback)(&event);
        }
        if let Some(channel) = self.inner.channel.get() {
            // No receiver left is not an error: nobody listens.
            let _ = channel.send(event);
        }
    }
}

impl fmt::Debug for HealthEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthEvents")
            .field("callback", &self.inner.has_callback)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .field("subscribed", &self.inner.channel.get().is_some())
            .finish()
    }
}

/// One change of an endpoint's health, sent to a [`HealthEvents`] sink (for logs and
/// metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    addr: SocketAddr,
    kind: HealthEventKind,
    reason: Option<Arc<str>>,
}

impl HealthEvent {
    pub(crate) fn new(addr: SocketAddr, kind: HealthEventKind, reason: Option<Arc<str>>) -> Self {
        Self { addr, kind, reason }
    }

    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What changed.
    pub fn kind(&self) -> HealthEventKind {
        self.kind
    }

    /// Why, when known: the last check error for
    /// [`BecameUnhealthy`](HealthEventKind::BecameUnhealthy), the detector that fired for
    /// [`Ejected`](HealthEventKind::Ejected).
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// What a [`HealthEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthEventKind {
    /// Active checks passed the healthy threshold: the endpoint takes traffic again.
    BecameHealthy,
    /// Active checks failed the unhealthy threshold: the endpoint leaves the set.
    BecameUnhealthy,
    /// Outlier detection ejected the endpoint.
    Ejected,
    /// The endpoint's ejection ended.
    Returned,
}

/// The health of one endpoint at one moment, as [`HealthChecker::snapshot`] and
/// [`OutlierDetector::snapshot`] report it (for an admin endpoint or a metrics scrape).
///
/// [`HealthChecker::snapshot`]: super::HealthChecker::snapshot
/// [`OutlierDetector::snapshot`]: crate::outlier::OutlierDetector::snapshot
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointHealthSnapshot {
    /// The endpoint's address.
    pub addr: SocketAddr,
    /// The active checker's verdict.
    pub active_healthy: bool,
    /// Whether outlier detection has it ejected now.
    pub ejected: bool,
    /// How many times it has been ejected (the ejection-time multiplier).
    pub ejections: u32,
    /// Consecutive failed active checks (0 without an active checker).
    pub consecutive_failures: u32,
    /// Consecutive passed active checks (0 without an active checker).
    pub consecutive_successes: u32,
    /// Consecutive 5xx outcomes seen by outlier detection.
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors seen by outlier detection.
    pub consecutive_gateway_errors: u32,
    /// Consecutive connect failures seen by outlier detection.
    pub consecutive_connect_failures: u32,
    /// The last active check error, if any check ever failed.
    pub last_error: Option<Arc<str>>,
}

impl EndpointHealthSnapshot {
    pub(crate) fn of(
        addr: SocketAddr,
        health: &crate::EndpointHealth,
        now: tokio::time::Instant,
    ) -> Self {
        Self {
            addr,
            active_healthy: health.is_active_healthy(),
            ejected: health.is_ejected(now),
            ejections: health.ejections(),
            consecutive_failures: 0,
            consecutive_successes: 0,
            consecutive_5xx: health.consecutive_5xx(),
            consecutive_gateway_errors: health.consecutive_gateway_errors(),
            consecutive_connect_failures: health.consecutive_connect_failures(),
            last_error: None,
        }
    }
}
