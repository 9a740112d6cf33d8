//! TLS streams over real sockets and real certificates: passthrough by SNI (the client
//! sees the backend's certificate, a client certificate reaches the backend untouched),
//! unknown or missing SNI closed before any backend is contacted, termination with
//! gatekit's certificate, and a port mixing both.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_core::route::RouteId;
use gatekit_core::server::{Drain, Server, ServerConfig, ServerHandle};
use gatekit_core::stream::{
    ListenerMode, StreamBackend, StreamBackendRef, StreamListener, StreamRoute, StreamRouter,
    StreamTable,
};
use gatekit_core::tls::{
    CertSet, CertStore, TlsAcceptor, load_certified_key, load_certs, load_private_key,
    server_config,
};
use gatekit_testkit::Ca;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("test step timed out")
}

/// A TLS backend with its own certificate for `name`, requiring a client certificate
/// issued by `ca` when `client_auth`. Each connection gets `name`, then a line with the
/// number of client certificates and the first one's length, then an echo.
async fn tls_backend(
    ca: &Ca,
    name: &str,
    client_auth: bool,
) -> (SocketAddr, Arc<AtomicUsize>, CertificateDer<'static>) {
    let (cert, key, der) = ca.leaf_pem(&[name]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if client_auth {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(
            load_certs(cert.as_bytes(), "test").unwrap(),
            load_private_key(key.as_bytes(), "test").unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let (acceptor, name) = (acceptor.clone(), name.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let certs = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
                let line = format!(
                    "{name} {} {}\n",
                    certs.len(),
                    certs.first().map_or(0, |c| c.len())
                );
                tls.write_all(line.as_bytes()).await.unwrap();
                let (mut r, mut w) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, accepted, der)
}

/// A plain echo backend counting its connections.
async fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, accepted)
}

fn route(name: &str, hostnames: &[&str], backend: &str) -> Arc<StreamRoute> {
    let mut r = StreamRoute::new(RouteId::new("default", name));
    r.hostnames = hostnames.iter().map(|h| (*h).to_owned()).collect();
    r.backends = vec![StreamBackendRef::new(backend, 1)];
    Arc::new(r)
}

async fn serve(table: StreamTable) -> ServerHandle {
    Server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .config(ServerConfig::default())
        .drain(&Drain::new())
        .serve_streams(StreamRouter::new(table).client_hello_timeout(Duration::from_secs(2)))
}

fn terminate(ca: &Ca, name: &str) -> (TlsAcceptor, CertificateDer<'static>) {
    let (cert, key, der) = ca.leaf_pem(&[name]);
    let mut set = CertSet::new();
    set.insert(
        name,
        load_certified_key(cert.as_bytes(), key.as_bytes(), name).unwrap(),
    )
    .unwrap();
    let store = Arc::new(CertStore::new(set));
    (
        TlsAcceptor::new(Arc::new(server_config(store).unwrap())),
        der,
    )
}

async fn read_line<IO: tokio::io::AsyncRead + Unpin>(io: &mut IO) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        within(io.read_exact(&mut byte)).await.unwrap();
        if byte[0] == b'\n' {
            return String::from_utf8(line).unwrap();
        }
        line.push(byte[0]);
    }
}

fn client_with_cert(ca: &Ca, name: &str) -> (tokio_rustls::TlsConnector, CertificateDer<'static>) {
    let (cert, key, der) = ca.leaf_pem(&[name]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        load_certs(cert.as_bytes(), "test").unwrap(),
        load_private_key(key.as_bytes(), "test").unwrap(),
    )
    .unwrap();
    (tokio_rustls::TlsConnector::from(Arc::new(config)), der)
}

#[tokio::test]
async fn passthrough_routes_by_sni_and_the_client_sees_the_backends_certificate() {
    let ca = Ca::new();
    let (a, a_accepted, a_der) = tls_backend(&ca, "a.test", false).await;
    let (b, b_accepted, b_der) = tls_backend(&ca, "b.test", true).await;
    let table = StreamTable::build(
        vec![
            StreamListener::new(ListenerMode::Passthrough)
                .routes([route("a", &["a.test"], "a"), route("b", &["b.test"], "b")]),
        ],
        |name| match name {
            "a" => Some(StreamBackend::fixed([a])),
            "b" => Some(StreamBackend::fixed([b])),
            _ => None,
        },
    )
    .unwrap();
    let server = serve(table).await;
    let addr = server.local_addr();
    let connector = ca.tls_connector(&[]);

    let mut tls = within(gatekit_testkit::tls_connect(&connector, addr, "a.test"))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], a_der);
    assert_eq!(read_line(&mut tls).await, "a.test 0 0");
    tls.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    within(tls.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"ping");

    // b requires a client certificate: it reaches b untouched and b verifies it.
    let (with_cert, client_der) = client_with_cert(&ca, "client.test");
    let mut tls = within(gatekit_testkit::tls_connect(&with_cert, addr, "b.test"))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], b_der);
    assert_eq!(
        read_line(&mut tls).await,
        format!("b.test 1 {}", client_der.len())
    );
    assert_eq!(
        (
            a_accepted.load(Ordering::SeqCst),
            b_accepted.load(Ordering::SeqCst)
        ),
        (1, 1)
    );

    // Unknown SNI and no SNI: closed, no backend contacted.
    assert!(
        within(gatekit_testkit::tls_connect(&connector, addr, "c.test"))
            .await
            .is_err()
    );
    let tcp = TcpStream::connect(addr).await.unwrap();
    let no_sni = connector
        .connect(
            ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into()),
            tcp,
        )
        .await;
    assert!(no_sni.is_err());
    // Not TLS at all.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = within(tcp.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    assert_eq!(
        (
            a_accepted.load(Ordering::SeqCst),
            b_accepted.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn terminate_and_passthrough_share_a_port_chosen_by_listener_hostname() {
    let ca = Ca::new();
    let (plain, plain_accepted) = echo().await;
    let (pass, _, pass_der) = tls_backend(&ca, "x.pass.test", false).await;
    let (acceptor, gatekit_der) = terminate(&ca, "term.test");
    let table = StreamTable::build(
        vec![
            StreamListener::new(ListenerMode::Terminate(acceptor))
                .hostname(Some("term.test"))
                .routes([route("t", &[], "plain")]),
            StreamListener::new(ListenerMode::Passthrough)
                .hostname(Some("*.pass.test"))
                .routes([route("p", &[], "pass")]),
        ],
        |name| match name {
            "plain" => Some(StreamBackend::fixed([plain])),
            "pass" => Some(StreamBackend::fixed([pass])),
            _ => None,
        },
    )
    .unwrap();
    let server = serve(table).await;
    let connector = ca.tls_connector(&[]);

    // Terminated: gatekit's certificate, plaintext to the backend.
    let tls = within(gatekit_testkit::tls_connect(
        &connector,
        server.local_addr(),
        "term.test",
    ))
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], gatekit_der);
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let (mut r, mut w) = tokio::io::split(tls);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w
    });
    let mut got = vec![0u8; data.len()];
    within(r.read_exact(&mut got)).await.unwrap();
    assert!(got == data);
    drop(writer.await.unwrap());
    assert_eq!(plain_accepted.load(Ordering::SeqCst), 1);

    // Passed through on the same port.
    let mut tls = within(gatekit_testkit::tls_connect(
        &connector,
        server.local_addr(),
        "x.pass.test",
    ))
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], pass_der);
    assert_eq!(read_line(&mut tls).await, "x.pass.test 0 0");
}
