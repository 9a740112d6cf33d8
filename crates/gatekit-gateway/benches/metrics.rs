//! Cost of recording a request: the `RequestMetrics` handle alone, and a whole
//! `MetricsService` call around an always-ready service. Allocations are counted.
//!
//! `cargo bench -p gatekit-gateway --bench metrics -- --sample-count 20`
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use divan::AllocProfiler;
use gatekit_gateway::{Metrics, MetricsLayer};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

#[divan::bench]
fn record_handle(bencher: divan::Bencher<'_, '_>) {
    let metrics = Metrics::new();
    let handle = metrics.request_metrics("default/web", "web:80");
    bencher.bench_local(|| handle.record(StatusCode::OK, Duration::from_micros(250)));
}

#[divan::bench(args = [false, true])]
fn service_call(bencher: divan::Bencher<'_, '_>, closure_source: bool) {
    let metrics = Metrics::new();
    let handle = metrics.request_metrics("default/web", "web:80");
    let inner = tower::service_fn(|_req: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(())))
    });
    let mut cx = Context::from_waker(Waker::noop());
    if closure_source {
        let source = move |_: &Request<()>| handle.clone();
        let mut svc = MetricsLayer::new(source).layer(inner);
        bencher
            .with_inputs(|| Request::new(()))
            .bench_local_values(|req| {
                let fut = pin!(svc.call(req));
                matches!(fut.poll(&mut cx), Poll::Ready(Ok(_)))
            });
    } else {
        let mut svc = MetricsLayer::new(handle).layer(inner);
        bencher
            .with_inputs(|| Request::new(()))
            .bench_local_values(|req| {
                let fut = pin!(svc.call(req));
                matches!(fut.poll(&mut cx), Poll::Ready(Ok(_)))
            });
    }
}

/// One stream connection's records (opened, then closed with its bytes and duration)
/// on a port whose routes were set: no allocation, no family lookup.
#[divan::bench]
fn stream_connection(bencher: divan::Bencher<'_, '_>) {
    use gatekit_core::route::RouteId;
    use gatekit_core::stream::{StreamObserver, StreamStats};
    use gatekit_gateway::metrics::StreamPortMetrics;

    let metrics = Metrics::new();
    let port = StreamPortMetrics::new(metrics, 5432, "tcp");
    let routes = [
        RouteId::new("default", "db"),
        RouteId::new("default", "cache"),
    ];
    port.set_routes(&routes);
    let route = routes[1].clone();
    let stats = StreamStats::default();
    bencher.bench_local(|| {
        port.opened(&route);
        port.closed(&route, &stats);
    });
}
