//! Watching the resource directories.
//!
//! One `notify` [`RecommendedWatcher`] (inotify on Linux, FSEvents/kqueue elsewhere)
//! watches every directory recursively. Any event other than an access (reading files
//! during a reload must not trigger the next one) marks the configuration dirty through
//! a channel of capacity one, so a burst of events costs one pending reload. The reload
//! loop debounces: after the first event it waits until no event came for
//! [`DEBOUNCE`] (at most [`DEBOUNCE_MAX`] in all), then reloads everything.
//!
//! Reloading the whole set on any change, rather than the changed file, is what makes
//! ConfigMap-style mounts work: there the visible files are symlinks through `..data`,
//! and an update is an atomic rename of `..data` to a new timestamped directory — an
//! event on a name the loader never reads, but the files it reads changed.

use std::path::PathBuf;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last event before reloading.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(20);
/// Longest a stream of events can delay a reload.
pub(crate) const DEBOUNCE_MAX: Duration = Duration::from_millis(60);

/// A running watcher; dropping it stops watching.
pub(crate) struct DirWatcher {
    _watcher: RecommendedWatcher,
    events: mpsc::Receiver<()>,
    debounce: Duration,
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
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                match event {
                    Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
                    Ok(_) => {
                        // Full means a reload is already pending; it will see this change.
                        let _ = tx.try_send(());
                    }
                    Err(error) => tracing::warn!(%error, "file watch error"),
                }
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
            debounce: DEBOUNCE,
        })
    }

    /// Sets the quiet time (see [`DEBOUNCE`]).
    pub(crate) fn set_debounce(&mut self, quiet: Duration) {
        self.debounce = quiet;
    }

    /// Waits for a change, then for the debounce to settle. `None` if the watcher stopped.
    pub(crate) async fn changed(&mut self) -> Option<()> {
        self.events.recv().await?;
        if self.debounce.is_zero() {
            return Some(());
        }
        let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX.max(self.debounce);
        loop {
            let quiet = tokio::time::Instant::now() + self.debounce;
            match tokio::time::timeout_at(quiet.min(deadline), self.events.recv()).await {
                Ok(Some(())) if tokio::time::Instant::now() < deadline => {}
                Ok(None) => return None,
                _ => return Some(()),
            }
        }
    }
}
