//! [`RedisStore`]: the Redis a gateway keeps its global rate limits in.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use gatekit_core::Backend;
use gatekit_core::ratelimit::{
    RateLimitConfig, SharedLimitStore, SharedLimiter, SharedLimiterStats,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{Error, Failover, GlobalRateLimit, RedisLimiter, Result};

/// One Redis server and how decisions treat it (timeout, fallback, probe interval):
/// a [`SharedLimitStore`] that hands out a [`RedisLimiter`] per limit, all on one
/// multiplexed connection.
///
/// Give it to a route table's policy state
/// (`PolicyState::with_shared_limits`) and the limits marked `global` are decided in
/// Redis: every replica using the same Redis and the same configuration takes from one
/// budget per key. Buckets are named by the limit's scope (the route rule and the
/// limit's index), which every replica derives alike from the same configuration.
#[derive(Clone)]
pub struct RedisStore {
    conns: Connections,
    url: String,
    failover: Failover,
}

impl RedisStore {
    /// A store in the Redis at `url` (`redis://[user:password@]host:port[/db]`),
    /// connected lazily on the first decision and again whenever the connection fails,
    /// with [`Failover::default`]. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when `url` is not a Redis URL.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_pool(url, 1)
    }

    /// [`open`](Self::open) with `connections` connections (at least 1), each
    /// multiplexed: decisions take them in turn, so one connection's task is not the
    /// only path to Redis when many decisions are in flight.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when `url` is not a Redis URL.
    pub fn open_pool(url: &str, connections: usize) -> Result<Self> {
        let first = connect(url)?;
        let mut conns = vec![first.clone()];
        for _ in 1..connections {
            conns.push(connect(url)?);
        }
        Ok(Self {
            conns: Connections::new(conns).unwrap_or_else(|| Connections::one(first)),
            url: redact(url),
            failover: Failover::default(),
        })
    }

    /// What decisions do when Redis is slow or failing (default: [`Failover::default`]).
    #[must_use]
    pub fn with_failover(mut self, failover: Failover) -> Self {
        self.failover = failover;
        self
    }

    /// The limiter enforcing `config` in buckets named `name`.
    pub fn limiter_named(&self, name: &str, config: RateLimitConfig) -> RedisLimiter {
        RedisLimiter::with_connections(config, self.conns.clone())
            .with_bucket_name(name)
            .with_failover(self.failover)
    }
}

impl SharedLimitStore for RedisStore {
    fn limiter(&self, scope: &str, config: &RateLimitConfig) -> Arc<dyn SharedLimiter> {
        Arc::new(self.limiter_named(scope, config.clone()))
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

impl SharedLimiter for RedisLimiter {
    fn layer(self: Arc<Self>, inner: Backend) -> Backend {
        Backend::new(GlobalRateLimit::new(inner, self))
    }

    fn stats(&self) -> SharedLimiterStats {
        SharedLimiterStats::new(
            self.allowed(),
            self.limited(),
            self.fallbacks(),
            self.is_degraded(),
        )
    }

    fn sweep_idle_keys(&self) {
        self.local().sweep();
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("connections", &self.conns.count())
            .field("failover", &self.failover)
            .finish_non_exhaustive()
    }
}

/// Multiplexed connections to one Redis, taken in turn.
#[derive(Clone)]
pub struct Connections {
    conns: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
}

impl Connections {
    /// One connection.
    pub fn one(conn: ConnectionManager) -> Self {
        Self {
            conns: Arc::new([conn]),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes `conns` in turn; `None` when the list is empty.
    pub fn new(conns: Vec<ConnectionManager>) -> Option<Self> {
        (!conns.is_empty()).then(|| Self {
            conns: conns.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next connection (a cheap clone of its handle).
    pub fn pick(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    /// How many connections there are (at least 1).
    pub fn count(&self) -> usize {
        self.conns.len()
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

/// A connection manager for `url`: lazy, reconnecting with a short backoff (a decision
/// waits at most its timeout anyway).
pub(crate) fn connect(url: &str) -> Result<ConnectionManager> {
    let client = redis::Client::open(url).map_err(Error::Redis)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client, config).map_err(Error::Redis)
}

/// Checks that `url` is a Redis URL this build can connect to, without connecting.
///
/// # Errors
///
/// [`Error::Redis`] naming what is wrong.
pub fn check_url(url: &str) -> Result<()> {
    redis::Client::open(url).map(drop).map_err(Error::Redis)
}

/// `url` without its password, for logs and `/config`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("redis://app:s3cret@redis.svc:6379/2"),
            "redis://app:***@redis.svc:6379/2"
        );
        assert_eq!(
            redact("rediss://:s3cret@redis.svc"),
            "rediss://:***@redis.svc"
        );
    }
}
