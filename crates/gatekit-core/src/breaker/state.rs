//! [`CircuitBreaker`]: the shared counters, the FIFO queue of pending requests, and the
//! slots requests hold.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::HeaderValue;
use tokio::sync::oneshot;

use super::CircuitBreakerConfig;
use super::error::{Threshold, header_value, open_error};
use crate::Error;

/// A limit's stored value when there is none.
const UNLIMITED: u64 = u64::MAX;

/// The shared state of one circuit breaker: its name, its thresholds and the counters of
/// everything that passes through it (see the [module docs](super)).
///
/// Every [`Breaker`](super::Breaker) service built from one `Arc<CircuitBreaker>`
/// counts against the same thresholds, so a gateway keeps one per guarded backendRef
/// across reloads and changes its thresholds in place with
/// [`set_config`](Self::set_config). Counters are atomics; a request that passes takes
/// no lock. The queue of pending requests is behind a mutex that is held only to push,
/// pop or hand over a slot, and only while requests are waiting.
pub struct CircuitBreaker {
    name: Arc<str>,
    header: HeaderValue,
    limits: Limits,
    /// Parallel-request slots held.
    in_flight: AtomicU64,
    /// Retry slots held.
    retries: AtomicU64,
    /// Requests waiting for a slot (live waiters).
    pending: AtomicU64,
    /// Entries in `queue`, abandoned ones included: written under the lock, read without
    /// it to learn whether a released slot must be handed over.
    queued: AtomicUsize,
    queue: parking_lot::Mutex<VecDeque<oneshot::Sender<Slot>>>,
    rejected: [AtomicU64; 4],
}

/// The thresholds, `UNLIMITED` for none (the pending limit's "none" is 0: no queue).
struct Limits {
    parallel: AtomicU64,
    pending: AtomicU64,
    retries: AtomicU64,
    max_connections: AtomicU64,
    max_requests_per_connection: AtomicU64,
}

fn stored(limit: Option<u32>) -> u64 {
    limit.map_or(UNLIMITED, u64::from)
}

fn loaded(value: u64) -> Option<u32> {
    u32::try_from(value).ok()
}

/// A snapshot of a breaker's counters, for metrics and admin views.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// Requests holding a parallel-request slot: from the call until the response body
    /// ends (or the response or future is dropped).
    pub in_flight: u64,
    /// Requests waiting for a parallel-request slot.
    pub pending: u64,
    /// Retries (attempts above the first) in flight.
    pub retries_in_flight: u64,
    /// Requests refused because `max_parallel_requests` was reached (and no queue
    /// was configured).
    pub rejected_parallel: u64,
    /// Requests refused because the pending queue was full.
    pub rejected_pending: u64,
    /// Retries refused because `max_parallel_retries` was reached.
    pub rejected_retries: u64,
}

impl CircuitBreaker {
    /// A breaker called `name` (it appears in the `x-gatekit-breaker` header of refused
    /// requests and should say which route, rule and backendRef it guards) with the
    /// thresholds of `config`.
    pub fn new(name: impl Into<Arc<str>>, config: CircuitBreakerConfig) -> Self {
        let name = name.into();
        Self {
            header: header_value(&name),
            name,
            limits: Limits {
                parallel: AtomicU64::new(stored(config.max_parallel_requests)),
                pending: AtomicU64::new(stored(config.max_pending_requests)),
                retries: AtomicU64::new(stored(config.max_parallel_retries)),
                max_connections: AtomicU64::new(stored(config.max_connections)),
                max_requests_per_connection: AtomicU64::new(stored(
                    config.max_requests_per_connection,
                )),
            },
            in_flight: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            queue: parking_lot::Mutex::new(VecDeque::new()),
            rejected: Default::default(),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The thresholds in force. The connection thresholds (`max_connections`,
    /// `max_requests_per_connection`) are only carried here: the upstream client
    /// enforces them, see [`PoolLimits::from_config`](crate::client::PoolLimits::from_config).
    pub fn config(&self) -> CircuitBreakerConfig {
        let l = &self.limits;
        CircuitBreakerConfig {
            max_parallel_requests: loaded(l.parallel.load(Ordering::Relaxed)),
            max_pending_requests: loaded(l.pending.load(Ordering::Relaxed)),
            max_parallel_retries: loaded(l.retries.load(Ordering::Relaxed)),
            max_connections: loaded(l.max_connections.load(Ordering::Relaxed)),
            max_requests_per_connection: loaded(
                l.max_requests_per_connection.load(Ordering::Relaxed),
            ),
        }
    }

    /// Changes the thresholds in place (a reload). Requests in flight and waiting keep
    /// their places: a lower limit refuses new requests until enough have finished; a
    /// higher one lets waiting requests through at once. A connection cap changes with
    /// [`ConnectionCap::set_max`](crate::client::ConnectionCap::set_max).
    pub fn set_config(self: &Arc<Self>, config: CircuitBreakerConfig) {
        let l = &self.limits;
        l.parallel
            .store(stored(config.max_parallel_requests), Ordering::Relaxed);
        l.pending
            .store(stored(config.max_pending_requests), Ordering::Relaxed);
        l.retries
            .store(stored(config.max_parallel_retries), Ordering::Relaxed);
        l.max_connections
            .store(stored(config.max_connections), Ordering::Relaxed);
        l.max_requests_per_connection.store(
            stored(config.max_requests_per_connection),
            Ordering::Relaxed,
        );
        self.hand_over();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BreakerStats {
        BreakerStats {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            retries_in_flight: self.retries.load(Ordering::Relaxed),
            rejected_parallel: self.rejected(Threshold::MaxParallelRequests),
            rejected_pending: self.rejected(Threshold::MaxPendingRequests),
            rejected_retries: self.rejected(Threshold::MaxParallelRetries),
        }
    }

    /// How many requests `threshold` has refused so far. Always 0 for
    /// [`Threshold::MaxConnections`], which the upstream client's
    /// [`ConnectionCap`](crate::client::ConnectionCap) counts.
    pub fn rejected(&self, threshold: Threshold) -> u64 {
        self.rejected[index(threshold)].load(Ordering::Relaxed)
    }

    /// Whether some request threshold is at its limit now, so that the next request (or
    /// retry) would wait or be refused: Envoy's `rq_open`, `rq_pending_open` and
    /// `rq_retry_open` gauges, or-ed.
    pub fn is_open(&self) -> bool {
        let l = &self.limits;
        let parallel = l.parallel.load(Ordering::Relaxed);
        let pending = l.pending.load(Ordering::Relaxed);
        let retries = l.retries.load(Ordering::Relaxed);
        (parallel != UNLIMITED && self.in_flight.load(Ordering::Relaxed) >= parallel)
            || (pending != UNLIMITED
                && pending > 0
                && self.pending.load(Ordering::Relaxed) >= pending)
            || (retries != UNLIMITED && self.retries.load(Ordering::Relaxed) >= retries)
    }

    /// Counts a refusal by `threshold` and builds its error.
    pub(crate) fn reject(&self, threshold: Threshold) -> Error {
        self.rejected[index(threshold)].fetch_add(1, Ordering::Relaxed);
        open_error(&self.header, threshold)
    }

    /// Takes a retry slot, if `max_parallel_retries` allows one more.
    pub(crate) fn try_retry(self: &Arc<Self>) -> Result<RetrySlot, Threshold> {
        let max = self.limits.retries.load(Ordering::Relaxed);
        if take(&self.retries, max) {
            Ok(RetrySlot {
                breaker: self.clone(),
            })
        } else {
            Err(Threshold::MaxParallelRetries)
        }
    }

    /// Takes a parallel-request slot now, or a place in the queue, or says which
    /// threshold refuses the request. Never waits.
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Acquired, Threshold> {
        let max = self.limits.parallel.load(Ordering::Relaxed);
        // SeqCst here and in `release`: with the slot count, these make a Dekker pair
        // (see `release`). Nobody queued: a free slot is ours, no lock.
        if self.queued.load(Ordering::SeqCst) == 0 && take(&self.in_flight, max) {
            return Ok(Acquired::Now(Slot::new(self)));
        }
        let max_pending = self.limits.pending.load(Ordering::Relaxed);
        if max == 0 {
            // No slot will ever free: waiting would be pointless.
            return Err(Threshold::MaxParallelRequests);
        }
        if max_pending == UNLIMITED || max_pending == 0 {
            // No queue: fail fast (or, if waiters are left from a configuration that
            // had a queue, take a slot that is free without queueing behind them).
            return match take(&self.in_flight, max) {
                true => Ok(Acquired::Now(Slot::new(self))),
                false => Err(Threshold::MaxParallelRequests),
            };
        }
        let mut queue = self.queue.lock();
        if queue.is_empty() && take(&self.in_flight, max) {
            return Ok(Acquired::Now(Slot::new(self)));
        }
        if self.pending.load(Ordering::Relaxed) >= max_pending {
            return Err(Threshold::MaxPendingRequests);
        }
        // Counted under the lock, so the check above and this increment are one step
        // for every other request that may queue; waiters leaving only lower it.
        self.pending.fetch_add(1, Ordering::Relaxed);
        if queue.len() >= 2 * queue_room(self.pending.load(Ordering::Relaxed)) {
            // Abandoned entries (their requests were dropped) pile up only when waiters
            // leave faster than slots free: sweep them, amortised over the pushes.
            queue.retain(|waiter| !waiter.is_closed());
        }
        let (tx, rx) = oneshot::channel();
        queue.push_back(tx);
        self.queued.store(queue.len(), Ordering::SeqCst);
        // Then serve the queue: a slot freed after the failed `take` above, by a release
        // that loaded `queued` before this store, would otherwise wait for the next one.
        self.grant(&mut queue);
        Ok(Acquired::Queued(Waiter {
            rx,
            breaker: self.clone(),
        }))
    }

    /// Gives a slot back and hands it to the first waiter, if any.
    fn release(self: &Arc<Self>) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        // A request that queues stores `queued` and then tries to take a slot, both
        // SeqCst; this side frees a slot and then loads `queued`, both SeqCst. So either
        // that request sees the freed slot, or this load sees it queued and the slot is
        // handed over.
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.hand_over();
        }
    }

    fn hand_over(self: &Arc<Self>) {
        let mut queue = self.queue.lock();
        self.grant(&mut queue);
    }

    /// Hands free slots to waiters in queue order, skipping abandoned entries. Called
    /// with the queue locked.
    fn grant(self: &Arc<Self>, queue: &mut VecDeque<oneshot::Sender<Slot>>) {
        let max = self.limits.parallel.load(Ordering::Relaxed);
        let mut spare: Option<Slot> = None;
        while !queue.is_empty() {
            let slot = match spare.take() {
                Some(slot) => slot,
                None if take(&self.in_flight, max) => Slot::new(self),
                None => break,
            };
            let Some(waiter) = queue.pop_front() else {
                spare = Some(slot);
                break;
            };
            // Fails only when the waiter's request was dropped: the next one gets it.
            if let Err(slot) = waiter.send(slot) {
                spare = Some(slot);
            }
        }
        self.queued.store(queue.len(), Ordering::SeqCst);
        if let Some(slot) = spare {
            // Nobody left to take it. Given back without `release`, whose hand-over
            // would take the lock we hold; the queue is empty, so there is nobody to
            // hand it to, and a request queueing after us finds the slot free.
            slot.disarm();
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The queue's nominal size for `pending` live waiters (at least a few entries).
fn queue_room(pending: u64) -> usize {
    usize::try_from(pending).unwrap_or(usize::MAX / 2).max(8)
}

fn index(threshold: Threshold) -> usize {
    match threshold {
        Threshold::MaxConnections => 0,
        Threshold::MaxPendingRequests => 1,
        Threshold::MaxParallelRequests => 2,
        Threshold::MaxParallelRetries => 3,
    }
}

/// Takes one unit of `counter` if it stays within `max`.
fn take(counter: &AtomicU64, max: u64) -> bool {
    if max == UNLIMITED {
        // Counted for the statistics only.
        counter.fetch_add(1, Ordering::SeqCst);
        return true;
    }
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("config", &self.config())
            .field("stats", &self.stats())
            .finish()
    }
}

// === slots ===

/// What [`CircuitBreaker::acquire`] gave.
pub(crate) enum Acquired {
    /// A slot, now.
    Now(Slot),
    /// A place in the queue.
    Queued(Waiter),
}

/// One parallel-request slot, given back when dropped.
pub(crate) struct Slot {
    breaker: Option<Arc<CircuitBreaker>>,
}

impl Slot {
    fn new(breaker: &Arc<CircuitBreaker>) -> Self {
        Self {
            breaker: Some(breaker.clone()),
        }
    }

    /// Forgets the breaker without giving the slot back (the caller does).
    fn disarm(mut self) {
        self.breaker = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            breaker.release();
        }
    }
}

/// One retry slot, given back when dropped.
pub(crate) struct RetrySlot {
    breaker: Arc<CircuitBreaker>,
}

impl Drop for RetrySlot {
    fn drop(&mut self) {
        self.breaker.retries.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The slots a request holds until its response body ends.
pub(crate) struct Permit {
    _slot: Slot,
    _retry: Option<RetrySlot>,
}

impl Permit {
    pub(crate) fn new(slot: Slot, retry: Option<RetrySlot>) -> Self {
        Self {
            _slot: slot,
            _retry: retry,
        }
    }
}

/// A request's place in the queue: resolves to its slot. Dropping it leaves the queue
/// (a slot already handed to it goes to the next waiter).
pub(crate) struct Waiter {
    rx: oneshot::Receiver<Slot>,
    breaker: Arc<CircuitBreaker>,
}

impl Future for Waiter {
    type Output = Result<Slot, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(slot)) => Poll::Ready(Ok(slot)),
            // The queue dropped the entry without a slot: only possible if the breaker
            // itself were gone, which this waiter keeps alive. Answered, not panicked.
            Poll::Ready(Err(_)) => {
                Poll::Ready(Err(self.breaker.reject(Threshold::MaxPendingRequests)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // A slot already sent to this waiter is dropped with the receiver (after this),
        // and `Slot`'s drop hands it to the next waiter.
        self.breaker.pending.fetch_sub(1, Ordering::Relaxed);
    }
}
