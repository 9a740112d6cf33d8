//! [`BodyLimitLayer`].

use tower_layer::Layer;

use super::BodyLimit;

/// Wraps a service in [`BodyLimit`]: request bodies of at most `max` bytes.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer {
    max: u64,
}

impl BodyLimitLayer {
    /// Request bodies of at most `max_bytes` bytes. `0` allows only empty bodies.
    pub const fn new(max_bytes: u64) -> Self {
        Self { max: max_bytes }
    }

    /// The largest request body allowed, in bytes.
    pub const fn max(&self) -> u64 {
        self.max
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit::new(inner, self.max)
    }
}
