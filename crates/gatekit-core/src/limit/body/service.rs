//! [`BodyLimit`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, header};
use tower_service::Service;

use super::{LimitedBody, ResponseFuture};
use crate::{Body, BoxError};

/// A service that refuses request bodies larger than a bound: known to be larger at
/// once, found to be larger while streaming with an error frame (see the
/// [module docs](super)).
///
/// Requests reach the inner service with a gatekit [`Body`]. Readiness is the inner
/// service's.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit<S> {
    inner: S,
    max: u64,
}

impl<S> BodyLimit<S> {
    /// Wraps `inner`, allowing request bodies of at most `max_bytes` bytes.
    pub const fn new(inner: S, max_bytes: u64) -> Self {
        Self {
            inner,
            max: max_bytes,
        }
    }

    /// The largest request body allowed, in bytes.
    pub const fn max(&self) -> u64 {
        self.max
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

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<Body>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let hint = req.body().size_hint();
        let declared = content_length(req.headers());
        if declared.is_some_and(|n| n > self.max) || hint.lower() > self.max {
            return ResponseFuture::rejected();
        }
        // A body that cannot pass the bound goes on as it is (no wrapper, no
        // allocation): an empty one, or one whose size hint promises at most `max`
        // bytes, as a `Content-Length` body read by hyper does (hyper enforces it).
        if http_body::Body::is_end_stream(req.body()) || hint.upper().is_some_and(|n| n <= self.max)
        {
            return ResponseFuture::called(self.inner.call(req.map(Body::new)), None);
        }
        let cut = Arc::new(AtomicBool::new(false));
        let body = |body| Body::new(LimitedBody::with_signal(body, self.max, cut.clone()));
        let req = req.map(body);
        ResponseFuture::called(self.inner.call(req), Some(cut))
    }
}

/// The request's `Content-Length`, when it is one decimal number (hyper has refused
/// anything else on requests it read; other values are left to the counting body).
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().ok()?.parse().ok(),
        _ => None,
    }
}
