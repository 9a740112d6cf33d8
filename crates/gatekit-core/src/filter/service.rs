//! [`Filters`].

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{FilterChain, ResponseFuture};
use crate::{Body, BoxError};

/// A service that applies a [`FilterChain`]: its request filters before the inner
/// service, its response filters to every response (the inner service's, or the one a
/// request filter answered with, such as a redirect, in which case the inner service is
/// not called).
///
/// The [`RequestContext`](super::RequestContext) the filters need comes from the
/// request's extensions: the [`MatchedRoute`](crate::MatchedRoute) the
/// [`Router`](crate::Router) inserted (for `ReplacePrefixMatch`) and the
/// [`ConnectionInfo`](crate::ConnectionInfo) of the connection (for redirects' scheme
/// and port). Without them a prefix replacement leaves the path as it is and redirects
/// default to `http` and the URI's port.
///
/// Readiness is the inner service's. An empty chain costs one branch per request.
#[derive(Clone, Debug)]
pub struct Filters<S> {
    inner: S,
    chain: FilterChain,
}

impl<S> Filters<S> {
    /// Wraps `inner`, applying `chain`.
    pub const fn new(inner: S, chain: FilterChain) -> Self {
        Self { inner, chain }
    }

    /// The chain applied.
    pub fn chain(&self) -> &FilterChain {
        &self.chain
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

impl<S> Service<Request<Body>> for Filters<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let rcx = self.chain.response_context(&req);
        if let Some(mut rsp) = self.chain.apply_routed(&mut req) {
            self.chain.apply_response_with(&mut rsp, &rcx);
            return ResponseFuture::answered(rsp);
        }
        ResponseFuture::inner(self.inner.call(req), self.chain.clone(), rcx)
    }
}
