//! The layer, and the access policy that puts it on gatekit route rules.

use std::sync::Arc;

use gatekit_core::Backend;
use gatekit_core::access::AccessPolicy;
use tower_layer::Layer;

use super::{Authz, AuthzConfig};

/// Wraps services in [`Authz`]. Cloning shares the rules (one `Arc`).
#[derive(Clone, Debug)]
pub struct AuthzLayer {
    config: Arc<AuthzConfig>,
}

impl AuthzLayer {
    /// A layer checking requests against `config`.
    pub fn new(config: AuthzConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// The rules.
    pub fn config(&self) -> &AuthzConfig {
        &self.config
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Authz<S> {
        Authz::new(inner, self.clone())
    }
}

/// Allow and deny rules as an [`AccessPolicy`] for gatekit route rules.
#[derive(Clone, Debug)]
pub struct AuthzPolicy {
    layer: AuthzLayer,
}

impl AuthzPolicy {
    /// A policy checking requests against `config`.
    pub fn new(config: AuthzConfig) -> Self {
        Self {
            layer: AuthzLayer::new(config),
        }
    }

    /// The layer the policy applies.
    pub fn authz_layer(&self) -> &AuthzLayer {
        &self.layer
    }
}

impl AccessPolicy for AuthzPolicy {
    fn layer(&self, inner: Backend) -> Backend {
        Backend::new(Authz::new(inner, self.layer.clone()))
    }
}
