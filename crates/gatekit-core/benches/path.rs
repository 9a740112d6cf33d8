//! Per-request cost of path normalisation (`gatekit_core::path::normalize`): time and
//! allocations for an already-normal path (the common case, borrowed) and for paths
//! that must be rebuilt.
//!
//! Run: `cargo bench -p gatekit-core --bench path -- --sample-count 20`
#![allow(missing_docs, clippy::unwrap_used)]

use divan::{AllocProfiler, black_box};
use gatekit_core::path::{PathPolicy, normalize};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

#[divan::bench(args = [
    "/api/v1/users/42?full=1",
    "/static/css/site.min.css",
    "/api/v1/../v2/users/%2e%2e/42?full=1",
    "/api/v1/users/%41%42%43/a%2Fb",
])]
fn normalize_default(path: &str) -> usize {
    let policy = PathPolicy::default();
    normalize(black_box(path), black_box(&policy))
        .unwrap()
        .len()
}

#[divan::bench(args = ["/api/v1/users/42?full=1", "//api//v1///users/42"])]
fn normalize_merging_slashes(path: &str) -> usize {
    let policy = PathPolicy::default().merge_slashes(true);
    normalize(black_box(path), black_box(&policy))
        .unwrap()
        .len()
}
