//! Active health checks against real backends on 127.0.0.1 (real time, short intervals:
//! real sockets are the point here).
#![allow(clippy::unwrap_used, missing_docs)]

mod health_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gatekit_lb::health::{CheckKind, GrpcCheck, HealthCheckConfig, HealthEventKind, HttpCheck};
use gatekit_lb::{HealthChecker, SharedHealth};
use tokio::sync::watch;
use tokio::time::Instant;

use health_support::*;

const INTERVAL: Duration = Duration::from_millis(50);

fn fast(kind: CheckKind) -> HealthCheckConfig {
    HealthCheckConfig::default()
        .interval(INTERVAL)
        .jitter(0.1)
        .timeout(Duration::from_millis(500))
        .kind(kind)
}

#[tokio::test]
async fn http_backend_that_fails_leaves_within_threshold_and_rejoins() {
    let backend = HttpBackend::start().await;
    let (endpoint, health) = ep(backend.addr);
    let config = fast(CheckKind::Http(HttpCheck::default().path("/healthz")))
        .unhealthy_threshold(3)
        .healthy_threshold(2);
    let checker = HealthChecker::spawn(config, vec![(endpoint, health.clone())]);
    let mut events = checker.subscribe();
    wait_until("two passed checks", Duration::from_secs(2), || {
        row(&checker, backend.addr).consecutive_successes >= 2
    })
    .await;
    assert!(health.is_active_healthy());

    backend.set_status(500);
    let flipped = Instant::now();
    let (ev, at) = wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(3),
    )
    .await;
    let elapsed = at - flipped;
    // Three failed checks need at least two waits of interval × 0.9 between them ...
    assert!(
        elapsed >= INTERVAL.mul_f64(0.9 * 2.0),
        "left too early: {elapsed:?}"
    );
    // ... and at most (threshold + 1) waits of interval × 1.1 (the check in flight at the
    // flip may pass), plus check time and scheduling slack on a loaded machine.
    assert!(
        elapsed <= INTERVAL.mul_f64(1.1 * 4.0) + Duration::from_millis(400),
        "left too late: {elapsed:?}"
    );
    assert!(!health.is_active_healthy());
    assert!(!health.is_available(Instant::now()));
    assert!(ev.reason().unwrap().contains("500"), "{:?}", ev.reason());
    let snap = row(&checker, backend.addr);
    assert!(!snap.active_healthy);
    assert!(snap.consecutive_failures >= 3);
    assert_eq!(snap.consecutive_successes, 0);
    assert!(snap.last_error.as_deref().unwrap().contains("500"));

    backend.set_status(204);
    let recovered = Instant::now();
    let (_, at) = wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameHealthy,
        Duration::from_secs(3),
    )
    .await;
    let elapsed = at - recovered;
    assert!(
        elapsed >= INTERVAL.mul_f64(0.9),
        "rejoined too early: {elapsed:?}"
    );
    assert!(
        elapsed <= INTERVAL.mul_f64(1.1 * 3.0) + Duration::from_millis(400),
        "rejoined too late: {elapsed:?}"
    );
    assert!(health.is_available(Instant::now()));
}

#[tokio::test]
async fn expected_status_ranges_are_honoured() {
    // Default ranges accept a redirect; 200..=299 does not.
    let backend = HttpBackend::start().await;
    backend.set_status(302);
    let (endpoint, health) = ep(backend.addr);
    let strict = HttpCheck::default().expected_statuses([200..=299]);
    let checker = HealthChecker::spawn(
        fast(CheckKind::Http(strict)).unhealthy_threshold(1),
        vec![(endpoint, health.clone())],
    );
    let mut events = checker.subscribe();
    let (ev, _) = wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(2),
    )
    .await;
    assert!(ev.reason().unwrap().contains("302"));
    drop(checker);

    // Odd ranges: only 204 and 418 pass; an endpoint starting unhealthy turns healthy on
    // its first 418 and unhealthy again on a 200.
    let (endpoint, health) = ep(backend.addr);
    backend.set_status(418);
    let odd = HttpCheck::default().expected_statuses([204..=204, 418..=418]);
    let config = fast(CheckKind::Http(odd))
        .start_healthy(false)
        .unhealthy_threshold(2);
    let checker = HealthChecker::spawn(config, vec![(endpoint, health.clone())]);
    assert!(
        !health.is_active_healthy(),
        "start_healthy(false) starts unhealthy"
    );
    let mut events = checker.subscribe();
    wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameHealthy,
        Duration::from_secs(2),
    )
    .await;
    assert!(health.is_active_healthy());
    backend.set_status(200);
    let (ev, _) = wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(2),
    )
    .await;
    assert!(ev.reason().unwrap().contains("200"));
}

#[tokio::test]
async fn timeout_counts_as_failure() {
    let silent = SilentBackend::start().await;
    let (endpoint, health) = ep(silent.addr);
    let timeout = Duration::from_millis(100);
    let config = fast(CheckKind::Http(HttpCheck::default()))
        .timeout(timeout)
        .unhealthy_threshold(2);
    let started = Instant::now();
    let checker = HealthChecker::spawn(config, vec![(endpoint, health.clone())]);
    let mut events = checker.subscribe();
    let (ev, at) = wait_event(
        &mut events,
        silent.addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(3),
    )
    .await;
    assert!(
        at - started >= timeout * 2,
        "two timed-out checks take two timeouts"
    );
    assert!(
        ev.reason().unwrap().contains("timed out"),
        "{:?}",
        ev.reason()
    );
    assert!(!health.is_active_healthy());
}

#[tokio::test]
async fn h2c_http_check_follows_status() {
    let backend = HttpBackend::start().await;
    let (endpoint, health) = ep(backend.addr);
    let check = HttpCheck::default().http2(true).host("svc.example");
    let checker = HealthChecker::spawn(
        fast(CheckKind::Http(check)).unhealthy_threshold(1),
        vec![(endpoint, health.clone())],
    );
    let mut events = checker.subscribe();
    wait_until("an h2c check", Duration::from_secs(2), || {
        backend.hits() >= 2
    })
    .await;
    assert!(health.is_active_healthy());
    assert_eq!(row(&checker, backend.addr).last_error, None);
    backend.set_status(503);
    let (ev, _) = wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(2),
    )
    .await;
    assert!(ev.reason().unwrap().contains("503"));
}

#[tokio::test]
async fn tcp_port_that_closes_is_detected_and_reopened_rejoins() {
    let mut backend = TcpBackend::start();
    let addr = backend.addr;
    let (endpoint, health) = ep(addr);
    let config = fast(CheckKind::Tcp)
        .unhealthy_threshold(2)
        .healthy_threshold(2);
    let checker = HealthChecker::spawn(config, vec![(endpoint, health.clone())]);
    let mut events = checker.subscribe();
    wait_until("two passed connects", Duration::from_secs(2), || {
        row(&checker, addr).consecutive_successes >= 2
    })
    .await;

    backend.close();
    let (ev, _) = wait_event(
        &mut events,
        addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        ev.reason().unwrap().contains("connect"),
        "{:?}",
        ev.reason()
    );
    assert!(!health.is_active_healthy());

    backend.open();
    assert_eq!(backend.addr, addr, "reopened on the same port");
    wait_event(
        &mut events,
        addr,
        HealthEventKind::BecameHealthy,
        Duration::from_secs(2),
    )
    .await;
    assert!(health.is_active_healthy());
}

#[tokio::test]
async fn grpc_health_serving_flips_verdict() {
    let backend = GrpcBackend::start().await;
    let (endpoint, health) = ep(backend.addr);
    let kind = CheckKind::Grpc(GrpcCheck::default().service("shop.Cart"));
    let config = fast(kind).unhealthy_threshold(2).healthy_threshold(2);
    let checker = HealthChecker::spawn(config, vec![(endpoint, health.clone())]);
    let mut events = checker.subscribe();
    wait_until("two SERVING answers", Duration::from_secs(2), || {
        row(&checker, backend.addr).consecutive_successes >= 2
    })
    .await;
    assert_eq!(backend.last_service.lock().as_deref(), Some("shop.Cart"));

    backend.set_mode(NOT_SERVING);
    let (ev, _) = wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        ev.reason().unwrap().contains("not SERVING"),
        "{:?}",
        ev.reason()
    );

    backend.set_mode(SERVING);
    wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameHealthy,
        Duration::from_secs(2),
    )
    .await;

    // A trailers-only error (grpc-status 5, unknown service) fails too.
    backend.set_mode(UNKNOWN_SERVICE);
    let (ev, _) = wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        ev.reason().unwrap().contains("grpc-status 5"),
        "{:?}",
        ev.reason()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_in_flight_are_bounded_across_endpoints() {
    let stats = Arc::new(Stats::default());
    let mut backends = Vec::new();
    for _ in 0..100 {
        let b = HttpBackend::with_stats(stats.clone()).await;
        b.delay_ms.store(20, Ordering::SeqCst);
        backends.push(b);
    }
    let set = backends.iter().map(|b| ep(b.addr)).collect();
    let config = fast(CheckKind::Http(HttpCheck::default()))
        .interval(Duration::from_millis(10))
        .timeout(Duration::from_secs(5))
        .max_concurrent_checks(4);
    let checker = HealthChecker::spawn(config, set);
    wait_until("150 checks", Duration::from_secs(10), || {
        stats.hits.load(Ordering::SeqCst) >= 150
    })
    .await;
    let max = stats.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 4, "{max} checks in flight at once, limit 4");
    assert_eq!(max, 4, "the limit is used, not just respected");
    assert!(checker.snapshot().iter().all(|s| s.active_healthy));
}

#[tokio::test]
async fn checker_follows_set_changes() {
    let (a, b, c) = (
        HttpBackend::start().await,
        HttpBackend::start().await,
        HttpBackend::start().await,
    );
    let (ea, ha) = ep(a.addr);
    let (eb, hb) = ep(b.addr);
    let checker = HealthChecker::spawn(
        fast(CheckKind::Http(HttpCheck::default())),
        vec![(ea.clone(), ha.clone()), (eb, hb)],
    );
    wait_until("A and B checked", Duration::from_secs(2), || {
        row(&checker, a.addr).consecutive_successes >= 3 && b.hits() >= 1
    })
    .await;
    assert_eq!(c.hits(), 0);
    let a_before = row(&checker, a.addr).consecutive_successes;

    checker.update(vec![(ea, ha), ep(c.addr)]);
    // A's loop was kept: its counter did not start over.
    assert!(row(&checker, a.addr).consecutive_successes >= a_before);
    let addrs: Vec<_> = checker.snapshot().iter().map(|s| s.addr).collect();
    assert!(addrs.contains(&a.addr) && addrs.contains(&c.addr) && !addrs.contains(&b.addr));

    wait_until("C checked", Duration::from_secs(2), || c.hits() >= 2).await;
    // A check of B in flight at the update may still land; after that, none.
    let b_after = b.hits();
    let a_mid = a.hits();
    wait_until("A checked 4 more times", Duration::from_secs(2), || {
        a.hits() >= a_mid + 4
    })
    .await;
    assert_eq!(b.hits(), b_after, "removed endpoint still checked");
    assert!(row(&checker, a.addr).consecutive_successes >= a_before + 4);
}

#[tokio::test]
async fn follow_tracks_a_generation_watch_and_drop_stops_checks() {
    let (a, b) = (HttpBackend::start().await, HttpBackend::start().await);
    let set = Arc::new(parking_lot::Mutex::new(vec![ep(a.addr)]));
    let (tx, rx) = watch::channel(0u64);
    let checker = HealthChecker::spawn(fast(CheckKind::Http(HttpCheck::default())), Vec::new());
    let s = set.clone();
    checker.follow(rx, move || s.lock().clone());
    wait_until("A checked", Duration::from_secs(2), || a.hits() >= 1).await;
    assert_eq!(b.hits(), 0);

    set.lock().push(ep(b.addr));
    tx.send(1).unwrap();
    wait_until(
        "B checked after the generation bump",
        Duration::from_secs(2),
        || b.hits() >= 1,
    )
    .await;
    assert_eq!(checker.snapshot().len(), 2);

    drop(checker);
    // A check in flight at the drop may still land; after that, none.
    tokio::time::sleep(INTERVAL * 2).await;
    let (ha, hb) = (a.hits(), b.hits());
    tokio::time::sleep(INTERVAL * 6).await;
    assert_eq!(
        (a.hits(), b.hits()),
        (ha, hb),
        "checks continued after drop"
    );
}

#[tokio::test]
async fn unchanged_address_with_new_health_carries_the_verdict() {
    let backend = HttpBackend::start().await;
    backend.set_status(500);
    let (endpoint, health) = ep(backend.addr);
    let checker = HealthChecker::spawn(
        fast(CheckKind::Http(HttpCheck::default())).unhealthy_threshold(1),
        vec![(endpoint.clone(), health.clone())],
    );
    let mut events = checker.subscribe();
    wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(2),
    )
    .await;
    let fresh = SharedHealth::new();
    checker.update(vec![(endpoint, fresh.clone())]);
    assert!(
        !fresh.is_active_healthy(),
        "verdict copied into the new health"
    );
    backend.set_status(200);
    wait_event(
        &mut events,
        backend.addr,
        HealthEventKind::BecameHealthy,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        fresh.is_active_healthy(),
        "the loop writes to the new health"
    );
}
