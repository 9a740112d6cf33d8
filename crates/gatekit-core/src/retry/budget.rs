//! [`RetryBudget`]: retries as a bounded share of recent requests.

use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::RetryBudgetConfig;

/// Time buckets in a budget's window.
const BUCKETS: usize = 10;

/// A retry budget (see [`RetryBudgetConfig`]): every first attempt
/// [`deposit`](Self::deposit)s, every retry [`withdraw`](Self::withdraw)s, and a retry is
/// allowed while
///
/// ```text
/// retries in the window < max(percent% × requests in the window,
///                             min_retries_per_second × window seconds)
/// ```
///
/// The window is `interval` long, kept as a ring of 10 time buckets (so it slides in
/// tenths of `interval`): counts older than the window are forgotten. One budget is
/// shared (in an `Arc`) by every [`Retry`](super::Retry) that sends to the same backend,
/// whatever rule it serves; each operation is a short critical section over the ring
/// (two counters and at most ten bucket resets). The clock is tokio's, so tests can
/// pause it.
pub struct RetryBudget {
    config: RetryBudgetConfig,
    /// `percent` as a ratio (0 when negative or NaN).
    ratio: f64,
    /// Retries allowed in a window whatever the share.
    floor: f64,
    ring: Mutex<Ring>,
}

struct Ring {
    slots: [Slot; BUCKETS],
    /// The bucket now being filled.
    head: usize,
    /// When the head bucket started.
    head_start: Instant,
    width: Duration,
    /// Sums over the slots.
    requests: u64,
    retries: u64,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    requests: u64,
    retries: u64,
}

impl RetryBudget {
    /// A budget with `config`, empty. An `interval` under 10 ms is taken as 10 ms.
    pub fn new(config: RetryBudgetConfig) -> Self {
        let interval = config.interval.max(Duration::from_millis(10));
        Self {
            ratio: config.percent.max(0.0) / 100.0,
            floor: f64::from(config.min_retries_per_second) * interval.as_secs_f64(),
            config,
            ring: Mutex::new(Ring {
                slots: [Slot::default(); BUCKETS],
                head: 0,
                head_start: Instant::now(),
                width: interval / BUCKETS as u32,
                requests: 0,
                retries: 0,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RetryBudgetConfig {
        &self.config
    }

    /// Counts a request (a first attempt).
    pub fn deposit(&self) {
        let mut ring = self.ring.lock();
        ring.advance(Instant::now());
        let head = ring.head;
        ring.slots[head].requests += 1;
        ring.requests += 1;
    }

    /// Asks for one retry: `true` (and the retry is counted) when the budget allows it.
    pub fn withdraw(&self) -> bool {
        let mut ring = self.ring.lock();
        ring.advance(Instant::now());
        let allowed = (ring.retries as f64) < (ring.requests as f64 * self.ratio).max(self.floor);
        if allowed {
            let head = ring.head;
            ring.slots[head].retries += 1;
            ring.retries += 1;
        }
        allowed
    }

    /// (requests, retries) in the window now.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (u64, u64) {
        let mut ring = self.ring.lock();
        ring.advance(Instant::now());
        (ring.requests, ring.retries)
    }
}

impl Ring {
    /// Moves the head to the bucket of `now`, forgetting the buckets it passes.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.head_start);
        if elapsed < self.width {
            return;
        }
        let steps = elapsed.as_nanos() / self.width.as_nanos();
        for _ in 0..steps.min(BUCKETS as u128) {
            self.head = (self.head + 1) % BUCKETS;
            let old = std::mem::take(&mut self.slots[self.head]);
            self.requests -= old.requests;
            self.retries -= old.retries;
        }
        // The start of the bucket `now` falls in.
        let into = elapsed.as_nanos() % self.width.as_nanos();
        self.head_start = now - Duration::from_nanos(into as u64);
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring.lock();
        f.debug_struct("RetryBudget")
            .field("config", &self.config)
            .field("requests", &ring.requests)
            .field("retries", &ring.retries)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(percent: f64, min: u32, interval: Duration) -> RetryBudgetConfig {
        RetryBudgetConfig {
            percent,
            min_retries_per_second: min,
            interval,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_requests_in_the_window() {
        let budget = RetryBudget::new(config(20.0, 0, Duration::from_secs(10)));
        assert!(!budget.withdraw());
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        assert_eq!(budget.counts(), (10, 2));

        // Half the window later, the old counts still weigh.
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..5 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        assert_eq!(budget.counts(), (15, 3));

        // Past the first requests' window: only the later ones count.
        tokio::time::advance(Duration::from_millis(5500)).await;
        assert_eq!(budget.counts(), (5, 1));
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(budget.counts(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_minimum_rate_holds_without_requests() {
        let budget = RetryBudget::new(config(0.0, 2, Duration::from_secs(5)));
        for _ in 0..10 {
            assert!(budget.withdraw());
        }
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(budget.withdraw());
    }
}
