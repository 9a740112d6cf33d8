//! The check loops: one per endpoint address, bounded by one semaphore.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use gatekit_core::Endpoint;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    CheckError, EndpointHealthSnapshot, HealthCheckConfig, HealthEvent, HealthEventKind,
    HealthEvents,
};
use crate::{SharedHealth, Upstream};

/// Runs active health checks: one loop per endpoint address, shared by every route that
/// uses the upstream, following the upstream's endpoint set.
///
/// Each loop checks its endpoint every [`interval`](HealthCheckConfig::interval) (with
/// jitter) over a fresh connection, counts consecutive successes and failures and writes
/// the verdict to the endpoint's [`EndpointHealth`](crate::EndpointHealth) when a threshold is crossed, sending a
/// [`HealthEvent`]. At most
/// [`max_concurrent_checks`](HealthCheckConfig::max_concurrent_checks) checks run at once.
///
/// Dropping the checker stops every loop (their tasks are aborted; a check in flight is
/// dropped with its connection).
pub struct HealthChecker {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    runtime: Handle,
    loops: Mutex<HashMap<SocketAddr, Loop>>,
    follower: Mutex<Option<JoinHandle<()>>>,
}

/// What every loop reads.
struct Shared {
    config: HealthCheckConfig,
    permits: Semaphore,
    events: HealthEvents,
}

/// One endpoint's loop: its task and its counters.
struct Loop {
    probe: Arc<Probe>,
    task: JoinHandle<()>,
}

/// One endpoint's check state, read by snapshots.
struct Probe {
    addr: SocketAddr,
    health: ArcSwap<SharedHealth>,
    successes: AtomicU32,
    failures: AtomicU32,
    /// No check has completed yet (for `start_healthy = false`).
    unchecked: AtomicBool,
    last_error: Mutex<Option<Arc<str>>>,
}

// === impl HealthChecker ===

impl HealthChecker {
    /// Starts checking `initial` endpoints on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn spawn(config: HealthCheckConfig, initial: Vec<(Endpoint, SharedHealth)>) -> Self {
        Self::spawn_with_events(config, initial, HealthEvents::new())
    }

    /// Like [`spawn`](Self::spawn), sending events to `events` (for example the sink
    /// an [`OutlierDetector`](crate::outlier::OutlierDetector) uses too, to get one stream
    /// of every health change).
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn spawn_with_events(
        config: HealthCheckConfig,
        initial: Vec<(Endpoint, SharedHealth)>,
        events: HealthEvents,
    ) -> Self {
        let permits = Semaphore::new(config.max_concurrent_checks.max(1));
        let inner = Arc::new(Inner {
            shared: Arc::new(Shared {
                config,
                permits,
                events,
            }),
            runtime: Handle::current(),
            loops: Mutex::new(HashMap::new()),
            follower: Mutex::new(None),
        });
        inner.update(initial);
        Self { inner }
    }

    /// Checks `upstream`'s endpoints, following its set as it changes
    /// ([`follow`](Self::follow)); verdicts go to the upstream's [`EndpointHealth`](crate::EndpointHealth), which
    /// its balancer reads on every pick. The checker holds the upstream weakly: it stops
    /// following when the upstream is dropped, and stops checking when it is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use gatekit_core::client::{Client, Transport};
    /// use gatekit_lb::health::{CheckKind, HealthCheckConfig, HttpCheck};
    /// use gatekit_lb::{Algorithm, HealthChecker, Upstream, UpstreamConfig};
    ///
    /// let upstream = Upstream::with_client(
    ///     UpstreamConfig::new(Algorithm::LeastRequest),
    ///     &Client::default(),
    ///     Transport::http1(),
    /// )
    /// .with_endpoints(["127.0.0.1:8001".parse::<std::net::SocketAddr>().unwrap()]);
    /// let checker = HealthChecker::for_upstream(
    ///     HealthCheckConfig::default()
    ///         .interval(Duration::from_secs(5))
    ///         .kind(CheckKind::Http(HttpCheck::default().path("/healthz"))),
    ///     &upstream,
    /// );
    /// // Keep `checker` as long as the upstream is served: dropping it stops the checks.
    /// # drop(checker);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn for_upstream<S: Send + Sync + 'static>(
        config: HealthCheckConfig,
        upstream: &Upstream<S>,
    ) -> Self {
        Self::for_upstream_with_events(config, upstream, HealthEvents::new())
    }

    /// Like [`for_upstream`](Self::for_upstream), sending events to `events`.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn for_upstream_with_events<S: Send + Sync + 'static>(
        config: HealthCheckConfig,
        upstream: &Upstream<S>,
        events: HealthEvents,
    ) -> Self {
        let checker = Self::spawn_with_events(config, Vec::new(), events);
        let weak = upstream.downgrade();
        checker.follow(upstream.subscribe(), move || {
            weak.upgrade().map(|u| u.endpoints()).unwrap_or_default()
        });
        checker
    }

    /// Makes the checked set equal to `endpoints`: starts loops for new addresses, stops
    /// loops of addresses no longer present, keeps the loops (and counters) of addresses
    /// present before and after. If an unchanged address comes with a different
    /// health ([`SharedHealth::ptr_eq`]), its loop writes to the new one from now on (and copies the
    /// current verdict into it).
    ///
    /// Every endpoint given is checked, whatever its [`EndpointState`](gatekit_core::EndpointState):
    /// a terminating endpoint may still be the last resort. May be called from any thread.
    pub fn update(&self, endpoints: Vec<(Endpoint, SharedHealth)>) {
        self.inner.update(endpoints);
    }

    /// Follows an upstream's endpoint set: calls [`update`](Self::update) with
    /// `endpoints()` now and after every change of `generations` (the upstream's
    /// generation watch), until the checker is dropped or the watch closes. A second call
    /// replaces the first.
    pub fn follow<F>(&self, mut generations: watch::Receiver<u64>, endpoints: F)
    where
        F: Fn() -> Vec<(Endpoint, SharedHealth)> + Send + Sync + 'static,
    {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let task = self.inner.runtime.spawn(async move {
            loop {
                // Mark the generation seen before reading the set, so a change in
                // between is not lost.
                generations.borrow_and_update();
                match weak.upgrade() {
                    Some(inner) => inner.update(endpoints()),
                    None => return,
                }
                if generations.changed().await.is_err() {
                    return;
                }
            }
        });
        if let Some(old) = self.inner.follower.lock().replace(task) {
            old.abort();
        }
    }

    /// A receiver of every health change from now on (see [`HealthEvents`]).
    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.inner.shared.events.subscribe()
    }

    /// The health of every checked endpoint, sorted by address.
    pub fn snapshot(&self) -> Vec<EndpointHealthSnapshot> {
        let now = Instant::now();
        let mut out: Vec<_> = self
            .inner
            .loops
            .lock()
            .values()
            .map(|l| l.probe.snapshot(now))
            .collect();
        out.sort_by_key(|s| s.addr);
        out
    }

    /// The configuration the checker runs with.
    pub fn config(&self) -> &HealthCheckConfig {
        &self.inner.shared.config
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        if let Some(follower) = self.inner.follower.lock().take() {
            follower.abort();
        }
        // Dropping the loops aborts their tasks.
        self.inner.loops.lock().clear();
    }
}

impl fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecker")
            .field("config", &self.inner.shared.config)
            .field("endpoints", &self.inner.loops.lock().len())
            .finish()
    }
}

// === impl Inner ===

impl Inner {
    fn update(&self, endpoints: Vec<(Endpoint, SharedHealth)>) {
        let mut loops = self.loops.lock();
        let mut next = HashMap::with_capacity(endpoints.len());
        for (ep, health) in endpoints {
            let addr = ep.addr();
            if next.contains_key(&addr) {
                continue; // A duplicate address: the first one wins.
            }
            let entry = match loops.remove(&addr) {
                Some(existing) => {
                    let current = existing.probe.health.load();
                    if !SharedHealth::ptr_eq(&current, &health) {
                        health.set_active_healthy(current.is_active_healthy());
                        existing.probe.health.store(Arc::new(health));
                    }
                    existing
                }
                None => self.start(addr, health),
            };
            next.insert(addr, entry);
        }
        // What is left in `loops` was removed: dropping it aborts those tasks.
        let removed = std::mem::replace(&mut *loops, next);
        drop(loops);
        drop(removed);
    }

    fn start(&self, addr: SocketAddr, health: SharedHealth) -> Loop {
        if !self.shared.config.start_healthy {
            health.set_active_healthy(false);
        }
        let probe = Arc::new(Probe {
            addr,
            health: ArcSwap::from_pointee(health),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            unchecked: AtomicBool::new(true),
            last_error: Mutex::new(None),
        });
        let task = self.runtime.spawn(run(self.shared.clone(), probe.clone()));
        Loop { probe, task }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(shared: Arc<Shared>, probe: Arc<Probe>) {
    tokio::time::sleep(shared.config.first_wait()).await;
    loop {
        let result = {
            let Ok(_permit) = shared.permits.acquire().await else {
                return; // The semaphore is never closed; stop if it ever is.
            };
            shared
                .config
                .kind
                .check(probe.addr, shared.config.timeout)
                .await
        };
        probe.record(&shared, result);
        tokio::time::sleep(shared.config.next_wait()).await;
    }
}

// === impl Probe ===

impl Probe {
    fn record(&self, shared: &Shared, result: Result<(), CheckError>) {
        let config = &shared.config;
        let health = self.health.load();
        let first = self.unchecked.swap(false, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.failures.store(0, Ordering::Relaxed);
                let n = self
                    .successes
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let enough = n >= config.healthy_threshold || (first && !config.start_healthy);
                if enough && !health.is_active_healthy() && !health.set_active_healthy(true) {
                    tracing::info!(addr = %self.addr, "endpoint passed health checks");
                    shared.events.send(HealthEvent::new(
                        self.addr,
                        HealthEventKind::BecameHealthy,
                        None,
                    ));
                }
            }
            Err(error) => {
                self.successes.store(0, Ordering::Relaxed);
                let n = self
                    .failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let reason: Arc<str> = error.to_string().into();
                *self.last_error.lock() = Some(reason.clone());
                if n >= config.unhealthy_threshold
                    && health.is_active_healthy()
                    && health.set_active_healthy(false)
                {
                    tracing::warn!(addr = %self.addr, %reason, "endpoint failed health checks");
                    shared.events.send(HealthEvent::new(
                        self.addr,
                        HealthEventKind::BecameUnhealthy,
                        Some(reason),
                    ));
                }
            }
        }
    }

    fn snapshot(&self, now: Instant) -> EndpointHealthSnapshot {
        let mut snap = EndpointHealthSnapshot::of(self.addr, &self.health.load(), now);
        snap.consecutive_failures = self.failures.load(Ordering::Relaxed);
        snap.consecutive_successes = self.successes.load(Ordering::Relaxed);
        snap.last_error = self.last_error.lock().clone();
        snap
    }
}
