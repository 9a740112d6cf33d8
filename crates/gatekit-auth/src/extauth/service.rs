//! The service: checks each request with the authorization service, then calls the
//! inner service or answers with the denial.

use std::task::{Context, Poll};

use gatekit_core::{Body, BoxError};
use http::{Request, Response};
use tower_service::Service;

use super::{ExtAuthLayer, ResponseFuture, check};

/// Checks each request with the external authorization service of its
/// [`ExtAuthLayer`]; see the [module docs](super) for what is sent and how answers are
/// read.
///
/// Readiness is the inner service's; the ready instance is moved into the response
/// future and called once the check allowed the request.
#[derive(Clone, Debug)]
pub struct ExtAuth<S> {
    inner: S,
    layer: ExtAuthLayer,
}

impl<S> ExtAuth<S> {
    /// Wraps `inner` with `layer`'s check.
    pub fn new(inner: S, layer: ExtAuthLayer) -> Self {
        Self { inner, layer }
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

impl<S> Service<Request<Body>> for ExtAuth<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture<S> {
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let (head, body) = req.into_parts();
        let config = self.layer.config().clone();
        let check = check::check(config.clone(), head, body);
        ResponseFuture::new(check, ready, config, self.layer.stats().clone())
    }
}
