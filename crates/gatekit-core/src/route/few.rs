//! [`Few`]: a list that nearly always holds one item.

use std::fmt;
use std::ops::Deref;

/// A list built once that nearly always holds one item (a route's hostnames, rules and
/// matches; a path's candidates): that item inline, more (or none) in a boxed slice. One
/// allocation less than a boxed slice for the usual list of one, none for an empty one.
pub(crate) enum Few<T> {
    One(T),
    Many(Box<[T]>),
}

impl<T> Few<T> {
    /// The list, as a slice.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Few::One(item) => std::slice::from_ref(item),
            Few::Many(items) => items,
        }
    }

    /// The list, as a slice to change in place.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Few::One(item) => std::slice::from_mut(item),
            Few::Many(items) => items,
        }
    }
}

impl<T> Deref for Few<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> From<Vec<T>> for Few<T> {
    fn from(mut items: Vec<T>) -> Self {
        match items.pop() {
            Some(item) if items.is_empty() => Few::One(item),
            Some(item) => {
                items.push(item);
                Few::Many(items.into_boxed_slice())
            }
            None => Few::Many(Box::default()),
        }
    }
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few::Many(Box::default())
    }
}

impl<T: Clone> Clone for Few<T> {
    fn clone(&self) -> Self {
        match self {
            Few::One(item) => Few::One(item.clone()),
            Few::Many(items) => Few::Many(items.clone()),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Few<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_item_is_inline_and_every_length_reads_back_in_order() {
        for n in 0..4u32 {
            let items: Vec<u32> = (0..n).collect();
            let mut few = Few::from(items.clone());
            assert_eq!(matches!(few, Few::One(_)), n == 1, "{n} items");
            assert_eq!(&*few, &items[..]);
            few.as_mut_slice().reverse();
            let reversed: Vec<u32> = items.iter().rev().copied().collect();
            assert_eq!(few.as_slice(), &reversed[..]);
            assert_eq!(&*few.clone(), &reversed[..]);
        }
    }
}
