//! The response future of [`BodyLimit`](super::BodyLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pin_project_lite::pin_project;

use crate::{BoxError, Error, ErrorKind, classify};

pin_project! {
    /// The response future of [`BodyLimit`](super::BodyLimit): the inner future, or a
    /// refusal that is ready at once.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        // Set by the request's `LimitedBody` when it cut the body off.
        cut: Option<Arc<AtomicBool>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) const fn called(inner: F, cut: Option<Arc<AtomicBool>>) -> Self {
        Self {
            inner: Some(inner),
            cut,
        }
    }

    pub(super) const fn rejected() -> Self {
        Self {
            inner: None,
            cut: None,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(Error::new(ErrorKind::PayloadTooLarge).into()));
        };
        let cut = this.cut;
        Poll::Ready(ready!(inner.poll(cx)).map_err(|e| {
            let e = e.into();
            // The body was cut off and then the inner service failed: whatever it made
            // of the body's error (an upstream client wraps it as a protocol error;
            // hyper's HTTP/2 client drops it and reports the stream reset), the request
            // failed for its body's size. Acquire: pairs with the body's Release store.
            let was_cut = cut.as_ref().is_some_and(|c| c.load(Ordering::Acquire));
            if was_cut && classify(&*e) != ErrorKind::PayloadTooLarge {
                Error::with_source(ErrorKind::PayloadTooLarge, e).into()
            } else {
                e
            }
        }))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("rejected", &self.inner.is_none())
            .finish()
    }
}
