//! [`Breaker`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::state::{Acquired, Permit};
use super::{CircuitBreaker, ResponseFuture};
use crate::retry::Attempt;
use crate::{Body, BoxError};

/// A service whose requests count against a [`CircuitBreaker`]'s thresholds (see the
/// [module docs](super)): within them a request goes to the inner service at once or
/// after waiting its turn in the pending queue; over them it fails at once with
/// [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen).
///
/// Readiness is the inner service's. The thresholds are checked in `call`, without
/// waiting: a refused request's future is ready with the error, a queued request's
/// future holds the inner service made ready for it (a clone takes its place here,
/// which is why `S: Clone`) until a slot frees.
#[derive(Clone, Debug)]
pub struct Breaker<S> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
}

impl<S> Breaker<S> {
    /// Wraps `inner`, counting against `breaker`.
    pub fn new(inner: S, breaker: Arc<CircuitBreaker>) -> Self {
        Self { inner, breaker }
    }

    /// The shared breaker.
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
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

impl<S> Service<Request<Body>> for Breaker<S>
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
        let retry = match req.extensions().get::<Attempt>() {
            Some(attempt) if attempt.is_retry() => match self.breaker.try_retry() {
                Ok(slot) => Some(slot),
                Err(threshold) => {
                    return ResponseFuture::refused(self.breaker.reject(threshold));
                }
            },
            _ => None,
        };
        match self.breaker.acquire() {
            Ok(Acquired::Now(slot)) => {
                ResponseFuture::called(self.inner.call(req), Permit::new(slot, retry))
            }
            Ok(Acquired::Queued(waiter)) => {
                // The ready service goes with the request; its clone stays here.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::queued(waiter, ready, req, retry)
            }
            Err(threshold) => ResponseFuture::refused(self.breaker.reject(threshold)),
        }
    }
}
