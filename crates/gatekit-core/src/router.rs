//! The [`Router`]: picks the listener for a request's host, matches the request against
//! that listener's [`RouteTable`] and hands it to the matched rule's service stack.
//!
//! # Listener, match, then dispatch
//!
//! Per request the router takes one `ArcSwap` guard on the port's [`PortTable`]
//! (released before any `.await`), picks the most specific listener for the host (and,
//! on TLS, checks that the server name picks the same one: 421 otherwise), walks that
//! listener's table's indices ([`RouteTable::find`]), inserts a [`MatchedRoute`] into the
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
//! per erased stack. A rule without rate limits, concurrency or body limits, session
//! persistence or access policies (most rules) keeps no stack of its own: each call
//! assembles steps 3 to 6 from the rule's parts, as a call of an erased stack clones
//! it, and boxes the same one response future ([`CompiledRule::send`]). State that must outlive a reload (balancers, health, connection
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
//! [`ErrorKind::NoRoute`]. For a gRPC call (`content-type: application/grpc`) those
//! error responses become gRPC trailers-only answers (HTTP 200 with `grpc-status` and
//! `grpc-message`, see [`ErrorKind::grpc_status`]), so a gRPC client sees
//! `UNIMPLEMENTED` for no route and `UNAVAILABLE` for an unreachable backend instead of a
//! plain-text body it cannot decode.
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

use crate::error::{grpc_error_response, is_grpc, kind_response};
use crate::filter::ErrorCors;
use crate::route::host::{self, MAX_HOST};
use crate::route::{CompiledRule, PortTable, RouteId, RuleMatch};
use crate::{Body, BoxError, ConnectionInfo, ErrorKind, RouteTable, backend, error_response};

/// A tower service that routes requests by the Gateway API rules of its [`PortTable`]:
/// the listener for the request's host first, then the rule within that listener's
/// [`RouteTable`] (see [`route::PortTable`](crate::route::PortTable) for listener
/// isolation).
///
/// A router built from one [`RouteTable`] ([`Router::new`] takes anything that converts
/// into a [`PortTable`]) serves it as one listener without hostname: every request is
/// matched in it, as before listeners had tables of their own.
///
/// Cloning is cheap and clones share the table, so one `Router` serves every connection.
///
/// # Readiness
///
/// Always ready: rule stacks and backends are shared services that fail fast or apply
/// backpressure inside their response futures. Errors never escape as `Err`: every
/// failure becomes a response through [`error_response`](crate::error_response) (404
/// when nothing matches, 421 for a misdirected request, 500 for a rule without a valid
/// backend, 504 for an expired route timeout, 502/503/504 for upstream failures).
///
/// # Misdirected requests
///
/// On a TLS connection whose client sent a server name (SNI, read from the
/// [`ConnectionInfo`](crate::ConnectionInfo) in the request's extensions), the listener
/// chosen by the server name and the one chosen by the request's host must be the same;
/// otherwise the answer is 421 ([`ErrorKind::MisdirectedRequest`]). This catches HTTP/2
/// connection reuse for a host whose certificate happened to cover it, too. Requests
/// without a server name (plain HTTP, TLS without SNI) are not checked, and neither are
/// ports with one listener without hostname; except that on a port whose listeners
/// differ in TLS settings ([`TlsInfo::strict_sni`](crate::TlsInfo::strict_sni)), TLS without SNI may reach only the
/// listener without hostname (its settings are the ones the handshake used).
///
/// # Request extensions
///
/// Adds [`MatchedRoute`] for the layers below it (filters, backends, balancers,
/// metrics); the rule's layers read [`ConnectionInfo`](crate::ConnectionInfo) (for
/// `X-Forwarded-*` and redirects).
#[derive(Clone)]
pub struct Router {
    table: Arc<ArcSwap<PortTable>>,
}

impl Router {
    /// A router serving `table`: a [`PortTable`], or a [`RouteTable`] as a port with one
    /// listener without hostname.
    pub fn new(table: impl Into<PortTable>) -> Self {
        Self {
            table: Arc::new(ArcSwap::from_pointee(table.into())),
        }
    }

    /// Atomically replaces the served table. In-flight requests finish on the rules they
    /// matched; the next request is routed by `table`.
    pub fn store(&self, table: impl Into<PortTable>) {
        self.table.store(Arc::new(table.into()));
    }

    /// Atomically replaces listener `index`'s route table alone; the other listeners'
    /// tables (and their rule stacks) are kept as they are. Whether the listener exists.
    pub fn store_listener(&self, index: usize, table: RouteTable) -> bool {
        let table = Arc::new(table);
        let mut stored = false;
        self.table.rcu(|current| {
            // `rcu` calls this again when another store raced it: each attempt builds
            // from the port it sees, sharing the one new table.
            match current.with_shared_listener_table(index, Arc::clone(&table)) {
                Some(next) => {
                    stored = true;
                    Arc::new(next)
                }
                None => {
                    stored = false;
                    Arc::clone(current)
                }
            }
        });
        stored
    }

    /// The table served now.
    pub fn table(&self) -> Arc<PortTable> {
        self.table.load_full()
    }

    fn route(&self, req: Request<Body>) -> ResponseFuture {
        let port = self.table.load();
        if port.is_single() {
            let found = port.table(0).find(req.method(), req.uri(), req.headers());
            return dispatch(found, req);
        }
        // Listener isolation: the most specific listener for the host, then its routes
        // only.
        let mut buf = [0u8; MAX_HOST];
        let host = host::raw_request_host(req.uri(), req.headers())
            .and_then(|h| host::lowercase(h, &mut buf));
        let listener = port.select(host);
        if let Some(tls) = req
            .extensions()
            .get::<ConnectionInfo>()
            .and_then(ConnectionInfo::tls)
        {
            let sni_listener = match tls.server_name() {
                Some(sni) => {
                    let mut sni_buf = [0u8; MAX_HOST];
                    Some(host::lowercase(sni, &mut sni_buf).and_then(|h| port.select(Some(h))))
                }
                // Listeners with different TLS settings: no server name chose the
                // default's settings, which hold for the listener without hostname.
                None if tls.strict_sni() => Some(port.select(None)),
                None => None,
            };
            if let Some(sni_listener) = sni_listener
                && sni_listener != listener
            {
                return ResponseFuture::ready(kind_response(ErrorKind::MisdirectedRequest));
            }
        }
        let Some(listener) = listener else {
            return ResponseFuture::ready(kind_response(ErrorKind::NoRoute));
        };
        let found = port.table(listener as usize).find_for_host(
            req.method(),
            req.uri(),
            req.headers(),
            host,
        );
        dispatch(found, req)
    }
}

/// Hands `req` to the matched rule's stack, or answers 404 when nothing matched.
fn dispatch(found: Option<RuleMatch<'_>>, mut req: Request<Body>) -> ResponseFuture {
    let Some(found) = found else {
        return ResponseFuture::ready(kind_response(ErrorKind::NoRoute));
    };
    let rule = found.rule;
    req.extensions_mut().insert(MatchedRoute {
        rule: Arc::clone(rule),
        matched_prefix_len: found.matched_prefix.map(str::len),
    });
    let cors = rule.filters().error_cors(&req);
    ResponseFuture::dispatched(rule.send(req), cors)
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.table.load();
        f.debug_struct("Router")
            .field("listeners", &port.listener_count())
            .field("routes", &port.route_count())
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
        let grpc = is_grpc(req.headers());
        let mut fut = self.route(req.map(Body::new));
        fut.grpc = grpc;
        fut
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
        // A gRPC call: gatekit's error responses become gRPC trailers-only answers.
        grpc: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        // Answered without a rule (no route).
        Ready { rsp: Option<Response<Body>> },
        // In the matched rule's stack; `cors`: the CORS headers an error response gets.
        Dispatched { #[pin] fut: backend::ResponseFuture, cors: Option<ErrorCors> },
    }
}

impl ResponseFuture {
    fn ready(rsp: Response<Body>) -> Self {
        Self {
            state: State::Ready { rsp: Some(rsp) },
            grpc: false,
        }
    }

    fn dispatched(fut: backend::ResponseFuture, cors: Option<ErrorCors>) -> Self {
        Self {
            state: State::Dispatched { fut, cors },
            grpc: false,
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
        let this = self.project();
        let rsp = match this.state.project() {
            StateProj::Ready { rsp } => rsp.take().unwrap_or_else(|| {
                // Polled again after completion: a contract bug of the caller, answered
                // with a 500 rather than a panic.
                kind_response(ErrorKind::InvalidBackend)
            }),
            StateProj::Dispatched { fut, cors } => match fut.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(rsp)) => rsp,
                Poll::Ready(Err(err)) => {
                    tracing::debug!(error = %err, "routed request failed");
                    let mut rsp = error_response(&*err);
                    // A rule's CORS filter speaks for its errors too: a browser reads
                    // them only with the CORS headers.
                    if let Some(cors) = cors {
                        cors.apply(&mut rsp);
                    }
                    rsp
                }
            },
        };
        // gRPC clients read errors from `grpc-status`: every gatekit error answer (also
        // those a rule's filters give as responses, such as a bad rewrite's 400).
        Poll::Ready(Ok(if *this.grpc {
            grpc_error_response(rsp)
        } else {
            rsp
        }))
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

    fn port(backend: Backend) -> PortTable {
        let mut backends = HashMap::new();
        backends.insert("b".to_owned(), backend);
        let listener = |name: &str, path: &str| {
            let mut rule = Rule::default();
            rule.backends.push(BackendRef::new("b", 1));
            rule.matches.push(crate::route::Match {
                path: Some(crate::route::PathMatch::Prefix(path.to_owned())),
                ..Default::default()
            });
            let mut route = Route::new(RouteId::new("ns", name));
            route.rules.push(rule);
            RouteTable::build(vec![route], &backends).unwrap()
        };
        PortTable::new([
            (Some("a.example.com"), listener("a", "/a")),
            (Some("*.example.com"), listener("wild", "/wild")),
            (None, listener("any", "/")),
        ])
        .unwrap()
    }

    fn ok() -> Backend {
        Backend::new(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, BoxError>(Response::new(Body::empty()))
        }))
    }

    fn req(host: &str, path: &str, sni: Option<&str>) -> Request<Body> {
        let mut req = Request::get(path)
            .header(http::header::HOST, host)
            .body(Body::empty())
            .unwrap();
        if let Some(sni) = sni {
            let addr: std::net::SocketAddr = "127.0.0.1:443".parse().unwrap();
            req.extensions_mut().insert(crate::ConnectionInfo::with_tls(
                addr,
                addr,
                crate::TlsInfo::with_server_name(sni),
            ));
        }
        req
    }

    /// The status `router` answers a GET of `path` for `host` with (no SNI).
    async fn status_of(router: &Router, host: &str, path: &str) -> http::StatusCode {
        router
            .clone()
            .oneshot(req(host, path, None))
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn the_most_specific_listener_answers_alone() {
        let router = Router::new(port(ok()));
        let status = |host, path| status_of(&router, host, path);
        assert_eq!(status("a.example.com", "/a").await, 200);
        assert_eq!(status("A.Example.com:8443", "/a").await, 200);
        // `a.example.com`'s listener has no `/wild` nor `/` route: 404, no fall-through.
        assert_eq!(status("a.example.com", "/wild").await, 404);
        assert_eq!(status("a.example.com", "/other").await, 404);
        assert_eq!(status("b.example.com", "/wild").await, 200);
        assert_eq!(status("b.example.com", "/a").await, 404);
        assert_eq!(status("example.org", "/a").await, 200);
    }

    #[tokio::test]
    async fn a_host_of_another_listener_than_the_sni_is_misdirected() {
        let router = Router::new(port(ok()));
        let send = |host: &'static str, sni: Option<&'static str>| {
            let router = router.clone();
            async move { router.oneshot(req(host, "/a", sni)).await.unwrap() }
        };
        let rsp = send("b.example.com", Some("a.example.com")).await;
        assert_eq!(rsp.status(), 421);
        assert_eq!(rsp.headers()["x-gatekit-error"], "misdirected-request");
        assert_eq!(
            send("a.example.com", Some("A.example.com")).await.status(),
            200
        );
        // Both in the wildcard listener: the same listener, not misdirected.
        assert_eq!(
            send("b.example.com", Some("c.example.com")).await.status(),
            404
        );
        // Without SNI nothing is checked.
        assert_eq!(send("example.org", None).await.status(), 200);
        assert_eq!(
            send("example.org", Some("a.example.com")).await.status(),
            421
        );
    }

    #[tokio::test]
    async fn one_route_table_serves_every_host_and_sni() {
        let rsp = Router::new(table(Default::default(), ok()))
            .oneshot(req("anything.test", "/x", Some("other.test")))
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
    }

    #[tokio::test]
    async fn one_listeners_table_is_stored_alone() {
        let router = Router::new(port(ok()));
        let mut backends = HashMap::new();
        backends.insert("b".to_owned(), ok());
        let mut rule = Rule::default();
        rule.backends.push(BackendRef::new("b", 1));
        rule.matches.push(crate::route::Match {
            path: Some(crate::route::PathMatch::Prefix("/new".to_owned())),
            ..Default::default()
        });
        let mut route = Route::new(RouteId::new("ns", "new"));
        route.rules.push(rule);
        let table = RouteTable::build(vec![route], &backends).unwrap();
        assert!(router.store_listener(0, table));
        let status = |host, path| status_of(&router, host, path);
        assert_eq!(status("a.example.com", "/new").await, 200);
        assert_eq!(status("a.example.com", "/a").await, 404);
        assert_eq!(status("b.example.com", "/wild").await, 200);
        assert!(!router.store_listener(3, RouteTable::empty()));
    }
}
