//! Envoy Gateway policies on stream routes and listeners, end to end through the wired
//! gateway (`gatekit run --resources`) on loopback: a BackendTrafficPolicy's
//! `circuitBreaker.maxConnections` on a TCPRoute (and a UDPRoute: flows), a
//! ClientTrafficPolicy's `timeout.tcp.idleTimeout` on a TCP listener and
//! `connection.connectionLimit` on an HTTP listener, a request-level field on a stream
//! target refused by name, the policies' status and `/config`.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{Wired, eventually, free_port, write_atomic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(10);

/// A TCP echo backend counting the connections it accepted.
async fn tcp_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, accepted)
}

/// A UDP echo backend recording the client addresses (the gateway's flow sockets) it
/// heard from.
async fn udp_echo() -> (SocketAddr, Arc<std::sync::Mutex<HashSet<SocketAddr>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let flows = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let seen = flows.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            seen.lock().unwrap().insert(from);
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    (addr, flows)
}

fn service(name: &str, port: u16, protocol: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  ports: [{{ name: p, port: {port}, protocol: {protocol} }}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{ name: {name}-1, namespace: default, labels: {{ kubernetes.io/service-name: {name} }} }}\n\
         addressType: IPv4\nports: [{{ name: p, port: {}, protocol: {protocol} }}]\n\
         endpoints: [{{ addresses: [\"{}\"] }}]\n",
        addr.port(),
        addr.ip()
    )
}

fn gateway(listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{ name: gw, namespace: default }}\nspec:\n  gatewayClassName: gatekit\n  listeners:\n{listeners}"
    )
}

fn stream_route(kind: &str, name: &str, backend: &str, port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: {kind}\n\
         metadata: {{ name: {name}, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n\
         \x20 rules: [{{ backendRefs: [{{ name: {backend}, port: {port} }}] }}]\n"
    )
}

fn policy(kind: &str, name: &str, target: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: {kind}\n\
         metadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, {target} }}]\n{spec}"
    )
}

async fn start(files: &[(&str, String)]) -> (Wired, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write_atomic(dir.path(), name, text);
    }
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    (wired, dir)
}

/// Sends `ping` on `s` and reads it back: whether the connection is relayed.
async fn echoes(s: &mut TcpStream) -> bool {
    if s.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    matches!(
        tokio::time::timeout(WAIT, s.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"ping"
    )
}

/// A connection to `port` that is relayed (retried until the port is served).
async fn relayed(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(mut s) = TcpStream::connect(addr).await
            && echoes(&mut s).await
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the peer closes `s` (EOF or reset); how long that took.
async fn closed_after(s: &mut TcpStream) -> Duration {
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("still open after {WAIT:?}"),
        }
    }
}

/// The `Accepted` condition of a policy in `/config`.
async fn accepted(wired: &Wired, kind: &str, name: &str) -> serde_json::Value {
    let config = wired.config().await;
    let status = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind && s["name"] == name)
        .unwrap_or_else(|| panic!("no status of {kind} {name}: {config}"))
        .clone();
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone()
}

/// The `/config` entry of port `port`.
async fn port_config(wired: &Wired, port: u16) -> serde_json::Value {
    let config = wired.config().await;
    config["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| panic!("no port {port}: {config}"))
        .clone()
}

fn limit_refusals(metrics: &str, port: u16) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("gatekit_stream_connections_refused")
                && l.contains("reason=\"limit\"")
                && l.contains(&format!("port=\"{port}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn tcp_route_max_connections_closes_the_third_before_the_backend() {
    let (backend, accepts) = tcp_echo().await;
    let port = free_port();
    let (wired, _dir) = start(&[
        (
            "gw.yaml",
            gateway(&format!(
                "  - {{ name: tcp, port: {port}, protocol: TCP }}\n"
            )),
        ),
        ("svc.yaml", service("db", 5432, "TCP", backend)),
        ("route.yaml", stream_route("TCPRoute", "db", "db", 5432)),
        (
            "btp.yaml",
            policy(
                "BackendTrafficPolicy",
                "db",
                "kind: TCPRoute, name: db",
                "  circuitBreaker: { maxConnections: 2 }\n",
            ),
        ),
    ])
    .await;
    let mut first = relayed(port).await;
    let mut second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(echoes(&mut second).await);
    assert_eq!(accepts.load(Ordering::SeqCst), 2);

    // The third is closed without a byte relayed and without reaching the backend.
    let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = third.write_all(b"ping").await;
    closed_after(&mut third).await;
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
    let (_, metrics) = wired.admin("/metrics").await;
    assert_eq!(limit_refusals(&metrics, port), 1, "{metrics}");

    // One closes: a new one is served; the others still are.
    first.shutdown().await.unwrap();
    closed_after(&mut first).await;
    let mut fourth = relayed(port).await;
    assert_eq!(accepts.load(Ordering::SeqCst), 3);
    assert!(echoes(&mut second).await);
    assert!(echoes(&mut fourth).await);

    let c = accepted(&wired, "BackendTrafficPolicy", "db").await;
    assert_eq!(c["status"], "True", "{c}");
    let p = port_config(&wired, port).await;
    assert_eq!(p["streamRoutes"][0]["maxConnections"], 2, "{p}");
}

#[tokio::test]
async fn udp_route_max_connections_bounds_its_flows() {
    let (backend, flows) = udp_echo().await;
    let port = free_port();
    let (wired, _dir) = start(&[
        (
            "gw.yaml",
            gateway(&format!(
                "  - {{ name: dns, port: {port}, protocol: UDP }}\n"
            )),
        ),
        ("svc.yaml", service("dns", 53, "UDP", backend)),
        ("route.yaml", stream_route("UDPRoute", "dns", "dns", 53)),
        (
            "btp.yaml",
            policy(
                "BackendTrafficPolicy",
                "dns",
                "kind: UDPRoute, name: dns",
                "  circuitBreaker: { maxConnections: 1 }\n",
            ),
        ),
    ])
    .await;
    let gw = SocketAddr::from(([127, 0, 0, 1], port));
    let answered = |client: Arc<UdpSocket>, wait: Duration| async move {
        let mut buf = [0u8; 64];
        client.send(b"q").await.unwrap();
        matches!(
            tokio::time::timeout(wait, client.recv(&mut buf)).await,
            Ok(Ok(_))
        )
    };
    let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    a.connect(gw).await.unwrap();
    eventually(WAIT, "the first flow is relayed", || {
        answered(a.clone(), Duration::from_millis(100))
    })
    .await;
    // A second client is a second flow: over the route's bound, dropped.
    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    b.connect(gw).await.unwrap();
    assert!(!answered(b.clone(), Duration::from_millis(300)).await);
    assert!(answered(a.clone(), WAIT).await);
    assert_eq!(flows.lock().unwrap().len(), 1);
    let (_, metrics) = wired.admin("/metrics").await;
    assert!(limit_refusals(&metrics, port) >= 1, "{metrics}");
}

#[tokio::test]
async fn ctp_tcp_idle_timeout_closes_idle_connections_only() {
    let (backend, _) = tcp_echo().await;
    let port = free_port();
    let (wired, _dir) = start(&[
        (
            "gw.yaml",
            gateway(&format!(
                "  - {{ name: tcp, port: {port}, protocol: TCP }}\n"
            )),
        ),
        ("svc.yaml", service("db", 5432, "TCP", backend)),
        ("route.yaml", stream_route("TCPRoute", "db", "db", 5432)),
        (
            "ctp.yaml",
            policy(
                "ClientTrafficPolicy",
                "idle",
                "kind: Gateway, name: gw, sectionName: tcp",
                "  timeout: { tcp: { idleTimeout: 200ms } }\n",
            ),
        ),
    ])
    .await;
    let mut idle = relayed(port).await;
    let mut busy = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(echoes(&mut busy).await);
    let idle_closed = tokio::spawn(async move { closed_after(&mut idle).await });
    // One sending every 50 ms outlives the timeout twice over.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(450) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            echoes(&mut busy).await,
            "closed after {:?}",
            start.elapsed()
        );
    }
    let after = idle_closed.await.unwrap();
    // Closed after about the timeout (from its last byte, just before the wait began).
    assert!(after >= Duration::from_millis(100), "{after:?}");
    assert!(after < Duration::from_secs(3), "{after:?}");

    let c = accepted(&wired, "ClientTrafficPolicy", "idle").await;
    assert_eq!(c["status"], "True", "{c}");
    let p = port_config(&wired, port).await;
    assert_eq!(p["listeners"][0]["idleTimeoutMs"], 200, "{p}");
}

/// An HTTP/1.1 GET on `s`; whether it was answered 200.
async fn get_ok(
    s: TcpStream,
) -> Option<hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "example.com")
        .body(http_body_util::Empty::new())
        .unwrap();
    let rsp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .ok()?
        .ok()?;
    (rsp.status() == 200).then_some(sender)
}

#[tokio::test]
async fn ctp_connection_limit_closes_connections_over_it_at_accept() {
    let backend = EchoBackend::start("app").await;
    let port = free_port();
    let (wired, _dir) = start(&[
        (
            "gw.yaml",
            gateway(&format!(
                "  - {{ name: http, port: {port}, protocol: HTTP }}\n"
            )),
        ),
        (
            "svc.yaml",
            gatekit_tests::wired::service("app", backend.addr),
        ),
        ("route.yaml", gatekit_tests::wired::route("app", "/", "app")),
        (
            "ctp.yaml",
            policy(
                "ClientTrafficPolicy",
                "limit",
                "kind: Gateway, name: gw",
                "  connection: { connectionLimit: { value: 1 } }\n",
            ),
        ),
    ])
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // The first connection, kept open (keep-alive).
    let deadline = tokio::time::Instant::now() + WAIT;
    let first = loop {
        if let Ok(s) = TcpStream::connect(addr).await
            && let Some(sender) = get_ok(s).await
        {
            break sender;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A second one while it is open: closed at accept, never answered.
    let second = TcpStream::connect(addr).await.unwrap();
    assert!(get_ok(second).await.is_none());
    let hits = backend.hits();
    // Once the first is gone, a new one is served.
    drop(first);
    eventually(WAIT, "a new connection is served", || async {
        match TcpStream::connect(addr).await {
            Ok(s) => get_ok(s).await.is_some(),
            Err(_) => false,
        }
    })
    .await;
    assert_eq!(backend.hits(), hits + 1);

    let c = accepted(&wired, "ClientTrafficPolicy", "limit").await;
    assert_eq!(c["status"], "True", "{c}");
    let p = port_config(&wired, port).await;
    assert_eq!(p["connectionLimit"], 1, "{p}");
}

#[tokio::test]
async fn a_request_field_on_a_tcp_route_policy_is_refused_naming_it() {
    let (backend, _) = tcp_echo().await;
    let port = free_port();
    let (wired, _dir) = start(&[
        (
            "gw.yaml",
            gateway(&format!(
                "  - {{ name: tcp, port: {port}, protocol: TCP }}\n"
            )),
        ),
        ("svc.yaml", service("db", 5432, "TCP", backend)),
        ("route.yaml", stream_route("TCPRoute", "db", "db", 5432)),
        (
            "btp.yaml",
            policy(
                "BackendTrafficPolicy",
                "db",
                "kind: TCPRoute, name: db",
                "  circuitBreaker: { maxConnections: 1 }\n  retry: { numRetries: 3 }\n",
            ),
        ),
    ])
    .await;
    // Not applied at all: the route serves without the limit.
    let _first = relayed(port).await;
    let mut second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(echoes(&mut second).await);
    let c = accepted(&wired, "BackendTrafficPolicy", "db").await;
    assert_eq!(c["status"], "False", "{c}");
    assert_eq!(c["reason"], "Unsupported", "{c}");
    assert!(c["message"].as_str().unwrap().contains("spec.retry"), "{c}");
    let p = port_config(&wired, port).await;
    assert!(p["streamRoutes"][0].get("maxConnections").is_none(), "{p}");
}
