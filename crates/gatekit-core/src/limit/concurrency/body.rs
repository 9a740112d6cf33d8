//! [`InFlightBody`]: a response body that holds its request's slot until it ends.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use super::in_flight::Slot;
use crate::BoxError;

pin_project! {
    /// The inner response body, unchanged, and the request's [`Slot`], released at the
    /// end of the stream, on an error, or when the body is dropped, whichever comes
    /// first.
    pub(super) struct InFlightBody<B> {
        #[pin]
        inner: B,
        slot: Option<Slot>,
    }
}

impl<B> InFlightBody<B> {
    pub(super) const fn new(inner: B, slot: Slot) -> Self {
        Self {
            inner,
            slot: Some(slot),
        }
    }
}

impl<B> http_body::Body for InFlightBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) | None => true,
        };
        if ended {
            *this.slot = None;
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for InFlightBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightBody")
            .field("holding", &self.slot.is_some())
            .finish_non_exhaustive()
    }
}
