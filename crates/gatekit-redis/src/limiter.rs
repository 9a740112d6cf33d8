//! [`RedisLimiter`]: one rate limit whose buckets live in Redis.
//!
//! # One round trip per decision
//!
//! A decision is one `EVALSHA` of a Lua script (sent again with `SCRIPT LOAD` only after
//! Redis answers `NOSCRIPT`, after a restart) that reads the bucket's theoretical arrival
//! time, applies gatekit-core's GCRA (see
//! [`gatekit_core::ratelimit`](gatekit_core::ratelimit#the-algorithm-gcra)) on Redis's
//! clock (`TIME`) and writes the new time back with an expiry of the time until the
//! bucket is full again. Redis runs a script atomically, so replicas racing on one key
//! take from it one at a time: `N` requests per interval in total, whatever the number
//! of replicas. All decisions share a few multiplexed connections (one by default; a
//! [`RedisStore`](crate::RedisStore) opens as many as asked) that reconnect by themselves
//! (redis-rs's `ConnectionManager`).
//!
//! # Keys
//!
//! A bucket is the Redis key `gatekit:rl:<limit name>:` (or the name given by
//! [`with_bucket_name`](RedisLimiter::with_bucket_name): a
//! [`RedisStore`](crate::RedisStore) gives the limit's scope) followed by `k` and the
//! request's key bytes ([`RateLimiter::key_bytes`]: the key parts' values in a fixed
//! encoding, so the same client is the same key on every replica), by `all` for a limit
//! without key parts, or by `default` for the shared bucket of requests without a key.
//! The bytes are the values themselves (an API key used as a key part is stored in
//! Redis as it is).
//!
//! # When Redis does not answer
//!
//! Each decision waits for Redis at most [`timeout`](RedisLimiter::with_timeout)
//! (20 ms by default). On a timeout or an error, the request is decided by the
//! [`Fallback`]: allowed without a decision ([`Fallback::FailOpen`]), or decided by a
//! local [`RateLimiter`] with the same configuration ([`Fallback::Local`]: each replica
//! then enforces the whole quota by itself, so the total can reach the quota times the
//! replicas). [`fallbacks`](RedisLimiter::fallbacks) counts the decisions made so;
//! the first failure after a success logs a warning, the first success after a failure
//! an info line (once per transition, never per request). While Redis is failing, one
//! request per [`probe interval`](RedisLimiter::with_probe_interval) asks it again and the
//! others go straight to the fallback, so an unreachable Redis adds its timeout to one
//! request per interval, not to every one.
//!
//! # Cost
//!
//! Measured by `cargo test -p gatekit-redis --test latency -- --nocapture` (debug build,
//! loopback, a shared two-core machine): one decision at a time, p50 65 µs, p99 126 µs;
//! 64 decisions in flight on the one connection, about 38,000 a second. Per request the
//! service allocates the Redis key and one boxed decision future.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use gatekit_core::ratelimit::{Decision, Key, RateLimitConfig, RateLimiter};
use http::Request;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::script::{self, Answer, Params};
use crate::store::Connections;
use crate::{Error, Result};

/// What a [`RedisLimiter`] does when Redis is slow or unreachable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// Allow the request (no `RateLimit` headers): availability over the limit.
    #[default]
    FailOpen,
    /// Decide on a local limiter with the same configuration, per replica.
    Local,
}

/// What decisions do about a slow or failing Redis: how long they wait, who decides
/// instead, and how often a failing Redis is asked again. `Default`: 20 ms,
/// [`Fallback::FailOpen`], 250 ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failover {
    /// How long a decision waits for Redis.
    pub timeout: Duration,
    /// Who decides when Redis did not answer in time or failed.
    pub fallback: Fallback,
    /// While Redis is failing, how often one decision asks it again (the others go
    /// straight to the fallback).
    pub probe_interval: Duration,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(20),
            fallback: Fallback::FailOpen,
            probe_interval: Duration::from_millis(250),
        }
    }
}

/// One rate limit kept in Redis and shared by every process that uses the same Redis
/// and limit name (see the [module docs](self)).
pub struct RedisLimiter {
    /// The local limiter: key derivation, headers, and the [`Fallback::Local`] decisions.
    local: RateLimiter,
    conns: Connections,
    script: redis::Script,
    keyed: Params,
    unkeyed: Params,
    /// `gatekit:rl:<name>:`.
    prefix: Box<[u8]>,
    failover: Failover,
    epoch: Instant,
    /// Redis failed last time it was asked.
    degraded: AtomicBool,
    /// While degraded: when (ns since `epoch`) Redis may be asked again.
    probe_at: AtomicU64,
    fallbacks: AtomicU64,
    allowed: AtomicU64,
    limited: AtomicU64,
}

/// A request's bucket in a [`RedisLimiter`]: the Redis key, and the local limiter's key
/// for the fallback. Built by [`RedisLimiter::key`] or [`RedisLimiter::key_from_bytes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalKey {
    redis: Vec<u8>,
    local: Key,
}

// === impl RedisLimiter ===

impl RedisLimiter {
    /// A limiter enforcing `config` in the Redis `conn` is connected to, with a 20 ms
    /// timeout, [`Fallback::FailOpen`] and a probe interval of 250 ms.
    pub fn new(config: RateLimitConfig, conn: ConnectionManager) -> Self {
        Self::with_connections(config, Connections::one(conn))
    }

    /// A limiter enforcing `config` over `conns` (taken in turn), with the defaults of
    /// [`new`](Self::new).
    pub fn with_connections(config: RateLimitConfig, conns: Connections) -> Self {
        let local = RateLimiter::new(config);
        let keyed = Params::new(local.config().quota);
        let unkeyed = match local.config().unkeyed {
            gatekit_core::ratelimit::Unkeyed::Shared(q) => Params::new(q),
            _ => keyed,
        };
        let prefix = prefix(local.name());
        Self {
            local,
            conns,
            script: script::server_clock(),
            keyed,
            unkeyed,
            prefix,
            failover: Failover::default(),
            epoch: Instant::now(),
            degraded: AtomicBool::new(false),
            probe_at: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            allowed: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        }
    }

    /// A limiter enforcing `config` in the Redis at `url` (`redis://host:port/db`),
    /// connected lazily on the first decision and reconnected whenever the connection
    /// fails. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when `url` is not a Redis URL.
    pub fn open(url: &str, config: RateLimitConfig) -> Result<Self> {
        Ok(Self::new(config, crate::store::connect(url)?))
    }

    /// Names the Redis buckets `gatekit:rl:<name>:…` instead of by the limit's name
    /// (a [`RedisStore`](crate::RedisStore) names them by the limit's scope, so two
    /// rules with one policy's limit keep apart buckets).
    #[must_use]
    pub fn with_bucket_name(mut self, name: &str) -> Self {
        self.prefix = prefix(name);
        self
    }

    /// How long a decision waits for Redis before falling back (default 20 ms).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.failover.timeout = timeout;
        self
    }

    /// What happens when Redis does not answer in time (default [`Fallback::FailOpen`]).
    #[must_use]
    pub fn with_fallback(mut self, fallback: Fallback) -> Self {
        self.failover.fallback = fallback;
        self
    }

    /// While Redis is failing, how often it is asked again (default 250 ms); requests
    /// in between go straight to the fallback.
    #[must_use]
    pub fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.failover.probe_interval = interval;
        self
    }

    /// Sets timeout, fallback and probe interval at once.
    #[must_use]
    pub fn with_failover(mut self, failover: Failover) -> Self {
        self.failover = failover;
        self
    }

    /// The local limiter with the same configuration: the [`Fallback::Local`] decisions,
    /// and the headers of every decision.
    pub fn local(&self) -> &RateLimiter {
        &self.local
    }

    /// The configuration this limiter enforces.
    pub fn config(&self) -> &RateLimitConfig {
        self.local.config()
    }

    /// Decisions made without Redis so far (by the fallback), for a metric.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Relaxed)
    }

    /// Requests allowed so far (by Redis or by the fallback).
    pub fn allowed(&self) -> u64 {
        self.allowed.load(Relaxed)
    }

    /// Requests refused so far.
    pub fn limited(&self) -> u64 {
        self.limited.load(Relaxed)
    }

    /// Whether the last time Redis was asked, it failed (decisions go to the fallback).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Relaxed)
    }

    /// The bucket `req` goes to, the same as gatekit-core's
    /// [`RateLimiter::key`]; `None` when the limit does not apply to it.
    pub fn key<B>(&self, req: &Request<B>) -> Option<GlobalKey> {
        // One buffer: the bucket name, `k`, then the key parts appended by the local
        // limiter (nothing appended for the two keyless buckets, named instead).
        let mut redis = Vec::with_capacity(self.prefix.len() + 64);
        redis.extend_from_slice(&self.prefix);
        redis.push(b'k');
        let local = self.local.append_key_bytes(req, &mut redis)?;
        let named: Option<&[u8]> = if local.is_unkeyed() {
            Some(b"default")
        } else if self.local.config().key.is_empty() {
            Some(b"all")
        } else {
            None
        };
        if let Some(name) = named {
            redis.truncate(self.prefix.len());
            redis.extend_from_slice(name);
        }
        Some(GlobalKey { redis, local })
    }

    /// A distinct key made of `bytes` (for callers that build keys themselves, and for
    /// tests), limited by the configured quota.
    pub fn key_from_bytes(&self, bytes: &[u8]) -> GlobalKey {
        let mut redis = Vec::with_capacity(self.prefix.len() + 1 + bytes.len());
        redis.extend_from_slice(&self.prefix);
        redis.push(b'b');
        redis.extend_from_slice(bytes);
        GlobalKey {
            redis,
            local: self.local.key_from_bytes(bytes),
        }
    }

    /// Decides about a request with `key`, counting it when allowed: in Redis, or by the
    /// [`Fallback`] when Redis fails or does not answer in time. `None` when the request
    /// was allowed without a decision ([`Fallback::FailOpen`]).
    pub async fn decide(&self, key: &GlobalKey) -> Option<Decision> {
        let decision = self.decide_uncounted(key).await;
        let counter = match &decision {
            Some(d) if !d.is_allowed() => &self.limited,
            _ => &self.allowed,
        };
        counter.fetch_add(1, Relaxed);
        decision
    }

    async fn decide_uncounted(&self, key: &GlobalKey) -> Option<Decision> {
        if self.is_degraded() && !self.probe_due() {
            return self.fall_back(key);
        }
        match self.decide_in_redis(key).await {
            Ok(d) => {
                if self.degraded.swap(false, Relaxed) {
                    tracing::info!(limit = %self.local.name(), "global rate limit: Redis answers again; decisions are shared again");
                }
                Some(d)
            }
            Err(error) => {
                self.schedule_probe();
                if !self.degraded.swap(true, Relaxed) {
                    tracing::warn!(
                        limit = %self.local.name(),
                        fallback = ?self.failover.fallback,
                        %error,
                        "global rate limit: Redis failed; falling back until it answers",
                    );
                }
                self.fall_back(key)
            }
        }
    }

    /// Decides about a request with `key` in Redis only, within the timeout, counting
    /// it when allowed.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when Redis does not answer within the timeout,
    /// [`Error::Redis`] when the command fails.
    pub async fn decide_in_redis(&self, key: &GlobalKey) -> Result<Decision> {
        let unkeyed = key.local.is_unkeyed();
        let params = if unkeyed { self.unkeyed } else { self.keyed };
        let mut conn = self.conns.pick();
        let mut call = self.script.key(&key.redis[..]);
        call.arg(params.emission).arg(params.tolerance);
        let reply: Vec<i64> =
            tokio::time::timeout(self.failover.timeout, call.invoke_async(&mut conn))
                .await
                .map_err(|_| Error::Timeout(self.failover.timeout))?
                .map_err(Error::Redis)?;
        let a = Answer::from_reply(&reply).ok_or(Error::Answer)?;
        Ok(self.decision(a, key))
    }

    /// The refusal of a request `decision` refused, with gatekit-core's headers.
    pub fn refusal(&self, decision: &Decision) -> gatekit_core::Error {
        self.local.refusal(decision)
    }

    pub(crate) fn decision(&self, a: Answer, key: &GlobalKey) -> Decision {
        Decision::new(
            a.allowed,
            a.remaining,
            a.reset,
            a.retry_after,
            self.local.quota(key.local),
            key.local.is_unkeyed(),
        )
    }

    fn fall_back(&self, key: &GlobalKey) -> Option<Decision> {
        self.fallbacks.fetch_add(1, Relaxed);
        match self.failover.fallback {
            Fallback::FailOpen => None,
            Fallback::Local => Some(self.local.check_key(key.local, Instant::now())),
        }
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn schedule_probe(&self) {
        let next = self.nanos().saturating_add(
            u64::try_from(self.failover.probe_interval.as_nanos()).unwrap_or(u64::MAX),
        );
        self.probe_at.store(next, Relaxed);
    }

    /// Whether this request may ask Redis while degraded: the first one after the probe
    /// time, which pushes the probe time on (others keep falling back meanwhile).
    fn probe_due(&self) -> bool {
        let now = self.nanos();
        let at = self.probe_at.load(Relaxed);
        now >= at
            && self
                .probe_at
                .compare_exchange(
                    at,
                    now.saturating_add(self.timeout_nanos()),
                    Relaxed,
                    Relaxed,
                )
                .is_ok()
    }

    fn timeout_nanos(&self) -> u64 {
        u64::try_from(self.failover.timeout.as_nanos()).unwrap_or(u64::MAX)
    }
}

fn prefix(name: &str) -> Box<[u8]> {
    let mut prefix = b"gatekit:rl:".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.push(b':');
    prefix.into_boxed_slice()
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("config", self.local.config())
            .field("failover", &self.failover)
            .field("degraded", &self.is_degraded())
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}
