//! TLSRoute, TCPRoute and UDPRoute end to end: the wired gateway (`gatekit run
//! --resources`) serving manifests from a directory, real backends on loopback (rustls
//! servers with their own certificates, TCP echo, UDP echo), real clients.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_testkit::{Ca, tls_connect};
use gatekit_tests::wired::{CaExt, Wired, eventually, free_port, write_atomic};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(10);

/// A TLS backend with its own certificate: after the handshake it writes its name and a
/// newline, then echoes what it reads. It counts the TCP connections it accepted.
struct TlsBackend {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    accepted: Arc<AtomicUsize>,
}

impl TlsBackend {
    async fn start(ca: &Ca, name: &'static str, hostname: &str) -> Self {
        let (_, key_pem, cert) = ca.leaf(hostname);
        let certs = vec![cert.clone()];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if tls.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if tls.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            cert,
            accepted,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A TCP backend that echoes every byte; counts its connections.
async fn tcp_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

/// A TCP backend that writes `id` and closes each connection.
async fn tcp_namer(id: u8) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.write_all(&[id]).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// A Service `name` with one port (`port`, `protocol`) whose endpoint is `addr`.
fn l4_service(name: &str, port: u16, protocol: &str, addr: SocketAddr) -> String {
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

fn tls_route(name: &str, hostnames: &[&str], backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\n\
         metadata: {{ name: {name}, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n\
         hostnames: [{}]\n  rules: [{{ backendRefs: [{{ name: {backend}, port: 443 }}] }}]\n",
        hostnames
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .replace("\nhostnames:", "\n  hostnames:")
}

/// Connects through the gateway with `sni`, checks the backend's certificate and
/// greeting: `Some(name)` of the backend reached, `None` if refused.
async fn passthrough(
    ca: &Ca,
    addr: SocketAddr,
    sni: &str,
) -> Option<(
    String,
    CertificateDer<'static>,
    tokio_rustls::client::TlsStream<TcpStream>,
)> {
    let connector = ca.tls_connector(&[]);
    let mut tls = tokio::time::timeout(WAIT, tls_connect(&connector, addr, sni))
        .await
        .ok()?
        .ok()?;
    let cert = tls.get_ref().1.peer_certificates()?[0].clone();
    let mut name = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        tls.read_exact(&mut byte).await.ok()?;
        if byte[0] == b'\n' {
            break;
        }
        name.push(byte[0]);
    }
    Some((String::from_utf8(name).unwrap(), cert, tls))
}

fn write_dir(dir: &Path, files: &[(&str, String)]) {
    for (name, text) in files {
        write_atomic(dir, name, text);
    }
}

#[tokio::test]
async fn tls_passthrough_routes_by_sni_to_backends_with_their_own_certificates() {
    let ca = Ca::new();
    let a = TlsBackend::start(&ca, "a", "a.example.com").await;
    let b = TlsBackend::start(&ca, "b", "b.example.com").await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        &[
            (
                "gw.yaml",
                gateway(&format!(
                    "  - {{ name: tls, port: {port}, protocol: TLS, hostname: \"*.example.com\", tls: {{ mode: Passthrough }} }}\n"
                )),
            ),
            ("a.yaml", l4_service("a", 443, "TCP", a.addr)),
            ("b.yaml", l4_service("b", 443, "TCP", b.addr)),
            ("ra.yaml", tls_route("ra", &["a.example.com"], "a")),
            ("rb.yaml", tls_route("rb", &["b.example.com"], "b")),
        ],
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(WAIT, "the TLS port serves", || async {
        passthrough(&ca, gw, "a.example.com").await.is_some()
    })
    .await;

    // Each SNI reaches its backend, and the client sees that backend's own
    // certificate: the gateway terminated nothing.
    for _ in 0..3 {
        let (name, cert, mut tls) = passthrough(&ca, gw, "a.example.com").await.unwrap();
        assert_eq!(name, "a");
        assert_eq!(cert, a.cert);
        tls.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tls.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        let (name, cert, _) = passthrough(&ca, gw, "b.example.com").await.unwrap();
        assert_eq!(name, "b");
        assert_eq!(cert, b.cert);
    }

    // An SNI no route takes (in the listener's domain or not) is refused before any
    // backend is contacted.
    let before = (a.accepted(), b.accepted());
    for sni in ["c.example.com", "a.example.org"] {
        assert!(passthrough(&ca, gw, sni).await.is_none(), "{sni}");
    }
    // A connection that is not TLS at all is closed too.
    let mut plain = TcpStream::connect(gw).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    assert!(gatekit_testkit::closed_by_peer(&mut plain).await);
    assert_eq!((a.accepted(), b.accepted()), before);
    wired.stop().await;
}

#[tokio::test]
async fn tls_terminate_and_passthrough_listeners_share_a_port() {
    let ca = Ca::new();
    let pass = TlsBackend::start(&ca, "pass", "pass.example.com").await;
    let (plain, _) = tcp_echo().await;
    let (cert_pem, key_pem, gw_cert) = ca.leaf("term.example.com");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        &[
            (
                "gw.yaml",
                gateway(&format!(
                    "  - {{ name: pass, port: {port}, protocol: TLS, hostname: pass.example.com, tls: {{ mode: Passthrough }} }}\n\
                     \x20 - {{ name: term, port: {port}, protocol: TLS, hostname: term.example.com, tls: {{ mode: Terminate, certificateRefs: [{{ name: cert }}] }} }}\n"
                )),
            ),
            (
                "cert.yaml",
                gatekit_tests::wired::secret("cert", &cert_pem, &key_pem),
            ),
            ("pass.yaml", l4_service("pass", 443, "TCP", pass.addr)),
            ("plain.yaml", l4_service("plain", 443, "TCP", plain)),
            ("rp.yaml", tls_route("rp", &["pass.example.com"], "pass")),
            ("rt.yaml", tls_route("rt", &["term.example.com"], "plain")),
        ],
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(WAIT, "the TLS port serves", || async {
        passthrough(&ca, gw, "pass.example.com").await.is_some()
    })
    .await;
    let (_, cert, _) = passthrough(&ca, gw, "pass.example.com").await.unwrap();
    assert_eq!(cert, pass.cert);
    // Terminated: the gateway's certificate, the plaintext reaches the echo backend.
    let connector = ca.tls_connector(&[]);
    let mut tls = tls_connect(&connector, gw, "term.example.com")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], gw_cert);
    tls.write_all(b"in the clear behind the gateway")
        .await
        .unwrap();
    let mut echo = [0u8; 31];
    tls.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"in the clear behind the gateway");
    // (A drain waits for open stream connections.)
    drop(tls);
    wired.stop().await;
}

#[tokio::test]
async fn tcp_route_echoes_a_megabyte_both_ways_byte_exact() {
    let (echo, accepted) = tcp_echo().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        &[
            (
                "gw.yaml",
                gateway(&format!(
                    "  - {{ name: tcp, port: {port}, protocol: TCP }}\n"
                )),
            ),
            ("echo.yaml", l4_service("echo", 9000, "TCP", echo)),
            (
                "r.yaml",
                "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n\
                 metadata: { name: r, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n\
                 \x20 rules: [{ backendRefs: [{ name: echo, port: 9000 }] }]\n"
                    .to_owned(),
            ),
        ],
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(WAIT, "the TCP port relays", || async {
        let Ok(mut s) = TcpStream::connect(gw).await else {
            return false;
        };
        let mut b = [0u8; 1];
        s.write_all(b"x").await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut b)).await,
                Ok(Ok(_))
            )
    })
    .await;
    let before = accepted.load(Ordering::SeqCst);

    let data: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let stream = TcpStream::connect(gw).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(data.len());
    tokio::time::timeout(WAIT, r.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echo differs");
    assert_eq!(accepted.load(Ordering::SeqCst), before + 1);
    wired.stop().await;
}

#[tokio::test]
async fn tcp_route_weights_split_a_thousand_connections() {
    let one = tcp_namer(1).await;
    let two = tcp_namer(2).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        &[
            (
                "gw.yaml",
                gateway(&format!("  - {{ name: tcp, port: {port}, protocol: TCP }}\n")),
            ),
            ("one.yaml", l4_service("one", 7000, "TCP", one)),
            ("two.yaml", l4_service("two", 7000, "TCP", two)),
            (
                "r.yaml",
                "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n\
                 metadata: { name: r, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n\
                 \x20 rules: [{ backendRefs: [{ name: one, port: 7000, weight: 3 }, { name: two, port: 7000, weight: 1 }] }]\n"
                    .to_owned(),
            ),
        ],
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let read_id = || async move {
        let mut s = TcpStream::connect(gw).await.ok()?;
        let mut id = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut id))
            .await
            .ok()?
            .ok()?;
        Some(id[0])
    };
    eventually(WAIT, "the TCP port relays", || async {
        read_id().await.is_some()
    })
    .await;
    let mut counts = [0usize; 3];
    for _ in 0..20 {
        let batch: Vec<_> = (0..50).map(|_| tokio::spawn(read_id())).collect();
        for b in batch {
            let id = b
                .await
                .unwrap()
                .expect("every connection reaches a backend");
            counts[usize::from(id)] += 1;
        }
    }
    assert_eq!(counts[1] + counts[2], 1000);
    // 3:1 -> 750/250; a binomial's spread over 1,000 draws is about 14.
    assert!((670..=830).contains(&counts[1]), "{counts:?}");
    wired.stop().await;
}

#[tokio::test]
async fn udp_route_echoes_a_thousand_dns_like_datagrams() {
    // A DNS-like backend: each query (2-byte id, name) gets an answer with the same id.
    let backend = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = backend.recv_from(&mut buf).await {
            let mut answer = buf[..n].to_vec();
            answer.extend_from_slice(b" IN A 10.0.0.1");
            let _ = backend.send_to(&answer, from).await;
        }
    });
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        &[
            (
                "gw.yaml",
                gateway(&format!(
                    "  - {{ name: dns, port: {port}, protocol: UDP }}\n"
                )),
            ),
            ("dns.yaml", l4_service("dns", 53, "UDP", backend_addr)),
            (
                "r.yaml",
                "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\n\
                 metadata: { name: r, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n\
                 \x20 rules: [{ backendRefs: [{ name: dns, port: 53 }] }]\n"
                    .to_owned(),
            ),
        ],
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(gw).await.unwrap();
    let mut buf = [0u8; 1500];
    // Until the port is served, queries go unanswered.
    eventually(WAIT, "the UDP port relays", || async {
        let mut probe = [0u8; 1500];
        client.send(b"\xff\xffready").await.unwrap();
        matches!(
            tokio::time::timeout(Duration::from_millis(100), client.recv(&mut probe)).await,
            Ok(Ok(_))
        )
    })
    .await;
    // Late answers to the readiness probes are skipped by id.
    let mut answered = 0;
    for id in 0..1000u16 {
        let mut query = id.to_be_bytes().to_vec();
        query.extend_from_slice(format!("host{id}.example.com").as_bytes());
        client.send(&query).await.unwrap();
        loop {
            let n = tokio::time::timeout(WAIT, client.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            if buf[..2] == [0xff, 0xff] {
                continue;
            }
            let mut expected = query.clone();
            expected.extend_from_slice(b" IN A 10.0.0.1");
            assert_eq!(&buf[..n], &expected[..], "answer to query {id}");
            answered += 1;
            break;
        }
    }
    assert_eq!(answered, 1000);
    wired.stop().await;
}

#[tokio::test]
async fn a_tls_route_edited_while_serving_keeps_open_passthrough_connections() {
    let ca = Ca::new();
    let a = TlsBackend::start(&ca, "a", "a.example.com").await;
    let b = TlsBackend::start(&ca, "b", "a.example.com").await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        &[
            (
                "gw.yaml",
                gateway(&format!(
                    "  - {{ name: tls, port: {port}, protocol: TLS, tls: {{ mode: Passthrough }} }}\n"
                )),
            ),
            ("a.yaml", l4_service("a", 443, "TCP", a.addr)),
            ("b.yaml", l4_service("b", 443, "TCP", b.addr)),
            ("r.yaml", tls_route("r", &["a.example.com"], "a")),
        ],
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(WAIT, "the TLS port serves", || async {
        passthrough(&ca, gw, "a.example.com").await.is_some()
    })
    .await;
    let (name, _, mut open) = passthrough(&ca, gw, "a.example.com").await.unwrap();
    assert_eq!(name, "a");

    // The route now sends a.example.com to b.
    write_atomic(
        dir.path(),
        "r.yaml",
        &tls_route("r", &["a.example.com"], "b"),
    );
    eventually(WAIT, "new connections reach b", || async {
        matches!(passthrough(&ca, gw, "a.example.com").await, Some((n, _, _)) if n == "b")
    })
    .await;

    // The connection opened before the edit still talks to a.
    open.write_all(b"still here").await.unwrap();
    let mut echo = [0u8; 10];
    tokio::time::timeout(WAIT, open.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"still here");
    drop(open);
    wired.stop().await;
}

#[tokio::test]
async fn tcp_route_follows_endpoint_and_route_changes_while_serving() {
    let one = tcp_namer(1).await;
    let two = tcp_namer(2).await;
    let three = tcp_namer(3).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let route = |backend: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n\
             metadata: {{ name: r, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n\
             \x20 rules: [{{ backendRefs: [{{ name: {backend}, port: 7000 }}] }}]\n"
        )
    };
    write_dir(
        dir.path(),
        &[
            (
                "gw.yaml",
                gateway(&format!(
                    "  - {{ name: tcp, port: {port}, protocol: TCP }}\n"
                )),
            ),
            ("app.yaml", l4_service("app", 7000, "TCP", one)),
            ("other.yaml", l4_service("other", 7000, "TCP", three)),
            ("r.yaml", route("app")),
        ],
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let read_id = || async move {
        let mut s = TcpStream::connect(gw).await.ok()?;
        let mut id = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut id))
            .await
            .ok()?
            .ok()?;
        Some(id[0])
    };
    eventually(WAIT, "backend 1 answers", || async {
        read_id().await == Some(1)
    })
    .await;
    // The Service's endpoint moves (an EndpointSlice change).
    write_atomic(dir.path(), "app.yaml", &l4_service("app", 7000, "TCP", two));
    eventually(WAIT, "backend 2 answers", || async {
        read_id().await == Some(2)
    })
    .await;
    // The route moves to another Service.
    write_atomic(dir.path(), "r.yaml", &route("other"));
    eventually(WAIT, "backend 3 answers", || async {
        read_id().await == Some(3)
    })
    .await;
    // The route goes: the port refuses connections (no route, no backend).
    std::fs::remove_file(dir.path().join("r.yaml")).unwrap();
    eventually(WAIT, "nothing answers", || async {
        read_id().await.is_none()
    })
    .await;
    wired.stop().await;
}

/// A UDP backend that answers every datagram with `id`.
async fn udp_namer(id: u8) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&[id], from).await;
        }
    });
    addr
}

/// A Service `dns` with port 53 twice (TCP first, then UDP) and one EndpointSlice whose
/// endpoint serves TCP on `tcp` and UDP on `udp` (same address).
fn dual_dns(tcp: u16, udp: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{ name: dns-1, namespace: default, labels: {{ kubernetes.io/service-name: dns }} }}\n\
         addressType: IPv4\n\
         ports: [{{ name: dns-tcp, port: {tcp}, protocol: TCP }}, {{ name: dns-udp, port: {udp}, protocol: UDP }}]\n\
         endpoints: [{{ addresses: [\"127.0.0.1\"] }}]\n"
    )
}

#[tokio::test]
async fn an_endpoint_change_on_a_port_number_used_for_tcp_and_udp_reaches_the_udp_upstream() {
    let (first, second) = (udp_namer(1).await, udp_namer(2).await);
    let (tcp, _) = tcp_echo().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        &[
            (
                "gw.yaml",
                gateway(&format!(
                    "  - {{ name: dns, port: {port}, protocol: UDP }}\n"
                )),
            ),
            (
                "svc.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: { name: dns, namespace: default }\n\
                 spec:\n  ports: [{ name: dns-tcp, port: 53, protocol: TCP }, { name: dns-udp, port: 53, protocol: UDP }]\n"
                    .to_owned(),
            ),
            ("slice.yaml", dual_dns(tcp.port(), first.port())),
            (
                "r.yaml",
                "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\n\
                 metadata: { name: r, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n\
                 \x20 rules: [{ backendRefs: [{ name: dns, port: 53 }] }]\n"
                    .to_owned(),
            ),
        ],
    );
    let _wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Each probe is a new client flow, so it picks from the endpoints as they are now.
    let answer = || async move {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(gw).await.unwrap();
        client.send(b"q").await.unwrap();
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(200), client.recv(&mut buf)).await {
            Ok(Ok(1)) => Some(buf[0]),
            _ => None,
        }
    };
    eventually(WAIT, "the first UDP endpoint answers", || async {
        answer().await == Some(1)
    })
    .await;
    // Only the EndpointSlice changes: an endpoint update without translation, which
    // must take the Service's UDP port 53, not the TCP one listed first.
    write_atomic(
        dir.path(),
        "slice.yaml",
        &dual_dns(tcp.port(), second.port()),
    );
    eventually(WAIT, "the UDP upstream follows its own port", || async {
        answer().await == Some(2)
    })
    .await;
}

fn udp_route(name: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\n\
         metadata: {{ name: {name}, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n\
         \x20 rules: [{{ backendRefs: [{{ name: {backend}, port: 53 }}] }}]\n"
    )
}

#[tokio::test]
async fn a_udp_listener_removed_on_reload_closes_its_socket_and_ends_its_flows() {
    let backend = udp_namer(7).await;
    let (udp_port, tcp_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let with_udp = gateway(&format!(
        "  - {{ name: dns, port: {udp_port}, protocol: UDP }}\n  - {{ name: tcp, port: {tcp_port}, protocol: TCP }}\n"
    ));
    write_dir(
        dir.path(),
        &[
            ("gw.yaml", with_udp),
            ("dns.yaml", l4_service("dns", 53, "UDP", backend)),
            ("r.yaml", udp_route("r", "dns")),
        ],
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{udp_port}").parse().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(gw).await.unwrap();
    let answered = || async {
        let _ = client.send(b"q").await;
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_millis(200), client.recv(&mut buf)).await,
            Ok(Ok(1)) if buf[0] == 7
        )
    };
    eventually(WAIT, "the UDP port relays", answered).await;
    let open = r#"gatekit_stream_connections_open{route="default/udp:r",protocol="udp"} 1"#;
    let (_, metrics) = wired.admin("/metrics").await;
    assert!(metrics.lines().any(|l| l == open), "{metrics}");

    // The UDP listener goes; the TCP one stays.
    write_atomic(
        dir.path(),
        "gw.yaml",
        &gateway(&format!(
            "  - {{ name: tcp, port: {tcp_port}, protocol: TCP }}\n"
        )),
    );
    eventually(WAIT, "the UDP port can be bound again", || async {
        std::net::UdpSocket::bind(gw).is_ok()
    })
    .await;
    // Its flow ended with it.
    let (_, metrics) = wired.admin("/metrics").await;
    assert!(!metrics.lines().any(|l| l == open), "{metrics}");
    assert!(!answered().await, "nothing answers on the removed port");
    wired.stop().await;
}

#[tokio::test]
async fn a_tcp_route_and_a_udp_route_are_served_on_one_port_number() {
    let (tcp_backend, _) = tcp_echo().await;
    let udp_backend = udp_namer(9).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        &[
            (
                "gw.yaml",
                gateway(&format!(
                    "  - {{ name: dns-tcp, port: {port}, protocol: TCP }}\n  - {{ name: dns-udp, port: {port}, protocol: UDP }}\n"
                )),
            ),
            ("tcp.yaml", l4_service("tcp", 53, "TCP", tcp_backend)),
            ("udp.yaml", l4_service("dns", 53, "UDP", udp_backend)),
            (
                "tcp-route.yaml",
                "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n\
                 metadata: { name: t, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n\
                 \x20 rules: [{ backendRefs: [{ name: tcp, port: 53 }] }]\n"
                    .to_owned(),
            ),
            ("udp-route.yaml", udp_route("u", "dns")),
        ],
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // UDP: a datagram answered by the UDP backend.
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(gw).await.unwrap();
    eventually(WAIT, "the UDP port answers", || async {
        let _ = client.send(b"q").await;
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_millis(200), client.recv(&mut buf)).await,
            Ok(Ok(1)) if buf[0] == 9
        )
    })
    .await;
    // TCP: bytes echoed by the TCP backend.
    let mut tcp = TcpStream::connect(gw).await.unwrap();
    tcp.write_all(b"over tcp").await.unwrap();
    let mut echo = [0u8; 8];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"over tcp");
    drop(tcp);
    // The Gateway's listeners are not in conflict.
    let config = wired.config().await.to_string();
    assert!(!config.contains("ProtocolConflict"), "{config}");
    wired.stop().await;
}
