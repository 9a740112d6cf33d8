//! The immutable endpoint-set snapshot a pick reads, with every derived table built at
//! update time, and the cached aggregate health view.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use gatekit_core::small_list::SmallList;
use gatekit_core::{Endpoint, EndpointState};
use tokio::time::Instant;

use crate::balance::Table;
use crate::config::UpstreamConfig;
use crate::entry::Entry;

/// Traffic shares are fixed point out of this.
pub(crate) const SHARE_ONE: u32 = 1 << 16;

/// One endpoint as the updater holds it: its carried state, with its latest
/// description (the entry's, so each upstream's member map stays small: with the
/// description inline, a one-endpoint upstream's map node took 1.4 KB).
pub(crate) struct Member<S> {
    pub(crate) entry: Arc<Entry<S>>,
}

impl<S> Member<S> {
    /// The endpoint's latest description.
    pub(crate) fn endpoint(&self) -> Endpoint {
        self.entry.endpoint()
    }
}

/// A snapshot's member: its entry, which holds its latest description.
pub(crate) type MemberRef<S> = Arc<Entry<S>>;

/// An endpoint in a pool, with the weight the pool balances by.
pub(crate) struct Slot<S> {
    pub(crate) entry: Arc<Entry<S>>,
    pub(crate) weight: u32,
}

/// A set of endpoints balanced together, with its algorithm's table.
pub(crate) struct Pool<S> {
    /// One inline (no allocation for a pool of one endpoint).
    pub(crate) slots: SmallList<Slot<S>>,
    /// Shared with the previous snapshot's pool of the same endpoints and weights.
    pub(crate) table: Table,
}

impl<S> Pool<S> {
    /// A pool of `slots`. The table is taken from a pool of `prev` that has the same
    /// endpoints (by identity, hence address) with the same weights in the same order,
    /// since it would be built identically; otherwise it is built. An update that
    /// leaves a pool as it was (a not-ready endpoint added or removed, a change in
    /// another locality level or in the fallback) thus costs no table build: a Maglev
    /// table of 65,537 slots is the most expensive part of an update.
    fn new(slots: Vec<Slot<S>>, config: &UpstreamConfig, prev: Option<&Snapshot<S>>) -> Self {
        let same = |p: &&Pool<S>| {
            p.slots.len() == slots.len()
                && p.slots
                    .iter()
                    .zip(&slots)
                    .all(|(a, b)| a.weight == b.weight && Arc::ptr_eq(&a.entry, &b.entry))
        };
        let table = prev.and_then(|prev| prev.pools().find(same)).map_or_else(
            || Table::build(config.algorithm, &slots),
            |p| p.table.clone(),
        );
        Self {
            slots: slots.into(),
            table,
        }
    }
}

/// What the aggregate health view decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Locality levels, health respected.
    Normal = 0,
    /// Too few ready endpoints available: all ready endpoints, health ignored.
    Panic = 1,
    /// No ready endpoint available but some terminating (or weight-0) one is.
    Fallback = 2,
}

/// Aggregate health, recomputed at most every `health_refresh` by whichever pick finds
/// it stale (one at a time; others use the previous values meanwhile).
pub(crate) struct View {
    refreshed_at: AtomicU64,
    refreshing: AtomicBool,
    mode: AtomicU8,
}

/// The ready pools by locality level: one inline (most upstreams have a single level,
/// or none: no allocation for the list), or several.
enum Levels<S> {
    One(Pool<S>),
    Many(Box<[Pool<S>]>),
}

/// What a snapshot of more than one locality level has besides its levels (behind
/// one box: most upstreams have one level).
struct MultiLevel<S> {
    /// All ready endpoints (for panic mode).
    all: Pool<S>,
    /// Cumulative traffic share of each level, out of [`SHARE_ONE`].
    level_cum: Box<[AtomicU32]>,
}

/// A snapshot's members (NotReady included), sorted by address: one inline (most
/// upstreams have one endpoint: no allocation for the list, and no room beyond a boxed
/// list's), or a boxed list that also holds their order by session key (sessions name
/// endpoints by key): one allocation for both.
pub(crate) enum Members<S> {
    One(MemberRef<S>),
    /// Each member, with the index of the member whose session key is the i-th
    /// smallest.
    Many(Box<[(MemberRef<S>, u32)]>),
}

impl<S> Members<S> {
    fn new(mut members: Vec<MemberRef<S>>) -> Self {
        if members.len() == 1
            && let Some(one) = members.pop()
        {
            return Self::One(one);
        }
        let mut order: Vec<u32> = (0..members.len())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        order.sort_unstable_by_key(|&i| members[i as usize].session_key);
        Self::Many(members.into_iter().zip(order).collect())
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(list) => list.len(),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &MemberRef<S>> {
        let (one, many) = match self {
            Self::One(one) => (Some(one), &[][..]),
            Self::Many(list) => (None, &list[..]),
        };
        one.into_iter().chain(many.iter().map(|(m, _)| m))
    }

    /// The member at `addr`.
    fn by_addr(&self, addr: SocketAddr) -> Option<&MemberRef<S>> {
        match self {
            Self::One(one) => (one.addr == addr).then_some(one),
            Self::Many(list) => list
                .binary_search_by(|(e, _)| e.addr.cmp(&addr))
                .ok()
                .map(|i| &list[i].0),
        }
    }

    /// The member whose session key is `key`: a binary search in key order.
    fn by_session_key(&self, key: u64) -> Option<&MemberRef<S>> {
        let list = match self {
            Self::One(one) => return (one.session_key == key).then_some(one),
            Self::Many(list) => list,
        };
        // The i-th entry's order index names the member with the i-th smallest key.
        let nth = |&(_, i): &(MemberRef<S>, u32)| &list[i as usize].0;
        let at = list
            .binary_search_by(|slot| nth(slot).session_key.cmp(&key))
            .ok()?;
        Some(nth(&list[at]))
    }
}

/// The endpoint set at one generation.
pub(crate) struct Snapshot<S> {
    pub(crate) generation: u64,
    pub(crate) members: Members<S>,
    /// Ready endpoints with weight > 0, by locality priority (most local first).
    levels: Levels<S>,
    /// With more than one level: all ready endpoints and the levels' shares.
    multi: Option<Box<MultiLevel<S>>>,
    /// Terminating endpoints and ready ones of weight 0, if any (most snapshots have
    /// none: no room for an empty pool).
    fallback: Option<Box<Pool<S>>>,
    pub(crate) view: View,
}

impl<S> Snapshot<S> {
    /// The snapshot of `set`, reusing the tables of `prev` (the current snapshot) where
    /// a pool is unchanged.
    pub(crate) fn build(
        generation: u64,
        set: &[(SocketAddr, Member<S>)],
        config: &UpstreamConfig,
        now: Instant,
        prev: Option<&Self>,
    ) -> Self {
        let mut levels: [Vec<Slot<S>>; 4] = Default::default();
        let mut all = Vec::new();
        let mut fallback = Vec::new();
        let mut members = Vec::with_capacity(set.len());
        for (_, m) in set {
            let ep = &m.endpoint();
            members.push(m.entry.clone());
            match ep.state() {
                EndpointState::Ready if ep.weight() > 0 => {
                    let p = usize::from(config.locality().priority(ep)).min(3);
                    levels[p].push(Slot {
                        entry: m.entry.clone(),
                        weight: ep.weight(),
                    });
                    all.push(Slot {
                        entry: m.entry.clone(),
                        weight: ep.weight(),
                    });
                }
                EndpointState::Ready | EndpointState::Terminating => fallback.push(Slot {
                    entry: m.entry.clone(),
                    weight: ep.weight().max(1),
                }),
                _ => {}
            }
        }
        let mut levels: Vec<Pool<S>> = levels
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|l| Pool::new(l, config, prev))
            .collect();
        let multi = (levels.len() > 1).then(|| {
            Box::new(MultiLevel {
                all: Pool::new(all, config, prev),
                level_cum: levels.iter().map(|_| AtomicU32::new(SHARE_ONE)).collect(),
            })
        });
        let levels = match levels.pop() {
            Some(only) if levels.is_empty() => Levels::One(only),
            Some(last) => {
                levels.push(last);
                Levels::Many(levels.into_boxed_slice())
            }
            None => Levels::Many(Box::default()),
        };
        let view = View {
            refreshed_at: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            mode: AtomicU8::new(Mode::Normal as u8),
        };
        let snap = Self {
            generation,
            members: Members::new(members),
            levels,
            multi,
            fallback: (!fallback.is_empty()).then(|| Box::new(Pool::new(fallback, config, prev))),
            view,
        };
        snap.refresh(now, crate::clock::nanos(now), config);
        snap
    }

    /// The ready pools by locality level, most local first.
    #[inline]
    pub(crate) fn levels(&self) -> &[Pool<S>] {
        match &self.levels {
            Levels::One(pool) => std::slice::from_ref(pool),
            Levels::Many(pools) => pools,
        }
    }

    /// Every pool (levels, all ready, fallback).
    fn pools(&self) -> impl Iterator<Item = &Pool<S>> {
        self.levels()
            .iter()
            .chain(self.multi.as_ref().map(|m| &m.all))
            .chain(self.fallback())
    }

    /// Terminating endpoints and ready ones of weight 0, if any.
    #[inline]
    pub(crate) fn fallback(&self) -> Option<&Pool<S>> {
        self.fallback.as_deref()
    }

    /// All ready endpoints (for panic mode).
    pub(crate) fn all_ready(&self) -> Option<&Pool<S>> {
        match &self.multi {
            Some(multi) => Some(&multi.all),
            None => self.levels().first(),
        }
    }

    /// The levels' cumulative shares (empty with one level or none).
    fn level_cum(&self) -> &[AtomicU32] {
        self.multi.as_ref().map_or(&[], |m| &m.level_cum)
    }

    pub(crate) fn member(&self, addr: SocketAddr) -> Option<&MemberRef<S>> {
        self.members.by_addr(addr)
    }

    /// The member a session names by its endpoint key.
    pub(crate) fn member_by_session_key(&self, key: u64) -> Option<&MemberRef<S>> {
        self.members.by_session_key(key)
    }

    /// Refreshes the view if it is older than the configured period.
    #[inline]
    pub(crate) fn maybe_refresh(&self, now: Instant, now_ns: u64, config: &UpstreamConfig) {
        let at = self.view.refreshed_at.load(Ordering::Relaxed);
        let period = config.health_refresh_ns;
        if now_ns.saturating_sub(at) >= period
            && self
                .view
                .refreshing
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            self.refresh(now, now_ns, config);
            self.view.refreshing.store(false, Ordering::Release);
        }
    }

    /// Recomputes the aggregate view: mode, level shares, and the start of slow start for
    /// endpoints that became available again.
    pub(crate) fn refresh(&self, now: Instant, now_ns: u64, config: &UpstreamConfig) {
        let slow = config.slow_start().is_some();
        let scan = |pool: &Pool<S>| -> (u64, u64) {
            let mut avail = 0;
            for s in pool.slots.iter() {
                let ok = s.entry.health.is_available(now);
                let was = s.entry.was_available.swap(ok, Ordering::Relaxed);
                if ok && !was && slow {
                    s.entry.start_ramp(now_ns);
                }
                avail += u64::from(ok);
            }
            (avail, pool.slots.len() as u64)
        };
        let mut ready_total = 0;
        let mut ready_avail = 0;
        let mut shares = [0f64; 4];
        for (i, level) in self.levels().iter().enumerate() {
            let (avail, total) = scan(level);
            ready_total += total;
            ready_avail += avail;
            if total > 0 {
                shares[i] =
                    (avail as f64 / total as f64 * config.locality().overprovisioning()).min(1.0);
            }
        }
        let (fallback_avail, _) = self.fallback().map_or((0, 0), scan);
        let mode = if ready_avail == 0 && fallback_avail > 0 {
            Mode::Fallback
        } else if ready_total > 0
            && (ready_avail as f64) < config.panic_threshold() * ready_total as f64
        {
            Mode::Panic
        } else {
            Mode::Normal
        };
        // Envoy's priority load: each level takes what its health allows of what the
        // more local levels left; if the sum falls short, scale up proportionally.
        let mut loads = [0f64; 4];
        let mut left = 1.0f64;
        for i in 0..self.levels().len() {
            loads[i] = shares[i].min(left);
            left -= loads[i];
        }
        let sum: f64 = loads.iter().sum();
        let mut cum = 0f64;
        let level_cum = self.level_cum();
        for (i, slot) in level_cum.iter().enumerate() {
            cum += if sum > 0.0 {
                loads[i] / sum
            } else {
                // Nothing available anywhere: keep the most local level.
                f64::from(u8::from(i == 0))
            };
            let fixed = (cum * f64::from(SHARE_ONE)).round() as u32;
            slot.store(fixed.min(SHARE_ONE), Ordering::Relaxed);
        }
        if let Some(last) = level_cum.last() {
            last.store(SHARE_ONE, Ordering::Relaxed);
        }
        self.view.mode.store(mode as u8, Ordering::Relaxed);
        self.view.refreshed_at.store(now_ns, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn mode(&self) -> Mode {
        match self.view.mode.load(Ordering::Relaxed) {
            1 => Mode::Panic,
            2 => Mode::Fallback,
            _ => Mode::Normal,
        }
    }

    /// The level a pick should use, drawn by the levels' traffic shares.
    #[inline]
    pub(crate) fn pick_level(&self) -> usize {
        let Some(multi) = &self.multi else {
            return 0;
        };
        let r = fastrand::u32(..SHARE_ONE);
        multi
            .level_cum
            .iter()
            .position(|c| r < c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::entry::Tracking;

    fn snapshot(n: u16) -> Snapshot<()> {
        let tracking = Arc::new(Tracking {
            count_total: false,
            total_in_flight: AtomicUsize::new(0),
            ewma_decay_ns: None,
            ewma_default_ns: 0.0,
        });
        let set: Vec<_> = (0..n)
            .map(|i| {
                let addr = SocketAddr::from(([10, 0, 0, 1], 8000 + i));
                let entry = Entry::new(Endpoint::new(addr), (), None, Some(Arc::clone(&tracking)));
                (
                    addr,
                    Member {
                        entry: Arc::new(entry),
                    },
                )
            })
            .collect();
        let config = UpstreamConfig::default();
        Snapshot::build(1, &set, &config, Instant::now(), None)
    }

    #[test]
    fn one_level_is_kept_inline_and_several_behind_one_box() {
        assert_eq!(
            std::mem::size_of::<Levels<()>>(),
            std::mem::size_of::<Pool<()>>(),
            "the list of levels takes no room beyond its one pool"
        );
        let one = snapshot(3);
        assert!(matches!(one.levels, Levels::One(_)));
        assert!(one.multi.is_none());
        assert_eq!(one.levels().len(), 1);
        assert_eq!(one.levels()[0].slots.len(), 3);
        let none = snapshot(0);
        assert!(none.levels().is_empty() && none.all_ready().is_none());
    }

    #[test]
    fn one_endpoint_takes_no_list_of_its_own() {
        let snap = snapshot(1);
        assert!(matches!(snap.members, Members::One(_)));
        assert!(matches!(snap.levels()[0].slots, SmallList::One(_)));
        assert!(matches!(snapshot(2).members, Members::Many(_)));
        // The one member inline costs no room beyond a boxed list's.
        assert_eq!(
            std::mem::size_of::<Members<()>>(),
            std::mem::size_of::<Box<[MemberRef<()>]>>()
        );
    }

    #[test]
    fn session_keys_find_their_member_whether_one_or_many() {
        let stranger = gatekit_core::session::endpoint_key(SocketAddr::from(([192, 0, 2, 1], 1)));
        for n in [0, 1, 2, 5] {
            let snap = snapshot(n);
            // One member inline (looked at directly), no shares for a single level.
            assert_eq!(matches!(snap.members, Members::One(_)), n == 1);
            assert_eq!(snap.members.len(), usize::from(n));
            assert!(snap.level_cum().is_empty());
            assert_eq!(snap.pick_level(), 0);
            for entry in snap.members.iter() {
                let found = snap.member_by_session_key(entry.session_key).unwrap();
                assert_eq!(found.addr, entry.addr);
            }
            assert!(
                snap.member_by_session_key(stranger).is_none(),
                "{n} members"
            );
        }
    }
}
