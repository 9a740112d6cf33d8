//! `gatekit demo`: a working gateway in one command, with no files and no cluster.
//!
//! Starts three in-process backends (`blue`, `green`, `canary`: hyper servers on
//! 127.0.0.1 ephemeral ports, each answering with its name), generates Gateway API
//! manifests for them in memory ([`manifests`]) and serves them through exactly the
//! wiring `gatekit run` uses ([`Wiring`] from [`Source::Documents`]):
//!
//! - a Gateway `demo` with an HTTP listener on 127.0.0.1:8080;
//! - an HTTPRoute `demo` whose first rule sends requests with `x-canary: true` to the
//!   `canary` Service, and whose second rule splits everything else 70/20/10 across
//!   `blue`, `green` and `canary`;
//! - a Service and an EndpointSlice per backend;
//! - a BackendPolicy giving all three an active HTTP health check (`GET /healthz` every
//!   2 s) and least-request balancing.
//!
//! `gatekit demo --write DIR` writes the same manifests to files ([`write_manifests`])
//! and runs only the backends ([`Backends`]), so that `gatekit run --resources DIR`
//! serves exactly what the demo serves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gatekit_core::Body;
use http::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::{DrainOutcome, Process, ProcessError, Settings, TranslateOptions};
use gatekit_gateway::{Source, Wiring, WiringError};

/// The demo backends' names, in manifest order.
pub const BACKENDS: [&str; 3] = ["blue", "green", "canary"];

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A demo backend could not listen.
    #[error("cannot start a demo backend: {0}")]
    Backend(#[source] std::io::Error),
    /// The process (admin server) could not start.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The manifests could not be served (typically: the gateway port is in use).
    #[error(transparent)]
    Wiring(#[from] WiringError),
    /// The manifests could not be written (`gatekit demo --write`).
    #[error("cannot write the demo manifests to {path}: {source}")]
    #[non_exhaustive]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The demo manifests for a gateway on `port` in front of backends at `addrs` (in
/// [`BACKENDS`] order), as `(source name, YAML)`.
pub fn manifests(port: u16, addrs: [SocketAddr; 3]) -> Vec<(String, String)> {
    let mut docs = vec![(
        "demo/gateway.yaml".to_owned(),
        format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: demo, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: {port}, protocol: HTTP }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: demo, namespace: default }}
spec:
  parentRefs: [{{ name: demo }}]
  rules:
  - name: canary-header
    matches: [{{ headers: [{{ name: x-canary, value: "true" }}] }}]
    backendRefs: [{{ name: canary, port: 80 }}]
  - name: weighted
    backendRefs:
    - {{ name: blue, port: 80, weight: 70 }}
    - {{ name: green, port: 80, weight: 20 }}
    - {{ name: canary, port: 80, weight: 10 }}
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: {{ name: demo, namespace: default }}
spec:
  targetRefs: [{{ kind: Service, name: blue }}, {{ kind: Service, name: green }}, {{ kind: Service, name: canary }}]
  loadBalancer: {{ algorithm: least-request }}
  healthCheck:
    active: {{ type: http, path: /healthz, interval: 2s, timeout: 1s }}
"#
        ),
    )];
    for (name, addr) in BACKENDS.iter().zip(addrs) {
        docs.push((
            format!("demo/{name}.yaml"),
            format!(
                r#"apiVersion: v1
kind: Service
metadata: {{ name: {name}, namespace: default }}
spec:
  ports: [{{ name: http, port: 80 }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: {name}-1, namespace: default, labels: {{ kubernetes.io/service-name: {name} }} }}
addressType: IPv4
ports: [{{ name: http, port: {port} }}]
endpoints: [{{ addresses: ["{ip}"], conditions: {{ ready: true }} }}]
"#,
                port = addr.port(),
                ip = addr.ip(),
            ),
        ));
    }
    docs
}

/// Writes [`manifests`] into `dir` (created if missing), one file per source name
/// (`gateway.yaml`, `blue.yaml`, ...), replacing files of the same names. Returns the
/// files written.
///
/// # Errors
///
/// [`DemoError::Write`] naming the path that could not be created or written.
pub fn write_manifests(
    dir: &Path,
    port: u16,
    addrs: [SocketAddr; 3],
) -> Result<Vec<PathBuf>, DemoError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| DemoError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    let mut written = Vec::new();
    for (name, yaml) in manifests(port, addrs) {
        let file = name.strip_prefix("demo/").unwrap_or(&name);
        let path = dir.join(file);
        std::fs::write(&path, yaml).map_err(write_error(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The three demo backends, serving until dropped.
#[derive(Debug)]
pub struct Backends {
    addrs: [SocketAddr; 3],
    _stops: Vec<oneshot::Sender<()>>,
}

impl Backends {
    /// Starts `blue`, `green` and `canary` on 127.0.0.1 ephemeral ports.
    ///
    /// # Errors
    ///
    /// [`DemoError::Backend`] when a socket cannot be bound.
    pub async fn start() -> Result<Self, DemoError> {
        let mut stops = Vec::new();
        let mut addrs = Vec::new();
        for name in BACKENDS {
            let (addr, stop) = backend(name).await.map_err(DemoError::Backend)?;
            addrs.push(addr);
            stops.push(stop);
        }
        Ok(Self {
            addrs: [addrs[0], addrs[1], addrs[2]],
            _stops: stops,
        })
    }

    /// Their addresses, in [`BACKENDS`] order.
    pub fn addrs(&self) -> [SocketAddr; 3] {
        self.addrs
    }
}

/// What to do after `gatekit demo --write DIR` wrote `files` for a gateway on `port`.
pub fn write_instructions(dir: &Path, port: u16, files: &[PathBuf]) -> String {
    let list: Vec<String> = files.iter().map(|f| format!("  {}", f.display())).collect();
    format!(
        "gatekit demo: wrote the demo's manifests:
{list}
The backends (blue, green, canary) keep running here.

Next step, in another terminal:
  gatekit run --resources {dir}
  curl -s http://127.0.0.1:{port}/

Ctrl-C to stop the backends.
",
        list = list.join("\n"),
        dir = dir.display(),
    )
}

/// A running demo: backends, process and wiring.
#[derive(Debug)]
pub struct Demo {
    process: Process,
    wiring: Wiring,
    port: u16,
    _backends: Backends,
}

impl Demo {
    /// Starts the backends, the process (admin server per `settings`) and a gateway on
    /// 127.0.0.1:`port`.
    ///
    /// # Errors
    ///
    /// [`DemoError`] when a socket cannot be bound.
    pub async fn start(settings: Settings, port: u16) -> Result<Self, DemoError> {
        let backends = Backends::start().await?;
        let mut process = Process::start(settings, [127, 0, 0, 1].into()).await?;
        let source = Source::Documents(manifests(port, backends.addrs()));
        let wiring =
            match Wiring::start(process.gateway_mut(), source, TranslateOptions::default()).await {
                Ok(wiring) => wiring,
                Err(error) => {
                    process.shutdown().await;
                    return Err(error.into());
                }
            };
        Ok(Self {
            process,
            wiring,
            port,
            _backends: backends,
        })
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.process.admin_addr()
    }

    /// What to try, for a person at a terminal.
    pub fn instructions(&self) -> String {
        let gw = format!("http://127.0.0.1:{}", self.port);
        let admin = self.admin_addr();
        format!(
            "gatekit demo: a gateway on {gw} in front of three backends (blue, green, canary).

Try:
  curl -s {gw}/                              # 70% blue, 20% green, 10% canary
  for i in $(seq 20); do curl -s {gw}/; done | sort | uniq -c
  curl -s -H 'x-canary: true' {gw}/          # always canary (header match)
  curl -s http://{admin}/config              # served routes, upstreams, endpoint health
  curl -s http://{admin}/metrics             # Prometheus metrics by route and backend
  curl -s http://{admin}/fleet               # the replicas (null without a cluster)

Next step, the same gateway from files you can edit (stop this demo first):
  gatekit demo --write ./gatekit-demo --port {port}   # writes the manifests, runs the backends
  gatekit run --resources ./gatekit-demo            # serves them (in another terminal)

Ctrl-C to stop.
",
            port = self.port,
        )
    }

    /// Serves until `shutdown` completes, then drains and stops.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) -> DrainOutcome {
        self.process.serve(self.wiring, shutdown).await
    }
}

/// A demo backend: `GET /healthz` answers `ok`, everything else `<name>\n`.
async fn backend(name: &'static str) -> std::io::Result<(SocketAddr, oneshot::Sender<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let svc = tower::service_fn(move |req: Request<Body>| async move {
        let body = if req.uri().path() == "/healthz" {
            "ok\n".to_owned()
        } else {
            format!("{name}\n")
        };
        let mut rsp = Response::new(Body::full(body));
        *rsp.status_mut() = StatusCode::OK;
        rsp.headers_mut()
            .insert("x-backend", http::HeaderValue::from_static(name));
        Ok::<_, Infallible>(rsp)
    });
    tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        if let Err(error) = gatekit_core::server::serve(listener, svc, stopped).await {
            tracing::error!(%error, backend = name, "demo backend failed");
        }
    });
    Ok((addr, stop))
}
