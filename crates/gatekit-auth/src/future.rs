//! The response future of the checks that decide before calling on (API keys, JWT,
//! allow/deny rules): the inner service's, or a refusal.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use gatekit_core::{BoxError, Error};
use pin_project_lite::pin_project;

pin_project! {
    /// The response future of a check that decides before calling on
    /// ([`ApiKey`](crate::apikey::ApiKey), [`Jwt`](crate::jwt::Jwt),
    /// [`Authz`](crate::authz::Authz)): the inner service's, or a refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] fut: F },
        Refused { err: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(fut: F) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    pub(crate) fn refused(err: Error) -> Self {
        Self {
            state: State::Refused { err: Some(err) },
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
        match self.project().state.project() {
            StateProj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            StateProj::Refused { err } => Poll::Ready(Err(match err.take() {
                Some(err) => Box::new(err),
                None => "gatekit-auth ResponseFuture polled after completion".into(),
            })),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
