//! [`NormalizePathLayer`].

use tower_layer::Layer;

use super::{NormalizePath, PathPolicy};

/// Wraps a service in [`NormalizePath`] with one [`PathPolicy`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NormalizePathLayer {
    policy: PathPolicy,
}

impl NormalizePathLayer {
    /// A layer applying `policy`.
    pub const fn new(policy: PathPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for NormalizePathLayer {
    type Service = NormalizePath<S>;

    fn layer(&self, inner: S) -> NormalizePath<S> {
        NormalizePath::new(inner, self.policy)
    }
}
