//! HTTP filters, compiled from the route model's [`Filter`](crate::route::Filter)s.
//!
//! PLACEHOLDER INTERFACE: the filters work fills this module in; the signatures below are
//! what the route table and the router call.

use http::{Request, Response};

use crate::error::ConfigError;
use crate::route::Filter;
use crate::{Backends, Body};

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

/// A compiled, immutable list of filters, applied in order.
#[derive(Clone, Debug, Default)]
pub struct FilterChain {
    _filters: Vec<()>,
}

impl FilterChain {
    /// Compiles filters, resolving mirror backends through `backends`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose field path is relative to the list (`[2].requestRedirect.statusCode`).
    pub fn compile(filters: &[Filter], backends: &dyn Backends) -> Result<Self, ConfigError> {
        let _ = (filters, backends);
        Ok(Self::default())
    }

    /// Whether the chain does nothing.
    pub fn is_empty(&self) -> bool {
        self._filters.is_empty()
    }

    /// Applies request filters. Returns a response when a filter answers the request
    /// itself (a redirect); the backend is then not called.
    pub fn apply_request(
        &self,
        req: &mut Request<Body>,
        cx: &RequestContext<'_>,
    ) -> Option<Response<Body>> {
        let _ = (req, cx);
        None
    }

    /// Applies response filters.
    pub fn apply_response(&self, rsp: &mut Response<Body>) {
        let _ = rsp;
    }
}
