//! [`RetryLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::{Retry, RetryBudget, RetryPolicy, RetryStats};

/// Wraps a service in [`Retry`]: a policy, an optional budget and the counters (see the
/// [module docs](super)). Cloning it is one `Arc` increment; every service it makes
/// shares the policy, the budget and the [`RetryStats`].
#[derive(Clone, Debug)]
pub struct RetryLayer {
    pub(super) shared: Arc<Shared>,
}

/// What every [`Retry`] of a layer shares: one `Arc` to clone per request.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) policy: Arc<RetryPolicy>,
    pub(super) budget: Option<Arc<RetryBudget>>,
    pub(super) stats: Arc<RetryStats>,
    /// The policy's [`RetryOn::needs_copy`](super::RetryOn::needs_copy), read once.
    pub(super) copy: bool,
}

impl RetryLayer {
    /// Retries by `policy`, within `budget` when given (share one budget between every
    /// layer that sends to the same backend), counting into fresh [`RetryStats`].
    pub fn new(policy: Arc<RetryPolicy>, budget: Option<Arc<RetryBudget>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                copy: policy.on.needs_copy(),
                policy,
                budget,
                stats: Arc::default(),
            }),
        }
    }

    /// Counts into `stats` instead (to keep counters across configuration reloads, or
    /// to sum several layers).
    #[must_use]
    pub fn with_stats(self, stats: Arc<RetryStats>) -> Self {
        Self {
            shared: Arc::new(Shared {
                policy: self.shared.policy.clone(),
                budget: self.shared.budget.clone(),
                stats,
                copy: self.shared.copy,
            }),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<RetryPolicy> {
        &self.shared.policy
    }

    /// The budget, if any.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.shared.budget.as_ref()
    }

    /// The counters of every service this layer made.
    pub fn stats(&self) -> &Arc<RetryStats> {
        &self.shared.stats
    }

    /// Whether no service this layer made, nor a clone of it, is left.
    pub(crate) fn is_unshared(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }
}

impl<S: Clone> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, self.clone())
    }
}
