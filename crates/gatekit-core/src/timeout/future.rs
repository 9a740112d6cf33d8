//! The response future of [`Timeout`](super::Timeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::{BoxError, Error, ErrorKind};

pin_project! {
    /// The response future of [`Timeout`](super::Timeout): the inner future raced
    /// against an optional timer. Dropping it (or the timer firing) drops the inner
    /// future.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        kind: ErrorKind,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, sleep: Option<Sleep>, kind: ErrorKind) -> Self {
        Self { inner, sleep, kind }
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
        // The inner future first: a response that is ready wins over a timer that
        // fired in the same turn.
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(out.map_err(Into::into));
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(Box::new(Error::new(*this.kind)))),
            _ => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("kind", &self.kind)
            .field("armed", &self.sleep.is_some())
            .finish_non_exhaustive()
    }
}
