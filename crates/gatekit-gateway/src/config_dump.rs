//! JSON documents published for an admin API: `/config` and `/fleet` ([`ConfigDump`]).

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

/// The JSON `/config` serves: whatever the process last published (the wiring publishes
/// the served snapshot and each resource's conditions). Cheap to clone; publishing is one
/// atomic swap. Kept serialized: a `serde_json::Value` of a large configuration costs
/// several times its text in memory (a map node per object).
#[derive(Clone)]
pub struct ConfigDump {
    current: Arc<ArcSwap<Bytes>>,
}

impl ConfigDump {
    /// A dump that serves `null` until something is published.
    pub fn new() -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(Bytes::from_static(b"null"))),
        }
    }

    /// Replaces what `/config` serves.
    pub fn publish(&self, value: serde_json::Value) {
        let text = serde_json::to_vec_pretty(&value).unwrap_or_else(|_| b"null".to_vec());
        self.current.store(Arc::new(Bytes::from(text)));
    }

    /// Replaces what `/config` serves with JSON text already rendered (the caller
    /// guarantees it is valid JSON).
    pub fn publish_json(&self, json: String) {
        self.current.store(Arc::new(Bytes::from(json)));
    }

    /// What `/config` serves now, as JSON text.
    pub fn current(&self) -> Bytes {
        Bytes::clone(&self.current.load())
    }
}

impl Default for ConfigDump {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ConfigDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigDump").finish_non_exhaustive()
    }
}
