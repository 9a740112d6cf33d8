//! [`RateLimiter`]: the state of one configured limit, shared by every connection.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use http::{HeaderValue, Request};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::gcra::{self, Gcra, Outcome};
use super::key::{self, Key, KeyRepr, PassThrough};
use super::{Quota, RateLimitConfig, Unkeyed};

/// The number of distinct keys a [`RateLimiter`] tracks unless
/// [`with_max_keys`](RateLimiter::with_max_keys) says otherwise: 917,504, that is 64
/// shards of 14,336 keys, the most that fit in hash tables of 16,384 slots (17 MiB when
/// full; see the [module docs](super#memory)).
pub const DEFAULT_MAX_KEYS: usize = 64 * 14_336;

/// Shards of the key table: enough that 2–64 cores rarely meet on one lock.
const MAX_SHARDS: usize = 64;

/// Entries looked at to estimate which eighth of a full shard owes least.
const SAMPLE: usize = 64;

type Map = HashMap<u64, u64, BuildHasherDefault<PassThrough>>;

/// The state of one rate limit: a GCRA bucket per distinct key, shared by everything
/// that holds the `Arc<RateLimiter>` (every connection, every clone of a
/// [`RateLimit`](super::RateLimit) service, every route table that names the limit).
///
/// See the [module docs](super) for the algorithm, the key and the memory bound.
pub struct RateLimiter {
    config: RateLimitConfig,
    keyed: Gcra,
    /// The quota of requests without a key ([`Unkeyed::Shared`]).
    unkeyed: Option<Gcra>,
    hasher: RandomState,
    /// Time zero of the buckets' nanosecond clock.
    epoch: Instant,
    shards: Box<[Shard]>,
    max_keys: usize,
    /// The one bucket of a limiter without key parts.
    all: Bucket,
    /// The shared bucket of requests without a key.
    default: Bucket,
    policy: HeaderValue,
    unkeyed_policy: Option<HeaderValue>,
    /// `"name";r=`, the start of every `RateLimit` value.
    limit_prefix: Box<str>,
}

/// What a [`RateLimiter`] decided about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    remaining: u64,
    reset: Duration,
    retry_after: Duration,
    quota: Quota,
    unkeyed: bool,
}

/// One shard of the key table, alone on its cache line(s).
#[repr(align(64))]
struct Shard {
    map: Mutex<Map>,
    /// The most keys this shard holds.
    cap: usize,
    /// `map.len()`, readable without the lock.
    keys: AtomicUsize,
    allowed: AtomicU64,
    limited: AtomicU64,
    evictions: AtomicU64,
}

/// A single bucket updated lock-free (compare-and-swap on its arrival time).
#[repr(align(64))]
#[derive(Default)]
struct Bucket {
    tat: AtomicU64,
    allowed: AtomicU64,
    limited: AtomicU64,
}

// === impl RateLimiter ===

impl RateLimiter {
    /// The state for `config`, tracking up to [`DEFAULT_MAX_KEYS`] keys. Its clock starts
    /// now (tokio's, so paused test time applies).
    ///
    /// A quota of 0 requests refuses every request; a zero interval makes the limit
    /// practically unlimited (one request per nanosecond); a burst of 0 is read as 1.
    pub fn new(config: RateLimitConfig) -> Self {
        let keyed = Gcra::new(config.quota);
        let unkeyed = match config.unkeyed {
            Unkeyed::Skip => None,
            Unkeyed::Shared(quota) => Some(Gcra::new(quota)),
        };
        let header = |quota| {
            HeaderValue::from_maybe_shared(bytes::Bytes::from(gcra::policy_item(
                &config.name,
                quota,
            )))
            // `policy_item` writes visible ASCII only: cannot fail.
            .unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        let policy = header(config.quota);
        let unkeyed_policy = match config.unkeyed {
            Unkeyed::Skip => None,
            Unkeyed::Shared(quota) => Some(header(quota)),
        };
        let limit_prefix = format!("{};r=", gcra::sf_string(&config.name)).into_boxed_str();
        Self {
            keyed,
            unkeyed,
            hasher: RandomState::new(),
            epoch: Instant::now(),
            shards: shards(DEFAULT_MAX_KEYS),
            max_keys: DEFAULT_MAX_KEYS,
            all: Bucket::default(),
            default: Bucket::default(),
            policy,
            unkeyed_policy,
            limit_prefix,
            config,
        }
    }

    /// Tracks up to `max_keys` distinct keys (at least 1) instead of
    /// [`DEFAULT_MAX_KEYS`]. Memory grows with the keys actually seen, up to this bound;
    /// see the [module docs](super#memory).
    #[must_use]
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        self.shards = shards(max_keys);
        self.max_keys = max_keys;
        self
    }

    /// The configuration this limiter enforces.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// The limit's name, as in its headers.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The most distinct keys tracked at once.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The bucket `req` goes to: its [`KeyPart`](super::KeyPart)s hashed (no
    /// allocation), the one bucket of a limiter without parts, or, when the request
    /// lacks a part, the shared default bucket ([`Unkeyed::Shared`]) or `None`
    /// ([`Unkeyed::Skip`]: the limit does not apply). `None` as well when the request
    /// fails one of the limit's [`matches`](RateLimitConfig::matches): the limit does
    /// not apply to it.
    pub fn key<B>(&self, req: &Request<B>) -> Option<Key> {
        if !self.config.matches.iter().all(|m| m.matches(req)) {
            return None;
        }
        if self.config.key.is_empty() {
            return Some(Key(KeyRepr::All));
        }
        match key::hash_parts(&self.config.key, &self.hasher, req) {
            Some(h) => Some(Key(KeyRepr::Hashed(h))),
            None => self.unkeyed.map(|_| Key(KeyRepr::Unkeyed)),
        }
    }

    /// A distinct key made of `bytes` (for callers that build keys themselves, and for
    /// tests), limited by the configured quota.
    pub fn key_from_bytes(&self, bytes: &[u8]) -> Key {
        Key(KeyRepr::Hashed(key::hash_bytes(&self.hasher, bytes)))
    }

    /// Writes `req`'s key into `out` (cleared first) in a fixed, prefix-free encoding
    /// of its [`KeyPart`](super::KeyPart)s that is the same in every process and every
    /// run, unlike [`Key`]'s seeded hash: for limits whose buckets live in a store shared
    /// by several processes. Returns the same bucket as [`key`](Self::key) (`out` is
    /// left empty for the one bucket of a limiter without parts and for the shared
    /// default bucket; tell them apart with [`Key::is_unkeyed`]); `None` when the limit
    /// does not apply (the request fails one of its
    /// [`matches`](RateLimitConfig::matches), or lacks a part under [`Unkeyed::Skip`]). The bytes hold the parts' values as they are (header values
    /// included).
    pub fn key_bytes<B>(&self, req: &Request<B>, out: &mut Vec<u8>) -> Option<Key> {
        out.clear();
        self.append_key_bytes(req, out)
    }

    /// [`key_bytes`](Self::key_bytes) appending to `out` instead of clearing it first,
    /// so a caller can write its own prefix (a store's bucket name) and the key into one
    /// buffer. Nothing is appended when the limit does not apply, and nothing for the
    /// one bucket of a limiter without parts or the shared default bucket.
    pub fn append_key_bytes<B>(&self, req: &Request<B>, out: &mut Vec<u8>) -> Option<Key> {
        let key = self.key(req)?;
        if matches!(key.0, KeyRepr::Hashed(_)) {
            key::encode_parts(&self.config.key, req, out);
        }
        Some(key)
    }

    /// The quota that applies to `key`: the limit's, or the shared default bucket's.
    pub fn quota(&self, key: Key) -> Quota {
        match (key.0, &self.unkeyed) {
            (KeyRepr::Unkeyed, Some(g)) => g.quota(),
            _ => self.keyed.quota(),
        }
    }

    /// The refusal of a request `decision` refused: [`ErrorKind::RateLimited`] with
    /// `Retry-After`, `RateLimit-Policy` and `RateLimit` headers, as the
    /// [`RateLimit`](super::RateLimit) service builds it.
    ///
    /// [`ErrorKind::RateLimited`]: crate::ErrorKind::RateLimited
    pub fn refusal(&self, decision: &Decision) -> crate::Error {
        let retry_after = gcra::ceil_secs(decision.retry_after);
        crate::Error::new(crate::ErrorKind::RateLimited)
            .with_header(http::header::RETRY_AFTER, HeaderValue::from(retry_after))
            .with_header(
                super::RATELIMIT_POLICY,
                self.policy_header(decision).clone(),
            )
            .with_header(super::RATELIMIT, self.limit_header(decision))
    }

    /// Decides about `req` now, counting it when allowed; `None` when the limit does not
    /// apply to it (see [`key`](Self::key)).
    pub fn check<B>(&self, req: &Request<B>) -> Option<Decision> {
        let key = self.key(req)?;
        Some(self.check_key(key, Instant::now()))
    }

    /// Decides about a request with `key` arriving at `now`, and counts it in its bucket
    /// when allowed (a refused request costs nothing). `now` may be any instant at or
    /// after this limiter's creation; earlier instants count as its creation.
    pub fn check_key(&self, key: Key, now: Instant) -> Decision {
        self.acquire(key, self.nanos(now), true)
    }

    /// Drops every key whose bucket is full again (which is the same as not tracking
    /// it), and gives memory back from shards that are mostly empty after that. The
    /// limiter does the first part by itself whenever a shard is full or about to grow;
    /// calling this from time to time (every minute, say) also returns the memory a burst
    /// of distinct keys left behind. It locks one shard at a time.
    pub fn sweep(&self) {
        let now = self.nanos(Instant::now());
        for shard in &*self.shards {
            let mut map = shard.map.lock();
            map.retain(|_, tat| *tat > now);
            if map.capacity() > 4 * map.len() {
                let keep = map.len() * 2;
                map.shrink_to(keep);
            }
            shard.keys.store(map.len(), Relaxed);
        }
    }

    /// Requests allowed so far.
    pub fn allowed(&self) -> u64 {
        self.sum(|s| &s.allowed)
            + self.all.allowed.load(Relaxed)
            + self.default.allowed.load(Relaxed)
    }

    /// Requests refused so far.
    pub fn limited(&self) -> u64 {
        self.sum(|s| &s.limited)
            + self.all.limited.load(Relaxed)
            + self.default.limited.load(Relaxed)
    }

    /// Distinct keys tracked now (including keys whose bucket has refilled but that
    /// have not been swept yet).
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|s| s.keys.load(Relaxed)).sum()
    }

    /// Keys forgotten so far while their bucket was not full, to stay within
    /// [`max_keys`](Self::max_keys): each made the limit more lenient for that key (see
    /// the [module docs](super#memory)).
    pub fn evictions(&self) -> u64 {
        self.sum(|s| &s.evictions)
    }

    fn sum(&self, counter: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| counter(s).load(Relaxed)).sum()
    }

    /// `now` on the buckets' clock: nanoseconds since this limiter was created.
    pub(super) fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Decides about one request; with `commit`, an allowed request is counted in its
    /// bucket (and in [`allowed`](Self::allowed)). A refusal is counted in
    /// [`limited`](Self::limited) either way.
    pub(super) fn acquire(&self, key: Key, now: u64, commit: bool) -> Decision {
        match key.0 {
            KeyRepr::All => self.decision(self.all.acquire(&self.keyed, now, commit), false),
            KeyRepr::Unkeyed => {
                let gcra = self.unkeyed.as_ref().unwrap_or(&self.keyed);
                self.decision(self.default.acquire(gcra, now, commit), true)
            }
            KeyRepr::Hashed(h) => {
                let shard = self.shard(h);
                let out = {
                    let mut map = shard.map.lock();
                    if let Some(tat) = map.get_mut(&h) {
                        let out = self.keyed.decide(*tat, now);
                        if out.allowed && commit {
                            *tat = out.new_tat;
                        }
                        out
                    } else {
                        // An absent key has a full bucket.
                        let out = self.keyed.decide(0, now);
                        if out.allowed && commit {
                            shard.make_room(&mut map, now);
                            map.insert(h, out.new_tat);
                            shard.keys.store(map.len(), Relaxed);
                        }
                        out
                    }
                };
                shard.count(&out, commit);
                self.decision(out, false)
            }
        }
    }

    /// Gives back the request an [`acquire`](Self::acquire) with `commit` allowed under
    /// `key` (a later limit refused it). Exact unless the key was evicted meanwhile.
    pub(super) fn release(&self, key: Key) {
        let (tat, allowed, emission) = match key.0 {
            KeyRepr::All => (&self.all.tat, &self.all.allowed, self.keyed.emission()),
            KeyRepr::Unkeyed => {
                let gcra = self.unkeyed.as_ref().unwrap_or(&self.keyed);
                (&self.default.tat, &self.default.allowed, gcra.emission())
            }
            KeyRepr::Hashed(h) => {
                let shard = self.shard(h);
                if let Some(tat) = shard.map.lock().get_mut(&h) {
                    *tat = tat.saturating_sub(self.keyed.emission());
                }
                shard.allowed.fetch_sub(1, Relaxed);
                return;
            }
        };
        // Relaxed: the arrival time is one self-contained value; no other memory is
        // published through it.
        let _ = tat.fetch_update(Relaxed, Relaxed, |t| Some(t.saturating_sub(emission)));
        allowed.fetch_sub(1, Relaxed);
    }

    /// The `RateLimit-Policy` value of the bucket `decision` came from.
    pub fn policy_header(&self, decision: &Decision) -> &HeaderValue {
        match (&self.unkeyed_policy, decision.unkeyed) {
            (Some(p), true) => p,
            _ => &self.policy,
        }
    }

    /// The `RateLimit` value for `decision`: the remaining requests, and as effective
    /// window the seconds until the bucket is full again (allowed) or until a request
    /// is allowed again (refused, the same as `Retry-After`).
    pub fn limit_header(&self, decision: &Decision) -> HeaderValue {
        let t = if decision.allowed {
            decision.reset
        } else {
            decision.retry_after
        };
        gcra::service_limit(&self.limit_prefix, decision.remaining, gcra::ceil_secs(t))
    }

    fn shard(&self, h: u64) -> &Shard {
        // Bits 32.. pick the shard; the table inside uses the low bits (slot) and the top
        // seven (tag), so neither is constant within a shard.
        &self.shards[(h >> 32) as usize & (self.shards.len() - 1)]
    }

    fn decision(&self, out: Outcome, unkeyed: bool) -> Decision {
        let quota = match (unkeyed, &self.unkeyed) {
            (true, Some(g)) => g.quota(),
            _ => self.keyed.quota(),
        };
        Decision {
            allowed: out.allowed,
            remaining: out.remaining,
            reset: Duration::from_nanos(out.reset),
            retry_after: Duration::from_nanos(out.retry_after),
            quota,
            unkeyed,
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .field("max_keys", &self.max_keys)
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

/// Shards for `max_keys` (≥ 1): a power of two, at most [`MAX_SHARDS`] and at most
/// `max_keys`, whose caps add up to exactly `max_keys`.
fn shards(max_keys: usize) -> Box<[Shard]> {
    let n = MAX_SHARDS.min(max_keys);
    let n = 1 << (usize::BITS - 1 - n.leading_zeros());
    let (base, rest) = (max_keys / n, max_keys % n);
    (0..n)
        .map(|i| Shard::new(base + usize::from(i < rest)))
        .collect()
}

// === impl Decision ===

impl Decision {
    /// A decision made elsewhere than in a [`RateLimiter`] (by a limiter whose buckets
    /// live in a shared store), with the same meaning as one a `RateLimiter` makes:
    /// `remaining` requests could still pass at once (0 when refused), the bucket is
    /// full again after `reset`, and a request would be allowed after `retry_after`
    /// (zero when allowed). `unkeyed`: it came from the shared bucket of requests
    /// without a key ([`Unkeyed::Shared`]), whose `quota` it carries.
    pub fn new(
        allowed: bool,
        remaining: u64,
        reset: Duration,
        retry_after: Duration,
        quota: Quota,
        unkeyed: bool,
    ) -> Self {
        Self {
            allowed,
            remaining: if allowed { remaining } else { 0 },
            reset,
            retry_after: if allowed { Duration::ZERO } else { retry_after },
            quota,
            unkeyed,
        }
    }

    /// Whether the request may pass.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// Requests the bucket could still take at once (0 when refused).
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Until the bucket is full again if no request comes (counting this one when it
    /// was allowed).
    pub fn reset(&self) -> Duration {
        self.reset
    }

    /// Until a request with this key would be allowed; zero when this one was.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The quota that decided: the limit's, or the shared default bucket's for a request
    /// without a key.
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

// === impl Shard ===

impl Shard {
    fn new(cap: usize) -> Self {
        Self {
            map: Mutex::new(Map::default()),
            cap,
            keys: AtomicUsize::new(0),
            allowed: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn count(&self, out: &Outcome, commit: bool) {
        if !out.allowed {
            self.limited.fetch_add(1, Relaxed);
        } else if commit {
            self.allowed.fetch_add(1, Relaxed);
        }
    }

    /// Before inserting a key into `map`: when the shard is at its cap, or its table has
    /// no free slot left (it would grow, or rehash its tombstones), the table is rebuilt
    /// with only the entries whose bucket is not full again (a full bucket is the same as
    /// an absent key). At the cap, if fewer than an eighth would be free after that,
    /// the entries that owe least are evicted until an eighth is (see the module docs).
    /// Below the cap the new table keeps its size when an eighth or more was dropped, and
    /// doubles (up to the cap's size) otherwise. Each rebuild thus pays for many inserts,
    /// and the table's size follows live keys: hashbrown's own growth, which doubles a
    /// table full of tombstones, never runs.
    fn make_room(&self, map: &mut Map, now: u64) {
        let len = map.len();
        let at_cap = len >= self.cap;
        if !at_cap && len < map.capacity() {
            return;
        }
        let live = map.values().filter(|&&tat| tat > now).count();
        let (size, keep) = if at_cap {
            (self.cap, self.cap - (self.cap / 8).max(1))
        } else if live.saturating_mul(8) <= len.saturating_mul(7) {
            (len, len)
        } else {
            (len.saturating_mul(2).clamp(4, self.cap), len)
        };
        let evict = live.saturating_sub(keep);
        let threshold = if evict > 0 {
            // An estimate of the debt below which `evict` live entries lie: the matching
            // quantile of a sample (table order is hash order, unrelated to debt).
            let mut sample = [0u64; SAMPLE];
            let mut n = 0;
            for (slot, &tat) in sample
                .iter_mut()
                .zip(map.values().filter(|&&tat| tat > now))
            {
                *slot = tat;
                n += 1;
            }
            let sample = &mut sample[..n];
            sample.sort_unstable();
            let at = (evict.saturating_mul(n) / live.max(1)).min(n.saturating_sub(1));
            sample.get(at).copied().unwrap_or(0)
        } else {
            0
        };
        let mut left = evict;
        let mut table = Map::with_capacity_and_hasher(size, Default::default());
        for (key, tat) in map.drain() {
            if tat <= now {
                continue;
            }
            if left > 0 && tat <= threshold {
                left -= 1;
                continue;
            }
            table.insert(key, tat);
        }
        *map = table;
        self.evictions.fetch_add((evict - left) as u64, Relaxed);
    }
}

// === impl Bucket ===

impl Bucket {
    fn acquire(&self, gcra: &Gcra, now: u64, commit: bool) -> Outcome {
        // Relaxed: the arrival time is one self-contained value (every update is a
        // read-modify-write of it); no other memory is published through it.
        let mut tat = self.tat.load(Relaxed);
        let out = loop {
            let out = gcra.decide(tat, now);
            if !out.allowed || !commit {
                break out;
            }
            match self
                .tat
                .compare_exchange_weak(tat, out.new_tat, Relaxed, Relaxed)
            {
                Ok(_) => break out,
                Err(current) => tat = current,
            }
        };
        if !out.allowed {
            self.limited.fetch_add(1, Relaxed);
        } else if commit {
            self.allowed.fetch_add(1, Relaxed);
        }
        out
    }
}
