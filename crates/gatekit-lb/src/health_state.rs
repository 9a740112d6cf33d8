//! The health of one endpoint, shared lock-free between the balancer (which reads it on
//! every pick), the active health checker and the outlier detector (which write it).

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
        }
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
}

fn millis_since_origin(t: Instant) -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| Instant::now() - std::time::Duration::from_secs(1));
    u64::try_from(t.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX)
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
