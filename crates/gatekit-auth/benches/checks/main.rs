//! The cost per request of each access check, side by side with no check, in one run
//! (issue 18): API key lookup, basic auth (cached; SHA-1 and bcrypt with the cache off), JWT with a
//! cached key (RS256 2048-bit, ES256), an OIDC session cookie, a CIDR allow list, JWT + a scope rule, and an
//! ext_authz round trip to an HTTP authorization server on loopback (and an Envoy v3
//! gRPC one with `--features grpc`).
//!
//! ```text
//! cargo bench -p gatekit-auth --bench checks
//! ```
//!
//! Every stack is what a route rule runs: gatekit's error handling outside, the check,
//! an app answering `200 ok` at once, all erased into one [`Backend`]. One request is
//! built outside the timed section, sent, its status checked and its body read, on a
//! current-thread runtime on the benchmark thread. The difference to `no auth` is the
//! check.
//!
//! Under `cargo bench` with no filter argument, `main` first runs two passes that divan's timings cannot
//! give (see [`cpu`] and [`flood`]): the CPU time per request of every stack, of the
//! benchmark thread (the gateway's side) and of the whole process (the loopback
//! authorization server and tokio's blocking pool included), interleaved over three
//! rounds; then a flood of wrong basic-auth passwords against a real server. divan's
//! table follows, with allocations per request from its [`AllocProfiler`].
#![allow(
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub
)]

mod cpu;
mod flood;
mod stacks;

use divan::{AllocProfiler, Bencher, black_box};
use gatekit_core::Body;
use http::Request;
use http_body_util::BodyExt;

use self::stacks::Stack;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    // The CPU pass and the flood run with the full benchmark only: under `cargo bench`
    // (which passes `--bench`; `cargo test` runs each benchmark once) and no filter.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--bench") && args.iter().all(|a| a.starts_with('-')) {
        cpu::per_request();
        flood::run();
    }
    divan::main();
}

/// A current-thread runtime with IO and time, like one gateway worker.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `req` through the stack, checks the status, reads the body.
pub async fn send(stack: &Stack, req: Request<Body>) {
    let rsp = stack.service.send(req).await.unwrap();
    assert_eq!(rsp.status(), stack.expect, "{}", stack.name);
    rsp.into_body().collect().await.unwrap();
}

fn bench(bencher: Bencher<'_, '_>, name: &str) {
    let rt = runtime();
    let stack = rt.block_on(async { stacks::build(name) });
    // The first request shows the stack answers as expected (and fills caches).
    rt.block_on(send(&stack, stack.request()));
    bencher
        .with_inputs(|| stack.request())
        .bench_local_values(|req| rt.block_on(send(&stack, black_box(req))));
}

/// Every check that costs microseconds, in the order of [`stacks::NAMES`].
#[divan::bench(args = stacks::NAMES)]
fn check(bencher: Bencher<'_, '_>, name: &str) {
    bench(bencher, name);
}

/// Basic auth whose every request runs bcrypt (cost 10) on tokio's blocking pool.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn check_slow_basic_bcrypt_uncached(bencher: Bencher<'_, '_>) {
    bench(bencher, stacks::BCRYPT_UNCACHED);
}
