//! An upstream's outlier detector, made at the upstream's first failure.

use std::sync::{Arc, OnceLock};

use gatekit_core::Endpoint;
use gatekit_core::client::EndpointClient;
use gatekit_lb::outlier::OutlierConfig;
use gatekit_lb::{
    EndpointHealth, HealthEvents, Outcome, OutcomeObserver, OutlierDetector, Upstream, WeakUpstream,
};
use parking_lot::Mutex;

use super::upstreams::HealthSink;

/// The outcome observer of an upstream with outlier detection: its [`OutlierDetector`]
/// is made at the first outcome that counts as a failure
/// ([`OutlierDetector::counts`]), told the upstream's endpoint set then and at every
/// change of it after. Until then an outcome moves nothing (a detector's successes only
/// reset what failures raised), so an upstream that never fails — most, with the
/// default detector that ejects endpoints refusing connections — keeps no detector
/// state and no copy of its set (~170 bytes in two allocations), nor its events' sink
/// (made with the detector; 72 bytes).
pub(super) struct LazyOutlier {
    /// The detector's configuration and where its events go, for the upstream `name`.
    parts: Arc<OutlierParts>,
    name: Arc<str>,
    /// The detector and its events' sink, made together at the first failure (boxed:
    /// a cell of the pair is 32 bytes, of the box 16).
    detector: OnceLock<Box<(OutlierDetector, HealthEvents)>>,
    /// Orders the making of the detector (which reads the set) with
    /// [`set_changed`](Self::set_changed), so no change of the set is missed, and with
    /// [`close`](Self::close). Holds what only they read: the upstream observed (set
    /// once it is built, with this as its observer; weak: the upstream holds this) and
    /// whether the sink is closed.
    making: Mutex<Making>,
}

/// A detector's configuration and its events' sink: one for every upstream with the
/// default detector (one pointer in each [`LazyOutlier`] instead of two: 64 bytes in
/// all, an `Arc` block two malloc size classes below the 104 bytes it took), one each
/// for a policy's.
pub(super) struct OutlierParts {
    pub(super) config: Arc<OutlierConfig>,
    pub(super) sink: Arc<HealthSink>,
}

/// What a [`LazyOutlier`] reads under its lock.
#[derive(Default)]
struct Making {
    upstream: Option<WeakUpstream<EndpointClient>>,
    closed: bool,
}

impl LazyOutlier {
    /// A detector-to-be with `parts`' configuration, sending its events (of upstream
    /// `name`) to `parts`' sink.
    pub(super) fn new(parts: Arc<OutlierParts>, name: Arc<str>) -> Self {
        Self {
            parts,
            name,
            detector: OnceLock::new(),
            making: Mutex::new(Making::default()),
        }
    }

    /// Sets the upstream this observes (the one built with it).
    pub(super) fn observe(&self, upstream: &Upstream<EndpointClient>) {
        self.making
            .lock()
            .upstream
            .get_or_insert_with(|| upstream.downgrade());
    }

    /// Stops the events of the detector, made or to be made, from reaching the sink
    /// (the upstream's entry is gone; requests in flight may still fail on it).
    pub(super) fn close(&self) {
        let mut making = self.making.lock();
        // A detector made after this gets a sink without callback.
        making.closed = true;
        if let Some(made) = self.detector.get() {
            made.1.close_callback();
        }
    }

    /// The detector, once made.
    #[cfg(test)]
    pub(super) fn detector(&self) -> Option<&OutlierDetector> {
        self.detector.get().map(|made| &made.0)
    }

    /// Tells the detector, if there is one, the set of `upstream` (call after each
    /// change of it).
    pub(super) fn set_changed(&self, upstream: &Upstream<EndpointClient>) {
        if self.detector.get().is_none() {
            let _making = self.making.lock();
            // Made by now, from the set before or after the change: told it again.
            if self.detector.get().is_none() {
                // Not made: it reads the set, changed already, when it is.
                return;
            }
        }
        if let Some(made) = self.detector.get() {
            made.0.update(upstream.endpoints());
        }
    }

    fn make(&self) -> &OutlierDetector {
        let making = self.making.lock();
        let made = self.detector.get_or_init(|| {
            let events = if making.closed {
                let events = HealthEvents::new();
                events.close_callback();
                events
            } else {
                self.parts.sink.events(Arc::clone(&self.name))
            };
            let detector =
                OutlierDetector::with_shared_config(Arc::clone(&self.parts.config), events.clone());
            if let Some(upstream) = making.upstream.as_ref().and_then(WeakUpstream::upgrade) {
                detector.update(upstream.endpoints());
            }
            Box::new((detector, events))
        });
        &made.0
    }
}

impl OutcomeObserver for LazyOutlier {
    fn on_outcome(&self, ep: &Endpoint, health: &EndpointHealth, outcome: Outcome) {
        let detector = match self.detector.get() {
            Some(made) => &made.0,
            None if OutlierDetector::counts(&outcome) => self.make(),
            None => return,
        };
        detector.on_outcome(ep, health, outcome);
    }
}
