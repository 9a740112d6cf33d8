//! [`ConnectionLimit`], [`PerClientLimit`] and [`ConnectionObserver`]: how many
//! connections, how many from one client, and who hears of them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

// === impl ConnectionLimit ===

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

// === impl PerClientLimit ===

/// At most this many open connections from one client IP address, shared by every
/// [`Server`](super::Server) given a clone: a connection beyond it is closed at once,
/// before any byte is read or any TLS work done, and counted
/// ([`rejected`](Self::rejected), and [`ConnectionObserver::rejected`]). It keeps one
/// client from taking the whole [`ConnectionLimit`]. Cheap to clone; clones share the
/// counts.
///
/// Addresses are compared whole (an IPv4-mapped IPv6 address counts as its IPv4
/// address); clients behind one NAT or proxy share a budget, and an IPv6 client that
/// spreads over its prefix gets one per address.
///
/// # Memory
///
/// One map entry per client address with an open connection, removed when its last
/// connection closes: the map never holds more entries than there are open connections
/// (so the global [`ConnectionLimit`] bounds it too), and its table shrinks again after
/// a spike. The map is behind a mutex taken once when a connection is accepted and once
/// when it closes, never on the request path.
#[derive(Clone)]
pub struct PerClientLimit {
    inner: Arc<PerClient>,
}

struct PerClient {
    max: usize,
    open: parking_lot::Mutex<HashMap<IpAddr, usize>>,
    rejected: AtomicU64,
}

impl PerClientLimit {
    /// A limit of `max_per_ip` open connections per client address. `0` accepts none.
    pub fn new(max_per_ip: usize) -> Self {
        Self {
            inner: Arc::new(PerClient {
                max: max_per_ip,
                open: parking_lot::Mutex::new(HashMap::new()),
                rejected: AtomicU64::new(0),
            }),
        }
    }

    /// The limit per client address.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Connections open now from `ip`.
    pub fn active(&self, ip: IpAddr) -> usize {
        let ip = ip.to_canonical();
        self.inner.open.lock().get(&ip).copied().unwrap_or(0)
    }

    /// Client addresses with at least one open connection now (the map's size).
    pub fn clients(&self) -> usize {
        self.inner.open.lock().len()
    }

    /// Connections closed at once because their client was at the limit, since creation.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// A slot for one more connection from `ip`, or `None` (counted) at the limit.
    pub(super) fn try_acquire(&self, ip: IpAddr) -> Option<ClientSlot> {
        let ip = ip.to_canonical();
        let mut open = self.inner.open.lock();
        match open.entry(ip) {
            Entry::Occupied(mut entry) if *entry.get() < self.inner.max => *entry.get_mut() += 1,
            Entry::Vacant(entry) if self.inner.max > 0 => {
                entry.insert(1);
            }
            _ => {
                drop(open);
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        Some(ClientSlot {
            limit: Arc::clone(&self.inner),
            ip,
        })
    }
}

impl fmt::Debug for PerClientLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerClientLimit")
            .field("max", &self.inner.max)
            .field("clients", &self.clients())
            .field("rejected", &self.rejected())
            .finish()
    }
}

/// One open connection's place under a [`PerClientLimit`]; dropping it frees the place
/// and, with the client's last connection, its map entry.
pub(super) struct ClientSlot {
    limit: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock();
        if let Entry::Occupied(mut entry) = open.entry(self.ip) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
                // Give back the table a spike of clients grew.
                if open.capacity() > 64 && open.len() * 4 < open.capacity() {
                    let len = open.len();
                    open.shrink_to(len * 2);
                }
            }
        }
    }
}

// === ConnectionObserver ===

/// Hears of a listener's connections, for metrics: one call per event, on the accept
/// loop's task (`opened`, `rejected`) or the connection's (`closed`), so keep them cheap
/// (an atomic increment). Every method does nothing by default.
pub trait ConnectionObserver: Send + Sync + 'static {
    /// A connection was accepted within the limit; [`closed`](Self::closed) follows when
    /// it ends.
    fn opened(&self) {}

    /// An [`opened`](Self::opened) connection ended (or was dropped by a drain).
    fn closed(&self) {}

    /// A connection was closed at once because the [`ConnectionLimit`] or its client's
    /// [`PerClientLimit`] was reached.
    fn rejected(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_slots_count_per_canonical_address_and_free_their_entries() {
        let limit = PerClientLimit::new(1);
        let v4: IpAddr = [10, 0, 0, 1].into();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let slot = limit.try_acquire(v4).unwrap();
        // The IPv4-mapped form of the same address is the same client.
        assert!(limit.try_acquire(mapped).is_none());
        assert_eq!(limit.active(mapped), 1);
        drop(slot);
        assert_eq!(limit.clients(), 0);

        // A spike of clients grows the table; it shrinks again as they leave.
        let slots: Vec<_> = (0..1000u32)
            .map(|i| {
                limit
                    .try_acquire(std::net::Ipv4Addr::from(i).into())
                    .unwrap()
            })
            .collect();
        assert_eq!(limit.clients(), 1000);
        drop(slots);
        assert_eq!(limit.clients(), 0);
        assert!(limit.inner.open.lock().capacity() <= 128);
        assert!(PerClientLimit::new(0).try_acquire(v4).is_none());
    }
}
