//! [`ResponseFuture`] of [`BasicAuth`](super::BasicAuth).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use gatekit_core::{BoxError, Error};
use http::Request;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::htpasswd::User;
use super::layer::Shared;

/// A slow check in progress: `true` when the password matched.
pub(super) type BoxCheck = Pin<Box<dyn Future<Output = Result<bool, Error>> + Send>>;

/// What a request waiting for its check holds.
struct Pending<S, B> {
    inner: S,
    req: Request<B>,
    user: Arc<User>,
    shared: Arc<Shared>,
}

pin_project! {
    /// The response future of [`BasicAuth`](super::BasicAuth): a slow check then the
    /// inner service's future, the inner service's future at once, or a refusal.
    pub struct ResponseFuture<F, S, B> {
        #[pin]
        state: State<F, S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        Check { check: BoxCheck, pending: Option<Pending<S, B>> },
        Inner { #[pin] fut: F },
        Refused { err: Option<Error> },
    }
}

impl<F, S, B> ResponseFuture<F, S, B> {
    pub(super) fn inner(fut: F) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    pub(super) fn refused(err: Error) -> Self {
        Self {
            state: State::Refused { err: Some(err) },
        }
    }

    pub(super) fn check(
        check: BoxCheck,
        inner: S,
        req: Request<B>,
        user: Arc<User>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            state: State::Check {
                check,
                pending: Some(Pending {
                    inner,
                    req,
                    user,
                    shared,
                }),
            },
        }
    }
}

fn completed() -> BoxError {
    "BasicAuth's ResponseFuture polled after completion".into()
}

impl<F, S, B, T, E> Future for ResponseFuture<F, S, B>
where
    S: Service<Request<B>, Future = F>,
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Check { check, pending } => {
                    let verdict = ready!(check.as_mut().poll(cx));
                    let Some(Pending {
                        mut inner,
                        req,
                        user,
                        shared,
                    }) = pending.take()
                    else {
                        return Poll::Ready(Err(completed()));
                    };
                    match verdict {
                        Ok(true) => {
                            let fut = inner.call(shared.admit(req, &user));
                            self.as_mut().project().state.set(State::Inner { fut });
                        }
                        Ok(false) => return Poll::Ready(Err(Box::new(shared.refusal()))),
                        Err(err) => return Poll::Ready(Err(Box::new(err))),
                    }
                }
                StateProj::Inner { fut } => return fut.poll(cx).map_err(Into::into),
                StateProj::Refused { err } => {
                    return Poll::Ready(Err(match err.take() {
                        Some(err) => Box::new(err),
                        None => completed(),
                    }));
                }
            }
        }
    }
}

impl<F, S, B> fmt::Debug for ResponseFuture<F, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
