//! The command line: `gatekit run | validate | demo | version`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::{Process, Settings, logging, process};

const EXAMPLES: &str = "\
Examples:
  gatekit demo
      Start three demo backends and a gateway on 127.0.0.1:8080, and print curl commands.
  gatekit demo --write ./gatekit-demo && gatekit run --resources ./gatekit-demo
      Write the demo's manifests (the backends keep running), then serve them from files.
  gatekit run --resources ./manifests
      Serve the Gateways, HTTPRoutes, Services and EndpointSlices found in ./manifests.
  gatekit run --resources ./gateway --resources ./apps --config gatekit.yaml --bind 0.0.0.0
      Several directories, process settings from a file, listeners on every interface.
  gatekit run --config gatekit.yaml
      With a `kubernetes:` section in gatekit.yaml: serve Gateway API resources from one
      or more clusters (see docs/kubernetes.md).
  gatekit fleet --config gatekit.yaml
      List the live replicas of the fleet (their membership Leases) and any drift.
  gatekit validate ./manifests
      Check manifests and print each resource's conditions; exits non-zero on errors.
  gatekit validate --features
      List the Gateway API conformance features, supported or not, and their tests.

Admin API (admin.address in --config; 127.0.0.1:9901 by default):
  /healthz   200 while the process runs (liveness)
  /readyz    200 once the configuration serves, 503 before and while draining
  /metrics   Prometheus/OpenMetrics text
  /config    the served routes, upstreams, endpoint health and last error
  /fleet     the live replicas and configuration drift (null without a cluster)
/config and /fleet need admin.tokenFile (a bearer token) off loopback; --probe-addr
(admin.probeAddress) serves /healthz, /readyz and /metrics alone, for probes and scrapes.

Environment:
  RUST_LOG   log filter (tracing-subscriber EnvFilter syntax), e.g. RUST_LOG=info,
             RUST_LOG=gatekit=debug, RUST_LOG=gatekit::access=info; default: info";

/// gatekit: a Kubernetes-aware API gateway. Serves Gateway API manifests from disk,
/// with no cluster.
#[derive(Debug, Parser)]
#[command(
    name = "gatekit",
    version,
    about = "A Kubernetes-aware API gateway that serves Gateway API manifests from disk, no cluster needed",
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Run a gateway from Gateway API manifests on disk
    ///
    /// Serves the Gateway API resources (Gateway, ListenerSet, HTTPRoute, GRPCRoute,
    /// TLSRoute, TCPRoute, UDPRoute, BackendTLSPolicy, ReferenceGrant), Services,
    /// EndpointSlices, Secrets, ConfigMaps and policies (gatekit's, Envoy Gateway's
    /// BackendTrafficPolicy and ClientTrafficPolicy) found in one or more directories, and
    /// reloads them when they change.
    #[command(
        after_help = "Stops gracefully on SIGTERM or SIGINT: not ready, stop accepting, drain in-flight requests (drainTimeout), exit 0."
    )]
    Run(RunArgs),
    /// Check manifests without serving them
    ///
    /// Prints readable errors and each resource's conditions; exits non-zero when
    /// something is wrong.
    Validate(ValidateArgs),
    /// List the live gateway replicas registered in the cluster
    ///
    /// Reads the fleet's membership Leases: each replica with the configuration
    /// generation and hash it serves. Exits 3 when replicas that read the same input
    /// serve different configurations (drift).
    Fleet(FleetArgs),
    /// Start a demo gateway on 127.0.0.1:8080 and print curl commands to try
    ///
    /// Starts three in-process demo backends and a gateway with a weighted split, a header
    /// match and health checks. With --write DIR: writes the demo's manifests to DIR
    /// and runs only the backends, for `gatekit run --resources DIR`.
    Demo(DemoArgs),
    /// Print the version
    Version,
}

/// `gatekit run`.
#[derive(Debug, Args)]
#[non_exhaustive]
pub struct RunArgs {
    /// A directory of manifests (*.yaml, *.yml, *.json; multi-document YAML allowed);
    /// repeat for several
    #[arg(long = "resources", value_name = "DIR")]
    pub resources: Vec<PathBuf>,
    /// Process settings in YAML: admin address, log format, limits, drain timeout
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The address Gateway listeners bind on (their ports come from the Gateways)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Also serve /healthz, /readyz and /metrics alone on this address, e.g.
    /// 0.0.0.0:9902 for the kubelet and Prometheus (overrides admin.probeAddress)
    #[arg(long, value_name = "ADDR:PORT")]
    pub probe_addr: Option<SocketAddr>,
}

/// `gatekit demo`.
#[derive(Debug, Args)]
#[non_exhaustive]
pub struct DemoArgs {
    /// The gateway's port on 127.0.0.1
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// The admin API's port on 127.0.0.1
    #[arg(long, value_name = "PORT", default_value_t = 9901)]
    pub admin_port: u16,
    /// Write the demo's manifests to DIR and run only the backends; serve the
    /// manifests with `gatekit run --resources DIR`
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

/// `gatekit validate`.
#[derive(Debug, Args)]
#[non_exhaustive]
pub struct ValidateArgs {
    /// Directories of manifests to check
    #[arg(value_name = "DIR", required_unless_present = "features")]
    pub dirs: Vec<PathBuf>,
    /// Print the Gateway API conformance features instead (supported or not, with the
    /// tests that prove each; the list behind GatewayClass `status.supportedFeatures`)
    #[arg(long, conflicts_with_all = ["dirs", "config"])]
    pub features: bool,
    /// The process settings `gatekit run` would use (GatewayClass, global namespaces,
    /// `redis:` for Global rate limits)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Exit status for a failure the user must fix (bad settings, unreadable directory,
/// runtime error).
/// `gatekit fleet` arguments.
#[derive(Debug, Args)]
#[non_exhaustive]
pub struct FleetArgs {
    /// Process settings with a `kubernetes` section (the Leases are read from its local
    /// cluster, else its first config cluster)
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The namespace of the Leases (default: the replica identity's, POD_NAMESPACE, or
    /// `gatekit`)
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

const EXIT_FAILURE: u8 = 1;
/// `gatekit fleet`: drift found.
const EXIT_DRIFT: u8 = 3;

/// Runs a parsed command line to its exit status.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Version => {
            println!("gatekit {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Run(args) => block_on(true, run(args, process::shutdown_signal())),
        Command::Validate(args) => validate(&args),
        Command::Fleet(args) => block_on(false, fleet(&args)),
        Command::Demo(args) => block_on(true, demo(args, process::shutdown_signal())),
    }
}

/// Runs `command` on a new tokio runtime (multi-threaded for serving, current-thread
/// for one-shot commands).
fn block_on(multi_thread: bool, command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    let mut builder = if multi_thread {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.on_thread_park(gatekit_gateway::on_worker_park);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(command),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `gatekit run`, until `shutdown` completes: loads settings, sets up logging and the
/// open-files limit, starts the process and hands it to the configuration wiring.
pub async fn run(args: RunArgs, shutdown: impl std::future::Future<Output = ()>) -> ExitCode {
    let mut shutdown = std::pin::pin!(shutdown);
    if install_early(shutdown.as_mut()).await {
        return ExitCode::SUCCESS;
    }
    let mut settings = match load_settings(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if args.probe_addr.is_some() {
        settings.admin.probe_address = args.probe_addr;
    }
    let kubernetes = settings.kubernetes.clone();
    match (&kubernetes, args.resources.is_empty()) {
        (Some(_), false) => {
            eprintln!(
                "error: --resources and a `kubernetes` section in the settings are exclusive; choose one source"
            );
            return ExitCode::from(EXIT_FAILURE);
        }
        (None, true) => {
            eprintln!(
                "error: nothing to serve: give --resources DIR, or a `kubernetes` section in --config"
            );
            return ExitCode::from(EXIT_FAILURE);
        }
        _ => {}
    }
    if let Err(error) = check_dirs(&args.resources) {
        eprintln!("error: {error}");
        return ExitCode::from(EXIT_FAILURE);
    }
    logging::init(settings.log.format);
    let options = settings.translate_options();
    match process::raise_nofile_limit() {
        Ok(limits) => {
            let max = u64::try_from(settings.limits.max_connections).unwrap_or(u64::MAX);
            if limits.soft < max {
                tracing::warn!(
                    open_files = limits.soft,
                    max_connections = settings.limits.max_connections,
                    "the open files limit is below limits.maxConnections; accepts will fail before the connection limit is reached"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
    let mut process = match Process::start(settings, args.bind).await {
        Ok(process) => process,
        Err(error) => {
            report(&error);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let source = match &kubernetes {
        Some(kubernetes) => match gatekit_k8s::Provider::start(kubernetes).await {
            Ok(provider) => gatekit_gateway::Source::Kubernetes(std::sync::Arc::new(provider)),
            Err(error) => {
                report(&error);
                process.shutdown().await;
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        None => gatekit_gateway::Source::Dirs(args.resources.clone()),
    };
    match gatekit_gateway::Wiring::start(process.gateway_mut(), source, options).await {
        Ok(wiring) => {
            process.serve(wiring, shutdown).await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            report(&error);
            process.shutdown().await;
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Polls `shutdown` once, so a signal future installs its handlers before start-up (a
/// SIGTERM while loading manifests then stops gracefully instead of killing the
/// process). Returns whether it already completed.
async fn install_early(
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> bool {
    std::future::poll_fn(|cx| std::task::Poll::Ready(shutdown.as_mut().poll(cx).is_ready())).await
}

/// `gatekit demo` until `shutdown` completes.
async fn demo(args: DemoArgs, shutdown: impl std::future::Future<Output = ()>) -> ExitCode {
    let mut shutdown = std::pin::pin!(shutdown);
    if install_early(shutdown.as_mut()).await {
        return ExitCode::SUCCESS;
    }
    let mut settings = Settings::default();
    settings.admin.address = SocketAddr::from(([127, 0, 0, 1], args.admin_port));
    logging::init(settings.log.format);
    if let Some(dir) = &args.write {
        return demo_write(dir, args.port, shutdown).await;
    }
    match crate::demo::Demo::start(settings, args.port).await {
        Ok(demo) => {
            println!("{}", demo.instructions());
            demo.serve(shutdown).await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            report(&error);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `gatekit demo --write DIR`: the backends, and their manifests in `dir`.
async fn demo_write(
    dir: &std::path::Path,
    port: u16,
    shutdown: impl std::future::Future<Output = ()>,
) -> ExitCode {
    let started = match crate::demo::Backends::start().await {
        Ok(backends) => {
            crate::demo::write_manifests(dir, port, backends.addrs()).map(|files| (backends, files))
        }
        Err(error) => Err(error),
    };
    match started {
        Ok((backends, files)) => {
            println!("{}", crate::demo::write_instructions(dir, port, &files));
            shutdown.await;
            drop(backends);
            ExitCode::SUCCESS
        }
        Err(error) => {
            report(&error);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn fleet(args: &FleetArgs) -> ExitCode {
    let settings = match Settings::load(&args.config) {
        Ok(settings) => settings,
        Err(error) => {
            report(&error);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let Some(kubernetes) = settings.kubernetes else {
        eprintln!(
            "error: {} has no `kubernetes` section: there is no fleet without a cluster",
            args.config.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    };
    let cluster = kubernetes
        .local_cluster
        .as_deref()
        .and_then(|name| kubernetes.clusters.iter().find(|c| c.name == name))
        .or_else(|| {
            kubernetes
                .clusters
                .iter()
                .find(|c| c.has_role(gatekit_k8s::Role::Config))
        });
    let Some(cluster) = cluster else {
        eprintln!("error: no config cluster in the settings");
        return ExitCode::from(EXIT_FAILURE);
    };
    let client = match cluster.client().await {
        Ok(client) => client,
        Err(error) => {
            report(&error);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let namespace = args
        .namespace
        .clone()
        .or_else(|| kubernetes.replica.as_ref().map(|r| r.namespace.clone()))
        .or_else(|| gatekit_k8s::provider::ReplicaIdentity::from_env().map(|r| r.namespace))
        .unwrap_or_else(|| "gatekit".to_owned());
    match gatekit_k8s::FleetView::load(client, &namespace, kubernetes.fleet()).await {
        Ok(view) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).unwrap_or_else(|_| "null".to_owned())
                );
            } else {
                print!("{view}");
            }
            if view.drift().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DRIFT)
            }
        }
        Err(error) => {
            report(&error);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn validate(args: &ValidateArgs) -> ExitCode {
    if args.features {
        print!("{}", gatekit_k8s::features::listing());
        return ExitCode::SUCCESS;
    }
    if let Err(error) = check_dirs(&args.dirs) {
        eprintln!("error: {error}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let settings = match load_settings(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if gatekit_gateway::validate(
        &args.dirs,
        &settings.translate_options(),
        &mut std::io::stdout(),
    ) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// The settings file, or the defaults without one; a bad file is reported.
fn load_settings(config: Option<&std::path::Path>) -> Result<Settings, ExitCode> {
    match config {
        Some(path) => Settings::load(path).map_err(|error| {
            report(&error);
            ExitCode::from(EXIT_FAILURE)
        }),
        None => Ok(Settings::default()),
    }
}

fn check_dirs(dirs: &[PathBuf]) -> Result<(), String> {
    for dir in dirs {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", dir.display())),
            Err(error) => return Err(format!("cannot read {}: {error}", dir.display())),
        }
    }
    Ok(())
}

/// Prints an error and its causes on stderr.
fn report(error: &dyn std::error::Error) {
    eprintln!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[tokio::test]
    async fn run_needs_exactly_one_source() {
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join("gatekit.yaml");
        std::fs::write(
            &settings,
            "kubernetes:\n  clusters:\n    - { name: a, server: \"http://127.0.0.1:1\" }\n",
        )
        .unwrap();
        let both = Cli::try_parse_from([
            "gatekit".as_ref(),
            "run".as_ref(),
            "--resources".as_ref(),
            dir.path().as_os_str(),
            "--config".as_ref(),
            settings.as_os_str(),
        ])
        .unwrap();
        let none = Cli::try_parse_from(["gatekit", "run"]).unwrap();
        for cli in [both, none] {
            let Command::Run(args) = cli.command else {
                panic!("not run")
            };
            let code = run(args, std::future::pending()).await;
            assert_eq!(
                format!("{code:?}"),
                format!("{:?}", ExitCode::from(EXIT_FAILURE))
            );
        }
    }

    #[test]
    fn run_takes_repeated_resources() {
        let cli = Cli::try_parse_from([
            "gatekit",
            "run",
            "--resources",
            "a",
            "--resources",
            "b",
            "--bind",
            "0.0.0.0",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.resources, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(args.bind, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert!(
            Cli::try_parse_from(["gatekit", "run"]).is_ok(),
            "the source may come from the settings' kubernetes section"
        );
        assert!(
            Cli::try_parse_from(["gatekit", "validate"]).is_err(),
            "a DIR is required"
        );
    }
}
