//! The response future of [`ProxyHeaders`](super::ProxyHeaders).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::prepare_response;
use crate::Body;

pin_project! {
    /// The response future of [`ProxyHeaders`](super::ProxyHeaders): the inner future,
    /// whose response gets [`prepare_response`](super::prepare_response).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut rsp = ready!(self.project().inner.poll(cx))?;
        prepare_response(&mut rsp);
        Poll::Ready(Ok(rsp))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
