//! PROXY protocol on a TCPRoute port, end to end through the wired gateway (`gatekit
//! run --resources`): a ClientTrafficPolicy makes the port read the header from the
//! settings' trusted sources; an Envoy Gateway BackendTrafficPolicy `proxyProtocol`
//! makes the gateway write one to the backend, carrying the client's address (the one
//! a trusted header named). Real sockets on loopback.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use gatekit_core::server::proxy_protocol::parse;
use gatekit_core::server::{ProxyHeader, ProxyVersion, encode_proxy_header};
use gatekit_tests::wired::{Wired, free_port, write_atomic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// A TCP backend that sends, per connection with any bytes, everything it read until
/// the gateway closed its side.
async fn recording_backend() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                if !got.is_empty() {
                    let _ = tx.send(got);
                }
            });
        }
    });
    (addr, rx)
}

/// Manifests: a Gateway with one TCP listener on `port`, a TCPRoute to Service `db`
/// (at `backend`), a ClientTrafficPolicy enabling PROXY protocol on the listener, and
/// with `btp`, a BackendTrafficPolicy on the Gateway writing v2 headers to backends.
fn manifests(dir: &std::path::Path, port: u16, backend: SocketAddr, btp: bool) {
    let files = [
        (
            "gw.yaml",
            format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
                 metadata: {{ name: gw, namespace: default }}\nspec:\n  gatewayClassName: gatekit\n  \
                 listeners: [{{ name: tcp, port: {port}, protocol: TCP }}]\n"
            ),
        ),
        (
            "svc.yaml",
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{ name: db, namespace: default }}\n\
                 spec:\n  ports: [{{ name: p, port: 5432, protocol: TCP }}]\n\
                 ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {{ name: db-1, namespace: default, labels: {{ kubernetes.io/service-name: db }} }}\n\
                 addressType: IPv4\nports: [{{ name: p, port: {}, protocol: TCP }}]\n\
                 endpoints: [{{ addresses: [\"{}\"] }}]\n",
                backend.port(),
                backend.ip()
            ),
        ),
        (
            "route.yaml",
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n\
             metadata: { name: db, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n\
             \x20 rules: [{ backendRefs: [{ name: db, port: 5432 }] }]\n"
                .to_owned(),
        ),
        (
            "ctp.yaml",
            "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\n\
             metadata: { name: in, namespace: default }\nspec:\n  targetRefs:\n  \
             - { group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: tcp }\n  \
             proxyProtocol: {}\n"
                .to_owned(),
        ),
    ];
    for (name, text) in files {
        write_atomic(dir, name, &text);
    }
    if btp {
        write_atomic(
            dir,
            "btp.yaml",
            "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\n\
             metadata: { name: out, namespace: default }\nspec:\n  \
             targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]\n  \
             proxyProtocol: { version: V2 }\n",
        );
    }
}

async fn start(
    port: u16,
    backend: SocketAddr,
    btp: bool,
    trusted: &str,
) -> (Wired, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), port, backend, btp);
    let mut settings = gatekit_bin::Settings::default();
    settings.limits.proxy_protocol_trusted_sources = vec![trusted.parse().unwrap()];
    let wired = Wired::start_with(&[dir.path().to_path_buf()], settings).await;
    (wired, dir)
}

/// Connects (once the port is bound), writes `bytes`, closes the writing side.
async fn send(port: u16, bytes: &[u8]) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut s = loop {
        match TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("{addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
}

async fn received(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<u8> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

fn made_up() -> (SocketAddr, SocketAddr) {
    (
        "198.51.100.9:4242".parse().unwrap(),
        "203.0.113.1:5432".parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_clients_address_reaches_the_backend_in_the_policys_header() {
    let (backend, mut rx) = recording_backend().await;
    let port = free_port();
    let (wired, _dir) = start(port, backend, true, "127.0.0.1/32").await;
    let (source, destination) = made_up();
    let mut bytes = encode_proxy_header(ProxyVersion::V2, source, destination);
    bytes.extend_from_slice(b"hello");
    send(port, &bytes).await;

    let got = received(&mut rx).await;
    let (header, len) = parse(&got).unwrap().unwrap();
    // The gateway's own v2 header, naming the client the front balancer named.
    assert!(got.starts_with(b"\r\n\r\n\0\r\nQUIT\n"), "{got:?}");
    // Written by the gateway (to the address the client connected to), not the
    // client's header passed on: that one named `destination`.
    assert_eq!(
        header,
        ProxyHeader::Proxied {
            source,
            destination: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    );
    assert_eq!(
        &got[len..],
        b"hello",
        "the client's header is consumed, its bytes follow"
    );
    wired.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_sources_header_is_not_honoured() {
    let (backend, mut rx) = recording_backend().await;
    let port = free_port();
    // Only 10.0.0.0/8 may send headers: loopback's is passed on as data.
    let (wired, _dir) = start(port, backend, true, "10.0.0.0/8").await;
    let (source, destination) = made_up();
    let mut bytes = encode_proxy_header(ProxyVersion::V1, source, destination);
    bytes.extend_from_slice(b"hello");
    send(port, &bytes).await;

    let got = received(&mut rx).await;
    let (header, len) = parse(&got).unwrap().unwrap();
    let ProxyHeader::Proxied { source: seen, .. } = header else {
        panic!("{header:?}");
    };
    assert!(
        seen.ip().is_loopback(),
        "the socket's address, not {source}: {seen}"
    );
    assert_eq!(
        &got[len..],
        &bytes[..],
        "the client's bytes, its header included"
    );
    wired.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_backend_policy_no_header_is_written() {
    let (backend, mut rx) = recording_backend().await;
    let port = free_port();
    let (wired, _dir) = start(port, backend, false, "127.0.0.1/32").await;
    let (source, destination) = made_up();
    let mut bytes = encode_proxy_header(ProxyVersion::V2, source, destination);
    bytes.extend_from_slice(b"hello");
    send(port, &bytes).await;

    // The port still reads the client's header (ClientTrafficPolicy); nothing is written.
    assert_eq!(received(&mut rx).await, b"hello");
    wired.stop().await;
}
