//! The response future of [`Upstream`](crate::Upstream): a state machine, no box.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use gatekit_core::retry::TriedEndpoints;
use gatekit_core::{BoxError, Error, classify, update_unsent_request};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::upstream::Picked;

pin_project! {
    /// The response future of [`Upstream`](crate::Upstream): drives the picked endpoint's
    /// service to readiness, calls it, and on completion releases the endpoint's
    /// in-flight count and reports the outcome. Dropping it releases the count too.
    ///
    /// A request that was not sent comes back in the error (see
    /// [`Error::with_unsent_request`]): when no endpoint was usable, when the picked
    /// endpoint's service failed its readiness with a retry-safe gatekit error, or when
    /// the endpoint's service handed it back itself. A request handed back after a pick
    /// has the picked endpoint recorded in its
    /// [`TriedEndpoints`] (one is inserted if it had none), so a retry avoids it.
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

    /// Fails with `error`, handing `req` back in it: nothing was sent.
    pub(crate) fn failed(error: Error, req: Request<B>) -> Self
    where
        B: Send + 'static,
    {
        Self {
            state: State::Failed {
                error: Some(error.with_unsent_request(req)),
            },
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
    B: Send + 'static,
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
                        let err = finish_err(this.picked.take(), e.into(), req.take());
                        return Poll::Ready(Err(err));
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
                        Err(e) => Err(finish_err::<S, B>(this.picked.take(), e.into(), None)),
                    });
                }
            }
        }
    }
}

/// Ends a failed request: `req` (given when the endpoint's service failed its readiness,
/// so nothing was sent) goes back in the error if that is a retry-safe gatekit error; a
/// request the error hands back (that one, or one the endpoint's service handed back)
/// gets the picked endpoint recorded in its `TriedEndpoints`; the endpoint's in-flight
/// count is released and the outcome reported.
fn finish_err<S, B: Send + 'static>(
    picked: Option<Picked<S>>,
    err: BoxError,
    req: Option<Request<B>>,
) -> BoxError {
    let err = match req {
        Some(req) => hand_back(err, req),
        None => err,
    };
    if let Some(p) = picked {
        let addr = p.addr();
        update_unsent_request::<B>(&*err, |req| record_tried(req, addr));
        p.finish(Err(classify(&*err)));
    }
    err
}

/// `err` with `req` in it, if `err` is a retry-safe gatekit error.
fn hand_back<B: Send + 'static>(err: BoxError, req: Request<B>) -> BoxError {
    match err.downcast::<Error>() {
        Ok(e) if e.is_retry_safe() => Box::new(e.with_unsent_request(req)),
        Ok(e) => e,
        Err(e) => e,
    }
}

/// Records `addr` in the request's `TriedEndpoints`, inserting one if it has none.
fn record_tried<B>(req: &mut Request<B>, addr: SocketAddr) {
    match req.extensions().get::<TriedEndpoints>() {
        Some(tried) => tried.record(addr),
        None => {
            let tried = TriedEndpoints::new();
            tried.record(addr);
            req.extensions_mut().insert(tried);
        }
    }
}
