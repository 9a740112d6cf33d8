//! The settings of a [`Client`](super::Client).

use std::time::Duration;

/// Settings of a [`Client`](super::Client). `Default` gives the documented defaults;
/// change them with the setters.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle_per_endpoint: usize,
    pub(crate) http2_keep_alive_interval: Option<Duration>,
    pub(crate) http2_keep_alive_timeout: Duration,
    pub(crate) http2_initial_stream_window_size: Option<u32>,
    pub(crate) http2_initial_connection_window_size: Option<u32>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_endpoint: 256,
            http2_keep_alive_interval: Some(Duration::from_secs(30)),
            http2_keep_alive_timeout: Duration::from_secs(10),
            http2_initial_stream_window_size: None,
            http2_initial_connection_window_size: None,
        }
    }
}

impl ClientConfig {
    /// How long a TCP connect plus TLS handshake may take (default 5 s). Exceeding it
    /// is an [`ErrorKind::Connect`](crate::ErrorKind::Connect) error.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an HTTP/1.1 connection may stay idle in the pool before it is closed
    /// (default 90 s, as Go's `http.Transport` and hyper-util's pool). Keep it below the
    /// upstreams' own keep-alive timeout, so the gateway closes idle connections before
    /// an upstream does and requests rarely meet a connection closing under them.
    #[must_use]
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// The most idle HTTP/1.1 connections kept per endpoint (default 256).
    ///
    /// Each downstream request in flight to an endpoint holds one upstream connection,
    /// so this should cover the concurrency one endpoint sees at peak; below it,
    /// connections are closed and reopened under load (Go's default of 2 is the classic
    /// example of that churn). 256 covers a busy gateway core (the benchmarks run 64 and
    /// 256 client connections) while bounding idle memory to a few MiB per endpoint
    /// (hyper's buffers are allocated lazily and idle connections are reaped).
    #[must_use]
    pub fn pool_max_idle_per_endpoint(mut self, max: usize) -> Self {
        self.pool_max_idle_per_endpoint = max;
        self
    }

    /// The interval of HTTP/2 PING keep-alives on upstream connections (default 30 s;
    /// `None` disables them). One HTTP/2 connection carries all of an endpoint's
    /// traffic, so a dead one must be noticed.
    #[must_use]
    pub fn http2_keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.http2_keep_alive_interval = interval;
        self
    }

    /// How long to wait for a PING acknowledgement before closing the connection
    /// (default 10 s).
    #[must_use]
    pub fn http2_keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.http2_keep_alive_timeout = timeout;
        self
    }

    /// The HTTP/2 initial stream window size (default: hyper's).
    #[must_use]
    pub fn http2_initial_stream_window_size(mut self, size: Option<u32>) -> Self {
        self.http2_initial_stream_window_size = size;
        self
    }

    /// The HTTP/2 initial connection window size (default: hyper's).
    #[must_use]
    pub fn http2_initial_connection_window_size(mut self, size: Option<u32>) -> Self {
        self.http2_initial_connection_window_size = size;
        self
    }
}
