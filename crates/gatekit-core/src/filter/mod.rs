//! HTTP filters, compiled from the route model's [`Filter`]s: Gateway API HTTPRoute
//! filters, compiled once and applied per request.
//!
//! [`FilterChain::compile`] validates a rule's (or a backend reference's) filter list and
//! turns it into ready-to-apply operations: header names and values parsed, paths
//! checked, mirror backends resolved. Per request, [`FilterChain::apply_request`] walks the
//! request filters in list order and [`FilterChain::apply_response`] the response
//! filters; neither parses configuration, and the only allocations are those the protocol
//! asks for (a redirect's `Location`, a rewritten path, a mirrored copy).
//!
//! # The filters
//!
//! - **`RequestHeaderModifier`, `ResponseHeaderModifier`** (spec `HTTPHeaderFilter`):
//!   `set` replaces every value of a name, `add` appends a value, `remove` deletes a name;
//!   names are case-insensitive and each appears at most once per list. The spec does not
//!   order the three lists; gatekit applies **remove, then set, then add**, as Envoy does
//!   (remove first, then the header options, set before add).
//! - **`RequestRedirect`** (spec `HTTPRequestRedirectFilter`): answers with 301, 302,
//!   303, 307 or 308 and a `Location` built from the configured scheme, hostname, port
//!   and path, each defaulting to the request's. Without a configured port, a configured
//!   scheme brings its well-known port (80, 443), otherwise the listener's port is used;
//!   the port is left out when it is the scheme's default. The query is kept.
//! - **`URLRewrite`** (spec `HTTPURLRewriteFilter`): replaces the `Host` header (and the
//!   URI authority when the URI has one, as in HTTP/2) and the path; the query is kept.
//! - **Path modifiers** (spec `HTTPPathModifier`, for the two above): `ReplaceFullPath`,
//!   or `ReplacePrefixMatch`, which replaces the part the rule's `PathPrefix` matched
//!   (from [`RequestContext::matched_prefix`]) following the spec's table: `/foo/bar`
//!   with prefix `/foo` and replacement `/xyz` gives `/xyz/bar`, with `""` gives `/bar`;
//!   `/foo` with `/foo` and `""` gives `/`.
//! - **`RequestMirror`** (spec `HTTPRequestMirrorFilter`): sends a copy of the request,
//!   for the configured fraction of requests, to another backend in a spawned task and
//!   ignores the answer. The client's request never waits on a mirror: each mirror filter
//!   has a cap of in-flight copies (over it, copies are skipped and counted), and a body
//!   is copied through a *tee* that forwards every frame to the primary unchanged and
//!   offers it, without waiting, to a bounded channel feeding the mirror. When that
//!   channel is full or the copy exceeds a size limit, the mirror's body ends with an
//!   error (the mirror request is abandoned, never sent truncated) and the primary goes
//!   on. The bounds are [`MirrorLimits`]; the counters are [`FilterChain::mirror_stats`].
//!   Mirroring needs a tokio runtime with timers (for the mirror timeout).
//! - **`CORS`** (spec `HTTPCORSFilter`, GEP-1767): answers preflights itself (200, the
//!   backend is not called) and adds `Access-Control-*` headers and `Vary: Origin` to
//!   the responses of requests with an allowed `Origin` (details in `filter/cors.rs`).
//!   The request's `Origin` is read once per request ([`FilterChain::response_context`])
//!   and carried to the response in a [`ResponseContext`]. The gateway's own error
//!   responses on such a rule (a 5xx for a failed upstream, a 429 from a rate limit, a
//!   503 from a breaker) get the same CORS headers, added by the
//!   [`Router`](crate::Router) where it turns the error into a response.
//!
//! # Validation
//!
//! Beyond each filter's own fields, the list is checked as the spec's validation rules
//! say: a `RequestRedirect` and a `URLRewrite` cannot both appear, and each filter type
//! except `RequestMirror` appears at most once. Errors name the field relative to the
//! list, in the Gateway API's spelling: `[2].requestRedirect.statusCode`,
//! `[0].requestHeaderModifier.set[1].name`.
//!
//! # Order
//!
//! Request filters run in list order; a redirect answers at once, so filters after it do
//! not run. A mirror copies the request as the filters before it left it.
//!
//! # As a layer
//!
//! [`FilterLayer`] applies a chain around a service ([`Filters`]), taking the
//! [`RequestContext`] from the request's extensions. A rule's stack in the route table
//! has one for the rule's filters; the weighted backend choice applies the chosen
//! backendRef's chain the same way (see [`Router`](crate::Router)).

mod cors;
mod future;
mod header;
mod layer;
mod mirror;
mod path;
mod redirect;
mod rewrite;
mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::{Request, Response};

pub use self::future::ResponseFuture;
pub use self::layer::FilterLayer;
pub use self::mirror::{MirrorLimits, MirrorStats};
pub use self::service::Filters;

use self::cors::{CorsOp, Seen};
use self::header::HeaderOps;
use self::mirror::{Counters, MirrorOp};
use self::redirect::RedirectOp;
use self::rewrite::RewriteOp;
use crate::error::{ConfigError, ErrorKind, kind_response};
use crate::route::Filter;
use crate::{Backends, Body, ConnectionInfo, MatchedRoute};

/// What a filter needs to know about the request besides the request itself.
#[derive(Clone, Copy, Debug)]
pub struct RequestContext<'a> {
    /// The path prefix the matched rule matched on (the value of a `Prefix` path match,
    /// without a trailing `/`), for `ReplacePrefixMatch`.
    pub matched_prefix: Option<&'a str>,
    /// Whether the client connection is TLS (for redirects' default scheme and port).
    pub tls: bool,
    /// The port the request arrived on (the listener's), for redirects.
    pub listener_port: Option<u16>,
}

/// Options for [`FilterChain::compile_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterOptions {
    /// Bounds on request mirroring.
    pub mirror: MirrorLimits,
}

impl FilterOptions {
    /// Sets the mirror limits.
    #[must_use]
    pub fn with_mirror(mut self, limits: MirrorLimits) -> Self {
        self.mirror = limits;
        self
    }
}

/// A compiled, immutable list of filters, applied in order.
///
/// Cloning is one reference-count increment; clones share the mirror limits' semaphores
/// and the mirror counters.
#[derive(Clone, Debug, Default)]
pub struct FilterChain {
    inner: Option<Arc<Inner>>,
}

/// The CORS headers an error response gets (see [`FilterChain::error_cors`]).
#[derive(Clone, Debug)]
pub(crate) struct ErrorCors {
    chain: FilterChain,
    rcx: ResponseContext,
}

impl ErrorCors {
    /// Adds the CORS response headers (and `Vary: Origin`) to an error response.
    pub(crate) fn apply(&self, rsp: &mut Response<Body>) {
        if let Some(cors) = self.chain.inner.as_deref().and_then(|i| i.cors.as_ref()) {
            cors.respond(rsp.headers_mut(), &self.rcx.cors);
        }
    }
}

/// What a chain's response filters keep from the request: the `Origin` a `CORS` filter
/// saw. Built by [`FilterChain::response_context`] before the request is sent on, used by
/// [`FilterChain::apply_response_with`]. The default is "no `Origin`".
#[derive(Clone, Debug, Default)]
pub struct ResponseContext {
    cors: Seen,
}

#[derive(Debug)]
struct Inner {
    request: Box<[RequestOp]>,
    /// The chain's CORS filter (at most one); also in `request` at its list position.
    cors: Option<CorsOp>,
    /// Whether a redirect or rewrite may read [`RequestContext::matched_prefix`].
    uses_prefix: bool,
    response: Box<[HeaderOps]>,
    counters: Arc<Counters>,
}

#[derive(Debug)]
enum RequestOp {
    Headers(HeaderOps),
    Redirect(RedirectOp),
    Rewrite(RewriteOp),
    Mirror(MirrorOp),
    /// Answers preflights with [`Inner::cors`].
    Cors,
}

impl FilterChain {
    /// Compiles filters with default [`FilterOptions`], resolving mirror backends through
    /// `backends`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose field path is relative to the list (`[2].requestRedirect.statusCode`).
    pub fn compile(filters: &[Filter], backends: &dyn Backends) -> Result<Self, ConfigError> {
        Self::compile_with(filters, backends, &FilterOptions::default())
    }

    /// Compiles filters with `options`, resolving mirror backends through `backends`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose field path is relative to the list (`[2].requestRedirect.statusCode`):
    /// an invalid header name or value, a header named twice in one list of a modifier, a
    /// redirect status other than 301/302/303/307/308, a scheme other than `http`/`https`,
    /// a port of 0, a hostname with a port or invalid characters, a path not starting
    /// with `/`, a mirror backend that does not resolve, a fraction with denominator 0 or
    /// numerator above the denominator, a CORS origin that is not `*` or
    /// `http(s)://host[:port]` (host `*` or `*.domain` allowed), a CORS method or header
    /// name that is not a valid token, a `RequestRedirect` together with a `URLRewrite`,
    /// or a filter type (other than `RequestMirror`) listed twice.
    pub fn compile_with(
        filters: &[Filter],
        backends: &dyn Backends,
        options: &FilterOptions,
    ) -> Result<Self, ConfigError> {
        if filters.is_empty() {
            return Ok(Self::default());
        }
        let mut request = Vec::new();
        let mut response = Vec::new();
        // Index of the first filter of each once-only type, in `Filter`'s order.
        let mut seen: [Option<usize>; 5] = [None; 5];
        let mut cors = None;
        for (i, filter) in filters.iter().enumerate() {
            let at = |e: ConfigError, field: &str| e.within(field).within(&format!("[{i}]"));
            let (slot, field) = match filter {
                Filter::RequestHeaderModifier(_) => (Some(0), "requestHeaderModifier"),
                Filter::ResponseHeaderModifier(_) => (Some(1), "responseHeaderModifier"),
                Filter::RequestRedirect(_) => (Some(2), "requestRedirect"),
                Filter::UrlRewrite(_) => (Some(3), "urlRewrite"),
                Filter::RequestMirror(_) => (None, "requestMirror"),
                Filter::Cors(_) => (Some(4), "cors"),
            };
            if let Some(slot) = slot {
                if let Some(first) = seen[slot] {
                    return Err(ConfigError::new(
                        "type",
                        format!(
                            "{field} is already used by filter [{first}]; it cannot be repeated"
                        ),
                    )
                    .within(&format!("[{i}]")));
                }
                seen[slot] = Some(i);
            }
            if let (Some(r), Some(w)) = (seen[2], seen[3]) {
                let (other, other_field) = if i == r {
                    (w, "urlRewrite")
                } else {
                    (r, "requestRedirect")
                };
                return Err(ConfigError::new(
                    "type",
                    format!(
                        "{field} cannot be used together with {other_field} (filter [{other}]) in one rule"
                    ),
                )
                .within(&format!("[{i}]")));
            }
            match filter {
                Filter::RequestHeaderModifier(m) => request.push(RequestOp::Headers(
                    HeaderOps::compile(m).map_err(|e| at(e, field))?,
                )),
                Filter::ResponseHeaderModifier(m) => {
                    response.push(HeaderOps::compile(m).map_err(|e| at(e, field))?);
                }
                Filter::RequestRedirect(r) => request.push(RequestOp::Redirect(
                    RedirectOp::compile(r).map_err(|e| at(e, field))?,
                )),
                Filter::UrlRewrite(w) => request.push(RequestOp::Rewrite(
                    RewriteOp::compile(w).map_err(|e| at(e, field))?,
                )),
                Filter::RequestMirror(m) => request.push(RequestOp::Mirror(
                    MirrorOp::compile(m, backends, &options.mirror).map_err(|e| at(e, field))?,
                )),
                Filter::Cors(c) => {
                    cors = Some(CorsOp::compile(c).map_err(|e| at(e, field))?);
                    request.push(RequestOp::Cors);
                }
            }
        }
        Ok(Self {
            inner: Some(Arc::new(Inner {
                uses_prefix: request
                    .iter()
                    .any(|op| matches!(op, RequestOp::Redirect(_) | RequestOp::Rewrite(_))),
                request: request.into_boxed_slice(),
                cors,
                response: response.into_boxed_slice(),
                counters: Arc::default(),
            })),
        })
    }

    /// Whether the chain does nothing.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Applies request filters, in list order. Returns a response when a filter answers
    /// the request itself (a redirect, a CORS preflight, or a 400 in the unexpected case that a rewritten
    /// URI is rejected); the backend is then not called, and the filters after it do not
    /// run.
    ///
    /// A returned response has not been through the response filters: pass it to
    /// [`apply_response`](Self::apply_response) like any other response.
    pub fn apply_request(
        &self,
        req: &mut Request<Body>,
        cx: &RequestContext<'_>,
    ) -> Option<Response<Body>> {
        let inner = self.inner.as_deref()?;
        for op in &*inner.request {
            match op {
                RequestOp::Headers(h) => h.apply(req.headers_mut()),
                RequestOp::Redirect(r) => return Some(r.respond(req, cx)),
                RequestOp::Rewrite(w) => {
                    if w.apply(req, cx).is_err() {
                        tracing::debug!(uri = %req.uri(), "URL rewrite produced an invalid URI");
                        return Some(kind_response(ErrorKind::BadRequest));
                    }
                }
                RequestOp::Mirror(m) => m.apply(req, &inner.counters),
                RequestOp::Cors => {
                    if let Some(rsp) = inner.cors.as_ref().and_then(|c| c.preflight(req)) {
                        return Some(rsp);
                    }
                }
            }
        }
        None
    }

    /// Applies request filters like [`apply_request`](Self::apply_request), with the
    /// [`RequestContext`] taken from the request's extensions ([`MatchedRoute`] and
    /// [`ConnectionInfo`]). Does nothing (one branch) for an empty chain.
    pub(crate) fn apply_routed(&self, req: &mut Request<Body>) -> Option<Response<Body>> {
        let inner = self.inner.as_deref()?;
        let (tls, listener_port) = req
            .extensions()
            .get::<ConnectionInfo>()
            .map_or((false, None), |c| (c.is_tls(), Some(c.local_addr().port())));
        // The table matched the prefix at the start of the path, so it is the path's
        // first `len` bytes; a chain that builds a new path reads it from a copy of the
        // URI (a reference-count increment), as the filters mutate the request.
        let uri = if inner.uses_prefix {
            req.extensions()
                .get::<MatchedRoute>()
                .and_then(MatchedRoute::matched_prefix_len)
                .map(|len| (req.uri().clone(), len))
        } else {
            None
        };
        let cx = RequestContext {
            matched_prefix: uri.as_ref().and_then(|(u, len)| u.path().get(..*len)),
            tls,
            listener_port,
        };
        self.apply_request(req, &cx)
    }

    /// What the response filters need from `req` (the `Origin` a CORS filter allows):
    /// call it before [`apply_request`](Self::apply_request) and pass the result to
    /// [`apply_response_with`](Self::apply_response_with). Allocates nothing; an allowed
    /// origin is kept as a reference-counted copy of the request's header value.
    pub fn response_context(&self, req: &Request<Body>) -> ResponseContext {
        match self.inner.as_deref().and_then(|i| i.cors.as_ref()) {
            Some(cors) => ResponseContext {
                cors: cors.see(req.headers()),
            },
            None => ResponseContext::default(),
        }
    }

    /// What the gateway's own error response to `req` needs from this chain: `None`
    /// unless the chain has a CORS filter and the request an `Origin`. Errors skip the
    /// response filters (they pass the filter layer as errors, and some come from layers
    /// above it: rate limits, the request timeout); the [`Router`](crate::Router) applies
    /// this to the response [`error_response`](crate::error_response) builds, so a
    /// browser can read the error of an allowed origin's request.
    pub(crate) fn error_cors(&self, req: &Request<Body>) -> Option<ErrorCors> {
        let cors = self.inner.as_deref()?.cors.as_ref()?;
        match cors.see(req.headers()) {
            Seen::NoOrigin => None,
            seen => Some(ErrorCors {
                chain: self.clone(),
                rcx: ResponseContext { cors: seen },
            }),
        }
    }

    /// Applies response filters (`ResponseHeaderModifier`) as for a request without a
    /// [`ResponseContext`] (no CORS headers).
    pub fn apply_response(&self, rsp: &mut Response<Body>) {
        self.apply_response_with(rsp, &ResponseContext::default());
    }

    /// Applies response filters: `ResponseHeaderModifier`, then the CORS headers for the
    /// request `rcx` was taken from.
    pub fn apply_response_with(&self, rsp: &mut Response<Body>, rcx: &ResponseContext) {
        if let Some(inner) = &self.inner {
            for h in &*inner.response {
                h.apply(rsp.headers_mut());
            }
            if let Some(cors) = &inner.cors {
                cors.respond(rsp.headers_mut(), &rcx.cors);
            }
        }
    }

    /// The mirror counters of this chain (shared by its clones); zeros when it has no
    /// mirror.
    pub fn mirror_stats(&self) -> MirrorStats {
        self.inner
            .as_ref()
            .map(|i| i.counters.snapshot())
            .unwrap_or_default()
    }
}
