//! The response body that holds a request's slots until it ends.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};

use super::state::Permit;
use crate::{Body, BoxError};

/// Keeps `permit` until the response body ends: at once for a body that is already at
/// its end (no allocation), else in a wrapping body (one allocation: [`Body`] boxes
/// foreign bodies).
pub(super) fn hold_until_end(rsp: Response<Body>, permit: Permit) -> Response<Body> {
    if http_body::Body::is_end_stream(rsp.body()) {
        return rsp;
    }
    rsp.map(|inner| {
        Body::new(Held {
            inner,
            permit: Some(permit),
        })
    })
}

/// A response body holding the slots of its request; they are given back at the end of
/// the body, on its error, or when it is dropped.
struct Held {
    inner: Body,
    permit: Option<Permit>,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(_)) if !this.inner.is_end_stream() => {}
            // The last frame, the end, or an error: the upstream is done with it.
            _ => this.permit = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
