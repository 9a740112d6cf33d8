//! Redis decision latency on loopback: prints p50/p99/max of sequential decisions and
//! the throughput of concurrent ones (measured, not asserted; run with `--nocapture`).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use gatekit_core::ratelimit::{Quota, RateLimitConfig};
use gatekit_redis::RedisLimiter;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_decision_latency_on_loopback() {
    let redis = support::RedisServer::start();
    let limiter = Arc::new(
        RedisLimiter::open(
            &redis.url(),
            RateLimitConfig::new(
                "latency",
                vec![],
                Quota::new(1_000_000, Duration::from_secs(1)),
            ),
        )
        .unwrap()
        .with_timeout(Duration::from_secs(1)),
    );
    let keys: Vec<_> = (0..100u32)
        .map(|i| limiter.key_from_bytes(&i.to_be_bytes()))
        .collect();
    // Warm up: connect and load the script.
    limiter.decide_in_redis(&keys[0]).await.unwrap();

    let mut samples = Vec::with_capacity(2_000);
    for i in 0..2_000 {
        let start = Instant::now();
        limiter
            .decide_in_redis(&keys[i % keys.len()])
            .await
            .unwrap();
        samples.push(start.elapsed());
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "redis decision latency, sequential, loopback: p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        samples[samples.len() - 1]
    );

    // 64 tasks in flight on the one multiplexed connection.
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let limiter = limiter.clone();
            let key = keys[t % keys.len()].clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    limiter.decide_in_redis(&key).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "redis decisions, 64 concurrent: {:.0}/s ({} in {elapsed:?})",
        12_800.0 / elapsed.as_secs_f64(),
        12_800
    );
}
