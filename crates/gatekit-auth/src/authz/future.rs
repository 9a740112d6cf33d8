//! The response future: the inner service's, or a refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use gatekit_core::{BoxError, Error};
use pin_project_lite::pin_project;

pin_project! {
    /// The response future of [`Authz`](super::Authz).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Inner { #[pin] fut: F },
        Refused { err: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(fut: F) -> Self {
        Self {
            kind: Kind::Inner { fut },
        }
    }

    pub(super) fn refused(err: Error) -> Self {
        Self {
            kind: Kind::Refused { err: Some(err) },
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
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            KindProj::Refused { err } => Poll::Ready(Err(match err.take() {
                Some(err) => Box::new(err),
                None => "authz response future polled after completion".into(),
            })),
        }
    }
}
