//! [`RetryStats`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a [`RetryLayer`](super::RetryLayer), shared by every service it makes
/// (relaxed atomics; read them for metrics).
#[derive(Debug, Default)]
pub struct RetryStats {
    attempts: AtomicU64,
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
    replay_overflow: AtomicU64,
    unreturned: AtomicU64,
}

impl RetryStats {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attempts sent to the inner service: first attempts and retries.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Retries sent (attempts after the first).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Retriable failures returned as they were because the retry budget was spent.
    pub fn budget_exhausted(&self) -> u64 {
        self.budget_exhausted.load(Ordering::Relaxed)
    }

    /// Retriable failures returned as they were because the request body could not be
    /// replayed: it outgrew the policy's `max_replay_body` (or failed) after part of it
    /// was sent.
    pub fn replay_overflow(&self) -> u64 {
        self.replay_overflow.load(Ordering::Relaxed)
    }

    /// Retriable failures returned as they were because their error did not hand the
    /// request back: under a policy that retries only requests that were never sent,
    /// the layer keeps no copy of the request (see the [module docs](super#requests-that-never-left-no-copy)),
    /// so a retry-safe error without the request in it cannot be retried.
    pub fn unreturned(&self) -> u64 {
        self.unreturned.load(Ordering::Relaxed)
    }

    pub(super) fn attempt(&self, retry: bool) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if retry {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn budget_exhausted_once(&self) {
        self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn replay_overflow_once(&self) {
        self.replay_overflow.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn unreturned_once(&self) {
        self.unreturned.fetch_add(1, Ordering::Relaxed);
    }
}
