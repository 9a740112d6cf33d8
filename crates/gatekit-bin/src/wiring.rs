//! The seam where Kubernetes manifests become served configuration.
//!
//! `gatekit run` starts a [`Process`] (admin server up, not ready, no listeners) and
//! calls [`start`]. The wiring then:
//!
//! 1. loads the manifests under `resources` and translates them (gatekit-k8s);
//! 2. for each port of the Gateway listeners, calls
//!    [`Listeners::add`](crate::Listeners::add) with [`Transport::Plain`](crate::Transport)
//!    or [`Transport::Tls`](crate::Transport) (a `CertStore` built from the Secrets) and
//!    the port's router, wrapped in a [`MetricsLayer`](crate::MetricsLayer);
//! 3. publishes the snapshot and conditions with
//!    [`ConfigDump::publish`](crate::ConfigDump::publish), records
//!    [`Metrics::record_reload`](crate::Metrics::record_reload) and
//!    [`Metrics::set_config_generation`](crate::Metrics::set_config_generation);
//! 4. calls [`Readiness::mark_served`](crate::Readiness::mark_served);
//! 5. spawns the file watcher that repeats 1–3 on change (swapping route tables and
//!    certificate sets in place; adding or removing ports through the listeners).
//!
//! Until that lands, [`start`] reports [`WiringError::NotWired`].

use std::path::PathBuf;

use crate::Process;

/// Why the configuration could not be wired.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WiringError {
    /// The Kubernetes translation is not wired into the binary yet.
    #[error(
        "`gatekit {0}` needs the Gateway API translation, which is not wired into this build yet; the process half (admin API, listeners, TLS, draining) is ready"
    )]
    NotWired(&'static str),
}

/// Loads `resources`, serves them on `process` and keeps them up to date.
///
/// # Errors
///
/// [`WiringError::NotWired`] for now.
pub(crate) async fn start(process: &mut Process, resources: &[PathBuf]) -> Result<(), WiringError> {
    let _ = (process, resources);
    Err(WiringError::NotWired("run"))
}
