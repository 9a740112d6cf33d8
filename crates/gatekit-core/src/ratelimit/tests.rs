use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, Request, Response};
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_layer::Layer;

use super::*;
use crate::{Body, BoxError, ConnectionInfo, error_response};

const X_KEY: HeaderName = HeaderName::from_static("x-api-key");

async fn ok(_req: Request<Body>) -> Result<Response<Body>, BoxError> {
    Ok(Response::new(Body::empty()))
}

fn limiter(config: RateLimitConfig) -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(config))
}

fn per_minute(name: &str, key: Vec<KeyPart>, n: u64) -> RateLimitConfig {
    RateLimitConfig::new(name, key, Quota::new(n, Duration::from_secs(60)))
}

fn request(ip: Option<&str>, key: Option<&str>) -> Request<Body> {
    let mut b = Request::get("/");
    if let Some(k) = key {
        b = b.header(X_KEY, k);
    }
    let mut req = b.body(Body::empty()).unwrap();
    if let Some(ip) = ip {
        let remote = SocketAddr::new(ip.parse().unwrap(), 40000);
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        req.extensions_mut()
            .insert(ConnectionInfo::new(remote, local, false));
    }
    req
}

/// The response the client sees: the service's, or the error's through
/// `error_response`, as `HandleError`/the router produce it.
async fn send<S>(svc: &mut S, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
{
    match svc.ready().await.unwrap().call(req).await {
        Ok(rsp) => rsp,
        Err(e) => error_response(&*e),
    }
}

fn header<'a>(rsp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    rsp.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Sends `n` requests built by `req`; the number that passed.
async fn passed<S>(svc: &mut S, n: usize, req: impl Fn() -> Request<Body>) -> usize
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
{
    let mut passed = 0;
    for _ in 0..n {
        if send(svc, req()).await.status() == 200 {
            passed += 1;
        }
    }
    passed
}

#[tokio::test(start_paused = true)]
async fn fifty_tasks_share_one_limit_over_time() {
    // 10 per second with a burst of 20, by client address; every task is one client
    // connection (its own service from the layer) from the same address.
    let quota = Quota::new(10, Duration::from_secs(1)).with_burst(20);
    let l = limiter(RateLimitConfig::new(
        "per-ip",
        vec![KeyPart::ClientIp],
        quota,
    ));
    let layer = RateLimitLayer::new([l.clone()]);
    let run = Duration::from_secs(5);
    let deadline = Instant::now() + run;
    let (sent, passed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u64 {
        let mut svc = layer.layer(tower::service_fn(ok));
        let (sent, passed) = (sent.clone(), passed.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let rsp = send(&mut svc, request(Some("192.0.2.7"), None)).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if rsp.status() == 200 {
                    passed.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(rsp.status(), 429);
                }
                // Uneven pacing (paused time: a load pattern, not synchronisation).
                tokio::time::sleep(Duration::from_millis(3 + i % 11)).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let (sent, passed) = (sent.load(Ordering::Relaxed), passed.load(Ordering::Relaxed));
    // burst + rate × duration.
    let expected = 20 + 10 * run.as_secs();
    assert!(
        (expected - 1..=expected + 1).contains(&passed),
        "{passed} passed, {expected} expected"
    );
    assert!(
        sent > 10 * expected,
        "the limit was really pushed: {sent} sent"
    );
    assert_eq!(l.allowed(), passed, "every allowed request counted once");
    assert_eq!(l.limited(), sent - passed, "every refusal counted once");
    assert_eq!(l.keys(), 1);
}

#[tokio::test(start_paused = true)]
async fn clones_and_rebuilt_layers_share_the_state() {
    for key in [vec![], vec![KeyPart::ClientIp]] {
        let l = limiter(per_minute("shared", key, 5));
        let svc = RateLimitLayer::new([l.clone()]).layer(tower::service_fn(ok));
        // One request through each of 20 clones: per-clone state would pass all 20.
        let mut total = 0;
        for _ in 0..20 {
            total += passed(&mut svc.clone(), 1, || request(Some("192.0.2.1"), None)).await;
        }
        assert_eq!(total, 5);
        // A layer rebuilt from the same limiter (a route table reload) continues...
        let mut rebuilt = RateLimitLayer::new([l.clone()]).layer(tower::service_fn(ok));
        assert_eq!(
            passed(&mut rebuilt, 3, || request(Some("192.0.2.1"), None)).await,
            0
        );
        // ...while a new limiter starts full.
        let fresh = limiter(l.config().clone());
        let mut other = RateLimitLayer::new([fresh]).layer(tower::service_fn(ok));
        assert_eq!(
            passed(&mut other, 7, || request(Some("192.0.2.1"), None)).await,
            5
        );
    }
}

#[test]
fn threads_racing_on_one_key_take_exactly_the_burst() {
    let quota = Quota::new(100, Duration::from_secs(3600));
    for key in [vec![], vec![KeyPart::Header(X_KEY)]] {
        let l = RateLimiter::new(RateLimitConfig::new("race", key, quota));
        let k = l.key(&request(None, Some("k"))).unwrap();
        let now = Instant::now();
        let allowed = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        if l.check_key(k, now).is_allowed() {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 100);
        assert_eq!((l.allowed(), l.limited()), (100, 1900));
    }
}

#[tokio::test(start_paused = true)]
async fn distinct_header_values_get_distinct_buckets() {
    let l = limiter(per_minute("per-key", vec![KeyPart::Header(X_KEY)], 2));
    let mut svc = RateLimitLayer::new([l.clone()]).layer(tower::service_fn(ok));
    assert_eq!(
        passed(&mut svc, 3, || request(None, Some("alice"))).await,
        2
    );
    assert_eq!(passed(&mut svc, 3, || request(None, Some("bob"))).await, 2);
    assert_eq!(
        passed(&mut svc, 1, || request(None, Some("alice"))).await,
        0
    );
    assert_eq!(l.keys(), 2);
}

#[tokio::test(start_paused = true)]
async fn address_and_header_combine_into_one_key() {
    let parts = vec![KeyPart::ClientIp, KeyPart::Header(X_KEY)];
    let l = limiter(per_minute("combo", parts, 2));
    let mut svc = RateLimitLayer::new([l.clone()]).layer(tower::service_fn(ok));
    let r = |ip: &'static str, key: &'static str| move || request(Some(ip), Some(key));
    assert_eq!(passed(&mut svc, 3, r("192.0.2.1", "alice")).await, 2);
    assert_eq!(passed(&mut svc, 3, r("192.0.2.2", "alice")).await, 2);
    assert_eq!(passed(&mut svc, 3, r("192.0.2.1", "bob")).await, 2);
    assert_eq!(passed(&mut svc, 3, r("2001:db8::1", "alice")).await, 2);
    assert_eq!(l.keys(), 4);
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key_are_skipped_or_share_the_default_bucket() {
    // Skip: the limit does not apply, and says nothing.
    let skip = limiter(per_minute("per-key", vec![KeyPart::Header(X_KEY)], 2));
    let mut svc = RateLimitLayer::new([skip.clone()]).layer(tower::service_fn(ok));
    for _ in 0..50 {
        let rsp = send(&mut svc, request(None, None)).await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(header(&rsp, "ratelimit"), None);
    }
    assert_eq!((skip.allowed(), skip.keys()), (0, 0));

    // Shared: all key-less requests take from one bucket with its own quota.
    let default = Quota::new(3, Duration::from_secs(60));
    let shared = limiter(
        per_minute("per-key", vec![KeyPart::Header(X_KEY)], 2)
            .with_unkeyed(Unkeyed::Shared(default)),
    );
    let mut svc = RateLimitLayer::new([shared.clone()]).layer(tower::service_fn(ok));
    let first = send(&mut svc, request(Some("192.0.2.1"), None)).await;
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some(r#""per-key";q=3;w=60"#)
    );
    assert_eq!(header(&first, "ratelimit"), Some(r#""per-key";r=2;t=20"#));
    assert_eq!(
        passed(&mut svc, 5, || request(Some("192.0.2.2"), None)).await,
        2
    );
    let refused = send(&mut svc, request(None, None)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        Some(r#""per-key";q=3;w=60"#)
    );
    // Keyed requests keep their own quota.
    assert_eq!(
        passed(&mut svc, 3, || request(None, Some("alice"))).await,
        2
    );
    assert_eq!(shared.keys(), 1);
}

#[tokio::test(start_paused = true)]
async fn refusals_and_allowed_responses_carry_the_numbers() {
    // 3 per minute: one request costs 20 s.
    let l = limiter(per_minute("api", vec![KeyPart::ClientIp], 3));
    let mut svc = RateLimitLayer::new([l]).layer(tower::service_fn(ok));
    let ip = || request(Some("198.51.100.4"), None);
    for (r, t) in [(2, 20), (1, 40), (0, 60)] {
        let rsp = send(&mut svc, ip()).await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(header(&rsp, "ratelimit-policy"), Some(r#""api";q=3;w=60"#));
        let want = format!(r#""api";r={r};t={t}"#);
        assert_eq!(header(&rsp, "ratelimit"), Some(want.as_str()));
    }
    let rsp = send(&mut svc, ip()).await;
    assert_eq!(rsp.status(), 429);
    assert_eq!(header(&rsp, "x-gatekit-error"), Some("rate-limited"));
    assert_eq!(header(&rsp, "retry-after"), Some("20"));
    assert_eq!(header(&rsp, "ratelimit-policy"), Some(r#""api";q=3;w=60"#));
    assert_eq!(header(&rsp, "ratelimit"), Some(r#""api";r=0;t=20"#));

    tokio::time::advance(Duration::from_millis(10_500)).await;
    let rsp = send(&mut svc, ip()).await;
    assert_eq!(header(&rsp, "retry-after"), Some("10"), "9.5 s, rounded up");
    tokio::time::advance(Duration::from_millis(9_500)).await;
    let rsp = send(&mut svc, ip()).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(header(&rsp, "ratelimit"), Some(r#""api";r=0;t=60"#));
}

#[tokio::test(start_paused = true)]
async fn sub_second_waits_round_up_to_one_second() {
    let quota = Quota::new(10, Duration::from_secs(1)).with_burst(1);
    let l = limiter(RateLimitConfig::new("fast", vec![], quota));
    let mut svc = RateLimitLayer::new([l.clone()]).layer(tower::service_fn(ok));
    assert_eq!(send(&mut svc, request(None, None)).await.status(), 200);
    let rsp = send(&mut svc, request(None, None)).await;
    assert_eq!(rsp.status(), 429);
    assert_eq!(header(&rsp, "retry-after"), Some("1"));
    assert_eq!(header(&rsp, "ratelimit-policy"), Some(r#""fast";q=10;w=1"#));
    let d = l.check_key(l.key(&request(None, None)).unwrap(), Instant::now());
    assert_eq!(d.retry_after(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_refusal_consumes_nothing_and_reports_the_longest_wait() {
    // `slow`: 1 per minute. `fast`: 2 per 10 s. Both for all traffic.
    let slow = limiter(per_minute("slow", vec![], 1));
    let fast = limiter(RateLimitConfig::new(
        "fast",
        vec![],
        Quota::new(2, Duration::from_secs(10)),
    ));
    let mut svc = RateLimitLayer::new([fast.clone(), slow.clone()]).layer(tower::service_fn(ok));
    let mut fast_only = RateLimitLayer::new([fast.clone()]).layer(tower::service_fn(ok));
    let get = || request(None, None);

    // Allowed: the tightest limit's headers (slow has 0 left, fast 1).
    let rsp = send(&mut svc, get()).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(header(&rsp, "ratelimit"), Some(r#""slow";r=0;t=60"#));
    assert_eq!(header(&rsp, "ratelimit-policy"), Some(r#""slow";q=1;w=60"#));

    // fast allows, slow refuses: fast gives the request back.
    for _ in 0..5 {
        let rsp = send(&mut svc, get()).await;
        assert_eq!(rsp.status(), 429);
        assert_eq!(header(&rsp, "retry-after"), Some("60"));
        assert_eq!(header(&rsp, "ratelimit"), Some(r#""slow";r=0;t=60"#));
    }
    assert_eq!((fast.allowed(), fast.limited()), (1, 0));
    assert_eq!((slow.allowed(), slow.limited()), (1, 5));
    let rsp = send(&mut fast_only, get()).await;
    assert_eq!(
        header(&rsp, "ratelimit"),
        Some(r#""fast";r=0;t=10"#),
        "fast still had one"
    );

    // Both refuse: the longest wait (slow: 60 s) wins over fast's 5 s.
    let rsp = send(&mut svc, get()).await;
    assert_eq!(header(&rsp, "retry-after"), Some("60"));
    assert_eq!(header(&rsp, "ratelimit-policy"), Some(r#""slow";q=1;w=60"#));
    // The other order: slow refuses first; fast, only asked, would wait less.
    let reversed = RateLimitLayer::new([slow.clone(), fast.clone()]);
    assert_eq!(reversed.limiters()[0].name(), "slow");
    let mut svc2 = reversed.layer(tower::service_fn(ok));
    let rsp = send(&mut svc2, get()).await;
    assert_eq!(header(&rsp, "retry-after"), Some("60"));
    assert_eq!(header(&rsp, "ratelimit"), Some(r#""slow";r=0;t=60"#));
    assert_eq!(slow.allowed(), 1);
}

#[test]
fn the_key_table_stays_bounded_and_refused_keys_are_not_evicted() {
    let quota = Quota::new(5, Duration::from_secs(60));
    let l = RateLimiter::new(RateLimitConfig::new("bounded", vec![], quota)).with_max_keys(1000);
    let now = Instant::now();
    // 32 hot keys, spent and refused (in about half the shards).
    let hot: Vec<Key> = (0..32u8).map(|i| l.key_from_bytes(&[b'h', i])).collect();
    for &k in &hot {
        for _ in 0..5 {
            assert!(l.check_key(k, now).is_allowed());
        }
    }
    let refused = l.check_key(hot[0], now);
    assert!(!refused.is_allowed());
    assert_eq!(refused.retry_after(), Duration::from_secs(12));
    // 3 × max_keys fresh keys, each owing one request.
    for i in 0..3000u32 {
        let d = l.check_key(l.key_from_bytes(&i.to_be_bytes()), now);
        assert!(d.is_allowed(), "a fresh key is allowed");
        assert!(l.keys() <= 1000);
        if i % 10 == 0 {
            for &k in &hot {
                assert_eq!(l.check_key(k, now), refused, "a hot key is still refused");
            }
        }
    }
    assert!(l.keys() <= 1000);
    assert!(
        l.keys() >= 800,
        "evictions free an eighth, not more: {}",
        l.keys()
    );
    assert!(l.evictions() >= 2000, "{} evictions", l.evictions());
}

#[test]
fn full_buckets_go_before_any_key_is_evicted() {
    let quota = Quota::new(5, Duration::from_secs(60));
    let l = RateLimiter::new(RateLimitConfig::new("bounded", vec![], quota)).with_max_keys(1000);
    let mut now = Instant::now();
    let mut fresh = (0u32..).map(|i| l.key_from_bytes(&i.to_be_bytes()));
    for key in fresh.by_ref().take(1000) {
        assert!(l.check_key(key, now).is_allowed());
    }
    // Shards fill unevenly: some already had to evict.
    let evicted = l.evictions();
    // Every 12 s (one request's cost) the buckets of the keys before are full again:
    // 2,000 more keys in rounds of 200 fit without evicting anything.
    for _ in 0..10 {
        now += Duration::from_secs(12);
        for key in fresh.by_ref().take(200) {
            assert!(l.check_key(key, now).is_allowed());
        }
        assert!(l.keys() <= 1000);
    }
    assert_eq!(l.evictions(), evicted);
}

#[test]
fn tables_grow_with_live_keys_not_with_every_key_seen() {
    let l = RateLimiter::new(per_minute("churn", vec![], 5));
    let mut now = Instant::now();
    let mut fresh = (0u32..).map(|i| l.key_from_bytes(&i.to_be_bytes()));
    // 20,000 distinct keys, 200 every 12 s: at most 200 owe anything at a time.
    for _ in 0..100 {
        for key in fresh.by_ref().take(200) {
            assert!(l.check_key(key, now).is_allowed());
        }
        now += Duration::from_secs(12);
    }
    assert!(l.keys() <= 1_000, "{} keys tracked", l.keys());
    assert_eq!(l.evictions(), 0);
}

#[tokio::test(start_paused = true)]
async fn sweep_forgets_full_buckets_only() {
    let l = RateLimiter::new(per_minute("sweep", vec![], 6));
    for i in 0..100u32 {
        l.check_key(l.key_from_bytes(&i.to_be_bytes()), Instant::now());
    }
    let owing = l.key_from_bytes(b"owing");
    for _ in 0..3 {
        l.check_key(owing, Instant::now());
    }
    // One request costs 10 s; `owing` owes 30 s.
    tokio::time::advance(Duration::from_secs(10)).await;
    l.sweep();
    assert_eq!(l.keys(), 1);
    assert_eq!(l.check_key(owing, Instant::now()).remaining(), 3);
}

// === matches ===

fn exact(v: &'static str) -> ValueMatch {
    ValueMatch::Exact(http::HeaderValue::from_static(v))
}

fn regex(p: &str) -> ValueMatch {
    ValueMatch::Regex(ValueRegex::new(p).unwrap())
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

/// Requests (of `n`) that pass through a service limited by `l` alone.
async fn passed_by(l: &Arc<RateLimiter>, n: usize, req: impl Fn() -> Request<Body>) -> usize {
    let mut svc = RateLimitLayer::new([l.clone()]).layer(tower::service_fn(ok));
    passed(&mut svc, n, req).await
}

#[tokio::test(start_paused = true)]
async fn an_exact_header_match_limits_only_that_value_in_one_bucket() {
    let l = limiter(
        per_minute("exact", vec![], 2)
            .with_matches(vec![ClientMatch::header(X_KEY, exact("gold"))]),
    );
    assert_eq!(passed_by(&l, 3, || request(None, Some("gold"))).await, 2);
    // Other values, a prefix, a different case and no header at all are not limited.
    assert_eq!(passed_by(&l, 5, || request(None, Some("silver"))).await, 5);
    assert_eq!(passed_by(&l, 5, || request(None, Some("gol"))).await, 5);
    assert_eq!(passed_by(&l, 5, || request(None, Some("GOLD"))).await, 5);
    assert_eq!(passed_by(&l, 5, || request(None, None)).await, 5);
    assert!(l.check(&request(None, Some("silver"))).is_none());
    // A repeated header is its values joined with `,`.
    let two = |a: &'static str, b: &'static str| {
        move || {
            let mut r = request(None, Some(a));
            r.headers_mut()
                .append(X_KEY, http::HeaderValue::from_static(b));
            r
        }
    };
    let joined = limiter(
        per_minute("joined", vec![], 1)
            .with_matches(vec![ClientMatch::header(X_KEY, exact("a,b"))]),
    );
    assert_eq!(passed_by(&joined, 2, two("a", "b")).await, 1);
    assert_eq!(passed_by(&joined, 3, two("a", "c")).await, 3);
    assert_eq!(passed_by(&joined, 3, || request(None, Some("a"))).await, 3);
}

#[tokio::test(start_paused = true)]
async fn a_regex_header_match_is_anchored() {
    let l = limiter(
        per_minute("regex", vec![], 2)
            .with_matches(vec![ClientMatch::header(X_KEY, regex("user-[0-9]+"))]),
    );
    assert_eq!(passed_by(&l, 3, || request(None, Some("user-1"))).await, 2);
    // Same bucket for every matching value (no key parts).
    assert_eq!(passed_by(&l, 1, || request(None, Some("user-22"))).await, 0);
    // A partial match is no match, at either end.
    assert_eq!(passed_by(&l, 4, || request(None, Some("xuser-1"))).await, 4);
    assert_eq!(passed_by(&l, 4, || request(None, Some("user-1x"))).await, 4);
    assert_eq!(passed_by(&l, 4, || request(None, None)).await, 4);
    assert!(ValueRegex::new("(").is_err());
    assert_eq!(
        ValueRegex::new("a+").unwrap(),
        ValueRegex::new("a+").unwrap()
    );
    assert_ne!(regex("a+"), regex("a*"));
}

#[tokio::test(start_paused = true)]
async fn an_inverted_match_limits_everything_else() {
    let l = limiter(per_minute("invert", vec![], 2).with_matches(vec![
        ClientMatch::header(X_KEY, exact("internal")).with_invert(true),
    ]));
    assert_eq!(
        passed_by(&l, 5, || request(None, Some("internal"))).await,
        5
    );
    // Other values and requests without the header share the one bucket.
    assert_eq!(passed_by(&l, 1, || request(None, Some("alice"))).await, 1);
    assert_eq!(passed_by(&l, 2, || request(None, None)).await, 1);
    assert_eq!(
        passed_by(&l, 1, || request(None, Some("internal"))).await,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_cidr_match_shares_one_bucket_across_its_clients() {
    let l = limiter(
        per_minute("cidr", vec![], 3)
            .with_matches(vec![ClientMatch::source_cidr(cidr("10.0.0.0/8"))]),
    );
    assert_eq!(
        passed_by(&l, 2, || request(Some("10.1.2.3"), None)).await,
        2
    );
    assert_eq!(
        passed_by(&l, 2, || request(Some("10.9.9.9"), None)).await,
        1
    );
    // An IPv4-mapped IPv6 client is its IPv4 address: inside, and out of quota.
    assert_eq!(
        passed_by(&l, 1, || request(Some("::ffff:10.0.0.1"), None)).await,
        0
    );
    // Outside the range, or with no client address: not limited.
    assert_eq!(
        passed_by(&l, 5, || request(Some("11.0.0.1"), None)).await,
        5
    );
    assert_eq!(
        passed_by(&l, 5, || request(Some("2001:db8::1"), None)).await,
        5
    );
    assert_eq!(passed_by(&l, 5, || request(None, None)).await, 5);
    assert_eq!(l.keys(), 0, "one bucket, no per-client keys");
}

#[tokio::test(start_paused = true)]
async fn a_cidr_match_with_the_client_address_key_gives_each_client_a_bucket() {
    let l = limiter(
        per_minute("cidr-distinct", vec![KeyPart::ClientIp], 2)
            .with_matches(vec![ClientMatch::source_cidr(cidr("192.168.0.0/16"))]),
    );
    assert_eq!(
        passed_by(&l, 3, || request(Some("192.168.0.1"), None)).await,
        2
    );
    assert_eq!(
        passed_by(&l, 3, || request(Some("192.168.7.7"), None)).await,
        2
    );
    assert_eq!(
        passed_by(&l, 5, || request(Some("192.169.0.1"), None)).await,
        5
    );
    assert_eq!(l.keys(), 2);
}

#[tokio::test(start_paused = true)]
async fn ipv6_ranges_match_ipv6_clients() {
    let l = limiter(
        per_minute("v6", vec![KeyPart::ClientIp], 1)
            .with_matches(vec![ClientMatch::source_cidr(cidr("2001:db8:1::/48"))]),
    );
    assert_eq!(
        passed_by(&l, 2, || request(Some("2001:db8:1::1"), None)).await,
        1
    );
    assert_eq!(
        passed_by(&l, 2, || request(Some("2001:db8:1:ff::2"), None)).await,
        1
    );
    assert_eq!(
        passed_by(&l, 3, || request(Some("2001:db8:2::1"), None)).await,
        3
    );
    assert_eq!(
        passed_by(&l, 3, || request(Some("10.0.0.1"), None)).await,
        3
    );
    // Host bits are dropped; a range in the IPv4-mapped block is the IPv4 range.
    assert_eq!(cidr("2001:db8:1::5/48"), cidr("2001:db8:1::/48"));
    assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
    assert!(!cidr("::/0").contains("10.0.0.1".parse().unwrap()));
    assert!(cidr("0.0.0.0/0").contains("::ffff:1.2.3.4".parse().unwrap()));
    assert!("10.0.0.0".parse::<Cidr>().is_err());
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    assert!(Cidr::new("::1".parse().unwrap(), 129).is_err());
}

#[tokio::test(start_paused = true)]
async fn every_match_must_hold_and_a_non_matching_request_takes_nothing() {
    let l = limiter(
        per_minute("and", vec![KeyPart::Header(X_KEY)], 1)
            .with_unkeyed(Unkeyed::Shared(Quota::new(1, Duration::from_secs(60))))
            .with_matches(vec![
                ClientMatch::source_cidr(cidr("10.0.0.0/8")),
                ClientMatch::header(HeaderName::from_static("x-tier"), exact("free")),
            ]),
    );
    let req = |ip: &'static str, tier: Option<&'static str>, key: Option<&'static str>| {
        move || {
            let mut r = request(Some(ip), key);
            if let Some(t) = tier {
                r.headers_mut()
                    .insert("x-tier", http::HeaderValue::from_static(t));
            }
            r
        }
    };
    assert_eq!(
        passed_by(&l, 2, req("10.0.0.1", Some("free"), Some("a"))).await,
        1
    );
    // Only one of the two holds: not limited, not even by the shared default bucket.
    assert_eq!(
        passed_by(&l, 4, req("11.0.0.1", Some("free"), Some("a"))).await,
        4
    );
    assert_eq!(
        passed_by(&l, 4, req("10.0.0.1", Some("paid"), None)).await,
        4
    );
    assert_eq!(passed_by(&l, 4, req("10.0.0.1", None, Some("a"))).await, 4);
    // Both hold but no key: the shared default bucket.
    assert_eq!(
        passed_by(&l, 2, req("10.0.0.1", Some("free"), None)).await,
        1
    );
    // key_bytes (the shared-store limits' entry point) honours the matches too.
    let mut out = vec![1, 2, 3];
    assert!(
        l.key_bytes(&req("11.0.0.1", Some("free"), Some("a"))(), &mut out)
            .is_none()
    );
    assert!(out.is_empty());
    assert!(
        l.key_bytes(&req("10.0.0.1", Some("free"), Some("a"))(), &mut out)
            .is_some()
    );
    assert!(!out.is_empty());
}
