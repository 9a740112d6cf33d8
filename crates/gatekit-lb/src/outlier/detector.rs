//! The outlier detector: per-request outcomes in, ejections out.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use gatekit_core::{Endpoint, ErrorKind};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{broadcast, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use super::OutlierConfig;
use crate::health::{EndpointHealthSnapshot, HealthEvent, HealthEventKind, HealthEvents};
use crate::{EndpointHealth, Outcome, OutcomeObserver, SharedHealth};

/// Passive health checking: watches every request's [`Outcome`] and ejects endpoints that
/// fail too often in a row, for `base × number of ejections` (capped), never more than
/// [`max_ejection_percent`](OutlierConfig::max_ejection_percent) of the set at once.
///
/// Share it (in an `Arc`) as the upstream's [`OutcomeObserver`], and keep it told of the
/// endpoint set with [`update`](Self::update) or [`follow`](Self::follow): it only ejects
/// endpoints of that set, and the set's size is the base of the percentage.
///
/// Ejected endpoints return by themselves: [`EndpointHealth::is_ejected`] compares a
/// deadline. The detector notices the return with a timer (or on the endpoint's next
/// outcome, whichever comes first), sends [`HealthEventKind::Returned`] and resets the
/// endpoint's counters. Dropping the detector — and every [`observer`](Self::observer)
/// handle of it — cancels its timers.
///
/// One allocation per detector (with its configuration shared by
/// [`with_shared_config`](Self::with_shared_config)): a gateway has one per upstream.
pub struct OutlierDetector {
    inner: Arc<Inner>,
}

struct Inner {
    /// Itself, for the timers it spawns (it is reached as `&self` when it observes).
    me: Weak<Inner>,
    config: Arc<OutlierConfig>,
    events: HealthEvents,
    /// Taken on the rare paths only: ejecting, returning, updating the set. Counting
    /// outcomes is lock-free (atomics in `EndpointHealth`).
    state: Mutex<State>,
    /// Copies of `State::ejected` and the set's size, written under the lock, read
    /// without it: an endpoint over its threshold whose ejection the percentage refuses
    /// retries on every failure, and must not take the lock each time.
    ejected_hint: AtomicU32,
    total_hint: AtomicU32,
}

struct State {
    /// The set, sorted by address (most upstreams have a handful of endpoints: a slice
    /// is a fraction of a hash map's size).
    endpoints: Box<[(SocketAddr, SharedHealth)]>,
    /// Each ejected endpoint's return timer (then its ejection-count decay timer), by
    /// address (a few at a time: a `Vec` allocates nothing until the first).
    timers: Vec<(SocketAddr, AbortHandle)>,
    /// The task of [`OutlierDetector::follow`], if any.
    follower: Option<JoinHandle<()>>,
    /// Ejections not yet noticed as over.
    ejected: u32,
}

impl State {
    /// Sets the timer of `addr`, aborting the one it replaces.
    fn set_timer(&mut self, addr: SocketAddr, timer: AbortHandle) {
        match self.timers.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, old)) => std::mem::replace(old, timer).abort(),
            None => self.timers.push((addr, timer)),
        }
    }

    fn has_timer(&self, addr: SocketAddr) -> bool {
        self.timers.iter().any(|(a, _)| *a == addr)
    }
}

/// A count as the hints keep it.
fn hint(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// How an outcome counts.
enum Class {
    /// A response below 500.
    Success,
    /// A 5xx; `gateway` for 502/503/504 and transport failures.
    Failure { gateway: bool, connect: Reach },
    /// Not the endpoint's doing (a gateway-side refusal): counts for nothing.
    Ignore,
}

/// What a failure says about reaching the endpoint (the connect-failure detector).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The endpoint answered: resets the count.
    Answered,
    /// Connecting failed: counts.
    Failed,
    /// A timeout or protocol error after sending: unknown whether a connection was
    /// made, so neither counts nor resets.
    Unknown,
}

fn classify(outcome: &Outcome) -> Class {
    if let Some(status) = outcome.status_code() {
        let connect = Reach::Answered;
        return match status.as_u16() {
            502..=504 => Class::Failure {
                gateway: true,
                connect,
            },
            500..=599 => Class::Failure {
                gateway: false,
                connect,
            },
            _ => Class::Success,
        };
    }
    match outcome.error_kind() {
        // Envoy maps local-origin failures to 503/504 and counts them as gateway errors.
        // gatekit's client reports a connect timeout as `Connect` too.
        Some(ErrorKind::Connect) => Class::Failure {
            gateway: true,
            connect: Reach::Failed,
        },
        Some(ErrorKind::Timeout | ErrorKind::UpstreamProtocol) => Class::Failure {
            gateway: true,
            connect: Reach::Unknown,
        },
        _ => Class::Ignore,
    }
}

// === impl OutlierDetector ===

impl OutlierDetector {
    /// A detector with its own event sink. Call [`update`](Self::update) or
    /// [`follow`](Self::follow) to give it the endpoint set.
    pub fn new(config: OutlierConfig) -> Self {
        Self::with_events(config, HealthEvents::new())
    }

    /// A detector that sends its events to `events` (for example the sink a
    /// [`HealthChecker`](crate::HealthChecker) uses too).
    pub fn with_events(config: OutlierConfig, events: HealthEvents) -> Self {
        Self::with_shared_config(Arc::new(config), events)
    }

    /// A detector that sends its events to `events`, with a configuration other
    /// detectors share (a gateway's upstreams mostly run with one default).
    pub fn with_shared_config(config: Arc<OutlierConfig>, events: HealthEvents) -> Self {
        Self {
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                config,
                events,
                state: Mutex::new(State {
                    endpoints: Box::default(),
                    timers: Vec::new(),
                    follower: None,
                    ejected: 0,
                }),
                ejected_hint: AtomicU32::new(0),
                total_hint: AtomicU32::new(0),
            }),
        }
    }

    /// The detector as an upstream's outcome observer
    /// ([`UpstreamConfig::with_observer`](crate::UpstreamConfig::with_observer)): a
    /// handle of the same detector (no allocation; `Arc::new(detector)` is one more).
    pub fn observer(&self) -> Arc<dyn OutcomeObserver> {
        Arc::clone(&self.inner) as Arc<dyn OutcomeObserver>
    }

    /// Sets the endpoint set: the endpoints that may be ejected and the total the
    /// ejection percentage is taken of. Ejections that have ended are noticed (and
    /// reported); timers of removed endpoints are cancelled.
    pub fn update(&self, endpoints: Vec<(Endpoint, SharedHealth)>) {
        self.inner.update(endpoints);
    }

    /// Calls [`update`](Self::update) with `endpoints()` now and after every change of
    /// `generations` (the upstream's generation watch), until the detector is dropped or
    /// the watch closes. A second call replaces the first.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn follow<F>(&self, mut generations: watch::Receiver<u64>, endpoints: F)
    where
        F: Fn() -> Vec<(Endpoint, SharedHealth)> + Send + Sync + 'static,
    {
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            loop {
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
        if let Some(old) = self.inner.state.lock().follower.replace(task) {
            old.abort();
        }
    }

    /// A receiver of every ejection and return from now on (see [`HealthEvents`]).
    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.inner.events.subscribe()
    }

    /// How many endpoints of the set are ejected now.
    pub fn ejected_count(&self) -> usize {
        let now = Instant::now();
        let state = self.inner.state.lock();
        state
            .endpoints
            .iter()
            .filter(|(_, h)| h.is_ejected(now))
            .count()
    }

    /// The health of every endpoint of the set, sorted by address (the active-check
    /// counters are 0: see [`HealthChecker::snapshot`](crate::HealthChecker::snapshot)).
    pub fn snapshot(&self) -> Vec<EndpointHealthSnapshot> {
        let now = Instant::now();
        let state = self.inner.state.lock();
        let mut out: Vec<_> = state
            .endpoints
            .iter()
            .map(|(addr, h)| EndpointHealthSnapshot::of(*addr, h, now))
            .collect();
        drop(state);
        out.sort_by_key(|s| s.addr);
        out
    }

    /// The configuration the detector runs with.
    pub fn config(&self) -> &OutlierConfig {
        &self.inner.config
    }

    /// Whether `outcome` is a failure to some detector (a 5xx, a connect failure, a
    /// timeout or a protocol error after sending): the outcomes that can move a
    /// detector's counters. Before the first of them, a detector's outcomes change
    /// nothing (a success resets what failures raised), so one may be made then.
    pub fn counts(outcome: &Outcome) -> bool {
        matches!(classify(outcome), Class::Failure { .. })
    }
}

impl OutcomeObserver for OutlierDetector {
    fn on_outcome(&self, ep: &Endpoint, health: &EndpointHealth, outcome: Outcome) {
        self.inner.on_outcome(ep, health, outcome);
    }
}

impl OutcomeObserver for Inner {
    fn on_outcome(&self, ep: &Endpoint, health: &EndpointHealth, outcome: Outcome) {
        let class = classify(&outcome);
        if matches!(class, Class::Ignore) {
            return;
        }
        let now = Instant::now();
        if health.is_ejected(now) {
            // Requests that were in flight when it was ejected: they say nothing new.
            return;
        }
        if health.take_expired_ejection(now) {
            self.returned(ep.addr(), health);
        }
        let Class::Failure { gateway, connect } = class else {
            health.reset_outlier_counters();
            return;
        };
        let config = &self.config;
        let n5xx = health.incr_5xx();
        let ngw = if gateway {
            health.incr_gateway()
        } else {
            health.reset_gateway();
            0
        };
        let nconn = match connect {
            Reach::Failed => health.incr_connect(),
            Reach::Answered => {
                health.reset_connect();
                0
            }
            Reach::Unknown => 0,
        };
        let reason = if config
            .consecutive_connect_failures
            .is_some_and(|t| nconn >= t)
        {
            Some((nconn, "connect failures"))
        } else if config.consecutive_gateway_errors.is_some_and(|t| ngw >= t) {
            Some((ngw, "gateway errors"))
        } else if config.consecutive_5xx.is_some_and(|t| n5xx >= t) {
            Some((n5xx, "5xx"))
        } else {
            None
        };
        if let Some((n, what)) = reason {
            self.try_eject(ep.addr(), health, now, n, what);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        if let Some(follower) = state.follower.take() {
            follower.abort();
        }
        for (_, timer) in state.timers.drain(..) {
            timer.abort();
        }
    }
}

impl fmt::Debug for OutlierDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state.lock();
        f.debug_struct("OutlierDetector")
            .field("config", &self.inner.config)
            .field("endpoints", &state.endpoints.len())
            .field("ejected", &state.ejected)
            .finish()
    }
}

// === impl Inner ===

impl State {
    /// The health of the endpoint at `addr`, if it is in the set.
    fn health(&self, addr: SocketAddr) -> Option<&SharedHealth> {
        self.endpoints
            .binary_search_by_key(&addr, |(a, _)| *a)
            .ok()
            .map(|i| &self.endpoints[i].1)
    }
}

impl Inner {
    /// Ejects `health` if it is in the set and the percentage allows; otherwise its
    /// counters stay at the threshold and the next failure tries again.
    fn try_eject(
        &self,
        addr: SocketAddr,
        health: &EndpointHealth,
        now: Instant,
        count: u32,
        what: &str,
    ) {
        // Lock-free pre-check; the decision is made again under the lock.
        let (ejected, total) = (
            self.ejected_hint.load(Ordering::Relaxed),
            self.total_hint.load(Ordering::Relaxed),
        );
        if !self.config.may_eject(ejected as usize, total as usize) {
            return;
        }
        let mut state = self.state.lock();
        if health.is_ejected(now) {
            return; // A concurrent failure got here first.
        }
        if state.health(addr).is_none() {
            return;
        }
        if !self
            .config
            .may_eject(state.ejected as usize, state.endpoints.len())
        {
            tracing::debug!(%addr, ejected = state.ejected, "outlier ejection refused: max ejection percent");
            return;
        }
        let time = self
            .config
            .ejection_time(health.ejections().saturating_add(1));
        let until = now + time;
        let n = health.eject_until(until);
        health.reset_outlier_counters();
        state.ejected += 1;
        self.ejected_hint.store(state.ejected, Ordering::Relaxed);
        if let Some(timer) = self.spawn_timer(addr, until, n) {
            state.set_timer(addr, timer);
        }
        drop(state);
        let reason: Arc<str> = format!("{count} consecutive {what}; ejected for {time:?}").into();
        tracing::warn!(%addr, %reason, ejections = n, "endpoint ejected");
        self.events.send(HealthEvent::new(
            addr,
            HealthEventKind::Ejected,
            Some(reason),
        ));
    }

    /// Reports a noticed return (the caller won `take_expired_ejection`).
    fn returned(&self, addr: SocketAddr, health: &EndpointHealth) {
        {
            let mut state = self.state.lock();
            state.ejected = state.ejected.saturating_sub(1);
            self.ejected_hint.store(state.ejected, Ordering::Relaxed);
        }
        health.reset_outlier_counters();
        tracing::info!(%addr, "ejected endpoint returned");
        self.events
            .send(HealthEvent::new(addr, HealthEventKind::Returned, None));
    }

    /// A timer that notices the return at `until`, then resets the ejection count if the
    /// endpoint stays un-ejected for `max_ejection_time`. `None` outside a runtime (the
    /// return is then noticed on the next outcome or update).
    fn spawn_timer(&self, addr: SocketAddr, until: Instant, n: u32) -> Option<AbortHandle> {
        let runtime = Handle::try_current().ok()?;
        let weak: Weak<Self> = self.me.clone();
        let decay = self
            .config
            .max_ejection_time
            .max(self.config.base_ejection_time);
        let task = runtime.spawn(async move {
            tokio::time::sleep_until(until).await;
            let health = {
                let Some(inner) = weak.upgrade() else { return };
                let health = inner.state.lock().health(addr).cloned();
                let Some(health) = health else { return };
                if health.take_expired_ejection(Instant::now()) {
                    inner.returned(addr, &health);
                }
                health
            };
            tokio::time::sleep(decay).await;
            if health.ejections() == n && health.ejection_deadline().is_none() {
                health.reset_ejections();
            }
        });
        Some(task.abort_handle())
    }

    fn update(&self, endpoints: Vec<(Endpoint, SharedHealth)>) {
        let now = Instant::now();
        let mut endpoints: Vec<_> = endpoints
            .into_iter()
            .map(|(ep, health)| (ep.addr(), health))
            .collect();
        // Stable, then the last of duplicate addresses kept.
        endpoints.sort_by_key(|(addr, _)| *addr);
        endpoints.reverse();
        endpoints.dedup_by_key(|(addr, _)| *addr);
        endpoints.reverse();
        let endpoints = endpoints.into_boxed_slice();
        let mut returned = Vec::new();
        let mut state = self.state.lock();
        state.timers.retain(|(addr, timer)| {
            let keep = endpoints.binary_search_by_key(addr, |(a, _)| *a).is_ok();
            if !keep {
                timer.abort();
            }
            keep
        });
        let mut ejected = 0;
        for (addr, health) in &*endpoints {
            if health.take_expired_ejection(now) {
                health.reset_outlier_counters();
                returned.push(*addr);
            } else if let Some(until) = health.ejection_deadline() {
                ejected += 1;
                if !state.has_timer(*addr)
                    && let Some(timer) = self.spawn_timer(*addr, until, health.ejections())
                {
                    state.timers.push((*addr, timer));
                }
            }
        }
        state.ejected = ejected;
        self.ejected_hint.store(ejected, Ordering::Relaxed);
        self.total_hint
            .store(hint(endpoints.len()), Ordering::Relaxed);
        state.endpoints = endpoints;
        drop(state);
        for addr in returned {
            self.events
                .send(HealthEvent::new(addr, HealthEventKind::Returned, None));
        }
    }
}
