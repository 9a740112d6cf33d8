//! A fixed number of picks (or whole calls) for counting instructions per pick under
//! callgrind, where timings on a shared machine are too noisy to tell a few percent.
//!
//! `pick_count ALGORITHM ENDPOINTS ITERATIONS [pick|call]` builds an upstream as
//! `benches/pick.rs` does (weights 1, 2, 3 in turn, a request with a client address),
//! then makes ITERATIONS:
//!
//! - `pick` (the default): `Upstream::pick` and dropping the guard, the pick bench's loop;
//! - `call`: the outcome-report path, `Upstream::call` on an endpoint service that answers
//!   at once, polled to completion: pick, acquire, release, latency sample (peak-EWMA)
//!   and an outcome observer's report (a request without extensions, so not for the
//!   hash algorithms, which then pick at random).
//!
//! fastrand is seeded and the aggregate health refresh (an O(endpoints) pass every 10 ms
//! of wall time, which under callgrind's slowdown would come some 50 times as often per
//! pick as in a real run, and at times that vary) is put off for an hour, so a run is
//! repeatable and counts the pick alone. Count a run of N and one of 2N and divide
//! the difference by N: the setup (endpoint set, process start) cancels out.
//!
//! ```text
//! cargo build --profile bench -p gatekit-lb --example pick_count
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/pick_count least-request 100 20000 2>&1 | grep refs
//! ```
//!
//! `scripts/pick-count.sh` runs the table of docs/benchmarks.md ("Pick cost,
//! instructions per pick").
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use gatekit_core::Endpoint;
use gatekit_lb::{Algorithm, EndpointHealth, Outcome, OutcomeObserver, Upstream, UpstreamConfig};
use http::{Request, Response};
use tower::Service;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{endpoints, request};

/// The algorithm's configuration, with the health refresh put off (see the top).
fn config(alg: Algorithm) -> UpstreamConfig {
    UpstreamConfig::new(alg).with_health_refresh(Duration::from_secs(3600))
}

/// Counts outcomes: an observer as cheap as one can be.
struct Count(AtomicU64);

impl OutcomeObserver for Count {
    fn on_outcome(&self, _: &Endpoint, _: &EndpointHealth, _: Outcome) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "pick_count ALGORITHM ENDPOINTS ITERATIONS [pick|call]";
    let alg: Algorithm = args.next().expect(usage).parse().unwrap();
    let n: usize = args.next().expect(usage).parse().unwrap();
    let iters: usize = args.next().expect(usage).parse().unwrap();
    let mode = args.next().unwrap_or_else(|| "pick".into());
    fastrand::seed(19);
    match mode.as_str() {
        "pick" => {
            let up = Upstream::new(config(alg), |_: &Endpoint| ());
            up.apply(endpoints(n));
            let req = request();
            for _ in 0..iters {
                drop(std::hint::black_box(up.pick(&req).unwrap()));
            }
        }
        "call" => {
            let count = Arc::new(Count(AtomicU64::new(0)));
            let config = config(alg).with_observer(count.clone());
            let mut up = Upstream::new(config, |_: &Endpoint| {
                tower::service_fn(|_: Request<()>| {
                    std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(())))
                })
            });
            up.apply(endpoints(n));
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..iters {
                assert!(matches!(up.poll_ready(&mut cx), Poll::Ready(Ok(()))));
                // No extensions: a request that allocates nothing (no hash key needed).
                let mut fut = std::pin::pin!(up.call(Request::new(())));
                assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
            }
            assert_eq!(count.0.load(Ordering::Relaxed), iters as u64);
        }
        other => panic!("{other}: not pick or call ({usage})"),
    }
}
