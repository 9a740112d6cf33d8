//! Cost of reporting one request outcome to the outlier detector (the request-path part of
//! health checking): `cargo bench -p gatekit-lb --bench outlier`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use gatekit_core::{Endpoint, ErrorKind};
use gatekit_lb::outlier::OutlierConfig;
use gatekit_lb::{Outcome, OutcomeObserver, OutlierDetector, SharedHealth};
use http::StatusCode;

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

fn setup(config: OutlierConfig) -> (OutlierDetector, Endpoint, SharedHealth) {
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let (ep, health) = (Endpoint::new(addr), SharedHealth::new());
    let detector = OutlierDetector::new(config);
    detector.update(vec![(ep.clone(), health.clone())]);
    (detector, ep, health)
}

/// A 200: the common case (counters already zero: loads only).
#[divan::bench]
fn success(b: divan::Bencher<'_, '_>) {
    let (d, ep, h) = setup(OutlierConfig::default());
    let outcome = Outcome::status(StatusCode::OK, Duration::from_millis(3));
    b.bench_local(|| d.on_outcome(divan::black_box(&ep), &h, outcome));
}

/// A 500 that is counted but never ejects (detectors disabled, counters still kept).
#[divan::bench]
fn server_error_counted(b: divan::Bencher<'_, '_>) {
    let config = OutlierConfig::default()
        .consecutive_5xx(None)
        .consecutive_gateway_errors(None);
    let (d, ep, h) = setup(config);
    let outcome = Outcome::status(StatusCode::INTERNAL_SERVER_ERROR, Duration::from_millis(3));
    b.bench_local(|| d.on_outcome(divan::black_box(&ep), &h, outcome));
}

/// A connect failure (5xx and gateway counters), never ejecting.
#[divan::bench]
fn connect_error_counted(b: divan::Bencher<'_, '_>) {
    let config = OutlierConfig::default()
        .consecutive_5xx(None)
        .consecutive_gateway_errors(None);
    let (d, ep, h) = setup(config);
    let outcome = Outcome::error(ErrorKind::Connect, Duration::from_millis(3));
    b.bench_local(|| d.on_outcome(divan::black_box(&ep), &h, outcome));
}

/// A failure over the threshold whose ejection the max-percent rule refuses (10 % of a
/// one-endpoint set): the lock-free pre-check path.
#[divan::bench]
fn failure_refused_by_max_percent(b: divan::Bencher<'_, '_>) {
    let (d, ep, h) = setup(OutlierConfig::default().consecutive_5xx(Some(1)));
    let outcome = Outcome::status(StatusCode::BAD_GATEWAY, Duration::from_millis(3));
    b.bench_local(|| d.on_outcome(divan::black_box(&ep), &h, outcome));
}
