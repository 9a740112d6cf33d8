//! Prometheus metrics of the gateway process, and the [`MetricsLayer`] that records
//! requests.
//!
//! # Recording without per-request formatting
//!
//! prometheus-client keeps each metric family as a map from label set to metric, and its
//! counters, gauges and histograms are handles (an `Arc` around atomics). gatekit looks a
//! label set up **once**, when the configuration that needs it is built, and keeps the
//! handle:
//!
//! - [`Metrics::request_metrics`] returns a [`RequestMetrics`] for one (route, backend):
//!   one counter per status class (1xx–5xx) and the route's latency histogram. Hold it
//!   next to the compiled route or rule (or in a map built at swap time) and hand it to
//!   [`MetricsLayer`]; recording a request is then an array index, an atomic add and a
//!   histogram observation — no hashing, no lock, no `String`. The series are
//!   registered at the handle's first record: a route that has served no request
//!   costs only its handle and has no `gatekit_requests_total` /
//!   `gatekit_request_duration_seconds` series yet; from its first request on, all
//!   five status classes and the histogram are exported.
//! - [`Metrics::endpoint_health`] returns the [`Gauge`] for one upstream endpoint, to
//!   set to 1 or 0. The gateway's own upstreams have none: their endpoints' health is
//!   read at each scrape (see the `endpoint` module).
//! - [`Metrics::connection_gauge`] returns the active-connections gauge of one listener
//!   port; the listener increments it per accepted connection and decrements it when the
//!   connection ends.
//! - [`Metrics::access_metrics`] returns the [`AccessMetrics`] of one access policy:
//!   one `gatekit_access_decisions_total` counter per outcome, built when the policy
//!   is, so a decision is an atomic add.
//! - reloads and the config generation are recorded with [`Metrics::record_reload`] and
//!   [`Metrics::set_config_generation`] (a reload is rare; the label sets are prebuilt).
//!
//! Series of removed routes and endpoints are not forgotten automatically; call
//! [`RequestMetrics::forget`] (or [`Metrics::forget_request_metrics`]),
//! [`Metrics::forget_route`] and
//! [`Metrics::forget_endpoint`] when a reload drops them, so `/metrics` does not grow
//! without bound under churn.
//!
//! [`Metrics::encode`] renders the OpenMetrics text exposition (which Prometheus scrapes
//! as its text format) for the admin server's `/metrics`.

mod endpoint;
mod family;
mod layer;
mod policy;
mod process;
mod stream;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use self::family::Family;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use self::layer::{LabelSource, MetricsLayer, MetricsService, ResponseFuture};
pub use self::stream::StreamPortMetrics;

pub(crate) use self::endpoint::EndpointHealthSource;

/// The status classes requests are counted by.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The status class label of `status`.
fn status_class(status: http::StatusCode) -> &'static str {
    STATUS_CLASSES[usize::from(status.as_u16() / 100).clamp(1, 5) - 1]
}

/// Latency buckets in seconds: 1 ms to about 33 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    backend: Arc<str>,
    status_class: &'static str,
    /// The [`ErrorKind`](gatekit_core::ErrorKind) of a response gatekit made, else
    /// `none`.
    error_kind: &'static str,
}

/// The `error_kind` of responses gatekit did not make (an upstream's, however bad).
const NO_ERROR: &str = "none";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    port: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    upstream: Arc<str>,
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    os: &'static str,
    arch: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    upstream: Arc<str>,
    endpoint: AddrLabel,
}

/// An endpoint address as a label value, written out only when encoded (no `String`
/// per series).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct AddrLabel(SocketAddr);

impl EncodeLabelValue for AddrLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        use std::fmt::Write as _;
        write!(encoder, "{}", self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    secret: String,
    gateway: String,
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccessLabels {
    policy: Arc<str>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The process's metric registry and families. Cheap to clone (one `Arc`); every clone
/// records into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    connections: Family<ListenerLabels, Gauge>,
    connections_rejected: Counter,
    endpoint_health: endpoint::EndpointHealth,
    reloads_ok: Counter,
    reloads_failed: Counter,
    config_generation: Gauge,
    endpoint_updates: Histogram,
    cluster_connected: Family<ClusterLabels, Gauge>,
    cluster_dropped: Family<ClusterLabels, Gauge>,
    certificate_not_after: Family<CertificateLabels, Gauge>,
    access: Family<AccessLabels, Counter>,
    streams: stream::StreamFamilies,
    request_bytes: Family<ListenerLabels, Counter>,
    response_bytes: Family<ListenerLabels, Counter>,
    attempts: Family<BackendLabels, Histogram, fn() -> Histogram>,
    health_transitions: Family<TransitionLabels, Counter>,
    ejections: Family<UpstreamLabels, Counter>,
}

impl Metrics {
    /// A registry with gatekit's metric families (all prefixed `gatekit_`), including
    /// those of the traffic-policy state `policy` (limiters, breakers, retries; see
    /// the `policy` module docs), read at each scrape.
    pub fn with_policy_state(policy: Arc<gatekit_core::route::PolicyState>) -> Self {
        Self::build(Some(policy))
    }

    /// A registry with gatekit's metric families (all prefixed `gatekit_`).
    pub fn new() -> Self {
        Self::build(None)
    }

    fn build(policy: Option<Arc<gatekit_core::route::PolicyState>>) -> Self {
        let mut registry = Registry::with_prefix("gatekit");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route, backend, status class and error kind (none: the response was not one of gatekit's errors)",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register_with_unit(
            "request_duration",
            "Time from request to response headers, by route",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "active_connections",
            "Open client connections, by listener port",
            connections.clone(),
        );
        let connections_rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "Client connections closed at once because the connection limit was reached",
            connections_rejected.clone(),
        );
        let endpoint_health = endpoint::EndpointHealth::default();
        registry.register(
            "endpoint_healthy",
            "Endpoint health (1 healthy, 0 not), by upstream and endpoint address",
            endpoint_health.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reloads",
            "Configuration reloads, by result (ok, failed)",
            reloads.clone(),
        );
        let reloads_ok = reloads.get_or_create_owned(&ResultLabels { result: "ok" });
        let reloads_failed = reloads.get_or_create_owned(&ResultLabels { result: "failed" });
        let config_generation = Gauge::default();
        registry.register(
            "config_generation",
            "Generation of the configuration snapshot being served",
            config_generation.clone(),
        );
        // Endpoint updates take well under a millisecond: buckets from 50 µs.
        let endpoint_updates = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 14),
        );
        registry.register_with_unit(
            "endpoint_update",
            "Time from receiving an EndpointSlice change to its endpoints being served",
            prometheus_client::registry::Unit::Seconds,
            endpoint_updates.clone(),
        );
        let cluster_connected = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "cluster_connected",
            "Whether a Kubernetes cluster's API server answers (1) or not (0)",
            cluster_connected.clone(),
        );
        let cluster_dropped = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "cluster_endpoints_dropped",
            "Whether a lost cluster's endpoints were dropped after maxStaleness (1) or are still served (0)",
            cluster_dropped.clone(),
        );
        let certificate_not_after = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "certificate_not_after_seconds",
            "When each served listener certificate expires (its notAfter, seconds since the Unix epoch), by Secret (namespace/name), Gateway (namespace/name) and listener",
            certificate_not_after.clone(),
        );
        let access = Family::<AccessLabels, Counter>::default();
        registry.register(
            "access_decisions",
            "Access policy decisions, by policy name and outcome (allowed, unauthenticated, forbidden, unavailable, invalid)",
            access.clone(),
        );
        let streams = stream::StreamFamilies::register(&mut registry);
        let request_bytes = Family::<ListenerLabels, Counter>::default();
        registry.register_with_unit(
            "request_body",
            "Request body bytes read from clients, by listener port",
            prometheus_client::registry::Unit::Bytes,
            request_bytes.clone(),
        );
        let response_bytes = Family::<ListenerLabels, Counter>::default();
        registry.register_with_unit(
            "response_body",
            "Response body bytes sent to clients, by listener port",
            prometheus_client::registry::Unit::Bytes,
            response_bytes.clone(),
        );
        let attempts = Family::<BackendLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register_with_unit(
            "upstream_attempt_duration",
            "Time from sending one attempt to an endpoint to its response head or failure, by backend (retries are attempts of their own)",
            prometheus_client::registry::Unit::Seconds,
            attempts.clone(),
        );
        let health_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "endpoint_health_transitions",
            "Endpoints that active health checks found healthy or unhealthy, by upstream and new state (to: healthy, unhealthy)",
            health_transitions.clone(),
        );
        let ejections = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "endpoint_ejections",
            "Endpoints ejected by passive outlier detection, by upstream",
            ejections.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the labels say which gatekit build runs (version, os, arch)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
            })
            .set(1);
        registry.register_collector(Box::new(process::ProcessCollector));
        if let Some(state) = policy {
            registry.register_collector(Box::new(policy::PolicyCollector { state }));
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                endpoint_updates,
                cluster_connected,
                cluster_dropped,
                certificate_not_after,
                access,
                requests,
                durations,
                connections,
                connections_rejected,
                endpoint_health,
                reloads_ok,
                reloads_failed,
                config_generation,
                streams,
                request_bytes,
                response_bytes,
                attempts,
                health_transitions,
                ejections,
            }),
        }
    }

    /// The handle to record requests of `route` sent to `backend` (see the [module
    /// docs](self)). The series are registered at the handle's first
    /// [`record`](RequestMetrics::record), so a (route, backend) that never served a
    /// request costs no series and is absent from `/metrics`; handles for the same names
    /// share one series. Call it when building configuration, not per request.
    pub fn request_metrics(&self, route: &str, backend: &str) -> RequestMetrics {
        self.request_metrics_shared(Arc::from(route), Arc::from(backend))
    }

    /// [`request_metrics`](Self::request_metrics) with names already shared (the
    /// route's, kept by its [`RouteFallback`] too): no copy of them.
    pub(crate) fn request_metrics_shared(
        &self,
        route: Arc<str>,
        backend: Arc<str>,
    ) -> RequestMetrics {
        RequestMetrics {
            inner: Arc::new(RequestInner {
                metrics: self.clone(),
                route,
                backend,
                series: OnceLock::new(),
                attempt: OnceLock::new(),
            }),
        }
    }

    /// Registers (or finds) the series of (`route`, `backend`).
    fn series(&self, route: &Arc<str>, backend: &Arc<str>) -> Series {
        let by_class = STATUS_CLASSES.map(|status_class| {
            self.inner.requests.get_or_create_owned(&RequestLabels {
                route: route.clone(),
                backend: backend.clone(),
                status_class,
                error_kind: NO_ERROR,
            })
        });
        let duration = self.inner.durations.get_or_create_owned(&RouteLabels {
            route: route.clone(),
        });
        Series { by_class, duration }
    }

    /// The decision counters of the access policy `policy` (one per
    /// [`AccessOutcome`]), registered now. Call it when the policy is built.
    pub fn access_metrics(&self, policy: &str) -> AccessMetrics {
        let policy: Arc<str> = Arc::from(policy);
        AccessMetrics {
            by_outcome: Arc::new(AccessOutcome::ALL.map(|outcome| {
                self.inner.access.get_or_create_owned(&AccessLabels {
                    policy: policy.clone(),
                    outcome: outcome.as_str(),
                })
            })),
        }
    }

    /// Drops the decision counters of the access policy `policy` from `/metrics`.
    pub fn forget_access_metrics(&self, policy: &str) {
        let policy: Arc<str> = Arc::from(policy);
        for outcome in AccessOutcome::ALL {
            self.inner.access.remove(&AccessLabels {
                policy: policy.clone(),
                outcome: outcome.as_str(),
            });
        }
    }

    /// Drops the request counters of (`route`, `backend`) from `/metrics`. Handles still
    /// held keep working but are no longer exported. The route's latency histogram is
    /// shared by its backends; drop it with [`forget_route`](Self::forget_route).
    pub fn forget_request_metrics(&self, route: &str, backend: &str) {
        let route: Arc<str> = Arc::from(route);
        let backend: Arc<str> = Arc::from(backend);
        for status_class in STATUS_CLASSES {
            self.inner.requests.remove(&RequestLabels {
                route: route.clone(),
                backend: backend.clone(),
                status_class,
                error_kind: NO_ERROR,
            });
        }
        for kind in gatekit_core::ErrorKind::ALL {
            self.inner.requests.remove(&RequestLabels {
                route: route.clone(),
                backend: backend.clone(),
                status_class: status_class(kind.status()),
                error_kind: kind.as_str(),
            });
        }
    }

    /// Drops the latency histogram of `route` from `/metrics` (once no backend of the
    /// route is served any more).
    pub fn forget_route(&self, route: &str) {
        self.forget_request_metrics(route, NO_BACKEND);
        self.inner.durations.remove(&RouteLabels {
            route: Arc::from(route),
        });
    }

    /// The health gauge of `endpoint` in `upstream` (set it to 1 or 0). Give the
    /// upstream name as an `Arc<str>` to share it with the series' label.
    pub fn endpoint_health(&self, upstream: impl Into<Arc<str>>, endpoint: SocketAddr) -> Gauge {
        self.inner
            .endpoint_health
            .gauges()
            .get_or_create_owned(&EndpointLabels {
                upstream: upstream.into(),
                endpoint: AddrLabel(endpoint),
            })
    }

    /// Drops the health series of `endpoint` in `upstream`.
    pub fn forget_endpoint(&self, upstream: &str, endpoint: SocketAddr) {
        self.inner.endpoint_health.gauges().remove(&EndpointLabels {
            upstream: Arc::from(upstream),
            endpoint: AddrLabel(endpoint),
        });
    }

    /// Exports the endpoints of `source` in `gatekit_endpoint_healthy`, read at each
    /// scrape (besides the gauges of [`endpoint_health`](Self::endpoint_health)),
    /// instead of those of the source set before.
    pub(crate) fn set_endpoint_health_source(
        &self,
        source: std::sync::Weak<dyn EndpointHealthSource>,
    ) {
        self.inner.endpoint_health.set_source(source);
    }

    /// The active-connections gauge of the listener on `port`.
    pub fn connection_gauge(&self, port: u16) -> Gauge {
        self.inner
            .connections
            .get_or_create_owned(&ListenerLabels { port })
    }

    /// The body byte counters of the listener on `port` (request, response), for the
    /// bodies of its requests ([`BodyBytes`]).
    pub fn body_bytes(&self, port: u16) -> BodyBytes {
        let labels = ListenerLabels { port };
        BodyBytes {
            request: self.inner.request_bytes.get_or_create_owned(&labels),
            response: self.inner.response_bytes.get_or_create_owned(&labels),
        }
    }

    /// Registers the health-transition and ejection counters of `upstream` (at 0).
    /// [`record_health_event`](Self::record_health_event) does so at the upstream's
    /// first event; call it to export them before (the gateway does not: the three
    /// series cost ~250 bytes per upstream, most of which never has an event).
    pub fn register_upstream(&self, upstream: &Arc<str>) {
        for to in ["healthy", "unhealthy"] {
            let _ = self
                .inner
                .health_transitions
                .get_or_create_owned(&TransitionLabels {
                    upstream: upstream.clone(),
                    to,
                });
        }
        let _ = self.inner.ejections.get_or_create_owned(&UpstreamLabels {
            upstream: upstream.clone(),
        });
    }

    /// Drops the series of the upstream (backend) `upstream`: its health-transition,
    /// ejection and attempt-duration series.
    pub fn forget_upstream(&self, upstream: &str) {
        let upstream: Arc<str> = Arc::from(upstream);
        for to in ["healthy", "unhealthy"] {
            self.inner.health_transitions.remove(&TransitionLabels {
                upstream: upstream.clone(),
                to,
            });
        }
        self.inner.ejections.remove(&UpstreamLabels {
            upstream: upstream.clone(),
        });
        self.inner
            .attempts
            .remove(&BackendLabels { backend: upstream });
    }

    /// Counts a health event of an endpoint of `upstream`: an active check's verdict
    /// (`gatekit_endpoint_health_transitions_total`) or a passive ejection
    /// (`gatekit_endpoint_ejections_total`); an ejection's end is neither. The
    /// upstream's first event registers all three of its counters (at 0, then this
    /// event counted), so from then on each is exported.
    pub fn record_health_event(&self, upstream: &Arc<str>, kind: gatekit_lb::HealthEventKind) {
        use gatekit_lb::HealthEventKind as K;
        // Events are rare: three lookups each, instead of three series per upstream
        // that never has one.
        self.register_upstream(upstream);
        let to = match kind {
            K::BecameHealthy => "healthy",
            K::BecameUnhealthy => "unhealthy",
            K::Ejected => {
                self.inner
                    .ejections
                    .get_or_create(&UpstreamLabels {
                        upstream: upstream.clone(),
                    })
                    .inc();
                return;
            }
            _ => return,
        };
        self.inner
            .health_transitions
            .get_or_create(&TransitionLabels {
                upstream: upstream.clone(),
                to,
            })
            .inc();
    }

    /// Counts a connection closed because the connection limit was reached.
    pub fn record_rejected_connection(&self) {
        self.inner.connections_rejected.inc();
    }

    /// Counts a configuration reload that succeeded (`ok`) or was refused.
    pub fn record_reload(&self, ok: bool) {
        if ok {
            self.inner.reloads_ok.inc();
        } else {
            self.inner.reloads_failed.inc();
        }
    }

    /// Sets a Kubernetes cluster's state: whether its API server answers (while it does
    /// not, its last known state is served, stale), and whether its endpoints were
    /// dropped after the staleness bound.
    pub fn set_cluster_state(&self, cluster: &str, connected: bool, endpoints_dropped: bool) {
        let labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        self.inner
            .cluster_connected
            .get_or_create(&labels)
            .set(i64::from(connected));
        self.inner
            .cluster_dropped
            .get_or_create(&labels)
            .set(i64::from(endpoints_dropped));
    }

    /// Sets the served certificates' expiry (`gatekit_certificate_not_after_seconds`):
    /// one series per (Secret, Gateway, listener) in `served`, with its `notAfter` in
    /// seconds since the Unix epoch; series of certificates no longer served are removed.
    pub fn set_certificates<'a>(
        &self,
        served: impl IntoIterator<Item = (&'a str, &'a str, &'a str, i64)>,
    ) {
        let family = &self.inner.certificate_not_after;
        family.clear();
        for (secret, gateway, listener, not_after) in served {
            family
                .get_or_create(&CertificateLabels {
                    secret: secret.to_owned(),
                    gateway: gateway.to_owned(),
                    listener: listener.to_owned(),
                })
                .set(not_after);
        }
    }

    /// Records how long an EndpointSlice change took to reach its upstreams.
    pub fn record_endpoint_update(&self, latency: std::time::Duration) {
        self.inner.endpoint_updates.observe(latency.as_secs_f64());
    }

    /// Sets the generation of the configuration being served.
    pub fn set_config_generation(&self, generation: u64) {
        self.inner
            .config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoding error would leave a partial text,
        // which is still better than none for an operator.
        if let Err(error) =
            prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
        {
            tracing::warn!(%error, "encoding metrics failed");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The body byte counters of one listener port: a body observer
/// ([`gatekit_core::exchange::ExchangeObserver`]) adding each data frame's length,
/// without allocating per request.
#[derive(Clone, Debug)]
pub struct BodyBytes {
    request: Counter,
    response: Counter,
}

impl gatekit_core::exchange::ExchangeObserver for BodyBytes {
    fn data(&self, direction: gatekit_core::exchange::Direction, len: usize) {
        let counter = match direction {
            gatekit_core::exchange::Direction::Request => &self.request,
            gatekit_core::exchange::Direction::Response => &self.response,
        };
        counter.inc_by(len as u64);
    }
}

/// What an access policy decided about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessOutcome {
    /// It passed.
    Allowed,
    /// No valid credentials (401).
    Unauthenticated,
    /// A valid identity without permission (403).
    Forbidden,
    /// The policy's key source or authorization service failed (503).
    Unavailable,
    /// The policy could not be used (500).
    Invalid,
}

impl AccessOutcome {
    const ALL: [Self; 5] = [
        Self::Allowed,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::Unavailable,
        Self::Invalid,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::Invalid => "invalid",
        }
    }
}

/// The `gatekit_access_decisions_total` counters of one access policy, one per
/// [`AccessOutcome`]: recording is an atomic add.
#[derive(Clone)]
pub struct AccessMetrics {
    by_outcome: Arc<[Counter; 5]>,
}

impl AccessMetrics {
    /// Counts one decision.
    pub fn record(&self, outcome: AccessOutcome) {
        self.by_outcome[outcome as usize].inc();
    }
}

impl fmt::Debug for AccessMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessMetrics").finish_non_exhaustive()
    }
}

/// The `backend` label of requests a route's rule answered before any backend: its
/// policy refused them (rate limit, concurrency or body limit, circuit breaker) or its
/// request timeout expired.
pub const NO_BACKEND: &str = "(none)";

/// A route's series for the answers its rules give before reaching a backend, created
/// at the first such answer (most routes never have one: no series is exported until
/// then). A route table puts it in the extensions of its rules' error responses
/// (`gatekit_core::Backends::error_extensions`); [`MetricsLayer`] records a response
/// that carries no [`RequestMetrics`] but this into `(route, "(none)")`.
///
/// It also holds the route's [`Retirement`](gatekit_core::server::Retirement) (one
/// allocation per route for both).
#[derive(Clone)]
pub struct RouteFallback {
    inner: Arc<FallbackInner>,
}

struct FallbackInner {
    metrics: Metrics,
    route: Arc<str>,
    /// Made at the first answer; replaced by [`RouteFallback::reset`].
    handle: arc_swap::ArcSwapOption<RequestInner>,
    retirement: gatekit_core::server::Retirement,
}

impl RouteFallback {
    /// The fallback series of `route`, recorded in `metrics`.
    pub fn new(metrics: Metrics, route: impl Into<Arc<str>>) -> Self {
        Self {
            inner: Arc::new(FallbackInner {
                metrics,
                route: route.into(),
                handle: arc_swap::ArcSwapOption::empty(),
                retirement: gatekit_core::server::Retirement::new(),
            }),
        }
    }

    /// Drops the `(route, "(none)")` counters from `/metrics` if they were registered,
    /// and keeps a later answer (of a rule still in flight) from registering them again.
    pub fn forget(&self) {
        self.request_metrics().forget();
    }

    /// [`forget`](Self::forget)s the counters of the answers so far; a later answer
    /// registers them anew.
    pub fn reset(&self) {
        self.forget();
        self.inner.handle.store(None);
    }

    /// The `(route, "(none)")` handle (looked up at the first call, and at the first
    /// after a [`reset`](Self::reset)).
    pub fn request_metrics(&self) -> RequestMetrics {
        let inner = &*self.inner;
        if let Some(handle) = inner.handle.load_full() {
            return RequestMetrics { inner: handle };
        }
        let made = inner.metrics.request_metrics(&inner.route, NO_BACKEND);
        // Two first answers at once: both use the one stored first.
        let before = inner
            .handle
            .compare_and_swap(&None::<Arc<RequestInner>>, Some(Arc::clone(&made.inner)));
        match &*before {
            Some(first) => RequestMetrics {
                inner: Arc::clone(first),
            },
            None => made,
        }
    }

    /// The route's retirement: marks its upgrade requests, closes their connections
    /// when the route is removed.
    pub fn retirement(&self) -> &gatekit_core::server::Retirement {
        &self.inner.retirement
    }

    /// How many handles hold the route's state (tests of what holds it).
    #[cfg(test)]
    pub(crate) fn holders(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// The route's name, as its series are labelled.
    pub(crate) fn route(&self) -> &Arc<str> {
        &self.inner.route
    }

    /// This fallback as the route's error extensions
    /// ([`gatekit_core::Backends::error_extensions`]): each error response of its
    /// rules gets a clone of it in its extensions, made at the error (its `Arc`, no
    /// extensions map kept per route).
    pub(crate) fn error_extensions(&self) -> Arc<dyn gatekit_core::ErrorExtensions> {
        Arc::clone(&self.inner) as Arc<dyn gatekit_core::ErrorExtensions>
    }
}

impl gatekit_core::ErrorExtensions for FallbackInner {
    fn extensions(self: Arc<Self>) -> http::Extensions {
        let mut extensions = http::Extensions::new();
        extensions.insert(RouteFallback { inner: self });
        extensions
    }
}

impl fmt::Debug for RouteFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteFallback")
            .field("route", &self.inner.route)
            .finish()
    }
}

/// Cached metric handles for requests of one (route, backend); see the [module
/// docs](self). Cloning is one atomic increment.
#[derive(Clone)]
pub struct RequestMetrics {
    inner: Arc<RequestInner>,
}

impl RequestMetrics {
    /// Whether both are handles of one series (tests of series reuse across reloads).
    #[cfg(test)]
    pub(crate) fn same_series(&self, other: &RequestMetrics) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

struct RequestInner {
    metrics: Metrics,
    route: Arc<str>,
    backend: Arc<str>,
    /// Registered at the first record; `None` once forgotten before any.
    series: OnceLock<Option<Box<Series>>>,
    /// The backend's attempt durations (shared by the routes sending to it),
    /// registered at the first attempt.
    attempt: OnceLock<Histogram>,
}

/// The registered series of one (route, backend).
struct Series {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl RequestMetrics {
    /// Records one answered request: its status and the time to its response headers.
    /// The first record registers the series.
    pub fn record(&self, status: http::StatusCode, elapsed: Duration) {
        self.record_with_kind(status, None, elapsed);
    }

    /// Records one answered request as [`record`](Self::record) does, counted under
    /// `error_kind` when gatekit made the response for an error of that `kind`. The
    /// series of a kind is registered at its first error (a map lookup: errors only).
    pub fn record_with_kind(
        &self,
        status: http::StatusCode,
        kind: Option<gatekit_core::ErrorKind>,
        elapsed: Duration,
    ) {
        let inner = &*self.inner;
        let series = inner
            .series
            .get_or_init(|| Some(Box::new(inner.metrics.series(&inner.route, &inner.backend))));
        if let Some(series) = series {
            match kind {
                None => {
                    let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
                    series.by_class[class].inc();
                }
                Some(kind) => {
                    inner
                        .metrics
                        .inner
                        .requests
                        .get_or_create(&RequestLabels {
                            route: inner.route.clone(),
                            backend: inner.backend.clone(),
                            status_class: status_class(status),
                            error_kind: kind.as_str(),
                        })
                        .inc();
                }
            }
            series.duration.observe(elapsed.as_secs_f64());
        }
    }

    /// Records one attempt sent to this handle's backend: the time to its response head
    /// or failure (`gatekit_upstream_attempt_duration_seconds`).
    pub fn record_attempt(&self, elapsed: Duration) {
        let inner = &*self.inner;
        inner
            .attempt
            .get_or_init(|| {
                inner
                    .metrics
                    .inner
                    .attempts
                    .get_or_create_owned(&BackendLabels {
                        backend: inner.backend.clone(),
                    })
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Drops this handle's request counters from `/metrics` if it registered them, and
    /// keeps it from registering them later (it records nothing from now on). The
    /// route's latency histogram is shared by its backends; drop it with
    /// [`Metrics::forget_route`].
    pub fn forget(&self) {
        let inner = &*self.inner;
        if inner.series.set(None).is_err() && matches!(inner.series.get(), Some(Some(_))) {
            inner
                .metrics
                .forget_request_metrics(&inner.route, &inner.backend);
        }
    }

    /// The route label.
    pub fn route(&self) -> &str {
        &self.inner.route
    }

    /// The backend label.
    pub fn backend(&self) -> &str {
        &self.inner.backend
    }
}

impl fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("route", &self.inner.route)
            .field("backend", &self.inner.backend)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_record_into_the_exported_families() {
        let metrics = Metrics::new();
        let h = metrics.request_metrics("default/web", "web:80");
        h.record(http::StatusCode::OK, Duration::from_millis(3));
        h.record(
            http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(3),
        );
        // A second handle for the same names shares the series.
        metrics
            .request_metrics("default/web", "web:80")
            .record(http::StatusCode::NO_CONTENT, Duration::from_millis(1));
        metrics.record_reload(true);
        metrics.record_reload(false);
        metrics.record_reload(false);
        metrics.set_config_generation(7);
        metrics
            .endpoint_health("web", "10.0.0.1:80".parse().unwrap())
            .set(1);
        metrics.connection_gauge(8080).inc();

        let text = metrics.encode();
        for line in [
            r#"gatekit_requests_total{route="default/web",backend="web:80",status_class="2xx",error_kind="none"} 2"#,
            r#"gatekit_requests_total{route="default/web",backend="web:80",status_class="5xx",error_kind="none"} 1"#,
            r#"gatekit_requests_total{route="default/web",backend="web:80",status_class="4xx",error_kind="none"} 0"#,
            r#"gatekit_request_duration_seconds_count{route="default/web"} 3"#,
            r#"gatekit_reloads_total{result="ok"} 1"#,
            r#"gatekit_reloads_total{result="failed"} 2"#,
            "gatekit_config_generation 7",
            r#"gatekit_endpoint_healthy{upstream="web",endpoint="10.0.0.1:80"} 1"#,
            r#"gatekit_active_connections{port="8080"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }

        metrics.forget_request_metrics("default/web", "web:80");
        let text = metrics.encode();
        assert!(
            !text.contains("gatekit_requests_total{route=\"default/web\""),
            "{text}"
        );
        assert!(text.contains("gatekit_request_duration_seconds_count{route=\"default/web\"} 3"));
        metrics.forget_route("default/web");
        metrics.forget_endpoint("web", "10.0.0.1:80".parse().unwrap());
        let text = metrics.encode();
        assert!(
            !text.contains("default/web") && !text.contains("10.0.0.1"),
            "{text}"
        );
    }

    #[test]
    fn series_are_registered_at_the_first_record_and_forgetting_first_keeps_them_out() {
        let metrics = Metrics::new();
        let used = metrics.request_metrics("default/used", "b:80");
        let idle = metrics.request_metrics("default/idle", "b:80");
        assert!(
            !metrics.encode().contains("default/"),
            "nothing before a record"
        );
        used.record(http::StatusCode::OK, Duration::from_millis(1));
        let text = metrics.encode();
        assert!(text.contains(
            r#"gatekit_requests_total{route="default/used",backend="b:80",status_class="1xx",error_kind="none"} 0"#
        ));
        assert!(!text.contains("default/idle"), "{text}");

        // Forgotten before any record: a late request (on the old rule) registers nothing.
        idle.forget();
        idle.record(http::StatusCode::OK, Duration::from_millis(1));
        assert!(!metrics.encode().contains("default/idle"));
        // Forgotten after: its counters leave /metrics.
        used.forget();
        assert!(
            !metrics
                .encode()
                .contains("gatekit_requests_total{route=\"default/used\"")
        );
    }
}
