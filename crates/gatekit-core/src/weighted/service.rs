//! [`Weighted`].

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{ResponseFuture, WeightedBackends};
use crate::session::Sticky;
use crate::{Body, BoxError, Error, ErrorKind};

/// A service that sends each request to a weighted random choice of backendRef, after
/// that backendRef's own filters (see the [module docs](super)).
///
/// Cloning is one reference-count increment. Always ready: [`Backend`](crate::Backend)s
/// are shared services that fail fast or apply backpressure in their response futures.
#[derive(Clone, Debug)]
pub struct Weighted {
    backends: WeightedBackends,
}

impl Weighted {
    /// A choice among `backends`.
    pub fn new(backends: WeightedBackends) -> Self {
        Self { backends }
    }

    /// The backendRefs chosen among.
    pub fn backends(&self) -> &WeightedBackends {
        &self.backends
    }
}

impl Service<Request<Body>> for Weighted {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> ResponseFuture {
        let sticky = req.extensions().get::<Sticky>();
        // A session's backendRef wins over the weights while it resolves, even at
        // weight 0 (GEP-1619).
        let pinned = sticky
            .and_then(Sticky::pinned_backend)
            .filter(|&i| self.backends.get(i).is_some_and(|b| b.backend().is_some()));
        let Some((index, chosen)) = pinned
            .or_else(|| self.backends.pick_index())
            .and_then(|i| Some((i, self.backends.get(i)?)))
        else {
            return ResponseFuture::failed(Error::new(ErrorKind::InvalidBackend));
        };
        if let Some(sticky) = sticky {
            sticky.set_served_backend(index);
        }
        let filters = chosen.filters();
        let rcx = filters.response_context(&req);
        if let Some(mut rsp) = filters.apply_routed(&mut req) {
            filters.apply_response_with(&mut rsp, &rcx);
            return ResponseFuture::answered(rsp);
        }
        let Some(backend) = chosen.backend() else {
            return ResponseFuture::failed(Error::new(ErrorKind::InvalidBackend));
        };
        ResponseFuture::sent(backend.send(req), filters.clone(), rcx)
    }
}
