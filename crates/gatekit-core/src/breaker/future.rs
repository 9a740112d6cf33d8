//! The response future of [`Breaker`](super::Breaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::hold_until_end;
use super::state::{Permit, RetrySlot, Waiter};
use crate::{Body, BoxError, Error};

pin_project! {
    /// The response future of [`Breaker`](super::Breaker): refused at once, waiting in
    /// the pending queue, or the inner service's future holding the request's slots.
    /// Dropping it gives back its slots or leaves the queue.
    pub struct ResponseFuture<S>
    where
        S: Service<Request<Body>>,
    {
        #[pin]
        state: State<S, S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
        // Boxed: waiting is the rare path, and a request inline would make every
        // request's future as large as a `Request`.
        Queued {
            waiting: Option<Box<Queued<S>>>,
        },
        Refused {
            error: Option<Error>,
        },
    }
}

/// What a queued request keeps until its slot arrives.
struct Queued<S> {
    waiter: Waiter,
    service: S,
    req: Request<Body>,
    retry: Option<RetrySlot>,
}

impl<S> ResponseFuture<S>
where
    S: Service<Request<Body>>,
{
    pub(super) fn called(future: S::Future, permit: Permit) -> Self {
        Self {
            state: State::Called {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(super) fn queued(
        waiter: Waiter,
        service: S,
        req: Request<Body>,
        retry: Option<RetrySlot>,
    ) -> Self {
        Self {
            state: State::Queued {
                waiting: Some(Box::new(Queued {
                    waiter,
                    service,
                    req,
                    retry,
                })),
            },
        }
    }

    pub(super) fn refused(error: Error) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            match state.as_mut().project() {
                StateProj::Called { future, permit } => {
                    let result = ready!(future.poll(cx));
                    // Taken now, so a failed request frees its slots at once.
                    let permit = permit.take();
                    let rsp = result.map_err(Into::into)?;
                    return Poll::Ready(Ok(match permit {
                        Some(permit) => hold_until_end(rsp, permit),
                        None => rsp,
                    }));
                }
                StateProj::Queued { waiting } => {
                    let Some(queued) = waiting else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let slot = ready!(Pin::new(&mut queued.waiter).poll(cx))?;
                    let Some(Queued {
                        waiter,
                        mut service,
                        req,
                        retry,
                    }) = waiting.take().map(|queued| *queued)
                    else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    // Leaves the queue's count of waiters; the slot is ours.
                    drop(waiter);
                    let permit = Permit::new(slot, retry);
                    let future = service.call(req);
                    state.set(State::Called {
                        future,
                        permit: Some(permit),
                    });
                }
                StateProj::Refused { error } => {
                    return Poll::Ready(Err(match error.take() {
                        Some(error) => error.into(),
                        None => polled_after_completion(),
                    }));
                }
            }
        }
    }
}

/// A future polled again after it completed: a caller's contract bug, answered with an
/// error rather than a panic.
fn polled_after_completion() -> BoxError {
    "breaker response future polled after completion".into()
}

impl<S> fmt::Debug for ResponseFuture<S>
where
    S: Service<Request<Body>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Queued { .. } => "queued",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
