//! The health of one endpoint, shared lock-free between the balancer (which reads it on
//! every pick), the active health checker and the outlier detector (which write it).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tokio::time::Instant;

/// Health of one endpoint: the active checker's verdict and the passive ejection
/// deadline. All atomics; reading it is two loads.
///
/// Time is kept as milliseconds since a process-wide origin taken from
/// `tokio::time::Instant` (so paused-time tests work): 0 means "not ejected".
#[derive(Debug)]
pub struct EndpointHealth {
    active_healthy: AtomicBool,
    ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
    // Passive outlier detection's consecutive-failure counters (see `crate::outlier`).
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_connect: AtomicU32,
}

/// What holds an endpoint's health: an [`EndpointHealth`] of its own, or an
/// upstream's per-endpoint state, which keeps it inline.
pub(crate) trait HoldsHealth: Send + Sync + 'static {
    fn health(&self) -> &EndpointHealth;
}

impl HoldsHealth for EndpointHealth {
    fn health(&self) -> &EndpointHealth {
        self
    }
}

/// A shared handle to one endpoint's [`EndpointHealth`] (it dereferences to it), as
/// an [`Upstream`](crate::Upstream) hands it to the health checker and the outlier
/// detector: the upstream keeps each endpoint's health inside the endpoint's state
/// (one allocation per endpoint instead of two), and this handle keeps that state
/// alive. [`SharedHealth::new`] (or `From<Arc<EndpointHealth>>`) makes one of its own.
/// Cloning is one atomic increment.
#[derive(Clone)]
pub struct SharedHealth(Arc<dyn HoldsHealth>);

impl SharedHealth {
    /// A healthy, never-ejected endpoint's health, of its own.
    pub fn new() -> Self {
        Self(Arc::new(EndpointHealth::new()))
    }

    pub(crate) fn of(holder: Arc<dyn HoldsHealth>) -> Self {
        Self(holder)
    }

    /// Whether both handles are of the same health.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&a.0), Arc::as_ptr(&b.0))
    }
}

impl Default for SharedHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for SharedHealth {
    type Target = EndpointHealth;

    fn deref(&self) -> &EndpointHealth {
        self.0.health()
    }
}

impl From<Arc<EndpointHealth>> for SharedHealth {
    fn from(health: Arc<EndpointHealth>) -> Self {
        Self(health)
    }
}

impl fmt::Debug for SharedHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl Default for EndpointHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl EndpointHealth {
    /// A healthy, never-ejected endpoint.
    pub fn new() -> Self {
        Self {
            active_healthy: AtomicBool::new(true),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            consecutive_connect: AtomicU32::new(0),
        }
    }

    /// Takes every value of `other` (an endpoint's state made anew keeps its health).
    pub(crate) fn copy_from(&self, other: &EndpointHealth) {
        let copy = |to: &AtomicU32, from: &AtomicU32| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        self.active_healthy.store(
            other.active_healthy.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.ejected_until_ms.store(
            other.ejected_until_ms.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        copy(&self.ejections, &other.ejections);
        copy(&self.consecutive_5xx, &other.consecutive_5xx);
        copy(&self.consecutive_gateway, &other.consecutive_gateway);
        copy(&self.consecutive_connect, &other.consecutive_connect);
    }

    /// Whether the endpoint may take requests at `now`: the active checker has not marked
    /// it unhealthy and it is not ejected.
    pub fn is_available(&self, now: Instant) -> bool {
        // Relaxed: a pick racing a verdict may see either state; both are acceptable.
        self.active_healthy.load(Ordering::Relaxed) && !self.is_ejected(now)
    }

    /// The active checker's verdict.
    pub fn is_active_healthy(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
    }

    /// Records the active checker's verdict; returns the previous one.
    pub fn set_active_healthy(&self, healthy: bool) -> bool {
        self.active_healthy.swap(healthy, Ordering::Relaxed)
    }

    /// Whether passive outlier detection has ejected the endpoint at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && millis_since_origin(now) < until
    }

    /// Ejects the endpoint until `until` and counts the ejection; returns how many times
    /// it has been ejected, this one included.
    pub fn eject_until(&self, until: Instant) -> u32 {
        self.ejected_until_ms
            .store(millis_since_origin(until).max(1), Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Ends an ejection early (or marks an expired one as over).
    pub fn clear_ejection(&self) {
        self.ejected_until_ms.store(0, Ordering::Relaxed);
    }

    /// How many times the endpoint has been ejected.
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Resets the ejection count (after a long enough healthy period).
    pub fn reset_ejections(&self) {
        self.ejections.store(0, Ordering::Relaxed);
    }

    /// When the current (or last, not yet noticed) ejection ends; `None` when the endpoint
    /// is not ejected or its expired ejection has been noticed.
    pub fn ejection_deadline(&self) -> Option<Instant> {
        match self.ejected_until_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(origin() + std::time::Duration::from_millis(ms)),
        }
    }

    /// Marks an expired ejection as over. Returns true for exactly one caller per
    /// ejection (compare-and-swap), so exactly one "returned" event is emitted.
    pub(crate) fn take_expired_ejection(&self, now: Instant) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until == 0 || millis_since_origin(now) < until {
            return false;
        }
        self.ejected_until_ms
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Consecutive 5xx outcomes seen by outlier detection since the last success.
    pub fn consecutive_5xx(&self) -> u32 {
        self.consecutive_5xx.load(Ordering::Relaxed)
    }

    /// Consecutive gateway errors (502/503/504, connect failures, timeouts, resets) seen
    /// by outlier detection since the last non-gateway outcome.
    pub fn consecutive_gateway_errors(&self) -> u32 {
        self.consecutive_gateway.load(Ordering::Relaxed)
    }

    /// Consecutive connect failures seen by outlier detection since the endpoint last
    /// answered (with any status).
    pub fn consecutive_connect_failures(&self) -> u32 {
        self.consecutive_connect.load(Ordering::Relaxed)
    }

    /// Counts one 5xx outcome; returns the new consecutive count.
    pub(crate) fn incr_5xx(&self) -> u32 {
        self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts one gateway error; returns the new consecutive count.
    pub(crate) fn incr_gateway(&self) -> u32 {
        self.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts one connect failure; returns the new consecutive count.
    pub(crate) fn incr_connect(&self) -> u32 {
        self.consecutive_connect.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Resets the consecutive connect-failure count (the endpoint answered).
    pub(crate) fn reset_connect(&self) {
        if self.consecutive_connect.load(Ordering::Relaxed) != 0 {
            self.consecutive_connect.store(0, Ordering::Relaxed);
        }
    }

    /// Resets the consecutive gateway-error count (a non-gateway 5xx).
    pub(crate) fn reset_gateway(&self) {
        // Load first: the common case is "already 0", and a load keeps the cache line
        // shared between cores instead of bouncing it on every response.
        if self.consecutive_gateway.load(Ordering::Relaxed) != 0 {
            self.consecutive_gateway.store(0, Ordering::Relaxed);
        }
    }

    /// Resets every outlier counter (a success, an ejection or a return).
    pub(crate) fn reset_outlier_counters(&self) {
        if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
            self.consecutive_5xx.store(0, Ordering::Relaxed);
        }
        self.reset_gateway();
        self.reset_connect();
    }
}

fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(|| Instant::now() - std::time::Duration::from_secs(1))
}

fn millis_since_origin(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(origin()).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn ejection_expires_and_active_verdict_is_separate() {
        let h = EndpointHealth::new();
        let now = Instant::now();
        assert!(h.is_available(now));
        assert_eq!(h.eject_until(now + Duration::from_secs(30)), 1);
        assert!(!h.is_available(now));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(h.is_available(Instant::now()));
        h.set_active_healthy(false);
        assert!(!h.is_available(Instant::now()));
    }
}
