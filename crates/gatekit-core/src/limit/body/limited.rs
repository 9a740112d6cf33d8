//! [`LimitedBody`].

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{BoxError, Error, ErrorKind};

pin_project! {
    /// A body that passes on at most `max` bytes of data: the frame that would take it
    /// past the bound is not passed on; an error of kind
    /// [`ErrorKind::PayloadTooLarge`] (413) comes instead, and the stream ends after
    /// it. Nothing is buffered: frames pass through as they arrive.
    ///
    /// [`BodyLimit`](super::BodyLimit) wraps request bodies in it; it is usable alone
    /// around any body.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        failed: bool,
        // Tells the request's response future that the body was cut off.
        signal: Option<Arc<AtomicBool>>,
    }
}

impl<B> LimitedBody<B> {
    /// `inner`, cut off with an error once more than `max` bytes of data have streamed.
    pub const fn new(inner: B, max: u64) -> Self {
        Self {
            inner,
            remaining: max,
            failed: false,
            signal: None,
        }
    }

    /// As [`new`](Self::new), also setting `signal` when the body is cut off.
    pub(super) fn with_signal(inner: B, max: u64, signal: Arc<AtomicBool>) -> Self {
        let mut body = Self::new(inner, max);
        body.signal = Some(signal);
        body
    }

    /// How many more bytes may stream.
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Unwraps the inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> http_body::Body for LimitedBody<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            // usize to u64 is lossless on every target Rust supports.
            let len = data.remaining() as u64;
            if len > *this.remaining {
                *this.failed = true;
                if let Some(signal) = this.signal {
                    // Release: pairs with the response future's Acquire load; the
                    // inner service learns of the error after this store.
                    signal.store(true, Ordering::Release);
                }
                return Poll::Ready(Some(Err(Error::new(ErrorKind::PayloadTooLarge).into())));
            }
            *this.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let upper = inner
            .upper()
            .map_or(self.remaining, |n| n.min(self.remaining));
        let mut hint = SizeHint::new();
        hint.set_upper(upper);
        // Never above `upper` (which `set_lower` would refuse).
        hint.set_lower(inner.lower().min(upper));
        hint
    }
}

impl<B> fmt::Debug for LimitedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitedBody")
            .field("remaining", &self.remaining)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
