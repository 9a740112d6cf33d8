//! The response future of [`Oidc`](super::Oidc): the inner service's response (with
//! renewed cookies after a refresh), a redirect made here, or a refusal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use gatekit_core::{Body, BoxError};
use http::{HeaderValue, Request, Response, header};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::flow::{BoxFuture, Decision, Refreshed, Shared};

pin_project! {
    /// The response future of [`Oidc`](super::Oidc).
    ///
    /// A request with a valid session (the common case) polls the inner service's
    /// future in place; only login callbacks and session refreshes, once per login or
    /// token lifetime, box the exchange with the provider.
    pub struct ResponseFuture<S: Service<Request<B>>, B> {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Request<B>>, B> {
        Inner {
            #[pin]
            fut: S::Future,
            cookies: Vec<HeaderValue>,
        },
        Done {
            result: Option<Result<Response<Body>, BoxError>>,
        },
        Callback {
            fut: BoxFuture<Result<Response<Body>, BoxError>>,
        },
        Refreshing {
            fut: BoxFuture<Option<Refreshed>>,
            inner: Option<S>,
            req: Option<Request<B>>,
            shared: Arc<Shared>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>> + Clone,
{
    pub(super) fn new(
        decision: Decision,
        req: Request<B>,
        inner: &mut S,
        shared: Arc<Shared>,
    ) -> Self {
        let state = match decision {
            Decision::Pass => State::Inner {
                fut: inner.call(req),
                cookies: Vec::new(),
            },
            Decision::Respond(rsp) => State::Done {
                result: Some(Ok(rsp)),
            },
            Decision::Refuse(err) => State::Done {
                result: Some(Err(Box::new(err))),
            },
            Decision::Callback(fut) => State::Callback { fut },
            Decision::Refresh(fut) => {
                // The ready instance goes with the request; `inner` keeps a fresh clone.
                let clone = inner.clone();
                let ready = std::mem::replace(inner, clone);
                State::Refreshing {
                    fut,
                    inner: Some(ready),
                    req: Some(req),
                    shared,
                }
            }
        };
        Self { state }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { fut, cookies } => {
                    let mut rsp = ready!(fut.poll(cx)).map_err(Into::into)?;
                    for c in cookies.drain(..) {
                        rsp.headers_mut().append(header::SET_COOKIE, c);
                    }
                    return Poll::Ready(Ok(rsp));
                }
                StateProj::Done { result } => {
                    return Poll::Ready(result.take().unwrap_or_else(|| {
                        Err("oidc ResponseFuture polled after completion".into())
                    }));
                }
                StateProj::Callback { fut } => return fut.as_mut().poll(cx),
                StateProj::Refreshing {
                    fut,
                    inner,
                    req,
                    shared,
                } => {
                    let refreshed = ready!(fut.as_mut().poll(cx));
                    let (Some(mut inner), Some(mut req)) = (inner.take(), req.take()) else {
                        return Poll::Ready(Err(
                            "oidc ResponseFuture polled after completion".into()
                        ));
                    };
                    let next = match shared.after_refresh(&mut req, refreshed.as_ref()) {
                        Decision::Pass => State::Inner {
                            fut: inner.call(req),
                            cookies: refreshed.map(|r| r.cookies).unwrap_or_default(),
                        },
                        Decision::Respond(rsp) => State::Done {
                            result: Some(Ok(rsp)),
                        },
                        Decision::Refuse(err) => State::Done {
                            result: Some(Err(Box::new(err))),
                        },
                        Decision::Callback(_) | Decision::Refresh(_) => State::Done {
                            result: Some(Err("oidc: unexpected step after a refresh".into())),
                        },
                    };
                    this.state.set(next);
                }
            }
        }
    }
}

impl<S: Service<Request<B>>, B> std::fmt::Debug for ResponseFuture<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
