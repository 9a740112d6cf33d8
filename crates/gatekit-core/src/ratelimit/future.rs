//! The response future of [`RateLimit`](super::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use super::{RATELIMIT, RATELIMIT_POLICY};
use crate::{BoxError, Error, ErrorKind};

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit): the inner service's
    /// future, whose response gets the `RateLimit` and `RateLimit-Policy` headers, or a
    /// refusal ([`ErrorKind::RateLimited`]).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner {
            #[pin]
            fut: F,
            headers: Option<Headers>,
        },
        Refused {
            error: Option<Error>,
        },
    }
}

/// The `RateLimit-Policy` and `RateLimit` values an allowed response carries.
#[derive(Debug)]
pub(super) struct Headers {
    pub(super) policy: HeaderValue,
    pub(super) limit: HeaderValue,
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(fut: F, headers: Option<Headers>) -> Self {
        Self {
            state: State::Inner { fut, headers },
        }
    }

    pub(super) fn refused(error: Error) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut, headers } => {
                let mut rsp = ready!(fut.poll(cx)).map_err(Into::into)?;
                if let Some(h) = headers.take() {
                    // Appended: the upstream's own limits, if any, stay listed.
                    rsp.headers_mut().append(RATELIMIT_POLICY, h.policy);
                    rsp.headers_mut().append(RATELIMIT, h.limit);
                }
                Poll::Ready(Ok(rsp))
            }
            StateProj::Refused { error } => {
                // Polled again after completion (a contract bug): refuse again, plainly.
                let error = error
                    .take()
                    .unwrap_or_else(|| Error::new(ErrorKind::RateLimited));
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let refused = matches!(self.state, State::Refused { .. });
        f.debug_struct("ResponseFuture")
            .field("refused", &refused)
            .finish_non_exhaustive()
    }
}
