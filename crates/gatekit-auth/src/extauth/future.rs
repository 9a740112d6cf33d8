//! The response future: the check, then the inner service's response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use gatekit_core::{Body, BoxError, Error, ErrorKind};
use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Denied;
use super::check::{self, CheckWithHead, Failure, Op, Verdict};
use super::config::{ExtAuthConfig, ExtAuthStats};

pin_project! {
    /// The response future of [`ExtAuth`](super::ExtAuth).
    pub struct ResponseFuture<S: Service<Request<Body>>> {
        #[pin]
        state: State<S>,
        config: Arc<ExtAuthConfig>,
        stats: Arc<ExtAuthStats>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Request<Body>>> {
        Checking { check: CheckWithHead, inner: Option<S> },
        Inner {
            #[pin]
            fut: S::Future,
            response_edits: Vec<(HeaderName, HeaderValue, Op)>,
        },
    }
}

impl<S: Service<Request<Body>>> ResponseFuture<S> {
    pub(super) fn new(
        check: CheckWithHead,
        inner: S,
        config: Arc<ExtAuthConfig>,
        stats: Arc<ExtAuthStats>,
    ) -> Self {
        Self {
            state: State::Checking {
                check,
                inner: Some(inner),
            },
            config,
            stats,
        }
    }
}

impl<S: Service<Request<Body>>> std::fmt::Debug for ResponseFuture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { check, inner } => {
                    let (head, checked) = ready!(check.as_mut().poll(cx));
                    let Some(mut inner) = inner.take() else {
                        return Poll::Ready(Err("extauth future polled after completion".into()));
                    };
                    let mut req = Request::from_parts(head, checked.body);
                    let mut response_edits = Vec::new();
                    match checked.outcome {
                        Ok(Verdict::Allow(edits)) => {
                            ExtAuthStats::count(&this.stats.allowed);
                            edits.apply_to_request(req.headers_mut());
                            if edits.has_response_edits() {
                                response_edits = edits.response;
                            }
                        }
                        Ok(Verdict::Deny(mut rsp)) => {
                            ExtAuthStats::count(&this.stats.denied);
                            rsp.extensions_mut().insert(Denied);
                            return Poll::Ready(Ok(rsp));
                        }
                        Err(Failure::TooLarge) => {
                            ExtAuthStats::count(&this.stats.too_large);
                            return Poll::Ready(Err(Error::new(ErrorKind::PayloadTooLarge).into()));
                        }
                        Err(Failure::Client(err)) => {
                            return Poll::Ready(Err(Error::with_source(
                                ErrorKind::BadRequest,
                                err,
                            )
                            .into()));
                        }
                        Err(Failure::Unavailable(err)) if this.config.fail_open => {
                            ExtAuthStats::count(&this.stats.failed_open);
                            tracing::warn!(error = %err, "extauth: service unavailable, failing open");
                        }
                        Err(Failure::Unavailable(err)) => {
                            ExtAuthStats::count(&this.stats.failed_closed);
                            tracing::warn!(error = %err, "extauth: service unavailable, failing closed");
                            return Poll::Ready(Err(Error::with_source(
                                ErrorKind::AuthUnavailable,
                                err,
                            )
                            .into()));
                        }
                    }
                    let fut = inner.call(req);
                    this.state.set(State::Inner {
                        fut,
                        response_edits,
                    });
                }
                StateProj::Inner {
                    fut,
                    response_edits,
                } => {
                    let mut rsp = ready!(fut.poll(cx)).map_err(Into::into)?;
                    check::apply(rsp.headers_mut(), response_edits);
                    return Poll::Ready(Ok(rsp));
                }
            }
        }
    }
}
