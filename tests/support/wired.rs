//! The wired gateway (`gatekit run`'s library entry point) on a temp dir of manifests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use gatekit_bin::{DrainOutcome, Process, Settings, Source, Wiring};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A port that was free a moment ago, for TCP and UDP (Gateway listeners bind on the
/// ports as written): each call in a process gives another port.
///
/// The ports come from below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), never from it: a port the kernel hands
/// out for `bind(0)` is also the local port of any outgoing connection, so between this
/// call and the gateway binding it, a connection of this test, another test or another
/// process could take it (`Address already in use`, seen under load). Ports are taken
/// in turn from an offset derived from the process id, so concurrent test processes
/// start far apart; each is checked bindable (TCP and UDP) before it is returned.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(LOWEST);
    if span >= 1_000 {
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = (LOWEST + (start + n) % span) as u16;
            let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
            let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
            if tcp.is_ok() && udp.is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `text` to `dir/name` atomically (a hidden temp file renamed over it), as
/// editors and `kubectl`-style tools do.
pub fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

pub fn gateway_http(port: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: {port}, protocol: HTTP }}]
"#
    )
}

/// A Service `name` (port 80) with an EndpointSlice pointing at `addr`.
pub fn service(name: &str, addr: SocketAddr) -> String {
    service_at(name, &[addr])
}

/// A Service `name` (port 80) whose endpoints are `addrs`, one EndpointSlice each
/// (their ports may differ), named `name-1`, `name-2`, ...
pub fn service_at(name: &str, addrs: &[SocketAddr]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  ports: [{{ name: http, port: 80 }}]\n"
    );
    for (i, addr) in (1..).zip(addrs) {
        out.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{ name: {name}-{i}, namespace: default, labels: {{ kubernetes.io/service-name: {name} }} }}\n\
             addressType: IPv4\nports: [{{ name: http, port: {} }}]\n\
             endpoints: [{{ addresses: [\"{}\"] }}]\n",
            addr.port(),
            addr.ip()
        ));
    }
    out
}

/// [`service`] with `appProtocol: kubernetes.io/h2c` on its port (a gRPC backend).
pub fn h2c_service(name: &str, addr: SocketAddr) -> String {
    service(name, addr).replacen(
        "ports: [{ name: http, port: 80 }]",
        "ports: [{ name: http, port: 80, appProtocol: kubernetes.io/h2c }]",
        1,
    )
}

/// An HTTPRoute `name` on Gateway `gw` sending `path` (prefix) to Service `backend`.
pub fn route(name: &str, path: &str, backend: &str) -> String {
    route_with(name, path, backend, "")
}

/// [`route`] with `rule_fields` added to its one rule: YAML lines indented by four
/// spaces, each ending with a newline (`"    timeouts: { request: 1s }\n"`).
pub fn route_with(name: &str, path: &str, backend: &str, rule_fields: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: {name}, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: "{path}" }} }}]
    backendRefs: [{{ name: {backend}, port: 80 }}]
{rule_fields}"#
    )
}

/// A `kubernetes.io/tls` Secret.
pub fn secret(name: &str, cert_pem: &str, key_pem: &str) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: default }}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert_pem),
        indent(key_pem)
    )
}

/// A gateway process wired to a directory, served until [`stop`](Self::stop).
#[derive(Debug)]
pub struct Wired {
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<DrainOutcome>,
}

impl Wired {
    /// Starts the process (admin on an ephemeral port) and the wiring on `dirs`.
    pub async fn start(dirs: &[PathBuf]) -> Self {
        Self::start_with(dirs, Settings::default()).await
    }

    pub async fn start_with(dirs: &[PathBuf], settings: Settings) -> Self {
        Self::start_on(dirs, settings, "127.0.0.1".parse().unwrap()).await
    }

    /// [`start_with`](Self::start_with), listeners bound on `bind`.
    pub async fn start_on(
        dirs: &[PathBuf],
        mut settings: Settings,
        bind: std::net::IpAddr,
    ) -> Self {
        settings.admin.address = "127.0.0.1:0".parse().unwrap();
        let options = settings.translate_options();
        let mut process = Process::start(settings, bind).await.unwrap();
        let admin = process.admin_addr();
        let wiring = Wiring::start(process.gateway_mut(), Source::Dirs(dirs.to_vec()), options)
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(process.serve(wiring, async {
            let _ = stopped.await;
        }));
        Self {
            admin,
            stop: Some(stop),
            task,
        }
    }

    /// Starts the process and, in the background, the wiring on a Kubernetes provider
    /// built from `settings.kubernetes` (returns once the admin server is up: the
    /// wiring waits for the provider's sync, and `/readyz` says when it is served).
    pub async fn start_kube(settings: Settings) -> Self {
        Self::start_kube_on(settings, "127.0.0.1".parse().unwrap()).await
    }

    /// [`start_kube`](Self::start_kube) with listeners bound on `bind` (two replicas of
    /// one Gateway on one machine need two loopback addresses).
    pub async fn start_kube_on(mut settings: Settings, bind: std::net::IpAddr) -> Self {
        settings.admin.address = "127.0.0.1:0".parse().unwrap();
        let kubernetes = settings.kubernetes.clone().expect("a kubernetes section");
        let options = settings.translate_options();
        let mut process = Process::start(settings, bind).await.unwrap();
        let admin = process.admin_addr();
        let provider = gatekit_k8s::Provider::start(&kubernetes).await.unwrap();
        let source = Source::Kubernetes(std::sync::Arc::new(provider));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let wiring = Wiring::start(process.gateway_mut(), source, options)
                .await
                .unwrap();
            process
                .serve(wiring, async {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            admin,
            stop: Some(stop),
            task,
        }
    }

    /// Runs the shutdown sequence and waits for it.
    pub async fn stop(mut self) -> DrainOutcome {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .unwrap()
            .unwrap()
    }

    /// GET on the admin API: (status, body).
    pub async fn admin(&self, path: &str) -> (http::StatusCode, String) {
        get_raw(self.admin, path, "admin").await
    }

    /// `/config` as JSON.
    pub async fn config(&self) -> serde_json::Value {
        let (status, body) = self.admin("/config").await;
        assert_eq!(status, http::StatusCode::OK);
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Wired {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP/1.1 GET on a fresh connection: (status, body).
pub async fn get_raw(addr: SocketAddr, path: &str, host: &str) -> (http::StatusCode, String) {
    let io = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = sender.send_request(req).await.unwrap();
    let status = rsp.status();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `check` every 2 ms until it returns true; panics after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub use gatekit_testkit::Ca;

/// The end-to-end tests want PEM leaves (they go into Secrets) and HTTP/1.1 clients.
pub trait CaExt {
    /// A leaf for `name`: (cert PEM, key PEM, leaf DER).
    fn leaf(&self, name: &str) -> (String, String, CertificateDer<'static>);
    /// A client trusting the CA, offering `http/1.1`.
    fn connector(&self) -> tokio_rustls::TlsConnector;
}

impl CaExt for Ca {
    fn leaf(&self, name: &str) -> (String, String, CertificateDer<'static>) {
        self.leaf_pem(&[name])
    }

    fn connector(&self) -> tokio_rustls::TlsConnector {
        self.tls_connector(&[b"http/1.1"])
    }
}

/// A TLS handshake with `sni`; returns the leaf certificate the server presented and a
/// GET of `path` over that connection.
pub async fn tls_get(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sni: &str,
    path: &str,
) -> (CertificateDer<'static>, http::StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", sni)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = sender.send_request(req).await.unwrap();
    let status = rsp.status();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (leaf, status, String::from_utf8_lossy(&body).into_owned())
}

/// A WebSocket backend on a free loopback port that echoes every text message.
pub async fn ws_echo() -> SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_never_repeat() {
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(32_768);
        let ports: Vec<u16> = (0..100).map(|_| super::free_port()).collect();
        assert!(ports.iter().all(|p| *p < low), "{ports:?}");
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }
}
