//! The response future of [`Upstream`](crate::Upstream): a state machine, no box.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use gatekit_core::{BoxError, Error, classify};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::upstream::Picked;

pin_project! {
    /// The response future of [`Upstream`](crate::Upstream): drives the picked endpoint's
    /// service to readiness, calls it, and on completion releases the endpoint's
    /// in-flight count and reports the outcome. Dropping it releases the count too.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        picked: Option<Picked<S>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Failed { error: Option<Error> },
        Ready { svc: S, req: Option<Request<B>> },
        Called { #[pin] fut: S::Future },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>> + Clone,
{
    pub(crate) fn new(picked: Picked<S>, req: Request<B>) -> Self {
        Self {
            state: State::Ready {
                svc: picked.service().clone(),
                req: Some(req),
            },
            picked: Some(picked),
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            picked: None,
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("picked", &self.picked)
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Failed { error } => {
                    let e = error
                        .take()
                        .unwrap_or_else(|| Error::new(gatekit_core::ErrorKind::NoHealthyEndpoint));
                    return Poll::Ready(Err(e.into()));
                }
                StateProj::Ready { svc, req } => {
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Err(finish_err(this.picked.take(), e.into())));
                    }
                    let Some(req) = req.take() else {
                        return Poll::Ready(Err(Error::new(
                            gatekit_core::ErrorKind::InvalidBackend,
                        )
                        .into()));
                    };
                    let fut = svc.call(req);
                    this.state.set(State::Called { fut });
                }
                StateProj::Called { fut } => {
                    let res = ready!(fut.poll(cx));
                    return Poll::Ready(match res {
                        Ok(rsp) => {
                            if let Some(p) = this.picked.take() {
                                p.finish(Ok(rsp.status()));
                            }
                            Ok(rsp)
                        }
                        Err(e) => Err(finish_err(this.picked.take(), e.into())),
                    });
                }
            }
        }
    }
}

fn finish_err<S>(picked: Option<Picked<S>>, err: BoxError) -> BoxError {
    if let Some(p) = picked {
        p.finish(Err(classify(&*err)));
    }
    err
}
