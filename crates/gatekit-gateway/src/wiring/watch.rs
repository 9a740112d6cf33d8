//! Watching the resource directories.
//!
//! One `notify` [`RecommendedWatcher`] (inotify on Linux, FSEvents/kqueue elsewhere)
//! watches every directory recursively. Each event other than a read access (reading
//! files during a reload must not trigger the next one) adds its paths to the pending
//! change and signals the reload loop through a channel of capacity one, so a burst of
//! events costs one pending reload. [`DirWatcher::changed`] hands over the paths named
//! since the last call ([`Changed::Paths`]: created, written, removed, renamed from or
//! to), or [`Changed::Rescan`] when the events cannot say (notify's `need_rescan`, a
//! queue overflow, a watch error, a directory created or removed, an event of another
//! kind): then the loader reads everything. The loader decides what a path means
//! (a hidden or non-manifest name is usually ignored; see `cache.rs`).
//!
//! The reload loop debounces: after the first event it waits until the directories have
//! been quiet for a while. How long depends on what the last event says about the
//! writer:
//!
//! - a file renamed onto a manifest name (`x.yaml`, `.yml`, `.json`, not hidden): an
//!   atomic replace (a `write-then-rename` tool, kubectl-style) is complete: [`RENAMED`]
//!   (1 ms, to take the rename's paired events along); the same for a manifest removed
//!   (a tool that replaces a file by removing and creating it does both within
//!   microseconds, and the creation's events then set the wait);
//! - the last event otherwise *completes* a write — a file closed after writing (inotify
//!   `IN_CLOSE_WRITE`), another rename (a ConfigMap `..data` swap; vim moving the file
//!   it saves away to `x.yaml~` before writing it anew), another removal: [`SETTLE`] (3 ms)
//!   of quiet, so a finished edit is served within a few milliseconds and vim's new file
//!   (created right after the move) is read once, after it exists again;
//! - otherwise (a file created or being written, still open): [`DEBOUNCE`] (20 ms) of
//!   quiet, so a half-written file is not read. A hidden file (`.name`) closed after
//!   writing counts as a write in progress too: the loader never reads hidden files,
//!   and an editor or `write-then-rename` writer closes its temporary file just before
//!   the rename that completes the edit.
//!
//! Either way a stream of events delays a reload by at most [`DEBOUNCE_MAX`]. Reading a
//! half-written file anyway (a writer slower than that) is safe: an unparsable file
//! refuses the snapshot, and the writer's next event reloads again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after an event that leaves a write in progress.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(20);
/// Quiet time after an event that completes a write (close after writing, rename,
/// removal).
pub(crate) const SETTLE: Duration = Duration::from_millis(3);
/// Quiet time after a file was renamed onto a manifest name (an atomic replace), or a
/// manifest removed.
pub(crate) const RENAMED: Duration = Duration::from_millis(1);
/// Longest a stream of events can delay a reload.
pub(crate) const DEBOUNCE_MAX: Duration = Duration::from_millis(60);

/// What changed in the watched directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Changed {
    /// These paths (files or directories) were created, written, removed or renamed.
    Paths(BTreeSet<PathBuf>),
    /// Unknown: read everything.
    Rescan,
}

/// The events since the last [`DirWatcher::changed`].
#[derive(Default)]
struct Pending {
    paths: BTreeSet<PathBuf>,
    rescan: bool,
}

/// How much quiet the last event asks for (see the module docs).
const IN_PROGRESS: u8 = 0;
const COMPLETED: u8 = 1;
const RENAMED_ONTO: u8 = 2;

/// A running watcher; dropping it stops watching.
pub(crate) struct DirWatcher {
    _watcher: RecommendedWatcher,
    events: mpsc::Receiver<()>,
    pending: Arc<Mutex<Pending>>,
    /// What the last event says about the writer.
    last: Arc<AtomicU8>,
    debounce: Duration,
    /// The deadline of a change being debounced by a `changed` call that was dropped.
    deadline: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher").finish_non_exhaustive()
    }
}

/// Whether the loader could read `path` (a manifest extension, not hidden).
fn manifest_name(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

impl DirWatcher {
    /// Watches `paths` (directories recursively; a file path on its own).
    pub(crate) fn new(paths: &[PathBuf]) -> notify::Result<Self> {
        let (tx, events) = mpsc::channel(1);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let last = Arc::new(AtomicU8::new(IN_PROGRESS));
        let (into, settled) = (pending.clone(), last.clone());
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let mut pending = into
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let state = match event {
                    Ok(event) => {
                        let hidden = !event.paths.is_empty()
                            && event.paths.iter().all(|p| {
                                p.file_name()
                                    .and_then(|n| n.to_str())
                                    .is_some_and(|n| n.starts_with('.'))
                            });
                        let state = match event.kind {
                            EventKind::Access(AccessKind::Close(AccessMode::Write)) if !hidden => {
                                COMPLETED
                            }
                            EventKind::Access(AccessKind::Close(AccessMode::Write)) => IN_PROGRESS,
                            EventKind::Modify(ModifyKind::Name(
                                RenameMode::To | RenameMode::Both,
                            )) if event.paths.last().is_some_and(|p| manifest_name(p)) => {
                                RENAMED_ONTO
                            }
                            // A manifest removed is a finished change too (no tool
                            // removes a file halfway).
                            EventKind::Remove(RemoveKind::File)
                                if event.paths.iter().all(|p| manifest_name(p)) =>
                            {
                                RENAMED_ONTO
                            }
                            EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => {
                                COMPLETED
                            }
                            EventKind::Access(_) => return,
                            _ => IN_PROGRESS,
                        };
                        let unknown = matches!(
                            event.kind,
                            EventKind::Create(CreateKind::Folder)
                                | EventKind::Remove(RemoveKind::Folder)
                                | EventKind::Other
                        ) || event.need_rescan()
                            || event.paths.is_empty();
                        if unknown {
                            pending.rescan = true;
                        } else {
                            pending.paths.extend(event.paths);
                        }
                        state
                    }
                    Err(error) => {
                        tracing::warn!(%error, "file watch error; reading every file");
                        pending.rescan = true;
                        IN_PROGRESS
                    }
                };
                drop(pending);
                settled.store(state, Ordering::Release);
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
            pending,
            last,
            debounce: DEBOUNCE,
            deadline: None,
        })
    }

    /// Sets the quiet time after an event that leaves a write in progress (see
    /// [`DEBOUNCE`]; [`SETTLE`] and [`RENAMED`] apply after a completed write unless
    /// this is shorter).
    pub(crate) fn set_debounce(&mut self, quiet: Duration) {
        self.debounce = quiet;
    }

    /// Waits for a change, then for the debounce to settle, and says what changed.
    /// `None` if the watcher stopped.
    ///
    /// Cancel-safe: a change seen by a call that is dropped while debouncing is kept
    /// (with its deadline) and reported by the next call.
    pub(crate) async fn changed(&mut self) -> Option<Changed> {
        let deadline = match self.deadline {
            Some(deadline) => deadline,
            None => {
                self.events.recv().await?;
                let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX.max(self.debounce);
                self.deadline = Some(deadline);
                deadline
            }
        };
        let settled = self.settle(deadline).await;
        self.deadline = None;
        settled?;
        let pending = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Some(if pending.rescan {
            Changed::Rescan
        } else {
            Changed::Paths(pending.paths)
        })
    }

    async fn settle(&mut self, deadline: tokio::time::Instant) -> Option<()> {
        if self.debounce.is_zero() {
            return Some(());
        }
        loop {
            let wait = match self.last.load(Ordering::Acquire) {
                RENAMED_ONTO => RENAMED.min(self.debounce),
                COMPLETED => SETTLE.min(self.debounce),
                _ => self.debounce,
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
        assert!(watcher.deadline.is_some(), "the change was received");
        // No further event: only the kept change can end this call.
        let second = tokio::time::timeout(Duration::from_secs(2), watcher.changed()).await;
        let expected: BTreeSet<PathBuf> = [dir.path().join("a.yaml")].into();
        assert_eq!(second, Ok(Some(Changed::Paths(expected))));
        assert!(watcher.deadline.is_none());
        drop(file);
    }
}

#[cfg(test)]
mod named {
    use super::*;

    async fn next(watcher: &mut DirWatcher) -> Changed {
        tokio::time::timeout(Duration::from_secs(5), watcher.changed())
            .await
            .expect("an event")
            .expect("watching")
    }

    /// An atomic write (a temporary file renamed over the manifest) names both paths.
    #[tokio::test]
    async fn a_rename_over_names_the_file_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut watcher = DirWatcher::new(&[dir.path().to_path_buf()]).unwrap();
        let tmp = dir.path().join(".routes.yaml.tmp");
        std::fs::write(&tmp, "a: 2\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let Changed::Paths(paths) = next(&mut watcher).await else {
            panic!("a rescan")
        };
        assert!(paths.contains(&file), "{paths:?}");
        assert!(paths.contains(&tmp), "{paths:?}");
    }

    /// vim moves the file it saves away, then writes it anew: the change is reported
    /// once the file exists again, so the loader never sees it missing.
    #[tokio::test]
    async fn a_vim_style_save_is_reported_after_the_file_exists_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.yaml");
        let backup = dir.path().join("routes.yaml~");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut watcher = DirWatcher::new(&[dir.path().to_path_buf()]).unwrap();
        for round in 0..20 {
            std::fs::rename(&file, &backup).unwrap();
            // The move away is a completed write (3 ms of quiet), not a file renamed
            // into place (1 ms): vim's new file comes right after it.
            loop {
                watcher.events.recv().await.unwrap();
                let seen = watcher.pending.lock().unwrap().paths.contains(&backup);
                if seen {
                    break;
                }
            }
            assert_eq!(watcher.last.load(Ordering::Acquire), COMPLETED);
            std::fs::write(&file, format!("a: {round}\n")).unwrap();
            std::fs::remove_file(&backup).unwrap();
            let Changed::Paths(paths) = next(&mut watcher).await else {
                panic!("a rescan")
            };
            assert!(
                file.is_file(),
                "round {round}: reported while the file was missing"
            );
            assert!(paths.contains(&file), "{paths:?}");
            assert!(paths.contains(&backup), "{paths:?}");
        }
    }
}
