//! Rate-limit decisions: time and allocations per check (one hot key, a million
//! distinct keys, fresh keys at the bound, the whole service), and the memory a limiter
//! holds per tracked key.
//!
//! Run: `cargo bench -p gatekit-core --bench ratelimit`
//!
//! Before the timed benchmarks, `main` fills limiters with distinct keys and prints the
//! live bytes they hold, measured by a counting allocator (stats_alloc, under divan's
//! profiler).
#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use divan::{Bencher, black_box};
use futures_util::FutureExt;
use gatekit_core::ratelimit::{
    ClientMatch, DEFAULT_MAX_KEYS, Key, KeyPart, Quota, RateLimitConfig, RateLimitLayer,
    RateLimiter, ValueMatch, ValueRegex,
};
use gatekit_core::{Body, BoxError, ConnectionInfo};
use http::HeaderName;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::time::Instant;
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: divan::AllocProfiler<&StatsAlloc<System>> =
    divan::AllocProfiler::new(&INSTRUMENTED_SYSTEM);

const X_KEY: HeaderName = HeaderName::from_static("x-api-key");

fn main() {
    memory();
    divan::main();
}

/// A quota no benchmark exhausts: a million per second, a bucket of a million.
fn roomy() -> Quota {
    Quota::new(1_000_000, Duration::from_secs(1))
}

fn limiter(key: Vec<KeyPart>, quota: Quota) -> RateLimiter {
    RateLimiter::new(RateLimitConfig::new("bench", key, quota))
}

fn key_of(l: &RateLimiter, i: u64) -> Key {
    l.key_from_bytes(&i.to_le_bytes())
}

/// Live bytes of a limiter after `inserted` distinct keys under a bound of `max_keys`.
fn measure(label: &str, max_keys: usize, inserted: u64) {
    let now = Instant::now();
    let region = Region::new(&INSTRUMENTED_SYSTEM);
    let l = limiter(vec![], roomy()).with_max_keys(max_keys);
    for i in 0..inserted {
        l.check_key(key_of(&l, i), now);
    }
    let change = region.change();
    let live = change.bytes_allocated as isize - change.bytes_deallocated as isize
        + change.bytes_reallocated;
    let keys = l.keys();
    println!(
        "{label}: {keys} keys tracked ({} evicted): {live} bytes = {:.1} MiB, {:.1} bytes/key",
        l.evictions(),
        live as f64 / (1024.0 * 1024.0),
        live as f64 / keys as f64,
    );
    drop(black_box(l));
}

fn memory() {
    println!("memory held by one limiter (live heap bytes after the inserts):");
    measure(
        "1,000,000 keys, bound 2,000,000 (none evicted)",
        2_000_000,
        1_000_000,
    );
    measure(
        "bound 1,000,000, full (2,000,000 keys inserted)",
        1_000_000,
        2_000_000,
    );
    measure(
        "default bound (917,504), full (2,000,000 keys inserted)",
        DEFAULT_MAX_KEYS,
        2_000_000,
    );
    println!();
}

fn request() -> http::Request<Body> {
    let mut req = http::Request::get("/v1/items")
        .header(X_KEY, "key-0123456789abcdef")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectionInfo::new(
        SocketAddr::from(([203, 0, 113, 9], 51234)),
        SocketAddr::from(([10, 0, 0, 1], 443)),
        false,
    ));
    req
}

/// Building a request's key: the parts hashed with the limiter's seeded hasher.
#[divan::bench(args = ["client_ip", "header", "client_ip+header"])]
fn key(bencher: Bencher<'_, '_>, parts: &str) {
    let parts = match parts {
        "client_ip" => vec![KeyPart::ClientIp],
        "header" => vec![KeyPart::Header(X_KEY)],
        _ => vec![KeyPart::ClientIp, KeyPart::Header(X_KEY)],
    };
    let l = limiter(parts, roomy());
    let req = request();
    bencher.bench_local(|| black_box(l.key(black_box(&req))));
}

/// Checking a limit's matches (Envoy Gateway's `clientSelectors`) on a request that
/// meets them, with no key parts (the one bucket): no allocation expected.
#[divan::bench(args = ["header_exact", "header_regex", "source_cidr", "all_three"])]
fn key_with_matches(bencher: Bencher<'_, '_>, matches: &str) {
    let exact = ClientMatch::header(
        X_KEY,
        ValueMatch::Exact(http::HeaderValue::from_static("key-0123456789abcdef")),
    );
    let regex = ClientMatch::header(
        X_KEY,
        ValueMatch::Regex(ValueRegex::new("key-[0-9a-f]{16}").unwrap()),
    );
    let cidr = ClientMatch::source_cidr("203.0.113.0/24".parse().unwrap());
    let matches = match matches {
        "header_exact" => vec![exact],
        "header_regex" => vec![regex],
        "source_cidr" => vec![cidr],
        _ => vec![exact, regex, cidr],
    };
    let l = RateLimiter::new(RateLimitConfig::new("bench", vec![], roomy()).with_matches(matches));
    let req = request();
    assert!(l.key(&req).is_some());
    bencher.bench_local(|| black_box(l.key(black_box(&req))));
}

mod check_key {
    use super::*;

    /// One key, allowed each time (a sharded table, one lock).
    #[divan::bench]
    fn hot_allowed(bencher: Bencher<'_, '_>) {
        let l = limiter(vec![], roomy().with_burst(u64::MAX / 2));
        let k = key_of(&l, 7);
        let now = Instant::now();
        bencher.bench_local(|| black_box(l.check_key(black_box(k), now)));
    }

    /// One key, refused each time (the attacker's case).
    #[divan::bench]
    fn hot_refused(bencher: Bencher<'_, '_>) {
        let l = limiter(vec![], Quota::new(1, Duration::from_secs(3600)));
        let k = key_of(&l, 7);
        let now = Instant::now();
        assert!(l.check_key(k, now).is_allowed());
        bencher.bench_local(|| black_box(l.check_key(black_box(k), now)));
    }

    /// A limit without key parts: one atomic, compare-and-swap.
    #[divan::bench]
    fn single_bucket(bencher: Bencher<'_, '_>) {
        let l = limiter(vec![], roomy().with_burst(u64::MAX / 2));
        let k = l.key(&request()).unwrap();
        let now = Instant::now();
        bencher.bench_local(|| black_box(l.check_key(black_box(k), now)));
    }

    /// A million tracked keys, visited in turn (cache misses dominate).
    #[divan::bench]
    fn million_distinct(bencher: Bencher<'_, '_>) {
        const N: u64 = 1_000_000;
        let l = limiter(vec![], roomy()).with_max_keys(2_000_000);
        let now = Instant::now();
        let keys: Vec<Key> = (0..N).map(|i| key_of(&l, i)).collect();
        for &k in &keys {
            l.check_key(k, now);
        }
        let mut i = 0;
        bencher.bench_local(|| {
            i = (i + 1) % keys.len();
            black_box(l.check_key(keys[i], now))
        });
    }

    /// Fresh keys into a limiter at its bound (100,000): every insert makes room
    /// (amortised: one pass over a shard frees an eighth of it). Includes hashing the key.
    #[divan::bench]
    fn fresh_keys_at_the_bound(bencher: Bencher<'_, '_>) {
        let l = limiter(vec![], roomy()).with_max_keys(100_000);
        let now = Instant::now();
        let mut i = 0u64;
        while l.keys() < 95_000 {
            l.check_key(key_of(&l, i), now);
            i += 1;
        }
        bencher.bench_local(|| {
            i += 1;
            black_box(l.check_key(key_of(&l, i), now))
        });
    }

    /// Two threads on one hot key (shard lock contention) and on distinct keys.
    #[divan::bench(threads = [1, 2], args = [true, false])]
    fn threads(bencher: Bencher<'_, '_>, same_key: bool) {
        let l = limiter(vec![], roomy().with_burst(u64::MAX / 2));
        let now = Instant::now();
        let next = std::sync::atomic::AtomicU64::new(0);
        bencher.bench(|| {
            let i = if same_key {
                7
            } else {
                next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1024
            };
            black_box(l.check_key(key_of(&l, i), now))
        });
    }
}

mod service {
    use super::*;

    /// What the limited service answers: a response with a header, as any real one has
    /// (so its header map is allocated with or without the limiter).
    fn inner() -> impl Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = BoxError,
        Future: Unpin,
    > + Clone {
        tower::service_fn(|_req: http::Request<Body>| {
            let mut rsp = http::Response::new(Body::empty());
            rsp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
            std::future::ready(Ok::<_, BoxError>(rsp))
        })
    }

    fn limited(
        quota: Quota,
    ) -> impl Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = BoxError,
        Future: Unpin,
    > {
        let l = Arc::new(limiter(vec![KeyPart::ClientIp], quota));
        RateLimitLayer::new([l]).layer(inner())
    }

    /// The inner service alone: the baseline the two below add to.
    #[divan::bench]
    fn without_limit(bencher: Bencher<'_, '_>) {
        let mut svc = inner();
        bencher
            .with_inputs(request)
            .bench_local_values(|req| black_box(svc.call(req).now_or_never()));
    }

    /// `RateLimit::call` for an allowed request, by client address: the clock, the key,
    /// the decision, the `RateLimit` header value (one allocation) and both headers
    /// appended to the response.
    #[divan::bench]
    fn allowed(bencher: Bencher<'_, '_>) {
        let mut svc = limited(roomy().with_burst(u64::MAX / 2));
        bencher
            .with_inputs(request)
            .bench_local_values(|req| black_box(svc.call(req).now_or_never()));
    }

    /// `RateLimit::call` for a refused request: the error with its three headers.
    #[divan::bench]
    fn refused(bencher: Bencher<'_, '_>) {
        let mut svc = limited(Quota::new(1, Duration::from_secs(3600)));
        assert!(svc.call(request()).now_or_never().unwrap().is_ok());
        bencher
            .with_inputs(request)
            .bench_local_values(|req| black_box(svc.call(req).now_or_never()));
    }
}
