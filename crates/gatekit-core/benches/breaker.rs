//! A request through the circuit breaker around a service that answers at once: the
//! cost of taking and giving back the slots, per request, with allocation counts, beside
//! the bare service.
//!
//! Run: `cargo bench -p gatekit-core --bench breaker`
//!
//! Each iteration polls readiness, calls, polls the response future once and drops the
//! response (which gives the slots back), so the whole life of a request's slots is
//! timed. The request is built outside the timed section.
#![allow(clippy::unwrap_used)]

use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Waker};

use divan::{Bencher, black_box};
use futures_util::FutureExt;
use gatekit_core::breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use gatekit_core::retry::Attempt;
use gatekit_core::{Body, BoxError};
use http::{Request, Response};
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

/// A ready service answering at once, with an empty body or a one-buffer body.
#[derive(Clone, Copy)]
struct Answer {
    full: bool,
}

impl Service<Request<Body>> for Answer {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Ready<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        let body = if self.full {
            Body::from("ok")
        } else {
            Body::empty()
        };
        ready(Ok(Response::new(body)))
    }
}

fn request() -> Request<Body> {
    Request::get("/v1/items").body(Body::empty()).unwrap()
}

fn retry() -> Request<Body> {
    let mut req = request();
    req.extensions_mut().insert(Attempt(2));
    req
}

fn limits(
    parallel: Option<u32>,
    pending: Option<u32>,
    retries: Option<u32>,
) -> CircuitBreakerConfig {
    let mut config = CircuitBreakerConfig::default();
    config.max_parallel_requests = parallel;
    config.max_pending_requests = pending;
    config.max_parallel_retries = retries;
    config
}

fn run<S>(bencher: Bencher<'_, '_>, mut svc: S, make: fn() -> Request<Body>, ok: bool)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let rsp = svc.call(make()).now_or_never().unwrap();
    assert_eq!(rsp.is_ok(), ok);
    bencher.with_inputs(make).bench_local_values(|req| {
        let _ = svc.poll_ready(&mut cx);
        drop(black_box(svc.call(req).now_or_never()));
    });
}

fn breaker(config: CircuitBreakerConfig) -> CircuitBreakerLayer {
    CircuitBreakerLayer::new(Arc::new(CircuitBreaker::new("default/bench/0/b", config)))
}

/// The service alone, empty body: the baseline.
#[divan::bench]
fn bare(bencher: Bencher<'_, '_>) {
    run(bencher, Answer { full: false }, request, true);
}

/// Through a breaker without thresholds (counted only).
#[divan::bench]
fn breaker_no_limits(bencher: Bencher<'_, '_>) {
    let svc = breaker(CircuitBreakerConfig::default()).layer(Answer { full: false });
    run(bencher, svc, request, true);
}

/// Through a breaker with parallel, pending and retry limits that are not reached.
#[divan::bench]
fn breaker_limits(bencher: Bencher<'_, '_>) {
    let svc = breaker(limits(Some(1024), Some(64), Some(3))).layer(Answer { full: false });
    run(bencher, svc, request, true);
}

/// A retry (`Attempt(2)`): a retry slot too.
#[divan::bench]
fn breaker_retry(bencher: Bencher<'_, '_>) {
    let svc = breaker(limits(Some(1024), Some(64), Some(3))).layer(Answer { full: false });
    run(bencher, svc, retry, true);
}

/// The service alone, with a one-buffer body.
#[divan::bench]
fn bare_full_body(bencher: Bencher<'_, '_>) {
    run(bencher, Answer { full: true }, request, true);
}

/// A body that has not ended with the head: the breaker wraps it to hold the slot.
#[divan::bench]
fn breaker_full_body(bencher: Bencher<'_, '_>) {
    let svc = breaker(limits(Some(1024), Some(64), Some(3))).layer(Answer { full: true });
    run(bencher, svc, request, true);
}

/// Refused at once (`max_parallel_requests: 0`): the error with its two headers.
#[divan::bench]
fn breaker_refused(bencher: Bencher<'_, '_>) {
    let svc = breaker(limits(Some(0), None, None)).layer(Answer { full: false });
    run(bencher, svc, request, false);
}
