//! Request-path errors and the one place that turns them into responses.
//!
//! Every layer passes errors on as [`BoxError`] so stacks compose. Leaf errors that
//! gatekit raises are [`Error`]s: they say what happened ([`ErrorKind`]), which side
//! failed ([`Side`]) and whether a retry is safe. [`error_response`] walks an error's
//! cause chain, finds the most specific known cause and picks the status: 4xx for the
//! client's fault, 502/503/504 for the upstream's.
//!
//! A layer that fails a request before sending any byte of it (a refused connect, no
//! healthy endpoint) hands the request back in its error
//! ([`Error::with_unsent_request`]); a retry takes it out again with
//! [`take_unsent_request`] and sends it elsewhere, without having kept a copy.

use std::any::Any;
use std::fmt;

use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::Body;

/// A type-erased error, as tower services pass them on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `Result` with gatekit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which party caused a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Side {
    /// The client sent something wrong or asked for something that does not exist.
    Client,
    /// An upstream (backend) failed or could not be reached.
    Upstream,
    /// The gateway itself refused the request (limits, configuration).
    Gateway,
}

/// What went wrong on the request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No route matches the request (404).
    NoRoute,
    /// The request is malformed (400).
    BadRequest,
    /// The matched rule has no valid backend for this share of traffic (500, as the
    /// Gateway API specifies).
    InvalidBackend,
    /// The upstream has no endpoint that may take requests (503).
    NoHealthyEndpoint,
    /// Connecting to the endpoint failed: refused, unreachable, timed out (503).
    /// The request was not sent, so a retry is safe.
    Connect,
    /// The TLS handshake with the endpoint failed: its certificate does not verify
    /// (unknown CA, name or subject alternative name mismatch, expired) or it refused
    /// gatekit's client certificate (502). The request was not sent, so a retry (to
    /// another endpoint) is safe.
    UpstreamTls,
    /// The upstream did not answer in time (504).
    Timeout,
    /// The matched rule's whole-request timeout (HTTPRoute `timeouts.request`) expired
    /// before the response head (504).
    RequestTimeout,
    /// One attempt to a backend outlived the matched rule's per-attempt timeout
    /// (HTTPRoute `timeouts.backendRequest`) (504).
    BackendRequestTimeout,
    /// The upstream broke the protocol or reset the stream (502).
    UpstreamProtocol,
    /// The gateway is at its concurrency or queue limit (503).
    Overloaded,
    /// A circuit breaker is open for the upstream (503).
    CircuitOpen,
    /// A rate limit refused the request (429).
    RateLimited,
    /// The request body is larger than the matched rule allows (413).
    PayloadTooLarge,
    /// On a TLS connection, the request's host belongs to another listener than the
    /// server name (SNI) the connection was opened for (421): the client must open a
    /// connection for that host (Gateway API `HTTPRouteHTTPSListenerDetectMisdirectedRequests`).
    MisdirectedRequest,
    /// The request carries no credentials, or credentials that do not verify, for an
    /// access policy of the matched rule (401; the policy's challenge in
    /// `WWW-Authenticate`).
    Unauthenticated,
    /// The request's identity is valid but an access policy of the matched rule does not
    /// let it through, or its client address is not allowed (403).
    Forbidden,
    /// An access policy could not decide: its authorization service or key source did
    /// not answer, and the policy fails closed (503). The request was not sent.
    AuthUnavailable,
    /// An access policy of the matched rule cannot be used (a Secret it names is
    /// missing, its settings are invalid): the rule refuses every request rather than
    /// let it through unchecked (500).
    InvalidAuth,
}

impl ErrorKind {
    /// The status code a response for this kind carries.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::InvalidBackend => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NoHealthyEndpoint | Self::Connect | Self::Overloaded | Self::CircuitOpen => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout | Self::RequestTimeout | Self::BackendRequestTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::UpstreamProtocol | Self::UpstreamTls => StatusCode::BAD_GATEWAY,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidAuth => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The party that caused errors of this kind.
    pub const fn side(self) -> Side {
        match self {
            Self::NoRoute
            | Self::BadRequest
            | Self::RateLimited
            | Self::PayloadTooLarge
            | Self::MisdirectedRequest
            | Self::Unauthenticated
            | Self::Forbidden => Side::Client,
            Self::InvalidBackend | Self::Overloaded | Self::CircuitOpen | Self::InvalidAuth => {
                Side::Gateway
            }
            Self::NoHealthyEndpoint
            | Self::Connect
            | Self::Timeout
            | Self::RequestTimeout
            | Self::BackendRequestTimeout
            | Self::UpstreamProtocol
            | Self::UpstreamTls
            | Self::AuthUnavailable => Side::Upstream,
        }
    }

    /// A short, stable name, used in the `x-gatekit-error` response header and in metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoRoute => "no-route",
            Self::BadRequest => "bad-request",
            Self::InvalidBackend => "invalid-backend",
            Self::NoHealthyEndpoint => "no-healthy-endpoint",
            Self::Connect => "upstream-connect",
            Self::Timeout => "upstream-timeout",
            Self::RequestTimeout => "request-timeout",
            Self::BackendRequestTimeout => "backend-request-timeout",
            Self::UpstreamProtocol => "upstream-protocol",
            Self::UpstreamTls => "upstream-tls",
            Self::Overloaded => "overloaded",
            Self::CircuitOpen => "circuit-open",
            Self::RateLimited => "rate-limited",
            Self::PayloadTooLarge => "payload-too-large",
            Self::MisdirectedRequest => "misdirected-request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::AuthUnavailable => "auth-unavailable",
            Self::InvalidAuth => "invalid-auth-policy",
        }
    }

    /// The gRPC status code a gRPC client gets for this kind (the
    /// [`Router`](crate::Router) answers gRPC calls' errors with it in `grpc-status`):
    /// gRPC's HTTP-to-gRPC status mapping
    /// (`UNIMPLEMENTED` for no route, `INTERNAL` for a bad request, `UNAVAILABLE` for
    /// 429, 502, 503 and 504), `UNAVAILABLE` for an invalid backend (as the GRPCRoute
    /// spec requires) and a misdirected request (the client may retry elsewhere), and
    /// `RESOURCE_EXHAUSTED` for a body over the limit.
    pub const fn grpc_status(self) -> u8 {
        const INTERNAL: u8 = 13;
        const UNIMPLEMENTED: u8 = 12;
        const UNAVAILABLE: u8 = 14;
        const RESOURCE_EXHAUSTED: u8 = 8;
        const UNAUTHENTICATED: u8 = 16;
        const PERMISSION_DENIED: u8 = 7;
        match self {
            Self::Unauthenticated => UNAUTHENTICATED,
            Self::Forbidden => PERMISSION_DENIED,
            Self::InvalidAuth => INTERNAL,
            Self::NoRoute => UNIMPLEMENTED,
            Self::BadRequest => INTERNAL,
            Self::PayloadTooLarge => RESOURCE_EXHAUSTED,
            Self::InvalidBackend
            | Self::NoHealthyEndpoint
            | Self::Connect
            | Self::Timeout
            | Self::RequestTimeout
            | Self::BackendRequestTimeout
            | Self::UpstreamProtocol
            | Self::UpstreamTls
            | Self::Overloaded
            | Self::CircuitOpen
            | Self::RateLimited
            | Self::MisdirectedRequest
            | Self::AuthUnavailable => UNAVAILABLE,
        }
    }

    /// Every kind (for tables keyed by kind, such as metrics series).
    pub const ALL: [ErrorKind; 19] = [
        ErrorKind::NoRoute,
        ErrorKind::BadRequest,
        ErrorKind::InvalidBackend,
        ErrorKind::NoHealthyEndpoint,
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::RequestTimeout,
        ErrorKind::BackendRequestTimeout,
        ErrorKind::UpstreamProtocol,
        ErrorKind::UpstreamTls,
        ErrorKind::Overloaded,
        ErrorKind::CircuitOpen,
        ErrorKind::RateLimited,
        ErrorKind::PayloadTooLarge,
        ErrorKind::MisdirectedRequest,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::AuthUnavailable,
        ErrorKind::InvalidAuth,
    ];

    /// The kind whose [`as_str`](Self::as_str) is `name`.
    fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().as_bytes() == name)
    }

    const fn reason(self) -> &'static str {
        match self {
            Self::NoRoute => "no route matches the request\n",
            Self::BadRequest => "malformed request\n",
            Self::InvalidBackend => "the route has no valid backend\n",
            Self::NoHealthyEndpoint => "no healthy upstream endpoint\n",
            Self::Connect => "could not connect to the upstream\n",
            Self::Timeout => "upstream timed out\n",
            Self::RequestTimeout => "request timeout expired\n",
            Self::BackendRequestTimeout => "backend request timeout expired\n",
            Self::UpstreamProtocol => "upstream protocol error or reset\n",
            Self::UpstreamTls => "TLS to the upstream failed\n",
            Self::Overloaded => "gateway overloaded\n",
            Self::CircuitOpen => "upstream circuit breaker open\n",
            Self::RateLimited => "rate limited\n",
            Self::PayloadTooLarge => "request body too large\n",
            Self::MisdirectedRequest => {
                "the host belongs to another listener than the TLS server name\n"
            }
            // Deliberately vague: a client learns that it was refused, not which check
            // refused it.
            Self::Unauthenticated => "authentication required\n",
            Self::Forbidden => "forbidden\n",
            Self::AuthUnavailable => "authorization unavailable\n",
            Self::InvalidAuth => "the route's access policy is invalid\n",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request-path error raised by gatekit.
///
/// Opaque: ask it with [`kind`](Self::kind), [`side`](Self::side) and
/// [`is_retry_safe`](Self::is_retry_safe); its cause, if any, is its
/// [`source`](std::error::Error::source).
///
/// # An unsent request handed back
///
/// An error that failed a request before any byte of it was sent may carry that request
/// ([`with_unsent_request`](Self::with_unsent_request)): its head and its body, unread.
/// A retry takes it out with [`take_unsent_request`] and sends it again, so it need not
/// keep a copy of every request in case one fails. gatekit's upstream client hands back
/// every request it fails to connect for (refused, timed out, TLS handshake), and those
/// a pooled connection gave back unwritten; gatekit-lb's `Upstream` hands back a request
/// it found no healthy endpoint for. Requests refused by a limit (the connection cap, a
/// breaker) are not handed back: their errors are not retry-safe.
pub struct Error {
    kind: ErrorKind,
    retry_safe: bool,
    source: Option<BoxError>,
    /// Headers the error response carries (`Retry-After`, the breaker's name, ...).
    headers: Option<Box<http::HeaderMap>>,
    /// The request that was not sent: an [`UnsentSlot<B>`] (boxed: `Error` stays small,
    /// and the slot is allocated only when a request is handed back).
    unsent: Option<Box<dyn Any + Send + Sync>>,
}

/// Where an [`Error`] keeps an unsent request: behind a mutex, because errors are shared
/// (`Sync`) and bodies are not, and so that whoever finds it through `&` can take it.
pub(crate) type UnsentSlot<B> = parking_lot::Mutex<Option<Request<B>>>;

impl Error {
    /// An error of `kind` with no cause. Retry safety follows the kind: only
    /// [`ErrorKind::Connect`], [`ErrorKind::UpstreamTls`] and
    /// [`ErrorKind::NoHealthyEndpoint`] are safe by default.
    pub fn new(kind: ErrorKind) -> Self {
        let retry_safe = matches!(
            kind,
            ErrorKind::Connect | ErrorKind::UpstreamTls | ErrorKind::NoHealthyEndpoint
        );
        Self {
            kind,
            retry_safe,
            source: None,
            headers: None,
            unsent: None,
        }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        let mut err = Self::new(kind);
        err.source = Some(source.into());
        err
    }

    /// Marks whether the request can be retried without risk: true only when the
    /// upstream is known not to have processed it (for example an HTTP/2 stream refused
    /// before processing).
    #[must_use]
    pub fn retry_safe(mut self, safe: bool) -> Self {
        self.retry_safe = safe;
        self
    }

    /// Adds a header to the response this error becomes (appended, so a name may
    /// repeat): a rate limit's `Retry-After`, a circuit breaker's name.
    #[must_use]
    pub fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.headers
            .get_or_insert_with(Default::default)
            .append(name, value);
        self
    }

    /// Hands back `req`, the request that failed without any byte of it sent: a retry
    /// can take it out again with [`take_unsent_request`] and send it elsewhere.
    ///
    /// Only for a request that is whole: no byte of it written anywhere and its body
    /// never polled (its head may have been normalised for the wire, as gatekit's client
    /// puts an HTTP/1.1 request in origin form with a `Host`). Meaningful on a
    /// [retry-safe](Self::is_retry_safe) error; the retry layer retries only what its
    /// policy names, whatever an error carries. A request handed back earlier is
    /// replaced.
    ///
    /// One allocation, on the failure path only.
    #[must_use]
    pub fn with_unsent_request<B: Send + 'static>(mut self, req: Request<B>) -> Self {
        let slot: UnsentSlot<B> = parking_lot::Mutex::new(Some(req));
        self.unsent = Some(Box::new(slot));
        self
    }

    /// The slot of this error's unsent request, if it has one with a body of type `B`.
    fn unsent_slot<B: Send + 'static>(&self) -> Option<&UnsentSlot<B>> {
        self.unsent.as_deref()?.downcast_ref::<UnsentSlot<B>>()
    }

    /// The headers the error response carries, if any.
    pub fn headers(&self) -> Option<&http::HeaderMap> {
        self.headers.as_deref()
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Which party caused it.
    pub fn side(&self) -> Side {
        self.kind.side()
    }

    /// Whether the upstream cannot have processed the request, so sending it again is
    /// safe whatever its method.
    pub fn is_retry_safe(&self) -> bool {
        self.retry_safe
    }

    /// Finds the first gatekit [`Error`] in `err`'s cause chain (including `err`).
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(found) = e.downcast_ref::<Error>() {
                return Some(found);
            }
            cur = e.source();
        }
        None
    }
}

/// The slot of the first unsent request with a body of type `B` in `err`'s cause chain
/// (including `err`) that is still there.
pub(crate) fn unsent_slot<'a, B: Send + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a UnsentSlot<B>> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(slot) = e.downcast_ref::<Error>().and_then(Error::unsent_slot::<B>)
            && slot.lock().is_some()
        {
            return Some(slot);
        }
        cur = e.source();
    }
    None
}

/// Takes the request handed back by an error in `err`'s cause chain (including `err`):
/// the first gatekit [`Error`] that still carries one with a body of type `B` (for
/// gatekit's stacks, [`Body`]). The error stays as it was otherwise (its kind, its
/// cause), and carries no request any more.
///
/// `None` when no error in the chain carries one: the request was sent (or may have
/// been), was refused by a limit, or a layer failed it without handing it back.
///
/// ```
/// use gatekit_core::{Body, BoxError, Error, ErrorKind, take_unsent_request};
///
/// let req = http::Request::post("/items").body(Body::from("{}")).unwrap();
/// let err: BoxError = Box::new(Error::new(ErrorKind::Connect).with_unsent_request(req));
/// let back = take_unsent_request::<Body>(&*err).expect("handed back");
/// assert_eq!(back.uri(), "/items");
/// assert!(take_unsent_request::<Body>(&*err).is_none());
/// ```
pub fn take_unsent_request<B: Send + 'static>(
    err: &(dyn std::error::Error + 'static),
) -> Option<Request<B>> {
    unsent_slot::<B>(err)?.lock().take()
}

/// Changes, in place, the request handed back by an error in `err`'s cause chain (the
/// one [`take_unsent_request`] would take): a balancer records there which endpoint the
/// request failed on, so a retry avoids it. Whether there was one.
pub fn update_unsent_request<B: Send + 'static>(
    err: &(dyn std::error::Error + 'static),
    f: impl FnOnce(&mut Request<B>),
) -> bool {
    let Some(slot) = unsent_slot::<B>(err) else {
        return false;
    };
    match slot.lock().as_mut() {
        Some(req) => {
            f(req);
            true
        }
        None => false,
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("retry_safe", &self.retry_safe)
            .field("source", &self.source)
            .field("headers", &self.headers)
            .field("unsent_request", &self.unsent.is_some())
            .finish()
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.reason().trim_end())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Classifies any error from a gatekit stack: the first gatekit [`Error`] in the chain
/// decides; otherwise well-known foreign causes (tower's `Elapsed`, I/O timeouts and
/// refusals, hyper errors) are recognised; anything else is an upstream protocol error.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> ErrorKind {
    if let Some(e) = Error::find(err) {
        return e.kind();
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
            return ErrorKind::Timeout;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            match io.kind() {
                Io::TimedOut => return ErrorKind::Timeout,
                Io::ConnectionRefused
                | Io::HostUnreachable
                | Io::NetworkUnreachable
                | Io::AddrNotAvailable => return ErrorKind::Connect,
                _ => {}
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_timeout()
        {
            return ErrorKind::Timeout;
        }
        cur = e.source();
    }
    ErrorKind::UpstreamProtocol
}

/// Builds the response for a failed request: the status of the error's kind, a short
/// plain-text reason as the body, and an `x-gatekit-error` header naming the kind. The
/// extensions of every [`WithResponseExtensions`] in the cause chain are copied into the
/// response, and so are the [`headers`](Error::headers) of every gatekit [`Error`] in it.
///
/// This is the one function that turns errors into responses; the
/// [`Router`](crate::Router) and [`HandleError`](crate::HandleError) call it at the top of
/// their stacks.
pub fn error_response(err: &(dyn std::error::Error + 'static)) -> Response<Body> {
    let mut rsp = kind_response(classify(err));
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(with) = e.downcast_ref::<WithResponseExtensions>() {
            rsp.extensions_mut().extend(with.extensions.clone());
        }
        if let Some(headers) = e.downcast_ref::<Error>().and_then(Error::headers) {
            for (name, value) in headers {
                rsp.headers_mut().append(name, value.clone());
            }
        }
        cur = e.source();
    }
    rsp
}

/// An error that carries extensions for the response it becomes: a layer that learns
/// something about a failed request (such as the metrics handle of the route and backend
/// it reached) wraps the error in this, and [`error_response`] puts the extensions into
/// the error response. Classification sees through it: its source is the wrapped error.
#[derive(Debug)]
pub struct WithResponseExtensions {
    source: BoxError,
    extensions: http::Extensions,
}

impl WithResponseExtensions {
    /// Wraps `source`, attaching `extensions`.
    pub fn new(source: impl Into<BoxError>, extensions: http::Extensions) -> Self {
        Self {
            source: source.into(),
            extensions,
        }
    }

    /// The extensions the error response gets.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }
}

impl fmt::Display for WithResponseExtensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for WithResponseExtensions {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Whether a request is a gRPC call: its `content-type` is `application/grpc`, alone or
/// followed by `+<format>` or parameters.
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= GRPC.len()
            && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
            && matches!(v.get(GRPC.len()), None | Some(b'+' | b';'))
    })
}

/// For a gRPC call, turns one of gatekit's error responses (those carrying
/// `x-gatekit-error`, as [`error_response`] builds them) into a gRPC *trailers-only*
/// answer, as gRPC clients expect: HTTP 200, `content-type: application/grpc`,
/// `grpc-status` ([`ErrorKind::grpc_status`]) and `grpc-message` (the reason) in the
/// headers, no body. Its other headers (`x-gatekit-error`, `retry-after`, CORS) stay.
/// Any other response (or one already carrying a `grpc-status`, as an upstream gatekit's
/// would) is returned as it is. A gRPC client shown the plain-text error instead would
/// try to decode the text as gRPC messages and fail with `INTERNAL`.
pub(crate) fn grpc_error_response(rsp: Response<Body>) -> Response<Body> {
    let Some(kind) = rsp
        .headers()
        .get(GATEKIT_ERROR)
        .and_then(|v| ErrorKind::from_name(v.as_bytes()))
    else {
        return rsp;
    };
    if rsp.headers().contains_key(GRPC_STATUS) {
        return rsp;
    }
    let (mut parts, _text) = rsp.into_parts();
    parts.status = StatusCode::OK;
    let h = &mut parts.headers;
    h.remove(header::CONTENT_LENGTH);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        http::HeaderName::from_static(GRPC_STATUS),
        HeaderValue::from(u16::from(kind.grpc_status())),
    );
    // The reasons are plain ASCII without `%`: valid percent-encoded grpc-messages.
    h.insert(
        http::HeaderName::from_static("grpc-message"),
        HeaderValue::from_static(kind.reason().trim_end()),
    );
    Response::from_parts(parts, Body::empty())
}

/// The header naming the [`ErrorKind`] of gatekit's error responses.
const GATEKIT_ERROR: &str = "x-gatekit-error";

/// The gRPC status header (or trailer).
const GRPC_STATUS: &str = "grpc-status";

pub(crate) fn kind_response(kind: ErrorKind) -> Response<Body> {
    let mut rsp = Response::new(Body::from(kind.reason()));
    *rsp.status_mut() = kind.status();
    let headers = rsp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::HeaderName::from_static(GATEKIT_ERROR),
        HeaderValue::from_static(kind.as_str()),
    );
    // For the access log and metrics outside the router (a header could come from an
    // upstream gatekit; the extension only from this one).
    rsp.extensions_mut().insert(kind);
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] BoxError);

    #[test]
    fn gatekit_error_deep_in_the_chain_decides_the_status() {
        let inner = Error::with_source(
            ErrorKind::Connect,
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        let outer: BoxError = Box::new(Wrapper(Box::new(inner)));
        let rsp = error_response(&*outer);
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rsp.headers()["x-gatekit-error"], "upstream-connect");
        assert!(Error::find(&*outer).unwrap().is_retry_safe());
    }

    #[test]
    fn foreign_causes_are_recognised() {
        let elapsed: BoxError = Box::new(Wrapper(Box::new(tower::timeout::error::Elapsed::new())));
        assert_eq!(classify(&*elapsed), ErrorKind::Timeout);
        let refused: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&*refused), ErrorKind::Connect);
        let other: BoxError = "boom".into();
        assert_eq!(classify(&*other), ErrorKind::UpstreamProtocol);
        assert_eq!(error_response(&*other).status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn response_extensions_survive_and_classification_sees_through() {
        #[derive(Clone, Debug, PartialEq)]
        struct Tag(u8);
        let mut ext = http::Extensions::new();
        ext.insert(Tag(7));
        let err: BoxError = Box::new(WithResponseExtensions::new(
            Error::new(ErrorKind::BackendRequestTimeout),
            ext,
        ));
        let rsp = error_response(&*err);
        assert_eq!(rsp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(rsp.headers()["x-gatekit-error"], "backend-request-timeout");
        assert_eq!(rsp.extensions().get::<Tag>(), Some(&Tag(7)));
    }

    #[test]
    fn kinds_map_to_the_documented_status_and_side() {
        assert_eq!(ErrorKind::NoRoute.status(), 404);
        assert_eq!(ErrorKind::InvalidBackend.status(), 500);
        assert_eq!(ErrorKind::Timeout.status(), 504);
        assert_eq!(ErrorKind::RequestTimeout.status(), 504);
        assert_eq!(
            ErrorKind::BackendRequestTimeout.as_str(),
            "backend-request-timeout"
        );
        assert_eq!(ErrorKind::UpstreamProtocol.side(), Side::Upstream);
        assert_eq!(ErrorKind::RateLimited.side(), Side::Client);
        assert!(!Error::new(ErrorKind::Timeout).is_retry_safe());
        assert_eq!(ErrorKind::PayloadTooLarge.status(), 413);
        assert_eq!(ErrorKind::PayloadTooLarge.side(), Side::Client);
        let rsp = kind_response(ErrorKind::MisdirectedRequest);
        assert_eq!(rsp.status(), 421);
        assert_eq!(rsp.headers()["x-gatekit-error"], "misdirected-request");
        assert_eq!(ErrorKind::MisdirectedRequest.side(), Side::Client);
    }

    #[test]
    fn an_unsent_request_is_found_through_wrappers_taken_once_and_updated_in_place() {
        #[derive(Clone, Debug, PartialEq)]
        struct Tag(u8);
        let mut req = Request::post("/items")
            .header("x-id", "7")
            .body(Body::from("payload"))
            .unwrap();
        req.extensions_mut().insert(Tag(1));
        let inner = Error::with_source(
            ErrorKind::Connect,
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )
        .with_unsent_request(req);
        assert!(format!("{inner:?}").contains("unsent_request: true"));
        let err: BoxError = Box::new(WithResponseExtensions::new(
            Wrapper(Box::new(inner)),
            http::Extensions::new(),
        ));
        // Another body type finds nothing.
        assert!(take_unsent_request::<String>(&*err).is_none());
        assert!(update_unsent_request::<Body>(&*err, |r| {
            r.extensions_mut().insert(Tag(2));
        }));
        let back = take_unsent_request::<Body>(&*err).unwrap();
        assert_eq!(back.method(), http::Method::POST);
        assert_eq!(back.headers()["x-id"], "7");
        assert_eq!(back.extensions().get::<Tag>(), Some(&Tag(2)));
        assert!(take_unsent_request::<Body>(&*err).is_none());
        assert!(!update_unsent_request::<Body>(&*err, |_| {}));
        // The error is otherwise as it was.
        assert_eq!(classify(&*err), ErrorKind::Connect);
        assert!(Error::find(&*err).unwrap().is_retry_safe());
        let plain: BoxError = Box::new(Error::new(ErrorKind::Connect));
        assert!(take_unsent_request::<Body>(&*plain).is_none());
    }

    #[test]
    fn error_headers_reach_the_response() {
        let err: BoxError = Box::new(Wrapper(Box::new(
            Error::new(ErrorKind::RateLimited)
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("3")),
        )));
        let rsp = error_response(&*err);
        assert_eq!(rsp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(rsp.headers()[header::RETRY_AFTER], "3");
        assert_eq!(rsp.headers()["x-gatekit-error"], "rate-limited");
    }

    #[test]
    fn grpc_calls_are_recognised_by_content_type() {
        let with = |ct: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            is_grpc(&h)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("Application/GRPC; charset=utf-8"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/json"));
        assert!(!is_grpc(&http::HeaderMap::new()));
    }

    #[test]
    fn error_responses_become_grpc_trailers_only_answers() {
        let err: BoxError = Box::new(
            Error::new(ErrorKind::RateLimited)
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("3")),
        );
        let rsp = grpc_error_response(error_response(&*err));
        assert_eq!(rsp.status(), StatusCode::OK);
        let h = rsp.headers();
        assert_eq!(h[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(h["grpc-status"], "14");
        assert_eq!(h["grpc-message"], "rate limited");
        assert_eq!(h[header::RETRY_AFTER], "3");
        assert_eq!(h["x-gatekit-error"], "rate-limited");
        assert!(http_body::Body::is_end_stream(rsp.body()));
        for (kind, code) in [
            (ErrorKind::NoRoute, 12),
            (ErrorKind::InvalidBackend, 14),
            (ErrorKind::Connect, 14),
            (ErrorKind::BadRequest, 13),
            (ErrorKind::PayloadTooLarge, 8),
        ] {
            let rsp = grpc_error_response(kind_response(kind));
            assert_eq!(rsp.headers()["grpc-status"], code.to_string(), "{kind}");
        }
        // A backend's own response is left alone, and so is a gRPC answer.
        let rsp = Response::builder().status(503).body(Body::empty()).unwrap();
        assert_eq!(grpc_error_response(rsp).status(), 503);
        let rsp = grpc_error_response(kind_response(ErrorKind::Connect));
        let again = grpc_error_response(rsp);
        assert_eq!(again.headers()["grpc-status"], "14");
        assert_eq!(again.status(), StatusCode::OK);
    }
}

/// A configuration that cannot be served: where it is wrong and why.
///
/// `route` names the route (when known), `field` is a path into it in the Gateway API's
/// own spelling (`rules[0].matches[1].path.value`), `reason` says what is wrong. The same
/// value feeds log lines and Kubernetes status conditions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{field}: {reason}", route_prefix(.route))]
pub struct ConfigError {
    route: Option<crate::route::RouteId>,
    field: String,
    reason: String,
}

fn route_prefix(route: &Option<crate::route::RouteId>) -> String {
    route
        .as_ref()
        .map(|r| format!("route {r}: "))
        .unwrap_or_default()
}

impl ConfigError {
    /// An error at `field` for `reason`, not yet tied to a route.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            route: None,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path, as an outer structure adds where it holds the value:
    /// `ConfigError::new("path.value", ..).within("rules[0].matches[1]")` names
    /// `rules[0].matches[1].path.value`.
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }

    /// Ties the error to a route.
    #[must_use]
    pub fn for_route(mut self, route: crate::route::RouteId) -> Self {
        self.route = Some(route);
        self
    }

    /// The route the error is in, if known.
    pub fn route(&self) -> Option<&crate::route::RouteId> {
        self.route.as_ref()
    }

    /// The field path.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
