//! The process: admin server, listeners, readiness and the shutdown sequence (see
//! [`Process`]).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use gatekit_gateway::{
    ConfigDump, DrainOutcome, Gateway, Listeners, Metrics, Phase, Readiness, Wiring,
};

use crate::Settings;
use crate::admin::{AdminService, AdminToken, AdminTokenError};

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The admin address could not be bound.
    #[error("cannot serve the admin API on {addr}: {source}")]
    #[non_exhaustive]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The admin settings would publish `/config` and `/fleet` unprotected, or name a
    /// removed field.
    #[error("{field}: {reason}")]
    #[non_exhaustive]
    AdminSettings {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The admin token could not be read.
    #[error(transparent)]
    AdminToken(#[from] AdminTokenError),
}

/// One running admin listener.
#[derive(Debug)]
struct AdminServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl AdminServer {
    async fn start(
        addr: SocketAddr,
        service: AdminService,
        what: &str,
    ) -> Result<Self, ProcessError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ProcessError::AdminBind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ProcessError::AdminBind { addr, source })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(error) = crate::admin::serve_admin(listener, service, stopped).await {
                tracing::error!(%error, "admin server failed");
            }
        });
        tracing::info!(addr = %bound, "{what} listening");
        Ok(Self {
            addr: bound,
            stop,
            task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// A running gateway process: the admin server is up over the [`Gateway`]'s handles
/// (its readiness, metrics and published `/config` and `/fleet`), listeners can be
/// added, and [`serve`](Self::serve) runs a [`Wiring`] on the gateway
/// ([`gateway_mut`](Self::gateway_mut)) until shutdown.
///
/// # Shutdown sequence
///
/// On the shutdown signal (SIGTERM or SIGINT in the binary; any future in tests):
///
/// 1. [`Phase::NotReady`]: `/readyz` answers 503, so load balancers and Kubernetes stop
///    sending new connections;
/// 2. every listener stops accepting and closes its socket (new connections are refused);
///    [`Phase::Draining`];
/// 3. open connections are asked to finish (HTTP/1 closes after the in-flight response,
///    HTTP/2 sends GOAWAY) and waited for up to the drain timeout, then dropped;
/// 4. [`Phase::Stopped`]; the admin and probe servers stop; the caller exits.
///
/// The admin and probe servers keep answering during the drain, so `/readyz` shows
/// 503 and `/metrics` shows the connections going down.
#[derive(Debug)]
pub struct Process {
    settings: Settings,
    gateway: Gateway,
    admin: AdminServer,
    probes: Option<AdminServer>,
}

impl Process {
    /// Serves the admin API on `settings.admin.address` (with the bearer token of
    /// `settings.admin.token_file`, if any), the probes and metrics alone on
    /// `settings.admin.probe_address`, if set, and prepares listeners binding on
    /// `bind`. The process starts not ready ([`Phase::Starting`]).
    ///
    /// # Errors
    ///
    /// [`ProcessError::AdminSettings`] if the operational endpoints would be served
    /// off loopback without a token, [`ProcessError::AdminToken`] if the token file
    /// cannot be read, [`ProcessError::AdminBind`] if an admin address cannot be bound.
    pub async fn start(settings: Settings, bind: IpAddr) -> Result<Self, ProcessError> {
        settings
            .admin
            .check()
            .map_err(|(field, reason)| ProcessError::AdminSettings { field, reason })?;
        let token = match &settings.admin.token_file {
            Some(path) => Some(AdminToken::from_file(path)?),
            None => None,
        };
        let gateway = Gateway::new(settings.gateway_options(), bind);
        let mut service = AdminService::with_fleet(
            gateway.readiness().clone(),
            gateway.metrics().clone(),
            gateway.config_dump().clone(),
            gateway.fleet_dump().clone(),
        );
        if let Some(token) = token {
            service = service.with_token(token);
        }
        let probes = match settings.admin.probe_address {
            Some(addr) => Some(AdminServer::start(addr, service.probes(), "probe API").await?),
            None => None,
        };
        let admin = match AdminServer::start(settings.admin.address, service, "admin API").await {
            Ok(admin) => admin,
            Err(error) => {
                if let Some(probes) = probes {
                    probes.stop().await;
                }
                return Err(error);
            }
        };
        Ok(Self {
            settings,
            gateway,
            admin,
            probes,
        })
    }

    /// The settings the process runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The gateway the admin server reports on.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The gateway, to start a [`Wiring`] on.
    pub fn gateway_mut(&mut self) -> &mut Gateway {
        &mut self.gateway
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        self.gateway.metrics()
    }

    /// The readiness handle.
    pub fn readiness(&self) -> &Readiness {
        self.gateway.readiness()
    }

    /// What `/config` serves.
    pub fn config_dump(&self) -> &ConfigDump {
        self.gateway.config_dump()
    }

    /// The admin server's bound address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.addr
    }

    /// The probe server's bound address (`/healthz`, `/readyz`, `/metrics` only), if
    /// one was configured.
    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.probes.as_ref().map(|p| p.addr)
    }

    /// The gateway listeners.
    pub fn listeners(&self) -> &Listeners {
        self.gateway.listeners()
    }

    /// The gateway listeners, to add or remove ports.
    pub fn listeners_mut(&mut self) -> &mut Listeners {
        self.gateway.listeners_mut()
    }

    /// Runs `wiring` (reloads) until `shutdown` completes, then the
    /// [shutdown sequence](Process#shutdown-sequence), then [`Wiring::stop`].
    pub async fn serve(
        mut self,
        mut wiring: Wiring,
        shutdown: impl Future<Output = ()>,
    ) -> DrainOutcome {
        wiring.serve(&mut self.gateway, shutdown).await;
        let outcome = self.shutdown().await;
        wiring.stop().await;
        outcome
    }

    /// Serves until `shutdown` completes, then runs the [shutdown sequence](Process#shutdown-sequence).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> DrainOutcome {
        shutdown.await;
        self.shutdown().await
    }

    /// Runs the [shutdown sequence](Process#shutdown-sequence) now.
    pub async fn shutdown(mut self) -> DrainOutcome {
        tracing::info!("shutting down: not ready");
        self.gateway.readiness().advance(Phase::NotReady);
        if !self.settings.shutdown_delay.is_zero() {
            // Still serving: clients are told to go elsewhere (/readyz fails) before
            // the listeners close under them.
            tracing::info!(delay = ?self.settings.shutdown_delay, "waiting before closing listeners");
            tokio::time::sleep(self.settings.shutdown_delay).await;
        }
        self.gateway.listeners_mut().close().await;
        self.gateway.readiness().advance(Phase::Draining);
        let readiness = self.gateway.readiness().clone();
        let drain_timeout = self.settings.drain_timeout;
        #[cfg(feature = "otel")]
        let traces = self.gateway.traces().cloned();
        let outcome = self.gateway.into_listeners().drain(drain_timeout).await;
        // The drained requests' spans too.
        #[cfg(feature = "otel")]
        if let Some(traces) = traces {
            traces.shutdown().await;
        }
        match outcome {
            DrainOutcome::Complete => tracing::info!("drained"),
            DrainOutcome::TimedOut { dropped } => {
                tracing::warn!(dropped, "drain timed out");
            }
            _ => tracing::info!(?outcome, "drain ended"),
        }
        readiness.advance(Phase::Stopped);
        self.admin.stop().await;
        if let Some(probes) = self.probes {
            probes.stop().await;
        }
        outcome
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// The open-files limits before and after [`raise_nofile_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimits {
    /// The soft limit at start.
    pub soft_before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the ceiling for the soft one).
    pub hard: u64,
}

/// Raises the open-files soft limit to the hard limit and logs both: every connection is a
/// file descriptor, and the usual soft limit of 1024 takes a gateway down long before its
/// memory or CPU would.
///
/// # Errors
///
/// The I/O error of reading or setting the limit.
pub fn raise_nofile_limit() -> std::io::Result<NofileLimits> {
    let (soft_before, hard) = rlimit::Resource::NOFILE.get()?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    tracing::info!(soft_before, soft, hard, "open files limit");
    Ok(NofileLimits {
        soft_before,
        soft,
        hard,
    })
}
