//! [`MetricsLayer`]: counts requests by status class and observes their latency.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use gatekit_core::ErrorKind;
use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::RequestMetrics;

/// Chooses the [`RequestMetrics`] a request is recorded into, from the request as it
/// enters the layer.
///
/// Implemented for a fixed [`RequestMetrics`] (every request of a listener into one series)
/// and for closures `Fn(&Request<B>) -> RequestMetrics` (for instance reading a route
/// marker the router or an earlier layer put in the request extensions). The choice can
/// also be made later: a response that carries a [`RequestMetrics`] in its extensions is
/// recorded into that one instead — the seam for a router that only knows the matched
/// route and backend once it has routed.
pub trait LabelSource<B> {
    /// The series this request is recorded into unless the response names another.
    fn request_metrics(&self, request: &Request<B>) -> RequestMetrics;
}

impl<B> LabelSource<B> for RequestMetrics {
    fn request_metrics(&self, _: &Request<B>) -> RequestMetrics {
        self.clone()
    }
}

impl<B, F> LabelSource<B> for F
where
    F: Fn(&Request<B>) -> RequestMetrics,
{
    fn request_metrics(&self, request: &Request<B>) -> RequestMetrics {
        self(request)
    }
}

// === impl MetricsLayer ===

/// Wraps a service so each request is counted by status class and error kind and its
/// time to response headers observed. (The access log is
/// [`AccessLogLayer`](crate::AccessLogLayer).)
///
/// Costs per request: one [`LabelSource`] call (an `Arc` clone for the provided sources),
/// one clock read at each end, an atomic add and a histogram observation.
#[derive(Clone)]
pub struct MetricsLayer<L> {
    source: L,
}

impl<L> MetricsLayer<L> {
    /// Records into the series `source` chooses.
    pub fn new(source: L) -> Self {
        Self { source }
    }
}

impl<L> fmt::Debug for MetricsLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayer").finish_non_exhaustive()
    }
}

impl<S, L: Clone> Layer<S> for MetricsLayer<L> {
    type Service = MetricsService<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            source: self.source.clone(),
        }
    }
}

// === impl MetricsService ===

/// The service built by [`MetricsLayer`]. Ready when the inner service is.
#[derive(Clone)]
pub struct MetricsService<S, L> {
    inner: S,
    source: L,
}

impl<S, L> MetricsService<S, L> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, L> fmt::Debug for MetricsService<S, L>
where
    S: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, L, B, RB> Service<Request<B>> for MetricsService<S, L>
where
    S: Service<Request<B>, Response = Response<RB>>,
    L: LabelSource<B>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let metrics = self.source.request_metrics(&request);
        ResponseFuture {
            inner: self.inner.call(request),
            metrics,
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`MetricsService`]: records when the inner response (or
    /// error) is ready.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        metrics: RequestMetrics,
        start: Instant,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let elapsed = this.start.elapsed();
        // An error here becomes a 5xx further out.
        let fallback;
        let (status, kind, metrics) = match &result {
            Ok(response) => {
                let extensions = response.extensions();
                let metrics = match extensions.get::<RequestMetrics>() {
                    Some(metrics) => metrics,
                    None => match extensions.get::<super::RouteFallback>() {
                        Some(route) => {
                            fallback = route.request_metrics();
                            &fallback
                        }
                        None => &*this.metrics,
                    },
                };
                let kind = extensions.get::<ErrorKind>().copied();
                (response.status(), kind, metrics)
            }
            Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, None, &*this.metrics),
        };
        metrics.record_with_kind(status, kind, elapsed);
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use tower::ServiceExt;

    use super::*;
    use crate::Metrics;

    #[tokio::test(start_paused = true)]
    async fn records_status_class_and_duration_and_honours_response_override() {
        let metrics = Metrics::new();
        let fallback = metrics.request_metrics("listener/8080", "none");
        let routed = metrics.request_metrics("default/api", "api:80");
        let routed2 = routed.clone();
        let svc = tower::service_fn(move |req: Request<()>| {
            let routed = routed2.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(40)).await;
                let mut resp = Response::new(());
                if req.uri().path() == "/api" {
                    resp.extensions_mut().insert(routed);
                    *resp.status_mut() = StatusCode::BAD_GATEWAY;
                } else {
                    *resp.status_mut() = StatusCode::NOT_FOUND;
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let mut svc = MetricsLayer::new(fallback).layer(svc);
        for path in ["/nothing", "/api"] {
            let req = Request::get(path).body(()).unwrap();
            svc.ready().await.unwrap().call(req).await.unwrap();
        }

        let text = metrics.encode();
        for line in [
            r#"gatekit_requests_total{route="listener/8080",backend="none",status_class="4xx",error_kind="none"} 1"#,
            r#"gatekit_requests_total{route="default/api",backend="api:80",status_class="5xx",error_kind="none"} 1"#,
            r#"gatekit_requests_total{route="listener/8080",backend="none",status_class="5xx",error_kind="none"} 0"#,
            // 40 ms of (paused) time lands in the 0.064 s bucket, not the 0.032 s one.
            r#"gatekit_request_duration_seconds_bucket{le="0.032",route="default/api"} 0"#,
            r#"gatekit_request_duration_seconds_bucket{le="0.064",route="default/api"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[tokio::test]
    async fn closure_source_chooses_per_request() {
        let metrics = Metrics::new();
        let a = metrics.request_metrics("a", "x");
        let b = metrics.request_metrics("b", "x");
        let source = move |req: &Request<()>| {
            if req.headers().contains_key("x-b") {
                b.clone()
            } else {
                a.clone()
            }
        };
        let svc =
            tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
        let mut svc = MetricsLayer::new(source).layer(svc);
        svc.call(Request::get("/").header("x-b", "1").body(()).unwrap())
            .await
            .unwrap();
        let text = metrics.encode();
        assert!(
            text.contains(r#"gatekit_requests_total{route="b",backend="x",status_class="2xx",error_kind="none"} 1"#)
        );
        // `a` served nothing: its series are not registered.
        assert!(!text.contains(r#"route="a""#), "{text}");
    }
}
