//! [`NormalizePath`].

use std::borrow::Cow;
use std::task::{Context, Poll};

use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use tower_service::Service;

use super::{PathPolicy, ResponseFuture, check_host, normalize};

/// A service that checks and normalises each request's target before the inner service
/// (usually the [`Router`](crate::Router)) sees it, so the normalised path is both what
/// is routed and what is sent upstream.
///
/// - A request whose `Host` [`check_host`] refuses (two of them, none on HTTP/1.1, a
///   malformed one, one that contradicts HTTP/2's `:authority`) is answered
///   `400 Bad Request`; on HTTP/1 with `Connection: close`.
/// - A target (path and query as received) longer than
///   [`PathPolicy::max_target_len`] is answered `414 URI Too Long`.
/// - A path that [`normalize`] refuses is answered `400 Bad Request`.
/// - Otherwise the URI's path is replaced by its normal form when that differs (scheme
///   and authority of an absolute-form target are kept).
///
/// Refusals carry an empty body (`B::default()`) and an `x-gatekit-error` header
/// (`duplicate-host`, `missing-host`, `invalid-host`, `conflicting-host`,
/// `uri-too-long`, `invalid-path`). Readiness is the inner service's.
#[derive(Clone, Debug)]
pub struct NormalizePath<S> {
    inner: S,
    policy: PathPolicy,
}

impl<S> NormalizePath<S> {
    /// Wraps `inner`, applying `policy`.
    pub const fn new(inner: S, policy: PathPolicy) -> Self {
        Self { inner, policy }
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

impl<S, ReqB, B> Service<Request<ReqB>> for NormalizePath<S>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    B: Default,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        if let Err(e) = check_host(&req) {
            // The connection's framing is suspect: an HTTP/1 connection closes after this.
            let close = req.version() <= Version::HTTP_11;
            return ResponseFuture::refused(StatusCode::BAD_REQUEST, e.kind()).closing(close);
        }
        let Some(target) = req.uri().path_and_query() else {
            // Authority-form (CONNECT) or a bare authority: no path to normalise.
            return ResponseFuture::inner(self.inner.call(req));
        };
        if target.as_str().len() > self.policy.max_target_len() {
            return ResponseFuture::refused(StatusCode::URI_TOO_LONG, "uri-too-long");
        }
        match normalize(target.as_str(), &self.policy) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(normal)) => {
                if !replace_path(req.uri_mut(), normal) {
                    return ResponseFuture::refused(StatusCode::BAD_REQUEST, "invalid-path");
                }
            }
            Err(_) => return ResponseFuture::refused(StatusCode::BAD_REQUEST, "invalid-path"),
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}

/// Puts `path_and_query` into `uri`, keeping its scheme and authority. `false` if the
/// result is not a valid URI (cannot happen for `normalize`'s output of a valid URI,
/// but the network never gets a panic).
fn replace_path(uri: &mut Uri, path_and_query: String) -> bool {
    let Ok(pq) = PathAndQuery::from_maybe_shared(path_and_query) else {
        return false;
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(pq);
    match Uri::from_parts(parts) {
        Ok(new) => {
            *uri = new;
            true
        }
        Err(_) => false,
    }
}
