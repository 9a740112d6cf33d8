//! [`ConcurrencyLimitLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::{ConcurrencyLimit, InFlightLimit};

/// Wraps a service in [`ConcurrencyLimit`], admitting requests against a shared
/// [`InFlightLimit`].
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer {
    limit: Arc<InFlightLimit>,
}

impl ConcurrencyLimitLayer {
    /// A layer whose services count their requests in `limit` (shared with every other
    /// service built with the same `Arc`).
    pub const fn new(limit: Arc<InFlightLimit>) -> Self {
        Self { limit }
    }

    /// The shared limit.
    pub fn limit(&self) -> &Arc<InFlightLimit> {
        &self.limit
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit::new(inner, Arc::clone(&self.limit))
    }
}
