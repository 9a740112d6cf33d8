//! A metric family that gives its room back.
//!
//! prometheus-client's `Family` keeps its hash table at the largest size it ever had:
//! after a reload removes 5,000 routes' series, their 5,000 slots stay allocated
//! (1.35 MB of live heap in `docs/benchmarks.md`, "The binary's own pages"). This family is the same map behind the same lock, encoded the same
//! way, but [`Family::remove`] shrinks the table once it is less than a quarter full
//! ([`gatekit_core::route::shrink_if_sparse`], amortised O(1) per removal).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Metrics of one name, one per label set `S`, made by `C` on first use. Clones share
/// the series (register one clone, record through another).
pub(crate) struct Family<S, M, C = fn() -> M> {
    series: Arc<RwLock<HashMap<S, M>>>,
    constructor: C,
}

impl<S, M: Default> Default for Family<S, M> {
    fn default() -> Self {
        Self::new_with_constructor(M::default)
    }
}

impl<S, M, C> Family<S, M, C> {
    /// An empty family whose metrics `constructor` makes.
    pub(crate) fn new_with_constructor(constructor: C) -> Self {
        Self {
            series: Arc::new(RwLock::new(HashMap::new())),
            constructor,
        }
    }

    /// Removes every series and frees the table.
    pub(crate) fn clear(&self) {
        *self.series.write() = HashMap::new();
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.series.read().capacity()
    }
}

impl<S: Clone + Hash + Eq, M: Clone, C: MetricConstructor<M>> Family<S, M, C> {
    /// The metric of `labels`, made and registered if it is the first use.
    pub(crate) fn get_or_create(&self, labels: &S) -> MappedRwLockReadGuard<'_, M> {
        let mut read = self.series.read();
        loop {
            match RwLockReadGuard::try_map(read, |series| series.get(labels)) {
                Ok(found) => return found,
                Err(missed) => drop(missed),
            }
            let mut write = self.series.write();
            write
                .entry(labels.clone())
                .or_insert_with(|| self.constructor.new_metric());
            // Downgrading keeps the lock: the series just made is found next turn.
            read = RwLockWriteGuard::downgrade(write);
        }
    }

    /// A handle of the metric of `labels` (made if it is the first use), to keep.
    pub(crate) fn get_or_create_owned(&self, labels: &S) -> M {
        self.get_or_create(labels).clone()
    }
}

impl<S: Hash + Eq, M, C> Family<S, M, C> {
    /// Removes the series of `labels`; whether there was one. Shrinks the table when
    /// it is less than a quarter full.
    pub(crate) fn remove(&self, labels: &S) -> bool {
        let mut series = self.series.write();
        let removed = series.remove(labels).is_some();
        if removed {
            gatekit_core::route::shrink_if_sparse(&mut series);
        }
        removed
    }
}

impl<S, M, C: Clone> Clone for Family<S, M, C> {
    fn clone(&self) -> Self {
        Self {
            series: self.series.clone(),
            constructor: self.constructor.clone(),
        }
    }
}

impl<S, M, C> fmt::Debug for Family<S, M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("series", &self.series.read().len())
            .finish()
    }
}

impl<S, M: TypedMetric, C> TypedMetric for Family<S, M, C> {
    const TYPE: MetricType = M::TYPE;
}

impl<S: EncodeLabelSet, M: EncodeMetric, C> Family<S, M, C> {
    /// Encodes every series with `encoder` (for a metric that adds series of its own).
    pub(crate) fn encode_series(&self, encoder: &mut MetricEncoder<'_>) -> Result<(), fmt::Error> {
        for (labels, metric) in self.series.read().iter() {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    /// Whether it has no series.
    pub(crate) fn is_empty(&self) -> bool {
        self.series.read().is_empty()
    }
}

impl<S, M, C> EncodeMetric for Family<S, M, C>
where
    S: EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        self.encode_series(&mut encoder)
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }

    /// A family with no series is left out of the exposition, HELP and TYPE included,
    /// as prometheus-client's own.
    fn is_empty(&self) -> bool {
        self.series.read().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        upstream: String,
    }

    fn labels(i: usize) -> Labels {
        Labels {
            upstream: format!("u{i}"),
        }
    }

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        let encoded = prometheus_client::encoding::text::encode(&mut text, registry);
        assert!(encoded.is_ok());
        text
    }

    #[test]
    fn removing_most_series_gives_the_table_back() {
        let family = Family::<Labels, Gauge>::default();
        for i in 0..5_000 {
            family.get_or_create(&labels(i)).set(1);
        }
        let full = family.capacity();
        assert!(full >= 5_000);
        for i in 10..5_000 {
            assert!(family.remove(&labels(i)));
        }
        assert!(!family.remove(&labels(10)));
        assert!(family.capacity() <= 128, "{} of {full}", family.capacity());
        // The series left keep their values.
        for i in 0..10 {
            assert_eq!(family.get_or_create(&labels(i)).get(), 1);
        }
    }

    #[test]
    fn encodes_as_prometheus_clients_family() {
        let ours = Family::<Labels, Gauge>::default();
        let theirs = prometheus_client::metrics::family::Family::<Labels, Gauge>::default();
        let mut a = Registry::default();
        let mut b = Registry::default();
        a.register("healthy", "Health", ours.clone());
        b.register("healthy", "Health", theirs.clone());
        // Empty: both left out.
        assert_eq!(exposition(&a), exposition(&b));
        ours.get_or_create_owned(&labels(1)).set(7);
        theirs.get_or_create_owned(&labels(1)).set(7);
        assert_eq!(exposition(&a), exposition(&b));
        assert!(exposition(&a).contains("healthy{upstream=\"u1\"} 7"));
        ours.clear();
        assert!(!exposition(&a).contains("u1"));
    }
}
