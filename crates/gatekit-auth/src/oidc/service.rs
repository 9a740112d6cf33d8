//! [`Oidc`]: the service that requires a login session on each request.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use gatekit_core::{Body, BoxError};
use http::{Request, Response};
use tower_service::Service;

use super::flow::Shared;
use super::future::ResponseFuture;

/// Requires a login session before calling the inner service; built by
/// [`OidcLayer`](super::OidcLayer).
///
/// Generic over the request body (only the head is read). Readiness is the inner
/// service's; when a session is being refreshed, the ready instance is moved into the
/// response future and called after the refresh.
pub struct Oidc<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Oidc<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Oidc<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Oidc<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oidc")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for Oidc<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let decision = self.shared.decide(&mut req);
        ResponseFuture::new(decision, req, &mut self.inner, self.shared.clone())
    }
}
