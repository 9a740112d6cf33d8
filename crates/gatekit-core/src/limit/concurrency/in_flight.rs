//! [`InFlightLimit`]: the shared count of a rule's requests in flight, and the
//! [`Slot`] each admitted request holds.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many requests may be in flight at once, and how many are: the state a
/// [`ConcurrencyLimit`](super::ConcurrencyLimit) admits requests against.
///
/// Kept in an `Arc` by whoever owns the limit (the gateway, per route rule, across
/// reloads), and shared by every stack built with it: requests admitted by the stack of
/// an older route table still count against the limit of the newer one. Lock-free: one
/// compare-and-swap to admit, one decrement to release.
pub struct InFlightLimit {
    max: AtomicUsize,
    in_flight: AtomicUsize,
    rejected: AtomicU64,
}

impl InFlightLimit {
    /// A limit of `max` requests in flight. `0` admits nothing: every request is
    /// rejected.
    pub const fn new(max: usize) -> Self {
        Self {
            max: AtomicUsize::new(max),
            in_flight: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Changes the limit (a reload that keeps this state with a new value). Requests
    /// in flight stay admitted; lowering the limit below them only rejects new ones
    /// until enough have ended.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Requests admitted and not yet finished (their response body has not ended).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests rejected because the limit was reached, since creation.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Admits one more request, or counts a rejection and returns `None` at the limit.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let max = self.max();
        // Relaxed is enough: the count guards no other memory, and read-modify-write
        // operations on one atomic are totally ordered, so two requests can never both
        // take the last slot.
        let admitted = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Some(Slot {
                limit: Arc::clone(self),
            })
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl fmt::Debug for InFlightLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightLimit")
            .field("max", &self.max())
            .field("in_flight", &self.in_flight())
            .field("rejected", &self.rejected())
            .finish()
    }
}

/// One admitted request's (or stream connection's) place under an [`InFlightLimit`];
/// dropping it frees the place.
pub(crate) struct Slot {
    limit: Arc<InFlightLimit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limit.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}
