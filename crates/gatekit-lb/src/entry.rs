//! Per-endpoint state, carried over by address across endpoint-set updates: the
//! endpoint's description, service, health, in-flight count, latency estimate and
//! slow-start clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwapOption;
use gatekit_core::{Endpoint, EndpointState};

use crate::EndpointHealth;
use crate::observe::OutcomeObserver;

/// What every entry of one upstream shares with bounded load or peak-EWMA: the
/// upstream-wide in-flight total (for bounded load) and peak-EWMA parameters. Reached
/// through the entry so a request holds one `Arc`; an upstream with neither (most)
/// has none (one allocation less per upstream).
pub(crate) struct Tracking {
    /// Counted only with bounded load (it is one more contended atomic per request).
    pub(crate) count_total: bool,
    pub(crate) total_in_flight: AtomicUsize,
    /// Peak-EWMA decay time constant in ns; `None` unless the algorithm is peak-EWMA.
    pub(crate) ewma_decay_ns: Option<f64>,
    pub(crate) ewma_default_ns: f64,
}

impl Tracking {
    /// The tracking `config` needs: `None` without bounded load and peak-EWMA.
    pub(crate) fn for_config(config: &crate::UpstreamConfig) -> Option<Arc<Self>> {
        let count_total = config.bounded_load().is_some();
        let ewma_decay_ns =
            (config.algorithm == crate::Algorithm::PeakEwma).then(|| config.ewma_decay_ns());
        (count_total || ewma_decay_ns.is_some()).then(|| {
            Arc::new(Self {
                count_total,
                total_in_flight: AtomicUsize::new(0),
                ewma_decay_ns,
                ewma_default_ns: config
                    .ewma_default_rtt()
                    .as_nanos()
                    .min(u128::from(u64::MAX)) as f64,
            })
        })
    }
}

/// One endpoint's state.
///
/// `repr(C)`, in this order: what a pick reads of each candidate (in-flight count,
/// health, latency estimate, tracking, slow-start clock) first, so that with the
/// `Arc`'s counts it lies in the allocation's first 88 bytes, mostly two cache lines
/// (the compiler's order put it at bytes 72–156 of an `Entry<()>`'s, apart from the
/// counts: docs/benchmarks.md, "Pick cost"). An endpoint of a large pool is usually not
/// in cache when it is drawn. Same size either way.
#[repr(C)]
pub(crate) struct Entry<S> {
    /// 32 bits: beside `was_available`, one word for both.
    in_flight: AtomicU32,
    /// Health as last seen by the aggregate refresh, to notice recoveries.
    pub(crate) was_available: AtomicBool,
    /// Inline: the checker and detector reach it through the entry's `Arc`
    /// ([`SharedHealth`](crate::SharedHealth)).
    pub(crate) health: EndpointHealth,
    /// Peak-EWMA latency estimate in ns (f64 bits) and when it was last updated (ns since
    /// the clock origin; 0 = no sample yet).
    ewma_at: AtomicU64,
    ewma_bits: AtomicU64,
    /// Only with bounded load or peak-EWMA.
    pub(crate) tracking: Option<Arc<Tracking>>,
    /// When slow start began (ns since the clock origin; 0 = not ramping).
    ramp_from: AtomicU64,
    /// The endpoint's address, fixed for the entry's life (the set is keyed by it);
    /// read on the pick path without loading `endpoint`.
    pub(crate) addr: SocketAddr,
    /// The address's session key ([`gatekit_core::session::endpoint_key`]).
    pub(crate) session_key: u64,
    /// The latest description's weight (bits 0..32), state (bits 32..40) and whether it
    /// is kept whole in `whole` ([`WHOLE`]): one atomic, so a reader sees a weight and a
    /// state that belong together. Inline: a description behind an `Arc` of its own
    /// was an allocation of 64 bytes per endpoint.
    desc: AtomicU64,
    /// The latest description when it has labels (zone, cluster, hostname) or a state
    /// `desc` has no code for; `None` for most endpoints.
    whole: ArcSwapOption<Endpoint>,
    /// The upstream's outcome observer (a copy of its `Arc` per entry).
    pub(crate) observer: Option<Arc<dyn OutcomeObserver>>,
    /// Last: its size and alignment vary with the endpoint's service type.
    pub(crate) svc: S,
}

impl<S: Send + Sync + 'static> crate::health_state::HoldsHealth for Entry<S> {
    fn health(&self) -> &EndpointHealth {
        &self.health
    }
}

/// `desc`'s bit saying the description is kept whole.
const WHOLE: u64 = 1 << 40;

/// A state's code in `desc`, if it has one.
fn state_code(state: EndpointState) -> Option<u64> {
    match state {
        EndpointState::Ready => Some(0),
        EndpointState::Terminating => Some(1),
        EndpointState::NotReady => Some(2),
        _ => None,
    }
}

fn state_of(code: u64) -> EndpointState {
    match code {
        0 => EndpointState::Ready,
        1 => EndpointState::Terminating,
        _ => EndpointState::NotReady,
    }
}

/// `endpoint` as `desc` and `whole` keep it.
fn split(endpoint: Endpoint) -> (u64, Option<Arc<Endpoint>>) {
    let plain =
        endpoint.zone().is_none() && endpoint.cluster().is_none() && endpoint.hostname().is_none();
    let weight = u64::from(endpoint.weight());
    match state_code(endpoint.state()) {
        Some(code) if plain => (weight | code << 32, None),
        code => (
            weight | code.unwrap_or(2) << 32 | WHOLE,
            Some(Arc::new(endpoint)),
        ),
    }
}

impl<S> Entry<S> {
    pub(crate) fn new(
        endpoint: Endpoint,
        svc: S,
        observer: Option<Arc<dyn OutcomeObserver>>,
        tracking: Option<Arc<Tracking>>,
    ) -> Self {
        let addr = endpoint.addr();
        let (desc, whole) = split(endpoint);
        Self {
            addr,
            session_key: gatekit_core::session::endpoint_key(addr),
            desc: AtomicU64::new(desc),
            whole: ArcSwapOption::new(whole),
            svc,
            health: EndpointHealth::new(),
            observer,
            tracking,
            in_flight: AtomicU32::new(0),
            ewma_bits: AtomicU64::new(0),
            ewma_at: AtomicU64::new(0),
            ramp_from: AtomicU64::new(0),
            was_available: AtomicBool::new(true),
        }
    }

    /// The endpoint's latest description.
    pub(crate) fn endpoint(&self) -> Endpoint {
        // Acquire: pairs with `set_endpoint`'s release, so a `WHOLE` bit finds its
        // description stored.
        let desc = self.desc.load(Ordering::Acquire);
        if desc & WHOLE != 0
            && let Some(whole) = &*self.whole.load()
        {
            return Endpoint::clone(whole);
        }
        Endpoint::new(self.addr)
            .with_weight(desc as u32)
            .with_state(state_of(desc >> 32 & 0xff))
    }

    /// The latest description's state (no copy of the description).
    pub(crate) fn state(&self) -> EndpointState {
        let desc = self.desc.load(Ordering::Acquire);
        if desc & WHOLE != 0
            && let Some(whole) = &*self.whole.load()
        {
            return whole.state();
        }
        state_of(desc >> 32 & 0xff)
    }

    /// Stores `endpoint` (of this entry's address) as the latest description. Called
    /// under the upstream's update lock (one writer).
    pub(crate) fn set_endpoint(&self, endpoint: Endpoint) {
        debug_assert_eq!(endpoint.addr(), self.addr);
        let (desc, whole) = split(endpoint);
        match whole {
            // The description first: a reader seeing the bit finds it.
            Some(whole) => {
                self.whole.store(Some(whole));
                self.desc.store(desc, Ordering::Release);
            }
            // The bit first: a reader still seeing it may find the old description or
            // none (then it reads `desc` as it was: a moment old, whole in itself).
            None => {
                self.desc.store(desc, Ordering::Release);
                self.whole.store(None);
            }
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed) as usize
    }

    pub(crate) fn acquire(&self) {
        // Relaxed: a statistic read by pickers; no other memory depends on it.
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(tracking) = &self.tracking
            && tracking.count_total
        {
            tracking.total_in_flight.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(tracking) = &self.tracking
            && tracking.count_total
        {
            tracking.total_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The upstream-wide in-flight total (bounded load; 0 without it).
    pub(crate) fn total_in_flight(&self) -> usize {
        self.tracking
            .as_ref()
            .map_or(0, |t| t.total_in_flight.load(Ordering::Relaxed))
    }

    pub(crate) fn start_ramp(&self, now_ns: u64) {
        self.ramp_from.store(now_ns, Ordering::Relaxed);
    }

    /// Slow-start factor at `now_ns` (1.0 when not ramping).
    #[inline]
    pub(crate) fn ramp(&self, now_ns: u64, slow_start: Option<&crate::SlowStart>) -> f64 {
        let Some(ss) = slow_start else { return 1.0 };
        let from = self.ramp_from.load(Ordering::Relaxed);
        if from == 0 {
            return 1.0;
        }
        let elapsed = std::time::Duration::from_nanos(now_ns.saturating_sub(from));
        if elapsed >= ss.window() {
            // Done: stop paying for the computation. A racing `start_ramp` may be lost,
            // which only shortens a ramp that was restarted in the same instant.
            self.ramp_from.store(0, Ordering::Relaxed);
            return 1.0;
        }
        ss.factor(elapsed)
    }

    /// The peak-EWMA latency estimate at `now_ns`, decayed towards zero since its last
    /// update (as tower's `PeakEwma` does), in ns.
    #[inline]
    pub(crate) fn ewma(&self, now_ns: u64, decay_ns: f64) -> f64 {
        let at = self.ewma_at.load(Ordering::Relaxed);
        if at == 0 {
            return self.tracking.as_ref().map_or(0.0, |t| t.ewma_default_ns);
        }
        let est = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        let elapsed = now_ns.saturating_sub(at) as f64;
        if elapsed <= 0.0 {
            est
        } else {
            est * (-elapsed / decay_ns).exp()
        }
    }

    /// Records a latency sample. Racy on purpose: load, compute, store, without a
    /// compare-and-swap loop. Two responses completing at the same instant may lose one
    /// sample; the estimate is still a value some response produced, so the error is
    /// bounded by one sample's weight, and no response ever spins or waits.
    pub(crate) fn observe_rtt(&self, now_ns: u64, rtt_ns: f64, decay_ns: f64) {
        let at = self.ewma_at.load(Ordering::Relaxed);
        let next = if at == 0 {
            rtt_ns
        } else {
            let prev = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
            if rtt_ns > prev {
                rtt_ns
            } else {
                let elapsed = now_ns.saturating_sub(at) as f64;
                let decay = (-elapsed / decay_ns).exp();
                prev * decay + rtt_ns * (1.0 - decay)
            }
        };
        self.ewma_bits.store(next.to_bits(), Ordering::Relaxed);
        self.ewma_at.store(now_ns.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<()> {
        let tracking = Arc::new(Tracking {
            count_total: true,
            total_in_flight: AtomicUsize::new(0),
            ewma_decay_ns: Some(1e9),
            ewma_default_ns: 5e6,
        });
        Entry::new(
            Endpoint::new("127.0.0.1:1".parse().unwrap()),
            (),
            None,
            Some(tracking),
        )
    }

    #[test]
    fn ewma_takes_peaks_at_once_and_decays_towards_lower_samples() {
        let e = entry();
        assert_eq!(e.ewma(10, 1e9), 5e6, "default before any sample");
        e.observe_rtt(1_000, 10e6, 1e9);
        assert_eq!(e.ewma(1_000, 1e9), 10e6);
        e.observe_rtt(2_000, 50e6, 1e9);
        assert_eq!(e.ewma(2_000, 1e9), 50e6, "peak is taken at once");
        // One decay period later a low sample pulls the estimate ~63% of the way.
        e.observe_rtt(1_000_002_000, 10e6, 1e9);
        let est = e.ewma(1_000_002_000, 1e9);
        assert!(
            (est - (50e6 / std::f64::consts::E + 10e6 * (1.0 - 1.0 / std::f64::consts::E))).abs()
                < 1.0
        );
        // Without samples it decays towards zero.
        assert!(e.ewma(5_000_002_000, 1e9) < est / 50.0);
    }

    proptest::proptest! {
        #[test]
        fn ewma_stays_within_the_samples(samples in proptest::collection::vec((1u64..1_000_000_000, 1.0f64..1e9), 1..50)) {
            let e = entry();
            let mut now = 1;
            let (mut lo, mut hi) = (f64::MAX, 0.0f64);
            for (dt, rtt) in samples {
                now += dt;
                e.observe_rtt(now, rtt, 1e9);
                lo = lo.min(rtt);
                hi = hi.max(rtt);
                let est = e.ewma(now, 1e9);
                proptest::prop_assert!(est >= lo * (1.0 - 1e-9) && est <= hi * (1.0 + 1e-9));
            }
        }
    }
}
