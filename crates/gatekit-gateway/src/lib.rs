//! gatekit-gateway: gatekit's layers assembled into a serving gateway.
//!
//! Manifests in (a directory watched for changes, in-memory documents, or Kubernetes
//! API servers), hot-reloaded routers out: [`Wiring`] loads and translates the
//! manifests, keeps the upstreams (with their balancer, health, breaker and limiter
//! state) across reloads, swaps each port's route table, renders `/config` and, in a
//! cluster, takes part in the fleet. A [`Gateway`] holds what it serves through: the
//! [`Listeners`] (one per Gateway port), the [`Metrics`] registry, the [`Readiness`]
//! and the published [`ConfigDump`]s.
//!
//! Not here: a command line, a settings file, signal handling or an admin server —
//! those are the `gatekit` binary's (`gatekit-bin`), and an embedding application has
//! its own.
//!
//! # A gateway inside an application's own server
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use gatekit_gateway::{Gateway, GatewayOptions, Source, TranslateOptions, Wiring};
//!
//! let mut gateway = Gateway::embedded(GatewayOptions::default());
//! let source = Source::Dirs(vec!["./manifests".into()]);
//! let mut wiring = Wiring::start(&mut gateway, source, TranslateOptions::default()).await?;
//! // Port 8080's routes, as a tower service for any hyper or axum server.
//! let service = wiring.service(8080);
//! tokio::spawn(async move { wiring.serve(&mut gateway, std::future::pending()).await });
//! # drop(service);
//! # Ok(()) }
//! ```
//!
//! To bind the ports the manifests name instead, build the gateway with
//! [`Gateway::new`]; at shutdown, close and drain its [`Listeners`], then
//! [`Wiring::stop`].

pub mod access_log;
mod config_dump;
mod gateway;
mod listener;
pub mod metrics;
mod readiness;
mod settings;
#[cfg(feature = "otel")]
pub mod trace;
mod validate;
pub mod wiring;

pub use crate::access_log::{
    AccessLogField, AccessLogFormat, AccessLogLayer, AccessLogSettings, AccessLogSink,
};
pub use crate::config_dump::ConfigDump;
pub use crate::gateway::Gateway;
pub use crate::listener::{
    DrainOutcome, ListenError, ListenerSettings, Listeners, PortOptions, Transport,
};
pub use crate::metrics::{
    AccessMetrics, AccessOutcome, BodyBytes, LabelSource, Metrics, MetricsLayer, MetricsService,
    NO_BACKEND, RequestMetrics, RouteFallback,
};
pub use crate::readiness::{Phase, Readiness};
pub use crate::settings::{
    DEFAULT_DRAIN_TIMEOUT, EscapedSlashesSetting, GatewayOptions, Http1CodecSetting, Limits,
    PathSettings, RedisFallback, RedisSettings, TraceSettings, TrafficDefaults,
    deserialize_duration,
};
pub use crate::validate::validate;
pub use crate::wiring::{PortService, Source, Wiring, WiringError, on_worker_park};
pub use gatekit_k8s::TranslateOptions;
