//! `RequestMirror` (Gateway API `HTTPRequestMirrorFilter`): sends a copy of the request to
//! another backend and ignores the answer.
//!
//! The spec: the mirror's responses are ignored; several mirrors may be listed; `fraction`
//! (numerator/denominator) or `percent` says what share of requests is mirrored. The
//! client's request must never be slowed or broken by a mirror, so every mirror is
//! bounded:
//!
//! - **Sampling**: with a fraction `n/d`, a request is mirrored when a uniform random
//!   number in `0..d` (fastrand, thread-local, no lock) is below `n`; `0/d` never draws.
//! - **Concurrency**: each mirror filter owns a semaphore of
//!   [`MirrorLimits::max_in_flight`] permits, taken with `try_acquire_owned`; when none is
//!   free the copy is skipped and counted, never queued. The permit lives until the
//!   mirror's response is drained, or until [`MirrorLimits::timeout`].
//! - **Body**: a request with a body gets a *tee* body. Every frame goes to the primary
//!   unchanged; a copy (a `Bytes` reference count, not a byte copy) is offered with
//!   `try_send` to a channel of [`MirrorLimits::channel_frames`] frames feeding the
//!   mirror's body. If the channel is full (the mirror reads slower than the primary) or
//!   the copied size would pass [`MirrorLimits::max_body_bytes`], the copy is abandoned:
//!   the mirror's body ends with an error (so the mirror request is aborted, never sent
//!   truncated as if whole) and the primary goes on untouched. Trailers are copied too.
//!   The mirror's body ends cleanly only after the tee saw the primary body's end. A
//!   request whose body is already at its end is mirrored with an empty body and no tee.
//! - **Fire and forget**: the mirror request runs in a spawned task on the current tokio
//!   runtime (one with timers enabled); its response body is drained and dropped; errors
//!   are counted and logged at `debug`.
//!
//! The mirror request carries the method, URI, version and headers as the filters before
//! it left them, and the body; not the extensions.
//!
//! Costs, for mirrored requests only: a header map copy, the tee and mirror bodies (one
//! box each through [`Body::new`]), the channel, and the spawned task.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::ConfigError;
use crate::route::Mirror;
use crate::{Backend, Backends, Body, BoxError};

/// Bounds on request mirroring; see the [filter module docs](super#the-filters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MirrorLimits {
    /// Mirror requests in flight at once, per mirror filter; more are skipped. Default 64.
    pub max_in_flight: usize,
    /// Request body bytes copied to a mirror; a larger body abandons the mirror request.
    /// Default 64 KiB.
    pub max_body_bytes: usize,
    /// Body frames buffered for a mirror that reads slower than the primary; when full
    /// the mirror request is abandoned. Default 16 (at least 1).
    pub channel_frames: usize,
    /// How long a mirror request may take, response body included, before it is dropped
    /// and its permit freed. Default 10 seconds.
    pub timeout: Duration,
}

impl Default for MirrorLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            max_body_bytes: 64 * 1024,
            channel_frames: 16,
            timeout: Duration::from_secs(10),
        }
    }
}

impl MirrorLimits {
    /// Sets [`max_in_flight`](Self::max_in_flight).
    #[must_use]
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets [`max_body_bytes`](Self::max_body_bytes).
    #[must_use]
    pub fn with_max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Sets [`channel_frames`](Self::channel_frames).
    #[must_use]
    pub fn with_channel_frames(mut self, n: usize) -> Self {
        self.channel_frames = n;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Mirror counters of one [`FilterChain`](super::FilterChain), summed over its mirror
/// filters and shared by its clones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MirrorStats {
    /// Mirror requests started.
    pub mirrored: u64,
    /// Copies not made because the mirror's in-flight limit was reached (or no tokio
    /// runtime was running).
    pub skipped: u64,
    /// Body copies abandoned (channel full or body over the limit); each also fails its
    /// mirror request.
    pub abandoned: u64,
    /// Mirror requests that completed (response received and drained).
    pub completed: u64,
    /// Mirror requests that failed or timed out.
    pub failed: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    mirrored: AtomicU64,
    skipped: AtomicU64,
    abandoned: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> MirrorStats {
        // Statistics only: Relaxed.
        MirrorStats {
            mirrored: self.mirrored.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug)]
enum Fraction {
    Always,
    Never,
    Ratio(u32, u32),
}

impl Fraction {
    fn sample(self) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Ratio(n, d) => fastrand::u32(0..d) < n,
        }
    }
}

/// A compiled mirror filter.
#[derive(Clone, Debug)]
pub(super) struct MirrorOp {
    backend: Backend,
    fraction: Fraction,
    permits: Arc<Semaphore>,
    limits: MirrorLimits,
}

impl MirrorOp {
    /// Validates and compiles a mirror. Error fields are relative to the filter.
    pub(super) fn compile(
        m: &Mirror,
        backends: &dyn Backends,
        limits: &MirrorLimits,
    ) -> Result<Self, ConfigError> {
        let backend = backends.backend(&m.backend).ok_or_else(|| {
            ConfigError::new(
                "backendRef",
                format!("backend {:?} does not exist", m.backend),
            )
        })?;
        let fraction = match m.fraction {
            None => Fraction::Always,
            Some((_, 0)) => {
                return Err(ConfigError::new(
                    "fraction.denominator",
                    "must be greater than 0",
                ));
            }
            Some((n, d)) if n > d => {
                return Err(ConfigError::new(
                    "fraction.numerator",
                    format!("{n} is greater than the denominator {d}"),
                ));
            }
            Some((0, _)) => Fraction::Never,
            Some((n, d)) if n == d => Fraction::Always,
            Some((n, d)) => Fraction::Ratio(n, d),
        };
        Ok(Self {
            backend,
            fraction,
            permits: Arc::new(Semaphore::new(
                limits.max_in_flight.min(Semaphore::MAX_PERMITS),
            )),
            limits: *limits,
        })
    }

    /// Maybe starts a mirror of `req`, replacing its body with a tee when it has one.
    pub(super) fn apply(&self, req: &mut Request<Body>, counters: &Arc<Counters>) {
        if !self.fraction.sample() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            Counters::inc(&counters.skipped);
            tracing::debug!("request mirror skipped: no tokio runtime");
            return;
        };
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            Counters::inc(&counters.skipped);
            tracing::debug!("request mirror skipped: in-flight limit reached");
            return;
        };
        let body = if http_body::Body::is_end_stream(req.body()) {
            Body::empty()
        } else {
            let primary = std::mem::take(req.body_mut());
            let (tee, copy) = tee(primary, &self.limits, Arc::clone(counters));
            *req.body_mut() = Body::new(tee);
            Body::new(copy)
        };
        let mut copy = Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        Counters::inc(&counters.mirrored);
        runtime.spawn(run(
            self.backend.clone(),
            copy,
            permit,
            Arc::clone(counters),
            self.limits.timeout,
        ));
    }
}

async fn run(
    backend: Backend,
    req: Request<Body>,
    permit: OwnedSemaphorePermit,
    counters: Arc<Counters>,
    timeout: Duration,
) {
    let outcome = tokio::time::timeout(timeout, async move {
        let rsp = backend.send(req).await?;
        drain(rsp).await
    })
    .await;
    drop(permit);
    match outcome {
        Ok(Ok(())) => Counters::inc(&counters.completed),
        Ok(Err(error)) => {
            Counters::inc(&counters.failed);
            tracing::debug!(%error, "request mirror failed");
        }
        Err(_) => {
            Counters::inc(&counters.failed);
            tracing::debug!(?timeout, "request mirror timed out");
        }
    }
}

async fn drain(rsp: Response<Body>) -> Result<(), BoxError> {
    let mut body = rsp.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

/// The mirror's body copy was abandoned: the channel was full, the body was over the
/// limit, or the primary body failed or was dropped before its end.
#[derive(Debug, thiserror::Error)]
#[error("request mirror body copy abandoned")]
struct Abandoned;

/// Splits `primary` into the body the primary receives and the mirror's copy.
fn tee(primary: Body, limits: &MirrorLimits, counters: Arc<Counters>) -> (Tee, MirrorBody) {
    let (tx, rx) = mpsc::channel(limits.channel_frames.max(1));
    let complete = Arc::new(AtomicBool::new(false));
    let hint = http_body::Body::size_hint(&primary);
    let copy = MirrorBody {
        rx,
        complete: Arc::clone(&complete),
        hint,
        done: false,
    };
    let tee = Tee {
        inner: primary,
        sink: Some(Sink {
            tx,
            complete,
            copied: 0,
            limit: limits.max_body_bytes,
            counters,
        }),
    };
    (tee, copy)
}

/// The primary's body: forwards every frame of the original unchanged and offers a copy
/// to the mirror.
struct Tee {
    inner: Body,
    sink: Option<Sink>,
}

struct Sink {
    tx: mpsc::Sender<Frame<Bytes>>,
    complete: Arc<AtomicBool>,
    copied: usize,
    limit: usize,
    counters: Arc<Counters>,
}

impl Sink {
    /// Offers a copy of `frame`; false when the copy must be abandoned.
    fn offer(&mut self, frame: &Frame<Bytes>) -> bool {
        let copy = if let Some(data) = frame.data_ref() {
            self.copied = self.copied.saturating_add(data.len());
            if self.copied > self.limit {
                tracing::debug!(limit = self.limit, "request mirror body over the limit");
                return false;
            }
            Frame::data(data.clone())
        } else if let Some(trailers) = frame.trailers_ref() {
            Frame::trailers(trailers.clone())
        } else {
            return true;
        };
        if self.tx.try_send(copy).is_err() {
            tracing::debug!("request mirror reads too slowly; body copy abandoned");
            return false;
        }
        true
    }

    /// The primary body ended: the mirror's body may end cleanly.
    fn finish(self) {
        // Release pairs with the Acquire in `MirrorBody`: the flag is visible before the
        // receiver sees the channel closed by dropping `tx` just after.
        self.complete.store(true, Ordering::Release);
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let item = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &item {
            Some(Ok(frame)) => {
                if let Some(sink) = &mut this.sink
                    && !sink.offer(frame)
                {
                    Counters::inc(&sink.counters.abandoned);
                    this.sink = None;
                }
                // hyper stops polling once the body reports its end, so the end must be
                // noticed here, not only when `None` comes.
                if this.inner.is_end_stream()
                    && let Some(sink) = this.sink.take()
                {
                    sink.finish();
                }
            }
            Some(Err(_)) => this.sink = None,
            None => {
                if let Some(sink) = this.sink.take() {
                    sink.finish();
                }
            }
        }
        Poll::Ready(item)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The mirror's body: the frames the tee copied, ending with an error unless the tee saw
/// the primary body's end.
struct MirrorBody {
    rx: mpsc::Receiver<Frame<Bytes>>,
    complete: Arc<AtomicBool>,
    hint: SizeHint,
    done: bool,
}

impl http_body::Body for MirrorBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match ready!(this.rx.poll_recv(cx)) {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => {
                this.done = true;
                if this.complete.load(Ordering::Acquire) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(Abandoned.into())))
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}
