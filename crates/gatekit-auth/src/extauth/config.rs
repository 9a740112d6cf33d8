//! What an external authorization check is configured with, and its counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gatekit_core::Backend;
use http::HeaderName;

/// The default time allowed for one check (Envoy Gateway's `extAuth.timeout` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a request is checked by an external authorization service.
#[derive(Clone, Debug)]
pub struct ExtAuthConfig {
    pub(super) backend: Backend,
    pub(super) protocol: Protocol,
    pub(super) headers_to_ext_auth: Vec<HeaderName>,
    pub(super) body: Option<BodyToExtAuth>,
    pub(super) timeout: Duration,
    pub(super) fail_open: bool,
}

#[derive(Clone, Debug)]
pub(super) enum Protocol {
    Http(HttpService),
    #[cfg(feature = "grpc")]
    Grpc(GrpcService),
}

impl ExtAuthConfig {
    /// Checks with an HTTP authorization service reached through `backend` (a balanced
    /// upstream in the gateway, any [`Backend`] in a server of your own).
    pub fn http(backend: Backend, service: HttpService) -> Self {
        Self::with_protocol(backend, Protocol::Http(service))
    }

    /// Checks with a gRPC service implementing Envoy's
    /// `envoy.service.auth.v3.Authorization/Check`, reached through `backend`, which
    /// must speak HTTP/2 (h2c or h2 over TLS).
    #[cfg(feature = "grpc")]
    pub fn grpc(backend: Backend, service: GrpcService) -> Self {
        Self::with_protocol(backend, Protocol::Grpc(service))
    }

    fn with_protocol(backend: Backend, protocol: Protocol) -> Self {
        Self {
            backend,
            protocol,
            headers_to_ext_auth: Vec::new(),
            body: None,
            timeout: DEFAULT_TIMEOUT,
            fail_open: false,
        }
    }

    /// The client request headers sent to the service (Envoy Gateway's
    /// `headersToExtAuth`). HTTP mode always sends `Host` and `Authorization` (and the
    /// method, path and a `Content-Length` of what it sends) and adds these; gRPC mode
    /// sends every header unless some are named here, then only those.
    #[must_use]
    pub fn with_headers_to_ext_auth(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.headers_to_ext_auth.extend(names);
        self
    }

    /// Sends the request body too, buffered up to a limit (Envoy Gateway's
    /// `bodyToExtAuth`). Without it, no body is sent.
    #[must_use]
    pub fn with_body(mut self, body: BodyToExtAuth) -> Self {
        self.body = Some(body);
        self
    }

    /// The time allowed for one check, from sending the check to its whole answer
    /// (default [`DEFAULT_TIMEOUT`], 10 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// When the service cannot be asked (unreachable, timed out, a 5xx, a malformed
    /// answer): `false` (the default) refuses the request with 503
    /// `auth-unavailable`; `true` lets it through, logged and counted in
    /// [`ExtAuthStats::failed_open`].
    #[must_use]
    pub fn with_fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// The time allowed for one check.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether requests go on when the service cannot be asked.
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }
}

/// The HTTP authorization service's settings (Envoy Gateway's `extAuth.http`).
#[derive(Clone, Debug, Default)]
pub struct HttpService {
    pub(super) path_prefix: String,
    pub(super) headers_to_backend: Vec<HeaderName>,
}

impl HttpService {
    /// No path prefix, no headers copied to the backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// A path put before the request's own path in the check request (`/auth` turns a
    /// check of `/items?a=1` into `/auth/items?a=1`; Envoy Gateway's `http.path`).
    /// A trailing `/` is dropped.
    #[must_use]
    pub fn with_path_prefix(mut self, prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into();
        while prefix.ends_with('/') {
            prefix.pop();
        }
        self.path_prefix = prefix;
        self
    }

    /// Headers of an allowing answer copied onto the request before it goes on,
    /// replacing the request's own (Envoy Gateway's `headersToBackend`). A client's
    /// value of one of these names never reaches the upstream, even when the answer
    /// lacks the name.
    #[must_use]
    pub fn with_headers_to_backend(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.headers_to_backend.extend(names);
        self
    }
}

/// The gRPC authorization service's settings (Envoy Gateway's `extAuth.grpc`).
#[cfg(feature = "grpc")]
#[derive(Clone, Debug)]
pub struct GrpcService {
    pub(super) authority: http::HeaderValue,
}

#[cfg(feature = "grpc")]
impl GrpcService {
    /// Calls go out with `:authority` `authority` (the service's host, `authz.auth:9001`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](gatekit_core::ConfigError) when `authority` is not a valid
    /// header value.
    pub fn new(authority: &str) -> Result<Self, gatekit_core::ConfigError> {
        let authority = http::HeaderValue::from_str(authority).map_err(|_| {
            gatekit_core::ConfigError::new(
                "authority",
                format!("{authority:?} is not a valid authority"),
            )
        })?;
        Ok(Self { authority })
    }
}

/// How much of the request body is sent to the service (Envoy Gateway's
/// `bodyToExtAuth`). The body is buffered before the check and then sent on to the
/// upstream unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyToExtAuth {
    pub(super) max_bytes: usize,
    pub(super) allow_partial: bool,
}

impl BodyToExtAuth {
    /// Buffers at most `max_bytes`; a longer body is refused with 413
    /// `payload-too-large` before any check (whatever [`ExtAuthConfig::with_fail_open`]
    /// says, as in Envoy).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            allow_partial: false,
        }
    }

    /// With `true`, a longer body is not refused: its first `max_bytes` are sent to the
    /// service (marked `x-envoy-auth-partial-body: true` in HTTP mode) and the whole
    /// body goes on to the upstream (Envoy's `allow_partial_message`).
    #[must_use]
    pub fn with_allow_partial(mut self, allow: bool) -> Self {
        self.allow_partial = allow;
        self
    }
}

/// What a check layer decided, counted since it was built. Shared by every clone of
/// the layer and its services.
#[derive(Debug, Default)]
pub struct ExtAuthStats {
    pub(super) allowed: AtomicU64,
    pub(super) denied: AtomicU64,
    pub(super) failed_closed: AtomicU64,
    pub(super) failed_open: AtomicU64,
    pub(super) too_large: AtomicU64,
}

impl ExtAuthStats {
    /// Requests the service allowed.
    pub fn allowed(&self) -> u64 {
        self.allowed.load(Ordering::Relaxed)
    }

    /// Requests the service denied (its answer went to the client).
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    /// Requests refused with 503 because the service could not be asked.
    pub fn failed_closed(&self) -> u64 {
        self.failed_closed.load(Ordering::Relaxed)
    }

    /// Requests let through unchecked because the service could not be asked and the
    /// check fails open.
    pub fn failed_open(&self) -> u64 {
        self.failed_open.load(Ordering::Relaxed)
    }

    /// Requests refused with 413 because their body was over the buffering limit.
    pub fn too_large(&self) -> u64 {
        self.too_large.load(Ordering::Relaxed)
    }

    pub(super) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
