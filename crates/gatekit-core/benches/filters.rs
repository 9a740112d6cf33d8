//! Per-request cost of compiled filter chains: time and allocations.
//!
//! Run: `cargo bench -p gatekit-core --bench filters -- --sample-count 20`
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;

use divan::{AllocProfiler, Bencher, black_box};
use gatekit_core::filter::{FilterChain, RequestContext};
use gatekit_core::route::{CorsPolicy, Filter, HeaderModifier, PathModifier, Redirect, UrlRewrite};
use gatekit_core::{Backend, Body};
use http::{Request, Response};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

fn chain(filters: Vec<Filter>) -> FilterChain {
    FilterChain::compile(&filters, &HashMap::<String, Backend>::new()).unwrap()
}

fn request() -> Request<Body> {
    Request::get("/api/v1/users/42?full=1")
        .header("host", "shop.example")
        .header("user-agent", "bench")
        .header("x-remove-me", "1")
        .body(Body::empty())
        .unwrap()
}

const CX: RequestContext<'static> = RequestContext {
    matched_prefix: Some("/api/v1"),
    tls: false,
    listener_port: Some(8080),
};

/// Building the request alone, the baseline the other figures include.
#[divan::bench]
fn baseline_request(b: Bencher<'_, '_>) {
    b.with_inputs(request).bench_local_values(black_box);
}

#[divan::bench]
fn empty_chain(b: Bencher<'_, '_>) {
    let chain = FilterChain::default();
    b.with_inputs(request).bench_local_values(|mut req| {
        black_box(chain.apply_request(&mut req, &CX));
        req
    });
}

#[divan::bench]
fn request_header_modifier(b: Bencher<'_, '_>) {
    let mut m = HeaderModifier::default();
    m.set.push(("x-set".into(), "v".into()));
    m.add.push(("x-add".into(), "v".into()));
    m.remove.push("x-remove-me".into());
    let chain = chain(vec![Filter::RequestHeaderModifier(m)]);
    b.with_inputs(request).bench_local_values(|mut req| {
        black_box(chain.apply_request(&mut req, &CX));
        req
    });
}

#[divan::bench]
fn url_rewrite_prefix_and_host(b: Bencher<'_, '_>) {
    let mut w = UrlRewrite::default();
    w.hostname = Some("internal.svc".into());
    w.path = Some(PathModifier::ReplacePrefixMatch("/v2".into()));
    let chain = chain(vec![Filter::UrlRewrite(w)]);
    b.with_inputs(request).bench_local_values(|mut req| {
        black_box(chain.apply_request(&mut req, &CX));
        req
    });
}

#[divan::bench]
fn redirect(b: Bencher<'_, '_>) {
    let mut r = Redirect::default();
    r.scheme = Some("https".into());
    r.status = 301;
    let chain = chain(vec![Filter::RequestRedirect(r)]);
    b.with_inputs(request)
        .bench_local_values(|mut req| black_box(chain.apply_request(&mut req, &CX)));
}

#[divan::bench]
fn response_header_modifier(b: Bencher<'_, '_>) {
    let mut m = HeaderModifier::default();
    m.set.push(("cache-control".into(), "no-store".into()));
    m.remove.push("server".into());
    let chain = chain(vec![Filter::ResponseHeaderModifier(m)]);
    b.with_inputs(|| {
        Response::builder()
            .header("server", "x")
            .body(Body::empty())
            .unwrap()
    })
    .bench_local_values(|mut rsp| {
        chain.apply_response(&mut rsp);
        rsp
    });
}

fn cors_chain() -> FilterChain {
    let mut p = CorsPolicy::default();
    p.allow_origins = vec!["https://www.foo.com".into(), "https://*.bar.com".into()];
    p.allow_methods = vec!["GET".into(), "POST".into()];
    p.expose_headers = vec!["x-total".into()];
    p.allow_credentials = true;
    chain(vec![Filter::Cors(p)])
}

/// A request and its response through a CORS chain, as the `Filters` service does it.
fn cors_round_trip(chain: &FilterChain, origin: &'static str) -> impl FnMut() -> Response<Body> {
    move || {
        let mut req = Request::get("/api")
            .header("origin", origin)
            .body(Body::empty())
            .unwrap();
        let rcx = chain.response_context(&req);
        let mut rsp = chain
            .apply_request(&mut req, &CX)
            .unwrap_or_else(|| Response::new(Body::empty()));
        chain.apply_response_with(&mut rsp, &rcx);
        rsp
    }
}

/// An origin not allowed: the baseline for `cors_allowed_origin` (request, response,
/// `Vary`); matching itself allocates nothing.
#[divan::bench]
fn cors_disallowed_origin(b: Bencher<'_, '_>) {
    let chain = cors_chain();
    b.bench_local(cors_round_trip(&chain, "https://evil.example"));
}

#[divan::bench]
fn cors_allowed_origin(b: Bencher<'_, '_>) {
    let chain = cors_chain();
    b.bench_local(cors_round_trip(&chain, "https://a.www.bar.com"));
}
