//! The response future of [`NormalizePath`](super::NormalizePath).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

pin_project! {
    /// The response future of [`NormalizePath`](super::NormalizePath): the inner service's
    /// future, or an immediate refusal (400 or 414, empty body).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] fut: F },
        Refused { status: StatusCode, reason: &'static str },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(fut: F) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    pub(super) fn refused(status: StatusCode, reason: &'static str) -> Self {
        Self {
            state: State::Refused { status, reason },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => fut.poll(cx),
            StateProj::Refused { status, reason } => {
                let mut rsp = Response::new(B::default());
                *rsp.status_mut() = *status;
                rsp.headers_mut().insert(
                    http::HeaderName::from_static("x-gatekit-error"),
                    HeaderValue::from_static(reason),
                );
                Poll::Ready(Ok(rsp))
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
