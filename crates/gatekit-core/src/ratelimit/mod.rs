//! Rate limits as a tower layer whose state is shared by every connection and clone.
//!
//! tower's own `RateLimit` keeps its state in each service clone, and a server clones its
//! service per connection, so "100 requests/s" silently becomes 100 per connection
//! (axum#2634). Here the state of one configured limit is a [`RateLimiter`], held in an
//! `Arc`: every [`RateLimit`] service built from a [`RateLimitLayer`] holding it (every
//! connection, every clone, every route table built on reload from the same
//! `Arc<RateLimiter>`) takes from the same buckets.
//!
//! # The algorithm: GCRA
//!
//! Each bucket is one `u64`, its *theoretical arrival time* (TAT) in nanoseconds, as in
//! the generic cell rate algorithm (ITU-T I.371; the "virtual scheduling" form). A
//! [`Quota`] of `requests` per `interval` with a `burst` gives an emission interval
//! `T = interval / requests` and a tolerance `τ = burst × T`. A request arriving at `now`
//! is allowed when
//!
//! ```text
//! max(TAT, now) + T − now ≤ τ          and then   TAT ← max(TAT, now) + T
//! ```
//!
//! This is a token bucket of `burst` tokens refilled at `requests / interval`, without a
//! refill timer and in one word: after an idle period `burst` requests pass at once, then
//! one per `T`. A refused request changes nothing (it costs the client nothing, so a
//! client that retries too early is not punished further). A bucket whose `TAT ≤ now` is
//! full: exactly the same as a key never seen, which is what makes forgetting keys safe
//! (see [Memory](#memory)). The clock is tokio's ([`tokio::time::Instant`]), so tests
//! can pause and advance it.
//!
//! # The key
//!
//! A limit applies per distinct key, built from the request by its [`KeyPart`]s:
//! [`KeyPart::ClientIp`] is the client's address from the
//! [`ConnectionInfo`](crate::ConnectionInfo) request extension (an IPv4-mapped IPv6
//! address counts as the IPv4 one; each IPv6 address is its own key), and
//! [`KeyPart::Header`] the values of a request header, each distinct value its own
//! bucket (all values, in order, when it repeats), and [`KeyPart::Identity`] who an
//! access policy authenticated the request as (the
//! [`Identity`](crate::access::Identity) extension's method and subject: one bucket per
//! API-key consumer or user; access policies run outside a rule's rate limits, so the
//! identity is there). Several parts combine: `[ClientIp,
//! Header(x-api-key)]` gives each (address, key) pair its own bucket. The parts are fed
//! one after the other into a hasher seeded at random per limiter, giving a 64-bit key
//! without allocating; a client cannot aim keys at one slot of the table (no HashDoS).
//! Two distinct keys share a bucket only if their 64-bit hashes collide: among a
//! million keys, about one chance in 37 million.
//!
//! A limit without parts has one bucket for all traffic through it, a single atomic
//! updated with compare-and-swap (no lock). A request that lacks a part (no such
//! header, no `ConnectionInfo`, no `Identity`) is not limited under [`Unkeyed::Skip`], and takes from
//! one shared default bucket with its own quota under [`Unkeyed::Shared`].
//!
//! # Which requests: matches
//!
//! A limit may apply to some requests only: those that meet every condition in its
//! [`matches`](RateLimitConfig::matches) (a [`ClientMatch`] each; none: every request).
//! A request that fails one is not limited by that limit at all (it takes from no
//! bucket, not even the [`Unkeyed::Shared`] one), and the other limits of the layer
//! still apply to it. The conditions are:
//!
//! - [`ClientMatch::Header`]: a request header's value is exactly some bytes
//!   ([`ValueMatch::Exact`]) or matches a regular expression as a whole
//!   ([`ValueMatch::Regex`], anchored at both ends as RE2's full match); a repeated
//!   header is compared as its values joined with `,`; a request without the header does
//!   not match. With `invert` the condition is negated (it then holds for a request
//!   without the header).
//! - [`ClientMatch::SourceCidr`]: the client's address, from
//!   [`ConnectionInfo`](crate::ConnectionInfo), lies in a [`Cidr`] (IPv4 or IPv6; an
//!   IPv4-mapped IPv6 client counts as its IPv4 address).
//!
//! A match selects; the key splits. The requests a limit selects share its buckets as its
//! [`KeyPart`]s say: `matches: [SourceCidr(10.0.0.0/8)]` with no key parts is one
//! bucket for the whole range; with `key: [ClientIp]` each address in it has its own.
//! This is how Envoy Gateway's rate-limit `clientSelectors` map: `Exact` and
//! `RegularExpression` header selectors and `sourceCIDR` are matches, `Distinct`
//! selectors are key parts.
//!
//! Matching runs inside [`RateLimiter::key`] (and so [`RateLimiter::key_bytes`], which
//! the shared-store limits of `gatekit-redis` build on): per request it is byte
//! comparisons, a regex run over the header value, or a prefix test of the address,
//! without allocating (except for a regular expression over a repeated header).
//! Measured (`cargo bench -p gatekit-core --bench ratelimit -- key_with_matches`, one
//! core of a shared machine): an exact header match 15 ns, a regex 41 ns, a CIDR 16 ns,
//! all three 65 ns, each for a whole `key` call, no allocation.
//!
//! # Several limits
//!
//! A [`RateLimitLayer`] holds any number of limiters; a request must pass all of them.
//! They are checked in order, each counting the request as it allows it; when one
//! refuses, the ones after it are only asked (not counted), the ones before it give the
//! request back, and the refusal carries the longest wait among the refusing limits. So
//! a refused request consumes no quota anywhere (up to races with concurrent requests,
//! which can only make a limit more lenient by the one request in flight).
//!
//! # Headers
//!
//! A refused request fails with [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited)
//! (429 once [`error_response`](crate::error_response) turns it into a response), with:
//!
//! - `Retry-After: <seconds>`: until the request would be allowed, rounded up, at least 1;
//! - `RateLimit-Policy: "<name>";q=<requests>;w=<seconds>` and
//!   `RateLimit: "<name>";r=0;t=<seconds>`, as draft-ietf-httpapi-ratelimit-headers
//!   (revisions 10–11) writes them, `t` being the same wait as `Retry-After` (the draft
//!   asks that `Retry-After` not end before the effective window `t`).
//!
//! An allowed response carries `RateLimit-Policy` and `RateLimit` of the tightest limit
//! that applied (fewest requests remaining; the first of equals), appended after any the
//! upstream set: `r` is the requests that could still pass at once, `t` the seconds until
//! the bucket is full again (a conservative effective window: within it the client gets
//! at least `r`). `w` is the interval in whole seconds, rounded up, with `q` scaled to
//! it (10 per 500 ms is `q=20;w=1`); the burst is not advertised. The name is written as
//! a structured-field String (`"` and `\` escaped, non-printable characters as `_`).
//! Per allowed response this costs one allocation (the `RateLimit` value).
//!
//! # Memory
//!
//! The buckets of distinct keys live in 64 shards (fewer for a bound below 64), each a
//! `parking_lot` mutex over a `HashMap<u64, u64>` (key hash → TAT), one cache line
//! apart. The shard is picked by bits of the keyed hash, and the map uses the hash as
//! it is. An entry is 16 bytes plus a control byte in a table between 7/16 and 7/8 full:
//! 19–39 bytes per key. A limiter holds at most [`max_keys`](RateLimiter::max_keys) keys
//! ([`DEFAULT_MAX_KEYS`] unless [`RateLimiter::with_max_keys`] says otherwise), each
//! shard its share. Measured by `cargo bench -p gatekit-core --bench ratelimit` (it
//! prints these): a million keys hold 34.0 MiB, 35.7 bytes a key (15,625 keys a shard
//! are just over what a 16,384-slot table takes, so the tables have doubled); the
//! default bound, kept full by a stream of new keys, holds 17.0 MiB for about 853,000
//! keys, 20.9 bytes a key. A limiter that has seen few keys holds little: tables grow
//! with the keys.
//!
//! When a shard's table has no free slot left, or the shard is at its bound, the table
//! is rebuilt with only the entries that still owe something (no loss: a full bucket is
//! an absent key). Below the bound the new table keeps its size if that dropped an
//! eighth or more, and doubles otherwise, so tables grow with live keys, not with every
//! key ever seen. At the bound, if less than an eighth would be free, entries are
//! **evicted** until an eighth is: those that owe least, picked below the matching
//! quantile of a sample of 64 entries' TATs. Each rebuild is one pass over a shard
//! under its lock and pays for the next eighth of a table's inserts.
//!
//! Eviction forgets a key's debt, so it only ever makes the limit more lenient for the
//! evicted key, never stricter for anyone, and it forgets the smallest debts first. A
//! key that is being refused owes the most its quota allows (more than `burst − 1`
//! requests' worth), so it is evicted only when most keys of its shard are as
//! exhausted as it is: a flood of fresh keys (each owing one request) cannot evict it
//! to freedom. [`RateLimiter::sweep`] drops full buckets on demand and gives memory
//! back from mostly empty shards.
//!
//! Statistics for metrics are atomics: [`allowed`](RateLimiter::allowed),
//! [`limited`](RateLimiter::limited), [`keys`](RateLimiter::keys) and
//! [`evictions`](RateLimiter::evictions).
//!
//! # Cost
//!
//! Measured with `cargo bench -p gatekit-core --bench ratelimit` (one core of a shared
//! machine, medians over two runs): building a key takes 14 ns from the client address,
//! 33 ns from a header; a decision takes 25 ns for a hot key (allowed or refused), 19 ns
//! for a limit without key parts, 110–145 ns for one of a million tracked keys (cache
//! misses), 60–85 ns for a new key into a full limiter (hashing and amortised eviction
//! included). The [`RateLimit`] service
//! adds about 200 ns and one allocation (the `RateLimit` value) to an allowed request,
//! with the clock read and both headers appended; no decision allocates.
//!
//! # Where it goes in a stack
//!
//! Two positions are useful, and one stack can have both. **Before authentication**, a
//! limit by client address rejects floods cheaply, before any credential is checked.
//! **After it**, a limit by identity (a header the authentication layer set or
//! verified, such as an API key or a tenant) enforces the quota a client paid for.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use gatekit_core::ratelimit::{
//!     KeyPart, Quota, RateLimitConfig, RateLimitLayer, RateLimiter, Unkeyed,
//! };
//! use gatekit_core::{Body, BoxError, HandleErrorLayer};
//! use http::{HeaderName, Request, Response};
//! use tower::ServiceBuilder;
//!
//! // Made once and kept (a gateway keeps them in a registry across reloads).
//! let per_ip = Arc::new(RateLimiter::new(RateLimitConfig::new(
//!     "per-ip",
//!     vec![KeyPart::ClientIp],
//!     Quota::new(100, Duration::from_secs(1)).with_burst(200),
//! )));
//! let per_key = Arc::new(RateLimiter::new(
//!     RateLimitConfig::new(
//!         "per-key",
//!         vec![KeyPart::Header(HeaderName::from_static("x-api-key"))],
//!         Quota::new(1_000, Duration::from_secs(60)),
//!     )
//!     // Requests without a key share one small quota.
//!     .with_unkeyed(Unkeyed::Shared(Quota::new(10, Duration::from_secs(60)))),
//! ));
//!
//! fn authenticate(req: Request<Body>) -> Request<Body> {
//!     req // stands for a layer that checks `x-api-key`
//! }
//! let app = tower::service_fn(|_req: Request<Body>| async {
//!     Ok::<_, BoxError>(Response::new(Body::empty()))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(HandleErrorLayer::new()) // a refusal becomes a 429 response
//!     .layer(RateLimitLayer::new([per_ip.clone()]))
//!     .map_request(authenticate)
//!     .layer(RateLimitLayer::new([per_key.clone()]))
//!     .service(app);
//! # let _ = svc;
//! ```
//!
//! # Not here
//!
//! Limits are per process; limits marked [`global`](RateLimitConfig::global) are kept
//! in a [`SharedLimitStore`] when the route table's policy state has one (the
//! `gatekit-redis` crate keeps them in Redis, shared by replicas, through
//! [`RateLimiter::key_bytes`] and [`Decision::new`]); IPv6 clients are not
//! grouped by prefix; a request is one unit whatever its size or cost.

mod config;
mod future;
mod gcra;
mod key;
mod layer;
mod limiter;
mod matches;
mod service;
mod shared;

use http::HeaderName;

pub use self::config::{KeyPart, Quota, RateLimitConfig, Unkeyed};
pub use self::future::ResponseFuture;
pub use self::key::Key;
pub use self::layer::RateLimitLayer;
pub use self::limiter::{DEFAULT_MAX_KEYS, Decision, RateLimiter};
pub use self::matches::{Cidr, ClientMatch, ValueMatch, ValueRegex};
pub use self::service::RateLimit;
pub use self::shared::{SharedLimitStore, SharedLimiter, SharedLimiterStats};

/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers): the current service limit.
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the quota policy.
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

#[cfg(test)]
mod tests;
