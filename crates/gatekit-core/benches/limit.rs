//! The request limits around a ready service that answers at once: what
//! `ConcurrencyLimit` and `BodyLimit` cost per request, in time and allocations, beside
//! the bare service in the same run.
//!
//! Run: `cargo bench -p gatekit-core --bench limit`
//!
//! Requests (and their bodies) are built outside the timed section. Each timed call
//! includes dropping the response, so a concurrency slot is taken and given back.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::Bytes;
use divan::{Bencher, black_box};
use futures_util::FutureExt;
use gatekit_core::limit::{BodyLimitLayer, ConcurrencyLimitLayer, InFlightLimit};
use gatekit_core::{Body, BoxError};
use http::{Request, Response};
use http_body::Frame;
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

/// A ready service answering with `body()`.
fn ready(
    body: fn() -> Body,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = BoxError,
    Future = std::future::Ready<Result<Response<Body>, BoxError>>,
> + Clone {
    tower::service_fn(move |_req: Request<Body>| std::future::ready(Ok(Response::new(body()))))
}

fn ok() -> Body {
    Body::full(Bytes::from_static(b"ok"))
}

fn get() -> Request<Body> {
    Request::get("/v1/items").body(Body::empty()).unwrap()
}

/// A body of unknown length (as a chunked upload arrives).
fn chunked_request() -> Request<Body> {
    let frames = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(
        b"payload",
    )))]);
    Request::post("/upload")
        .body(Body::new(http_body_util::StreamBody::new(frames)))
        .unwrap()
}

fn run<S>(bencher: Bencher<'_, '_>, mut svc: S, request: fn() -> Request<Body>)
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    bencher.with_inputs(request).bench_local_values(|req| {
        let rsp = svc.call(req).now_or_never().unwrap();
        black_box(rsp.map(|r| r.status()).is_ok())
    });
}

/// The requests of the benches, by name.
fn request(kind: &str) -> fn() -> Request<Body> {
    match kind {
        "no_body" => get,
        // A body of known size within the bound (a Content-Length body).
        "known_length" => || {
            Request::post("/upload")
                .header(http::header::CONTENT_LENGTH, "7")
                .body(Body::full(Bytes::from_static(b"payload")))
                .unwrap()
        },
        "chunked" => chunked_request,
        _ => unreachable!("no such request: {kind}"),
    }
}

mod concurrency {
    use super::*;

    /// The bare service, as the baseline.
    #[divan::bench]
    fn bare(bencher: Bencher<'_, '_>) {
        run(bencher, ready(ok), get);
    }

    /// Admitted; the response body is held (boxed with the slot) and released on drop.
    #[divan::bench]
    fn admitted(bencher: Bencher<'_, '_>) {
        let limit = Arc::new(InFlightLimit::new(1000));
        run(
            bencher,
            ConcurrencyLimitLayer::new(limit).layer(ready(ok)),
            get,
        );
    }

    /// Admitted; an empty response body frees the slot with the head (no wrapper).
    #[divan::bench]
    fn admitted_empty_response(bencher: Bencher<'_, '_>) {
        let limit = Arc::new(InFlightLimit::new(1000));
        run(
            bencher,
            ConcurrencyLimitLayer::new(limit).layer(ready(Body::empty)),
            get,
        );
    }

    /// Rejected at the limit: the boxed error is the cost.
    #[divan::bench]
    fn rejected(bencher: Bencher<'_, '_>) {
        let limit = Arc::new(InFlightLimit::new(0));
        let mut svc = ConcurrencyLimitLayer::new(limit).layer(ready(ok));
        bencher
            .with_inputs(get)
            .bench_local_values(|req| black_box(svc.call(req).now_or_never().unwrap().is_err()));
    }
}

mod body {
    use super::*;

    const KINDS: [&str; 3] = ["no_body", "known_length", "chunked"];

    /// The bare service, as the baseline for each kind of request.
    #[divan::bench(args = KINDS)]
    fn bare(bencher: Bencher<'_, '_>, kind: &str) {
        run(bencher, ready(ok), request(kind));
    }

    /// No body or one of known size within the bound: passed on as it is. A body of
    /// unknown length: wrapped in the counting body (not read here).
    #[divan::bench(args = KINDS)]
    fn limited(bencher: Bencher<'_, '_>, kind: &str) {
        run(
            bencher,
            BodyLimitLayer::new(1 << 20).layer(ready(ok)),
            request(kind),
        );
    }

    /// A Content-Length over the bound: refused before the inner service.
    #[divan::bench]
    fn refused(bencher: Bencher<'_, '_>) {
        fn post() -> Request<Body> {
            Request::post("/upload")
                .header(http::header::CONTENT_LENGTH, "2000000")
                .body(Body::full(Bytes::from_static(b"payload")))
                .unwrap()
        }
        let mut svc = BodyLimitLayer::new(1 << 20).layer(ready(ok));
        bencher
            .with_inputs(post)
            .bench_local_values(|req| black_box(svc.call(req).now_or_never().unwrap().is_err()));
    }
}
