//! Rate limits whose buckets live outside this process: [`SharedLimitStore`].

use std::fmt;
use std::sync::Arc;

use super::RateLimitConfig;
use crate::Backend;

/// A store of rate-limit buckets shared by every replica that uses it, for the limits
/// marked [`global`](RateLimitConfig::global) (the `gatekit-redis` crate's
/// `RedisStore` keeps them in Redis).
///
/// A [`PolicyState`](crate::route::PolicyState) built
/// [`with_shared_limits`](crate::route::PolicyState::with_shared_limits) asks its store
/// for one [`SharedLimiter`] per limit scope and configuration while route tables are
/// built, and keeps it across rebuilds like its local limiters; without a store, global
/// limits run on local limiters (each replica then allows the whole quota).
pub trait SharedLimitStore: Send + Sync + fmt::Debug {
    /// The limiter enforcing `config` at `scope` (a name stable across reloads and
    /// equal on every replica with the same configuration: the store keys its buckets
    /// by it, so replicas share them).
    fn limiter(&self, scope: &str, config: &RateLimitConfig) -> Arc<dyn SharedLimiter>;

    /// Where the buckets are, for logs and `/config` (a URL without credentials).
    fn describe(&self) -> String;
}

/// One rate limit enforced in a [`SharedLimitStore`].
pub trait SharedLimiter: Send + Sync + fmt::Debug {
    /// The service that decides each request in the store, then calls `inner` with
    /// the allowed ones (a refused one fails with
    /// [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited), which becomes a 429).
    fn layer(self: Arc<Self>, inner: Backend) -> Backend;

    /// Its counters, for metrics.
    fn stats(&self) -> SharedLimiterStats;

    /// Forgets what it keeps in this process for idle keys (a local fallback's full
    /// buckets); called with the local limiters' sweep.
    fn sweep_idle_keys(&self) {}
}

/// The counters of a [`SharedLimiter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedLimiterStats {
    /// Requests allowed (by the store, or by the fallback while it failed).
    pub allowed: u64,
    /// Requests refused.
    pub limited: u64,
    /// Decisions made without the store (it failed or did not answer in time).
    pub fallbacks: u64,
    /// The store failed the last time it was asked.
    pub degraded: bool,
}

impl SharedLimiterStats {
    /// Counters with these values.
    pub fn new(allowed: u64, limited: u64, fallbacks: u64, degraded: bool) -> Self {
        Self {
            allowed,
            limited,
            fallbacks,
            degraded,
        }
    }
}
