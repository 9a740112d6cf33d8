//! [`BasicAuth`]: the check itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatekit_core::access::Identity;
use gatekit_core::{BoxError, Error, ErrorKind};
use http::{HeaderMap, HeaderValue, Request, header};
use tokio::time::Instant;
use tower_service::Service;
use zeroize::Zeroizing;

use super::cache::{Cached, Digest};
use super::future::{BoxCheck, ResponseFuture};
use super::htpasswd::User;
use super::layer::Shared;
use crate::header::digest_of;

/// A service that lets through requests whose basic credentials match the htpasswd
/// data (see the [module docs](super)) and refuses the others with a 401 [`Error`]
/// (503 when no check permit comes in time).
///
/// Readiness is the inner service's. A cached credential is checked synchronously (one
/// SHA-256, one map lookup); an uncached one with a slow hash waits for a permit and a
/// check on the blocking pool inside the response future, which then calls the inner
/// service made ready before (the one this service held; a clone takes its place).
/// That path boxes one future, next to a hash that costs milliseconds.
#[derive(Clone, Debug)]
pub struct BasicAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> BasicAuth<S> {
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
    /// The refusal: 401 with the challenge.
    pub(super) fn refusal(&self) -> Error {
        Error::new(ErrorKind::Unauthenticated)
            .with_header(header::WWW_AUTHENTICATE, self.challenge.clone())
    }

    /// `req` as it goes on for `user`: identity, forwarded name, credential stripped.
    pub(super) fn admit<B>(&self, mut req: Request<B>, user: &User) -> Request<B> {
        if let (Some(name), Some(value)) = (&self.forward_username, &user.header) {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        if self.strip_credential {
            req.headers_mut().remove(header::AUTHORIZATION);
        }
        req.extensions_mut()
            .insert(Identity::new("basic", Arc::clone(&user.name)));
        req
    }
}

/// The request's one `Authorization` header, if it has exactly one.
fn authorization(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// `Basic <base64(user:password)>` decoded: (user, password). `None` for another
/// scheme, bad Base64, no `:` or a user name that is not UTF-8.
fn decode(value: &HeaderValue) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(STANDARD.decode(token.trim()).ok()?);
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_owned();
    let password = Zeroizing::new(decoded[colon + 1..].to_vec());
    Some((user, password))
}

/// The slow check of `password` against `user`'s hash: a permit (waiting at most the
/// configured time), then the hash on the blocking pool; the verdict is cached.
async fn check(
    shared: Arc<Shared>,
    user: Arc<User>,
    password: Zeroizing<Vec<u8>>,
    key: Digest,
) -> Result<bool, Error> {
    let counters = Arc::clone(&shared.counters);
    let acquire = Arc::clone(&shared.permits).acquire_owned();
    let Ok(Ok(permit)) = tokio::time::timeout(shared.verification_wait, acquire).await else {
        counters.overloaded.fetch_add(1, Ordering::Relaxed);
        return Err(Error::new(ErrorKind::Overloaded)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")));
    };
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| Error::with_source(ErrorKind::AuthUnavailable, e))?;
    let hashed = Arc::clone(&user);
    let ok = runtime
        .spawn_blocking(move || {
            // The permit is held until the hash is done, even if the request is gone.
            let _permit = permit;
            counters.verifications.fetch_add(1, Ordering::Relaxed);
            let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            counters.max_in_flight.fetch_max(now, Ordering::Relaxed);
            let ok = hashed.hash.verify(&password);
            counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            ok
        })
        .await
        .map_err(|e| Error::with_source(ErrorKind::AuthUnavailable, e))?;
    let now = Instant::now();
    if ok {
        shared.cache.insert_valid(key, user, now);
    } else {
        shared.cache.insert_invalid(key, now);
    }
    Ok(ok)
}

impl<S, B> Service<Request<B>> for BasicAuth<S>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        if let Some(name) = &shared.forward_username {
            // Whatever happens next, the client does not name the user.
            req.headers_mut().remove(name);
        }
        let Some(value) = authorization(req.headers()) else {
            return ResponseFuture::refused(shared.refusal());
        };
        let key = digest_of(value.as_bytes());
        let now = Instant::now();
        match shared.cache.get(&key, now) {
            Some(Cached::Valid(user)) => {
                shared.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                let req = shared.admit(req, &user);
                return ResponseFuture::inner(self.inner.call(req));
            }
            Some(Cached::Invalid) => {
                shared.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return ResponseFuture::refused(shared.refusal());
            }
            None => {}
        }
        let Some((name, password)) = decode(value) else {
            return ResponseFuture::refused(shared.refusal());
        };
        let Some(user) = shared.users.by_name.get(name.as_str()) else {
            return ResponseFuture::refused(shared.refusal());
        };
        if !user.hash.is_slow() {
            if !user.hash.verify(&password) {
                return ResponseFuture::refused(shared.refusal());
            }
            shared.cache.insert_valid(key, Arc::clone(user), now);
            let req = shared.admit(req, user);
            return ResponseFuture::inner(self.inner.call(req));
        }
        let check: BoxCheck = Box::pin(check(Arc::clone(shared), Arc::clone(user), password, key));
        let user = Arc::clone(user);
        let shared = Arc::clone(shared);
        // The ready service goes with the request; a clone stays for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::check(check, inner, req, user, shared)
    }
}
