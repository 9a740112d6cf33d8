//! A coarse timer for hyper's HTTP/1 header-read timeout (slowloris protection).
//!
//! hyper arms the header-read timeout each time a keep-alive connection starts waiting
//! for its next request head, and disarms it as soon as the head is parsed. With
//! hyper-util's `TokioTimer` that is, per request, a boxed tokio `Sleep` (a timer-wheel
//! entry registered when first polled and removed again a few microseconds later):
//! about 3% of a proxied request's CPU time in `docs/benchmarks.md`'s measurements, for
//! a deadline of seconds that almost never fires.
//!
//! This timer keeps the deadline but not its precision. A sleep registers its waker in
//! a per-thread table (a slab under an uncontended mutex: one lock to register, one to
//! remove); one ticker task per table wakes the entries whose deadline has passed every
//! [`TICK`], and stops when the table is empty. So a timeout fires up to [`TICK`] late,
//! which does not matter for a slowloris deadline of seconds; the per-request cost is a
//! small allocation (hyper's `Timer` API boxes every sleep) and two lock operations, no
//! timer-wheel work. Time is tokio's, so tests can pause it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::rt::{Sleep, Timer};
use tokio::time::Instant;

/// How often expired sleeps are woken: a timeout fires at most this late.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// hyper's `Timer` trait speaks `std::time::Instant`; everything here converts to and
/// from tokio's (pausable) clock at that boundary.
#[allow(clippy::disallowed_types)]
type StdInstant = std::time::Instant;

/// A `hyper::rt::Timer` whose sleeps fire up to [`TICK`] late (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CoarseTimer;

impl Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(CoarseSleep {
            deadline: Instant::now() + duration,
            slot: None,
        })
    }

    fn sleep_until(&self, deadline: StdInstant) -> Pin<Box<dyn Sleep>> {
        Box::pin(CoarseSleep {
            deadline: Instant::from_std(deadline),
            slot: None,
        })
    }

    fn now(&self) -> StdInstant {
        Instant::now().into_std()
    }
}

thread_local! {
    static TABLE: Arc<Table> = Arc::new(Table::default());
}

#[derive(Default)]
struct Table {
    slots: parking_lot::Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    live: usize,
    ticking: bool,
}

struct Entry {
    deadline: Instant,
    waker: Option<Waker>,
    fired: bool,
}

/// A sleep of [`CoarseTimer`]: registered in the current thread's table when first
/// polled, removed when dropped.
struct CoarseSleep {
    deadline: Instant,
    slot: Option<(Arc<Table>, usize)>,
}

impl fmt::Debug for CoarseSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoarseSleep")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some((table, index)) = &this.slot {
            let mut slots = table.slots.lock();
            let Some(entry) = slots.entries.get_mut(*index).and_then(Option::as_mut) else {
                return Poll::Ready(());
            };
            if entry.fired {
                return Poll::Ready(());
            }
            match &entry.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => entry.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let table = TABLE.with(Arc::clone);
        let mut slots = table.slots.lock();
        let entry = Some(Entry {
            deadline: this.deadline,
            waker: Some(cx.waker().clone()),
            fired: false,
        });
        let index = match slots.free.pop() {
            Some(index) => {
                slots.entries[index] = entry;
                index
            }
            None => {
                slots.entries.push(entry);
                slots.entries.len() - 1
            }
        };
        slots.live += 1;
        if !slots.ticking
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            slots.ticking = true;
            runtime.spawn(tick(Ticking(table.clone())));
        }
        drop(slots);
        this.slot = Some((table, index));
        Poll::Pending
    }
}

impl Sleep for CoarseSleep {}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        if let Some((table, index)) = self.slot.take() {
            let mut slots = table.slots.lock();
            if let Some(slot) = slots.entries.get_mut(index)
                && slot.take().is_some()
            {
                slots.free.push(index);
                slots.live -= 1;
            }
        }
    }
}

/// Marks its table as not ticking when the ticker ends, also when its runtime drops it
/// (a later sleep on this thread then starts a new ticker).
struct Ticking(Arc<Table>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.slots.lock().ticking = false;
    }
}

/// Wakes expired sleeps every [`TICK`] while the table has any.
async fn tick(ticking: Ticking) {
    let mut expired = Vec::new();
    loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        {
            let mut slots = ticking.0.slots.lock();
            if slots.live == 0 {
                return;
            }
            for entry in slots.entries.iter_mut().flatten() {
                if !entry.fired && entry.deadline <= now {
                    entry.fired = true;
                    expired.extend(entry.waker.take());
                }
            }
        }
        // Woken outside the lock: a woken task may poll (and lock) at once.
        for waker in expired.drain(..) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sleeps_fire_after_their_deadline_within_a_tick() {
        let timer = CoarseTimer;
        let start = Instant::now();
        timer.sleep(Duration::from_secs(3)).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(3), "{waited:?}");
        assert!(waited <= Duration::from_secs(3) + TICK, "{waited:?}");

        // Several at once, one dropped before its deadline: the others still fire.
        let early = timer.sleep_until((Instant::now() + Duration::from_secs(1)).into_std());
        let dropped = timer.sleep(Duration::from_millis(500));
        let mut dropped = dropped;
        assert!(poll_once(&mut dropped).await.is_pending());
        drop(dropped);
        early.await;
        assert_eq!(TABLE.with(|t| t.slots.lock().live), 0);
    }

    async fn poll_once(sleep: &mut Pin<Box<dyn Sleep>>) -> Poll<()> {
        std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await
    }

    #[test]
    fn a_new_runtime_on_the_same_thread_gets_a_new_ticker() {
        let mut kept = Vec::new();
        for _ in 0..2 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let start = Instant::now();
                CoarseTimer.sleep(Duration::from_secs(1)).await;
                assert!(start.elapsed() >= Duration::from_secs(1));
            });
            // Leave a sleep registered when the runtime (and its ticker) goes away.
            let mut pending = CoarseTimer.sleep(Duration::from_secs(60));
            rt.block_on(async { assert!(poll_once(&mut pending).await.is_pending()) });
            kept.push(pending);
        }
        drop(kept);
        assert_eq!(TABLE.with(|t| t.slots.lock().live), 0);
    }
}
