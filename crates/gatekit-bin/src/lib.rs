//! gatekit-bin: the process half of the `gatekit` binary.
//!
//! Everything the binary does that does not depend on Kubernetes: the command line
//! ([`Cli`]), process settings ([`Settings`], from `--config gatekit.yaml`), the admin
//! server ([`AdminService`]: `/healthz`, `/readyz`, `/metrics`, `/config`), Prometheus
//! metrics ([`Metrics`], [`MetricsLayer`]), gateway listeners ([`Listeners`]: plain or TLS
//! by SNI, connection limits, header deadlines), and the process life cycle ([`Process`]:
//! readiness, graceful drain on SIGTERM/SIGINT, the open-files limit).
//!
//! The translation of manifests into route tables and upstreams is plugged in by the
//! `wiring` module (see `gatekit run`).
//!
//! # Serving a service by hand
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use gatekit_bin::{Process, Settings, Transport, MetricsLayer};
//! use tower::Layer;
//!
//! let mut process = Process::start(Settings::default(), "127.0.0.1".parse()?).await?;
//! let handle = process.metrics().request_metrics("default/hello", "inline");
//! let svc = MetricsLayer::new(handle).layer(tower::service_fn(|_req| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(gatekit_core::Body::full("hi")))
//! }));
//! process.listeners_mut().add(8080, Transport::Plain, svc).await?;
//! process.readiness().mark_served();
//! process.run_until(gatekit_bin::shutdown_signal()).await;
//! # Ok(()) }
//! ```

mod admin;
mod cli;
pub mod demo;
mod listener;
mod logging;
pub mod metrics;
mod process;
mod settings;
mod validate;
pub mod wiring;

pub use crate::admin::{AdminService, ConfigDump, Phase, Readiness, serve_admin};
pub use crate::cli::{Cli, Command, FleetArgs, RunArgs, ValidateArgs, main, run};
pub use crate::listener::{DrainOutcome, ListenError, ListenerSettings, Listeners, Transport};
pub use crate::logging::init as init_logging;
pub use crate::metrics::{LabelSource, Metrics, MetricsLayer, MetricsService, RequestMetrics};
pub use crate::process::{
    NofileLimits, Process, ProcessError, raise_nofile_limit, shutdown_signal,
};
pub use crate::settings::{
    AdminSettings, EscapedSlashesSetting, Limits, LogFormat, LogSettings, PathSettings, Settings,
    SettingsError,
};
pub use crate::validate::validate;
pub use crate::wiring::{Source, Wiring, WiringError};
pub use gatekit_k8s::TranslateOptions;
