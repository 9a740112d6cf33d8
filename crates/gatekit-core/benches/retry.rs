//! The overhead of `Retry` per request around a ready inner service that answers at
//! once (no retry needed), with allocation counts: a GET (nothing kept for replay but
//! the head) and a POST with a 1 KiB body (the body is teed: one kept frame). Side by
//! side: a policy that keeps a copy (`retry`) and gatekit's default, which retries only
//! requests that never left and keeps nothing (`unsent_only`).
//!
//! Run: `cargo bench -p gatekit-core --bench retry`
//!
//! Each `*_bare` case is the inner service alone, doing the same work (reading the
//! request body to its end): the overhead of the layer is the difference. The request
//! is built outside the timed section from shared buffers (static header values, URI
//! and body), as hyper hands them over: slices of its read buffer, whose clones are
//! reference counts, not copies.
//!
//! Medians on the reference machine (2 cores), overhead over `bare`:
//!
//! | case | ns | allocations |
//! |---|---|---|
//! | `retry`, GET | +215 | 8: the head's copy (3: header map), `TriedEndpoints` (1), the extensions map and our two extensions (4; with extensions already there, 2 plus a copy of them) |
//! | `retry`, POST 1 KiB | +315 | 10: the same, plus the replay state and its box as a `Body` (the kept frame is inline) |
//! | `retry_budget` | +35 more | none more (one short lock per request) |
//! | `unsent_only` (`RetryPolicy::unsent_once()`, the default) | +30 | none: the request goes as it came (no copy, no `Attempt`, no `TriedEndpoints`); a retry takes it back from the error |
//! | `unsent_only_budget` | +25 more | none more |
//! | `no_retries` (`attempts: 0`) | +20 | none |
//!
//! `unsent_only` does the pass-through's work (the attempt counter) plus one `Arc`
//! increment and decrement (the spare service kept for a retry): under callgrind, 50
//! instructions more than `no_retries` and 3,200 fewer than `retry`, per request. On a
//! busy 2-core machine its medians vary with the load, +30 to +50 ns over `bare` like
//! the pass-through's +30 to +45; compare within one run.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::Bytes;
use divan::{Bencher, black_box};
use futures_util::FutureExt;
use gatekit_core::retry::{RetryBudget, RetryBudgetConfig, RetryLayer, RetryOn, RetryPolicy};
use gatekit_core::{Body, BoxError};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::BodyExt;
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

static KIB: [u8; 1024] = [b'x'; 1024];

fn request(post: bool) -> Request<Body> {
    let body = if post {
        Body::full(Bytes::from_static(&KIB))
    } else {
        Body::empty()
    };
    let mut req = Request::new(body);
    *req.uri_mut() = Uri::from_static("/v1/items");
    if post {
        *req.method_mut() = http::Method::POST;
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1024"));
    }
    let h = req.headers_mut();
    h.insert(header::HOST, HeaderValue::from_static("api.example.com"));
    h.insert(header::USER_AGENT, HeaderValue::from_static("bench/1.0"));
    h.insert("x-request-id", HeaderValue::from_static("fixed"));
    req
}

/// A ready inner service that reads the request body and answers 200 at once (its
/// future is `Ready`, no allocation).
fn inner() -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = BoxError,
    Future = std::future::Ready<Result<Response<Body>, BoxError>>,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|req: Request<Body>| {
        let mut body = req.into_body();
        while let Some(Some(Ok(frame))) = body.frame().now_or_never() {
            black_box(frame);
        }
        std::future::ready(Ok(Response::new(Body::empty())))
    })
}

fn policy(attempts: u32) -> Arc<RetryPolicy> {
    let mut on = RetryOn::default();
    on.unsent = true;
    on.gateway_error = true;
    Arc::new(RetryPolicy::new(attempts, on))
}

fn run<S>(bencher: Bencher<'_, '_>, mut svc: S, post: bool)
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let rsp = svc.call(request(post)).now_or_never().unwrap().unwrap();
    assert_eq!(rsp.status(), 200);
    bencher
        .with_inputs(|| request(post))
        .bench_local_values(|req| black_box(svc.call(req).now_or_never()));
}

#[divan::bench(args = [false, true])]
fn bare(bencher: Bencher<'_, '_>, post: bool) {
    run(bencher, inner(), post);
}

/// Two retries of unsent failures and 502/503/504, no budget.
#[divan::bench(args = [false, true])]
fn retry(bencher: Bencher<'_, '_>, post: bool) {
    run(
        bencher,
        RetryLayer::new(policy(2), None).layer(inner()),
        post,
    );
}

/// The same with a retry budget (a deposit per request).
#[divan::bench(args = [false, true])]
fn retry_budget(bencher: Bencher<'_, '_>, post: bool) {
    let budget = Arc::new(RetryBudget::new(RetryBudgetConfig::default()));
    run(
        bencher,
        RetryLayer::new(policy(2), Some(budget)).layer(inner()),
        post,
    );
}

/// gatekit's default, `RetryPolicy::unsent_once()`: only requests that never left are
/// retried, so nothing is kept (the error hands the request back).
#[divan::bench(args = [false, true])]
fn unsent_only(bencher: Bencher<'_, '_>, post: bool) {
    run(
        bencher,
        RetryLayer::new(Arc::new(RetryPolicy::unsent_once()), None).layer(inner()),
        post,
    );
}

/// The same with a retry budget.
#[divan::bench(args = [false, true])]
fn unsent_only_budget(bencher: Bencher<'_, '_>, post: bool) {
    let budget = Arc::new(RetryBudget::new(RetryBudgetConfig::default()));
    run(
        bencher,
        RetryLayer::new(Arc::new(RetryPolicy::unsent_once()), Some(budget)).layer(inner()),
        post,
    );
}

/// `attempts: 0`: the pass-through.
#[divan::bench(args = [false, true])]
fn no_retries(bencher: Bencher<'_, '_>, post: bool) {
    run(
        bencher,
        RetryLayer::new(policy(0), None).layer(inner()),
        post,
    );
}
