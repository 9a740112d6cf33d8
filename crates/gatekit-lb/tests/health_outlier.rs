//! Passive outlier detection: outcomes in, ejections and returns out. Ejection times are
//! tested with paused tokio time.
#![allow(clippy::unwrap_used, missing_docs)]

mod health_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::client::{Client, ClientConfig, Transport};
use gatekit_core::{Backend, Body, Change, Endpoint, ErrorKind, classify};
use gatekit_lb::health::{
    CheckKind, HealthCheckConfig, HealthEvent, HealthEventKind, HealthEvents, HttpCheck,
};
use gatekit_lb::outlier::OutlierConfig;
use gatekit_lb::{
    Algorithm, HealthChecker, Outcome, OutcomeObserver, OutlierDetector, SharedHealth, Upstream,
    UpstreamConfig,
};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::time::Instant;

use health_support::*;

const MS: Duration = Duration::from_millis(1);

fn status(code: u16) -> Outcome {
    Outcome::status(StatusCode::from_u16(code).unwrap(), MS)
}

fn error(kind: ErrorKind) -> Outcome {
    Outcome::error(kind, MS)
}

/// `n` endpoints on made-up addresses.
fn set(n: u16) -> Vec<(Endpoint, SharedHealth)> {
    (1..=n)
        .map(|p| ep(SocketAddr::from(([127, 0, 0, 1], 40000 + p))))
        .collect()
}

fn feed(d: &OutlierDetector, (e, h): &(Endpoint, SharedHealth), outcome: Outcome, times: usize) {
    for _ in 0..times {
        d.on_outcome(e, h, outcome);
    }
}

/// The next event, at once (time is paused: it must already have been sent).
fn next(rx: &mut broadcast::Receiver<HealthEvent>) -> HealthEvent {
    rx.try_recv().unwrap()
}

/// Lets spawned timer tasks run after an `advance`.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// One real request to `addr`; its status.
async fn get(addr: SocketAddr) -> StatusCode {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "backend")
        .body(Empty::<Bytes>::new())
        .unwrap();
    send.send_request(req).await.unwrap().status()
}

#[tokio::test]
async fn backend_returning_5xx_is_ejected_returns_and_second_ejection_lasts_twice() {
    let backend = HttpBackend::start().await;
    backend.set_status(500);
    let target = ep(backend.addr);
    let detector = OutlierDetector::new(OutlierConfig::default().max_ejection_percent(100));
    detector.update(vec![target.clone()]);
    let mut events = detector.subscribe();
    let (e, h) = &target;

    // Real responses from a real backend, until the fifth 5xx ejects.
    for i in 1..=5 {
        let started = Instant::now();
        let code = get(backend.addr).await;
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !h.is_ejected(Instant::now()),
            "ejected after only {} 5xx",
            i - 1
        );
        detector.on_outcome(e, h, Outcome::status(code, started.elapsed()));
    }
    let ejected_at = Instant::now();
    assert!(h.is_ejected(ejected_at));
    assert!(!h.is_available(ejected_at));
    let ev = next(&mut events);
    assert_eq!(
        (ev.addr(), ev.kind()),
        (backend.addr, HealthEventKind::Ejected)
    );
    assert!(
        ev.reason().unwrap().contains("5 consecutive 5xx"),
        "{:?}",
        ev.reason()
    );
    assert_eq!(h.ejections(), 1);
    assert_eq!(h.consecutive_5xx(), 0, "counters reset on ejection");
    assert_eq!(detector.ejected_count(), 1);

    // From here on, time is the point: pause it.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(29)).await;
    settle().await;
    assert!(h.is_ejected(Instant::now()));
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));
    // Outcomes of requests still in flight while ejected change nothing.
    feed(&detector, &target, status(500), 3);
    assert_eq!(h.consecutive_5xx(), 0);

    // The deadline passes at 30 s (tokio timers fire on the next millisecond tick).
    tokio::time::advance(Duration::from_millis(1002)).await;
    settle().await;
    assert!(!h.is_ejected(Instant::now()));
    assert!(h.is_available(Instant::now()));
    let ev = next(&mut events);
    assert_eq!(
        (ev.addr(), ev.kind()),
        (backend.addr, HealthEventKind::Returned)
    );
    assert_eq!(detector.ejected_count(), 0);

    // Second ejection: 2 × base.
    feed(&detector, &target, status(503), 5);
    assert_eq!(next(&mut events).kind(), HealthEventKind::Ejected);
    assert_eq!(h.ejections(), 2);
    tokio::time::advance(Duration::from_secs(59)).await;
    settle().await;
    assert!(h.is_ejected(Instant::now()), "second ejection lasts 60 s");
    tokio::time::advance(Duration::from_millis(1002)).await;
    settle().await;
    assert!(!h.is_ejected(Instant::now()));
    assert_eq!(next(&mut events).kind(), HealthEventKind::Returned);
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_is_respected() {
    // 10 endpoints all failing, 10%: exactly one ejected.
    let endpoints = set(10);
    let detector = OutlierDetector::new(OutlierConfig::default());
    detector.update(endpoints.clone());
    let mut events = detector.subscribe();
    for target in &endpoints {
        feed(&detector, target, status(500), 5);
    }
    assert_eq!(detector.ejected_count(), 1);
    let first = next(&mut events);
    assert_eq!(first.kind(), HealthEventKind::Ejected);
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));

    // When it returns, the next failure of another endpoint (still at its threshold) is
    // ejected in its place.
    tokio::time::advance(Duration::from_millis(30_002)).await;
    settle().await;
    assert_eq!(next(&mut events).kind(), HealthEventKind::Returned);
    let other = endpoints
        .iter()
        .find(|(e, _)| e.addr() != first.addr())
        .unwrap();
    feed(&detector, other, status(500), 1);
    let ev = next(&mut events);
    assert_eq!(
        (ev.kind(), ev.addr()),
        (HealthEventKind::Ejected, other.0.addr())
    );
    assert_eq!(detector.ejected_count(), 1);

    // 20 endpoints at 10%: two.
    let endpoints = set(20);
    let detector = OutlierDetector::new(OutlierConfig::default());
    detector.update(endpoints.clone());
    for target in &endpoints {
        feed(&detector, target, status(502), 5);
    }
    assert_eq!(detector.ejected_count(), 2);

    // Envoy's rule: 3 endpoints at 10% allow none, unless always_eject_one.
    let endpoints = set(3);
    let detector = OutlierDetector::new(OutlierConfig::default());
    detector.update(endpoints.clone());
    for target in &endpoints {
        feed(&detector, target, status(500), 5);
    }
    assert_eq!(detector.ejected_count(), 0);
    let detector = OutlierDetector::new(OutlierConfig::default().always_eject_one(true));
    detector.update(endpoints.clone());
    for target in &endpoints {
        feed(&detector, target, status(500), 5);
    }
    assert_eq!(detector.ejected_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn success_in_between_resets_the_count() {
    let endpoints = set(1);
    let target = &endpoints[0];
    let detector = OutlierDetector::new(OutlierConfig::default().max_ejection_percent(100));
    detector.update(endpoints.clone());
    feed(&detector, target, status(500), 4);
    assert_eq!(target.1.consecutive_5xx(), 4);
    feed(&detector, target, status(200), 1);
    assert_eq!(target.1.consecutive_5xx(), 0);
    feed(&detector, target, status(500), 4);
    assert!(!target.1.is_ejected(Instant::now()));
    // A 4xx is the client's fault: it counts as success for the endpoint.
    feed(&detector, target, status(404), 1);
    feed(&detector, target, status(500), 4);
    assert!(!target.1.is_ejected(Instant::now()));
    // Gateway-side refusals count for nothing: neither reset nor failure.
    feed(&detector, target, error(ErrorKind::Overloaded), 3);
    assert_eq!(target.1.consecutive_5xx(), 4);
    feed(&detector, target, status(500), 1);
    assert!(target.1.is_ejected(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn gateway_errors_are_counted_separately() {
    let endpoints = set(1);
    let target = &endpoints[0];
    let config = OutlierConfig::default()
        .max_ejection_percent(100)
        .consecutive_5xx(None)
        .consecutive_gateway_errors(Some(3));
    let detector = OutlierDetector::new(config);
    detector.update(endpoints.clone());
    let mut events = detector.subscribe();

    // With the 5xx detector off, plain 500s never eject.
    feed(&detector, target, status(500), 20);
    assert!(!target.1.is_ejected(Instant::now()));
    assert_eq!(target.1.consecutive_5xx(), 20);
    assert_eq!(target.1.consecutive_gateway_errors(), 0);

    // A 500 between gateway errors resets only the gateway count.
    feed(&detector, target, error(ErrorKind::Connect), 2);
    feed(&detector, target, status(500), 1);
    assert_eq!(target.1.consecutive_gateway_errors(), 0);
    feed(&detector, target, error(ErrorKind::Connect), 1);
    feed(&detector, target, status(504), 1);
    assert_eq!(target.1.consecutive_gateway_errors(), 2);
    assert!(!target.1.is_ejected(Instant::now()));
    feed(&detector, target, error(ErrorKind::Connect), 1);
    assert!(target.1.is_ejected(Instant::now()));
    let ev = next(&mut events);
    assert_eq!(ev.kind(), HealthEventKind::Ejected);
    assert!(
        ev.reason()
            .unwrap()
            .contains("3 consecutive gateway errors"),
        "{:?}",
        ev.reason()
    );

    // With the gateway detector off, connect failures still count as 5xx.
    let endpoints = set(1);
    let target = &endpoints[0];
    let config = OutlierConfig::default()
        .max_ejection_percent(100)
        .consecutive_gateway_errors(None)
        .consecutive_5xx(Some(2));
    let detector = OutlierDetector::new(config);
    detector.update(endpoints.clone());
    feed(&detector, target, error(ErrorKind::Timeout), 1);
    feed(&detector, target, error(ErrorKind::UpstreamProtocol), 1);
    assert!(target.1.is_ejected(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn ejection_time_is_capped_and_the_multiplier_decays() {
    let endpoints = set(1);
    let target = &endpoints[0];
    let config = OutlierConfig::default()
        .max_ejection_percent(100)
        .base_ejection_time(Duration::from_secs(30))
        .max_ejection_time(Duration::from_secs(50));
    let detector = OutlierDetector::new(config);
    detector.update(endpoints.clone());
    let eject = || {
        feed(&detector, target, status(500), 5);
        assert!(target.1.is_ejected(Instant::now()));
        target.1.ejection_deadline().unwrap() - Instant::now()
    };
    let d1 = eject();
    assert!(
        d1 <= Duration::from_secs(30) && d1 > Duration::from_secs(29),
        "{d1:?}"
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    let d2 = eject();
    assert!(
        d2 <= Duration::from_secs(50) && d2 > Duration::from_secs(49),
        "capped: {d2:?}"
    );
    tokio::time::advance(Duration::from_secs(50)).await;
    settle().await;
    assert_eq!(target.1.ejections(), 2);
    // Un-ejected for max_ejection_time: the multiplier starts over.
    tokio::time::advance(Duration::from_secs(51)).await;
    settle().await;
    assert_eq!(target.1.ejections(), 0);
    let d3 = eject();
    assert!(d3 <= Duration::from_secs(30), "{d3:?}");
}

#[tokio::test(start_paused = true)]
async fn update_recounts_and_only_known_endpoints_are_ejected() {
    let endpoints = set(10);
    let detector = OutlierDetector::new(OutlierConfig::default());
    // Not in the set: never ejected.
    let stranger = ep(SocketAddr::from(([127, 0, 0, 1], 1)));
    feed(&detector, &stranger, status(500), 10);
    assert!(!stranger.1.is_ejected(Instant::now()));

    detector.update(endpoints.clone());
    feed(&detector, &endpoints[0], status(500), 5);
    feed(&detector, &endpoints[1], status(500), 5);
    assert!(endpoints[0].1.is_ejected(Instant::now()));
    assert!(
        !endpoints[1].1.is_ejected(Instant::now()),
        "10% of 10 is one"
    );

    // The ejected endpoint leaves the set (its ejection quota is freed); another joins.
    let mut next_set = endpoints[1..].to_vec();
    next_set.push(ep(SocketAddr::from(([127, 0, 0, 1], 2))));
    detector.update(next_set);
    assert_eq!(detector.ejected_count(), 0);
    feed(&detector, &endpoints[1], status(500), 1);
    assert!(endpoints[1].1.is_ejected(Instant::now()));
    assert_eq!(detector.snapshot().len(), 10);
    assert_eq!(detector.snapshot().iter().filter(|s| s.ejected).count(), 1);
}

#[tokio::test]
async fn checker_and_detector_share_one_event_stream_and_snapshot() {
    let backend = HttpBackend::start().await;
    backend.set_status(500);
    let target = ep(backend.addr);
    let tx = HealthEvents::new();
    let mut rx = tx.subscribe();
    let config = HealthCheckConfig::default()
        .interval(Duration::from_millis(50))
        .unhealthy_threshold(1)
        .kind(CheckKind::Http(HttpCheck::default()));
    let checker = HealthChecker::spawn_with_events(config, vec![target.clone()], tx.clone());
    let detector =
        OutlierDetector::with_events(OutlierConfig::default().always_eject_one(true), tx);
    detector.update(vec![target.clone()]);
    // No await since the spawn: the checker has not run yet, so the ejection comes first.
    feed(&detector, &target, error(ErrorKind::Connect), 5);
    let ev = next(&mut rx);
    assert_eq!(
        (ev.kind(), ev.addr()),
        (HealthEventKind::Ejected, backend.addr)
    );
    wait_event(
        &mut rx,
        backend.addr,
        HealthEventKind::BecameUnhealthy,
        Duration::from_secs(2),
    )
    .await;
    let snap = row(&checker, backend.addr);
    assert!(snap.ejected && !snap.active_healthy);
    assert_eq!(snap.ejections, 1);
    assert_eq!(detector.snapshot()[0].ejections, 1);
}

#[tokio::test(start_paused = true)]
async fn the_connect_failure_detector_counts_connect_failures_only() {
    let endpoints = set(2);
    let target = &endpoints[0];
    let detector = OutlierDetector::new(OutlierConfig::connect_failures_only());
    detector.update(endpoints.clone());
    let mut events = detector.subscribe();
    let h = &target.1;

    // What the endpoint answers never ejects: the 5xx and gateway detectors are off.
    feed(&detector, target, status(500), 20);
    feed(&detector, target, status(503), 20);
    assert!(!h.is_ejected(Instant::now()));
    assert_eq!(h.consecutive_connect_failures(), 0);

    // Any response resets the count, a 5xx included.
    feed(&detector, target, error(ErrorKind::Connect), 1);
    assert_eq!(h.consecutive_connect_failures(), 1);
    feed(&detector, target, status(502), 1);
    assert_eq!(h.consecutive_connect_failures(), 0);
    // A timeout or reset after sending neither counts nor resets; gateway-side refusals
    // count for nothing.
    feed(&detector, target, error(ErrorKind::Connect), 1);
    feed(&detector, target, error(ErrorKind::Timeout), 3);
    feed(&detector, target, error(ErrorKind::UpstreamProtocol), 3);
    feed(&detector, target, error(ErrorKind::Overloaded), 3);
    assert_eq!(h.consecutive_connect_failures(), 1);
    assert!(!h.is_ejected(Instant::now()));

    // The second connect failure in a row ejects, for 5 s.
    feed(&detector, target, error(ErrorKind::Connect), 1);
    assert!(h.is_ejected(Instant::now()));
    assert_eq!(h.consecutive_connect_failures(), 0, "reset on ejection");
    let ev = next(&mut events);
    assert_eq!(
        (ev.kind(), ev.addr()),
        (HealthEventKind::Ejected, target.0.addr())
    );
    assert!(
        ev.reason()
            .unwrap()
            .contains("2 consecutive connect failures"),
        "{:?}",
        ev.reason()
    );
    let left = h.ejection_deadline().unwrap() - Instant::now();
    assert!(
        left <= Duration::from_secs(5) && left > Duration::from_millis(4990),
        "{left:?}"
    );

    // Half of two: the other endpoint may not go while this one is out.
    feed(&detector, &endpoints[1], error(ErrorKind::Connect), 5);
    assert!(!endpoints[1].1.is_ejected(Instant::now()));
    assert_eq!(detector.ejected_count(), 1);

    tokio::time::advance(Duration::from_millis(5002)).await;
    settle().await;
    assert_eq!(next(&mut events).kind(), HealthEventKind::Returned);
    // Back: the other one's next connect failure (still over its threshold) ejects it.
    feed(&detector, &endpoints[1], error(ErrorKind::Connect), 1);
    assert!(endpoints[1].1.is_ejected(Instant::now()));
}

#[test]
fn connect_failures_only_is_the_documented_preset() {
    let c = OutlierConfig::connect_failures_only();
    assert_eq!(c.consecutive_5xx, None);
    assert_eq!(c.consecutive_gateway_errors, None);
    assert_eq!(c.consecutive_connect_failures, Some(2));
    assert_eq!(c.base_ejection_time, Duration::from_secs(5));
    assert_eq!(c.max_ejection_time, Duration::from_secs(60));
    assert_eq!(c.max_ejection_percent, 50);
    assert!(c.always_eject_one);
    // Off unless asked for; the builder clamps 0 to 1 as the others do.
    assert_eq!(OutlierConfig::default().consecutive_connect_failures, None);
    let c = OutlierConfig::default().consecutive_connect_failures(Some(0));
    assert_eq!(c.consecutive_connect_failures, Some(1));
}

/// A port nothing listens on: bound, then closed.
fn refused_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A round-robin `Upstream` over gatekit's client, observed by a detector with
/// `config`, as gatekit's gateway wires one.
fn observed_upstream(
    config: OutlierConfig,
    endpoints: &[SocketAddr],
) -> (
    Upstream<gatekit_core::client::EndpointClient>,
    Arc<OutlierDetector>,
) {
    let detector = Arc::new(OutlierDetector::new(config));
    let client = Client::new(ClientConfig::default());
    let up = Upstream::new(
        UpstreamConfig::new(Algorithm::RoundRobin).with_observer(detector.clone()),
        move |ep: &Endpoint| client.endpoint(ep.addr(), Transport::http1()),
    );
    up.apply(Change::Replace(
        endpoints.iter().map(|a| Endpoint::new(*a)).collect(),
    ));
    detector.update(up.endpoints());
    (up, detector)
}

/// One request through `backend`: its status, or the kind of its error.
async fn send(backend: &Backend) -> Result<StatusCode, ErrorKind> {
    let req = Request::get("/")
        .header("host", "backend")
        .body(Body::empty())
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), backend.send(req)).await {
        Ok(Ok(rsp)) => Ok(rsp.status()),
        Ok(Err(e)) => Err(classify(&*e)),
        Err(_) => panic!("no answer in 10 s"),
    }
}

#[tokio::test]
async fn a_refused_endpoint_is_ejected_after_two_connect_failures_and_tried_again_later() {
    let live = HttpBackend::start().await;
    let refused = refused_port();
    let (up, detector) = observed_upstream(
        OutlierConfig::connect_failures_only(),
        &[live.addr, refused],
    );
    let mut events = detector.subscribe();
    let backend = Backend::new(up.clone());
    let h = up.health_of(refused).unwrap();

    // Round robin alternates: the second request to the refused port ejects it.
    let mut failures = 0;
    for _ in 0..4 {
        match send(&backend).await {
            Ok(status) => assert_eq!(status, StatusCode::OK),
            Err(kind) => {
                assert_eq!(kind, ErrorKind::Connect);
                failures += 1;
            }
        }
    }
    assert_eq!(failures, 2);
    let ejected_at = Instant::now();
    assert!(h.is_ejected(ejected_at));
    let ev = next(&mut events);
    assert_eq!((ev.kind(), ev.addr()), (HealthEventKind::Ejected, refused));
    let deadline = h.ejection_deadline().unwrap();
    assert!(deadline - ejected_at <= Duration::from_secs(5));

    // Meanwhile every request goes to the live endpoint.
    let hits = live.hits();
    for _ in 0..20 {
        assert_eq!(send(&backend).await, Ok(StatusCode::OK));
    }
    assert_eq!(live.hits() - hits, 20);
    assert!(h.is_ejected(Instant::now()), "20 local requests took 5 s");

    // The ejection time, in paused time (real sockets only before and after).
    tokio::time::pause();
    let almost = deadline.saturating_duration_since(Instant::now());
    tokio::time::advance(almost.saturating_sub(Duration::from_millis(50))).await;
    settle().await;
    assert!(h.is_ejected(Instant::now()));
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));
    tokio::time::advance(Duration::from_millis(52)).await;
    settle().await;
    let ev = next(&mut events);
    assert_eq!((ev.kind(), ev.addr()), (HealthEventKind::Returned, refused));
    tokio::time::resume();

    // Tried again: two more refusals eject it again, for twice as long.
    let mut failures = 0;
    for _ in 0..4 {
        if send(&backend).await == Err(ErrorKind::Connect) {
            failures += 1;
        }
    }
    assert_eq!(failures, 2);
    assert_eq!(next(&mut events).kind(), HealthEventKind::Ejected);
    assert_eq!(h.ejections(), 2);
    let left = h.ejection_deadline().unwrap() - Instant::now();
    assert!(
        left > Duration::from_secs(5) && left <= Duration::from_secs(10),
        "{left:?}"
    );
}

#[tokio::test]
async fn panic_mode_still_sends_to_a_lone_ejected_endpoint() {
    let refused = refused_port();
    let (up, _detector) = observed_upstream(OutlierConfig::connect_failures_only(), &[refused]);
    let backend = Backend::new(up.clone());
    assert_eq!(send(&backend).await, Err(ErrorKind::Connect));
    assert_eq!(send(&backend).await, Err(ErrorKind::Connect));
    assert!(up.health_of(refused).unwrap().is_ejected(Instant::now()));
    // The balancer's aggregate view notices within 10 ms; no need to wait for it here.
    up.refresh_health();
    // Ejected, but 0 of 1 available is below the panic threshold: the request is still
    // sent (and refused), not failed with "no healthy endpoint".
    assert_eq!(send(&backend).await, Err(ErrorKind::Connect));
}

/// A sink's callback gets every event with no subscriber; a subscriber that comes after
/// an ejection reads it from the state and receives the changes from then on.
#[tokio::test(start_paused = true)]
async fn a_callback_sees_every_event_and_a_late_subscriber_sees_state_then_changes() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let events = HealthEvents::with_callback(move |e: &HealthEvent| {
        record.lock().unwrap().push((e.kind(), e.addr()));
    });
    let endpoints = set(2);
    let target = &endpoints[0];
    let addr = target.0.addr();
    let detector = OutlierDetector::with_events(
        OutlierConfig::default()
            .base_ejection_time(Duration::from_secs(1))
            .max_ejection_percent(100),
        events.clone(),
    );
    detector.update(endpoints.clone());
    feed(&detector, target, status(500), 5);
    assert_eq!(*seen.lock().unwrap(), [(HealthEventKind::Ejected, addr)]);

    // Subscribed after the ejection: the state says so; the return is received.
    let mut rx = events.subscribe();
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    let row = detector.snapshot().into_iter().find(|s| s.addr == addr);
    assert!(row.is_some_and(|s| s.ejected));
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    let ev = next(&mut rx);
    assert_eq!((ev.kind(), ev.addr()), (HealthEventKind::Returned, addr));
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the callback got the return too"
    );
}
