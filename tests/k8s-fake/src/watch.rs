//! The body of a watch response: newline-delimited JSON events, one chunk per event.
//!
//! Order of a stream: the initial frames computed when the watch was registered (synthetic
//! ADDEDs, replayed log events, or the single 410 ERROR), then the live queue filled by the
//! store. The stream ends
//! - cleanly (final chunk) at `timeoutSeconds` — after a last bookmark if the client allowed
//!   bookmarks — or on [`Msg::End`] (`end_watches`);
//! - abruptly (the body yields an error, so hyper drops the connection without the final
//!   chunk) on `drop_watches` (at once: queued events are lost, as with a dead connection),
//!   or when the store drops the queue's sender because the reader was too slow for its queue.
//!
//! While watches are stalled nothing is written; events wait in the queue (and overflow
//! drops the watcher, as above).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::server::Shared;
use crate::store::{Msg, WatchStart};

/// Removes the watch from the store when the response body goes away.
#[derive(Debug)]
struct Guard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.store.lock().unwatch(self.id);
    }
}

#[derive(Debug)]
struct State {
    guard: Guard,
    initial: VecDeque<Bytes>,
    rx: Option<mpsc::Receiver<Msg>>,
    deadline: Instant,
    stalled: watch::Receiver<bool>,
    dropped: watch::Receiver<u64>,
    aborted: Arc<AtomicBool>,
    done: bool,
}

enum Step {
    Frame(Bytes),
    End,
    Abort,
}

impl State {
    async fn next(&mut self) -> Step {
        loop {
            if self.done {
                return Step::End;
            }
            if self.aborted.load(Ordering::Acquire) {
                return Step::Abort;
            }
            if *self.stalled.borrow_and_update() {
                tokio::select! {
                    r = self.stalled.changed() => if r.is_err() { return Step::End },
                    r = self.dropped.changed() => if r.is_err() { return Step::Abort },
                    () = sleep_until(self.deadline) => return Step::End,
                }
                continue;
            }
            if let Some(b) = self.initial.pop_front() {
                return Step::Frame(b);
            }
            let Some(rx) = self.rx.as_mut() else {
                return Step::End;
            };
            tokio::select! {
                m = rx.recv() => return match m {
                    Some(Msg::Line(b)) => Step::Frame(b),
                    Some(Msg::End) => Step::End,
                    None => Step::Abort,
                },
                r = self.dropped.changed() => if r.is_err() { return Step::Abort },
                r = self.stalled.changed() => if r.is_err() { return Step::End },
                () = sleep_until(self.deadline) => {
                    self.done = true;
                    let last = self.guard.shared.store.lock().final_bookmark(self.guard.id);
                    return match last {
                        Some(b) => Step::Frame(b),
                        None => Step::End,
                    };
                }
            }
        }
    }
}

/// The response body of a started watch.
pub(crate) fn body(
    shared: Arc<Shared>,
    start: WatchStart,
    timeout: std::time::Duration,
) -> UnsyncBoxBody<Bytes, io::Error> {
    let stalled = shared.stalled.subscribe();
    let dropped = shared.dropped.subscribe();
    let state = State {
        guard: Guard {
            shared,
            id: start.id,
        },
        initial: start.initial,
        rx: start.rx,
        deadline: Instant::now() + timeout,
        stalled,
        dropped,
        aborted: start.aborted,
        done: false,
    };
    let s = stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        match st.next().await {
            Step::Frame(b) => Some((Ok(Frame::data(b)), Some(st))),
            Step::End => None,
            Step::Abort => Some((
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "watch dropped",
                )),
                None,
            )),
        }
    });
    StreamBody::new(s).boxed_unsync()
}
