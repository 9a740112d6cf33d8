//! The balancing algorithms: per-pool tables built at update time and the per-pick code.
//!
//! Every pick reads one pool (a locality level, all ready endpoints in panic mode, or the
//! terminating fallback) and never allocates. Unavailable endpoints are skipped
//! (unless health is ignored in panic mode), and so are the endpoints a retried
//! request's earlier attempts went to ([`PickCtx::avoid`]); how skipping works depends on
//! the algorithm and is bounded: at worst one linear pass over the pool.

pub(crate) mod hash;
pub(crate) mod maglev;
pub(crate) mod schedule;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gatekit_core::retry::TriedEndpoints;
use tokio::time::Instant;

use crate::config::{Algorithm, UpstreamConfig};
use crate::entry::Entry;
use crate::snapshot::{Pool, Slot};

/// Pools up to this size are scanned exactly by least-request and peak-EWMA; larger
/// ones use power of two choices.
pub(crate) const EXACT_MAX: usize = 16;
/// Random candidates drawn before falling back to a linear pass.
const RANDOM_TRIES: usize = 8;

/// A pool's algorithm table. Cloning shares it (consecutive snapshots reuse the table of
/// an unchanged pool); a pick reads the slice in place.
#[derive(Clone)]
pub(crate) enum Table {
    /// No table: plain index arithmetic.
    None,
    /// A smooth weighted schedule of slot indices (weighted round robin; weighted
    /// random draws uniformly from it).
    Schedule(Arc<[u32]>),
    /// A Maglev lookup table of slot indices.
    Maglev(maglev::Lookup),
}

impl Table {
    pub(crate) fn build<S>(algorithm: Algorithm, slots: &[Slot<S>]) -> Self {
        match algorithm {
            Algorithm::WeightedRoundRobin
            | Algorithm::Random
            | Algorithm::LeastRequest
            | Algorithm::PeakEwma => {
                let weights: Vec<u32> = slots.iter().map(|s| s.weight).collect();
                schedule::build(&weights).map_or(Self::None, |s| Self::Schedule(s.into()))
            }
            Algorithm::IpHash | Algorithm::ConsistentHash => {
                let eps: Vec<_> = slots.iter().map(|s| (s.entry.addr, s.weight)).collect();
                Self::Maglev(maglev::build(&eps))
            }
            _ => Self::None,
        }
    }
}

/// What one pick knows.
pub(crate) struct PickCtx<'a> {
    pub(crate) now: Instant,
    pub(crate) now_ns: u64,
    pub(crate) ignore_health: bool,
    /// The request's key hash (hash algorithms only; `None` if the request has no key).
    pub(crate) hash: Option<u64>,
    pub(crate) cursor: &'a AtomicUsize,
    pub(crate) config: &'a UpstreamConfig,
    /// Endpoints to skip as if unavailable: those earlier attempts of a retried request
    /// went to. The caller picks again without them when this finds nothing.
    pub(crate) avoid: Option<&'a TriedEndpoints>,
}

impl PickCtx<'_> {
    #[inline]
    fn usable<S>(&self, s: &Slot<S>) -> bool {
        (self.ignore_health || s.entry.health.is_available(self.now))
            && self.avoid.is_none_or(|tried| !tried.contains(s.entry.addr))
    }

    #[inline]
    fn ramp<S>(&self, s: &Slot<S>) -> f64 {
        s.entry.ramp(self.now_ns, self.config.slow_start())
    }

    /// Slow start by sampling: a ramping endpoint is taken with probability `factor`.
    #[inline]
    fn admit<S>(&self, s: &Slot<S>) -> bool {
        let f = self.ramp(s);
        f >= 1.0 || fastrand::f64() < f
    }
}

/// Picks an endpoint of `pool`, or `None` when none is usable.
#[inline]
pub(crate) fn pick<'p, S>(pool: &'p Pool<S>, ctx: &PickCtx<'_>) -> Option<&'p Arc<Entry<S>>> {
    if pool.slots.is_empty() {
        return None;
    }
    let slot = match ctx.config.algorithm {
        Algorithm::RoundRobin => round_robin(pool, ctx),
        Algorithm::WeightedRoundRobin => match &pool.table {
            Table::Schedule(s) => weighted(pool, s, ctx),
            _ => round_robin(pool, ctx),
        },
        Algorithm::LeastRequest => least_cost(pool, ctx, |s, _| s.entry.in_flight() as f64),
        Algorithm::PeakEwma => peak_ewma(pool, ctx),
        Algorithm::IpHash | Algorithm::ConsistentHash => match (&pool.table, ctx.hash) {
            (Table::Maglev(maglev::Lookup::Small(t)), Some(h)) if !t.is_empty() => {
                hashed(pool, t, usize::from, h, ctx)
            }
            (Table::Maglev(maglev::Lookup::Large(t)), Some(h)) if !t.is_empty() => {
                hashed(pool, t, |x: u32| x as usize, h, ctx)
            }
            _ => random(pool, ctx),
        },
        _ => random(pool, ctx),
    };
    slot.map(|s| &s.entry)
}

/// A linear pass from `start`: the first usable slot that slow start admits, else the
/// first usable one.
fn scan<'p, S>(pool: &'p Pool<S>, start: usize, ctx: &PickCtx<'_>) -> Option<&'p Slot<S>> {
    let n = pool.slots.len();
    let mut spare = None;
    for i in 0..n {
        let s = &pool.slots[start.wrapping_add(i) % n];
        if !ctx.usable(s) {
            continue;
        }
        if ctx.admit(s) {
            return Some(s);
        }
        spare.get_or_insert(s);
    }
    spare
}

/// Where a round-robin pick starts: the next cursor position, taken. A retry (a pick
/// that avoids tried endpoints) reads the cursor without moving it, so the first attempts
/// of later requests keep their turn: with one refusing endpoint of two, a retried
/// request would otherwise move the cursor twice and every first attempt after it would
/// land on the refusing endpoint again.
#[inline]
fn cursor_start(ctx: &PickCtx<'_>) -> usize {
    // Relaxed: the cursor only spreads picks; no memory is published through it.
    if ctx.avoid.is_some() {
        ctx.cursor.load(Ordering::Relaxed)
    } else {
        ctx.cursor.fetch_add(1, Ordering::Relaxed)
    }
}

fn round_robin<'p, S>(pool: &'p Pool<S>, ctx: &PickCtx<'_>) -> Option<&'p Slot<S>> {
    scan(pool, cursor_start(ctx), ctx)
}

fn weighted<'p, S>(pool: &'p Pool<S>, sched: &[u32], ctx: &PickCtx<'_>) -> Option<&'p Slot<S>> {
    let start = cursor_start(ctx);
    let len = sched.len();
    let mut spare = None;
    // Walk the schedule from the cursor; bounded by one period, then by a linear pass.
    for i in 0..len.min(pool.slots.len() * 4 + 8) {
        let s = &pool.slots[sched[start.wrapping_add(i) % len] as usize];
        if !ctx.usable(s) {
            continue;
        }
        if ctx.admit(s) {
            return Some(s);
        }
        spare.get_or_insert(s);
    }
    spare.or_else(|| scan(pool, start, ctx))
}

/// A uniformly random usable slot (weighted when the pool has a schedule).
fn random_usable<'p, S>(pool: &'p Pool<S>, ctx: &PickCtx<'_>) -> Option<&'p Slot<S>> {
    let n = pool.slots.len();
    for _ in 0..RANDOM_TRIES {
        let i = match &pool.table {
            Table::Schedule(s) => s[fastrand::usize(..s.len())] as usize,
            _ => fastrand::usize(..n),
        };
        let s = &pool.slots[i];
        if ctx.usable(s) {
            return Some(s);
        }
    }
    None
}

fn random<'p, S>(pool: &'p Pool<S>, ctx: &PickCtx<'_>) -> Option<&'p Slot<S>> {
    let mut spare = None;
    for _ in 0..RANDOM_TRIES {
        match random_usable(pool, ctx) {
            Some(s) if ctx.admit(s) => return Some(s),
            Some(s) => {
                spare.get_or_insert(s);
            }
            None => break,
        }
    }
    spare.or_else(|| scan(pool, fastrand::usize(..pool.slots.len()), ctx))
}

/// Least cost per unit of (slow-start adjusted) weight: an exact scan for small pools,
/// power of two choices for large ones. Ties (idle endpoints) are broken by a weighted
/// random choice, so an idle pool is balanced by weight rather than all sent to the
/// heaviest endpoint; P2C draws its two candidates weighted for the same reason.
#[inline]
fn least_cost<'p, S>(
    pool: &'p Pool<S>,
    ctx: &PickCtx<'_>,
    cost: impl Fn(&Slot<S>, &PickCtx<'_>) -> f64,
) -> Option<&'p Slot<S>> {
    let n = pool.slots.len();
    if n <= EXACT_MAX && matches!(pool.table, Table::None) && ctx.config.slow_start().is_none() {
        // Equal weights, no ramp: a random start breaks ties without a draw per tie.
        let start = fastrand::usize(..n);
        let mut best: Option<(&Slot<S>, f64)> = None;
        for i in 0..n {
            let s = &pool.slots[(start + i) % n];
            if !ctx.usable(s) {
                continue;
            }
            let c = cost(s, ctx);
            if best.is_none_or(|(_, b)| c < b) {
                best = Some((s, c));
            }
        }
        return best.map(|(s, _)| s);
    }
    if n <= EXACT_MAX {
        let mut best: Option<&Slot<S>> = None;
        let mut best_cost = f64::INFINITY;
        let mut tied_weight = 0.0;
        for s in pool.slots.iter() {
            if !ctx.usable(s) {
                continue;
            }
            let w = f64::from(s.weight) * ctx.ramp(s);
            let c = cost(s, ctx) / w;
            if c < best_cost {
                best = Some(s);
                best_cost = c;
                tied_weight = w;
            } else if c == best_cost {
                // Weighted reservoir sampling among the tied.
                tied_weight += w;
                if fastrand::f64() * tied_weight < w {
                    best = Some(s);
                }
            }
        }
        return best;
    }
    let a = random(pool, ctx)?;
    let b = (0..RANDOM_TRIES)
        .filter_map(|_| random(pool, ctx))
        .find(|b| !std::ptr::eq(*b, a));
    let weighted = |s: &Slot<S>| cost(s, ctx) / (f64::from(s.weight) * ctx.ramp(s));
    match b {
        Some(b) if weighted(b) < weighted(a) => Some(b),
        _ => Some(a),
    }
}

/// Power of two choices on peak-EWMA cost (tower's `PeakEwma` and `p2c`): two distinct
/// candidates drawn by weight (slow start admitting), the one with the lower
/// `latency × (in flight + 1) / slow-start factor` wins; a tie goes to the first draw,
/// so idle endpoints share traffic by weight. Always P2C, even for small pools: an exact
/// argmin would send every idle request to the single fastest endpoint.
fn peak_ewma<'p, S>(pool: &'p Pool<S>, ctx: &PickCtx<'_>) -> Option<&'p Slot<S>> {
    let a = random(pool, ctx)?;
    // The upstream's (every entry made under a peak-EWMA config has it).
    let decay = a
        .entry
        .tracking
        .as_ref()
        .and_then(|t| t.ewma_decay_ns)
        .unwrap_or_else(|| ctx.config.ewma_decay_ns());
    let b = (0..RANDOM_TRIES)
        .filter_map(|_| random(pool, ctx))
        .find(|b| !std::ptr::eq(*b, a));
    let cost = |s: &Slot<S>| {
        s.entry.ewma(ctx.now_ns, decay) * (s.entry.in_flight() as f64 + 1.0) / ctx.ramp(s)
    };
    match b {
        Some(b) if cost(b) < cost(a) => Some(b),
        _ => Some(a),
    }
}

/// Walks the Maglev `table` (entries turned into slot indices by `index`) from the
/// key's position.
#[inline]
fn hashed<'p, S, T: Copy>(
    pool: &'p Pool<S>,
    table: &[T],
    index: impl Fn(T) -> usize,
    h: u64,
    ctx: &PickCtx<'_>,
) -> Option<&'p Slot<S>> {
    let m = table.len();
    let n = pool.slots.len();
    let pos = (h % m as u64) as usize;
    let cap = ctx.config.bounded_load().map(|eps| {
        let total = pool.slots[0].entry.total_in_flight();
        ((1.0 + eps) * (total as f64 + 1.0) / n as f64).ceil() as usize
    });
    let mut spare = None;
    for i in 0..m.min(n * 8 + 16) {
        let s = &pool.slots[index(table[(pos + i) % m])];
        if !ctx.usable(s) {
            continue;
        }
        let f = ctx.ramp(s);
        // Slow start for a hash: a ramping endpoint takes the keys whose own fraction is
        // below its factor, so the keys it gets only grow as it ramps and stay put.
        let admitted = f >= 1.0 || hash::key_fraction(h) < f;
        let loaded = cap.is_some_and(|c| s.entry.in_flight() >= c);
        if admitted && !loaded {
            return Some(s);
        }
        spare.get_or_insert(s);
    }
    spare.or_else(|| scan(pool, pos % n, ctx))
}
