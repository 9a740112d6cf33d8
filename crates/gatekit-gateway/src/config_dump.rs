//! JSON documents published for an admin API: `/config` and `/fleet` ([`ConfigDump`]).
//!
//! What is published is either JSON text ([`ConfigDump::publish`],
//! [`ConfigDump::publish_json`]) or, from the wiring, a snapshot of the served
//! configuration that is rendered only when the document is asked for
//! ([`ConfigDump::current`]): a reload hands over a few shared pointers instead of
//! rendering megabytes of JSON nobody may read.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

/// A document rendered on request (see the [module docs](self)).
pub(crate) trait Render: Send + Sync {
    /// The document, as JSON text.
    fn render(&self) -> Bytes;
}

/// What is published: text, or a snapshot to render.
enum Published {
    Text(Bytes),
    Snapshot(Arc<dyn Render>),
}

/// The JSON `/config` serves: whatever the process last published (the wiring publishes
/// the served snapshot and each resource's conditions). Cheap to clone; publishing is one
/// atomic swap. Kept serialized or as the snapshot it is rendered from: a
/// `serde_json::Value` of a large configuration costs several times its text in memory
/// (a map node per object).
#[derive(Clone)]
pub struct ConfigDump {
    current: Arc<ArcSwap<Published>>,
}

impl ConfigDump {
    /// A dump that serves `null` until something is published.
    pub fn new() -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(Published::Text(Bytes::from_static(
                b"null",
            )))),
        }
    }

    /// Replaces what `/config` serves.
    pub fn publish(&self, value: serde_json::Value) {
        let text = serde_json::to_vec_pretty(&value).unwrap_or_else(|_| b"null".to_vec());
        self.current
            .store(Arc::new(Published::Text(Bytes::from(text))));
    }

    /// Replaces what `/config` serves with JSON text already rendered (the caller
    /// guarantees it is valid JSON).
    pub fn publish_json(&self, json: String) {
        self.current
            .store(Arc::new(Published::Text(Bytes::from(json))));
    }

    /// Replaces what `/config` serves with a snapshot rendered when asked for.
    pub(crate) fn publish_snapshot(&self, snapshot: Arc<dyn Render>) {
        self.current.store(Arc::new(Published::Snapshot(snapshot)));
    }

    /// What `/config` serves now, as JSON text. A published snapshot is rendered here,
    /// on the caller's thread (for a large configuration, milliseconds: call it where
    /// blocking is fine).
    pub fn current(&self) -> Bytes {
        match &**self.current.load() {
            Published::Text(text) => text.clone(),
            Published::Snapshot(snapshot) => snapshot.render(),
        }
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
