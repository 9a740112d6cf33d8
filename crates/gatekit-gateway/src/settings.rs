//! What a [`Gateway`](crate::Gateway) needs to know that is not in the manifests:
//! listener limits, the request path policy, access logging and, when serving from
//! Kubernetes, the provider settings ([`GatewayOptions`]).
//!
//! [`Limits`] and [`PathSettings`] deserialize from the camelCase YAML of the `gatekit`
//! binary's settings file (`limits:` and `paths:`), so an application can embed them in
//! its own settings.

use std::time::Duration;

use gatekit_k8s::ProviderSettings;
use serde::{Deserialize, Deserializer};

/// The options of a [`Gateway`](crate::Gateway). Build with [`GatewayOptions::default`]
/// and the `with_*` setters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayOptions {
    /// Connection limits of the listeners.
    pub limits: Limits,
    /// How long the open connections of a listener removed from the manifests may take
    /// to finish before they are closed (`None`: [`DEFAULT_DRAIN_TIMEOUT`]).
    pub drain_timeout: Option<std::time::Duration>,
    /// How request paths are normalised before routing.
    pub paths: PathSettings,
    /// The access log: on or off (per port too), format, fields
    /// ([`AccessLogSettings`](crate::AccessLogSettings)).
    pub access_log: crate::AccessLogSettings,
    /// The Kubernetes provider settings, when serving from API servers: the local
    /// cluster and failover threshold of upstreams, and the replica's fleet membership.
    pub kubernetes: Option<ProviderSettings>,
    /// The traffic policy applied where no policy says otherwise.
    pub traffic_defaults: TrafficDefaults,
    /// The Redis that keeps the global rate limits (Envoy Gateway's `type: Global`),
    /// shared by every replica using it; `None`: they run per replica.
    pub redis: Option<RedisSettings>,
    /// Request traces exported over OTLP (the settings file's `tracing:`); `None`, the
    /// default: no spans, no trace headers read or written.
    pub tracing: Option<TraceSettings>,
    /// Which HTTP/1.1 server connections start with (the settings file's
    /// `http1Codec:`).
    pub http1_codec: Http1CodecSetting,
}

/// Which HTTP/1.1 server the listeners start each connection with (see
/// `gatekit_core::server::Http1Codec`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Http1CodecSetting {
    /// gatekit's own codec for requests without a body, hyper's server for the rest of a
    /// connection from its first other request (the default).
    #[default]
    Gatekit,
    /// hyper's server for every connection.
    Hyper,
}

impl Http1CodecSetting {
    /// The server's setting.
    pub fn codec(self) -> gatekit_core::server::Http1Codec {
        match self {
            Self::Gatekit => gatekit_core::server::Http1Codec::Gatekit,
            Self::Hyper => gatekit_core::server::Http1Codec::Hyper,
        }
    }
}

/// The default drain deadline: 30 s, as the binary's `drainTimeout`.
pub const DEFAULT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl GatewayOptions {
    /// Sets how long the open connections of a removed listener may take to finish
    /// (default [`DEFAULT_DRAIN_TIMEOUT`]).
    #[must_use]
    pub fn with_drain_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// Sets the connection limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the request path policy.
    #[must_use]
    pub fn with_paths(mut self, paths: PathSettings) -> Self {
        self.paths = paths;
        self
    }

    /// Logs one line per request on every port (JSON, every field, to standard
    /// output), or not (the default).
    #[must_use]
    pub fn with_access_log(mut self, access_log: bool) -> Self {
        self.access_log.enabled = access_log;
        self
    }

    /// Sets the access log's settings (see [`AccessLogSettings`](crate::AccessLogSettings)).
    #[must_use]
    pub fn with_access_log_settings(mut self, settings: crate::AccessLogSettings) -> Self {
        self.access_log = settings;
        self
    }

    /// Sets the traffic defaults (see [`TrafficDefaults`]).
    #[must_use]
    pub fn with_traffic_defaults(mut self, defaults: TrafficDefaults) -> Self {
        self.traffic_defaults = defaults;
        self
    }

    /// Turns request traces on (see [`TraceSettings`]) or off (`None`, the default).
    #[must_use]
    pub fn with_tracing(mut self, tracing: Option<TraceSettings>) -> Self {
        self.tracing = tracing;
        self
    }

    /// Sets the Redis of the global rate limits (see [`RedisSettings`]).
    #[must_use]
    pub fn with_redis(mut self, redis: Option<RedisSettings>) -> Self {
        self.redis = redis;
        self
    }

    /// Sets which HTTP/1.1 server connections start with (see [`Http1CodecSetting`]).
    #[must_use]
    pub fn with_http1_codec(mut self, codec: Http1CodecSetting) -> Self {
        self.http1_codec = codec;
        self
    }

    /// Sets the Kubernetes provider settings (see [`GatewayOptions::kubernetes`]).
    #[must_use]
    pub fn with_kubernetes(mut self, kubernetes: Option<ProviderSettings>) -> Self {
        self.kubernetes = kubernetes;
        self
    }
}

/// What the gateway does to protect requests when no policy is written (the settings
/// file's `trafficDefaults:`). Both are on by default; each can be switched off.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct TrafficDefaults {
    /// A request that never reached a backend (connect refused or timed out, no
    /// healthy endpoint) is retried once, on another endpoint when there is one,
    /// whatever its method ([`RetryPolicy::unsent_once`]); rules with a retry policy
    /// use theirs.
    ///
    /// [`RetryPolicy::unsent_once`]: gatekit_core::retry::RetryPolicy::unsent_once
    pub retry_unsent: bool,
    /// An endpoint that refuses 2 connections in a row is taken out of rotation for 5 s
    /// (doubling on repeats, up to 60 s), even one of two; Services whose BackendPolicy
    /// configures passive health checking use that instead
    /// (`gatekit_lb::outlier::OutlierConfig::connect_failures_only`).
    pub eject_refusing_endpoints: bool,
}

impl Default for TrafficDefaults {
    fn default() -> Self {
        Self {
            retry_unsent: true,
            eject_refusing_endpoints: true,
        }
    }
}

/// Where the global rate limits are kept (the settings file's `redis:`): every replica
/// naming the same Redis shares one budget per limit and key.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` is not built in).
    pub url: String,
    /// How long a decision waits for Redis before the fallback decides (default 20ms).
    #[serde(
        default = "RedisSettings::default_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
    /// What decides while Redis fails or is slow (default `local`).
    #[serde(default)]
    pub fallback: RedisFallback,
    /// While Redis fails, how often one decision asks it again (default 250ms); the
    /// others go straight to the fallback.
    #[serde(
        default = "RedisSettings::default_probe_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub probe_interval: Duration,
    /// Connections to Redis, each multiplexed (every decision in flight pipelined on
    /// it), taken in turn (default 2, at most 64).
    #[serde(default = "RedisSettings::default_connections")]
    pub connections: usize,
}

impl RedisSettings {
    /// The Redis at `url`, with the default timeout, fallback and probe interval.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Self::default_timeout(),
            fallback: RedisFallback::default(),
            probe_interval: Self::default_probe_interval(),
            connections: Self::default_connections(),
        }
    }

    /// Sets what decides while Redis fails.
    #[must_use]
    pub fn with_fallback(mut self, fallback: RedisFallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// Sets how long a decision waits for Redis.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings without connecting: a URL this build can use, a timeout.
    ///
    /// # Errors
    ///
    /// The field (`url`, `timeout`, `probeInterval`) and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        #[cfg(feature = "redis")]
        gatekit_redis::check_url(&self.url).map_err(|e| ("url", e.to_string()))?;
        #[cfg(not(feature = "redis"))]
        return Err((
            "url",
            "this build of gatekit-gateway has no `redis` feature".to_owned(),
        ));
        if self.timeout.is_zero() {
            return Err(("timeout", "must be more than 0".to_owned()));
        }
        if self.probe_interval.is_zero() {
            return Err(("probeInterval", "must be more than 0".to_owned()));
        }
        if !(1..=64).contains(&self.connections) {
            return Err(("connections", "must be from 1 to 64".to_owned()));
        }
        Ok(())
    }

    fn default_timeout() -> Duration {
        Duration::from_millis(20)
    }

    fn default_connections() -> usize {
        2
    }

    fn default_probe_interval() -> Duration {
        Duration::from_millis(250)
    }
}

/// Request traces (the settings file's `tracing:`): a server span per request, a
/// routing span and a client span per upstream attempt, W3C `traceparent`/`tracestate`
/// read from the client and written to the upstream, exported over OTLP/HTTP (protobuf)
/// to `endpoint`. Needs gatekit-gateway's `otel` feature.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct TraceSettings {
    /// The collector's OTLP/HTTP traces URL, `http://host:4318/v1/traces` (a URL without
    /// a path gets `/v1/traces`; `https` is not built in).
    pub endpoint: String,
    /// The share of new traces recorded, from 0 to 1 (default 1). Parent-based: a
    /// request whose `traceparent` says sampled (or not) follows its parent.
    #[serde(default = "TraceSettings::default_sampling_ratio")]
    pub sampling_ratio: f64,
    /// The `service.name` resource attribute (default `gatekit`).
    #[serde(default = "TraceSettings::default_service_name")]
    pub service_name: String,
    /// How long one export may take (default 10s).
    #[serde(
        default = "TraceSettings::default_export_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub export_timeout: Duration,
}

// The ratio is never NaN once checked.
impl Eq for TraceSettings {}

impl TraceSettings {
    /// Traces exported to `endpoint`, every new trace recorded.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            sampling_ratio: Self::default_sampling_ratio(),
            service_name: Self::default_service_name(),
            export_timeout: Self::default_export_timeout(),
        }
    }

    /// Sets the share of new traces recorded (0 to 1).
    #[must_use]
    pub fn with_sampling_ratio(mut self, ratio: f64) -> Self {
        self.sampling_ratio = ratio;
        self
    }

    /// Sets the `service.name` of the exported spans.
    #[must_use]
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Checks the settings without connecting.
    ///
    /// # Errors
    ///
    /// The field (`endpoint`, `samplingRatio`, `exportTimeout`) and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        #[cfg(not(feature = "otel"))]
        if cfg!(not(feature = "otel")) {
            return Err((
                "endpoint",
                "this build of gatekit-gateway has no `otel` feature".to_owned(),
            ));
        }
        #[cfg(feature = "otel")]
        crate::trace::endpoint_uri(&self.endpoint).map_err(|e| ("endpoint", e))?;
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(("samplingRatio", "must be from 0 to 1".to_owned()));
        }
        if self.export_timeout.is_zero() {
            return Err(("exportTimeout", "must be more than 0".to_owned()));
        }
        Ok(())
    }

    fn default_sampling_ratio() -> f64 {
        1.0
    }

    fn default_service_name() -> String {
        "gatekit".to_owned()
    }

    fn default_export_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

/// `redis.fallback`: what decides about a request while Redis fails or is slow.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum RedisFallback {
    /// A local limiter with the same quota, per replica (N replicas: up to N × the
    /// quota in total while Redis is away). Limits stay enforced.
    #[default]
    Local,
    /// Every request is allowed (Envoy's default for an unreachable rate-limit
    /// service): availability over the limit.
    FailOpen,
}

/// The name `listener.rs` knows the options by.
pub(crate) type Settings = GatewayOptions;

/// Connection limits of the gateway listeners.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct Limits {
    /// Open client connections across all listeners; beyond it new connections are closed
    /// at once.
    pub max_connections: usize,
    /// How long a client may take to send a complete HTTP/1 request head.
    #[serde(deserialize_with = "deserialize_duration")]
    pub header_read_timeout: Duration,
    /// How long a client may take to complete a TLS handshake.
    #[serde(deserialize_with = "deserialize_duration")]
    pub tls_handshake_timeout: Duration,
    /// Open connections from one client IP address across all listeners; beyond it
    /// that client's new connections are closed at once. `None` (the default): no
    /// per-client limit.
    pub max_connections_per_client: Option<usize>,
    /// The sources (CIDR ranges or addresses) whose PROXY protocol headers are read on
    /// listeners a ClientTrafficPolicy enables it for (`proxyProtocol`,
    /// `enableProxyProtocol`). Empty (the default): nobody is trusted, and a listener
    /// asking for PROXY protocol is reported as a configuration problem and reads no
    /// header (a client cannot claim another address). Envoy Gateway trusts any source
    /// once enabled; gatekit makes trust explicit: write `0.0.0.0/0` and `::/0` to trust
    /// everybody (only behind a load balancer that always sends the header).
    #[serde(deserialize_with = "deserialize_cidrs")]
    pub proxy_protocol_trusted_sources: Vec<ipnet::IpNet>,
}

/// CIDR ranges (`10.0.0.0/8`, `::/0`) or plain addresses (one host).
fn deserialize_cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{s:?} is not a CIDR range (10.0.0.0/8) or an IP address"
                    ))
                })
        })
        .collect()
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: gatekit_core::tls::DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections_per_client: None,
            proxy_protocol_trusted_sources: Vec::new(),
        }
    }
}

/// How request paths are normalised before routing (see `gatekit_core::path`): the
/// normalised path is what is routed and what is sent upstream.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct PathSettings {
    /// RFC 3986 dot-segment removal, decoding of unreserved `%`-escapes, `\` as `/`.
    pub normalize: bool,
    /// `//` becomes `/`.
    pub merge_slashes: bool,
    /// What `%2F` and `%5C` become.
    pub escaped_slashes: EscapedSlashesSetting,
    /// Longest request target (path and query) accepted; longer ones get 414.
    pub max_target_length: usize,
}

impl Default for PathSettings {
    fn default() -> Self {
        Self {
            normalize: true,
            merge_slashes: false,
            escaped_slashes: EscapedSlashesSetting::Keep,
            max_target_length: gatekit_core::path::DEFAULT_MAX_TARGET_LEN,
        }
    }
}

impl PathSettings {
    /// The core policy these settings describe.
    pub fn policy(&self) -> gatekit_core::path::PathPolicy {
        use gatekit_core::path::{EscapedSlashes, PathPolicy};
        PathPolicy::default()
            .normalize(self.normalize)
            .merge_slashes(self.merge_slashes)
            .escaped_slashes(match self.escaped_slashes {
                EscapedSlashesSetting::Keep => EscapedSlashes::Keep,
                EscapedSlashesSetting::Reject => EscapedSlashes::Reject,
                EscapedSlashesSetting::Decode => EscapedSlashes::Decode,
            })
            .with_max_target_len(self.max_target_length)
    }
}

/// `paths.escapedSlashes`: what `%2F` and `%5C` in a path become.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EscapedSlashesSetting {
    /// Kept encoded (part of a segment).
    #[default]
    Keep,
    /// The request is refused with 400.
    Reject,
    /// Decoded into path separators.
    Decode,
}

/// Deserializes a duration written as in the Gateway API (`1h`, `1m30s`, `500ms`; GEP-2257,
/// parsed by [`gatekit_k8s::duration::parse`], the one duration parser of the workspace), for
/// `#[serde(deserialize_with = "gatekit_gateway::deserialize_duration")]`.
///
/// # Errors
///
/// The deserializer's error, naming the text and what is wrong with it.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    gatekit_k8s::duration::parse(&text).map_err(serde::de::Error::custom)
}
