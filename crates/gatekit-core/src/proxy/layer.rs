//! [`ProxyHeadersLayer`].

use tower_layer::Layer;

use super::ProxyHeaders;

/// Wraps a service in [`ProxyHeaders`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyHeadersLayer;

impl ProxyHeadersLayer {
    /// A new layer.
    pub const fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for ProxyHeadersLayer {
    type Service = ProxyHeaders<S>;

    fn layer(&self, inner: S) -> ProxyHeaders<S> {
        ProxyHeaders::new(inner)
    }
}
