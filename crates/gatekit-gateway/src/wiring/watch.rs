//! Watching the resource directories.
//!
//! One `notify` [`RecommendedWatcher`] (inotify on Linux, FSEvents/kqueue elsewhere)
//! watches every directory recursively. Any event other than a read access (reading
//! files during a reload must not trigger the next one) marks the configuration dirty
//! through a channel of capacity one, so a burst of events costs one pending reload.
//!
//! The reload loop debounces: after the first event it waits until the directories have
//! been quiet for a while, then reloads everything. How long depends on what the last
//! event says about the writer:
//!
//! - the last event *completes* a write — a file closed after writing (inotify
//!   `IN_CLOSE_WRITE`), a rename (an atomic replace, a ConfigMap `..data` swap), a
//!   removal: [`SETTLE`] (3 ms) of quiet suffices, so a finished edit is served within
//!   a few milliseconds;
//! - otherwise (a file created or being written, still open): [`DEBOUNCE`] (20 ms) of
//!   quiet, so a half-written file is not read. A hidden file (`.name`) closed after
//!   writing counts as a write in progress too: the loader never reads hidden files,
//!   and an editor or `write-then-rename` writer closes its temporary file just before
//!   the rename that completes the edit; reloading 3 ms after that close would read the
//!   directory before the rename.
//!
//! Either way a stream of events delays a reload by at most [`DEBOUNCE_MAX`]. Reading a
//! half-written file anyway (a writer slower than that) is safe: an unparsable file
//! refuses the snapshot, and the writer's next event reloads again.
//!
//! Reloading the whole set on any change, rather than the changed file, is what makes
//! ConfigMap-style mounts work: there the visible files are symlinks through `..data`,
//! and an update is an atomic rename of `..data` to a new timestamped directory — an
//! event on a name the loader never reads, but the files it reads changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after an event that leaves a write in progress.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(20);
/// Quiet time after an event that completes a write (close after writing, rename,
/// removal).
pub(crate) const SETTLE: Duration = Duration::from_millis(3);
/// Longest a stream of events can delay a reload.
pub(crate) const DEBOUNCE_MAX: Duration = Duration::from_millis(60);

/// A running watcher; dropping it stops watching.
pub(crate) struct DirWatcher {
    _watcher: RecommendedWatcher,
    events: mpsc::Receiver<()>,
    /// Whether the last event completed a write.
    settled: Arc<AtomicBool>,
    debounce: Duration,
    /// The deadline of a change being debounced by a `changed` call that was dropped.
    pending: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher").finish_non_exhaustive()
    }
}

impl DirWatcher {
    /// Watches `paths` (directories recursively; a file path on its own).
    pub(crate) fn new(paths: &[PathBuf]) -> notify::Result<Self> {
        let (tx, events) = mpsc::channel(1);
        let settled = Arc::new(AtomicBool::new(false));
        let last = settled.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let (kind, hidden) = match event {
                    Ok(event) => {
                        let hidden = !event.paths.is_empty()
                            && event.paths.iter().all(|p| {
                                p.file_name()
                                    .and_then(|n| n.to_str())
                                    .is_some_and(|n| n.starts_with('.'))
                            });
                        (event.kind, hidden)
                    }
                    Err(error) => {
                        tracing::warn!(%error, "file watch error");
                        return;
                    }
                };
                let completes = match kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => !hidden,
                    EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => true,
                    EventKind::Access(_) => return,
                    _ => false,
                };
                last.store(completes, Ordering::Release);
                // Full means a reload is already pending; it will see this change.
                let _ = tx.try_send(());
            })?;
        for path in paths {
            let mode = if path.is_dir() {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            watcher.watch(path, mode)?;
        }
        Ok(Self {
            _watcher: watcher,
            events,
            settled,
            debounce: DEBOUNCE,
            pending: None,
        })
    }

    /// Sets the quiet time after an event that leaves a write in progress (see
    /// [`DEBOUNCE`]; [`SETTLE`] applies after a completed write unless this is shorter).
    pub(crate) fn set_debounce(&mut self, quiet: Duration) {
        self.debounce = quiet;
    }

    /// Waits for a change, then for the debounce to settle. `None` if the watcher stopped.
    ///
    /// Cancel-safe: a change seen by a call that is dropped while debouncing is kept
    /// (with its deadline) and reported by the next call.
    pub(crate) async fn changed(&mut self) -> Option<()> {
        let deadline = match self.pending {
            Some(deadline) => deadline,
            None => {
                self.events.recv().await?;
                let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX.max(self.debounce);
                self.pending = Some(deadline);
                deadline
            }
        };
        let changed = self.settle(deadline).await;
        self.pending = None;
        changed
    }

    async fn settle(&mut self, deadline: tokio::time::Instant) -> Option<()> {
        if self.debounce.is_zero() {
            return Some(());
        }
        loop {
            let wait = if self.settled.load(Ordering::Acquire) {
                SETTLE.min(self.debounce)
            } else {
                self.debounce
            };
            let quiet = tokio::time::Instant::now() + wait;
            match tokio::time::timeout_at(quiet.min(deadline), self.events.recv()).await {
                Ok(Some(())) if tokio::time::Instant::now() < deadline => {}
                Ok(None) => return None,
                _ => return Some(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serve loop drops `changed` whenever another branch wins (a finished
    /// `/config` render, a health change): a change it had already received must still
    /// be reported.
    #[tokio::test]
    async fn a_change_survives_a_dropped_call() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = DirWatcher::new(&[dir.path().to_path_buf()]).unwrap();
        watcher.set_debounce(Duration::from_millis(300));
        // Created and left open: a write in progress, so the full debounce applies.
        let file = std::fs::File::create(dir.path().join("a.yaml")).unwrap();
        let first = tokio::time::timeout(Duration::from_millis(100), watcher.changed()).await;
        assert!(first.is_err(), "still debouncing: {first:?}");
        assert!(watcher.pending.is_some(), "the change was received");
        // No further event: only the kept change can end this call.
        let second = tokio::time::timeout(Duration::from_secs(2), watcher.changed()).await;
        assert_eq!(second, Ok(Some(())));
        assert!(watcher.pending.is_none());
        drop(file);
    }
}
