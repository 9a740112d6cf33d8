//! A small, fast, deterministic hasher for the route table's string-keyed maps.
//!
//! The maps are built from configuration and only *looked up* with request data, so the
//! hash-flooding defence of std's SipHash buys nothing here: a request cannot insert keys,
//! and probe lengths are fixed when the table is built. Each 8-byte word is mixed with a
//! folded 64x64->128 multiply (the construction foldhash and wyhash use), which spreads
//! every input bit over the low bits that hashbrown uses to pick a bucket.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

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

/// How many shards a [`ShardedMap`] has.
const SHARDS: usize = 64;

/// A map in [`SHARDS`] shards behind `Arc`s: a clone costs a pointer per shard, and a
/// change to the clone copies the one shard it reaches (1/64 of the entries). A route
/// table's host maps (a bucket per hostname, thousands with a hostname per route) are
/// cloned into every table a builder makes: whole, that cost a reference count per
/// hostname for a one-route change.
///
/// A key is hashed once per lookup: the same hash picks the shard and the slot in it
/// (the shards are [`HashTable`]s, given the hash).
pub(crate) struct ShardedMap<V> {
    /// Empty until the first insert; then `SHARDS` shards.
    shards: Vec<Arc<Shard<V>>>,
    len: usize,
}

/// One shard: entries found by [`FoldBuild`]'s hash of their key.
type Shard<V> = HashTable<(Arc<str>, V)>;

impl<V> Clone for ShardedMap<V> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<V> Default for ShardedMap<V> {
    fn default() -> Self {
        Self {
            shards: Vec::new(),
            len: 0,
        }
    }
}

/// The hash of a key, for its shard and its slot in the shard.
#[inline]
fn hash_of(key: &str) -> u64 {
    FoldBuild.hash_one(key)
}

/// The shard of a key's `hash`: bits that hashbrown uses for neither the slot (low bits)
/// nor the control byte (top 7).
#[inline]
fn shard_of(hash: u64) -> usize {
    ((hash >> 32) as usize) % SHARDS
}

/// The hash of an entry, when a shard grows or shrinks.
fn rehash<V>((key, _): &(Arc<str>, V)) -> u64 {
    hash_of(key)
}

impl<V: Clone> ShardedMap<V> {
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.get_key_value(key).map(|(_, v)| v)
    }

    /// The entry of `key`: the map's own key and its value.
    #[inline]
    pub(crate) fn get_key_value(&self, key: &str) -> Option<(&Arc<str>, &V)> {
        if self.len == 0 {
            return None;
        }
        let hash = hash_of(key);
        self.shards
            .get(shard_of(hash))?
            .find(hash, |(k, _)| **k == *key)
            .map(|(k, v)| (k, v))
    }

    pub(crate) fn insert(&mut self, key: Arc<str>, value: V) {
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| Arc::new(HashTable::new())).collect();
        }
        let hash = hash_of(&key);
        let shard = Arc::make_mut(&mut self.shards[shard_of(hash)]);
        match shard.entry(hash, |(k, _)| *k == key, rehash) {
            Entry::Occupied(mut slot) => slot.get_mut().1 = value,
            Entry::Vacant(slot) => {
                slot.insert((key, value));
                self.len += 1;
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &str) {
        let hash = hash_of(key);
        let Some(shard) = self.shards.get_mut(shard_of(hash)) else {
            return;
        };
        let eq = |(k, _): &(Arc<str>, V)| **k == *key;
        if shard.find(hash, eq).is_some() {
            let shard = Arc::make_mut(shard);
            if let Ok(slot) = shard.find_entry(hash, eq) {
                slot.remove();
            }
            // A shard holds 1/64 of the map: the small-table bound is per shard (the
            // 64 shards of a map once of 5,000 hostnames kept 100 KB for one left).
            if shard.capacity() > 8 && shard.len() < shard.capacity() / 4 {
                shard.shrink_to_fit(rehash);
            }
            self.len -= 1;
        }
        if self.len == 0 {
            self.shards = Vec::new();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_map_clone_keeps_its_entries_when_the_original_changes() {
        let mut map: ShardedMap<u32> = ShardedMap::default();
        for i in 0..500u32 {
            map.insert(Arc::from(format!("h{i}").as_str()), i);
        }
        let before = map.clone();
        map.insert(Arc::from("h3"), 1000);
        map.remove("h4");
        map.insert(Arc::from("new"), 7);
        assert_eq!(map.len(), 500);
        assert_eq!(before.len(), 500);
        assert_eq!(map.get("h3"), Some(&1000));
        assert_eq!(before.get("h3"), Some(&3));
        assert_eq!(map.get("h4"), None);
        assert_eq!(before.get("h4"), Some(&4));
        assert_eq!(map.get("new"), Some(&7));
        assert_eq!(map.iter().count(), 500);
        // Only the shards changed are not shared.
        let shared = map
            .shards
            .iter()
            .zip(&before.shards)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(shared >= SHARDS - 3, "{shared} shared");
        for i in 0..500u32 {
            map.remove(&format!("h{i}"));
        }
        map.remove("new");
        assert!(map.is_empty());
        assert_eq!(map.get("h1"), None);
    }

    #[test]
    fn a_sharded_map_emptied_to_one_entry_gives_its_shards_room_back() {
        let mut map: ShardedMap<u32> = ShardedMap::default();
        for i in 0..5000u32 {
            map.insert(Arc::from(format!("h{i}").as_str()), i);
        }
        let room = |m: &ShardedMap<u32>| m.shards.iter().map(|s| s.capacity()).sum::<usize>();
        let full = room(&map);
        for i in 1..5000u32 {
            map.remove(&format!("h{i}"));
        }
        assert_eq!(map.get("h0"), Some(&0));
        assert!(room(&map) <= SHARDS * 8, "{} of {full}", room(&map));
    }

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
