//! [`SeriesMap`]: the wiring's per-route state (metrics handles, retirement) by route
//! id, keyed by the id its values already hold.

use std::hash::BuildHasher;

use gatekit_core::route::{FoldBuild, RouteId};
use hashbrown::HashTable;

use crate::RequestMetrics;

/// What a [`SeriesMap`] holds: a value that knows its own key.
pub(super) trait Keyed {
    /// The value's route id.
    fn id(&self) -> &RouteId;
}

/// A map from route id to `T`, whose values carry their id (a route's `Arc<Route>`):
/// a `HashMap<RouteId, T>` kept a second copy of the id's two `Arc<str>` (32 bytes a
/// slot) in every slot, at ~1.6 slots per route.
pub(super) struct SeriesMap<T> {
    table: HashTable<T>,
}

impl<T> Default for SeriesMap<T> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
        }
    }
}

fn hash(id: &RouteId) -> u64 {
    FoldBuild.hash_one(id)
}

impl<T: Keyed> SeriesMap<T> {
    pub(super) fn get(&self, id: &RouteId) -> Option<&T> {
        self.table.find(hash(id), |v| v.id() == id)
    }

    pub(super) fn get_mut(&mut self, id: &RouteId) -> Option<&mut T> {
        self.table.find_mut(hash(id), |v| v.id() == id)
    }

    /// The value of `id`, made by `make` if there is none (which must give a value
    /// of that id).
    pub(super) fn get_or_insert_with(&mut self, id: &RouteId, make: impl FnOnce() -> T) -> &mut T {
        let entry = self
            .table
            .entry(hash(id), |v| v.id() == id, |v| hash(v.id()));
        let value = entry.or_insert_with(make).into_mut();
        debug_assert!(value.id() == id, "a value keyed by another id");
        value
    }

    pub(super) fn remove(&mut self, id: &RouteId) -> Option<T> {
        self.table
            .find_entry(hash(id), |v| v.id() == id)
            .ok()
            .map(|e| e.remove().0)
    }

    /// Keeps the values `keep` says to (it may change them).
    pub(super) fn retain(&mut self, keep: impl FnMut(&mut T) -> bool) {
        self.table.retain(keep);
    }

    /// Gives back the room of the map once it holds less than a quarter of its
    /// capacity, as [`gatekit_core::route::shrink_if_sparse`] does for a `HashMap`.
    pub(super) fn shrink_if_sparse(&mut self) {
        if self.table.capacity() > 64 && self.table.len() < self.table.capacity() / 4 {
            self.table.shrink_to_fit(|v| hash(v.id()));
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}

/// A route's request-metric handles, one per backend name: one inline (most routes
/// send to one backend: a boxed list of one was an allocation per route), or a list.
pub(super) enum Handles {
    One(RequestMetrics),
    /// None (empty, no allocation), or more than one.
    Many(Box<[RequestMetrics]>),
}

impl Default for Handles {
    fn default() -> Self {
        Self::Many(Box::default())
    }
}

impl Handles {
    /// Exactly `handles`.
    pub(super) fn from_vec(mut handles: Vec<RequestMetrics>) -> Self {
        match handles.pop() {
            Some(one) if handles.is_empty() => Self::One(one),
            Some(last) => {
                handles.push(last);
                Self::Many(handles.into_boxed_slice())
            }
            None => Self::default(),
        }
    }

    pub(super) fn into_vec(self) -> Vec<RequestMetrics> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many.into_vec(),
        }
    }

    pub(super) fn as_slice(&self) -> &[RequestMetrics] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

impl std::ops::Deref for Handles {
    type Target = [RequestMetrics];

    fn deref(&self) -> &[RequestMetrics] {
        self.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_keep_one_inline_in_the_room_of_a_boxed_list() {
        assert_eq!(
            std::mem::size_of::<Handles>(),
            std::mem::size_of::<Box<[RequestMetrics]>>()
        );
        let metrics = crate::Metrics::new();
        let handle = |b: &str| metrics.request_metrics("default/r", b);
        for n in 0..3 {
            let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
            let handles = Handles::from_vec(names.iter().map(|b| handle(b)).collect());
            assert_eq!(matches!(handles, Handles::One(_)), n == 1);
            assert_eq!(handles.is_empty(), n == 0);
            let got: Vec<&str> = handles.iter().map(RequestMetrics::backend).collect();
            assert_eq!(got, names);
            assert_eq!(handles.into_vec().len(), n);
        }
    }

    struct V(RouteId, u32);

    impl Keyed for V {
        fn id(&self) -> &RouteId {
            &self.0
        }
    }

    fn id(i: u32) -> RouteId {
        RouteId::new("default", format!("r{i}"))
    }

    #[test]
    fn values_are_found_by_the_id_they_hold_and_the_map_shrinks_when_emptied() {
        let mut map = SeriesMap::default();
        for i in 0..1000 {
            map.get_or_insert_with(&id(i), || V(id(i), i));
        }
        // A second insert of an id keeps the value there.
        map.get_or_insert_with(&id(7), || V(id(7), 0)).1 += 1;
        assert_eq!(map.len(), 1000);
        assert_eq!(map.get(&id(7)).map(|v| v.1), Some(8));
        map.get_mut(&id(8)).expect("there").1 = 5;
        assert_eq!(map.get(&id(8)).map(|v| v.1), Some(5));
        assert_eq!(map.remove(&id(9)).map(|v| v.1), Some(9));
        assert!(map.get(&id(9)).is_none() && map.remove(&id(9)).is_none());
        let full = map.table.capacity();
        map.retain(|v| v.1 < 10);
        map.shrink_if_sparse();
        assert_eq!(map.len(), 9);
        assert!(map.table.capacity() < full / 8, "{}", map.table.capacity());
        for i in (0..10).filter(|i| *i != 9) {
            assert!(map.get(&id(i)).is_some(), "{i}");
        }
    }
}
