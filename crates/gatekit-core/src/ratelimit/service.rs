//! [`RateLimit`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::future::Headers;
use super::{Decision, RateLimitLayer, RateLimiter, ResponseFuture};
use crate::{BoxError, Error};

/// A service that passes a request on only when every limiter of its
/// [`RateLimitLayer`] allows it (see the [module docs](super)).
///
/// The limiters' state is shared (each is an `Arc<RateLimiter>`), so clones of this
/// service, one per connection, enforce one limit together. The decision is made in
/// `call`, because the key comes from the request; readiness is the inner service's.
/// A refused request fails with
/// [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited) carrying `Retry-After`,
/// `RateLimit-Policy` and `RateLimit` headers ([`RateLimiter::refusal`]), which
/// [`error_response`](crate::error_response) puts into the 429 response; the inner
/// service is not called.
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`, enforcing the limiters of `layer`.
    pub fn new(inner: S, layer: RateLimitLayer) -> Self {
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

impl<S, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        match admit(self.layer.limiters(), &req, Instant::now()) {
            Ok(headers) => ResponseFuture::inner(self.inner.call(req), headers),
            Err(error) => ResponseFuture::refused(error),
        }
    }
}

/// Checks `req` against each limiter in turn, counting it in each that allows it. The
/// headers of the tightest limit (fewest remaining; the first of equals) for an allowed
/// request; `None` when no limit applied.
///
/// # Errors
///
/// The refusal when a limiter refuses: see [`refuse`].
fn admit<B>(
    limiters: &[Arc<RateLimiter>],
    req: &Request<B>,
    now: Instant,
) -> Result<Option<Headers>, Error> {
    let mut tightest: Option<(&RateLimiter, Decision)> = None;
    for (i, limiter) in limiters.iter().enumerate() {
        let Some(key) = limiter.key(req) else {
            continue;
        };
        let decision = limiter.acquire(key, limiter.nanos(now), true);
        if !decision.is_allowed() {
            return Err(refuse(limiters, req, now, i, decision));
        }
        if tightest.is_none_or(|(_, t)| decision.remaining() < t.remaining()) {
            tightest = Some((limiter, decision));
        }
    }
    Ok(tightest.map(|(limiter, d)| Headers {
        policy: limiter.policy_header(&d).clone(),
        limit: limiter.limit_header(&d),
    }))
}

/// The refusal of `req`, which `limiters[first]` refused with `decision`: the limiters
/// after it are asked without counting the request (so it costs nothing there), the
/// ones before it that counted it give it back, and the error carries the headers of
/// the refusing limiter with the longest wait.
fn refuse<B>(
    limiters: &[Arc<RateLimiter>],
    req: &Request<B>,
    now: Instant,
    first: usize,
    decision: Decision,
) -> Error {
    let mut worst = (&*limiters[first], decision);
    for limiter in &limiters[first + 1..] {
        let Some(key) = limiter.key(req) else {
            continue;
        };
        let d = limiter.acquire(key, limiter.nanos(now), false);
        if !d.is_allowed() && d.retry_after() > worst.1.retry_after() {
            worst = (limiter, d);
        }
    }
    for limiter in &limiters[..first] {
        if let Some(key) = limiter.key(req) {
            limiter.release(key);
        }
    }
    let (limiter, d) = worst;
    limiter.refusal(&d)
}
