//! Per-(route, backend) request metrics without per-request formatting.
//!
//! The [`Router`](gatekit_core::Router) knows the matched route only once it has routed,
//! below the [`MetricsLayer`](crate::MetricsLayer) that records requests. So each backend a
//! route's rules are compiled with is a [`Labelled`] upstream holding the
//! [`RequestMetrics`] handle of (that route, this backend), looked up when the rule was
//! compiled ([`Backends::backend_for`](gatekit_core::Backends::backend_for)), which it
//! puts in the response's extensions, where the metrics layer looks first. A request that never
//! reaches a backend (no route: 404; a rule without a usable backend: 500) is recorded
//! under the listener's `(unmatched)` series.
//!
//! Upstream errors (no healthy endpoint, connect failure, timeout) pass on as errors (the
//! router turns them into responses, in one place), wrapped in a
//! [`WithResponseExtensions`] carrying the handle, so they are counted under the right
//! route and backend too.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use gatekit_core::client::EndpointClient;
use gatekit_core::{Body, BoxError, WithResponseExtensions};
use gatekit_lb::Upstream;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{RequestMetrics, RouteFallback};

/// An upstream that labels its responses with the (route, backend) metrics handle
/// (none: a mirror's copies, whose responses nobody counts).
#[derive(Clone)]
pub(crate) struct Labelled {
    upstream: Upstream<EndpointClient>,
    metrics: Option<RequestMetrics>,
    /// The route's, whose retirement marks its upgrade requests.
    route: Option<RouteFallback>,
}

impl Labelled {
    pub(crate) fn new(upstream: Upstream<EndpointClient>, metrics: Option<RequestMetrics>) -> Self {
        Self {
            upstream,
            metrics,
            route: None,
        }
    }

    /// Marks the upgrade requests it sends with the retirement of `route`, so their
    /// upgraded connections end when the route is removed.
    pub(crate) fn with_route(mut self, route: Option<RouteFallback>) -> Self {
        self.route = route;
        self
    }
}

impl Service<Request<Body>> for Labelled {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = LabelledFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.upstream.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> LabelledFuture {
        if let Some(route) = &self.route {
            route.retirement().mark(&mut req);
        }
        LabelledFuture {
            inner: self.upstream.call(req),
            metrics: self.metrics.clone(),
            start: tokio::time::Instant::now(),
        }
    }
}

pin_project! {
    /// The response future of [`Labelled`].
    pub(crate) struct LabelledFuture {
        #[pin]
        inner: gatekit_lb::ResponseFuture<EndpointClient, Body>,
        metrics: Option<RequestMetrics>,
        start: tokio::time::Instant,
    }
}

impl Future for LabelledFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(metrics) = this.metrics.take() else {
            return Poll::Ready(result);
        };
        metrics.record_attempt(this.start.elapsed());
        Poll::Ready(match result {
            Ok(mut rsp) => {
                rsp.extensions_mut().insert(metrics);
                Ok(rsp)
            }
            Err(error) => {
                let mut extensions = http::Extensions::new();
                extensions.insert(metrics);
                Err(Box::new(WithResponseExtensions::new(error, extensions)))
            }
        })
    }
}
