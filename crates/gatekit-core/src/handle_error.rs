//! Turning the errors of a service stack into responses, so the stack can be served by
//! hyper (which wants an infallible service).
//!
//! tower middlewares such as `Timeout` or `LoadShed` fail with an error; hyper would
//! close the connection on it. [`HandleErrorLayer`] sits on top of such a stack and
//! answers each error with [`error_response`](crate::error_response): 504 for a
//! timeout, 503 for overload, and so on. The [`Router`](crate::Router) needs none: it
//! is infallible and answers its rules' errors itself, with the same function. Each
//! call clones the inner service (as the
//! [`Router`](crate::Router) and most tower stacks are cheap `Arc` clones) and drives its
//! readiness inside the response future, so the layer itself is always ready.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{Body, BoxError, error_response};

/// Wraps a service in [`HandleError`].
#[derive(Clone, Copy, Debug, Default)]
pub struct HandleErrorLayer;

impl HandleErrorLayer {
    /// A new layer.
    pub const fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for HandleErrorLayer {
    type Service = HandleError<S>;

    fn layer(&self, inner: S) -> HandleError<S> {
        HandleError::new(inner)
    }
}

/// An always-ready service that answers the inner service's errors (from readiness or
/// from the call) with gatekit's error responses.
#[derive(Clone, Debug)]
pub struct HandleError<S> {
    inner: S,
}

impl<S> HandleError<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R> Service<R> for HandleError<S>
where
    S: Service<R, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<S, R>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        // Take the clone that may be ready and leave a fresh one behind (tower's rule
        // for services cloned per call).
        let clone = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Ready {
                svc,
                req: Some(req),
            },
        }
    }
}

pin_project! {
    /// The response future of [`HandleError`].
    pub struct ResponseFuture<S: Service<R>, R> {
        #[pin]
        state: State<S, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<R>, R> {
        Ready { svc: S, req: Option<R> },
        Call { #[pin] fut: S::Future },
    }
}

impl<S: Service<R>, R> fmt::Debug for ResponseFuture<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, R> Future for ResponseFuture<S, R>
where
    S: Service<R, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Ready { svc, req } => {
                    if let Err(err) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Ok(error_response(&*err.into())));
                    }
                    let Some(req) = req.take() else {
                        // Polled after completion: a caller bug, answered, not panicked.
                        return Poll::Ready(Ok(error_response(&*BoxError::from(
                            "response future polled after completion",
                        ))));
                    };
                    let fut = svc.call(req);
                    this.state.set(State::Call { fut });
                }
                StateProj::Call { fut } => {
                    return Poll::Ready(Ok(
                        ready!(fut.poll(cx)).unwrap_or_else(|err| error_response(&*err.into()))
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;
    use std::time::Duration;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn a_timeout_becomes_a_504_and_success_passes_through() {
        let slow = tower::service_fn(|req: Request<Body>| async move {
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok::<_, BoxError>(Response::new(Body::from("ok")))
        });
        let svc = HandleErrorLayer::new()
            .layer(tower::timeout::Timeout::new(slow, Duration::from_secs(1)));
        let rsp = svc
            .clone()
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(rsp.status(), 504);
        assert_eq!(rsp.headers()["x-gatekit-error"], "upstream-timeout");
        let rsp = svc
            .oneshot(Request::get("/fast").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
    }

    #[tokio::test]
    async fn an_error_from_the_call_becomes_a_response() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        handle.send_error(crate::Error::new(crate::ErrorKind::Overloaded));
        let rsp = HandleError::new(svc)
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(rsp.status(), 503);
        assert_eq!(rsp.headers()["x-gatekit-error"], "overloaded");
    }
}
