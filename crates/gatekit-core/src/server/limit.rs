//! [`ConnectionLimit`] and [`ConnectionObserver`]: how many connections, and who hears
//! of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most this many open connections, shared by every [`Server`](super::Server) given
/// a clone: a connection accepted beyond it is closed at once, before any byte is read
/// or any TLS work done, and counted ([`rejected`](Self::rejected), and
/// [`ConnectionObserver::rejected`]). Cheap to clone; clones share the count.
#[derive(Clone, Debug)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    rejected: Arc<AtomicU64>,
}

impl ConnectionLimit {
    /// A limit of `max` open connections (capped at tokio's largest semaphore,
    /// about 2 × 10⁹).
    pub fn new(max: usize) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            rejected: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open under this limit now.
    pub fn active(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }

    /// Connections closed at once because the limit was reached, since creation.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// A slot for one more connection, or `None` (counted) at the limit.
    pub(super) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        permit
    }
}

/// Hears of a listener's connections, for metrics: one call per event, on the accept
/// loop's task (`opened`, `rejected`) or the connection's (`closed`), so keep them cheap
/// (an atomic increment). Every method does nothing by default.
pub trait ConnectionObserver: Send + Sync + 'static {
    /// A connection was accepted within the limit; [`closed`](Self::closed) follows when
    /// it ends.
    fn opened(&self) {}

    /// An [`opened`](Self::opened) connection ended (or was dropped by a drain).
    fn closed(&self) {}

    /// A connection was closed at once because the [`ConnectionLimit`] was reached.
    fn rejected(&self) {}
}
