//! `RouteTable::find` and `RouteTable::build` at realistic sizes, with allocation counts.
//!
//! Run: `cargo bench -p gatekit-core --bench route_match -- --sample-count 200`
//!
//! `one_changed_*`: one route of 1k/3k/5k changed, the table rebuilt incrementally by a
//! kept `TableBuilder` versus from scratch by `build_partial`.
//!
//! The route set mixes what a shared gateway carries: per-host routes (ten per host),
//! exact and prefix paths, every fifth route with a header match, a few wildcard-host
//! routes and a catch-all without hostnames. Requests hit routes deep in the set (the last
//! host, a long path), need a header, fall through to a wildcard, or miss entirely.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use divan::{Bencher, black_box};
use gatekit_core::route::{BackendRef, Match, PathMatch, Route, RouteId, Rule, TableBuilder};
use gatekit_core::{Backend, Body, BoxError, RouteTable};
use http::{HeaderMap, Method, Uri};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

fn backends() -> HashMap<String, Backend> {
    let svc = tower::service_fn(|_req: http::Request<Body>| async {
        Ok::<_, BoxError>(http::Response::new(Body::empty()))
    });
    let backend = Backend::new(svc);
    (0..100)
        .map(|i| (format!("svc-{i}"), backend.clone()))
        .collect()
}

fn host_of(i: usize) -> String {
    format!("app{}.team{}.example.com", i / 10, i % 7)
}

fn routes(n: usize) -> Vec<Route> {
    let mut out = Vec::with_capacity(n + 8);
    for i in 0..n {
        let mut route = Route::new(RouteId::new(format!("team{}", i % 7), format!("route-{i}")));
        route.hostnames.push(host_of(i));
        route.created = i as i64;
        let mut m = Match::default();
        m.path = Some(if i % 2 == 0 {
            PathMatch::Exact(format!("/api/v1/r{i}/items"))
        } else {
            PathMatch::Prefix(format!("/api/v{}/r{i}", i % 3))
        });
        if i % 5 == 0 {
            m = m.with_header("x-version", format!("v{}", i % 4));
        }
        let mut rule = Rule::default();
        rule.matches.push(m);
        rule.backends
            .push(BackendRef::new(format!("svc-{}", i % 100), 1));
        route.rules.push(rule);
        out.push(route);
    }
    for t in 0..7 {
        let mut route = Route::new(RouteId::new("platform", format!("wild-{t}")));
        route.hostnames.push(format!("*.team{t}.example.com"));
        let mut rule = Rule::default();
        rule.matches.push(prefix_match("/static"));
        rule.backends.push(BackendRef::new("svc-0", 1));
        route.rules.push(rule);
        out.push(route);
    }
    let mut fallback = Route::new(RouteId::new("platform", "fallback"));
    let mut rule = Rule::default();
    rule.matches.push(prefix_match("/healthz"));
    rule.backends.push(BackendRef::new("svc-1", 1));
    fallback.rules.push(rule);
    out.push(fallback);
    out
}

fn prefix_match(p: &str) -> Match {
    let mut m = Match::default();
    m.path = Some(PathMatch::Prefix(p.into()));
    m
}

struct Request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

fn request(host: &str, path: &str, header: Option<&str>) -> Request {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, host.parse().unwrap());
    headers.insert(http::header::USER_AGENT, "bench/1.0".parse().unwrap());
    headers.insert(http::header::ACCEPT, "*/*".parse().unwrap());
    if let Some(v) = header {
        headers.insert("x-version", v.parse().unwrap());
    }
    Request {
        method: Method::GET,
        uri: path.parse().unwrap(),
        headers,
    }
}

/// The request kinds: each must find (or miss) as named, checked before timing.
fn requests(n: usize) -> Vec<(&'static str, Request, bool)> {
    let last = n - 1;
    // The last odd route is a prefix route; the deep path adds segments under it.
    let last_odd = if last % 2 == 1 { last } else { last - 1 };
    // Routes divisible by ten are exact-path routes with a header match.
    let last_ten = last - last % 10;
    vec![
        (
            "exact_deep",
            request(
                &host_of(last_ten),
                &format!("/api/v1/r{last_ten}/items"),
                Some(&format!("v{}", last_ten % 4)),
            ),
            true,
        ),
        (
            "prefix_deep",
            request(
                &format!("{}:8080", host_of(last_odd).to_uppercase()),
                &format!("/api/v{}/r{last_odd}/a/b/c/d?x=1", last_odd % 3),
                None,
            ),
            true,
        ),
        (
            "wildcard",
            request("other.team3.example.com", "/static/app.js", None),
            true,
        ),
        (
            "fallback",
            request("unknown.example.org", "/healthz", None),
            true,
        ),
        (
            "miss_known_host",
            request(&host_of(last), "/nothing/here/at/all", None),
            false,
        ),
        (
            "miss_unknown_host",
            request("unknown.example.org", "/api/v1/r1/items", None),
            false,
        ),
    ]
}

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn bench_find(bencher: Bencher<'_, '_>, n: usize, kind: &str) {
    let table = RouteTable::build(routes(n), &backends()).unwrap();
    let (_, req, hits) = requests(n)
        .into_iter()
        .find(|(k, _, _)| *k == kind)
        .unwrap();
    let found = table.find(&req.method, &req.uri, &req.headers);
    assert_eq!(found.is_some(), hits, "{kind} at {n} routes");
    bencher.bench_local(|| {
        black_box(table.find(
            black_box(&req.method),
            black_box(&req.uri),
            black_box(&req.headers),
        ))
        .is_some()
    });
}

#[divan::bench(args = SIZES)]
fn find_exact_deep(bencher: Bencher<'_, '_>, n: usize) {
    bench_find(bencher, n, "exact_deep");
}

#[divan::bench(args = SIZES)]
fn find_prefix_deep(bencher: Bencher<'_, '_>, n: usize) {
    bench_find(bencher, n, "prefix_deep");
}

#[divan::bench(args = SIZES)]
fn find_wildcard(bencher: Bencher<'_, '_>, n: usize) {
    bench_find(bencher, n, "wildcard");
}

#[divan::bench(args = SIZES)]
fn find_fallback(bencher: Bencher<'_, '_>, n: usize) {
    bench_find(bencher, n, "fallback");
}

#[divan::bench(args = SIZES)]
fn find_miss_known_host(bencher: Bencher<'_, '_>, n: usize) {
    bench_find(bencher, n, "miss_known_host");
}

#[divan::bench(args = SIZES)]
fn find_miss_unknown_host(bencher: Bencher<'_, '_>, n: usize) {
    bench_find(bencher, n, "miss_unknown_host");
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn build_5000(bencher: Bencher<'_, '_>) {
    let backends = backends();
    let routes = routes(5_000);
    bencher
        .with_inputs(|| routes.clone())
        .bench_local_values(|routes| RouteTable::build(routes, &backends).unwrap());
}

const CHANGE_SIZES: [usize; 3] = [1_000, 3_000, 5_000];

/// One route of `n` changed (a new `Arc`, alternating between two versions), the table
/// rebuilt by a `TableBuilder` kept across builds: the cost of a live route edit.
#[divan::bench(args = CHANGE_SIZES, sample_count = 50)]
fn one_changed_builder(bencher: Bencher<'_, '_>, n: usize) {
    let backends = backends();
    let mut inputs: Vec<Arc<Route>> = routes(n).into_iter().map(Arc::new).collect();
    let at = n / 2;
    let mut edited = Route::clone(&inputs[at]);
    edited.rules[0].backends[0].weight = 2;
    let versions = [Arc::clone(&inputs[at]), Arc::new(edited)];
    let mut builder = TableBuilder::new();
    let _ = builder.build(&inputs, &backends, &|_| false);
    let mut flip = 0;
    bencher.bench_local(|| {
        flip ^= 1;
        inputs[at] = Arc::clone(&versions[flip]);
        builder.build(black_box(&inputs), &backends, &|_| false)
    });
}

/// The same change, the table built from scratch (`build_partial`, what every reload
/// did before the builder).
#[divan::bench(args = CHANGE_SIZES, sample_count = 20, sample_size = 1)]
fn one_changed_full(bencher: Bencher<'_, '_>, n: usize) {
    let backends = backends();
    let routes = routes(n);
    bencher
        .with_inputs(|| routes.clone())
        .bench_local_values(|routes| RouteTable::build_partial(routes, &backends));
}
