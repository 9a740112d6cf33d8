//! [`RateLimitLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::{RateLimit, RateLimiter};

/// Wraps a service in [`RateLimit`]: every request must pass each of the layer's
/// limiters. Cloning the layer, or building many services from it, shares the limiters'
/// state; so does building another layer from the same `Arc<RateLimiter>`s (as a route
/// table rebuilt on reload does).
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiters: Arc<[Arc<RateLimiter>]>,
}

impl RateLimitLayer {
    /// A layer enforcing every one of `limiters`, checked in this order.
    pub fn new(limiters: impl IntoIterator<Item = Arc<RateLimiter>>) -> Self {
        Self {
            limiters: limiters.into_iter().collect(),
        }
    }

    /// The limiters, in the order they are checked.
    pub fn limiters(&self) -> &[Arc<RateLimiter>] {
        &self.limiters
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, self.clone())
    }
}
