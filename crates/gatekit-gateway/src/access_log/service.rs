//! [`AccessLog`] and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use gatekit_core::exchange::{Direction, Observed};
use gatekit_core::{Body, BoxError, ConnectionInfo, ErrorKind};
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Request, Response};
use tower_service::Service;

use super::entry::{self, Entry, Head};
use super::layer::Shared;
use crate::{RequestMetrics, RouteFallback};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The service built by [`AccessLogLayer`](super::AccessLogLayer): sets `X-Request-Id`
/// on the request when it has none, returns it on the response, and logs the request
/// when its port's log is on. Ready when the inner service is.
#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
    bytes: Option<Observed>,
}

impl<S> AccessLog<S> {
    pub(super) fn new(inner: S, shared: Option<Arc<Shared>>, bytes: Option<Observed>) -> Self {
        Self {
            inner,
            shared,
            bytes,
        }
    }

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

impl<S: fmt::Debug> fmt::Debug for AccessLog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("inner", &self.inner)
            .field("logs", &self.shared.is_some())
            .finish()
    }
}

impl<S, B> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        // Kept when the client sent one (as the proxy headers keep it), else new.
        let request_id = match parts.headers.get(&X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = gatekit_core::proxy::new_request_id();
                parts.headers.insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let mut body = Body::new(body);
        let entry = self.shared.as_ref().map(|shared| {
            let entry = Arc::new(Entry::new(
                shared.clone(),
                entry::Request {
                    method: parts.method.clone(),
                    uri: parts.uri.clone(),
                    version: parts.version,
                    host: parts.headers.get(HOST).cloned(),
                    request_id: request_id.clone(),
                    traceparent: parts.headers.get(&TRACEPARENT).cloned(),
                    connection: parts.extensions.get::<ConnectionInfo>().cloned(),
                },
            ));
            let observed = Observed::new(entry.clone());
            body = std::mem::take(&mut body).observed(observed.clone(), Direction::Request);
            parts.extensions.insert(observed);
            entry
        });
        // Not logging: the bodies tell the port's byte counters directly.
        let bytes = match (&entry, &self.bytes) {
            (None, Some(bytes)) => {
                body = std::mem::take(&mut body).observed(bytes.clone(), Direction::Request);
                Some(bytes.clone())
            }
            _ => None,
        };
        ResponseFuture {
            inner: self.inner.call(Request::from_parts(parts, body)),
            request_id: Some(request_id),
            entry,
            bytes,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AccessLog`]: adds `X-Request-Id` to the response and
    /// hands the response body the log entry.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        request_id: Option<HeaderValue>,
        entry: Option<Arc<Entry>>,
        bytes: Option<Observed>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Ok(mut response) = result else {
            // The entry is dropped: logged with status 0.
            return Poll::Ready(result);
        };
        if let Some(id) = this.request_id.take() {
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        if let Some(entry) = this.entry.take() {
            let extensions = response.extensions();
            let series = match extensions.get::<RequestMetrics>() {
                Some(series) => Some(series.clone()),
                None => extensions
                    .get::<RouteFallback>()
                    .map(RouteFallback::request_metrics),
            };
            entry.set_head(Head {
                status: response.status().as_u16(),
                series,
                error_kind: extensions.get::<ErrorKind>().copied(),
            });
            let (parts, body) = response.into_parts();
            let body = body.observed(Observed::new(entry), Direction::Response);
            response = Response::from_parts(parts, body);
        } else if let Some(bytes) = this.bytes.take() {
            let (parts, body) = response.into_parts();
            let body = body.observed(bytes, Direction::Response);
            response = Response::from_parts(parts, body);
        }
        Poll::Ready(Ok(response))
    }
}
