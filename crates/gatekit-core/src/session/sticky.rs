//! [`Sticky`]: the request extension between a session layer and the choices below it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What a [`Session`](super::Session) asks of the choices below it, and what they
/// report back: the endpoint (by [`endpoint_key`](super::endpoint_key)) and backendRef
/// index the session is pinned to, if any, and the ones actually chosen.
///
/// [`Weighted`](crate::weighted::Weighted) takes the pinned backendRef while it exists and
/// reports its choice; a balancer takes the pinned endpoint while it is usable and
/// reports its pick (the last attempt's, when a request is retried). Clones share the
/// reports, so every attempt of a retried request reports into the same extension.
#[derive(Clone, Debug)]
pub struct Sticky(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    endpoint: Option<u64>,
    backend: Option<usize>,
    /// 0: nothing picked.
    served_endpoint: AtomicU64,
    /// `usize::MAX`: nothing chosen.
    served_backend: AtomicUsize,
}

impl Sticky {
    /// A request pinned to `endpoint` (a key from [`endpoint_key`](super::endpoint_key))
    /// and backendRef index `backend`; `None`s for a new session.
    pub fn new(endpoint: Option<u64>, backend: Option<usize>) -> Self {
        Self(Arc::new(Inner {
            endpoint,
            backend,
            served_endpoint: AtomicU64::new(0),
            served_backend: AtomicUsize::new(usize::MAX),
        }))
    }

    /// The endpoint key the session is pinned to.
    pub fn pinned_endpoint(&self) -> Option<u64> {
        self.0.endpoint
    }

    /// The backendRef index the session is pinned to.
    pub fn pinned_backend(&self) -> Option<usize> {
        self.0.backend
    }

    /// Reports the endpoint picked (its key).
    pub fn set_served_endpoint(&self, key: u64) {
        // Relaxed: read after the response future completed, which orders it.
        self.0.served_endpoint.store(key, Ordering::Relaxed);
    }

    /// Reports the backendRef index chosen.
    pub fn set_served_backend(&self, index: usize) {
        self.0.served_backend.store(index, Ordering::Relaxed);
    }

    /// The endpoint picked last, if any.
    pub fn served_endpoint(&self) -> Option<u64> {
        Some(self.0.served_endpoint.load(Ordering::Relaxed)).filter(|k| *k != 0)
    }

    /// The backendRef index chosen, if any.
    pub fn served_backend(&self) -> Option<usize> {
        Some(self.0.served_backend.load(Ordering::Relaxed)).filter(|i| *i != usize::MAX)
    }
}
