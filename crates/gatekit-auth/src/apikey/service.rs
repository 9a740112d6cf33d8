//! [`ApiKey`]: the check itself.

use std::sync::Arc;
use std::task::{Context, Poll};

use gatekit_core::access::Identity;
use gatekit_core::{BoxError, Error, ErrorKind};
use http::{Request, header};
use tower_service::Service;

use super::ResponseFuture;
use super::layer::{ConsumerEntry, Shared};
use crate::header::digest_of;

/// A service that lets through requests carrying a known API key (see the
/// [module docs](super)) and refuses the others with a 401 [`Error`].
///
/// Readiness is the inner service's; the check itself is synchronous (one SHA-256 and
/// one map lookup) and allocates nothing on success.
#[derive(Clone, Debug)]
pub struct ApiKey<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ApiKey<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl Shared {
    /// The consumer whose key `req` carries: the first source holding a key decides.
    fn authenticate<B>(&self, req: &Request<B>) -> Option<&Arc<ConsumerEntry>> {
        let key = self
            .sources
            .iter()
            .find_map(|s| s.find(req.uri(), req.headers()))?;
        self.by_digest.get(&digest_of(key.as_bytes()))
    }
}

impl<S, B> Service<Request<B>> for ApiKey<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        if let Some(name) = &shared.forward_consumer {
            // Whatever happens next, the client does not name the consumer.
            req.headers_mut().remove(name);
        }
        let Some(consumer) = shared.authenticate(&req) else {
            return ResponseFuture::refused(
                Error::new(ErrorKind::Unauthenticated)
                    .with_header(header::WWW_AUTHENTICATE, shared.challenge.clone()),
            );
        };
        let consumer = Arc::clone(consumer);
        if shared.strip_credential {
            let (mut parts, body) = req.into_parts();
            for source in &shared.sources {
                source.strip(&mut parts.uri, &mut parts.headers);
            }
            req = Request::from_parts(parts, body);
        }
        if let (Some(name), Some(value)) = (&shared.forward_consumer, &consumer.header) {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        req.extensions_mut()
            .insert(Identity::new("api-key", Arc::clone(&consumer.name)));
        ResponseFuture::inner(self.inner.call(req))
    }
}
