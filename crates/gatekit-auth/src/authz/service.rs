//! The service: decides each request before the inner service sees it.

use std::task::{Context, Poll};

use gatekit_core::{BoxError, Error, ErrorKind};
use http::Request;
use tower_service::Service;

use super::{Action, AuthzLayer, ResponseFuture};

/// Checks each request against the rules of its [`AuthzLayer`]: allowed requests go to
/// the inner service unchanged, denied ones end in a
/// [`Forbidden`](ErrorKind::Forbidden) error. The decision is synchronous and
/// allocates nothing.
#[derive(Clone, Debug)]
pub struct Authz<S> {
    inner: S,
    layer: AuthzLayer,
}

impl<S> Authz<S> {
    /// Wraps `inner` with `layer`'s rules.
    pub fn new(inner: S, layer: AuthzLayer) -> Self {
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

impl<S, B> Service<Request<B>> for Authz<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.layer.config().decide(&req) {
            (Action::Allow, _) => ResponseFuture::inner(self.inner.call(req)),
            (Action::Deny, rule) => {
                let name = rule.and_then(|i| self.layer.config().rules()[i].name());
                tracing::debug!(rule = ?rule, name = ?name, "authz: request denied");
                ResponseFuture::refused(Error::new(ErrorKind::Forbidden))
            }
        }
    }
}
