//! `Router::call` end to end over an in-process backend that answers at once: matching,
//! the rule's stack (proxy headers, filters, timeouts, weighted choice) and the erased
//! futures, with allocation counts per request.
//!
//! Run: `cargo bench -p gatekit-core --bench router`
//!
//! The request is built outside the timed section; what is counted is what the router
//! and the rule's stack allocate (plus the backend's own boxed future and the
//! `X-Request-Id` value, which every proxied request pays).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use divan::{Bencher, black_box};
use futures_util::FutureExt;
use gatekit_core::route::{BackendRef, Filter, HeaderModifier, Route, RouteId, Rule};
use gatekit_core::{Backend, Body, BoxError, RouteTable, Router};
use tower::Service;

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

fn router(filters: bool, timeouts: bool) -> Router {
    Router::new(table(filters, timeouts))
}

/// The request's listener (`api.example.com`) among four on the port (the conformance
/// test's listener isolation set-up), picked by host before matching. (No TLS server
/// name: the misdirected-request check is one more pick of the same kind.)
fn listeners_router() -> Router {
    let port = gatekit_core::PortTable::new([
        (None, table(false, false)),
        (Some("*.example.com"), table(false, false)),
        (Some("*.foo.example.com"), table(false, false)),
        (Some("api.example.com"), table(false, false)),
    ])
    .unwrap();
    Router::new(port)
}

fn table(filters: bool, timeouts: bool) -> RouteTable {
    let svc = tower::service_fn(|_req: http::Request<Body>| async {
        Ok::<_, BoxError>(http::Response::new(Body::empty()))
    });
    let mut backends = HashMap::new();
    backends.insert("b".to_owned(), Backend::new(svc));
    let mut rule = Rule::default();
    rule.backends.push(BackendRef::new("b", 1));
    if filters {
        let mut m = HeaderModifier::default();
        m.set.push(("x-env".into(), "bench".into()));
        rule = rule.with_filter(Filter::ResponseHeaderModifier(m));
    }
    if timeouts {
        rule.timeouts.request = Some(Duration::from_secs(10));
        rule.timeouts.backend_request = Some(Duration::from_secs(5));
    }
    let mut route = Route::new(RouteId::new("default", "r"));
    route.hostnames.push("api.example.com".into());
    route.rules.push(rule);
    RouteTable::build(vec![route], &backends).unwrap()
}

fn request() -> http::Request<Body> {
    http::Request::get("/v1/items")
        .header(http::header::HOST, "api.example.com")
        .header(http::header::USER_AGENT, "bench/1.0")
        .header("x-request-id", "fixed")
        .body(Body::empty())
        .unwrap()
}

fn bench(bencher: Bencher<'_, '_>, filters: bool, timeouts: bool) {
    run(bencher, router(filters, timeouts), request);
}

fn run(bencher: Bencher<'_, '_>, mut router: Router, request: fn() -> http::Request<Body>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let rsp = router.call(request()).now_or_never().unwrap().unwrap();
    assert_eq!(rsp.status(), 200);
    bencher
        .with_inputs(request)
        .bench_local_values(|req| black_box(router.call(req).now_or_never()));
}

#[divan::bench]
fn listeners(bencher: Bencher<'_, '_>) {
    run(bencher, listeners_router(), request);
}

#[divan::bench]
fn plain(bencher: Bencher<'_, '_>) {
    bench(bencher, false, false);
}

#[divan::bench]
fn response_filter(bencher: Bencher<'_, '_>) {
    bench(bencher, true, false);
}

#[divan::bench]
fn timeouts(bencher: Bencher<'_, '_>) {
    bench(bencher, false, true);
}
