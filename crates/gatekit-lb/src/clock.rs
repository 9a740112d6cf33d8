//! Nanoseconds since a process-wide origin, so per-endpoint timestamps fit in an
//! `AtomicU64`. Taken from `tokio::time::Instant`, so paused-time tests work.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// Nanoseconds from the origin to `t`; never 0 (0 means "never" in the atomics).
pub(crate) fn nanos(t: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(1)).unwrap_or(now)
    });
    u64::try_from(t.saturating_duration_since(origin).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}
