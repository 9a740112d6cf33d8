//! [`GlobalRateLimit`] and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use gatekit_core::BoxError;
use gatekit_core::ratelimit::Decision;
use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::RedisLimiter;

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// A service that passes a request on only when its [`RedisLimiter`] allows it.
///
/// The decision needs a round trip to Redis, so it is made in the response future: `call`
/// builds the key, then the future asks Redis (or the fallback) and calls the inner
/// service (a clone of it, ready from `poll_ready`) only when allowed. A refused request
/// fails with [`ErrorKind::RateLimited`](gatekit_core::ErrorKind::RateLimited) and
/// gatekit-core's `Retry-After`, `RateLimit-Policy` and `RateLimit` headers; an allowed
/// one gets `RateLimit-Policy` and `RateLimit` appended to its response. A request the
/// limit does not apply to goes straight on. Per request: the key (one `Vec`) and one
/// boxed decision future (redis-rs boxes its own command future as well).
#[derive(Clone, Debug)]
pub struct GlobalRateLimit<S> {
    inner: S,
    limiter: Arc<RedisLimiter>,
}

impl<S> GlobalRateLimit<S> {
    /// Wraps `inner`, enforcing `limiter`.
    pub fn new(inner: S, limiter: Arc<RedisLimiter>) -> Self {
        Self { inner, limiter }
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

type Deciding = Pin<Box<dyn Future<Output = Option<Decision>> + Send>>;

impl<S, ReqB, ResB> Service<Request<ReqB>> for GlobalRateLimit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<ReqB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The ready service goes with the request; this one gets a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(key) = self.limiter.key(&req) else {
            return ResponseFuture {
                state: State::Inner {
                    fut: inner.call(req),
                    headers: None,
                },
            };
        };
        let limiter = self.limiter.clone();
        let deciding = {
            let limiter = limiter.clone();
            Box::pin(async move { limiter.decide(&key).await })
        };
        ResponseFuture {
            state: State::Deciding {
                deciding,
                call: Some((inner, req, limiter)),
            },
        }
    }
}

pin_project! {
    /// The response future of [`GlobalRateLimit`]: the decision, then the inner
    /// service's response or the refusal.
    pub struct ResponseFuture<S: Service<Req>, Req> {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Req>, Req> {
        Deciding {
            deciding: Deciding,
            call: Option<(S, Req, Arc<RedisLimiter>)>,
        },
        Inner {
            #[pin]
            fut: S::Future,
            headers: Option<(HeaderValue, HeaderValue)>,
        },
        Done,
    }
}

impl<S, ReqB, ResB> Future for ResponseFuture<S, Request<ReqB>>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Deciding { deciding, call } => {
                    let decision = ready!(deciding.as_mut().poll(cx));
                    let Some((mut inner, req, limiter)) = call.take() else {
                        state.set(State::Done);
                        continue;
                    };
                    let headers = match decision {
                        Some(d) if !d.is_allowed() => {
                            let error = limiter.refusal(&d);
                            state.set(State::Done);
                            return Poll::Ready(Err(Box::new(error)));
                        }
                        Some(d) => Some((
                            limiter.local().policy_header(&d).clone(),
                            limiter.local().limit_header(&d),
                        )),
                        None => None,
                    };
                    state.set(State::Inner {
                        fut: inner.call(req),
                        headers,
                    });
                }
                StateProj::Inner { fut, headers } => {
                    let mut rsp = ready!(fut.poll(cx)).map_err(Into::into)?;
                    if let Some((policy, limit)) = headers.take() {
                        rsp.headers_mut().append(RATELIMIT_POLICY, policy);
                        rsp.headers_mut().append(RATELIMIT, limit);
                    }
                    return Poll::Ready(Ok(rsp));
                }
                StateProj::Done => {
                    panic!("GlobalRateLimit's ResponseFuture polled after it completed")
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
