//! Fuzzing entry point (feature `fuzzing`): [`balancer`] drives an [`Upstream`] with
//! arbitrary endpoint changes, health flips and picks for every algorithm and checks the
//! selection rules of the [crate docs](crate) after each step. The cargo-fuzz target in
//! `fuzz/` is one line; `tests/fuzz_regressions.rs` replays crash inputs through the same
//! function. See `docs/fuzzing.md`.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use gatekit_core::{Change, Endpoint, EndpointState};
use http::{HeaderName, Request};
use tokio::time::Instant;

use crate::{Algorithm, HashKey, Locality, Upstream, UpstreamConfig};

/// Endpoints live on this many addresses, so changes collide often.
const ADDRS: u16 = 8;
/// Steps per input.
const MAX_OPS: usize = 64;
/// The header `consistent-hash` keys on.
const KEY: &str = "x-key";

#[derive(Arbitrary, Debug)]
struct Input {
    algorithm: u8,
    /// Configure a local zone (endpoints spread over locality levels).
    zoned: bool,
    panic_threshold: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct EndpointSpec {
    addr: u8,
    weight: u8,
    state: u8,
    local: bool,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Insert(EndpointSpec),
    Remove(u8),
    Replace(Vec<EndpointSpec>),
    Healthy(u8, bool),
    Eject(u8, bool),
    Pick(u8),
    /// A full cycle of picks: weighted round robin must honour the weights exactly.
    Cycle,
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 1000 + u16::from(i) % ADDRS))
}

fn endpoint(spec: EndpointSpec) -> Endpoint {
    let state = match spec.state % 4 {
        0 | 1 => EndpointState::Ready,
        2 => EndpointState::Terminating,
        _ => EndpointState::NotReady,
    };
    Endpoint::new(addr(spec.addr))
        .with_weight(u32::from(spec.weight % 17))
        .with_state(state)
        .with_zone(if spec.local { "local" } else { "remote" })
}

/// The [`Upstream`] under test and what the test knows of its set.
struct Harness {
    upstream: Upstream<SocketAddr>,
    algorithm: Algorithm,
    zoned: bool,
    threshold: f64,
    /// The endpoints the upstream should hold, by address.
    model: BTreeMap<SocketAddr, Endpoint>,
    /// `consistent-hash` picks since the last change: key → address.
    sticky: HashMap<u8, SocketAddr>,
}

impl Harness {
    fn available(&self, addr: SocketAddr, now: Instant) -> bool {
        self.upstream
            .health_of(addr)
            .is_some_and(|h| h.is_available(now))
    }

    fn is_ready(ep: &Endpoint) -> bool {
        ep.state() == EndpointState::Ready && ep.weight() > 0
    }

    fn changed(&mut self) {
        self.sticky.clear();
        // Aggregate health (panic mode) is otherwise recomputed every 10 ms; the checks
        // below need the view of now.
        self.upstream.refresh_health();
    }

    fn check_set(&self) {
        let got: BTreeMap<SocketAddr, Endpoint> = self
            .upstream
            .endpoints()
            .into_iter()
            .map(|(ep, _)| (ep.addr(), ep))
            .collect();
        assert_eq!(
            got, self.model,
            "the upstream's set differs from the changes applied"
        );
    }

    fn pick(&mut self, key: u8) -> Option<SocketAddr> {
        let now = Instant::now();
        let req = match Request::builder().header(KEY, key.to_string()).body(()) {
            Ok(r) => r,
            Err(e) => panic!("request: {e}"),
        };
        let picked = self.upstream.pick(&req);
        let ready_total = self.model.values().filter(|e| Self::is_ready(e)).count();
        let ready_avail = self
            .model
            .values()
            .filter(|e| Self::is_ready(e) && self.available(e.addr(), now))
            .count();
        let any_avail = self
            .model
            .values()
            .any(|e| e.state() != EndpointState::NotReady && self.available(e.addr(), now));
        let panic_mode =
            ready_total > 0 && (ready_avail as f64) < self.threshold * ready_total as f64;
        let Ok(picked) = picked else {
            assert!(
                !any_avail && (ready_total == 0 || !panic_mode),
                "no endpoint picked from {:?} (ready {ready_avail}/{ready_total} available)",
                self.model
            );
            return None;
        };
        let at = picked.addr();
        let Some(ep) = self.model.get(&at) else {
            panic!(
                "picked {at}, which is not in the set {:?}",
                self.model.keys()
            );
        };
        assert_eq!(picked.endpoint(), *ep, "picked endpoint data is stale");
        assert_ne!(
            ep.state(),
            EndpointState::NotReady,
            "picked a NotReady endpoint {at}"
        );
        if ready_avail > 0 {
            assert!(
                Self::is_ready(ep),
                "picked {ep:?} though a ready endpoint is available"
            );
        }
        if !self.available(at, now) {
            assert!(
                Self::is_ready(ep) && panic_mode,
                "picked unavailable {ep:?} outside panic mode (ready {ready_avail}/{ready_total})"
            );
        }
        if self.algorithm == Algorithm::ConsistentHash && !self.zoned {
            let first = *self.sticky.entry(key).or_insert(at);
            assert_eq!(
                first, at,
                "key {key} moved from {first} to {at} on an unchanged set"
            );
        }
        Some(at)
    }

    /// With every endpoint ready and available in one level, a full cycle of weighted
    /// round robin (the sum of the weights) picks each endpoint exactly its weight times,
    /// and round robin picks each once per cycle of the set's size.
    fn cycle(&mut self) {
        let now = Instant::now();
        let all_ready = !self.model.is_empty()
            && self
                .model
                .values()
                .all(|e| Self::is_ready(e) && self.available(e.addr(), now));
        let one_level = !self.zoned
            || self
                .model
                .values()
                .map(|e| e.zone())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == 1;
        if !all_ready || !one_level {
            return;
        }
        let expected: BTreeMap<SocketAddr, u32> = match self.algorithm {
            Algorithm::WeightedRoundRobin => self
                .model
                .values()
                .map(|e| (e.addr(), e.weight()))
                .collect(),
            Algorithm::RoundRobin => self.model.keys().map(|a| (*a, 1)).collect(),
            _ => return,
        };
        let total: u32 = expected.values().sum();
        let mut counts: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        for _ in 0..total {
            if let Some(at) = self.pick(0) {
                *counts.entry(at).or_default() += 1;
            }
        }
        assert_eq!(counts, expected, "{} over a full cycle", self.algorithm);
    }
}

/// The `balancer` target: an [`Upstream`] (algorithm, zoning and panic threshold from
/// the input) takes up to 64 steps of endpoint inserts, removals and replacements (8
/// addresses, weights 0 to 16, Ready/Terminating/NotReady, local or remote zone), health
/// flips, ejections, picks and full pick cycles.
///
/// After each change the upstream holds exactly the endpoints applied. Every pick is of
/// an endpoint in the set with its current data, never `NotReady`; a `Ready` endpoint of
/// weight > 0 whenever one is available; an unavailable one only in panic mode; and a
/// pick fails only when nothing is available and panic mode does not apply.
/// `consistent-hash` sends a key to the same endpoint while the set and health do not
/// change; a full cycle of `weighted-round-robin` honours the weights exactly and one of
/// `round-robin` visits each endpoint once.
///
/// # Panics
///
/// When one of these rules is broken (a bug).
pub fn balancer(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let algorithm = Algorithm::ALL[usize::from(input.algorithm) % Algorithm::ALL.len()];
    let threshold = [0.5, 0.0, 1.0, 0.3][usize::from(input.panic_threshold % 4)];
    let mut config = UpstreamConfig::new(algorithm)
        .with_panic_threshold(threshold)
        .with_hash_key(HashKey::Header(HeaderName::from_static(KEY)));
    if input.zoned {
        config = config.with_locality(Locality::default().with_zone("local"));
    }
    let mut h = Harness {
        upstream: Upstream::new(config, |ep: &Endpoint| ep.addr()),
        algorithm,
        zoned: input.zoned,
        threshold,
        model: BTreeMap::new(),
        sticky: HashMap::new(),
    };
    for op in input.ops.iter().take(MAX_OPS) {
        match op {
            Op::Insert(spec) => {
                let ep = endpoint(*spec);
                h.model.insert(ep.addr(), ep.clone());
                h.upstream.apply(Change::Insert(ep));
                h.changed();
                h.check_set();
            }
            Op::Remove(a) => {
                h.model.remove(&addr(*a));
                h.upstream.apply(Change::Remove(addr(*a)));
                h.changed();
                h.check_set();
            }
            Op::Replace(specs) => {
                // One endpoint per address (the last one given), as a discovery snapshot.
                let set: BTreeMap<SocketAddr, Endpoint> = specs
                    .iter()
                    .take(usize::from(ADDRS) * 2)
                    .map(|s| (addr(s.addr), endpoint(*s)))
                    .collect();
                h.upstream
                    .apply(Change::Replace(set.values().cloned().collect()));
                h.model = set;
                h.changed();
                h.check_set();
            }
            Op::Healthy(a, healthy) => {
                if let Some(health) = h.upstream.health_of(addr(*a)) {
                    health.set_active_healthy(*healthy);
                }
                h.changed();
            }
            Op::Eject(a, eject) => {
                if let Some(health) = h.upstream.health_of(addr(*a)) {
                    if *eject {
                        health.eject_until(Instant::now() + Duration::from_secs(3600));
                    } else {
                        health.clear_ejection();
                    }
                }
                h.changed();
            }
            Op::Pick(key) => {
                h.pick(*key);
            }
            Op::Cycle => h.cycle(),
        }
    }
}
