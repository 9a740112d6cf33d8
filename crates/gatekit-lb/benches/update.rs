//! Cost of applying a 10,000-endpoint `Replace` update (diff, carried state, derived
//! tables, snapshot swap), per algorithm family.
//!
//! `cargo bench -p gatekit-lb --bench update -- --sample-count 20`
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;

use divan::{AllocProfiler, Bencher};
use gatekit_core::{Change, Endpoint, EndpointState};
use gatekit_lb::{Algorithm, Upstream, UpstreamConfig};

mod common;
use common::addr;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const N: usize = 10_000;

fn set(weight_of_first: u32) -> Vec<Endpoint> {
    (0..N)
        .map(|i| {
            Endpoint::new(addr(i))
                .with_weight(if i == 0 {
                    weight_of_first
                } else {
                    1 + (i % 3) as u32
                })
                .with_zone(if i % 2 == 0 { "a" } else { "b" })
        })
        .collect()
}

/// A Replace of 10,000 endpoints where one changed: the whole snapshot is rebuilt, all
/// state carried over by address.
#[divan::bench(args = [Algorithm::RoundRobin, Algorithm::WeightedRoundRobin, Algorithm::LeastRequest, Algorithm::ConsistentHash])]
fn replace_10k_one_changed(b: Bencher<'_, '_>, alg: Algorithm) {
    let up = Upstream::new(UpstreamConfig::new(alg), |_: &Endpoint| ());
    up.apply(Change::Replace(set(1)));
    let mut flip = 1;
    b.with_inputs(|| {
        flip = if flip == 1 { 2 } else { 1 };
        Change::Replace(set(flip))
    })
    .bench_local_values(|c| up.apply(c));
}

/// A Replace where only a not-ready endpoint comes and goes: a new snapshot, but the
/// ready pool is unchanged, so its table (Maglev for consistent-hash) is kept.
#[divan::bench(args = [Algorithm::RoundRobin, Algorithm::ConsistentHash])]
fn replace_10k_not_ready_changed(b: Bencher<'_, '_>, alg: Algorithm) {
    let up = Upstream::new(UpstreamConfig::new(alg), |_: &Endpoint| ());
    up.apply(Change::Replace(set(1)));
    let mut with = false;
    b.with_inputs(|| {
        with = !with;
        let mut s = set(1);
        if with {
            s.push(Endpoint::new(addr(N)).with_state(EndpointState::NotReady));
        }
        Change::Replace(s)
    })
    .bench_local_values(|c| up.apply(c));
}

/// A Replace identical to the current set: diffed, nothing swapped.
#[divan::bench]
fn replace_10k_identical(b: Bencher<'_, '_>) {
    let up = Upstream::new(
        UpstreamConfig::new(Algorithm::LeastRequest),
        |_: &Endpoint| (),
    );
    up.apply(Change::Replace(set(1)));
    b.with_inputs(|| Change::Replace(set(1)))
        .bench_local_values(|c| up.apply(c));
}

/// A Replace by 10,000 new addresses (all state created).
#[divan::bench]
fn replace_10k_all_new(b: Bencher<'_, '_>) {
    let up = Upstream::new(
        UpstreamConfig::new(Algorithm::RoundRobin),
        |_: &Endpoint| (),
    );
    let mut base = 0usize;
    b.with_inputs(|| {
        base += N;
        Change::Replace(
            (0..N)
                .map(|i| {
                    Endpoint::new(SocketAddr::from((
                        [10, 0, 0, 1],
                        ((base + i) % 60000) as u16 + 1,
                    )))
                })
                .collect(),
        )
    })
    .bench_local_values(|c| up.apply(c));
}
