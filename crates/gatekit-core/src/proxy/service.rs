//! [`ProxyHeaders`].

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{ResponseFuture, prepare_request};
use crate::{Body, ConnectionInfo};

/// A service that runs [`prepare_request`](super::prepare_request) on each request
/// (hop-by-hop headers removed, `X-Forwarded-*` and `X-Request-Id` set from the
/// [`ConnectionInfo`] in its extensions, if any) and
/// [`prepare_response`](super::prepare_response) on each response of the inner service.
///
/// Readiness and errors are the inner service's.
#[derive(Clone, Debug)]
pub struct ProxyHeaders<S> {
    inner: S,
}

impl<S> ProxyHeaders<S> {
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

impl<S> Service<Request<Body>> for ProxyHeaders<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // One reference-count increment at most (the TLS details are shared).
        let conn = req.extensions().get::<ConnectionInfo>().cloned();
        prepare_request(&mut req, conn.as_ref());
        ResponseFuture::new(self.inner.call(req))
    }
}
