//! The response future of [`Filters`](super::Filters).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::{FilterChain, ResponseContext};
use crate::{Body, BoxError};

pin_project! {
    /// The response future of [`Filters`](super::Filters): the inner future followed by
    /// the response filters, or a response a request filter answered with.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] fut: F, chain: FilterChain, rcx: ResponseContext },
        // Already through the response filters.
        Answered { rsp: Option<Response<Body>> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(fut: F, chain: FilterChain, rcx: ResponseContext) -> Self {
        Self {
            state: State::Inner { fut, chain, rcx },
        }
    }

    pub(super) fn answered(rsp: Response<Body>) -> Self {
        Self {
            state: State::Answered { rsp: Some(rsp) },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut, chain, rcx } => {
                let mut rsp = ready!(fut.poll(cx)).map_err(Into::into)?;
                chain.apply_response_with(&mut rsp, rcx);
                Poll::Ready(Ok(rsp))
            }
            StateProj::Answered { rsp } => Poll::Ready(
                rsp.take()
                    .ok_or_else(|| "filters::ResponseFuture polled after completion".into()),
            ),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
