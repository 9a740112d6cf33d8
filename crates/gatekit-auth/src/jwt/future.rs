//! The JWT service's response future: the inner service's, or a refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use gatekit_core::{BoxError, Error};
use pin_project_lite::pin_project;

pin_project! {
    /// Response future of [`Jwt`](super::Jwt).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = Proj]
    #[derive(Debug)]
    enum State<F> {
        Inner { #[pin] fut: F },
        Refused { error: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(fut: F) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    pub(super) fn refused(error: Error) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
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
            Proj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            Proj::Refused { error } => Poll::Ready(Err(match error.take() {
                Some(e) => Box::new(e),
                None => "jwt::ResponseFuture polled after completion".into(),
            })),
        }
    }
}
