//! [`SmallSet`]: the ordered sets of the [`Translator`](super::Translator)'s indexes
//! (a Service's routes, slices, upstreams), which mostly hold one member.

use std::borrow::Borrow;

/// An ordered set kept as a sorted boxed slice (two words, not a `Vec`'s three: these
/// sets are kept three per Service). A one-member set is one allocation of one
/// member; a `BTreeSet` allocates a node of eleven (about 630 bytes for a route key),
/// per Service, in every index, which at thousands of routes each with its own Service
/// was most of the translator's memory. Insertion and removal are linear in the
/// members (each reallocates the slice), which stay few (the routes that reference
/// one Service).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SmallSet<T>(Box<[T]>);

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        Self(Box::default())
    }
}

impl<T: Ord> SmallSet<T> {
    /// Adds `value`; `false` if it was there already.
    pub(crate) fn insert(&mut self, value: T) -> bool {
        match self.0.binary_search(&value) {
            Ok(_) => false,
            Err(at) => {
                let mut members = Vec::with_capacity(self.0.len() + 1);
                let mut old = std::mem::take(&mut self.0).into_vec().into_iter();
                members.extend(old.by_ref().take(at));
                members.push(value);
                members.extend(old);
                self.0 = members.into_boxed_slice();
                true
            }
        }
    }

    /// Removes `value`; `false` if it was not there.
    pub(crate) fn remove<Q>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.0.binary_search_by(|m| m.borrow().cmp(value)) {
            Ok(at) => {
                let mut members = std::mem::take(&mut self.0).into_vec();
                members.remove(at);
                self.0 = members.into_boxed_slice();
                true
            }
            Err(_) => false,
        }
    }
}

impl<T> SmallSet<T> {
    /// Whether it has no member.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The members, ascending.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a SmallSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::SmallSet;

    #[test]
    fn keeps_members_sorted_and_unique() {
        let mut s = SmallSet::default();
        assert!(s.is_empty());
        assert!(s.insert("b".to_owned()));
        assert_eq!(s.0.len(), 1, "one member, one slot");
        assert!(s.insert("a".to_owned()));
        assert!(s.insert("c".to_owned()));
        assert!(!s.insert("b".to_owned()));
        assert_eq!(
            s.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert!(s.remove("b"));
        assert!(!s.remove("b"));
        assert_eq!((&s).into_iter().collect::<Vec<_>>(), ["a", "c"]);
        assert!(s.remove("a") && s.remove("c"));
        assert!(s.is_empty());
    }
}
