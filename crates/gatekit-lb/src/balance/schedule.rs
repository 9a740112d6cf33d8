//! Smooth weighted round robin, precomputed when the endpoint set changes.
//!
//! The schedule is the sequence nginx's smooth weighted round robin produces over one
//! period (weights 5,1,1 → `a a b a c a a`): each step every endpoint's credit grows by
//! its weight and the richest one is picked and pays the total. Picks then walk the
//! schedule with one atomic cursor, lock-free. Weights are first divided by their
//! greatest common divisor; a period longer than [`MAX_PERIOD`] is scaled down (each
//! weight kept ≥ 1), trading weight precision for memory. nginx's loop costs
//! O(n × period); above a budget an earliest-deadline-first heap (O(period × log n))
//! builds an equally proportional, slightly less smooth schedule.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The longest schedule period.
pub(crate) const MAX_PERIOD: u64 = 1 << 16;
const NGINX_BUDGET: u64 = 1 << 21;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The schedule for `weights` (all > 0) as indices, or `None` when all weights are equal
/// (plain round robin is then exact and needs no table).
pub(crate) fn build(weights: &[u32]) -> Option<Box<[u32]>> {
    let first = *weights.first()?;
    if weights.iter().all(|&w| w == first) {
        return None;
    }
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, u64::from(w)));
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x) / g.max(1)).collect();
    let mut total: u64 = w.iter().sum();
    if total > MAX_PERIOD.max(w.len() as u64) {
        let target = MAX_PERIOD.max(w.len() as u64);
        for x in &mut w {
            *x = (*x * target / total).max(1);
        }
        total = w.iter().sum();
    }
    let n = w.len();
    let mut out = Vec::with_capacity(total as usize);
    if (n as u64).saturating_mul(total) <= NGINX_BUDGET {
        let total_i = total as i64;
        let mut current = vec![0i64; n];
        for _ in 0..total {
            let mut best = 0;
            for i in 0..n {
                current[i] += w[i] as i64;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total_i;
            out.push(best as u32);
        }
    } else {
        // Deadline of the k-th pick of i is (k + 1) / w_i; compare as fractions scaled
        // by the total to stay in integers: (k + 1) * total / w_i.
        let mut heap: BinaryHeap<Reverse<(u128, u32)>> = (0..n)
            .map(|i| Reverse(((u128::from(total) << 32) / u128::from(w[i]), i as u32)))
            .collect();
        let mut picks = vec![1u128; n];
        while out.len() < total as usize {
            let Some(Reverse((_, i))) = heap.pop() else {
                break;
            };
            out.push(i);
            let iu = i as usize;
            picks[iu] += 1;
            heap.push(Reverse((
                (picks[iu] * (u128::from(total) << 32)) / u128::from(w[iu]),
                i,
            )));
        }
    }
    Some(out.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn max_run(s: &[u32], who: u32) -> usize {
        // Cyclic: the schedule repeats.
        let doubled: Vec<u32> = s.iter().chain(s.iter()).copied().collect();
        let (mut best, mut cur) = (0, 0);
        for x in doubled {
            if x == who {
                cur += 1;
                best = best.max(cur);
            } else {
                cur = 0;
            }
        }
        best
    }

    #[test]
    fn five_one_one_interleaves() {
        let s = build(&[5, 1, 1]).unwrap();
        assert_eq!(&*s, &[0, 0, 1, 0, 2, 0, 0]);
        assert!(max_run(&s, 0) <= 4);
    }

    #[test]
    fn equal_weights_need_no_table() {
        assert!(build(&[3, 3, 3]).is_none());
        assert!(build(&[]).is_none());
    }

    #[test]
    fn large_sets_use_the_heap_and_stay_proportional() {
        let mut w = vec![1u32; 4000];
        w[0] = 100;
        w[1] = 50;
        let s = build(&w).unwrap();
        assert_eq!(s.len(), 4000 - 2 + 150);
        assert_eq!(s.iter().filter(|&&x| x == 0).count(), 100);
        assert_eq!(s.iter().filter(|&&x| x == 1).count(), 50);
        assert!(max_run(&s, 0) <= 2, "no bursts");
    }

    proptest! {
        #[test]
        fn counts_match_reduced_weights(ws in proptest::collection::vec(1u32..50, 2..20)) {
            if let Some(s) = build(&ws) {
                let g = ws.iter().fold(0u64, |g, &w| gcd(g, u64::from(w)));
                for (i, w) in ws.iter().enumerate() {
                    let c = s.iter().filter(|&&x| x == i as u32).count() as u64;
                    prop_assert_eq!(c, u64::from(*w) / g);
                }
                // Smooth: the heaviest endpoint never runs longer than its share allows.
                let (hi, wmax) = ws.iter().enumerate().max_by_key(|(_, w)| **w).unwrap();
                let total: u32 = ws.iter().sum();
                let others = total - wmax;
                let bound = (*wmax as usize).div_ceil(others.max(1) as usize) + 1;
                prop_assert!(max_run(&s, hi as u32) <= bound.max(2) * 2);
            }
        }
    }
}
