//! Envoy Gateway SecurityPolicy `authorization` by client CIDR on stream routes, end to
//! end through the wired gateway (`gatekit run --resources`) on loopback: a TCPRoute
//! allow list that takes loopback clients and one that does not (closed before the
//! backend, counted), the PROXY protocol source from a trusted range as the address
//! checked, TLS passthrough checked after the SNI and before a byte is relayed, a
//! field a stream cannot check refused by name (and the route's connections with it),
//! a Gateway policy with `jwt` refusing its TCP listener's connections, a UDPRoute
//! target refused by name.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_core::server::{ProxyVersion, encode_proxy_header};
use gatekit_tests::wired::{Wired, free_port, write_atomic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// A TCP backend that counts the connections it accepted and sends, per connection,
/// what it read until the peer closed (after echoing each read back).
async fn backend() -> (
    SocketAddr,
    Arc<AtomicUsize>,
    mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            got.extend_from_slice(&buf[..n]);
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = tx.send(got);
            });
        }
    });
    (addr, accepted, rx)
}

fn service(name: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  ports: [{{ name: p, port: 5432, protocol: TCP }}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{ name: {name}-1, namespace: default, labels: {{ kubernetes.io/service-name: {name} }} }}\n\
         addressType: IPv4\nports: [{{ name: p, port: {}, protocol: TCP }}]\n\
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

fn tcp_route(name: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n\
         metadata: {{ name: {name}, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n\
         \x20 rules: [{{ backendRefs: [{{ name: {backend}, port: 5432 }}] }}]\n"
    )
}

fn tls_route(name: &str, hostname: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\n\
         metadata: {{ name: {name}, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n\
         \x20 hostnames: [{hostname}]\n\
         \x20 rules: [{{ backendRefs: [{{ name: {backend}, port: 5432 }}] }}]\n"
    )
}

/// A SecurityPolicy `name` on `target` with `spec` (indented two spaces).
fn security_policy(name: &str, target: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\n\
         metadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, {target} }}]\n{spec}"
    )
}

/// An allow list of `cidr`, default deny (Envoy Gateway's default).
fn allow(cidr: &str) -> String {
    format!(
        "  authorization:\n    rules: [{{ action: Allow, principal: {{ clientCIDRs: [\"{cidr}\"] }} }}]\n"
    )
}

async fn start_with(
    files: &[(&str, String)],
    settings: gatekit_bin::Settings,
) -> (Wired, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write_atomic(dir.path(), name, text);
    }
    let wired = Wired::start_with(&[dir.path().to_path_buf()], settings).await;
    (wired, dir)
}

async fn start(files: &[(&str, String)]) -> (Wired, tempfile::TempDir) {
    start_with(files, gatekit_bin::Settings::default()).await
}

/// A connection to `port`, retried until the port is bound.
async fn connect(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => return s,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("{addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Writes `bytes` on `s` and reads as many back: whether they came back (relayed).
async fn echoes(s: &mut TcpStream, bytes: &[u8]) -> bool {
    if s.write_all(bytes).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; bytes.len()];
    matches!(
        tokio::time::timeout(WAIT, s.read_exact(&mut buf)).await,
        Ok(Ok(_)) if buf == bytes
    )
}

/// Whether the gateway closes `s` (EOF or reset) without sending a byte.
async fn closed_silently(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    match tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await {
        Ok(Ok(_)) => buf.is_empty(),
        Ok(Err(_)) => true,
        Err(_) => panic!("still open after {WAIT:?}"),
    }
}

/// The `gatekit_stream_connections_refused` count of `port` for `reason`.
fn refusals(metrics: &str, port: u16, reason: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("gatekit_stream_connections_refused")
                && l.contains(&format!("reason=\"{reason}\""))
                && l.contains(&format!("port=\"{port}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

/// The `Accepted` condition of SecurityPolicy `name` in `/config`.
async fn accepted(wired: &Wired, name: &str) -> serde_json::Value {
    let config = wired.config().await;
    let status = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "SecurityPolicy" && s["name"] == name)
        .unwrap_or_else(|| panic!("no status of SecurityPolicy {name}: {config}"))
        .clone();
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone()
}

/// The `/config` stream routes of port `port`.
async fn stream_routes(wired: &Wired, port: u16) -> serde_json::Value {
    let config = wired.config().await;
    config["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| panic!("no port {port}: {config}"))["streamRoutes"]
        .clone()
}

/// The first flight of a real TLS client asking for `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// One TCP listener on `port`, TCPRoute `db` to Service `db` at `addr`, SecurityPolicy
/// `db` on the route with `spec`.
fn tcp_files(port: u16, addr: SocketAddr, spec: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "gw.yaml",
            gateway(&format!(
                "  - {{ name: tcp, port: {port}, protocol: TCP }}\n"
            )),
        ),
        ("svc.yaml", service("db", addr)),
        ("route.yaml", tcp_route("db", "db")),
        (
            "sp.yaml",
            security_policy("db", "kind: TCPRoute, name: db", spec),
        ),
    ]
}

#[tokio::test]
async fn a_tcp_route_allowing_loopback_relays_its_connections() {
    let (addr, accepts, _) = backend().await;
    let port = free_port();
    let (wired, _dir) = start(&tcp_files(port, addr, &allow("127.0.0.0/8"))).await;
    let mut s = connect(port).await;
    assert!(echoes(&mut s, b"ping").await);
    assert_eq!(accepts.load(Ordering::SeqCst), 1);

    let c = accepted(&wired, "db").await;
    assert_eq!(c["status"], "True", "{c}");
    let routes = stream_routes(&wired, port).await;
    assert_eq!(
        routes[0]["access"][0], "SecurityPolicy/default/db/authorization",
        "{routes}"
    );
    let (_, metrics) = wired.admin("/metrics").await;
    assert_eq!(refusals(&metrics, port, "denied"), 0, "{metrics}");
}

#[tokio::test]
async fn a_client_outside_the_allow_list_is_closed_before_the_backend_and_counted() {
    let (addr, accepts, _) = backend().await;
    let port = free_port();
    let (wired, _dir) = start(&tcp_files(port, addr, &allow("10.0.0.0/8"))).await;
    for _ in 0..2 {
        let mut s = connect(port).await;
        let _ = s.write_all(b"ping").await;
        assert!(closed_silently(&mut s).await);
    }
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        0,
        "the backend was contacted"
    );
    let (_, metrics) = wired.admin("/metrics").await;
    assert_eq!(refusals(&metrics, port, "denied"), 2, "{metrics}");
    let c = accepted(&wired, "db").await;
    assert_eq!(c["status"], "True", "{c}");
}

#[tokio::test]
async fn the_address_of_a_trusted_proxy_protocol_header_is_the_one_checked() {
    let (addr, accepts, mut got) = backend().await;
    let port = free_port();
    let mut files = tcp_files(port, addr, &allow("10.0.0.0/8"));
    files.push((
        "ctp.yaml",
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\n\
         metadata: { name: in, namespace: default }\nspec:\n  targetRefs:\n  \
         - { group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: tcp }\n  \
         proxyProtocol: {}\n"
            .to_owned(),
    ));
    let mut settings = gatekit_bin::Settings::default();
    settings.limits.proxy_protocol_trusted_sources = vec!["127.0.0.1/32".parse().unwrap()];
    let (wired, _dir) = start_with(&files, settings).await;
    let destination: SocketAddr = "203.0.113.1:5432".parse().unwrap();

    // The loopback peer is outside 10.0.0.0/8; the client its header names is inside.
    let inside: SocketAddr = "10.1.2.3:4242".parse().unwrap();
    let mut s = connect(port).await;
    s.write_all(&encode_proxy_header(ProxyVersion::V2, inside, destination))
        .await
        .unwrap();
    assert!(echoes(&mut s, b"hello").await);
    s.shutdown().await.unwrap();
    let relayed = tokio::time::timeout(WAIT, got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(relayed, b"hello", "the header is consumed, not relayed");

    // A header naming a client outside the range: closed, the backend not contacted.
    let outside: SocketAddr = "198.51.100.9:4242".parse().unwrap();
    let mut s = connect(port).await;
    let mut bytes = encode_proxy_header(ProxyVersion::V1, outside, destination);
    bytes.extend_from_slice(b"hello");
    let _ = s.write_all(&bytes).await;
    assert!(closed_silently(&mut s).await);
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    let (_, metrics) = wired.admin("/metrics").await;
    assert_eq!(refusals(&metrics, port, "denied"), 1, "{metrics}");
}

#[tokio::test]
async fn tls_passthrough_is_checked_after_the_sni_before_a_byte_is_relayed() {
    let (open_addr, open_accepts, mut open_got) = backend().await;
    let (shut_addr, shut_accepts, _) = backend().await;
    let port = free_port();
    let (wired, _dir) = start(&[
        (
            "gw.yaml",
            gateway(&format!(
                "  - {{ name: tls, port: {port}, protocol: TLS, hostname: \"*.example.com\", tls: {{ mode: Passthrough }} }}\n"
            )),
        ),
        ("svc-open.yaml", service("open", open_addr)),
        ("svc-shut.yaml", service("shut", shut_addr)),
        ("r-open.yaml", tls_route("open", "open.example.com", "open")),
        ("r-shut.yaml", tls_route("shut", "shut.example.com", "shut")),
        (
            "sp-open.yaml",
            security_policy("open", "kind: TLSRoute, name: open", &allow("127.0.0.0/8")),
        ),
        (
            "sp-shut.yaml",
            security_policy("shut", "kind: TLSRoute, name: shut", &allow("10.0.0.0/8")),
        ),
    ])
    .await;
    // Allowed: the ClientHello reaches the backend as the client sent it.
    let hello = client_hello("open.example.com");
    let mut s = connect(port).await;
    assert!(echoes(&mut s, &hello).await);
    s.shutdown().await.unwrap();
    let relayed = tokio::time::timeout(WAIT, open_got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(relayed, hello);
    assert_eq!(open_accepts.load(Ordering::SeqCst), 1);

    // Denied: closed after the ClientHello was read, nothing relayed or connected.
    let mut s = connect(port).await;
    s.write_all(&client_hello("shut.example.com"))
        .await
        .unwrap();
    assert!(closed_silently(&mut s).await);
    assert_eq!(shut_accepts.load(Ordering::SeqCst), 0);
    let (_, metrics) = wired.admin("/metrics").await;
    assert_eq!(refusals(&metrics, port, "denied"), 1, "{metrics}");
    for name in ["open", "shut"] {
        let c = accepted(&wired, name).await;
        assert_eq!(c["status"], "True", "{name}: {c}");
    }
}

#[tokio::test]
async fn a_field_a_stream_cannot_check_refuses_the_policy_by_name_and_the_routes_connections() {
    let (addr, accepts, _) = backend().await;
    let port = free_port();
    let spec = "  authorization:\n    defaultAction: Allow\n    rules:\n    \
                - { action: Deny, principal: { headers: [{ name: x-team, values: [a] }] } }\n";
    let (wired, _dir) = start(&tcp_files(port, addr, spec)).await;
    // The policy would allow loopback by default, but it cannot be checked: refused.
    let mut s = connect(port).await;
    let _ = s.write_all(b"ping").await;
    assert!(closed_silently(&mut s).await);
    assert_eq!(accepts.load(Ordering::SeqCst), 0);
    let c = accepted(&wired, "db").await;
    assert_eq!(c["status"], "False", "{c}");
    assert_eq!(c["reason"], "Unsupported", "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("spec.authorization.rules[0].principal.headers"),
        "{c}"
    );
    let (_, metrics) = wired.admin("/metrics").await;
    assert_eq!(refusals(&metrics, port, "denied"), 1, "{metrics}");
}

#[tokio::test]
async fn a_gateway_policy_with_jwt_refuses_its_tcp_listeners_connections() {
    let (addr, accepts, _) = backend().await;
    let port = free_port();
    let http = free_port();
    // RFC 8037's example Ed25519 public key.
    let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    let spec = format!(
        "  jwt:\n    providers: [{{ name: p, localJWKS: {{ type: Inline, inline: '{jwks}' }} }}]\n{}",
        allow("127.0.0.0/8")
    );
    let (wired, _dir) = start(&[
        (
            "gw.yaml",
            gateway(&format!(
                "  - {{ name: tcp, port: {port}, protocol: TCP }}\n  - {{ name: web, port: {http}, protocol: HTTP }}\n"
            )),
        ),
        ("svc.yaml", service("db", addr)),
        ("route.yaml", tcp_route("db", "db")),
        (
            "sp.yaml",
            security_policy("gw", "kind: Gateway, name: gw", &spec),
        ),
    ])
    .await;
    let mut s = connect(port).await;
    let _ = s.write_all(b"ping").await;
    assert!(closed_silently(&mut s).await);
    assert_eq!(accepts.load(Ordering::SeqCst), 0);
    // Accepted (it guards the HTTP listener), saying what it does to the TCP one.
    let c = accepted(&wired, "gw").await;
    assert_eq!(c["status"], "True", "{c}");
    assert!(c["message"].as_str().unwrap().contains("spec.jwt"), "{c}");
    let routes = stream_routes(&wired, port).await;
    assert_eq!(
        routes[0]["access"][0], "SecurityPolicy/default/gw/jwt",
        "{routes}"
    );
}

#[tokio::test]
async fn a_udp_route_target_is_refused_by_name() {
    let (addr, _, _) = backend().await;
    let port = free_port();
    let (wired, _dir) = start(&[
        (
            "gw.yaml",
            gateway(&format!(
                "  - {{ name: tcp, port: {port}, protocol: TCP }}\n"
            )),
        ),
        ("svc.yaml", service("db", addr)),
        ("route.yaml", tcp_route("db", "db")),
        (
            "sp.yaml",
            security_policy("dns", "kind: UDPRoute, name: dns", &allow("10.0.0.0/8")),
        ),
    ])
    .await;
    let c = accepted(&wired, "dns").await;
    assert_eq!(c["status"], "False", "{c}");
    assert!(c["message"].as_str().unwrap().contains("UDPRoute"), "{c}");
}

#[tokio::test]
async fn a_gateway_listener_policy_checks_the_tcp_routes_under_it_unless_the_route_has_its_own() {
    let (addr, accepts, _) = backend().await;
    let port = free_port();
    let mut files = tcp_files(port, addr, &allow("127.0.0.0/8"));
    files.push(("route2.yaml", tcp_route("other", "db")));
    files.push((
        "sp-gw.yaml",
        security_policy(
            "gw",
            "kind: Gateway, name: gw, sectionName: tcp",
            &allow("10.0.0.0/8"),
        ),
    ));
    // Route `db` takes the listener's connections (same age; the smaller name), with
    // its own policy winning over the listener's; `other` gets the listener's.
    let (wired, dir) = start(&files).await;
    let mut s = connect(port).await;
    assert!(echoes(&mut s, b"ping").await);
    let routes = stream_routes(&wired, port).await;
    let by_name = |n: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == format!("default/tcp:{n}"))
            .unwrap_or_else(|| panic!("{n}: {routes}"))["access"]
            .clone()
    };
    assert_eq!(by_name("db")[0], "SecurityPolicy/default/db/authorization");
    assert_eq!(
        by_name("other")[0],
        "SecurityPolicy/default/gw/authorization"
    );
    drop(s);
    // Without the route's own policy, the listener's (10.0.0.0/8) applies.
    std::fs::remove_file(dir.path().join("sp.yaml")).unwrap();
    gatekit_tests::wired::eventually(WAIT, "the listener's policy applies", || async {
        stream_routes(&wired, port).await[0]["access"][0]
            == "SecurityPolicy/default/gw/authorization"
    })
    .await;
    let mut s = connect(port).await;
    let _ = s.write_all(b"ping").await;
    assert!(closed_silently(&mut s).await);
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
}
