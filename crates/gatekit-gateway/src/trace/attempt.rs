//! [`TracedBackend`]: a client span per upstream attempt, named by the upstream
//! request's `traceparent`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use gatekit_core::retry::Attempt;
use gatekit_core::{Body, BoxError};
use http::{Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::trace::Span;
use tower_service::Service;

use super::{Parent, Traces};

/// A backend whose every call (one upstream attempt: the retry layer is above it) is a
/// client span, child of the request's server span, with the attempt number; the span
/// is injected as the upstream request's `traceparent` (and `tracestate`), replacing
/// the client's. A request without a server span (a mirror's copy) passes as it is.
#[derive(Clone)]
pub(crate) struct TracedBackend<S> {
    inner: S,
    traces: Traces,
    /// The backend's name, an attribute of each span.
    backend: Arc<str>,
}

impl<S> TracedBackend<S> {
    pub(crate) fn new(inner: S, traces: Traces, backend: &str) -> Self {
        Self {
            inner,
            traces,
            backend: backend.into(),
        }
    }
}

impl<S> fmt::Debug for TracedBackend<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedBackend")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl<S> Service<Request<Body>> for TracedBackend<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let Some(Parent(parent)) = req.extensions().get::<Parent>() else {
            return ResponseFuture {
                inner: self.inner.call(req),
                span: None,
            };
        };
        let attempt = req.extensions().get::<Attempt>().map_or(1, |a| a.0);
        let method = req.method().as_str().to_owned();
        let span = self.traces.tracer().build_with_context(
            SpanBuilder::from_name(method.clone())
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("http.request.method", method),
                    KeyValue::new("gatekit.backend", self.backend.to_string()),
                    KeyValue::new("gatekit.attempt", i64::from(attempt)),
                ]),
            parent,
        );
        let cx = opentelemetry::Context::new()
            .with_remote_span_context(opentelemetry::trace::Span::span_context(&span).clone());
        self.traces
            .propagator()
            .inject_context(&cx, &mut HeaderInjector(req.headers_mut()));
        ResponseFuture {
            inner: self.inner.call(req),
            span: Some(span),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TracedBackend`]: ends the attempt span at the response
    /// head (or the attempt's error).
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Option<Span>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("traced", &self.span.is_some())
            .finish_non_exhaustive()
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(mut span) = this.span.take() {
            match &result {
                Ok(rsp) => {
                    let status = rsp.status();
                    span.set_attribute(KeyValue::new(
                        "http.response.status_code",
                        i64::from(status.as_u16()),
                    ));
                    if status.is_server_error() {
                        span.set_status(Status::error(""));
                    }
                }
                Err(error) => {
                    let kind = gatekit_core::Error::find(error.as_ref())
                        .map_or("error", |e| e.kind().as_str());
                    span.set_attribute(KeyValue::new("error.type", kind));
                    span.set_status(Status::error(error.to_string()));
                }
            }
            span.end();
        }
        Poll::Ready(result)
    }
}
