//! [`SmallList`]: a list that keeps one item inline, for the lists kept per object
//! that nearly always hold one (a route's hostnames and rules, a rule's matches and
//! backendRefs, and their compiled forms; a path's candidates; in gatekit-k8s a
//! Service's port, an EndpointSlice's endpoint, a route's rule, match, backendRef and
//! parentRef, the translator's per-route lists).

/// A list that keeps one item inline and any other number as a boxed slice; it reads
/// as a slice (`Deref<Target = [T]>`).
///
/// A one-item list costs no allocation of its own; a boxed slice of one costs a block
/// (the item, plus malloc's header and rounding) and 16 bytes inline. The inline item
/// makes the list as large as the item (and a tag): worth it for small items that are
/// nearly always alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmallList<T> {
    /// One item.
    One(T),
    /// None, or two or more.
    Many(Box<[T]>),
}

impl<T> Default for SmallList<T> {
    fn default() -> Self {
        Self::Many(Box::default())
    }
}

impl<T> SmallList<T> {
    /// Appends `item`: the first is kept inline; from the second on the list is an
    /// exactly sized boxed slice again (one reallocation per push: for lists built
    /// once, not for lists that grow).
    pub fn push(&mut self, item: T) {
        *self = match std::mem::take(self) {
            Self::Many(items) if items.is_empty() => Self::One(item),
            list => {
                let mut items = list.into_vec();
                items.push(item);
                Self::Many(items.into_boxed_slice())
            }
        };
    }

    /// Its items in a `Vec`.
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(item) => vec![item],
            Self::Many(items) => items.into_vec(),
        }
    }
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

impl<T> FromIterator<T> for SmallList<T> {
    /// One item inline without any allocation; more collected exactly sized.
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut items = items.into_iter();
        let Some(first) = items.next() else {
            return Self::default();
        };
        let Some(second) = items.next() else {
            return Self::One(first);
        };
        let mut all = Vec::with_capacity(2 + items.size_hint().0);
        all.push(first);
        all.push(second);
        all.extend(items);
        Self::Many(all.into_boxed_slice())
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

impl<T> std::ops::DerefMut for SmallList<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Self::One(item) => std::slice::from_mut(item),
            Self::Many(items) => items,
        }
    }
}

impl<T> AsRef<[T]> for SmallList<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<'a, T> IntoIterator for &'a SmallList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut SmallList<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::SmallList;

    #[test]
    fn a_list_of_one_is_inline_and_reads_as_a_slice() {
        let none = SmallList::<u8>::from(Vec::new());
        assert!(none.is_empty());
        let one = SmallList::from(vec![7]);
        assert!(matches!(one, SmallList::One(7)));
        assert_eq!(&one[..], [7]);
        let three = SmallList::from(vec![3, 1, 2]);
        assert_eq!((&three).into_iter().copied().collect::<Vec<_>>(), [3, 1, 2]);
        assert_eq!(three.into_vec(), [3, 1, 2]);
    }

    #[test]
    fn pushed_items_are_one_inline_then_exact() {
        let mut list = SmallList::default();
        list.push(1);
        assert!(matches!(list, SmallList::One(1)));
        list.push(2);
        list.push(3);
        assert!(matches!(&list, SmallList::Many(items) if items.len() == 3));
        assert_eq!(list, SmallList::from(vec![1, 2, 3]));
    }

    #[test]
    fn collected_lists_are_one_inline_or_exact() {
        let none: SmallList<u8> = std::iter::empty().collect();
        assert_eq!(none, SmallList::default());
        let one: SmallList<u8> = [5].into_iter().collect();
        assert!(matches!(one, SmallList::One(5)));
        let mut many: SmallList<u8> = (1..=4).filter(|n| n % 2 == 0).collect();
        assert!(matches!(&many, SmallList::Many(items) if items.len() == 2));
        many[0] = 9;
        assert_eq!(&many[..], [9, 4]);
        // The same items are equal however they were collected.
        assert_eq!(SmallList::from(vec![1, 2]), [1, 2].into_iter().collect());
    }
}
