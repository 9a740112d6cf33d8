//! The [`Router`]: matches a request against the served [`RouteTable`] and hands it to
//! the matched rule's service stack.
//!
//! # Match, then dispatch
//!
//! Per request the router takes one `ArcSwap` guard (released before any `.await`),
//! walks the table's indices ([`RouteTable::find`]), inserts a [`MatchedRoute`] into the
//! request's extensions (one `Arc` clone of the rule) and calls the rule's service. That
//! is all it does: everything else is a tower layer in the rule's stack, built once per
//! configuration when the table is built (in [`CompiledRule`]), outermost first:
//!
//! 1. [`RateLimitLayer`](crate::ratelimit::RateLimitLayer): the rule's rate limits
//!    (429 with `Retry-After`), when its policy has any;
//! 2. [`ConcurrencyLimitLayer`](crate::limit::ConcurrencyLimitLayer) and
//!    [`BodyLimitLayer`](crate::limit::BodyLimitLayer): most requests in flight (503
//!    `overloaded`) and largest body (413), when set;
//! 3. [`TimeoutLayer::request`](crate::timeout::TimeoutLayer::request): HTTPRoute
//!    `timeouts.request`, from dispatch to the response head, retries included;
//! 4. [`ProxyHeadersLayer`](crate::proxy::ProxyHeadersLayer): hop-by-hop headers out,
//!    `X-Forwarded-*` and `X-Request-Id` in (before the filters, so a rewrite does not
//!    change `X-Forwarded-Host`);
//! 5. [`FilterLayer`](crate::filter::FilterLayer): the rule's filters (a redirect answers
//!    here);
//! 6. [`Weighted`](crate::weighted::Weighted): the weighted choice of backendRef (once
//!    per request: retries stay on the chosen backendRef, as Envoy's do), its own
//!    filters, and the call to that backendRef's stack:
//!    1. [`RetryLayer`](crate::retry::RetryLayer): the rule's retry policy with the
//!       backend's budget; each attempt avoids the endpoints tried before;
//!    2. [`TimeoutLayer::backend_request`](crate::timeout::TimeoutLayer::backend_request):
//!       HTTPRoute `timeouts.backendRequest`, one attempt;
//!    3. [`CircuitBreakerLayer`](crate::breaker::CircuitBreakerLayer): the backendRef's
//!       breaker (503 `circuit-open` naming it);
//!    4. the [`Backend`](crate::Backend) the name resolved to (a balanced upstream),
//!       shared by every rule that names it.
//!
//! Layers a rule does not configure are left out. The rule's stack is type-erased once,
//! and a backendRef's stack once when it has layers: a call boxes one response future
//! per erased stack. State that must outlive a reload (balancers, health, connection
//! pools) lives in the `Backend`s the stack refers to; limiter buckets, breaker counts
//! and retry budgets in the [`PolicyState`](crate::route::PolicyState) the table was
//! built with. Neither lives in the stack.
//!
//! # Errors
//!
//! The layers fail with typed errors ([`crate::Error`] with an [`ErrorKind`]); the
//! router's response future turns them into responses with
//! [`error_response`](crate::error_response), the one function that maps errors to
//! statuses and `x-gatekit-error` values. A request nothing matches gets the 404 of
//! [`ErrorKind::NoRoute`].
//!
//! The table is an immutable snapshot behind an [`ArcSwap`]: a config change builds a new
//! table and [`Router::store`]s it; requests already routed keep the rule they matched
//! (its stack holds what it needs) and finish on it, new requests see the new table at
//! once.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::kind_response;
use crate::route::{CompiledRule, RouteId};
use crate::{Body, BoxError, ErrorKind, RouteTable, backend, error_response};

/// A tower service that routes requests by the Gateway API rules of its [`RouteTable`].
///
/// Cloning is cheap and clones share the table, so one `Router` serves every connection.
///
/// # Readiness
///
/// Always ready: rule stacks and backends are shared services that fail fast or apply
/// backpressure inside their response futures. Errors never escape as `Err`: every
/// failure becomes a response through [`error_response`](crate::error_response) (404
/// when nothing matches, 500 for a rule without a valid backend, 504 for an expired
/// route timeout, 502/503/504 for upstream failures).
///
/// # Request extensions
///
/// Adds [`MatchedRoute`] for the layers below it (filters, backends, balancers,
/// metrics); the rule's layers read [`ConnectionInfo`](crate::ConnectionInfo) (for
/// `X-Forwarded-*` and redirects).
#[derive(Clone)]
pub struct Router {
    table: Arc<ArcSwap<RouteTable>>,
}

impl Router {
    /// A router serving `table`.
    pub fn new(table: RouteTable) -> Self {
        Self {
            table: Arc::new(ArcSwap::from_pointee(table)),
        }
    }

    /// Atomically replaces the served table. In-flight requests finish on the rules they
    /// matched; the next request is routed by `table`.
    pub fn store(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }

    /// The table served now.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    fn route(&self, mut req: Request<Body>) -> ResponseFuture {
        let table = self.table.load();
        let Some(found) = table.find(req.method(), req.uri(), req.headers()) else {
            return ResponseFuture::ready(kind_response(ErrorKind::NoRoute));
        };
        let rule = found.rule;
        req.extensions_mut().insert(MatchedRoute {
            rule: Arc::clone(rule),
            matched_prefix_len: found.matched_prefix.map(str::len),
        });
        let fut = rule.service().send(req);
        drop(table);
        ResponseFuture::dispatched(fut)
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.table.load().route_count())
            .finish()
    }
}

impl<B> Service<Request<B>> for Router
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        self.route(req.map(Body::new))
    }
}

/// The route and rule a request matched, in its extensions for the layers below the
/// [`Router`].
#[derive(Clone)]
pub struct MatchedRoute {
    rule: Arc<CompiledRule>,
    /// For a `PathPrefix` match: the length of the matched prefix (without trailing
    /// `/`), which the table matched at the start of the request's path.
    matched_prefix_len: Option<usize>,
}

impl MatchedRoute {
    /// The matched route.
    pub fn route_id(&self) -> &RouteId {
        self.rule.route_id()
    }

    /// The index of the matched rule in its route.
    pub fn rule_index(&self) -> usize {
        self.rule.rule_index()
    }

    /// The matched rule's name, if it has one.
    pub fn rule_name(&self) -> Option<&str> {
        self.rule.name()
    }

    /// The compiled rule (its timeouts and filters).
    pub fn rule(&self) -> &CompiledRule {
        &self.rule
    }

    /// For a `PathPrefix` match, the length of the matched prefix value without its
    /// trailing `/`: the request path's first bytes, as routed.
    pub(crate) fn matched_prefix_len(&self) -> Option<usize> {
        self.matched_prefix_len
    }
}

impl fmt::Debug for MatchedRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatchedRoute")
            .field("route", self.route_id())
            .field("rule", &self.rule_index())
            .finish()
    }
}

pin_project! {
    /// The response future of [`Router`].
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        // Answered without a rule (no route).
        Ready { rsp: Option<Response<Body>> },
        // In the matched rule's stack.
        Dispatched { #[pin] fut: backend::ResponseFuture },
    }
}

impl ResponseFuture {
    fn ready(rsp: Response<Body>) -> Self {
        Self {
            state: State::Ready { rsp: Some(rsp) },
        }
    }

    fn dispatched(fut: backend::ResponseFuture) -> Self {
        Self {
            state: State::Dispatched { fut },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready { .. } => "Ready",
            State::Dispatched { .. } => "Dispatched",
        };
        f.debug_tuple("ResponseFuture").field(&state).finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { rsp } => Poll::Ready(Ok(rsp.take().unwrap_or_else(|| {
                // Polled again after completion: a contract bug of the caller, answered
                // with a 500 rather than a panic.
                kind_response(ErrorKind::InvalidBackend)
            }))),
            StateProj::Dispatched { fut } => match fut.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(rsp)) => Poll::Ready(Ok(rsp)),
                Poll::Ready(Err(err)) => {
                    tracing::debug!(error = %err, "routed request failed");
                    Poll::Ready(Ok(error_response(&*err)))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use tower::ServiceExt;

    use super::*;
    use crate::route::{BackendRef, Route, Rule};
    use crate::{Backend, Body};

    fn table(timeouts: crate::route::Timeouts, backend: Backend) -> RouteTable {
        let mut backends = HashMap::new();
        backends.insert("b".to_owned(), backend);
        let mut rule = Rule::default();
        rule.backends.push(BackendRef::new("b", 1));
        rule.timeouts = timeouts;
        let mut route = Route::new(RouteId::new("ns", "r"));
        route.rules.push(rule);
        RouteTable::build(vec![route], &backends).unwrap()
    }

    fn hanging() -> Backend {
        Backend::new(tower::service_fn(|_req: Request<Body>| async {
            std::future::pending::<()>().await;
            Ok::<_, BoxError>(Response::new(Body::empty()))
        }))
    }

    fn get() -> Request<Body> {
        Request::get("http://example.com/x")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn rule_timeouts_become_504s_naming_the_timeout() {
        let mut t = crate::route::Timeouts {
            request: Some(Duration::from_millis(300)),
            ..Default::default()
        };
        let rsp = Router::new(table(t, hanging()))
            .oneshot(get())
            .await
            .unwrap();
        assert_eq!(rsp.status(), 504);
        assert_eq!(rsp.headers()["x-gatekit-error"], "request-timeout");

        t.backend_request = Some(Duration::from_millis(100));
        let start = tokio::time::Instant::now();
        let rsp = Router::new(table(t, hanging()))
            .oneshot(get())
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(rsp.headers()["x-gatekit-error"], "backend-request-timeout");
    }

    #[tokio::test]
    async fn the_backend_sees_the_matched_route_and_proxy_headers() {
        let backend = Backend::new(tower::service_fn(|req: Request<Body>| async move {
            let m = req.extensions().get::<MatchedRoute>().unwrap();
            assert_eq!(m.route_id().name(), "r");
            assert!(req.headers().contains_key("x-request-id"));
            Ok::<_, BoxError>(Response::new(Body::empty()))
        }));
        let rsp = Router::new(table(Default::default(), backend))
            .oneshot(get())
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
    }

    #[test]
    fn a_backend_request_timeout_longer_than_the_request_timeout_is_refused() {
        let mut rule = Rule::default();
        rule.timeouts.request = Some(Duration::from_secs(1));
        rule.timeouts.backend_request = Some(Duration::from_secs(2));
        let mut route = Route::new(RouteId::new("ns", "r"));
        route.rules.push(rule);
        let backends: HashMap<String, Backend> = HashMap::new();
        let err = RouteTable::build(vec![route], &backends).unwrap_err();
        assert!(err.field().ends_with("timeouts.backendRequest"), "{err}");
    }
}
