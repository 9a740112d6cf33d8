//! `CORS` (Gateway API `HTTPCORSFilter`, GEP-1767): answers preflights at the gateway
//! and adds CORS headers to the responses of cross-origin requests.
//!
//! What the spec (the `HTTPCORSFilter` field docs) asks, and what gatekit does:
//!
//! - **Origins.** `allowOrigins` holds `*` (any origin) or `<scheme>://<host>[:<port>]`
//!   with scheme `http` or `https`; without a port, 80 (`http`) or 443 (`https`) is
//!   assumed, on both sides of the comparison, so `https://a.com` and `https://a.com:443`
//!   are the same origin. A host `*` matches every host; a host `*.example.com` matches
//!   any number of labels left of `.example.com` (`a.example.com`, `a.b.example.com`, not
//!   `example.com`). Scheme and host compare case-insensitively.
//! - **Allowed origin.** `Access-Control-Allow-Origin` always echoes the request's
//!   `Origin` (never `*`): the spec allows it in every case and requires it when
//!   credentials are allowed. `Access-Control-Allow-Credentials: true` is sent only when
//!   `allowCredentials` is true.
//! - **Preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`):
//!   answered by the gateway with **200** and an empty body, the backend is not called.
//!   For an allowed origin it carries `Access-Control-Allow-Origin`, `-Allow-Credentials`,
//!   `-Allow-Methods` (the configured list; with `*`, the requested method, which is valid
//!   with or without credentials), `-Allow-Headers` (the configured list; with `*`, the
//!   requested `Access-Control-Request-Headers`, omitted when there are none),
//!   `-Expose-Headers` and `-Max-Age` (default 5 seconds). For an origin not allowed it
//!   is still 200, without any CORS header (the spec's first option), so the browser
//!   refuses the actual request.
//!   The route table takes a preflight to a rule with a CORS filter whose method match
//!   is the announced method (`Access-Control-Request-Method`), not `OPTIONS`.
//! - **Errors.** The gateway's own error responses on a rule with a CORS filter (a 5xx
//!   for a failed upstream, a 429 from a rate limit) get the same headers as a proxied
//!   response, added where the [`Router`](crate::Router) turns the error into a response.
//! - **Actual requests** are proxied; when the origin is allowed the response gets
//!   `Access-Control-Allow-Origin`, `-Allow-Credentials` and `-Expose-Headers`
//!   (replacing any the backend sent).
//! - **`exposeHeaders: ["*"]`** is sent as `*` unless credentials are allowed; the spec
//!   forbids `*` then, so the wildcard is dropped and only the named headers are exposed.
//! - **`Vary: Origin`** is added to every response to a request that carried an
//!   `Origin` (allowed or not) since the answer depends on it; a request without `Origin`
//!   is left untouched.
//!
//! # Cost
//!
//! Every header value is built when the chain is compiled (one `HeaderValue` per list).
//! Per request: origin matching is byte comparisons on the request's `Origin`, with no
//! allocation; an allowed origin is kept for the response as a `HeaderValue` clone (a
//! reference count on the request's bytes).

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use super::redirect::split_host_port;
use crate::Body;
use crate::error::ConfigError;
use crate::route::CorsPolicy;

/// The spec's default `Access-Control-Max-Age`, in seconds.
const DEFAULT_MAX_AGE: u32 = 5;

/// What a CORS filter saw of a request, kept for its response.
#[derive(Clone, Debug, Default)]
pub(super) enum Seen {
    /// No `Origin` (or no CORS filter): the response is left alone.
    #[default]
    NoOrigin,
    /// An `Origin` that is not allowed: only `Vary: Origin`.
    Disallowed,
    /// An allowed `Origin`, echoed in `Access-Control-Allow-Origin`.
    Allowed(HeaderValue),
}

/// A compiled CORS filter.
#[derive(Clone, Debug)]
pub(super) struct CorsOp {
    origins: Origins,
    credentials: bool,
    methods: Allow,
    headers: Allow,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

#[derive(Clone, Debug)]
enum Origins {
    Any,
    List(Box<[OriginPattern]>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct OriginPattern {
    https: bool,
    host: HostPattern,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(Box<str>),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(Box<str>),
}

/// An `Access-Control-Allow-Methods` or `-Headers` value.
#[derive(Clone, Debug)]
enum Allow {
    /// Not configured: the header is left out.
    None,
    /// The configured list, joined with `, `.
    List(HeaderValue),
    /// `*` configured: echo the request's `Access-Control-Request-*`.
    Echo,
}

impl CorsOp {
    /// Validates and compiles a policy. Error fields are relative to the filter
    /// (`allowOrigins[1]`).
    pub(super) fn compile(p: &CorsPolicy) -> Result<Self, ConfigError> {
        let mut any_origin = false;
        let mut patterns = Vec::with_capacity(p.allow_origins.len());
        for (i, o) in p.allow_origins.iter().enumerate() {
            if o == "*" {
                any_origin = true;
                continue;
            }
            let pattern = OriginPattern::parse(o)
                .map_err(|reason| ConfigError::new(format!("allowOrigins[{i}]"), reason))?;
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        let origins = if any_origin {
            Origins::Any
        } else {
            Origins::List(patterns.into_boxed_slice())
        };

        let methods = compile_allow(&p.allow_methods, "allowMethods", |m| {
            Method::from_bytes(m.as_bytes())
                .map(drop)
                .map_err(|_| format!("{m:?} is not a valid HTTP method"))
        })?;
        let headers = compile_allow(&p.allow_headers, "allowHeaders", check_header_name)?;

        let mut expose_any = false;
        let mut expose = Vec::with_capacity(p.expose_headers.len());
        for (i, h) in p.expose_headers.iter().enumerate() {
            if h == "*" {
                expose_any = true;
                continue;
            }
            check_header_name(h).map_err(|r| ConfigError::new(format!("exposeHeaders[{i}]"), r))?;
            expose.push(h.as_str());
        }
        // `*` is not allowed on a credentialed response: only the named headers then.
        let expose = if expose_any && !p.allow_credentials {
            Some(HeaderValue::from_static("*"))
        } else {
            join(&expose, "exposeHeaders")?
        };

        let max_age = HeaderValue::from(p.max_age.unwrap_or(DEFAULT_MAX_AGE));
        Ok(Self {
            origins,
            credentials: p.allow_credentials,
            methods,
            headers,
            expose,
            max_age,
        })
    }

    /// What the filter makes of the request's `Origin`: no allocation unless allowed.
    pub(super) fn see(&self, headers: &HeaderMap) -> Seen {
        match headers.get(ORIGIN) {
            None => Seen::NoOrigin,
            Some(origin) if self.allows(origin) => Seen::Allowed(origin.clone()),
            Some(_) => Seen::Disallowed,
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::List(patterns) => {
                let Some((https, host, port)) = parse_origin(origin.as_bytes()) else {
                    return false;
                };
                patterns.iter().any(|p| p.matches(https, host, port))
            }
        }
    }

    /// The preflight answer when `req` is a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), else `None`.
    pub(super) fn preflight(&self, req: &Request<Body>) -> Option<Response<Body>> {
        if req.method() != Method::OPTIONS {
            return None;
        }
        let headers = req.headers();
        let requested_method = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
        let seen = self.see(headers);
        if matches!(seen, Seen::NoOrigin) {
            return None;
        }
        let mut rsp = Response::new(Body::empty());
        *rsp.status_mut() = StatusCode::OK;
        self.respond(rsp.headers_mut(), &seen);
        if matches!(seen, Seen::Allowed(_)) {
            let out = rsp.headers_mut();
            match &self.methods {
                Allow::None => {}
                Allow::List(v) => {
                    out.insert(ACCESS_CONTROL_ALLOW_METHODS, v.clone());
                }
                Allow::Echo => {
                    out.insert(ACCESS_CONTROL_ALLOW_METHODS, requested_method.clone());
                }
            }
            match &self.headers {
                Allow::None => {}
                Allow::List(v) => {
                    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
                }
                Allow::Echo => {
                    if let Some(v) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
                        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
                    }
                }
            }
            out.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        }
        Some(rsp)
    }

    /// Adds the headers every response to a request with an `Origin` gets.
    pub(super) fn respond(&self, out: &mut HeaderMap, seen: &Seen) {
        let origin = match seen {
            Seen::NoOrigin => return,
            Seen::Disallowed => None,
            Seen::Allowed(origin) => Some(origin),
        };
        add_vary_origin(out);
        let Some(origin) = origin else { return };
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.expose {
            out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}

/// Appends `Vary: Origin` unless the response already varies on it (or on everything).
fn add_vary_origin(out: &mut HeaderMap) {
    let present = out.get_all(VARY).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let t = t.trim_ascii();
            t == b"*" || t.eq_ignore_ascii_case(b"origin")
        })
    });
    if !present {
        out.append(VARY, HeaderValue::from_static("origin"));
    }
}

/// Splits a request's `Origin` into (https, host, port); `None` when it is not an
/// `http`/`https` origin (`null`, a path, an invalid port).
fn parse_origin(origin: &[u8]) -> Option<(bool, &str, u16)> {
    let s = std::str::from_utf8(origin).ok()?;
    let (https, rest) = split_scheme(s)?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = split_host_port(rest);
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        // `host:port` whose port is not a number.
        return None;
    }
    Some((https, host, port.unwrap_or(if https { 443 } else { 80 })))
}

fn split_scheme(s: &str) -> Option<(bool, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    if scheme.eq_ignore_ascii_case("https") {
        Some((true, rest))
    } else if scheme.eq_ignore_ascii_case("http") {
        Some((false, rest))
    } else {
        None
    }
}

// === impl OriginPattern ===

impl OriginPattern {
    fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not `*` or <scheme>://<host>[:<port>]");
        let (https, rest) = split_scheme(s).ok_or_else(|| {
            format!("{s:?} must start with http:// or https:// (or be `*` alone)")
        })?;
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(bad());
        }
        let (host, port) = split_host_port(rest);
        let bad_port = (host.contains(':') && !host.starts_with('['))
            || (rest.starts_with('[') && !rest.ends_with(']') && port.is_none());
        if bad_port || port == Some(0) {
            return Err(format!("{s:?}: port must be a number between 1 and 65535"));
        }
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix('*') {
            if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
                return Err(format!(
                    "{s:?}: a wildcard host must be `*` or start with `*.`"
                ));
            }
            super::redirect::check_hostname(&suffix[1..])
                .map_err(|r| format!("{s:?}: host {r}"))?;
            HostPattern::Suffix(suffix.to_ascii_lowercase().into())
        } else {
            if host.contains('*') {
                return Err(format!(
                    "{s:?}: a wildcard host must be `*` or start with `*.`"
                ));
            }
            super::redirect::check_hostname(host).map_err(|r| format!("{s:?}: host {r}"))?;
            HostPattern::Exact(host.to_ascii_lowercase().into())
        };
        Ok(Self { https, host, port })
    }

    fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        if self.https != https || self.port != port {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Suffix(suffix) => {
                let (h, s) = (host.as_bytes(), suffix.as_bytes());
                h.len() > s.len() && h[h.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

fn check_header_name(h: &str) -> Result<(), String> {
    HeaderName::from_bytes(h.as_bytes())
        .map(drop)
        .map_err(|_| format!("{h:?} is not a valid header name"))
}

/// Compiles `allowMethods` / `allowHeaders`: `*` anywhere means echo.
fn compile_allow(
    list: &[String],
    field: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Allow, ConfigError> {
    let mut names = Vec::with_capacity(list.len());
    let mut any = false;
    for (i, v) in list.iter().enumerate() {
        if v == "*" {
            any = true;
            continue;
        }
        check(v).map_err(|r| ConfigError::new(format!("{field}[{i}]"), r))?;
        if !names.contains(&v.as_str()) {
            names.push(v.as_str());
        }
    }
    if any {
        return Ok(Allow::Echo);
    }
    Ok(join(&names, field)?.map_or(Allow::None, Allow::List))
}

/// One header value listing `names`, or `None` for an empty list.
fn join(names: &[&str], field: &str) -> Result<Option<HeaderValue>, ConfigError> {
    if names.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&names.join(", "))
        .map(Some)
        .map_err(|_| ConfigError::new(field, "is not a valid header value"))
}
