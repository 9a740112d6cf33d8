//! A small, fast, deterministic hasher for the route table's string-keyed maps.
//!
//! The maps are built from configuration and only *looked up* with request data, so the
//! hash-flooding defence of std's SipHash buys nothing here: a request cannot insert keys,
//! and probe lengths are fixed when the table is built. Each 8-byte word is mixed with a
//! folded 64x64->128 multiply (the construction foldhash and wyhash use), which spreads
//! every input bit over the low bits that hashbrown uses to pick a bucket.

use std::hash::{BuildHasher, Hasher};

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xa076_1d64_78bd_642f;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Builds [`FoldHasher`]s: for maps keyed by configuration (route ids, hostnames,
/// paths), never by keys a client chooses (no hash-flooding defence).
#[derive(Clone, Copy, Debug, Default)]
pub struct FoldBuild;

impl BuildHasher for FoldBuild {
    type Hasher = FoldHasher;

    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher { state: K2 }
    }
}

/// The hasher: folded-multiply mixing of 8-byte words.
#[derive(Clone, Copy, Debug)]
pub struct FoldHasher {
    state: u64,
}

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.state = fold_mul(self.state ^ u64::from_le_bytes(word), K1);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.state = fold_mul(self.state ^ u64::from_le_bytes(word), K1);
        }
        // The length keeps "a" and "a\0" apart.
        self.state = fold_mul(self.state ^ bytes.len() as u64, K2);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.state = fold_mul(self.state ^ u64::from(i), K1);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.state, K1)
    }
}

/// A `HashMap` with the fast hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, FoldBuild>;

/// Gives back the room of `map` once it holds less than a quarter of its capacity (after
/// many removals), so that memory follows the configuration down: a map never shrinks by
/// itself. Amortised O(1) per removal; small maps are left as they are.
pub fn shrink_if_sparse<K, V, S>(map: &mut std::collections::HashMap<K, V, S>)
where
    K: Eq + std::hash::Hash,
    S: BuildHasher,
{
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_emptied_below_a_quarter_gives_its_room_back_and_a_full_one_keeps_it() {
        let mut map: FastMap<u32, u32> = (0..1000).map(|i| (i, i)).collect();
        let full = map.capacity();
        shrink_if_sparse(&mut map);
        assert_eq!(map.capacity(), full, "a full map keeps its room");
        map.retain(|k, _| *k < 10);
        shrink_if_sparse(&mut map);
        assert!(
            map.capacity() < full / 8,
            "capacity {} of {full}",
            map.capacity()
        );
        assert_eq!(map.len(), 10);
        assert_eq!(map.get(&3), Some(&3));
    }

    #[test]
    fn equal_strings_hash_equal_and_near_strings_spread() {
        let h = |s: &str| FoldBuild.hash_one(s);
        assert_eq!(h("/foo/bar"), h("/foo/bar"));
        assert_ne!(h("a"), h("a\0"));
        // Low 8 bits (what a small hashbrown table uses) differ across near-identical keys.
        let lows: std::collections::HashSet<u64> = (0..64)
            .map(|i| h(&format!("/api/v1/item{i}")) & 0xff)
            .collect();
        assert!(lows.len() > 40, "poor spread: {}", lows.len());
    }
}
