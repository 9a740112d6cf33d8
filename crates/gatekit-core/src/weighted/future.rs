//! The response future of [`Weighted`](super::Weighted).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::filter::{FilterChain, ResponseContext};
use crate::{Body, BoxError, Error, backend};

pin_project! {
    /// The response future of [`Weighted`](super::Weighted): the chosen backend's
    /// future followed by the backendRef's response filters, or an immediate answer
    /// (a filter's redirect) or error (no valid backend).
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sent { #[pin] fut: backend::ResponseFuture, filters: FilterChain, rcx: ResponseContext },
        Answered { rsp: Option<Response<Body>> },
        Failed { err: Option<Error> },
    }
}

impl ResponseFuture {
    pub(super) fn sent(
        fut: backend::ResponseFuture,
        filters: FilterChain,
        rcx: ResponseContext,
    ) -> Self {
        Self {
            state: State::Sent { fut, filters, rcx },
        }
    }

    pub(super) fn answered(rsp: Response<Body>) -> Self {
        Self {
            state: State::Answered { rsp: Some(rsp) },
        }
    }

    pub(super) fn failed(err: Error) -> Self {
        Self {
            state: State::Failed { err: Some(err) },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sent { fut, filters, rcx } => {
                let mut rsp = ready!(fut.poll(cx))?;
                filters.apply_response_with(&mut rsp, rcx);
                Poll::Ready(Ok(rsp))
            }
            StateProj::Answered { rsp } => Poll::Ready(
                rsp.take()
                    .ok_or_else(|| "weighted::ResponseFuture polled after completion".into()),
            ),
            StateProj::Failed { err } => Poll::Ready(Err(match err.take() {
                Some(err) => Box::new(err),
                None => "weighted::ResponseFuture polled after completion".into(),
            })),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Sent { .. } => "Sent",
            State::Answered { .. } => "Answered",
            State::Failed { .. } => "Failed",
        };
        f.debug_tuple("ResponseFuture").field(&state).finish()
    }
}
