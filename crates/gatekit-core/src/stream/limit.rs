//! [`OpenCount`]: the connections (UDP: flows) open through one stream route, checked
//! against the route's `max_connections` when one starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Open connections of one route. Shared by every table that serves the route (a
/// reload hands the count on by route id), so connections opened under an older table
/// still count.
#[derive(Debug, Default)]
pub(crate) struct OpenCount {
    open: AtomicU32,
}

impl OpenCount {
    /// Connections open now.
    pub(crate) fn open(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// A place for one more connection when fewer than `max` are open (`None`: no
    /// limit, always given).
    pub(crate) fn try_acquire(self: &Arc<Self>, max: Option<u32>) -> Option<OpenSlot> {
        // Relaxed: the count guards nothing but itself.
        let taken = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                max.is_none_or(|max| n < max).then(|| n.saturating_add(1))
            })
            .is_ok();
        taken.then(|| OpenSlot(self.clone()))
    }
}

/// One open connection's place in an [`OpenCount`]; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct OpenSlot(Arc<OpenCount>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_up_to_the_limit_and_free_on_drop() {
        let count = Arc::new(OpenCount::default());
        let a = count.try_acquire(Some(2)).unwrap();
        let _b = count.try_acquire(Some(2)).unwrap();
        assert!(count.try_acquire(Some(2)).is_none());
        assert_eq!(count.open(), 2);
        drop(a);
        assert!(count.try_acquire(Some(2)).is_some());
        assert!(count.try_acquire(Some(0)).is_none());
        let unlimited: Vec<_> = (0..5).map(|_| count.try_acquire(None).unwrap()).collect();
        assert_eq!(count.open(), 6);
        drop(unlimited);
        assert_eq!(count.open(), 1);
    }
}
