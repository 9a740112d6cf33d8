//! The response future of [`BodyLimit`](super::BodyLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::limited::caused_by_limit;
use crate::{BoxError, Error, ErrorKind, classify};

pin_project! {
    /// The response future of [`BodyLimit`](super::BodyLimit): the inner future, or a
    /// refusal that is ready at once.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) const fn called(inner: F) -> Self {
        Self { inner: Some(inner) }
    }

    pub(super) const fn rejected() -> Self {
        Self { inner: None }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.project().inner.as_pin_mut() else {
            return Poll::Ready(Err(Error::new(ErrorKind::PayloadTooLarge).into()));
        };
        Poll::Ready(ready!(inner.poll(cx)).map_err(|e| {
            let e = e.into();
            // The inner service failed because the body was cut off, but reports it as
            // something else (an upstream client that wraps the body's error in its
            // own): the request still failed for its body's size.
            if classify(&*e) != ErrorKind::PayloadTooLarge && caused_by_limit(&*e) {
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
