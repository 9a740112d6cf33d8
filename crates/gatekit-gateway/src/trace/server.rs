//! [`TracedRouter`]: the server span and the routing span of each request.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::Bytes;
use gatekit_core::{Body, BoxError, ConnectionInfo, Router};
use http::{Request, Response};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_http::HeaderExtractor;
use tower_service::Service;

use super::{Parent, Traces};
use crate::RequestMetrics;

/// The header naming an error response's kind (gatekit-core's `error_response`).
const ERROR_KIND: &str = "x-gatekit-error";

/// A port's [`Router`] inside a server span (the router of a
/// [`PortService`](crate::PortService) when the gateway was built with traces): the client's `traceparent` is read, the
/// span's context goes into the request's extensions for the upstream attempts, and a
/// routing span covers the match. Without [`Traces`] it is the router plus one
/// branch.
#[derive(Clone, Debug)]
pub struct TracedRouter {
    router: Router,
    traces: Option<Traces>,
}

impl TracedRouter {
    pub(crate) fn new(router: Router, traces: Option<Traces>) -> Self {
        Self { router, traces }
    }
}

impl<B> Service<Request<B>> for TracedRouter
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

    fn call(&mut self, mut req: Request<B>) -> ResponseFuture {
        let Some(traces) = &self.traces else {
            return ResponseFuture {
                inner: self.router.call(req),
                span: None,
            };
        };
        let parent = traces.propagator().extract(&HeaderExtractor(req.headers()));
        let method = req.method().clone();
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.as_str().to_owned()),
            KeyValue::new("url.path", req.uri().path().to_owned()),
        ];
        if let Some(info) = req.extensions().get::<ConnectionInfo>() {
            attributes.push(KeyValue::new(
                "client.address",
                info.remote_addr().ip().to_string(),
            ));
        }
        let span = traces.tracer().build_with_context(
            SpanBuilder::from_name(method.as_str().to_owned())
                .with_kind(SpanKind::Server)
                .with_attributes(attributes),
            &parent,
        );
        let cx = parent.with_span(span);
        req.extensions_mut().insert(Parent(cx.clone()));
        let routing_start = SystemTime::now();
        let inner = self.router.call(req);
        let routing_end = SystemTime::now();
        ResponseFuture {
            inner,
            span: Some(Box::new(ServerSpan {
                traces: traces.clone(),
                cx,
                method,
                routing: (routing_start, routing_end),
            })),
        }
    }
}

/// What the response future needs to end the spans.
struct ServerSpan {
    traces: Traces,
    cx: opentelemetry::Context,
    /// The span's name until the route is known, then its first word.
    method: http::Method,
    routing: (SystemTime, SystemTime),
}

impl ServerSpan {
    /// Ends the routing span (with the route the response names) and the server span.
    fn end(self, rsp: &Response<Body>) {
        let status = rsp.status();
        let labels = rsp.extensions().get::<RequestMetrics>();
        let error = rsp
            .headers()
            .get(ERROR_KIND)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut routed = Vec::with_capacity(3);
        if let Some(labels) = labels {
            routed.push(KeyValue::new("gatekit.route", labels.route().to_owned()));
            routed.push(KeyValue::new(
                "gatekit.backend",
                labels.backend().to_owned(),
            ));
        }
        if let Some(kind) = &error {
            routed.push(KeyValue::new(
                "gatekit.error",
                StringValue::from(kind.clone()),
            ));
        }
        let routing = self.traces.tracer().build_with_context(
            SpanBuilder::from_name("routing")
                .with_kind(SpanKind::Internal)
                .with_start_time(self.routing.0)
                .with_attributes(routed.clone()),
            &self.cx,
        );
        let mut routing = routing;
        routing.end_with_timestamp(self.routing.1);
        let span = self.cx.span();
        if let Some(labels) = labels {
            span.update_name(format!("{} {}", self.method, labels.route()));
        }
        span.set_attributes(routed);
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            span.set_status(Status::error(error.unwrap_or_default()));
        }
        span.end();
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TracedRouter`]: ends the spans when the response head
    /// is ready.
    pub struct ResponseFuture {
        #[pin]
        inner: gatekit_core::ResponseFuture,
        span: Option<Box<ServerSpan>>,
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("traced", &self.span.is_some())
            .finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Some(span), Ok(rsp)) = (this.span.take(), &result) {
            span.end(rsp);
        }
        Poll::Ready(result)
    }
}
