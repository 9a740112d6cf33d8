//! [`Drain`]: a shutdown group over listeners and their connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

/// Where a drain is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Serving normally.
    Serving,
    /// Connections are asked to finish.
    Graceful,
    /// The deadline passed: connections are dropped.
    Hard,
}

/// How [`Drain::drain`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrainOutcome {
    /// Every connection finished in time.
    Complete,
    /// The deadline passed; this many connections were dropped.
    TimedOut {
        /// Connections still open at the deadline.
        dropped: usize,
    },
}

/// A shutdown group: the listeners ([`Server`](super::Server)s) given it with
/// [`Server::drain`](super::Server::drain) and every connection they accepted. Cheap to
/// clone; clones are the same group.
///
/// [`drain`](Self::drain) stops every listener of the group (their sockets close, so new
/// connections are refused), asks every connection to finish (HTTP/1: close after the
/// in-flight response, idle keep-alive connections at once; HTTP/2: GOAWAY, open streams
/// complete; a connection still in its TLS handshake is asked as soon as it is served),
/// and waits for them up to a deadline, after which the rest are dropped.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `true` once listeners must stop accepting; each accept loop holds a receiver.
    stop_accepting: watch::Sender<bool>,
    /// Each connection holds a receiver until it ends.
    phase: watch::Sender<Phase>,
    /// Open connections.
    active: AtomicUsize,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            stop_accepting: watch::Sender::new(false),
            phase: watch::Sender::new(Phase::Serving),
            active: AtomicUsize::new(0),
        }
    }
}

impl Drain {
    /// A new group, with no listener yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Open connections of the group's listeners.
    pub fn active_connections(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Stops every listener of the group, lets open connections finish gracefully for up
    /// to `timeout`, then drops the rest. Listeners given the group afterwards stop at
    /// once.
    pub async fn drain(&self, timeout: Duration) -> DrainOutcome {
        self.inner.stop_accepting.send_replace(true);
        // Every accept loop has closed its socket, and every connection it accepted
        // holds a phase receiver.
        self.inner.stop_accepting.closed().await;
        tracing::info!(
            connections = self.active_connections(),
            ?timeout,
            "draining connections"
        );
        self.inner.phase.send_replace(Phase::Graceful);
        if tokio::time::timeout(timeout, self.inner.phase.closed())
            .await
            .is_ok()
        {
            return DrainOutcome::Complete;
        }
        let dropped = self.active_connections();
        tracing::warn!(
            connections = dropped,
            "drain deadline passed; closing connections"
        );
        self.inner.phase.send_replace(Phase::Hard);
        // Each connection task ends at its next poll.
        self.inner.phase.closed().await;
        DrainOutcome::TimedOut { dropped }
    }

    /// What an accept loop watches: `true` once it must stop.
    pub(super) fn stop_accepting(&self) -> watch::Receiver<bool> {
        self.inner.stop_accepting.subscribe()
    }

    /// Registers one accepted connection: counted until the returned value is dropped.
    pub(super) fn connection(&self) -> Tracked {
        self.inner.active.fetch_add(1, Ordering::Relaxed);
        Tracked {
            signal: DrainSignal(Some(self.inner.phase.subscribe())),
            drain: self.clone(),
        }
    }
}

/// One connection registered with a [`Drain`].
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) signal: DrainSignal,
    drain: Drain,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drain.inner.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a connection watches to learn that it must finish; `none()` never fires.
///
/// An HTTP/1.1 upgrade request carries its connection's signal in its extensions: the
/// upgraded tunnel outlives the HTTP connection, and is closed when the drain reaches
/// its deadline ([`Phase::Hard`]), like the connections that did not finish.
#[derive(Clone, Debug)]
pub(crate) struct DrainSignal(Option<watch::Receiver<Phase>>);

impl DrainSignal {
    /// A signal that never fires: a connection outside any drain group.
    pub(crate) const fn none() -> Self {
        Self(None)
    }

    /// [`reached`](Self::reached), owning the signal: a future that borrows nothing.
    pub(crate) async fn into_reached(mut self, phase: Phase) {
        self.reached(phase).await;
    }

    /// Resolves once the drain has reached `phase` (never, for [`none`](Self::none)).
    pub(crate) async fn reached(&mut self, phase: Phase) {
        if let Some(rx) = &mut self.0
            && rx.wait_for(|p| *p >= phase).await.is_ok()
        {
            return;
        }
        std::future::pending().await
    }
}

/// The end of something an upgraded connection (a WebSocket) was routed by, other than
/// its client connection: a route removed from the configuration. The connections
/// routed while it was current are closed when it is [retired](Self::retire) (the
/// caller retires it once the drain deadline after the removal has passed).
///
/// Its channel is made when the first upgrade request is marked (or at retirement):
/// a route that never carries an upgrade costs no channel.
#[derive(Debug, Default)]
pub struct Retirement {
    phase: OnceLock<watch::Sender<Phase>>,
}

impl Retirement {
    /// A retirement not yet announced.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `req`, if it asks for an upgrade, as routed by what this retirement ends:
    /// its upgraded connection is closed when [`retire`](Self::retire) is called.
    /// Other requests are left as they are (nothing is added to them).
    pub fn mark<B>(&self, req: &mut http::Request<B>) {
        if crate::client::is_upgrade_request(req) {
            let phase = self
                .phase
                .get_or_init(|| watch::Sender::new(Phase::Serving));
            req.extensions_mut()
                .insert(RetiredSignal(DrainSignal(Some(phase.subscribe()))));
        }
    }

    /// Whether an upgrade request was [marked](Self::mark) (or the retirement already
    /// announced): only then can a connection be waiting for [`retire`](Self::retire).
    pub fn has_marked(&self) -> bool {
        self.phase.get().is_some()
    }

    /// Closes every upgraded connection marked by this retirement, now and from now on.
    pub fn retire(&self) {
        // Whichever of `mark` and `retire` makes the channel first, it ends in `Hard`.
        self.phase
            .get_or_init(|| watch::Sender::new(Phase::Hard))
            .send_replace(Phase::Hard);
    }
}

/// A route's [`Retirement`], as an upgrade request carries it.
#[derive(Clone, Debug)]
pub(crate) struct RetiredSignal(pub(crate) DrainSignal);

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_request() -> http::Request<()> {
        http::Request::builder()
            .uri("/ws")
            .header(http::header::CONNECTION, "upgrade")
            .header(http::header::UPGRADE, "websocket")
            .body(())
            .unwrap()
    }

    fn signal(req: &http::Request<()>) -> DrainSignal {
        req.extensions().get::<RetiredSignal>().unwrap().0.clone()
    }

    #[tokio::test]
    async fn a_retirement_makes_its_channel_only_for_upgrades_and_closes_them_either_way_round() {
        let retirement = Retirement::new();
        let mut plain = http::Request::new(());
        retirement.mark(&mut plain);
        assert!(plain.extensions().get::<RetiredSignal>().is_none());
        assert!(!retirement.has_marked(), "no channel without an upgrade");

        // Marked before the retirement: fires when it comes.
        let mut before = upgrade_request();
        retirement.mark(&mut before);
        assert!(retirement.has_marked());
        let mut before = signal(&before);
        retirement.retire();
        before.reached(Phase::Hard).await;

        // Retired before anything was marked: a later upgrade is closed at once.
        let retired_first = Retirement::new();
        retired_first.retire();
        let mut after = upgrade_request();
        retired_first.mark(&mut after);
        signal(&after).reached(Phase::Hard).await;
    }
}
