//! The [`Router`]: matches a request against the served [`RouteTable`], runs the matched
//! rule's filters and sends the request to one of the rule's weighted backends.
//!
//! The table is an immutable snapshot behind an [`ArcSwap`]: a config change builds a new
//! table and [`Router::store`]s it; requests already routed keep the rule they matched
//! (one `Arc` each) and finish on it, new requests see the new table at once. Per request
//! the router takes one `ArcSwap` guard (released before any `.await`), walks the table's
//! indices, clones one `Arc` and boxes the backend's response future once.

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
use crate::filter::RequestContext;
use crate::route::{CompiledRule, RouteId};
use crate::{Body, BoxError, ConnectionInfo, ErrorKind, RouteTable, backend, proxy};

/// A tower service that routes requests by the Gateway API rules of its [`RouteTable`].
///
/// Cloning is cheap and clones share the table, so one `Router` serves every connection.
///
/// # Readiness
///
/// Always ready: backends are shared services that fail fast or apply backpressure inside
/// their response futures. Errors never escape as `Err`: every failure becomes a response
/// through [`error_response`](crate::error_response) (404 when nothing matches, 500 for a
/// rule without a valid backend, 502/503/504 for upstream failures).
///
/// # Request extensions
///
/// Reads [`ConnectionInfo`] (for `X-Forwarded-*` and redirects) and adds [`MatchedRoute`]
/// for layers below it (backends, balancers, metrics).
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
        let conn = req.extensions().get::<ConnectionInfo>().cloned();
        let table = self.table.load();
        let Some(found) = table.find(req.method(), req.uri(), req.headers()) else {
            return ResponseFuture::ready(kind_response(ErrorKind::NoRoute));
        };
        let rule = Arc::clone(found.rule);
        let cx = RequestContext {
            matched_prefix: found.matched_prefix,
            tls: conn.as_ref().is_some_and(ConnectionInfo::is_tls),
            listener_port: conn.as_ref().map(|c| c.local_addr().port()),
        };
        proxy::prepare_request(&mut req, conn.as_ref());
        req.extensions_mut().insert(MatchedRoute {
            rule: Arc::clone(&rule),
        });
        if let Some(mut rsp) = rule.filters().apply_request(&mut req, &cx) {
            rule.filters().apply_response(&mut rsp);
            return ResponseFuture::ready(rsp);
        }
        let Some(index) = rule.pick_backend_index() else {
            return ResponseFuture::ready(kind_response(ErrorKind::InvalidBackend));
        };
        let Some(chosen) = rule.backend_at(index) else {
            return ResponseFuture::ready(kind_response(ErrorKind::InvalidBackend));
        };
        if let Some(mut rsp) = chosen.filters().apply_request(&mut req, &cx) {
            chosen.filters().apply_response(&mut rsp);
            rule.filters().apply_response(&mut rsp);
            return ResponseFuture::ready(rsp);
        }
        let Some(target) = chosen.backend() else {
            return ResponseFuture::ready(kind_response(ErrorKind::InvalidBackend));
        };
        let fut = target.send(req);
        drop(table);
        ResponseFuture::proxy(fut, rule, index)
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
        // Answered without a backend (no route, redirect, invalid backend).
        Ready { rsp: Option<Response<Body>> },
        // Waiting on a backend; the rule and the chosen backend's index give the
        // response filters.
        Proxy {
            #[pin]
            fut: backend::ResponseFuture,
            rule: Arc<CompiledRule>,
            backend: usize,
        },
    }
}

impl ResponseFuture {
    fn ready(rsp: Response<Body>) -> Self {
        Self {
            state: State::Ready { rsp: Some(rsp) },
        }
    }

    fn proxy(fut: backend::ResponseFuture, rule: Arc<CompiledRule>, backend: usize) -> Self {
        Self {
            state: State::Proxy { fut, rule, backend },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready { .. } => "Ready",
            State::Proxy { .. } => "Proxy",
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
            StateProj::Proxy { fut, rule, backend } => match fut.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(mut rsp)) => {
                    proxy::prepare_response(&mut rsp);
                    if let Some(chosen) = rule.backend_at(*backend) {
                        chosen.filters().apply_response(&mut rsp);
                    }
                    rule.filters().apply_response(&mut rsp);
                    Poll::Ready(Ok(rsp))
                }
                Poll::Ready(Err(err)) => {
                    tracing::debug!(route = %rule.route_id(), error = %err, "backend failed");
                    Poll::Ready(Ok(crate::error_response(&*err)))
                }
            },
        }
    }
}
