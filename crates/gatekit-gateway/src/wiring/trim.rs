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
