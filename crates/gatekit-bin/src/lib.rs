//! gatekit-bin: the process half of the `gatekit` binary.
//!
//! The command line ([`Cli`]), process settings ([`Settings`], from `--config
//! gatekit.yaml`), the admin server ([`AdminService`]: `/healthz`, `/readyz`,
//! `/metrics`, `/config`, `/fleet`), logging, the demo, and the process life cycle
//! ([`Process`]: graceful drain on SIGTERM/SIGINT, the open-files limit).
//!
//! The gateway itself — manifests to hot-reloaded listeners, per-route metrics,
//! `/config` — is `gatekit_gateway`'s ([`Wiring`], [`Listeners`], [`Metrics`]); its
//! main types are re-exported here.
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
mod logging;
mod process;
mod settings;

pub use crate::admin::{AdminService, AdminToken, AdminTokenError, serve_admin};
pub use crate::cli::{Cli, Command, DemoArgs, FleetArgs, RunArgs, ValidateArgs, main, run};
pub use crate::logging::init as init_logging;
pub use crate::process::{
    NofileLimits, Process, ProcessError, raise_nofile_limit, shutdown_signal,
};
pub use crate::settings::{AdminSettings, LogFormat, LogSettings, Settings, SettingsError};
pub use gatekit_gateway::{
    ConfigDump, DrainOutcome, EscapedSlashesSetting, LabelSource, Limits, ListenError,
    ListenerSettings, Listeners, Metrics, MetricsLayer, MetricsService, PathSettings, Phase,
    Readiness, RequestMetrics, Source, TranslateOptions, Transport, Wiring, WiringError, validate,
};
