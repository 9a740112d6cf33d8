//! TLS termination over real sockets: SNI selection, wildcards, unknown names, certificate
//! rotation, ALPN h2, handshake deadline, and PEM key formats.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::ConnectionInfo;
use gatekit_core::server::{Server, ServerHandle};
use gatekit_core::tls::{
    CertSet, CertStore, CertifiedKey, TlsAcceptor, TlsError, load_certified_key,
    load_certified_key_files, load_private_key, server_config,
};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use gatekit_testkit::Ca;

/// Leaves as rustls certified keys, and clients with ALPN.
trait CaExt {
    /// A leaf for `names`, as (certified key, leaf DER).
    fn leaf(&self, names: &[&str]) -> (Arc<CertifiedKey>, CertificateDer<'static>);
    fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector;
}

impl CaExt for Ca {
    fn leaf(&self, names: &[&str]) -> (Arc<CertifiedKey>, CertificateDer<'static>) {
        let (cert, key, der) = self.leaf_pem(names);
        let certified = load_certified_key(cert.as_bytes(), key.as_bytes(), names[0]).unwrap();
        (certified, der)
    }

    fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        self.tls_connector(alpn)
    }
}

/// Serves "hello" over TLS on a fresh port with `store`, through gatekit's [`Server`];
/// each response names, in headers, the SNI name (`x-sni`), ALPN protocol (`x-alpn`) and
/// client certificate count (`x-client-certs`) the request's `ConnectionInfo` carries.
/// Returns the address and the handle that keeps the listener open.
async fn tls_server(
    store: Arc<CertStore>,
    handshake_timeout: Duration,
) -> (SocketAddr, ServerHandle) {
    let config = Arc::new(server_config(store).unwrap());
    let acceptor = TlsAcceptor::new(config).with_handshake_timeout(handshake_timeout);
    let svc = tower::service_fn(|req: Request<gatekit_core::Body>| async move {
        let info = req.extensions().get::<ConnectionInfo>().unwrap();
        let body = format!("hello {:?} tls={}", req.version(), info.is_tls());
        let tls = info.tls().unwrap();
        let alpn = String::from_utf8_lossy(tls.alpn_protocol().unwrap_or(b"none")).into_owned();
        let certs = tls.peer_certificates().map_or(0, <[_]>::len);
        let rsp = Response::builder()
            .header("x-sni", tls.server_name().unwrap_or("none"))
            .header("x-alpn", alpn)
            .header("x-client-certs", certs)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        Ok::<_, Infallible>(rsp)
    });
    let server = Server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .tls(acceptor)
        .serve(svc);
    (server.local_addr(), server)
}

async fn handshake(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

fn peer_leaf(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// The SAN dNSName is an IA5String: its bytes appear verbatim in the certificate's DER.
fn has_san(cert: &CertificateDer<'_>, name: &str) -> bool {
    cert.windows(name.len()).any(|w| w == name.as_bytes())
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn http1(stream: tokio_rustls::client::TlsStream<TcpStream>) -> Sender {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get(sender: &mut Sender) -> String {
    let req = Request::get("/").body(Empty::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn sni_chooses_among_hostnames_and_wildcards() {
    let ca = Ca::new();
    let (a, a_der) = ca.leaf(&["a.test"]);
    let (b, b_der) = ca.leaf(&["b.test"]);
    let (w, w_der) = ca.leaf(&["*.wild.test"]);
    let mut set = CertSet::new();
    set.insert("a.test", a).unwrap();
    set.insert("b.test", b).unwrap();
    set.insert("*.wild.test", w).unwrap();
    let (addr, _server) = tls_server(Arc::new(CertStore::new(set)), Duration::from_secs(10)).await;
    let connector = ca.connector(&[b"http/1.1"]);

    for (sni, der, san) in [
        ("a.test", &a_der, "a.test"),
        ("b.test", &b_der, "b.test"),
        ("x.wild.test", &w_der, "*.wild.test"),
    ] {
        let stream = handshake(&connector, addr, sni).await.unwrap();
        let leaf = peer_leaf(&stream);
        assert_eq!(&leaf, der, "{sni}");
        assert!(has_san(&leaf, san), "{sni}");
        let mut sender = http1(stream).await;
        assert_eq!(get(&mut sender).await, "hello HTTP/1.1 tls=true");
    }
}

#[tokio::test]
async fn unknown_sni_without_default_fails_the_handshake() {
    let ca = Ca::new();
    let (a, _) = ca.leaf(&["a.test"]);
    let (w, _) = ca.leaf(&["*.wild.test"]);
    let mut set = CertSet::new();
    set.insert("a.test", a).unwrap();
    set.insert("*.wild.test", w).unwrap();
    let (addr, _server) = tls_server(Arc::new(CertStore::new(set)), Duration::from_secs(10)).await;
    let connector = ca.connector(&[]);
    for sni in ["unknown.test", "wild.test", "x.y.wild.test"] {
        let err = handshake(&connector, addr, sni).await.unwrap_err();
        // rustls surfaces the server's alert to the client.
        assert!(err.to_string().contains("alert"), "{sni}: {err}");
    }
}

#[tokio::test]
async fn replace_rotates_for_new_handshakes_and_keeps_open_connections() {
    let ca = Ca::new();
    let (old, old_der) = ca.leaf(&["a.test"]);
    let (new, new_der) = ca.leaf(&["a.test"]);
    let mut set = CertSet::new();
    set.insert("a.test", old).unwrap();
    let store = Arc::new(CertStore::new(set));
    let (addr, _server) = tls_server(store.clone(), Duration::from_secs(10)).await;
    let connector = ca.connector(&[b"http/1.1"]);

    let first = handshake(&connector, addr, "a.test").await.unwrap();
    assert_eq!(peer_leaf(&first), old_der);
    let mut first = http1(first).await;
    get(&mut first).await;

    let mut set = CertSet::new();
    set.insert("a.test", new).unwrap();
    store.replace(set);

    let second = handshake(&connector, addr, "a.test").await.unwrap();
    assert_eq!(peer_leaf(&second), new_der);
    // The connection made before the swap still serves requests.
    assert_eq!(get(&mut first).await, "hello HTTP/1.1 tls=true");
}

#[tokio::test]
async fn alpn_h2_serves_http2() {
    let ca = Ca::new();
    let (a, _) = ca.leaf(&["a.test"]);
    let store = CertStore::new(CertSet::new().with_default(a));
    let (addr, _server) = tls_server(Arc::new(store), Duration::from_secs(10)).await;
    let stream = handshake(&ca.connector(&[b"h2"]), addr, "a.test")
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("https://a.test/")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello HTTP/2.0 tls=true");
}

/// One request on `stream` (HTTP/1.1 or h2 by its ALPN); the response's `x-sni`,
/// `x-alpn` and `x-client-certs` headers.
async fn connection_facts(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
) -> (String, String, String) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let req = Request::get("https://a.test/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        http1(stream).await.send_request(req).await.unwrap()
    };
    let header = |name: &str| resp.headers()[name].to_str().unwrap().to_owned();
    (header("x-sni"), header("x-alpn"), header("x-client-certs"))
}

#[tokio::test]
async fn connection_info_carries_sni_and_alpn_to_the_service() {
    let ca = Ca::new();
    let (a, _) = ca.leaf(&["a.test"]);
    let (w, _) = ca.leaf(&["*.wild.test"]);
    let mut set = CertSet::new();
    set.insert("a.test", a).unwrap();
    set.insert("*.wild.test", w).unwrap();
    let (addr, _server) = tls_server(Arc::new(CertStore::new(set)), Duration::from_secs(10)).await;

    for (sni, alpn, expected) in [
        ("a.test", &[&b"h2"[..], b"http/1.1"][..], "h2"),
        ("a.test", &[&b"http/1.1"[..]][..], "http/1.1"),
        ("x.wild.test", &[&b"h2"[..]][..], "h2"),
        ("x.wild.test", &[][..], "none"),
    ] {
        let stream = handshake(&ca.connector(alpn), addr, sni).await.unwrap();
        // No client certificate is requested, so none is carried.
        assert_eq!(
            connection_facts(stream).await,
            (sni.to_owned(), expected.to_owned(), "0".to_owned()),
            "{sni} {expected}"
        );
    }
}

#[tokio::test]
async fn silent_client_is_closed_after_the_handshake_timeout() {
    let ca = Ca::new();
    let (a, _) = ca.leaf(&["a.test"]);
    let store = CertStore::new(CertSet::new().with_default(a));
    let (addr, _server) = tls_server(Arc::new(store), Duration::from_millis(200)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    // The server gives up on the handshake and closes: the read ends (EOF or reset)
    // long before the outer bound.
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("server did not close the silent connection");
    assert!(matches!(read, Ok(0) | Err(_)));
}

#[test]
fn all_three_key_formats_load() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    // PKCS#1 RSA and SEC1 EC: fixed files generated once with openssl (see README.md there).
    let rsa_pem = std::fs::read(data.join("rsa-pkcs1.key")).unwrap();
    assert!(matches!(
        load_private_key(&rsa_pem, "rsa").unwrap(),
        PrivateKeyDer::Pkcs1(_)
    ));
    load_certified_key_files(&data.join("rsa.crt"), &data.join("rsa-pkcs1.key")).unwrap();

    let ec_pem = std::fs::read(data.join("ec-sec1.key")).unwrap();
    assert!(matches!(
        load_private_key(&ec_pem, "ec").unwrap(),
        PrivateKeyDer::Sec1(_)
    ));
    load_certified_key_files(&data.join("ec.crt"), &data.join("ec-sec1.key")).unwrap();

    // PKCS#8: generated by rcgen.
    let cert = rcgen::generate_simple_self_signed(vec!["p8.test".to_owned()]).unwrap();
    let key_pem = cert.signing_key.serialize_pem();
    assert!(matches!(
        load_private_key(key_pem.as_bytes(), "p8").unwrap(),
        PrivateKeyDer::Pkcs8(_)
    ));
    load_certified_key(cert.cert.pem().as_bytes(), key_pem.as_bytes(), "p8").unwrap();
}

#[test]
fn load_errors_name_what_failed() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let rsa_crt = std::fs::read(data.join("rsa.crt")).unwrap();
    let ec_key = std::fs::read(data.join("ec-sec1.key")).unwrap();

    let err = load_certified_key(&rsa_crt, &ec_key, "secret default/mixed").unwrap_err();
    assert!(matches!(err, TlsError::KeyRejected { .. }), "{err}");
    assert!(err.to_string().contains("secret default/mixed"), "{err}");

    let err = load_certified_key(b"", &ec_key, "secret default/empty").unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    assert!(err.to_string().contains("secret default/empty"), "{err}");

    let err = load_certified_key(&rsa_crt, b"not a key", "secret default/nokey").unwrap_err();
    assert!(matches!(err, TlsError::PrivateKeyPem { .. }), "{err}");
    assert!(err.to_string().contains("PKCS#8"), "{err}");

    let missing = data.join("missing.crt");
    let err = load_certified_key_files(&missing, &data.join("ec-sec1.key")).unwrap_err();
    assert!(matches!(err, TlsError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.crt"), "{err}");
}
