//! The gateway's readiness: where it is in its life ([`Phase`]), for a `/readyz`.
//!
//! The [`Wiring`](crate::Wiring) marks the first served snapshot; whoever runs the
//! process (the `gatekit` binary's shutdown sequence, or an embedding application)
//! advances the later phases and answers `/readyz` from [`Readiness::phase`].

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

/// Where the process is in its life, as `/readyz` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Phase {
    /// Started; no configuration snapshot serves yet. Not ready.
    Starting,
    /// The first snapshot serves. Ready.
    Ready,
    /// A shutdown began: not ready, listeners still accepting while the change is
    /// announced.
    NotReady,
    /// Listeners closed; in-flight requests are finishing. Not ready.
    Draining,
    /// Drained; the process is about to exit. Not ready.
    Stopped,
}

/// The process's readiness, shared by whoever serves the first snapshot, the shutdown
/// sequence and `/readyz`. Cheap to clone. Phases only move forward.
#[derive(Clone)]
pub struct Readiness {
    phase: Arc<watch::Sender<Phase>>,
}

impl Readiness {
    /// A process in [`Phase::Starting`].
    pub fn new() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Starting)),
        }
    }

    /// Marks the first snapshot as served: `/readyz` answers 200 from now on (unless a
    /// shutdown already began).
    pub fn mark_served(&self) {
        self.advance(Phase::Ready);
    }

    /// Moves to `phase` if it is later than the current one.
    pub fn advance(&self, phase: Phase) {
        self.phase.send_if_modified(|current| {
            if phase > *current {
                *current = phase;
                true
            } else {
                false
            }
        });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }

    /// Resolves once the phase is `phase` or later.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|current| *current >= phase).await;
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Readiness").field(&self.phase()).finish()
    }
}
