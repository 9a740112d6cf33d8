//! [`GlobalRateLimitLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use crate::{GlobalRateLimit, RedisLimiter};

/// Wraps a service in [`GlobalRateLimit`]: every request is decided by one
/// [`RedisLimiter`] (stack several layers for several limits). Clones and every service
/// built from it share the limiter.
#[derive(Clone, Debug)]
pub struct GlobalRateLimitLayer {
    limiter: Arc<RedisLimiter>,
}

impl GlobalRateLimitLayer {
    /// A layer enforcing `limiter`.
    pub fn new(limiter: Arc<RedisLimiter>) -> Self {
        Self { limiter }
    }

    /// The limiter.
    pub fn limiter(&self) -> &Arc<RedisLimiter> {
        &self.limiter
    }
}

impl<S> Layer<S> for GlobalRateLimitLayer {
    type Service = GlobalRateLimit<S>;

    fn layer(&self, inner: S) -> GlobalRateLimit<S> {
        GlobalRateLimit::new(inner, self.limiter.clone())
    }
}
