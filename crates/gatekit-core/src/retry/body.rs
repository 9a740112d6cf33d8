//! [`ReplayBody`]: a request body that the first attempt streams and a retry replays.
//!
//! The design follows linkerd2-proxy's `ReplayBody` (a tee with shared state), with two
//! differences: the state never moves between bodies (it stays behind one mutex, so a
//! retry never waits for an earlier attempt's body to be dropped), and an earlier
//! attempt's body that is still held somewhere (a connection task finishing an upload)
//! is *superseded* when a retry starts: polling it fails, and its task is woken so it
//! notices.
//!
//! - The first attempt's body polls the original body and hands each frame on at once
//!   (nothing waits to be buffered: a bidirectional stream keeps flowing), keeping a
//!   clone of each data frame (a `Bytes` reference count, no copy) and of the trailers
//!   while the total stays within the bound.
//! - A data frame that would take the copy past the bound frees the copy: the body is
//!   no longer replayable and the request is not retried (never a truncated retry).
//!   The attempt that read it goes on streaming the original body.
//! - A retry's body first yields the kept frames, then continues with the rest of the
//!   original body (whatever no attempt has read yet), then the trailers.
//! - When the retrying future completes or is dropped, its [`Replay`] handle *seals* the
//!   state: nothing more is copied and the copy is freed (as soon as a retry's body
//!   being replayed has finished with it).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;

use crate::{Body, BoxError};

/// The retry future's handle on a replayable body: makes the bodies of attempts, says
/// whether a retry can still get the whole body, and seals the copy when dropped.
pub(super) struct Replay {
    shared: Arc<Mutex<State>>,
}

/// The body of one attempt (see the [module docs](self)).
pub(super) struct ReplayBody {
    shared: Arc<Mutex<State>>,
    /// The attempt this body belongs to; only the newest may read.
    generation: u32,
    /// Still yielding kept frames (a retry's body, before it reaches the live edge).
    replaying: bool,
    /// The next kept frame to yield.
    pos: usize,
    /// Bytes of the kept frames yielded so far.
    replayed: usize,
}

struct State {
    /// The original body: what no attempt has read yet.
    rest: Body,
    /// The copy of the data frames read so far (while `keep`).
    frames: Frames,
    /// Bytes in `frames`.
    bytes: usize,
    /// The bound on `bytes`.
    max: usize,
    /// The copy of the trailers, once read (while `keep`).
    trailers: Option<HeaderMap>,
    /// The original body has ended (returned its end or its trailers).
    ended: bool,
    /// Frames read are still copied.
    keep: bool,
    /// The copy holds everything read so far: a retry would send the whole body.
    complete: bool,
    /// The original body failed: nothing can be replayed.
    failed: bool,
    /// The newest attempt's body generation.
    generation: u32,
    /// The newest body is still replaying kept frames: the copy must stay.
    replaying: bool,
    /// The task that last found the original body pending.
    waker: Option<Waker>,
}

/// The error a superseded attempt's body fails with.
#[derive(Debug)]
pub(super) struct Superseded;

impl fmt::Display for Superseded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body was taken over by a retry")
    }
}

impl std::error::Error for Superseded {}

// === impl Replay ===

impl Replay {
    /// Wraps `body`, keeping up to `max` bytes for replay: the first attempt's body and
    /// the handle. A body whose size hint already says it is larger is not copied at
    /// all (it stays replayable only until its first data frame is read: a request that
    /// never reached a backend can still be retried).
    pub(super) fn new(body: Body, max: usize) -> (ReplayBody, Self) {
        let keep = http_body::Body::size_hint(&body).lower() <= max as u64;
        let shared = Arc::new(Mutex::new(State {
            rest: body,
            frames: Frames::default(),
            bytes: 0,
            max,
            trailers: None,
            ended: false,
            keep,
            complete: true,
            failed: false,
            generation: 1,
            replaying: false,
            waker: None,
        }));
        let first = ReplayBody {
            shared: shared.clone(),
            generation: 1,
            replaying: false,
            pos: 0,
            replayed: 0,
        };
        (first, Self { shared })
    }

    /// Whether a retry would get the whole body: nothing read was dropped from the copy
    /// and the original body has not failed.
    pub(super) fn can_replay(&self) -> bool {
        let state = self.shared.lock();
        state.complete && !state.failed
    }

    /// The body of the next attempt. Earlier attempts' bodies are superseded: polling
    /// one fails, and the task that last waited on the original body is woken.
    pub(super) fn next(&self) -> ReplayBody {
        let mut state = self.shared.lock();
        state.generation = state.generation.wrapping_add(1);
        state.replaying = true;
        let generation = state.generation;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        ReplayBody {
            shared: self.shared.clone(),
            generation,
            replaying: true,
            pos: 0,
            replayed: 0,
        }
    }

    /// Bytes kept for replay now (tests).
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        let state = self.shared.lock();
        state.bytes + usize::from(state.trailers.is_some())
    }
}

impl Drop for Replay {
    /// No more retries: stop copying and free the copy (or let the body still
    /// replaying it free it when done).
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.keep = false;
        state.complete = false;
        if !state.replaying {
            state.free();
        }
    }
}

impl fmt::Debug for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay").finish_non_exhaustive()
    }
}

// === impl State ===

impl State {
    fn free(&mut self) {
        self.frames = Frames::default();
        self.bytes = 0;
        self.trailers = None;
    }

    /// The newest body has finished with the copy.
    fn finish_replay(&mut self) {
        self.replaying = false;
        if !self.keep {
            self.free();
        }
    }

    /// Copies a data frame read from the original body, or gives the copy up.
    fn record_data(&mut self, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        if self.keep && self.bytes + data.len() <= self.max {
            self.frames.push(data.clone());
            self.bytes += data.len();
        } else {
            if self.keep {
                self.keep = false;
                self.free();
            }
            self.complete = false;
        }
    }

    fn record_trailers(&mut self, trailers: &HeaderMap) {
        if self.keep {
            self.trailers = Some(trailers.clone());
        } else {
            self.complete = false;
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.keep = false;
        self.complete = false;
        self.free();
    }
}

/// Kept frames: the first inline (a small body is one frame: no vector).
#[derive(Default)]
struct Frames {
    first: Option<Bytes>,
    more: Vec<Bytes>,
}

impl Frames {
    fn get(&self, i: usize) -> Option<&Bytes> {
        match i {
            0 => self.first.as_ref(),
            _ => self.more.get(i - 1),
        }
    }

    fn push(&mut self, data: Bytes) {
        if self.first.is_none() {
            self.first = Some(data);
        } else {
            self.more.push(data);
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }
}

// === impl ReplayBody ===

impl http_body::Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut state = this.shared.lock();
        if state.generation != this.generation {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        if this.replaying {
            if let Some(data) = state.frames.get(this.pos) {
                let data = data.clone();
                this.pos += 1;
                this.replayed += data.len();
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            this.replaying = false;
            if state.ended {
                let trailers = state.trailers.clone();
                state.finish_replay();
                return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
            }
            state.finish_replay();
        }
        if state.ended {
            return Poll::Ready(None);
        }
        let state = &mut *state;
        match Pin::new(&mut state.rest).poll_frame(cx) {
            Poll::Pending => {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Poll::Ready(None) => {
                state.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    state.record_data(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    state.record_trailers(trailers);
                    state.ended = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                state.fail();
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = self.shared.lock();
        if state.generation != self.generation {
            // Polling it reports the error.
            return false;
        }
        if self.replaying {
            if self.pos < state.frames.len() {
                return false;
            }
            if state.ended {
                return state.trailers.is_none();
            }
        }
        state.ended || http_body::Body::is_end_stream(&state.rest)
    }

    fn size_hint(&self) -> SizeHint {
        let state = self.shared.lock();
        if state.generation != self.generation {
            return SizeHint::default();
        }
        let replay = if self.replaying {
            state.bytes.saturating_sub(self.replayed) as u64
        } else {
            0
        };
        if state.ended {
            return SizeHint::with_exact(replay);
        }
        let rest = http_body::Body::size_hint(&state.rest);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(replay));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(replay));
        }
        hint
    }
}

impl fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("generation", &self.generation)
            .field("replaying", &self.replaying)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;

    fn full(data: &'static [u8]) -> Body {
        Body::full(Bytes::from_static(data))
    }

    #[tokio::test]
    async fn a_retry_replays_the_kept_frames_with_an_exact_size() {
        let (first, replay) = Replay::new(full(b"hello"), 16);
        assert_eq!(first.size_hint().exact(), Some(5));
        assert_eq!(&first.collect().await.unwrap().to_bytes()[..], b"hello");
        assert!(replay.can_replay());
        let second = replay.next();
        assert!(!second.is_end_stream());
        assert_eq!(second.size_hint().exact(), Some(5));
        assert_eq!(&second.collect().await.unwrap().to_bytes()[..], b"hello");
        let third = replay.next();
        assert_eq!(&third.collect().await.unwrap().to_bytes()[..], b"hello");
    }

    /// Frames with an exact size hint of what is left.
    struct Chunks(std::collections::VecDeque<Bytes>, Option<HeaderMap>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let frame = match self.0.pop_front() {
                Some(data) => Frame::data(data),
                None => match self.1.take() {
                    Some(t) => Frame::trailers(t),
                    None => return Poll::Ready(None),
                },
            };
            Poll::Ready(Some(Ok(frame)))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty() && self.1.is_none()
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
        }
    }

    #[tokio::test]
    async fn a_partly_read_body_replays_then_reads_on_with_exact_sizes_and_trailers() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        let chunks = ["ab", "cde", "f"]
            .map(|s| Bytes::from_static(s.as_bytes()))
            .into();
        let (mut first, replay) = Replay::new(Body::new(Chunks(chunks, Some(t.clone()))), 64);
        assert_eq!(first.size_hint().exact(), Some(6));
        assert_eq!(
            first.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        assert_eq!(first.size_hint().exact(), Some(4));
        // The first attempt fails here; the retry takes over.
        let mut second = replay.next();
        assert_eq!(second.size_hint().exact(), Some(6));
        assert_eq!(
            second.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        assert_eq!(second.size_hint().exact(), Some(4));
        assert!(!second.is_end_stream());
        let rest = second.collect().await.unwrap();
        assert_eq!(rest.trailers(), Some(&t));
        assert_eq!(&rest.to_bytes()[..], b"cdef");
        // A third attempt gets it all from the copy, trailers included.
        let third = replay.next();
        assert_eq!(third.size_hint().exact(), Some(6));
        let all = third.collect().await.unwrap();
        assert_eq!(all.trailers(), Some(&t));
        assert_eq!(&all.to_bytes()[..], b"abcdef");
        let fourth = replay.next();
        drop(replay);
        assert_eq!(fourth.collect().await.unwrap().to_bytes().len(), 6);
    }

    #[tokio::test]
    async fn an_unread_body_is_taken_over_by_the_retry() {
        let (first, replay) = Replay::new(full(b"hello"), 16);
        drop(first);
        let second = replay.next();
        assert_eq!(second.size_hint().exact(), Some(5));
        assert_eq!(&second.collect().await.unwrap().to_bytes()[..], b"hello");
    }

    #[tokio::test]
    async fn a_superseded_body_fails_and_the_new_one_reads_on() {
        let (mut first, replay) = Replay::new(full(b"hello"), 16);
        let mut second = replay.next();
        let err = first.frame().await.unwrap().unwrap_err();
        assert!(err.is::<Superseded>());
        assert!(!first.is_end_stream());
        let frame = second.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert!(second.is_end_stream());
    }

    #[tokio::test]
    async fn a_body_past_the_bound_frees_the_copy_and_is_not_replayable() {
        let (first, replay) = Replay::new(full(b"0123456789"), 4);
        // The size hint already says it is too large: nothing is copied, but it is
        // replayable until read.
        assert!(replay.can_replay());
        assert_eq!(
            &first.collect().await.unwrap().to_bytes()[..],
            b"0123456789"
        );
        assert!(!replay.can_replay());
        assert_eq!(replay.kept(), 0);
    }

    #[tokio::test]
    async fn sealing_frees_the_copy_but_not_under_a_replaying_body() {
        let (first, replay) = Replay::new(full(b"abc"), 16);
        first.collect().await.unwrap();
        assert_eq!(replay.kept(), 3);
        let second = replay.next();
        let shared = replay.shared.clone();
        drop(replay);
        // The retry's body still needs the copy.
        assert_eq!(&second.collect().await.unwrap().to_bytes()[..], b"abc");
        let state = shared.lock();
        assert!(state.frames.len() == 0 && state.bytes == 0 && !state.keep);
    }
}
