//! The handler as a `tower::Service`, for kube clients without a socket
//! (`kube::Client::new(fake.service(), "default")`).
//!
//! Same store, request log, faults and token check as the HTTP server; what it cannot show is
//! anything about connections: requests keep being answered while the server is stopped
//! (`stop` only aborts its open watches), and `drop_watches` ends watch bodies with an error
//! rather than a reset socket.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};

use crate::http::Body;
use crate::server::Shared;

/// The in-process service of a [`FakeApiServer`](crate::FakeApiServer).
#[derive(Debug, Clone)]
pub struct FakeService {
    shared: Arc<Shared>,
    bearer: Option<http::HeaderValue>,
}

impl FakeService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            bearer: None,
        }
    }

    /// Adds `Authorization: Bearer <token>` to requests that carry no `Authorization`.
    #[must_use]
    pub fn with_bearer(mut self, token: &str) -> Self {
        self.bearer = http::HeaderValue::from_str(&format!("Bearer {token}")).ok();
        self
    }
}

/// The response future of [`FakeService`] (boxed: this is test support, not a data path).
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

/// The response body of [`FakeService`].
pub type ResponseBody = Body;

impl<B> tower_service::Service<Request<B>> for FakeService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(v) = &self.bearer {
            req.headers_mut()
                .entry(http::header::AUTHORIZATION)
                .or_insert_with(|| v.clone());
        }
        Box::pin(crate::http::handle(self.shared.clone(), req))
    }
}
