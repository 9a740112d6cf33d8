//! `URLRewrite` (Gateway API `HTTPURLRewriteFilter`): changes what the backend receives.
//!
//! - **hostname** replaces the `Host` header for the upstream request. When the request
//!   URI carries an authority (absolute form, or HTTP/2's `:authority`, which hyper puts
//!   in the URI) that authority is replaced too, so HTTP/2 upstreams see the new host.
//!   The `Host` header is written when the request has one or when the URI has no
//!   authority, so a request keeps the form it came in.
//! - **path**: `ReplaceFullPath` or `ReplacePrefixMatch` (see [`path`](super::path)); the
//!   query string is kept.
//!
//! The spec forbids a `URLRewrite` and a `RequestRedirect` in one filter list; that is
//! checked when the chain is compiled.
//!
//! The hostname is parsed into a `HeaderValue` and an `Authority` once. A path rewrite
//! allocates the new path-and-query string per request; the `http` crate then re-checks
//! its characters (it has no unchecked constructor), a byte scan.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Uri, header};

use super::RequestContext;
use super::path::PathOp;
use super::redirect::check_hostname;
use crate::Body;
use crate::error::ConfigError;
use crate::route::UrlRewrite;

/// A compiled URL rewrite.
#[derive(Clone, Debug)]
pub(super) struct RewriteOp {
    host: Option<(HeaderValue, Authority)>,
    path: Option<PathOp>,
}

/// A path rewrite produced a URI the `http` crate rejects (not expected: the parts are
/// validated); the request is refused rather than forwarded unrewritten.
#[derive(Debug)]
pub(super) struct RewriteFailed;

impl RewriteOp {
    /// Validates and compiles a rewrite. Error fields are relative to the filter.
    pub(super) fn compile(r: &UrlRewrite) -> Result<Self, ConfigError> {
        let host = match r.hostname.as_deref() {
            None => None,
            Some(h) => {
                check_hostname(h).map_err(|reason| ConfigError::new("hostname", reason))?;
                let value = HeaderValue::from_str(h)
                    .map_err(|_| ConfigError::new("hostname", "is not a valid host name"))?;
                let authority = Authority::try_from(h)
                    .map_err(|_| ConfigError::new("hostname", "is not a valid host name"))?;
                Some((value, authority))
            }
        };
        let path = r.path.as_ref().map(PathOp::compile).transpose()?;
        Ok(Self { host, path })
    }

    /// Rewrites the request in place.
    pub(super) fn apply(
        &self,
        req: &mut Request<Body>,
        cx: &RequestContext<'_>,
    ) -> Result<(), RewriteFailed> {
        let new_pq = match &self.path {
            None => None,
            Some(op) => {
                let uri = req.uri();
                let (path, query) = (uri.path(), uri.query());
                let mut s =
                    String::with_capacity(op.len_hint(path) + query.map_or(0, |q| q.len() + 1));
                op.push(&mut s, path, cx.matched_prefix);
                if let Some(q) = query {
                    s.push('?');
                    s.push_str(q);
                }
                Some(PathAndQuery::from_maybe_shared(Bytes::from(s)).map_err(|_| RewriteFailed)?)
            }
        };
        let has_authority = req.uri().authority().is_some();
        let new_authority = if has_authority {
            self.host.as_ref().map(|(_, a)| a.clone())
        } else {
            None
        };
        if new_pq.is_some() || new_authority.is_some() {
            let mut parts = req.uri().clone().into_parts();
            if let Some(pq) = new_pq {
                parts.path_and_query = Some(pq);
            }
            if let Some(a) = new_authority {
                parts.authority = Some(a);
            }
            *req.uri_mut() = Uri::from_parts(parts).map_err(|_| RewriteFailed)?;
        }
        if let Some((value, _)) = &self.host
            && (!has_authority || req.headers().contains_key(header::HOST))
        {
            req.headers_mut().insert(header::HOST, value.clone());
        }
        Ok(())
    }
}
