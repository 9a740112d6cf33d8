//! [`FilterLayer`].

use tower_layer::Layer;

use super::{FilterChain, Filters};

/// Wraps a service in [`Filters`] applying one compiled [`FilterChain`].
#[derive(Clone, Debug, Default)]
pub struct FilterLayer {
    chain: FilterChain,
}

impl FilterLayer {
    /// A layer applying `chain`.
    pub fn new(chain: FilterChain) -> Self {
        Self { chain }
    }
}

impl<S> Layer<S> for FilterLayer {
    type Service = Filters<S>;

    fn layer(&self, inner: S) -> Filters<S> {
        Filters::new(inner, self.chain.clone())
    }
}
