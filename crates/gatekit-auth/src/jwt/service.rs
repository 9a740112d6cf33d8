//! [`Jwt`]: the service that checks each request's token.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use gatekit_core::BoxError;
use http::Request;
use tower_service::Service;

use super::verify::Shared;
use crate::future::ResponseFuture;

/// Requires a valid JWT before calling the inner service; built by
/// [`JwtLayer`](super::JwtLayer).
///
/// Generic over the request body: only the head is read (and, when the provider does
/// not forward the token, edited).
pub struct Jwt<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Jwt<S> {
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

impl<S: Clone> Clone for Jwt<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Jwt<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for Jwt<S>
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.shared.check(&mut req) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(error) => ResponseFuture::refused(error),
        }
    }
}
