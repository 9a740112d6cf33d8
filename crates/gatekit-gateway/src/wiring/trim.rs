//! Giving the heap a reload freed back to the operating system (glibc only).
//!
//! A reload allocates tens of megabytes that live only as long as the reload: for 5,000
//! routes, the parsed documents, the translation (about 7 MB), the cloned routes and the
//! `/config` text while it is built. glibc returns freed memory to the kernel only from
//! the top of each arena; everything freed below a chunk that is still in use stays
//! resident, and the reload's blocking threads get arenas of their own. Measured with
//! `gatekit run` and 5,000 routes (see `docs/benchmarks.md`), calling `malloc_trim(0)`
//! once the reload's garbage is freed brought RSS from 48 to 41 MB after the first load
//! and from 56 to 46 MB after a reload.
//!
//! `malloc_trim` walks every arena and `madvise`s their free pages away, taking each
//! arena's lock in turn; it is run on a blocking thread (the reload path and the
//! requests do not wait for it), once per reload. Its cost is a few milliseconds of one
//! core for a heap of this size, and the next allocations that need those pages fault
//! them in again.
//!
//! Removed routes that carried an upgrade leave state behind until the drain deadline:
//! a retirement task (their upgraded connections end then) and what it holds. Those
//! small allocations sit in the pages the routes' data freed, so the trim after the
//! reload cannot return them; [`release_free_memory_after`] trims once more when they
//! have ended. Routes without one leave no task (they are retired at once), which is
//! what made a mass deletion's trim work: 5,000 routes written into a running gateway,
//! then deleted (see `docs/benchmarks.md`), left 15.6 MB of anonymous memory one second
//! after the deletion with a task per route, 6.0 MB without.
//!
//! glibc's own tuning (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`,
//! `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`, read from the environment) was measured
//! against these figures too and moved none of them by more than a megabyte: nearly all
//! of the heap is the main arena, and what stays resident is pages that still hold a
//! live allocation. So the gateway sets none (`mallopt`); a deployment may still set
//! them in the environment.
//!
//! This is the crate's only `unsafe` (an FFI call): the workspace forbids `unsafe`, and
//! gatekit-gateway denies it instead, allowing it here alone. Other allocators and C
//! libraries (musl) have no such call and need none: this is then a no-op.

/// Asks the allocator to return free pages to the operating system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition; glibc documents it
    // as MT-Safe (it locks each arena while trimming it).
    let released = unsafe { libc::malloc_trim(0) } != 0;
    tracing::trace!(released, "malloc_trim");
}

/// Asks the allocator to return free pages to the operating system (nothing to do here).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}

/// [`release_free_memory`] on a blocking thread (not awaited).
pub(crate) fn release_free_memory_later() {
    drop(tokio::task::spawn_blocking(release_free_memory));
}

/// Runs `work` on a thread of its own that ends with it; `None` if `work` panicked.
///
/// A thread keeps chunks it freed in a cache of its own (glibc's tcache: up to seven
/// per size class) until it ends, and to the arena they are still in use: the pages
/// around them cannot be returned. A reload's work on a pooled blocking thread left that
/// thread's cache holding chunks all over the pages the old configuration had used
/// (2.3 MB of anonymous memory after 5,000 routes were deleted, measured with
/// glibc's tcache off; see `docs/benchmarks.md`). A thread that ends hands its cache
/// back, and the trim that follows can return those pages. A reload is rare; a thread
/// costs tens of microseconds. If no thread can be started, the blocking pool runs it.
pub(crate) async fn on_own_thread<T, F>(name: &str, work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    use std::sync::{Arc, Mutex, PoisonError};
    // A failed `spawn` drops its closure: `work` waits in a slot it can be taken back from.
    let slot = Arc::new(Mutex::new(Some(work)));
    let take = |slot: &Mutex<Option<F>>| slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let theirs = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Some(work) = take(&theirs) {
                let _ = tx.send(work());
            }
        });
    match spawned {
        Ok(_) => rx.await.ok(),
        Err(error) => {
            tracing::debug!(%error, "no thread of its own: the blocking pool runs it");
            let work = take(&slot)?;
            tokio::task::spawn_blocking(work).await.ok()
        }
    }
}

/// Drops `value` on a thread of its own (see [`on_own_thread`]), not awaited.
pub(crate) fn drop_on_own_thread<T: Send + 'static>(value: T) {
    drop(tokio::spawn(on_own_thread("gatekit-free", move || {
        drop(value)
    })));
}

/// Empties the calling thread's malloc cache into the arena, so that the trim that
/// follows can return the pages its chunks sit in (glibc only; elsewhere nothing).
///
/// glibc keeps up to seven freed chunks of each of 64 small sizes (up to 1,032 bytes) in
/// a cache per thread (tcache), and to the arena they are still in use. After a reload
/// has freed a configuration on this thread, those last chunks lie all over its pages:
/// up to 448 pages (1.8 MB) that `malloc_trim` cannot return. There is no call to empty
/// the cache; this takes every chunk it holds with allocations of each size (an empty
/// cache's sizes come from the arena) and frees them on a thread that ends, whose own
/// cache goes back to the arena when it does ([`drop_on_own_thread`]): a trim returns
/// their pages only after that, so the callers trim [`release_free_memory_soon`].
pub(crate) fn flush_thread_cache() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    // glibc's defaults (`glibc.malloc.tcache_count` 7, `tcache_max` 1,032 bytes): one
    // size class per 16 bytes of chunk, the largest request of class `c` 16·c + 24.
    const CLASSES: usize = 64;
    const PER_CLASS: usize = 7;
    let mut taken: Vec<Vec<u8>> = Vec::with_capacity(CLASSES * PER_CLASS);
    for class in 0..CLASSES {
        for _ in 0..PER_CLASS {
            taken.push(Vec::with_capacity(16 * class + 24));
        }
    }
    drop_on_own_thread(taken);
}

/// How many times the runtime's workers were asked to empty their malloc caches
/// ([`ask_workers_to_flush`]).
static FLUSH_ASKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// The [`FLUSH_ASKED`] count this thread last answered.
    static FLUSH_SEEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Asks every runtime worker to empty its malloc cache the next time it parks
/// ([`on_worker_park`]): a reload freed a configuration, and the workers' caches hold
/// chunks among its pages too (a request's last allocations, the old route table's
/// last references dropped by the requests that held them).
pub(crate) fn ask_workers_to_flush() {
    FLUSH_ASKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this thread has an [`ask_workers_to_flush`] to answer; answers it.
fn flush_asked() -> bool {
    FLUSH_SEEN.with(|seen| answer(&FLUSH_ASKED, seen))
}

/// Whether `asked` moved since `seen`, which it then catches up with.
fn answer(asked: &std::sync::atomic::AtomicU64, seen: &std::cell::Cell<u64>) -> bool {
    let now = asked.load(std::sync::atomic::Ordering::Relaxed);
    seen.replace(now) != now
}

/// A hook for `tokio::runtime::Builder::on_thread_park`, which the `gatekit` binary
/// installs: a worker going idle after a reload empties its malloc cache (glibc's
/// tcache; elsewhere nothing is done) and a trim follows, so that the pages its cached
/// chunks sat in go back to the kernel. Otherwise one atomic load and a thread-local
/// read.
///
/// Measured after 5,000 routes written into a running gateway and deleted, with the
/// reload thread's cache emptied as well (`docs/benchmarks.md`, "Issue 19 eighth
/// round"): 0.3 MB less anonymous memory (median of eight runs). A server built on the
/// crates without the hook keeps those pages until the workers' caches turn over.
pub fn on_worker_park() {
    if !flush_asked() || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    flush_thread_cache();
    release_free_memory_soon();
}

/// Whether a [`release_free_memory_soon`] is waiting to run.
static TRIM_PENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// [`release_free_memory_later`], [`TRIM_DELAY`] from now, once for a burst: the
/// reloads of a stream of changes share one trim.
pub(crate) fn release_free_memory_soon() {
    use std::sync::atomic::Ordering;
    if TRIM_PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    drop(tokio::spawn(async {
        tokio::time::sleep(TRIM_DELAY).await;
        TRIM_PENDING.store(false, Ordering::Release);
        release_free_memory_later();
    }));
}

/// How long after a reload that shrank the configuration its free pages are returned.
const TRIM_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// When the pending [`release_free_memory_after`] trim is due (`None`: none pending).
static LATE_TRIM: Deadline = Deadline::new();

/// [`release_free_memory_later`] once `delay` from now has passed, once for a burst:
/// each call moves the pending trim later (never earlier), so the reloads of a stream
/// of changes share one trim, after the last one's `delay`.
///
/// Reloads that retire routes call it with the drain deadline: the retired routes'
/// tasks and what they hold are freed then (see the module docs).
pub(crate) fn release_free_memory_after(delay: std::time::Duration) {
    let due = tokio::time::Instant::now() + delay + TRIM_DELAY;
    if !LATE_TRIM.push(due) {
        return;
    }
    drop(tokio::spawn(async {
        let mut now = tokio::time::Instant::now();
        while let Some(due) = LATE_TRIM.wait(now) {
            tokio::time::sleep_until(due).await;
            now = tokio::time::Instant::now();
        }
        release_free_memory_later();
    }));
}

/// A deadline that calls can only move later, with at most one waiter.
struct Deadline(std::sync::Mutex<Option<tokio::time::Instant>>);

impl Deadline {
    const fn new() -> Self {
        Self(std::sync::Mutex::new(None))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        // The guarded value is a plain `Option`: a panic elsewhere cannot leave it torn.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the deadline to `at` if that is later; `true` when no deadline was set
    /// (the caller starts the waiter).
    fn push(&self, at: tokio::time::Instant) -> bool {
        let mut due = self.lock();
        let first = due.is_none();
        if due.is_none_or(|d| d < at) {
            *due = Some(at);
        }
        first
    }

    /// For the waiter at `now`: the deadline to sleep until, or `None` once it has
    /// passed (the deadline is cleared; the next [`push`](Self::push) starts a waiter).
    fn wait(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        let mut due = self.lock();
        match *due {
            Some(d) if d > now => Some(d),
            _ => {
                *due = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{Deadline, answer, ask_workers_to_flush, flush_asked, on_own_thread};

    #[test]
    fn each_thread_answers_a_flush_request_once() {
        // A counter of its own: other tests of this process reload, and ask, meanwhile.
        let asked = AtomicU64::new(0);
        let seen = Cell::new(0);
        assert!(!answer(&asked, &seen), "nothing was asked");
        asked.fetch_add(1, Ordering::Relaxed);
        assert!(answer(&asked, &seen));
        assert!(!answer(&asked, &seen), "answered once");
        // Another thread has its own answer to give.
        let other = std::thread::scope(|s| {
            s.spawn(|| {
                let seen = Cell::new(0);
                (answer(&asked, &seen), answer(&asked, &seen))
            })
            .join()
            .unwrap()
        });
        assert_eq!(other, (true, false));
        // The process-wide request reaches this thread's answer.
        flush_asked();
        ask_workers_to_flush();
        assert!(flush_asked());
    }

    #[tokio::test]
    async fn work_runs_on_a_thread_of_its_own_that_ends_with_it() {
        let (name, id) = on_own_thread("gatekit-test", || {
            let me = std::thread::current();
            (me.name().map(str::to_owned), me.id())
        })
        .await
        .unwrap();
        assert_eq!(name.as_deref(), Some("gatekit-test"));
        assert_ne!(id, std::thread::current().id());
        // A second run gets another thread: the first one ended.
        let again = on_own_thread("gatekit-test", || std::thread::current().id()).await;
        assert!(again.is_some_and(|other| other != id));
        // A panic is `None`, not a panic of the caller.
        let panicked = on_own_thread("gatekit-test", || -> u8 { panic!("in the work") }).await;
        assert_eq!(panicked, None);
    }

    #[test]
    fn a_deadline_moves_only_later_and_has_one_waiter() {
        let deadline = Deadline::new();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // The first push starts the waiter; later pushes only move the deadline.
        assert!(deadline.push(t0 + 10 * s));
        assert!(!deadline.push(t0 + 15 * s));
        assert!(
            !deadline.push(t0 + 12 * s),
            "an earlier push starts nothing"
        );
        // The waiter sleeps until the latest deadline, not an earlier one.
        assert_eq!(deadline.wait(t0 + 10 * s), Some(t0 + 15 * s));
        assert_eq!(deadline.wait(t0 + 14 * s), Some(t0 + 15 * s));
        // Due: cleared, and the next push starts a new waiter.
        assert_eq!(deadline.wait(t0 + 15 * s), None);
        assert!(deadline.push(t0 + 20 * s));
        assert_eq!(deadline.wait(t0 + 21 * s), None);
    }
}
