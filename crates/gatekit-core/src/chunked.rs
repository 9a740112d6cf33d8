//! [`Chunked`]: a sequence kept in shared chunks, so that a copy costs a pointer per
//! chunk and a change copies one chunk.
//!
//! The route lists of a translation (per listener, thousands of routes) are handed from
//! one reload to the next with one route changed: as a `Vec<Arc<Route>>` each version
//! costs a reference count per route (in random memory order), and a consumer can only
//! find what changed by comparing every element. As a `Chunked` list a version shares
//! every chunk the change did not reach ([`Arc::ptr_eq`] tells them apart), so the copy
//! and the comparison cost one step per chunk (of up to 64 elements) and the change one
//! chunk's copy.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Most elements a chunk holds: one that grows past it is split in two.
const MAX: usize = 64;
/// How full [`Chunked::from_iter`] fills its chunks (room for inserts before a split).
const FILL: usize = 48;

/// A sequence in chunks behind `Arc`s (see the [module docs](self)). Cloning shares
/// every chunk; changing an element copies its chunk unless nothing else holds it.
pub struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Clone for Chunked<T> {
    fn clone(&self) -> Self {
        Self {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Chunked<T> {
    /// The elements, as a list: chunk boundaries do not show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T> Chunked<T> {
    /// An empty sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many elements it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The chunks, in order (none is empty): two versions share the chunks that are
    /// the same `Arc` ([`Arc::ptr_eq`]).
    pub fn chunks(&self) -> &[Arc<Vec<T>>] {
        &self.chunks
    }

    /// Whether both hold the same chunks (then the same elements), comparing one
    /// pointer per chunk.
    pub fn same_chunks(&self, other: &Self) -> bool {
        self.len == other.len
            && self.chunks.len() == other.chunks.len()
            && self
                .chunks
                .iter()
                .zip(&other.chunks)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Appends `other`'s chunks, shared.
    pub fn append_shared(&mut self, other: &Self) {
        self.chunks.extend(other.chunks.iter().cloned());
        self.len += other.len;
    }

    /// Where the element `cmp` finds equal is (`Ok`), or where it would go to keep the
    /// order `cmp` follows (`Err`): (chunk, offset). `cmp` says how an element compares
    /// with the one looked for; the sequence must be sorted by it.
    fn search(&self, cmp: &dyn Fn(&T) -> Ordering) -> Result<(usize, usize), (usize, usize)> {
        if self.chunks.is_empty() {
            return Err((0, 0));
        }
        // The first chunk whose last element is not less than the one looked for.
        let c = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|x| cmp(x) == Ordering::Less));
        if c == self.chunks.len() {
            let last = c - 1;
            return Err((last, self.chunks[last].len()));
        }
        match self.chunks[c].binary_search_by(cmp) {
            Ok(i) => Ok((c, i)),
            Err(i) => Err((c, i)),
        }
    }

    /// The element `cmp` finds equal (the sequence sorted by `cmp`, see
    /// [`insert_sorted`](Self::insert_sorted)).
    pub fn find_sorted(&self, cmp: impl Fn(&T) -> Ordering) -> Option<&T> {
        let (c, i) = self.search(&cmp).ok()?;
        self.chunks[c].get(i)
    }
}

impl<T: Clone> Chunked<T> {
    /// Puts `value` where it belongs in a sequence sorted by `cmp` (how an element
    /// compares with `value`), replacing the element `cmp` finds equal, which is
    /// returned. Copies one chunk (unless nothing else holds it).
    pub fn insert_sorted(&mut self, cmp: impl Fn(&T) -> Ordering, value: T) -> Option<T> {
        match self.search(&cmp) {
            Ok((c, i)) => {
                let chunk = Arc::make_mut(&mut self.chunks[c]);
                Some(std::mem::replace(&mut chunk[i], value))
            }
            Err((c, i)) => {
                self.len += 1;
                if self.chunks.is_empty() {
                    self.chunks.push(Arc::new(vec![value]));
                    return None;
                }
                let chunk = Arc::make_mut(&mut self.chunks[c]);
                chunk.insert(i, value);
                if chunk.len() > MAX {
                    let second = chunk.split_off(chunk.len() / 2);
                    self.chunks.insert(c + 1, Arc::new(second));
                }
                None
            }
        }
    }

    /// Takes away the element `cmp` finds equal in a sequence sorted by `cmp`, and
    /// returns it. Copies one chunk (unless nothing else holds it).
    pub fn remove_sorted(&mut self, cmp: impl Fn(&T) -> Ordering) -> Option<T> {
        let (c, i) = self.search(&cmp).ok()?;
        let chunk = Arc::make_mut(&mut self.chunks[c]);
        let value = chunk.remove(i);
        if chunk.is_empty() {
            self.chunks.remove(c);
        }
        self.len -= 1;
        Some(value)
    }

    /// The elements, in one `Vec`.
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out
    }
}

impl<T> FromIterator<T> for Chunked<T> {
    /// The elements in order, in chunks filled to three quarters (room to insert).
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut out = Self::new();
        let mut chunk = Vec::with_capacity(FILL);
        for value in iter {
            chunk.push(value);
            if chunk.len() == FILL {
                out.len += chunk.len();
                out.chunks.push(Arc::new(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(FILL),
                )));
            }
        }
        if !chunk.is_empty() {
            chunk.shrink_to_fit();
            out.len += chunk.len();
            out.chunks.push(Arc::new(chunk));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Sorted inserts and removes keep the elements a sorted `Vec` would hold, every
        /// chunk non-empty and at most `MAX`, and leave a clone taken before untouched.
        #[test]
        fn sorted_changes_match_a_sorted_vec(
            start in proptest::collection::btree_set(0u32..500, 0..300),
            ops in proptest::collection::vec((any::<bool>(), 0u32..500), 0..200),
        ) {
            let mut list: Chunked<u32> = start.iter().copied().collect();
            let mut model: Vec<u32> = start.into_iter().collect();
            for (insert, v) in ops {
                let before = list.clone();
                let before_model = model.clone();
                if insert {
                    let replaced = list.insert_sorted(|x| x.cmp(&v), v);
                    match model.binary_search(&v) {
                        Ok(_) => prop_assert_eq!(replaced, Some(v)),
                        Err(i) => {
                            prop_assert_eq!(replaced, None);
                            model.insert(i, v);
                        }
                    }
                } else {
                    let removed = list.remove_sorted(|x| x.cmp(&v));
                    match model.binary_search(&v) {
                        Ok(i) => {
                            prop_assert_eq!(removed, Some(v));
                            model.remove(i);
                        }
                        Err(_) => prop_assert_eq!(removed, None),
                    }
                }
                prop_assert_eq!(before.to_vec(), before_model);
                prop_assert_eq!(list.to_vec(), model.clone());
                prop_assert_eq!(list.len(), model.len());
                prop_assert!(list.chunks().iter().all(|c| !c.is_empty() && c.len() <= MAX));
                prop_assert_eq!(list.find_sorted(|x| x.cmp(&v)).is_some(), model.binary_search(&v).is_ok());
                // At most the chunk changed (and a split's new one) are not shared.
                let shared = list.chunks().iter().filter(|c| before.chunks().iter().any(|b| Arc::ptr_eq(b, c))).count();
                prop_assert!(shared + 2 >= list.chunks().len());
            }
        }
    }

    #[test]
    fn clones_share_chunks_and_append_shares_them_too() {
        let a: Chunked<u32> = (0..200).collect();
        let b = a.clone();
        assert!(a.same_chunks(&b));
        let mut c = Chunked::new();
        c.append_shared(&a);
        c.append_shared(&b);
        assert_eq!(c.len(), 400);
        assert!(
            c.chunks()
                .iter()
                .all(|x| a.chunks().iter().any(|y| Arc::ptr_eq(x, y)))
        );
        let mut d = a.clone();
        d.insert_sorted(|x| x.cmp(&1000), 1000);
        assert!(!a.same_chunks(&d));
        assert_eq!(format!("{a:?}"), format!("{:?}", a.to_vec()));
    }
}
