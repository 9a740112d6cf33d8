//! [`SmallSet`]: the sets the [`Translator`](super::Translator) keeps per Service (the
//! routes that name it), which mostly hold one member: that one is kept inline, so the
//! common case costs no allocation. (Its lists per route are
//! [`SmallList`](crate::types::SmallList)s.)

use std::borrow::Borrow;

pub(crate) use crate::types::SmallList;

/// An ordered set that keeps one member inline and more as a sorted boxed slice: a
/// [`SmallList`] kept ascending. A one-member set (the routes naming a Service, at
/// thousands of routes each with its own Service: nearly every set) costs no
/// allocation; a `BTreeSet` allocates a node of eleven (about 630 bytes for a route
/// key), a boxed slice one block per set. Insertion and removal are linear in the
/// members (each reallocates the slice), which stay few (the routes that reference one
/// Service).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SmallSet<T>(SmallList<T>);

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        Self(SmallList::default())
    }
}

impl<T: Ord> SmallSet<T> {
    /// Adds `value`; `false` if it was there already.
    pub(crate) fn insert(&mut self, value: T) -> bool {
        let Err(at) = self.0.binary_search(&value) else {
            return false;
        };
        self.0 = match std::mem::take(&mut self.0) {
            SmallList::Many(members) if members.is_empty() => SmallList::One(value),
            list => {
                let mut members = list.into_vec();
                members.insert(at, value);
                SmallList::from(members)
            }
        };
        true
    }

    /// Removes `value`; `false` if it was not there.
    pub(crate) fn remove<Q>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let Ok(at) = self.0.binary_search_by(|m| m.borrow().cmp(value)) else {
            return false;
        };
        let mut members = std::mem::take(&mut self.0).into_vec();
        members.remove(at);
        self.0 = SmallList::from(members);
        true
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
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::{SmallList, SmallSet};

    #[test]
    fn keeps_members_sorted_and_unique() {
        let mut s = SmallSet::default();
        assert!(s.is_empty());
        assert!(s.insert("b".to_owned()));
        assert!(matches!(s.0, SmallList::One(_)), "one member, inline");
        assert!(!s.insert("b".to_owned()));
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
        assert!(s.remove("a"));
        assert!(
            matches!(s.0, SmallList::One(_)),
            "back to one member, inline"
        );
        assert!(!s.remove("a"));
        assert!(s.remove("c"));
        assert!(s.is_empty());
        assert!(!s.remove("c"));
    }

    #[test]
    fn two_members_in_either_order() {
        let mut s = SmallSet::default();
        assert!(s.insert(2) && s.insert(1));
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [1, 2]);
        let mut s = SmallSet::default();
        assert!(s.insert(1) && s.insert(2));
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [1, 2]);
    }
}
