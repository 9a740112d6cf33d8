//! Configuration of active health checks.

use std::ops::RangeInclusive;
use std::time::Duration;

use http::{Method, StatusCode};

/// How and how often endpoints are checked.
///
/// Build it from [`Default`] and the `#[must_use]` setters:
///
/// ```
/// use std::time::Duration;
/// use gatekit_lb::health::{CheckKind, HealthCheckConfig, HttpCheck};
///
/// let config = HealthCheckConfig::default()
///     .interval(Duration::from_secs(2))
///     .unhealthy_threshold(2)
///     .kind(CheckKind::Http(HttpCheck::default().path("/healthz")));
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HealthCheckConfig {
    /// Time between the end of one check of an endpoint and the start of the next.
    /// Default 5 s.
    pub interval: Duration,
    /// Each wait is `interval × (1 ± jitter)`, drawn uniformly, so checks of many
    /// endpoints (and of many gateway replicas) spread out. A fraction in `0.0..=1.0`;
    /// default 0.1.
    pub jitter: f64,
    /// How long one check may take, connecting included, before it counts as failed.
    /// Default 1 s.
    pub timeout: Duration,
    /// Consecutive successes that turn an unhealthy endpoint healthy. Default 2.
    pub healthy_threshold: u32,
    /// Consecutive failures that turn a healthy endpoint unhealthy. Default 3.
    pub unhealthy_threshold: u32,
    /// What a check does. Default: `GET /` over HTTP/1.1 expecting 200–399.
    pub kind: CheckKind,
    /// Whether an endpoint is healthy before its first check. Default true.
    ///
    /// `true` suits standalone use and endpoint sets that discovery already filtered for
    /// readiness: a new endpoint takes traffic at once and leaves the set after
    /// `unhealthy_threshold` failed checks. `false` is Envoy's behaviour: a new endpoint
    /// takes no traffic until its first check passes (one success suffices for that first
    /// verdict; `healthy_threshold` applies afterwards).
    pub start_healthy: bool,
    /// Most checks in flight at once across all endpoints of one [`HealthChecker`]
    /// (a semaphore), so checks never flood backends or the gateway. Default 32.
    ///
    /// [`HealthChecker`]: super::HealthChecker
    pub max_concurrent_checks: usize,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            jitter: 0.1,
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            kind: CheckKind::default(),
            start_healthy: true,
            max_concurrent_checks: 32,
        }
    }
}

impl HealthCheckConfig {
    /// Sets [`interval`](Self::interval).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets [`jitter`](Self::jitter) (clamped to `0.0..=1.0`).
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`healthy_threshold`](Self::healthy_threshold) (at least 1).
    #[must_use]
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.healthy_threshold = n.max(1);
        self
    }

    /// Sets [`unhealthy_threshold`](Self::unhealthy_threshold) (at least 1).
    #[must_use]
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.unhealthy_threshold = n.max(1);
        self
    }

    /// Sets [`kind`](Self::kind).
    #[must_use]
    pub fn kind(mut self, kind: CheckKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets [`start_healthy`](Self::start_healthy).
    #[must_use]
    pub fn start_healthy(mut self, healthy: bool) -> Self {
        self.start_healthy = healthy;
        self
    }

    /// Sets [`max_concurrent_checks`](Self::max_concurrent_checks) (at least 1).
    #[must_use]
    pub fn max_concurrent_checks(mut self, n: usize) -> Self {
        self.max_concurrent_checks = n.max(1);
        self
    }

    /// The wait before the next check: `interval × (1 ± jitter)`.
    pub(crate) fn next_wait(&self) -> Duration {
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let factor = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
        self.interval.mul_f64(factor.max(0.0))
    }

    /// The wait before an endpoint's first check: up to `interval × jitter`, so a set of
    /// new endpoints is not checked in one burst.
    pub(crate) fn first_wait(&self) -> Duration {
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.interval.mul_f64(jitter * fastrand::f64())
    }
}

/// What one check does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CheckKind {
    /// An HTTP request whose response status must fall in the expected ranges.
    Http(HttpCheck),
    /// A TCP connect that must succeed.
    Tcp,
    /// A gRPC `grpc.health.v1.Health/Check` call over h2c that must answer `SERVING`.
    Grpc(GrpcCheck),
}

impl Default for CheckKind {
    fn default() -> Self {
        Self::Http(HttpCheck::default())
    }
}

/// An HTTP health check.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpCheck {
    /// Path and query sent. Default `/`.
    pub path: String,
    /// Method. Default `GET`.
    pub method: Method,
    /// `Host` header (`:authority` with h2); default: the endpoint's address.
    pub host: Option<String>,
    /// Statuses that count as success, inclusive ranges. Default `200..=399`.
    pub expected_statuses: Vec<RangeInclusive<u16>>,
    /// Speak HTTP/2 with prior knowledge (h2c, or h2 over TLS) instead of HTTP/1.1.
    /// Default false.
    pub http2: bool,
    /// The upstream's transport when it speaks TLS: checks make the same handshake
    /// (server name, verification, client certificate) as requests. Default `None`
    /// (cleartext).
    pub tls: Option<gatekit_core::client::Transport>,
}

impl Default for HttpCheck {
    fn default() -> Self {
        Self {
            path: "/".to_owned(),
            method: Method::GET,
            host: None,
            expected_statuses: vec![200..=399],
            http2: false,
            tls: None,
        }
    }
}

impl HttpCheck {
    /// Sets [`path`](Self::path).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets [`method`](Self::method).
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Sets [`host`](Self::host).
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Sets [`expected_statuses`](Self::expected_statuses).
    #[must_use]
    pub fn expected_statuses(
        mut self,
        ranges: impl IntoIterator<Item = RangeInclusive<u16>>,
    ) -> Self {
        self.expected_statuses = ranges.into_iter().collect();
        self
    }

    /// Sets [`http2`](Self::http2).
    #[must_use]
    pub fn http2(mut self, h2: bool) -> Self {
        self.http2 = h2;
        self
    }

    /// Sets [`tls`](Self::tls): checks over TLS as `transport` connects (a transport
    /// without TLS leaves checks in cleartext).
    #[must_use]
    pub fn tls(mut self, transport: gatekit_core::client::Transport) -> Self {
        self.tls = transport.is_tls().then_some(transport);
        self
    }

    /// Whether `status` counts as success.
    pub fn is_expected(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        self.expected_statuses.iter().any(|r| r.contains(&s))
    }
}

/// A gRPC health check (`grpc.health.v1.Health/Check` over h2c).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct GrpcCheck {
    /// The service name asked about; empty (the default) asks about the server as a
    /// whole.
    pub service: String,
    /// `:authority` sent; default: the endpoint's address.
    pub authority: Option<String>,
    /// The upstream's transport when it speaks TLS (h2 over TLS instead of h2c); see
    /// [`HttpCheck::tls`].
    pub tls: Option<gatekit_core::client::Transport>,
}

impl GrpcCheck {
    /// Sets [`service`](Self::service).
    #[must_use]
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Sets [`tls`](Self::tls) (a transport without TLS leaves checks on h2c).
    #[must_use]
    pub fn tls(mut self, transport: gatekit_core::client::Transport) -> Self {
        self.tls = transport.is_tls().then_some(transport);
        self
    }

    /// Sets [`authority`](Self::authority).
    #[must_use]
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_within_jitter_and_vary() {
        let c = HealthCheckConfig::default()
            .interval(Duration::from_millis(1000))
            .jitter(0.1);
        let waits: Vec<_> = (0..1000).map(|_| c.next_wait()).collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_millis(900) && *w <= Duration::from_millis(1100))
        );
        let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(
            *max - *min > Duration::from_millis(100),
            "jitter spreads waits"
        );
        assert!((0..1000).all(|_| c.first_wait() <= Duration::from_millis(100)));
        let none = c.jitter(f64::NAN);
        assert_eq!(none.next_wait(), Duration::from_millis(1000));
    }

    #[test]
    fn status_ranges() {
        let check = HttpCheck::default();
        assert!(check.is_expected(StatusCode::OK));
        assert!(check.is_expected(StatusCode::PERMANENT_REDIRECT));
        assert!(!check.is_expected(StatusCode::BAD_REQUEST));
        let odd = check.expected_statuses([204..=204, 500..=503]);
        assert!(!odd.is_expected(StatusCode::OK));
        assert!(odd.is_expected(StatusCode::SERVICE_UNAVAILABLE));
    }
}
