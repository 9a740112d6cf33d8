//! The process settings file (`--config gatekit.yaml`).
//!
//! These are the binary's own settings — where the admin server listens, how it logs,
//! connection limits, how long a shutdown may drain — not gateway configuration, which
//! comes from Kubernetes manifests. Every field is optional; unknown fields are rejected
//! so a typo never silently falls back to a default.
//!
//! ```yaml
//! admin:
//!   address: 127.0.0.1:9901   # loopback only unless allowPublic: true
//!   allowPublic: false
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
//! drainTimeout: 30s           # in-flight requests may finish this long after SIGTERM
//!                             # (and the connections of a listener removed from the manifests)
//! shutdownDelay: 0s           # after SIGTERM: not ready for this long, still serving
//! gatewayClassName: gatekit   # Gateways of this class are served
//! kubernetes:                 # serve from API servers instead of --resources
//!   clusters:
//!     - { name: local, inCluster: true }
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
use std::path::Path;
use std::time::Duration;

use gatekit_gateway::{
    AccessLogSettings, GatewayOptions, Limits, PathSettings, RedisSettings, TrafficDefaults,
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
        }
    }
}

/// Admin server settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct AdminSettings {
    /// Where `/healthz`, `/readyz`, `/metrics` and `/config` are served.
    pub address: SocketAddr,
    /// Allows a non-loopback `address`. The admin API exposes the whole configuration.
    pub allow_public: bool,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 9901)),
            allow_public: false,
        }
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
            .with_drain_timeout(self.drain_timeout)
    }

    fn validate(&self, origin: &str) -> Result<(), SettingsError> {
        let invalid = |field, reason: &str| SettingsError::Invalid {
            origin: origin.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        if !self.admin.address.ip().is_loopback() && !self.admin.allow_public {
            return Err(invalid(
                "admin.address",
                "not a loopback address; the admin API exposes the configuration, set admin.allowPublic: true to serve it there anyway",
            ));
        }
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
";
        let s = Settings::from_yaml(yaml, "t").unwrap();
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
    fn public_admin_needs_consent() {
        let err = Settings::from_yaml("admin: { address: '0.0.0.0:9901' }", "g").unwrap_err();
        assert!(err.to_string().contains("admin.address"), "{err}");
        let yaml = "admin: { address: '0.0.0.0:9901', allowPublic: true }";
        assert!(Settings::from_yaml(yaml, "g").is_ok());
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
