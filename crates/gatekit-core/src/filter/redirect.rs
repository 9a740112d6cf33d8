//! `RequestRedirect` (Gateway API `HTTPRequestRedirectFilter`): answers the request with a
//! redirect instead of calling a backend.
//!
//! The `Location` is built from the request and the filter's fields, as the spec says:
//!
//! - **scheme**: the configured one (`http` or `https`), else the request's: `https` when
//!   the connection is TLS or the request URI says `https`, else `http`.
//! - **hostname**: the configured one, else the request's host (the URI authority, else
//!   the `Host` header) without its port.
//! - **port**: the configured one; else, when a scheme is configured, that scheme's
//!   well-known port (80, 443); else the listener's port (falling back to the port the
//!   request names, then the scheme's default). The port is left out of the `Location`
//!   when it is the scheme's default (http and 80, https and 443), as the spec asks.
//! - **path**: `ReplaceFullPath`, `ReplacePrefixMatch` (see [`path`](super::path)), else
//!   the request's; the query string is always kept.
//! - **status**: 301, 302 (the default), 303, 307 or 308.
//!
//! A request with no host at all (HTTP/1.0 without `Host`), or whose `Host` header is not
//! a valid host, and no configured hostname gets a relative `Location` (path and query
//! only).
//!
//! Everything configured is validated once; per request the only allocation besides the
//! response itself is the `Location` string, which becomes the header value without a
//! copy.

use std::fmt::Write as _;

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, header};

use super::RequestContext;
use super::path::PathOp;
use crate::Body;
use crate::error::ConfigError;
use crate::route::Redirect;

/// A URI scheme a redirect or a request may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// A compiled redirect.
#[derive(Clone, Debug)]
pub(super) struct RedirectOp {
    scheme: Option<Scheme>,
    hostname: Option<Box<str>>,
    port: Option<u16>,
    path: Option<PathOp>,
    status: StatusCode,
}

impl RedirectOp {
    /// Validates and compiles a redirect. Error fields are relative to the filter
    /// (`statusCode`, `scheme`, `hostname`, `port`, `path.replaceFullPath`).
    pub(super) fn compile(r: &Redirect) -> Result<Self, ConfigError> {
        let status = match r.status {
            301 | 302 | 303 | 307 | 308 => StatusCode::from_u16(r.status)
                .map_err(|_| ConfigError::new("statusCode", "is not a status code"))?,
            other => {
                return Err(ConfigError::new(
                    "statusCode",
                    format!("{other} is not one of 301, 302, 303, 307, 308"),
                ));
            }
        };
        let scheme = match r.scheme.as_deref() {
            None => None,
            Some("http") => Some(Scheme::Http),
            Some("https") => Some(Scheme::Https),
            Some(other) => {
                return Err(ConfigError::new(
                    "scheme",
                    format!("{other:?} is not \"http\" or \"https\""),
                ));
            }
        };
        let hostname = r
            .hostname
            .as_deref()
            .map(|h| check_hostname(h).map(|()| Box::<str>::from(h)))
            .transpose()
            .map_err(|reason| ConfigError::new("hostname", reason))?;
        if r.port == Some(0) {
            return Err(ConfigError::new("port", "must be between 1 and 65535"));
        }
        let path = r.path.as_ref().map(PathOp::compile).transpose()?;
        Ok(Self {
            scheme,
            hostname,
            port: r.port,
            path,
            status,
        })
    }

    /// The redirect response for `req`.
    pub(super) fn respond(&self, req: &Request<Body>, cx: &RequestContext<'_>) -> Response<Body> {
        let uri = req.uri();
        let request_scheme = if cx.tls || uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let scheme = self.scheme.unwrap_or(request_scheme);

        // The request's host and port: the URI authority (absolute form, HTTP/2), else Host.
        let (req_host, req_port) = match uri.authority() {
            Some(a) => (Some(a.host()), a.port_u16()),
            None => match req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
            {
                Some(h) => {
                    // The Host header is the client's text: only a valid host goes into
                    // the Location (the `filters` fuzz target found `Host: {` there).
                    let (host, port) = split_host_port(h);
                    match check_hostname(host) {
                        Ok(()) => (Some(host), port),
                        Err(_) => (None, None),
                    }
                }
                None => (None, None),
            },
        };
        let host = self
            .hostname
            .as_deref()
            .or(req_host)
            .filter(|h| !h.is_empty());

        let port = match (self.port, self.scheme) {
            (Some(p), _) => p,
            (None, Some(s)) => s.default_port(),
            (None, None) => cx
                .listener_port
                .or(req_port)
                .unwrap_or(scheme.default_port()),
        };

        // An authority-form target (`GET host:80`) has no path and an asterisk-form one
        // (`OPTIONS *`) has `*`; a Location needs a path (the `filters` fuzz target found
        // `Location: ""` and `Location: *`).
        let path = match uri.path() {
            p if p.starts_with('/') => p,
            _ => "/",
        };
        let query = uri.query();
        let path_len = self.path.as_ref().map_or(path.len(), |p| p.len_hint(path));
        let mut location = String::with_capacity(
            scheme.as_str().len()
                + 3
                + host.map_or(0, str::len)
                + 6
                + path_len
                + query.map_or(0, |q| q.len() + 1),
        );
        if let Some(host) = host {
            location.push_str(scheme.as_str());
            location.push_str("://");
            location.push_str(host);
            if port != scheme.default_port() {
                // Writing into a String cannot fail.
                let _ = write!(location, ":{port}");
            }
        }
        match &self.path {
            Some(op) => op.push(&mut location, path, cx.matched_prefix),
            None => location.push_str(path),
        }
        if let Some(q) = query {
            location.push('?');
            location.push_str(q);
        }

        let mut rsp = Response::new(Body::empty());
        *rsp.status_mut() = self.status;
        // Every piece is a validated host, path or query, so the value is valid; a
        // failure would be a bug, answered without a Location rather than a panic.
        match HeaderValue::from_maybe_shared(Bytes::from(location)) {
            Ok(v) => {
                rsp.headers_mut().insert(header::LOCATION, v);
            }
            Err(_) => {
                tracing::debug!("redirect produced an invalid Location header");
                *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
        }
        rsp
    }
}

/// Splits `host[:port]` or `[v6]:port`; a port that is not a number stays in the host.
pub(super) fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if s.starts_with('[') {
        if let Some(end) = s.find(']') {
            let (host, rest) = s.split_at(end + 1);
            return (host, rest.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (s, None),
        },
        None => (s, None),
    }
}

/// A hostname must be a bare host: a valid URI authority with no port or user info.
pub(super) fn check_hostname(h: &str) -> Result<(), &'static str> {
    if h.is_empty() {
        return Err("must not be empty");
    }
    match Authority::try_from(h) {
        Ok(a) if a.as_str() == a.host() && !h.contains('@') => Ok(()),
        Ok(_) => Err("must be a host name without a port"),
        Err(_) => Err("is not a valid host name"),
    }
}
