//! The weighted choice among a rule's backendRefs, as the innermost service of a rule's
//! stack.
//!
//! # Algorithm
//!
//! [`WeightedBackends`] keeps the backendRefs in order with the running sum of their
//! weights, built once per configuration. A pick draws one `fastrand` number in
//! `0..total` and binary-searches the running sums, so a backendRef of weight `w` is
//! chosen with probability `w / total` and one of weight 0 never (Gateway API
//! `backendRefs[].weight`). Per request: one draw and `log2(n)` comparisons, no
//! allocation. There is no per-pick state, so nothing needs to survive a reload; the
//! state that must (balancer, health, connection pools) lives in the [`Backend`]s the
//! choice refers to, which outlive the route table.
//!
//! # The service
//!
//! [`Weighted`] picks a backendRef, applies its own filters (the
//! [`RequestContext`](crate::filter::RequestContext) comes from the request's extensions,
//! as for [`Filters`](crate::filter::Filters)) and sends the request to its [`Backend`].
//! A rule with no backendRef of positive weight, or a pick whose name did not resolve,
//! fails with [`ErrorKind::InvalidBackend`](crate::ErrorKind::InvalidBackend) (500, as
//! the Gateway API specifies). Backend errors pass through unchanged. A request pinned
//! by a session ([`Sticky`](crate::session::Sticky)) goes to its backendRef while that
//! one resolves, whatever the weights, and the choice is reported in the extension.
//!
//! [`Backend`]: crate::Backend

mod future;
mod service;

use std::sync::Arc;

use crate::route::WeightedBackend;

pub use self::future::ResponseFuture;
pub use self::service::Weighted;

/// A rule's backendRefs with their cumulative weights: the table a weighted pick reads.
///
/// One shared allocation (cloning it is one reference-count increment): the backendRefs
/// in order, each with the running sum of the weights up to it.
#[derive(Clone, Debug)]
pub struct WeightedBackends {
    backends: Arc<[WeightedBackend]>,
}

impl WeightedBackends {
    /// The choice among `backends`, in order.
    pub fn new(mut backends: Vec<WeightedBackend>) -> Self {
        let mut total = 0u64;
        for b in &mut backends {
            total += u64::from(b.weight());
            b.cumulative = total;
        }
        Self {
            backends: backends.into(),
        }
    }

    /// Every backendRef, in order (including those of weight 0).
    pub fn as_slice(&self) -> &[WeightedBackend] {
        &self.backends
    }

    /// A weighted random choice among the backendRefs with weight > 0, as an index into
    /// [`as_slice`](Self::as_slice). `None` when there are no backendRefs or their
    /// weights sum to 0.
    pub fn pick_index(&self) -> Option<usize> {
        if let [only] = &*self.backends {
            return (only.weight() > 0).then_some(0);
        }
        let total = self.backends.last().map_or(0, |b| b.cumulative);
        if total == 0 {
            return None;
        }
        Some(self.index_at(fastrand::u64(0..total)))
    }

    /// The backendRef at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&WeightedBackend> {
        self.backends.get(index)
    }

    /// The index of the backend whose cumulative weight range holds `point`
    /// (`0 <= point < total`).
    pub(crate) fn index_at(&self, point: u64) -> usize {
        self.backends.partition_point(|b| b.cumulative <= point)
    }
}

#[cfg(test)]
mod tests;
