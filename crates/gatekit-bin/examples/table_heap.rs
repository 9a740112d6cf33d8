//! What the route table holds per route: the route model the translation makes and the
//! table (with its builder) compiled from it, in live bytes and live allocations.
//!
//! ```sh
//! cargo run --profile bench -p gatekit-examples --example live_change -- --write DIR 5000
//! cargo run --profile bench -p gatekit-bin --example table_heap -- DIR
//! ```
//!
//! A counting global allocator ([`stats_alloc`]) gives, for the manifests in `DIR`:
//! the [`Translation`](gatekit_k8s::Translation) (which holds the route model, `Arc<Route>`
//! shared with the table builders), a deep copy of the route model alone (a lower bound:
//! copies take no spare capacity), and the kept [`TableBuilder`]s with their
//! [`RouteTable`](gatekit_core::RouteTable)s, one per listener as the wiring keeps them,
//! every backend name resolving to one shared [`Backend`] (the upstreams' own state is
//! not the table's): bare (no default retry, no policy state), then as the wiring
//! builds them (the default retry [`RetryPolicy::unsent_once`], a [`PolicyState`] whose
//! growth is counted, and error extensions, one value shared by every route). Byte and
//! allocation counts do not depend on the profile.
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::System;
use std::convert::Infallible;
use std::path::PathBuf;

use gatekit_bin::TranslateOptions;
use std::sync::Arc;

use gatekit_core::retry::RetryPolicy;
use gatekit_core::route::{PolicyState, Route, RouteId, TableBuilder};
use gatekit_core::{Backend, Backends, Body, ErrorExtensions};
use gatekit_k8s::{ResourceSet, translate};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live bytes and live allocations.
fn live() -> (isize, isize) {
    let s = GLOBAL.stats();
    (
        s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated,
        s.allocations as isize - s.deallocations as isize,
    )
}

fn report(what: &str, base: (isize, isize), routes: usize) {
    let (bytes, allocs) = live();
    let (bytes, allocs) = (bytes - base.0, allocs - base.1);
    println!(
        "{what:<34} {:8.2} MB {:7.0} B/route {:6.2} allocs/route",
        bytes as f64 / 1e6,
        bytes as f64 / routes as f64,
        allocs as f64 / routes as f64,
    );
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("a manifest directory"));
    let (set, _) = ResourceSet::from_dirs(&[dir]).unwrap();
    let base = live();
    let translation = translate(&set, &TranslateOptions::default());
    let routes: usize = translation
        .listeners()
        .iter()
        .map(|p| p.routes().len())
        .sum();
    println!("{routes} routes (summed over listeners)");
    report("Translation (with the model)", base, routes);

    let base = live();
    let copies: Vec<Route> = translation
        .listeners()
        .iter()
        .flat_map(|p| p.routes().iter().map(|r| Route::clone(r)))
        .collect();
    let outer = copies.capacity() * std::mem::size_of::<Route>();
    let (bytes, allocs) = live();
    let per = |x: isize| x as f64 / routes as f64;
    println!(
        "{:<34} {:8.2} MB {:7.0} B/route {:6.2} allocs/route",
        "route model, deep copy",
        (bytes - base.0 - outer as isize) as f64 / 1e6,
        per(bytes - base.0 - outer as isize),
        per(allocs - base.1 - 1),
    );
    drop(copies);

    let backend = Backend::new(tower::service_fn(|_req| async {
        Ok::<_, Infallible>(http::Response::new(Body::empty()))
    }));
    let lookup = move |_: &str| -> Option<Backend> { Some(backend.clone()) };
    let base = live();
    let mut kept = Vec::new();
    for port in translation.listeners() {
        for (_, list) in port.route_lists() {
            let mut builder = TableBuilder::new();
            let (table, errors) = builder.build_list(list, &lookup, &[]);
            assert!(errors.is_empty(), "{errors:?}");
            kept.push((builder, table));
        }
    }
    report("TableBuilders + RouteTables, bare", base, routes);
    drop(kept);

    let wired = Wired {
        backend: lookup("").unwrap(),
        state: PolicyState::new(),
        extensions: Arc::new(http::Extensions::new()),
    };
    let base = live();
    let mut kept = Vec::new();
    for port in translation.listeners() {
        for (_, list) in port.route_lists() {
            let mut builder =
                TableBuilder::new().with_default_retry(Some(RetryPolicy::unsent_once()));
            let (table, errors) = builder.build_list(list, &wired, &[]);
            assert!(errors.is_empty(), "{errors:?}");
            kept.push((builder, table));
        }
    }
    wired.state.sweep();
    report("TableBuilders + RouteTables, wired", base, routes);
    drop(kept);
    drop(translation);
}

/// What the wiring's lookup gives a build besides backends: the policy state and error
/// extensions.
struct Wired {
    backend: Backend,
    state: PolicyState,
    extensions: Arc<http::Extensions>,
}

impl Backends for Wired {
    fn backend(&self, _: &str) -> Option<Backend> {
        Some(self.backend.clone())
    }

    fn policy_state(&self) -> Option<&PolicyState> {
        Some(&self.state)
    }

    fn error_extensions(&self, _: &RouteId) -> Option<Arc<dyn ErrorExtensions>> {
        Some(self.extensions.clone())
    }
}
