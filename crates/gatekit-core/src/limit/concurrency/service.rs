//! [`ConcurrencyLimit`].

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use tower_service::Service;

use super::{InFlightLimit, ResponseFuture};
use crate::BoxError;

/// A service that admits a request only while fewer than the [`InFlightLimit`]'s
/// maximum are in flight, and otherwise fails the call at once with
/// [`ErrorKind::Overloaded`](crate::ErrorKind::Overloaded) (see the
/// [module docs](super)).
///
/// Readiness is the inner service's: a full limit does not make the service pending
/// (that would queue the caller); the call fails instead. Clones share the limit.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    limit: Arc<InFlightLimit>,
}

impl<S> ConcurrencyLimit<S> {
    /// Wraps `inner`, admitting its requests against `limit`.
    pub const fn new(inner: S, limit: Arc<InFlightLimit>) -> Self {
        Self { inner, limit }
    }

    /// The shared limit.
    pub fn limit(&self) -> &Arc<InFlightLimit> {
        &self.limit
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

impl<S, R, B> Service<R> for ConcurrencyLimit<S>
where
    S: Service<R, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<crate::Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        match self.limit.try_acquire() {
            Some(slot) => ResponseFuture::admitted(self.inner.call(req), slot),
            None => ResponseFuture::rejected(),
        }
    }
}
