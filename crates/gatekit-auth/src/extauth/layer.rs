//! The layer, and the access policy that puts it on gatekit route rules.

use std::sync::Arc;

use gatekit_core::Backend;
use gatekit_core::access::AccessPolicy;
use tower_layer::Layer;

use super::{ExtAuth, ExtAuthConfig, ExtAuthStats};

/// Wraps services in [`ExtAuth`]. Cloning shares the configuration and the counters.
#[derive(Clone, Debug)]
pub struct ExtAuthLayer {
    config: Arc<ExtAuthConfig>,
    stats: Arc<ExtAuthStats>,
}

impl ExtAuthLayer {
    /// A layer checking requests as `config` says.
    pub fn new(config: ExtAuthConfig) -> Self {
        Self {
            config: Arc::new(config),
            stats: Arc::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<ExtAuthConfig> {
        &self.config
    }

    /// What the layer's checks decided so far.
    pub fn stats(&self) -> &Arc<ExtAuthStats> {
        &self.stats
    }
}

impl<S> Layer<S> for ExtAuthLayer {
    type Service = ExtAuth<S>;

    fn layer(&self, inner: S) -> ExtAuth<S> {
        ExtAuth::new(inner, self.clone())
    }
}

/// External authorization as an [`AccessPolicy`] for gatekit route rules. Every rule
/// guarded by one policy shares its counters.
#[derive(Clone, Debug)]
pub struct ExtAuthPolicy {
    layer: ExtAuthLayer,
}

impl ExtAuthPolicy {
    /// A policy checking requests as `config` says.
    pub fn new(config: ExtAuthConfig) -> Self {
        Self {
            layer: ExtAuthLayer::new(config),
        }
    }

    /// The layer the policy applies (its configuration and counters).
    pub fn ext_auth_layer(&self) -> &ExtAuthLayer {
        &self.layer
    }
}

impl AccessPolicy for ExtAuthPolicy {
    fn layer(&self, inner: Backend) -> Backend {
        Backend::new(ExtAuth::new(inner, self.layer.clone()))
    }
}
