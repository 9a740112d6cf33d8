//! [`Session`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_service::Service;

use super::ResponseFuture;
use super::layer::Shared;
use super::sticky::Sticky;
use super::token::Token;
use crate::ConnectionInfo;
use crate::cookie::request_cookies;

/// Pins each request of a session to the endpoint (and backendRef) that served the
/// session before, and issues the session token (see the [module docs](super)).
///
/// Readiness is the inner service's.
#[derive(Clone, Debug)]
pub struct Session<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Session<S> {
    pub(super) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
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

    /// The inner service, consumed.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl Shared {
    /// The request's live session token, if it carries one: the first that decodes
    /// among the cookies (or headers) of the session's name.
    pub(crate) fn token_of<B>(&self, req: &Request<B>, now: u64) -> Option<Token> {
        let token = match &self.header {
            Some(name) => req
                .headers()
                .get_all(name)
                .iter()
                .find_map(|v| Token::decode(v.as_bytes(), self.salt)),
            None => request_cookies(req.headers())
                .filter(|(name, _)| *name == self.cookie)
                .find_map(|(_, value)| Token::decode(value.as_bytes(), self.salt)),
        }?;
        self.is_live(&token, now).then_some(token)
    }

    /// Whether `token` has not expired at `now`: within the absolute timeout of its
    /// issue and the idle timeout of its last refresh, and not from the future (a
    /// minute of clock skew between replicas is allowed).
    pub(crate) fn is_live(&self, token: &Token, now: u64) -> bool {
        let issued = u64::from(token.issued);
        let seen = u64::from(token.seen);
        let skew = 60;
        if issued > now + skew || seen > now + skew || seen < issued {
            return false;
        }
        let within = |from: u64, limit: Option<std::time::Duration>| {
            limit.is_none_or(|d| now.saturating_sub(from) < d.as_secs())
        };
        within(issued, self.config.absolute_timeout()) && within(seen, self.config.idle_timeout())
    }
}

impl<S, B, RB> Service<Request<B>> for Session<S>
where
    S: Service<Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let now = self.shared.clock.now();
        let token = self.shared.token_of(&req, now);
        let sticky = Sticky::new(token.map(|t| t.endpoint), token.and_then(|t| t.backend));
        let secure = req
            .extensions()
            .get::<ConnectionInfo>()
            .is_some_and(ConnectionInfo::is_tls);
        req.extensions_mut().insert(sticky.clone());
        let fut = self.inner.call(req);
        ResponseFuture::new(fut, Arc::clone(&self.shared), sticky, token, now, secure)
    }
}
