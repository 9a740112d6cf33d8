//! The process settings file (`--config gatekit.yaml`).
//!
//! These are the binary's own settings — where the admin server listens, how it logs,
//! connection limits, how long a shutdown may drain — not gateway configuration, which
//! comes from Kubernetes manifests. Every field is optional; unknown fields are rejected
//! so a typo never silently falls back to a default.
//!
//! ```yaml
//! admin:
//!   address: 127.0.0.1:9901   # every admin path; elsewhere than loopback only with tokenFile
//!   tokenFile: /etc/gatekit/admin/token  # bearer token for /config and /fleet (default: none)
//!   probeAddress: 0.0.0.0:9902  # /healthz, /readyz, /metrics only (default: not served)
//! log:
//!   format: text              # or json
//!   accessLog: false          # or true, or (docs/access-log.md):
//!   # accessLog: { enabled: true, format: json, fields: [time, status, request_id],
//!   #              ports: { 9090: false } }   # per listener port
//! limits:
//!   maxConnections: 100000    # across all listeners
//!   maxConnectionsPerClient: 256  # per client IP address (default: no limit)
//!   headerReadTimeout: 10s    # HTTP/1 request head deadline (slowloris)
//!   tlsHandshakeTimeout: 10s
//!   proxyProtocolTrustedSources: [10.0.0.0/8]  # whose PROXY protocol headers are read
//!                             # where a ClientTrafficPolicy enables them (default: nobody;
//!                             # 0.0.0.0/0 and ::/0 trust everybody)
//! trafficDefaults:            # protection with no policy written
//!   retryUnsent: true         # a request that never reached a backend is retried once
//!   ejectRefusingEndpoints: true  # endpoints refusing connections leave rotation
//! redis:                      # where Global rate limits are kept (default: per replica)
//!   url: redis://redis.gatekit:6379  # every replica naming it shares one budget
//!   timeout: 20ms             # a decision waits this long for Redis, then falls back
//!   fallback: local           # or failOpen: what decides while Redis fails
//!   probeInterval: 250ms      # while it fails, how often Redis is asked again
//!   connections: 2            # multiplexed connections, taken in turn
//! tracing:                    # request traces over OTLP (default: off, and free)
//!   endpoint: http://otel-collector:4318/v1/traces  # OTLP/HTTP protobuf (no https)
//!   samplingRatio: 1.0        # share of new traces kept; a client's traceparent decides its own
//!   serviceName: gatekit      # service.name of the spans
//!   exportTimeout: 10s        # one export's deadline
//! drainTimeout: 30s           # in-flight requests may finish this long after SIGTERM
//!                             # (and the connections of a listener removed from the manifests)
//! shutdownDelay: 0s           # after SIGTERM: not ready for this long, still serving
//! gatewayClassName: gatekit   # Gateways of this class are served
//! kubernetes:                 # serve from API servers instead of --resources
//!   clusters:
//!     - { name: local, inCluster: true }
//! http1Codec: gatekit         # or hyper: the HTTP/1.1 server connections start with
//!                             # (gatekit's own for requests without a body, hyper for
//!                             # the rest of a connection from its first other request)
//! paths:                      # request path normalisation before routing
//!   normalize: true           # dot segments, unreserved %-escapes, `\` as `/`
//!   mergeSlashes: false
//!   escapedSlashes: keep      # %2F and %5C: keep, reject (400) or decode
//!   maxTargetLength: 8192     # longer request targets get 414
//! ```
//!
//! `kubernetes` is [`ProviderSettings`] (clusters, local cluster, readiness, staleness,
//! global namespaces, fleet); see `docs/kubernetes.md`.
//!
//! Durations are written as Gateway API durations: one or more `<integer><unit>` with unit
//! `h`, `m`, `s` or `ms` (`1m30s`, `500ms`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatekit_gateway::{
    AccessLogSettings, GatewayOptions, Http1CodecSetting, Limits, PathSettings, RedisSettings,
    TraceSettings, TrafficDefaults,
};
use gatekit_k8s::ProviderSettings;
use serde::Deserialize;

/// Why the settings file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read settings file {path}: {source}")]
    #[non_exhaustive]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown field or a value of the wrong type. The
    /// message names the field (and the line and column).
    #[error("invalid settings in {origin}: {source}")]
    #[non_exhaustive]
    Parse {
        /// The file or other origin.
        origin: String,
        /// The parser's error.
        #[source]
        source: serde_norway::Error,
    },
    /// A value parses but is not acceptable.
    #[error("invalid settings in {origin}: {field}: {reason}")]
    #[non_exhaustive]
    Invalid {
        /// The file or other origin.
        origin: String,
        /// The field path, e.g. `admin.address`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The binary's settings. Build with [`Settings::default`], [`Settings::from_yaml`] or
/// [`Settings::load`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct Settings {
    /// The admin server.
    pub admin: AdminSettings,
    /// Logging.
    pub log: LogSettings,
    /// Connection limits.
    pub limits: Limits,
    /// How long in-flight requests may take to finish after a shutdown signal, and the
    /// open connections of a listener removed from the manifests.
    #[serde(deserialize_with = "gatekit_gateway::deserialize_duration")]
    pub drain_timeout: Duration,
    /// Gateways whose `gatewayClassName` is this are served.
    pub gateway_class_name: String,
    /// After a shutdown signal, how long the process stays up and serving while
    /// `/readyz` already fails, so load balancers and EndpointSlices stop sending new
    /// connections before listeners close (Kubernetes' endpoint propagation delay).
    #[serde(deserialize_with = "gatekit_gateway::deserialize_duration")]
    pub shutdown_delay: Duration,
    /// Serve from Kubernetes API servers (see [`ProviderSettings`]).
    pub kubernetes: Option<ProviderSettings>,
    // --- request path policy (hostile-input hardening) ---
    /// How request paths are normalised before routing.
    pub paths: PathSettings,
    /// The protection applied where no policy says otherwise.
    pub traffic_defaults: TrafficDefaults,
    /// The Redis of the global rate limits.
    pub redis: Option<RedisSettings>,
    /// Request traces exported over OTLP (off when absent).
    pub tracing: Option<TraceSettings>,
    /// Which HTTP/1.1 server connections start with.
    pub http1_codec: Http1CodecSetting,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            admin: AdminSettings::default(),
            log: LogSettings::default(),
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(30),
            gateway_class_name: "gatekit".to_owned(),
            shutdown_delay: Duration::ZERO,
            kubernetes: None,
            paths: PathSettings::default(),
            traffic_defaults: TrafficDefaults::default(),
            redis: None,
            tracing: None,
            http1_codec: Http1CodecSetting::default(),
        }
    }
}

/// Admin server settings (see the [admin API](crate::AdminService)).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct AdminSettings {
    /// Where every admin path is served: the probes, `/metrics`, and the operational
    /// `/config` and `/fleet`, which show the whole configuration. A non-loopback
    /// address needs `token_file`.
    pub address: SocketAddr,
    /// A file holding the bearer token `/config` and `/fleet` require on `address`
    /// (e.g. a mounted Secret; read at start, surrounding whitespace ignored).
    pub token_file: Option<PathBuf>,
    /// Where only `/healthz`, `/readyz` and `/metrics` are served, typically the pod
    /// IP for the kubelet and Prometheus. Not served when unset.
    pub probe_address: Option<SocketAddr>,
    /// The removed `allowPublic`, kept to explain what replaced it.
    #[serde(rename = "allowPublic")]
    removed_allow_public: Option<bool>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 9901)),
            token_file: None,
            probe_address: None,
            removed_allow_public: None,
        }
    }
}

impl AdminSettings {
    /// Whether these settings keep the operational endpoints private: on loopback, or
    /// behind a token. Returns the field at fault and why otherwise.
    pub(crate) fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.removed_allow_public.is_some() {
            return Err((
                "admin.allowPublic",
                "no longer exists: publish probes and metrics with admin.probeAddress, and set admin.tokenFile to serve /config and /fleet on a non-loopback admin.address",
            ));
        }
        if !self.address.ip().is_loopback() && self.token_file.is_none() {
            return Err((
                "admin.address",
                "not a loopback address: /config and /fleet expose the whole configuration, so set admin.tokenFile (a bearer token) to serve them there, or publish only probes and metrics with admin.probeAddress",
            ));
        }
        if self.probe_address == Some(self.address) && self.address.port() != 0 {
            return Err((
                "admin.probeAddress",
                "is admin.address; give the probes their own port",
            ));
        }
        Ok(())
    }
}

/// Logging settings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// The access log (`true`/`false`, or its settings; see `docs/access-log.md`).
    #[serde(deserialize_with = "access_log")]
    pub access_log: AccessLogSettings,
}

/// `accessLog: true` (every port, JSON, every field), `false`, or the full settings.
fn access_log<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AccessLogSettings, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OnOrSettings {
        On(bool),
        Settings(AccessLogSettings),
    }
    Ok(match OnOrSettings::deserialize(d)? {
        OnOrSettings::On(on) => AccessLogSettings::default().with_enabled(on),
        OnOrSettings::Settings(settings) => settings,
    })
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Settings {
    /// Parses and validates settings from YAML; `origin` names the source in errors.
    ///
    /// # Errors
    ///
    /// [`SettingsError::Parse`] for malformed YAML, unknown fields and wrong types;
    /// [`SettingsError::Invalid`] for values that parse but cannot be used.
    pub fn from_yaml(yaml: &str, origin: &str) -> Result<Self, SettingsError> {
        // An empty file is all defaults (serde_norway reads it as null, not a mapping).
        let settings = if yaml.trim().is_empty() {
            Self::default()
        } else {
            serde_norway::from_str(yaml).map_err(|source| SettingsError::Parse {
                origin: origin.to_owned(),
                source,
            })?
        };
        settings.validate(origin)?;
        Ok(settings)
    }

    /// Reads, parses and validates the settings file at `path`.
    ///
    /// # Errors
    ///
    /// [`SettingsError::Read`] when the file cannot be read, otherwise as
    /// [`from_yaml`](Self::from_yaml).
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let yaml = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&yaml, &path.display().to_string())
    }

    /// How manifests are translated under these settings: the served GatewayClass, the
    /// global namespaces (from `kubernetes:`) and whether `Global` rate limits have a
    /// store (`redis:`). `gatekit run` and `gatekit validate --config` both use it.
    pub fn translate_options(&self) -> gatekit_k8s::TranslateOptions {
        let options = gatekit_k8s::TranslateOptions::default()
            .gateway_class_name(&self.gateway_class_name)
            .shared_rate_limits(self.redis.is_some());
        let Some(k) = &self.kubernetes else {
            return options;
        };
        let options = options.global_namespaces(k.global_namespaces.iter().cloned());
        match k.gateway_service() {
            Some((ns, name)) => options.gateway_service(ns, name),
            None => options,
        }
    }

    /// The options of the gateway these settings run.
    pub fn gateway_options(&self) -> GatewayOptions {
        GatewayOptions::default()
            .with_limits(self.limits.clone())
            .with_paths(self.paths.clone())
            .with_access_log_settings(self.log.access_log.clone())
            .with_kubernetes(self.kubernetes.clone())
            .with_traffic_defaults(self.traffic_defaults)
            .with_redis(self.redis.clone())
            .with_tracing(self.tracing.clone())
            .with_http1_codec(self.http1_codec)
            .with_drain_timeout(self.drain_timeout)
    }

    fn validate(&self, origin: &str) -> Result<(), SettingsError> {
        let invalid = |field, reason: &str| SettingsError::Invalid {
            origin: origin.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        self.admin
            .check()
            .map_err(|(field, reason)| invalid(field, reason))?;
        if self.limits.max_connections == 0 {
            return Err(invalid("limits.maxConnections", "must be at least 1"));
        }
        if self.limits.max_connections_per_client == Some(0) {
            return Err(invalid(
                "limits.maxConnectionsPerClient",
                "must be at least 1 (omit it for no per-client limit)",
            ));
        }
        if self.limits.header_read_timeout.is_zero() {
            return Err(invalid("limits.headerReadTimeout", "must be longer than 0"));
        }
        if self.limits.tls_handshake_timeout.is_zero() {
            return Err(invalid(
                "limits.tlsHandshakeTimeout",
                "must be longer than 0",
            ));
        }
        if self.gateway_class_name.is_empty() {
            return Err(invalid("gatewayClassName", "must not be empty"));
        }
        if let Some(kubernetes) = &self.kubernetes {
            kubernetes
                .validate()
                .map_err(|reason| SettingsError::Invalid {
                    origin: origin.to_owned(),
                    field: "kubernetes",
                    reason,
                })?;
        }
        if self.paths.max_target_length == 0 {
            return Err(invalid("paths.maxTargetLength", "must be at least 1"));
        }
        if let Some(redis) = &self.redis {
            redis.check().map_err(|(field, reason)| {
                let field = match field {
                    "timeout" => "redis.timeout",
                    "probeInterval" => "redis.probeInterval",
                    "connections" => "redis.connections",
                    _ => "redis.url",
                };
                invalid(field, &reason)
            })?;
        }
        if let Some(tracing) = &self.tracing {
            tracing.check().map_err(|(field, reason)| {
                let field = match field {
                    "samplingRatio" => "tracing.samplingRatio",
                    "exportTimeout" => "tracing.exportTimeout",
                    _ => "tracing.endpoint",
                };
                invalid(field, &reason)
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_service_becomes_a_translate_option_and_a_bad_one_names_the_field() {
        let k = "kubernetes:\n  clusters: [{ name: a, server: \"https://x\", roles: [config] }]\n";
        let s = Settings::from_yaml(&format!("{k}  gatewayService: gatekit/edge\n"), "t").unwrap();
        let kubernetes = s.kubernetes.as_ref().unwrap();
        assert_eq!(kubernetes.gateway_service(), Some(("gatekit", "edge")));
        let e = Settings::from_yaml(&format!("{k}  gatewayService: edge\n"), "t").unwrap_err();
        assert!(e.to_string().contains("kubernetes.gatewayService"), "{e}");
    }

    /// The settings `deploy/` ships must be settings this binary accepts.
    #[test]
    fn tracing_settings_parse_with_defaults_and_bad_ones_name_the_field() {
        let s = Settings::from_yaml("tracing: { endpoint: 'http://127.0.0.1:4318' }", "t").unwrap();
        let t = s.tracing.clone().unwrap();
        assert_eq!(t.sampling_ratio, 1.0);
        assert_eq!(t.service_name, "gatekit");
        assert_eq!(s.gateway_options().tracing, Some(t));
        assert!(Settings::default().gateway_options().tracing.is_none());
        let e = Settings::from_yaml("tracing: { endpoint: 'https://h:4318' }", "t").unwrap_err();
        assert!(e.to_string().contains("tracing.endpoint"), "{e}");
        let e = Settings::from_yaml("tracing: { endpoint: 'http://h', samplingRatio: 2 }", "t")
            .unwrap_err();
        assert!(e.to_string().contains("tracing.samplingRatio"), "{e}");
    }

    #[test]
    fn redis_settings_parse_with_defaults_and_bad_ones_name_the_field() {
        let s = Settings::from_yaml("redis: { url: redis://127.0.0.1:6379 }", "t").unwrap();
        let r = s.redis.unwrap();
        assert_eq!(r.timeout, Duration::from_millis(20));
        assert_eq!(r.fallback, gatekit_gateway::RedisFallback::Local);
        let s = Settings::from_yaml(
            "redis: { url: redis://h:1, fallback: failOpen, timeout: 5ms }",
            "t",
        )
        .unwrap();
        let r = s.redis.unwrap();
        assert_eq!(r.fallback, gatekit_gateway::RedisFallback::FailOpen);
        assert_eq!(r.timeout, Duration::from_millis(5));
        let e = Settings::from_yaml("redis: { url: 'http://h:1' }", "t").unwrap_err();
        assert!(e.to_string().contains("redis.url"), "{e}");
        let e = Settings::from_yaml("redis: { url: 'redis://h', timeout: 0s }", "t").unwrap_err();
        assert!(e.to_string().contains("redis.timeout"), "{e}");
        let e =
            Settings::from_yaml("redis: { url: 'redis://h', fallback: deny }", "t").unwrap_err();
        assert!(e.to_string().contains("fallback"), "{e}");
    }

    #[test]
    fn deploy_configmap_settings_parse() {
        let configmap: serde_norway::Value =
            serde_norway::from_str(include_str!("../../../deploy/config.yaml")).unwrap();
        let yaml = configmap["data"]["gatekit.yaml"].as_str().unwrap();
        let s = Settings::from_yaml(yaml, "deploy/config.yaml").unwrap();
        let k = s.kubernetes.unwrap();
        assert_eq!(k.clusters[0].name, "local");
        assert!(k.clusters[0].in_cluster);
        assert_eq!(k.local_cluster.as_deref(), Some("local"));
        assert_eq!(k.global_namespaces, ["platform"]);
        assert_eq!(s.shutdown_delay, Duration::from_secs(5));
    }

    /// deploy/ publishes probes and metrics on the pod IP and nothing of the admin API
    /// that shows the configuration: the container ports, the probes, the Dockerfile and
    /// the NetworkPolicy agree with the ConfigMap's `admin` section.
    #[test]
    fn deploy_publishes_only_probes_and_metrics() {
        let configmap: serde_norway::Value =
            serde_norway::from_str(include_str!("../../../deploy/config.yaml")).unwrap();
        let yaml = configmap["data"]["gatekit.yaml"].as_str().unwrap();
        let admin = Settings::from_yaml(yaml, "deploy/config.yaml")
            .unwrap()
            .admin;
        assert!(admin.address.ip().is_loopback(), "{admin:?}");
        assert!(admin.token_file.is_none());
        let probes = admin.probe_address.unwrap();
        assert!(probes.ip().is_unspecified(), "probes on the pod IP");
        let (admin_port, probe_port) = (admin.address.port(), probes.port());

        let deployment: serde_norway::Value =
            serde_norway::from_str(include_str!("../../../deploy/deployment.yaml")).unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let ports = container["ports"].as_sequence().unwrap();
        let port_of = |name: &str| {
            ports
                .iter()
                .find(|p| p["name"].as_str() == Some(name))
                .and_then(|p| p["containerPort"].as_u64())
        };
        assert!(
            ports
                .iter()
                .all(|p| p["containerPort"].as_u64() != Some(u64::from(admin_port))),
            "the admin port is not a container port"
        );
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let name = container[probe]["httpGet"]["port"].as_str().unwrap();
            assert_eq!(port_of(name), Some(u64::from(probe_port)), "{probe}");
        }

        let dockerfile = include_str!("../../../deploy/Dockerfile");
        let expose = dockerfile
            .lines()
            .find(|l| l.starts_with("EXPOSE"))
            .unwrap();
        assert!(expose.contains(&probe_port.to_string()), "{expose}");
        assert!(!expose.contains(&admin_port.to_string()), "{expose}");

        let policy: serde_norway::Value =
            serde_norway::from_str(include_str!("../../../deploy/networkpolicy.yaml")).unwrap();
        let allowed: Vec<u64> = policy["spec"]["ingress"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["ports"].as_sequence().unwrap().iter())
            .filter_map(|p| p["port"].as_u64())
            .collect();
        assert!(allowed.contains(&u64::from(probe_port)), "{allowed:?}");
        assert!(!allowed.contains(&u64::from(admin_port)), "{allowed:?}");
    }

    #[test]
    fn kubernetes_settings_are_validated() {
        let e = Settings::from_yaml(
            "kubernetes:\n  clusters:\n    - { name: a, server: \"https://x\", roles: [endpoints] }\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("config role"), "{e}");
        let e = Settings::from_yaml(
            "kubernetes:\n  clusters:\n    - { name: a, server: \"https://x\" }\n  localCluster: b\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("localCluster"), "{e}");
    }

    #[test]
    fn empty_file_is_defaults() {
        let s = Settings::from_yaml("", "t").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.admin.address, "127.0.0.1:9901".parse().unwrap());
        assert_eq!(s.drain_timeout, Duration::from_secs(30));
        assert_eq!(s.gateway_class_name, "gatekit");
        assert_eq!(s.log.format, LogFormat::Text);
    }

    #[test]
    fn access_log_takes_a_switch_or_its_settings() {
        let yaml = "log: { accessLog: { format: text, fields: [status, request_id], ports: { 9090: false }, enabled: true } }";
        let s = Settings::from_yaml(yaml, "t").unwrap();
        let log = &s.log.access_log;
        assert!(log.enabled_on(8080) && !log.enabled_on(9090));
        assert_eq!(log.format, gatekit_gateway::AccessLogFormat::Text);
        assert_eq!(log.fields.len(), 2);
        let bad = Settings::from_yaml("log: { accessLog: { fields: [nope] } }", "t");
        assert!(bad.is_err());
    }

    #[test]
    fn full_file_parses() {
        let yaml = "
admin: { address: '[::1]:9000' }
log: { format: json, accessLog: true }
limits: { maxConnections: 10, headerReadTimeout: 1m30s, tlsHandshakeTimeout: 500ms }
drainTimeout: 5s
gatewayClassName: edge
http1Codec: hyper
";
        let s = Settings::from_yaml(yaml, "t").unwrap();
        assert_eq!(s.http1_codec, Http1CodecSetting::Hyper);
        assert_eq!(Settings::default().http1_codec, Http1CodecSetting::Gatekit);
        assert!(Settings::from_yaml("http1Codec: fast\n", "t").is_err());
        assert_eq!(s.admin.address, "[::1]:9000".parse().unwrap());
        assert_eq!(s.log.format, LogFormat::Json);
        assert!(s.log.access_log.enabled);
        assert_eq!(s.limits.max_connections, 10);
        assert_eq!(s.limits.header_read_timeout, Duration::from_secs(90));
        assert_eq!(s.limits.tls_handshake_timeout, Duration::from_millis(500));
        assert_eq!(s.drain_timeout, Duration::from_secs(5));
        assert_eq!(s.gateway_class_name, "edge");
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = Settings::from_yaml("drainTimout: 5s\n", "gatekit.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("gatekit.yaml") && msg.contains("drainTimout"),
            "{msg}"
        );
        let err = Settings::from_yaml("admin:\n  adress: 1.2.3.4:1\n", "g").unwrap_err();
        assert!(err.to_string().contains("adress"), "{err}");
    }

    #[test]
    fn a_public_admin_address_needs_a_token_and_probes_need_none() {
        let err = Settings::from_yaml("admin: { address: '0.0.0.0:9901' }", "g").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("admin.address") && msg.contains("admin.tokenFile"),
            "{msg}"
        );
        let yaml = "admin: { address: '0.0.0.0:9901', tokenFile: /run/token }";
        let s = Settings::from_yaml(yaml, "g").unwrap();
        assert_eq!(s.admin.token_file, Some(PathBuf::from("/run/token")));
        let yaml = "admin: { probeAddress: '0.0.0.0:9902' }";
        let s = Settings::from_yaml(yaml, "g").unwrap();
        assert_eq!(s.admin.probe_address, Some("0.0.0.0:9902".parse().unwrap()));
        let yaml = "admin: { address: '127.0.0.1:9901', probeAddress: '127.0.0.1:9901' }";
        let err = Settings::from_yaml(yaml, "g").unwrap_err();
        assert!(err.to_string().contains("admin.probeAddress"), "{err}");
        // The old consent flag is refused with what replaced it, not silently ignored.
        let yaml = "admin: { address: '0.0.0.0:9901', allowPublic: true }";
        let err = Settings::from_yaml(yaml, "g").unwrap_err().to_string();
        assert!(
            err.contains("admin.allowPublic") && err.contains("admin.probeAddress"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        for (yaml, needle) in [
            ("drainTimeout: 5", "has no unit"),
            ("drainTimeout: 123456s", "more than 5 digits"),
            (
                "limits: { headerReadTimeout: 5x }",
                "limits: invalid duration \"5x\"",
            ),
            ("limits: { maxConnections: -1 }", "limits.maxConnections"),
            ("drainTimeout: 5x", "unknown unit"),
            ("drainTimeout: s", "expected a number"),
            ("limits: { maxConnections: 0 }", "limits.maxConnections"),
            (
                "limits: { headerReadTimeout: 0s }",
                "limits.headerReadTimeout",
            ),
            ("log: { format: xml }", "xml"),
        ] {
            let err = Settings::from_yaml(yaml, "g").unwrap_err();
            assert!(err.to_string().contains(needle), "{yaml}: {err}");
        }
    }

    #[test]
    fn path_settings_parse_into_a_policy() {
        use gatekit_core::path::{EscapedSlashes, PathPolicy};
        let s = Settings::from_yaml(
            "paths: { mergeSlashes: true, escapedSlashes: reject, maxTargetLength: 100 }",
            "g",
        )
        .unwrap();
        assert_eq!(
            s.paths.policy(),
            PathPolicy::default()
                .merge_slashes(true)
                .escaped_slashes(EscapedSlashes::Reject)
                .with_max_target_len(100)
        );
        assert_eq!(Settings::default().paths.policy(), PathPolicy::default());
        let err = Settings::from_yaml("paths: { maxTargetLength: 0 }", "g").unwrap_err();
        assert!(err.to_string().contains("paths.maxTargetLength"), "{err}");
        assert!(Settings::from_yaml("paths: { escapedSlashes: drop }", "g").is_err());
    }

    #[test]
    fn durations_use_the_gateway_api_grammar() {
        let s = Settings::from_yaml("drainTimeout: 1m30s\nshutdownDelay: 250ms", "g").unwrap();
        assert_eq!(s.drain_timeout, Duration::from_secs(90));
        assert_eq!(s.shutdown_delay, Duration::from_millis(250));
    }
}
