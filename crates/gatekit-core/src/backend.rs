//! Backends: the services a route's rules send requests to, looked up by name.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_util::future::poll_fn;
use http::{Request, Response};
use tower_service::Service;

use crate::{Body, BoxError};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

/// A type-erased backend: a single address, or a balanced upstream from `gatekit-lb`.
///
/// Cloning is one atomic increment and calling takes `&self`, so one `Backend` is shared
/// by every connection and every route that names it. This is the one erasure point on
/// the request path: each call boxes its response future once.
///
/// # Readiness
///
/// A `Backend` is always ready. The wrapped service is cloned per call and driven to
/// readiness inside the response future, so backpressure or fail-fast belong to the
/// wrapped service (a balancer fails fast with "no healthy endpoint").
#[derive(Clone)]
pub struct Backend {
    inner: Arc<dyn Call>,
}

pub(crate) trait Call: Send + Sync {
    fn call(&self, req: Request<Body>) -> BoxFuture;
}

struct Erased<S>(S);

impl<S> Call for Erased<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    fn call(&self, req: Request<Body>) -> BoxFuture {
        call_owned(self.0.clone(), req)
    }
}

/// Calls `svc`, a service made or cloned for this one request, and boxes its response
/// future. Shared services are ready at once (see [`Backend`]'s docs): then only their
/// response future is boxed. Otherwise readiness is driven inside the boxed future.
fn call_owned<S>(mut svc: S, req: Request<Body>) -> BoxFuture
where
    S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {
            let fut = svc.call(req);
            Box::pin(async move { fut.await.map_err(Into::into) })
        }
        Poll::Ready(Err(err)) => {
            let err = err.into();
            Box::pin(async move { Err(err) })
        }
        Poll::Pending => Box::pin(async move {
            poll_fn(|cx| svc.poll_ready(cx)).await.map_err(Into::into)?;
            svc.call(req).await.map_err(Into::into)
        }),
    }
}

impl Backend {
    /// Wraps a service as a backend. The service is cloned per request, so it should be
    /// cheap to clone (an `Arc` inside).
    pub fn new<S>(service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Self {
            inner: Arc::new(Erased(service)),
        }
    }

    /// A backend from a type that hands out its own boxed future (no second box).
    pub(crate) fn from_call(call: impl Call + 'static) -> Self {
        Self {
            inner: Arc::new(call),
        }
    }

    /// Sends a request to the backend.
    pub fn send(&self, req: Request<Body>) -> ResponseFuture {
        ResponseFuture {
            inner: self.inner.call(req),
        }
    }

    /// Sends a request to `svc`, a service made or cloned for it: what a `Backend`
    /// holding `svc` does, without keeping the service.
    pub(crate) fn send_once<S>(svc: S, req: Request<Body>) -> ResponseFuture
    where
        S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        ResponseFuture {
            inner: call_owned(svc, req),
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

impl Service<Request<Body>> for Backend {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture {
        self.send(req)
    }
}

/// The response future of a [`Backend`].
pub struct ResponseFuture {
    inner: BoxFuture,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Where a route table finds the backends its rules name.
pub trait Backends {
    /// The backend called `name`, or `None` when no such backend exists (the rule's
    /// share of traffic for it then gets a 500, as the Gateway API specifies).
    fn backend(&self, name: &str) -> Option<Backend>;

    /// The backend called `name` as a backendRef of `route`'s rules (for instance
    /// labelled with that route's metrics). The default: [`backend`](Self::backend).
    fn backend_for(&self, route: &crate::route::RouteId, name: &str) -> Option<Backend> {
        let _ = route;
        self.backend(name)
    }

    /// Where rules keep the state of their traffic policies across table builds (rate
    /// limiter buckets, breaker counts, retry budgets). `None`, the default: every build
    /// starts with fresh state.
    fn policy_state(&self) -> Option<&crate::route::PolicyState> {
        None
    }

    /// Extensions for the error responses of `route`'s rules (for instance the
    /// metrics series a refusal is counted in). A backend's own
    /// [`WithResponseExtensions`](crate::WithResponseExtensions) take precedence over
    /// them. `None`, the default: nothing is added.
    ///
    /// Each rule keeps the `Arc` it is given (an error response asks it for its
    /// extensions): return the same one for every rule of a route, and for every build
    /// that compiles the route again, to keep one copy per route. An
    /// `Arc<http::Extensions>` will do; a type of one's own can make the extensions at
    /// the error instead of keeping a map per route.
    fn error_extensions(&self, route: &crate::route::RouteId) -> Option<Arc<dyn ErrorExtensions>> {
        let _ = route;
        None
    }

    /// The access policy called `name`, which a rule names in
    /// [`RulePolicy::access`](crate::route::RulePolicy::access). `None`, the default
    /// for every name: a rule naming one refuses every request
    /// ([`ErrorKind::InvalidAuth`](crate::ErrorKind::InvalidAuth)).
    fn access_policy(&self, name: &str) -> Option<std::sync::Arc<dyn crate::access::AccessPolicy>> {
        let _ = name;
        None
    }
}

impl<S: BuildHasher> Backends for HashMap<String, Backend, S> {
    fn backend(&self, name: &str) -> Option<Backend> {
        self.get(name).cloned()
    }
}

impl<F> Backends for F
where
    F: Fn(&str) -> Option<Backend>,
{
    fn backend(&self, name: &str) -> Option<Backend> {
        self(name)
    }
}

/// What a route's rules add to their error responses
/// ([`Backends::error_extensions`]): asked once per error response (never on a
/// successful request's way).
pub trait ErrorExtensions: Send + Sync + 'static {
    /// The extensions of one error response. Takes the `Arc` (a clone of the rule's),
    /// so an implementation can put a handle to itself into them without allocating.
    fn extensions(self: Arc<Self>) -> http::Extensions;
}

/// The extensions themselves, cloned into each error response.
impl ErrorExtensions for http::Extensions {
    fn extensions(self: Arc<Self>) -> http::Extensions {
        (*self).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backend_calls_the_wrapped_service_after_readiness() {
        let svc = tower::service_fn(|req: Request<Body>| async move {
            Ok::<_, BoxError>(Response::new(Body::from(req.uri().path().to_owned())))
        });
        let backend = Backend::new(svc);
        let rsp = backend
            .send(Request::get("/hello").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = http_body_util::BodyExt::collect(rsp.into_body())
            .await
            .unwrap();
        assert_eq!(&body.to_bytes()[..], b"/hello");
    }
}
