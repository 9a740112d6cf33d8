//! Pick cost per algorithm at 10 to 10,000 endpoints (pick + release of the in-flight
//! guard), with allocation counts, next to tower's p2c over `PendingRequests`; and, in
//! `retry`, the cost of avoiding a retried request's `TriedEndpoints`; in `session`, a
//! pick pinned by a session.
//!
//! `cargo bench -p gatekit-lb --bench pick -- --sample-count 20`
//! (`-- retry --sample-count 50` for the retry group alone)
#![allow(clippy::unwrap_used, missing_docs)]

use std::task::{Context, Poll};

use divan::{AllocProfiler, Bencher};
use gatekit_core::Endpoint;
use gatekit_lb::{Algorithm, Upstream, UpstreamConfig};

mod common;
use common::{addr, endpoints, request};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const SIZES: [usize; 4] = [10, 100, 1000, 10_000];

fn upstream(alg: Algorithm, n: usize) -> Upstream<()> {
    let up = Upstream::new(UpstreamConfig::new(alg), |_: &Endpoint| ());
    up.apply(endpoints(n));
    up
}

fn bench_alg(bencher: Bencher<'_, '_>, alg: Algorithm, n: usize) {
    let up = upstream(alg, n);
    let req = request();
    bencher.bench_local(|| drop(divan::black_box(up.pick(&req).unwrap())));
}

#[divan::bench(args = SIZES)]
fn round_robin(b: Bencher<'_, '_>, n: usize) {
    bench_alg(b, Algorithm::RoundRobin, n);
}

#[divan::bench(args = SIZES)]
fn weighted_round_robin(b: Bencher<'_, '_>, n: usize) {
    bench_alg(b, Algorithm::WeightedRoundRobin, n);
}

#[divan::bench(args = SIZES)]
fn least_request(b: Bencher<'_, '_>, n: usize) {
    bench_alg(b, Algorithm::LeastRequest, n);
}

#[divan::bench(args = SIZES)]
fn ip_hash(b: Bencher<'_, '_>, n: usize) {
    bench_alg(b, Algorithm::IpHash, n);
}

#[divan::bench(args = SIZES)]
fn consistent_hash(b: Bencher<'_, '_>, n: usize) {
    bench_alg(b, Algorithm::ConsistentHash, n);
}

#[divan::bench(args = SIZES)]
fn peak_ewma(b: Bencher<'_, '_>, n: usize) {
    bench_alg(b, Algorithm::PeakEwma, n);
}

#[divan::bench(args = SIZES)]
fn random(b: Bencher<'_, '_>, n: usize) {
    bench_alg(b, Algorithm::Random, n);
}

/// tower's p2c balancer over `PendingRequests`-wrapped always-ready services: one
/// `poll_ready` (the pick) plus `call` and dropping the response future (releasing the
/// pending count), the nearest equivalent of `Upstream::pick` + drop.
#[divan::bench(args = SIZES)]
fn tower_p2c_pending_requests(b: Bencher<'_, '_>, n: usize) {
    use tower::Service;
    use tower::balance::p2c::Balance;
    use tower::discover::ServiceList;
    use tower::load::{CompleteOnResponse, PendingRequests};

    let svcs: Vec<_> = (0..n)
        .map(|_| {
            PendingRequests::new(
                tower::service_fn(|_: ()| {
                    std::future::ready(Ok::<_, std::convert::Infallible>(()))
                }),
                CompleteOnResponse::default(),
            )
        })
        .collect();
    let mut bal = Balance::new(ServiceList::new(svcs));
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    // Let the balancer discover every service.
    assert!(matches!(bal.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    b.bench_local(|| {
        let ready = bal.poll_ready(&mut cx);
        assert!(matches!(ready, Poll::Ready(Ok(()))));
        drop(divan::black_box(bal.call(())));
    });
}

/// Retries (`TriedEndpoints` in the request), side by side per algorithm over 100
/// endpoints: no extension (a first attempt without a retry layer), one endpoint tried
/// (the retry avoids it and records its pick), and every endpoint of a 3-endpoint set
/// tried (the avoiding pass finds nothing and the pick is made again without it).
mod retry {
    use divan::Bencher;
    use gatekit_core::retry::TriedEndpoints;
    use gatekit_lb::Algorithm;

    use super::{addr, request, upstream};

    const N: usize = 100;

    /// A request whose `TriedEndpoints` holds `tried` (its list has room for one more
    /// address, so recording the pick allocates nothing).
    fn with_tried(tried: &[usize]) -> http::Request<()> {
        let t = TriedEndpoints::new();
        for i in tried {
            t.record(addr(*i));
        }
        let mut r = request();
        r.extensions_mut().insert(t);
        r
    }

    #[divan::bench(args = Algorithm::ALL)]
    fn absent(b: Bencher<'_, '_>, alg: Algorithm) {
        let up = upstream(alg, N);
        let req = request();
        b.bench_local(|| drop(divan::black_box(up.pick(&req).unwrap())));
    }

    #[divan::bench(args = Algorithm::ALL)]
    fn one_tried(b: Bencher<'_, '_>, alg: Algorithm) {
        let up = upstream(alg, N);
        b.with_inputs(|| with_tried(&[0]))
            .bench_local_refs(|req| drop(divan::black_box(up.pick(req).unwrap())));
    }

    #[divan::bench(args = Algorithm::ALL)]
    fn all_of_3_tried(b: Bencher<'_, '_>, alg: Algorithm) {
        let up = upstream(alg, 3);
        let req = with_tried(&[0, 1, 2]);
        b.bench_local(|| drop(divan::black_box(up.pick(&req).unwrap())));
    }
}

/// A session's pinned pick (a binary search over the endpoint keys) next to the
/// algorithm's own, at each size: `cargo bench -p gatekit-lb --bench pick -- session`.
mod session {
    use gatekit_core::session::{Sticky, endpoint_key};

    use super::*;

    #[divan::bench(args = SIZES)]
    fn pinned(b: Bencher<'_, '_>, n: usize) {
        let up = upstream(Algorithm::LeastRequest, n);
        let mut req = request();
        req.extensions_mut()
            .insert(Sticky::new(Some(endpoint_key(addr(n / 2))), None));
        b.bench_local(|| drop(divan::black_box(up.pick(&req).unwrap())));
    }

    #[divan::bench(args = SIZES)]
    fn pinned_to_a_removed_endpoint(b: Bencher<'_, '_>, n: usize) {
        let up = upstream(Algorithm::LeastRequest, n);
        let mut req = request();
        req.extensions_mut()
            .insert(Sticky::new(Some(endpoint_key(addr(n + 1))), None));
        b.bench_local(|| drop(divan::black_box(up.pick(&req).unwrap())));
    }
}
