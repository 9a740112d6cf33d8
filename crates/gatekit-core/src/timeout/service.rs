//! [`Timeout`].

use std::task::{Context, Poll};

use tower_service::Service;

use super::{ResponseFuture, TimeoutLayer};
use crate::BoxError;

/// A service whose calls fail with a timeout error when the inner service's response
/// future has not resolved within the layer's duration (see the [module docs](super)).
///
/// Readiness is the inner service's and is not bounded: the deadline starts at `call`.
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    config: TimeoutLayer,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with the deadline and error kind of `config`.
    pub const fn new(inner: S, config: TimeoutLayer) -> Self {
        Self { inner, config }
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

impl<S, R> Service<R> for Timeout<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let sleep = self.config.duration().map(tokio::time::sleep);
        ResponseFuture::new(self.inner.call(req), sleep, self.config.kind())
    }
}
