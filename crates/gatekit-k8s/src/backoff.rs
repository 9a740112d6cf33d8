//! Exponential backoff between failed attempts against an API server: the step doubles
//! from `min` to `max` and is reset by the caller on progress. Watches use it jittered
//! (many replicas restarting together must not retry in lockstep); Lease renewals and
//! status writes use it exact (their tests run on paused time).

use std::time::Duration;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
    jitter: bool,
}

impl Backoff {
    /// Exact steps: `min`, `2·min`, … up to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max: max.max(min),
            jitter: false,
        }
    }

    /// Each step drawn between half of it and all of it.
    pub(crate) fn jittered(min: Duration, max: Duration) -> Self {
        Self {
            jitter: true,
            ..Self::new(min, max)
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        if self.jitter {
            step.mul_f64(0.5 + fastrand::f64() * 0.5)
        } else {
            step
        }
    }

    /// Back to the first step (after progress).
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_steps_double_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        assert_eq!(b.next_delay(), Duration::from_millis(350));
        assert_eq!(b.next_delay(), Duration::from_millis(350));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jittered_steps_stay_within_half_and_whole() {
        let mut b = Backoff::jittered(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            last = b.next_delay();
        }
        assert!(last >= Duration::from_millis(500) && last <= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
