//! [`ServerConfig`]: how connections are served, and its compiled form.

use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use std::sync::Arc;

use super::proxy_protocol::ProxyProtocol;
use crate::client_ip::ClientIpDetection;
use crate::path::PathPolicy;
use crate::proxy::ForwardClientCertMode;

/// At most this many concurrent HTTP/2 streams per client connection: bounds the work one
/// connection can queue. RFC 9113 recommends at least 100; 256 leaves room for busy
/// multiplexing clients (gRPC) while keeping one connection from monopolising the proxy.
const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 256;

/// Largest HTTP/2 header list accepted, measured decoded (HPACK-expanded): 64 KiB, the
/// order of Envoy's 60 KiB and nginx's request header buffers. A HPACK bomb is cut here.
const HTTP2_MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// Streams a client may open and reset before we accept them, before the connection gets
/// a GOAWAY: the "Rapid Reset" defence (CVE-2023-44487). 20 is the h2 crate's default,
/// written down so an upgrade cannot silently change it.
const HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// Streams we may reset because of client protocol errors before the connection gets a
/// GOAWAY (RUSTSEC-2024-0003 and "MadeYouReset"). hyper's default, written down.
const HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// How often an idle HTTP/2 connection is pinged, so dead peers do not hold a connection
/// slot forever.
const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a keep-alive ping may go unanswered before the connection is closed.
const HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest HTTP/1 request head (request line and headers) hyper buffers: 64 KiB, the
/// order of Envoy's 60 KiB `max_request_headers_kb`. A larger head is answered
/// `431 Request Header Fields Too Large` and the connection closed. (hyper's default is
/// about 400 KiB; its `max_header_size` is not reachable through hyper-util's auto
/// builder, so the read buffer's cap is the limit.) hyper also caps the number of
/// header lines at 100 (a compile-time stack array, `431` beyond); setting a different
/// count would move it to the heap for every request, so that default is kept, on
/// purpose, and pinned by the hostile-input tests.
const HTTP1_MAX_HEAD_BYTES: usize = 64 * 1024;

/// Default time a client has to send a whole HTTP/1 request head.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Which HTTP/1.1 server a connection starts with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Http1Codec {
    /// gatekit's own codec for requests without a body, hyper's server for the rest of
    /// a connection from its first request that is anything else (see the
    /// [server docs](super#http11)). The default.
    #[default]
    Gatekit,
    /// hyper's server for every connection.
    Hyper,
}

// === impl ServerConfig ===

/// How connections are served (by a [`Server`](super::Server), [`serve_connection_with`](super::serve_connection_with)
/// and [`serve_with`](super::serve_with)). `Default` accepts HTTP/1.1 and HTTP/2, with a
/// 10 s header read timeout, the HTTP/2 limits of the [module docs](super#limits) and no
/// request-head checks (see [`path_policy`](Self::path_policy)).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    http2: bool,
    http1_codec: Http1Codec,
    header_read_timeout: Duration,
    path_policy: Option<PathPolicy>,
    forward_client_cert: ForwardClientCertMode,
    proxy_protocol: Option<ProxyProtocol>,
    client_ip: Option<Arc<ClientIpDetection>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http2: true,
            http1_codec: Http1Codec::default(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            path_policy: None,
            forward_client_cert: ForwardClientCertMode::default(),
            proxy_protocol: None,
            client_ip: None,
        }
    }
}

impl ServerConfig {
    /// Whether connections may speak HTTP/2 (default `true`): by prior knowledge (h2c)
    /// or, on TLS, after ALPN chose `h2` — detected from the connection's first bytes.
    /// `false` serves HTTP/1.x only, without that detection (see the
    /// [module docs](super#cost)); a client sending the h2 preface then gets an HTTP/1
    /// error.
    #[must_use]
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// Which HTTP/1.1 server connections start with (default [`Http1Codec::Gatekit`]);
    /// [`Http1Codec::Hyper`] turns gatekit's own codec off.
    #[must_use]
    pub fn http1_codec(mut self, codec: Http1Codec) -> Self {
        self.http1_codec = codec;
        self
    }

    /// How long a client may take to send an HTTP/1 request head (default 10 s); a
    /// slower one (slowloris) has its connection closed.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Checks every request's `Host` and target and normalises its path before the
    /// service sees it, as [`NormalizePath`](crate::path::NormalizePath) does with
    /// `policy` (400 for a refused `Host` or path, 414 for a long target); `None`
    /// (default) serves requests as received. A gateway sets it: routing must see the
    /// path the backend will see.
    #[must_use]
    pub fn path_policy(mut self, policy: Option<PathPolicy>) -> Self {
        self.path_policy = policy;
        self
    }

    /// What happens to `x-forwarded-client-cert` on connections without TLS (default
    /// [`SanitizeSet`](ForwardClientCertMode::SanitizeSet): removed, as no certificate
    /// was verified). On TLS connections the handshake's settings decide.
    #[must_use]
    pub fn forward_client_cert(mut self, mode: ForwardClientCertMode) -> Self {
        self.forward_client_cert = mode;
        self
    }

    /// Reads a PROXY protocol header (v1 or v2) at the start of connections from the
    /// trusted sources `proxy_protocol` names, before TLS or HTTP or a stream route, and
    /// takes its source address as the connection's remote address (see
    /// [`proxy_protocol`](super::proxy_protocol)); `None` (default) reads none. The
    /// connection limits count the socket's peer (the proxy in front), as they act
    /// before any byte is read.
    #[must_use]
    pub fn proxy_protocol(mut self, proxy_protocol: Option<ProxyProtocol>) -> Self {
        self.proxy_protocol = proxy_protocol;
        self
    }

    /// Finds each request's client behind the trusted proxies in front, as `detection`
    /// says (see [`client_ip`](crate::client_ip)), before the service sees the request:
    /// the request's [`ConnectionInfo::remote_addr`](crate::ConnectionInfo::remote_addr)
    /// is then that client. `None` (default): the connection's peer is the client, and
    /// nothing is read per request. A fail-closed detection answers `403` to a request
    /// without a valid address.
    #[must_use]
    pub fn client_ip(mut self, detection: Option<ClientIpDetection>) -> Self {
        self.client_ip = detection.map(Arc::new);
        self
    }

    /// The client address detection, if any.
    pub fn client_ip_detection(&self) -> Option<&ClientIpDetection> {
        self.client_ip.as_deref()
    }

    /// The PROXY protocol settings, if headers are read.
    pub fn proxy_protocol_settings(&self) -> Option<&ProxyProtocol> {
        self.proxy_protocol.as_ref()
    }

    /// hyper's HTTP/1 server configured as this config says.
    fn http1_builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .writev(false)
            .max_buf_size(HTTP1_MAX_HEAD_BYTES)
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
    }

    /// hyper-util's automatic HTTP/1.1 + HTTP/2 server builder with this config's
    /// settings and limits.
    fn auto_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .writev(false)
            .max_buf_size(HTTP1_MAX_HEAD_BYTES)
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(HTTP2_MAX_CONCURRENT_STREAMS)
            .max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
            .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS)
            .keep_alive_interval(HTTP2_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(HTTP2_KEEP_ALIVE_TIMEOUT);
        builder
    }
}

// === impl Http ===

/// A [`ServerConfig`] compiled once per listener: the hyper builders every connection
/// is served with.
#[derive(Clone, Debug)]
pub(super) struct Http {
    pub(super) codec: Http1Codec,
    pub(super) header_read_timeout: Duration,
    pub(super) auto: Option<auto::Builder<TokioExecutor>>,
    pub(super) http1: http1::Builder,
    pub(super) path_policy: Option<PathPolicy>,
    pub(super) forward_client_cert: ForwardClientCertMode,
    pub(super) client_ip: Option<Arc<ClientIpDetection>>,
}

impl Http {
    pub(super) fn new(config: &ServerConfig) -> Self {
        Self {
            codec: config.http1_codec,
            header_read_timeout: config.header_read_timeout,
            auto: config.http2.then(|| config.auto_builder()),
            http1: config.http1_builder(),
            path_policy: config.path_policy,
            forward_client_cert: config.forward_client_cert,
            client_ip: config.client_ip.clone(),
        }
    }
}
