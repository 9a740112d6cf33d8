//! [`SmallSet`] and [`SmallList`]: the sets and lists the
//! [`Translator`](super::Translator) keeps per route or per Service (the routes that
//! name a Service; a route's routes and uses), which mostly hold one member: that one
//! is kept inline, so the common case costs no allocation.

use std::borrow::Borrow;
use std::cmp::Ordering;

/// An ordered set that keeps one member inline and more as a sorted boxed slice. A
/// one-member set (the routes naming a Service, at thousands of routes each with its
/// own Service: nearly every set) costs no allocation; a `BTreeSet` allocates a node
/// of eleven (about 630 bytes for a route key), a boxed slice one block per set.
/// Insertion and removal are linear in the members (each reallocates the slice),
/// which stay few (the routes that reference one Service).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SmallSet<T> {
    /// One member.
    One(T),
    /// None, or two or more, ascending.
    Many(Box<[T]>),
}

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        Self::Many(Box::default())
    }
}

impl<T: Ord> SmallSet<T> {
    /// Adds `value`; `false` if it was there already.
    pub(crate) fn insert(&mut self, value: T) -> bool {
        let (set, added) = match std::mem::take(self) {
            Self::One(member) => match member.cmp(&value) {
                Ordering::Equal => (Self::One(member), false),
                Ordering::Less => (Self::Many(Box::new([member, value])), true),
                Ordering::Greater => (Self::Many(Box::new([value, member])), true),
            },
            Self::Many(members) if members.is_empty() => (Self::One(value), true),
            Self::Many(members) => match members.binary_search(&value) {
                Ok(_) => (Self::Many(members), false),
                Err(at) => {
                    let mut list = Vec::with_capacity(members.len() + 1);
                    let mut old = members.into_vec().into_iter();
                    list.extend(old.by_ref().take(at));
                    list.push(value);
                    list.extend(old);
                    (Self::Many(list.into_boxed_slice()), true)
                }
            },
        };
        *self = set;
        added
    }

    /// Removes `value`; `false` if it was not there.
    pub(crate) fn remove<Q>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self {
            Self::One(member) if Borrow::<Q>::borrow(member) == value => {
                *self = Self::default();
                true
            }
            Self::One(_) => false,
            Self::Many(members) => match members.binary_search_by(|m| m.borrow().cmp(value)) {
                Ok(at) => {
                    let mut list = std::mem::take(members).into_vec();
                    list.remove(at);
                    *self = if list.len() == 1 {
                        match list.pop() {
                            Some(last) => Self::One(last),
                            None => Self::default(),
                        }
                    } else {
                        Self::Many(list.into_boxed_slice())
                    };
                    true
                }
                Err(_) => false,
            },
        }
    }
}

impl<T> SmallSet<T> {
    /// Whether it has no member.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Self::Many(members) if members.is_empty())
    }

    /// The members, ascending.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    fn as_slice(&self) -> &[T] {
        match self {
            Self::One(member) => std::slice::from_ref(member),
            Self::Many(members) => members,
        }
    }
}

impl<'a, T> IntoIterator for &'a SmallSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A list that keeps one item inline and any other number as a boxed slice (see
/// [`SmallSet`]); it reads as a slice.
#[derive(Clone, Debug)]
pub(crate) enum SmallList<T> {
    /// One item.
    One(T),
    /// None, or two or more.
    Many(Box<[T]>),
}

impl<T> From<Vec<T>> for SmallList<T> {
    fn from(mut items: Vec<T>) -> Self {
        match items.pop() {
            Some(item) if items.is_empty() => Self::One(item),
            Some(item) => {
                items.push(item);
                Self::Many(items.into_boxed_slice())
            }
            None => Self::Many(Box::default()),
        }
    }
}

impl<T> std::ops::Deref for SmallList<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Self::One(item) => std::slice::from_ref(item),
            Self::Many(items) => items,
        }
    }
}

impl<'a, T> IntoIterator for &'a SmallList<T> {
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
        assert!(matches!(s, SmallSet::One(_)), "one member, inline");
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
        assert!(matches!(s, SmallSet::One(_)), "back to one member, inline");
        assert!(!s.remove("a"));
        assert!(s.remove("c"));
        assert!(s.is_empty());
        assert!(!s.remove("c"));
    }

    #[test]
    fn a_list_of_one_is_inline_and_reads_as_a_slice() {
        let none = SmallList::<u8>::from(Vec::new());
        assert!(none.is_empty());
        let one = SmallList::from(vec![7]);
        assert!(matches!(one, SmallList::One(7)));
        assert_eq!(&one[..], [7]);
        let three = SmallList::from(vec![3, 1, 2]);
        assert_eq!((&three).into_iter().copied().collect::<Vec<_>>(), [3, 1, 2]);
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
