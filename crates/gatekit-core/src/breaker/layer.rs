//! [`CircuitBreakerLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::{Breaker, CircuitBreaker};

/// Wraps a service in a [`Breaker`] counting against one shared [`CircuitBreaker`].
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer {
    breaker: Arc<CircuitBreaker>,
}

impl CircuitBreakerLayer {
    /// A layer whose services all count against `breaker`.
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        Self { breaker }
    }

    /// The shared breaker.
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = Breaker<S>;

    fn layer(&self, inner: S) -> Breaker<S> {
        Breaker::new(inner, self.breaker.clone())
    }
}
