//! [`ApiKeyLayer`] and [`ApiKeyPolicy`]: the configuration compiled into a digest map.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;

use gatekit_core::access::AccessPolicy;
use gatekit_core::{Backend, ConfigError};
use http::{HeaderName, HeaderValue};
use tower_layer::Layer;

use super::{ApiKey, ApiKeyConfig};
use crate::credential::CredentialSource;
use crate::header::{Digest, challenge, forwarded_value};

/// A consumer as the layer knows it.
#[derive(Debug)]
pub(super) struct ConsumerEntry {
    pub(super) name: Arc<str>,
    /// The consumer's name as the forwarded header's value, when one is configured.
    pub(super) header: Option<HeaderValue>,
}

/// The compiled configuration, shared by every service of one layer.
pub(super) struct Shared {
    pub(super) by_digest: HashMap<Digest, Arc<ConsumerEntry>>,
    pub(super) sources: Vec<CredentialSource>,
    pub(super) forward_consumer: Option<HeaderName>,
    pub(super) strip_credential: bool,
    pub(super) challenge: HeaderValue,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.by_digest.len())
            .field("sources", &self.sources)
            .field("forward_consumer", &self.forward_consumer)
            .field("strip_credential", &self.strip_credential)
            .field("challenge", &self.challenge)
            .finish()
    }
}

/// Wraps services in [`ApiKey`] checks. Cloning shares the compiled configuration (one
/// `Arc`). `Debug` shows counts, never a key or a digest.
#[derive(Clone, Debug)]
pub struct ApiKeyLayer {
    shared: Arc<Shared>,
}

impl ApiKeyLayer {
    /// Compiles `config` into a map from key digest to consumer.
    ///
    /// # Errors
    ///
    /// No key source; a realm that cannot be quoted in a header; an empty key; a
    /// consumer name that cannot be forwarded in a header (when forwarding); the same
    /// key given to two consumers (the error names both, never the key).
    pub fn new(config: ApiKeyConfig) -> Result<Self, ConfigError> {
        if config.sources.is_empty() {
            return Err(ConfigError::new(
                "extractFrom",
                "no place to read the API key from",
            ));
        }
        let challenge = challenge("ApiKey", &config.realm, "")?;
        let mut by_digest: HashMap<Digest, Arc<ConsumerEntry>> = HashMap::new();
        let mut entries: HashMap<&str, Arc<ConsumerEntry>> = HashMap::new();
        for consumer in &config.consumers {
            let field = format!("consumers[{}]", consumer.name);
            let entry = match entries.get(consumer.name.as_str()) {
                Some(entry) => Arc::clone(entry),
                None => {
                    let header = match config.forward_consumer {
                        Some(_) => Some(forwarded_value(&field, &consumer.name)?),
                        None => None,
                    };
                    let entry = Arc::new(ConsumerEntry {
                        name: Arc::from(consumer.name.as_str()),
                        header,
                    });
                    entries.insert(&consumer.name, Arc::clone(&entry));
                    entry
                }
            };
            for key in &consumer.keys {
                if key.is_empty_key() {
                    return Err(ConfigError::new(field, "a key is empty"));
                }
                match by_digest.entry(*key) {
                    Entry::Vacant(v) => {
                        v.insert(Arc::clone(&entry));
                    }
                    Entry::Occupied(o) if o.get().name != entry.name => {
                        return Err(ConfigError::new(
                            field,
                            format!(
                                "consumers `{}` and `{}` have the same key",
                                o.get().name,
                                entry.name
                            ),
                        ));
                    }
                    Entry::Occupied(_) => {}
                }
            }
        }
        drop(entries);
        let ApiKeyConfig {
            sources,
            forward_consumer,
            strip_credential,
            ..
        } = config;
        Ok(Self {
            shared: Arc::new(Shared {
                by_digest,
                sources,
                forward_consumer,
                strip_credential,
                challenge,
            }),
        })
    }

    /// How many distinct keys are accepted.
    pub fn key_count(&self) -> usize {
        self.shared.by_digest.len()
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKey<S>;

    fn layer(&self, inner: S) -> ApiKey<S> {
        ApiKey::new(inner, Arc::clone(&self.shared))
    }
}

/// An [`ApiKeyLayer`] as an [`AccessPolicy`] guarding gatekit route rules.
#[derive(Clone, Debug)]
pub struct ApiKeyPolicy {
    layer: ApiKeyLayer,
}

impl ApiKeyPolicy {
    /// The policy checking `layer`'s keys.
    pub fn new(layer: ApiKeyLayer) -> Self {
        Self { layer }
    }
}

impl From<ApiKeyLayer> for ApiKeyPolicy {
    fn from(layer: ApiKeyLayer) -> Self {
        Self::new(layer)
    }
}

impl AccessPolicy for ApiKeyPolicy {
    fn layer(&self, inner: Backend) -> Backend {
        Backend::new(self.layer.layer(inner))
    }
}
