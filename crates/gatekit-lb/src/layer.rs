//! [`UpstreamLayer`]: builds an [`Upstream`] around an endpoint-service factory.

use crate::config::UpstreamConfig;
use crate::upstream::{NewEndpoint, Upstream};

/// A [`Layer`](tower_layer::Layer) that wraps a [`NewEndpoint`] factory (for example a
/// closure making an HTTP client per endpoint) in an empty [`Upstream`] balancing by its
/// configuration. Feed the upstream with changes afterwards.
#[derive(Clone, Debug, Default)]
pub struct UpstreamLayer {
    config: UpstreamConfig,
}

impl UpstreamLayer {
    /// A layer building upstreams with `config`.
    pub fn new(config: UpstreamConfig) -> Self {
        Self { config }
    }
}

impl<N> tower_layer::Layer<N> for UpstreamLayer
where
    N: NewEndpoint,
    N::Service: Send + Sync + 'static,
{
    type Service = Upstream<N::Service>;

    fn layer(&self, new_endpoint: N) -> Self::Service {
        Upstream::new(self.config.clone(), new_endpoint)
    }
}
