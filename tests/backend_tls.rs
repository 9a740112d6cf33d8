//! BackendTLSPolicy end to end, through the wired gateway (`gatekit run`'s library
//! entry point) to real hyper + rustls backends with certificates from a test CA:
//! re-encryption with the policy's CA and hostname, subjectAltNames (DNS and URI),
//! verification failures as 502 `upstream-tls`, `wellKnownCACertificates: System`,
//! invalid CA references as 500 without a byte to the backend, the Gateway's client
//! certificate for mutual TLS, upstreams with different TLS settings on one endpoint
//! address never sharing a connection, and active health checks over TLS.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gatekit_tests::TestClient;
use gatekit_tests::wired::{Wired, eventually, free_port, gateway_http};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// A test CA issuing leaves with chosen subject alternative names (DNS, URI), whose
/// certificate is also needed as PEM (for a ConfigMap's `ca.crt`).
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    der: CertificateDer<'static>,
    pem: String,
}

impl Ca {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (der, pem) = (cert.der().clone(), cert.pem());
        Self {
            params,
            key,
            der,
            pem,
        }
    }

    fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf for DNS names `names`: (cert PEM, key PEM).
    fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        self.leaf_with_sans(
            names
                .iter()
                .map(|n| rcgen::SanType::DnsName((*n).try_into().unwrap()))
                .collect(),
        )
    }

    /// A leaf whose subject alternative names are exactly `sans`: (cert PEM, key PEM).
    fn leaf_with_sans(&self, sans: Vec<rcgen::SanType>) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// What a TLS backend saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    /// The SNI of the connection the request came on.
    sni: Option<String>,
    /// Whether the connection's client presented a certificate.
    client_cert: bool,
    /// The connection's id (counted from 1 in accept order).
    connection: usize,
    user_agent: Option<String>,
    version: http::Version,
}

/// A hyper server over rustls (HTTP/1.1 and h2 by ALPN) answering 200 to everything and
/// recording each request with its connection's TLS facts. With `client_ca`, it
/// requires a client certificate issued by that CA.
struct TlsBackend {
    addr: SocketAddr,
    seen: Arc<Log<Seen>>,
    handshakes: Arc<AtomicUsize>,
}

/// An append-only log the backend writes and the test reads between requests.
#[derive(Debug)]
struct Log<T>(std::sync::Mutex<Vec<T>>);

impl<T: Clone> Log<T> {
    fn new() -> Self {
        Self(std::sync::Mutex::new(Vec::new()))
    }

    fn push(&self, t: T) {
        self.0.lock().unwrap().push(t);
    }

    fn all(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}

impl TlsBackend {
    async fn start(cert_pem: &str, key_pem: &str, client_ca: Option<&Ca>) -> Self {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der().clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Log::<Seen>::new());
        let handshakes = Arc::new(AtomicUsize::new(0));
        let (log, count) = (seen.clone(), handshakes.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let (log, count) = (log.clone(), count.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let connection = count.fetch_add(1, Ordering::SeqCst) + 1;
                    let (_, conn) = tls.get_ref();
                    let sni = conn.server_name().map(str::to_owned);
                    let client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        log.push(Seen {
                            path: req.uri().path().to_owned(),
                            sni: sni.clone(),
                            client_cert,
                            connection,
                            user_agent: req
                                .headers()
                                .get("user-agent")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                            version: req.version(),
                        });
                        async move {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"tls ok",
                            ))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            handshakes,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.all()
    }
}

fn dir_with(files: &[(&str, String)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let dirs = vec![dir.path().to_path_buf()];
    (dir, dirs)
}

/// A Service `name` whose port 443 (named `https`, `appProtocol` as given) has one
/// endpoint at `addr`, and an HTTPRoute on Gateway `gateway` sending `/<name>` to it.
fn tls_service(name: &str, app_protocol: Option<&str>, addr: SocketAddr, gateway: &str) -> String {
    let app = app_protocol
        .map(|p| format!(", appProtocol: \"{p}\""))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{ name: {name}, namespace: default }}
spec:
  ports: [{{ name: https, port: 443{app} }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: {name}-1, namespace: default, labels: {{ kubernetes.io/service-name: {name} }} }}
addressType: IPv4
ports: [{{ name: https, port: {port} }}]
endpoints: [{{ addresses: ["{ip}"] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: {name}-{gateway}, namespace: default }}
spec:
  parentRefs: [{{ name: {gateway} }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: "/{name}" }} }}]
    backendRefs: [{{ name: {name}, port: 443 }}]
"#,
        port = addr.port(),
        ip = addr.ip()
    )
}

/// A ConfigMap `name` holding `pem` under `ca.crt`.
fn ca_config_map(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: {name}, namespace: default }}\ndata:\n  ca.crt: |\n{indented}"
    )
}

/// A BackendTLSPolicy `name` on Service `service` with `validation` (YAML lines
/// indented by four spaces).
fn policy(name: &str, service: &str, validation: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{ name: {name}, namespace: default }}
spec:
  targetRefs: [{{ group: "", kind: Service, name: {service} }}]
  validation:
{validation}"#
    )
}

fn ca_ref(config_map: &str) -> String {
    format!("    caCertificateRefs: [{{ group: \"\", kind: ConfigMap, name: {config_map} }}]\n")
}

async fn get(port: u16, path: &str) -> gatekit_tests::Reply {
    TestClient::new()
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .await
}

#[tokio::test]
async fn the_policy_ca_and_hostname_reencrypt_to_the_backend() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf_pem(&["backend.example"]);
    let backend = TlsBackend::start(&cert, &key, None).await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        (
            "svc.yaml",
            tls_service("secure", Some("https"), backend.addr, "gw"),
        ),
        ("ca.yaml", ca_config_map("ca", ca.pem())),
        (
            "policy.yaml",
            policy(
                "secure",
                "secure",
                &format!("{}    hostname: backend.example\n", ca_ref("ca")),
            ),
        ),
    ]);
    let wired = Wired::start(&dirs).await;
    let rsp = get(port, "/secure/a").await;
    assert_eq!(
        rsp.status,
        StatusCode::OK,
        "{:?}",
        rsp.header("x-gatekit-error")
    );
    assert_eq!(&rsp.body[..], b"tls ok");
    let seen = backend.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/secure/a");
    assert_eq!(seen[0].sni.as_deref(), Some("backend.example"));
    assert_eq!(seen[0].version, http::Version::HTTP_11);
    let config = wired.config().await;
    let upstream = &config["upstreams"]["default/secure:443"];
    assert_eq!(upstream["protocol"], "http/1.1 over TLS", "{config}");
    assert_eq!(upstream["tls"]["serverName"], "backend.example", "{config}");
    let resources = config["resources"].to_string();
    assert!(resources.contains("BackendTLSPolicy"), "{resources}");
}

#[tokio::test]
async fn subject_alt_names_of_dns_and_uri_type_verify_and_mismatches_answer_502() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf_with_sans(vec![
        rcgen::SanType::DnsName("other.example".try_into().unwrap()),
        rcgen::SanType::URI(
            "spiffe://cluster.local/ns/default/sa/backend"
                .try_into()
                .unwrap(),
        ),
    ]);
    let backend = TlsBackend::start(&cert, &key, None).await;
    let port = free_port();
    let cases = [
        ("dns", "[{ type: Hostname, hostname: other.example }]", true),
        (
            "uri",
            "[{ type: URI, uri: \"spiffe://cluster.local/ns/default/sa/backend\" }]",
            true,
        ),
        (
            "multi",
            "[{ type: Hostname, hostname: nope.example }, { type: URI, uri: \"spiffe://cluster.local/ns/default/sa/backend\" }]",
            true,
        ),
        (
            "dnsbad",
            "[{ type: Hostname, hostname: wrong.example }]",
            false,
        ),
        (
            "uribad",
            "[{ type: URI, uri: \"spiffe://cluster.local/ns/default/sa/other\" }]",
            false,
        ),
    ];
    let mut files = vec![
        ("gateway.yaml".to_owned(), gateway_http(port)),
        ("ca.yaml".to_owned(), ca_config_map("ca", ca.pem())),
    ];
    for (name, sans, _) in cases {
        files.push((
            format!("{name}.yaml"),
            tls_service(name, None, backend.addr, "gw"),
        ));
        // The hostname is the SNI only: the certificate does not carry it.
        files.push((
            format!("{name}-policy.yaml"),
            policy(
                name,
                name,
                &format!(
                    "{}    hostname: abc.example\n    subjectAltNames: {sans}\n",
                    ca_ref("ca")
                ),
            ),
        ));
    }
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let (_dir, dirs) = dir_with(&files);
    let _wired = Wired::start(&dirs).await;
    for (name, _, ok) in cases {
        let rsp = get(port, &format!("/{name}/x")).await;
        if ok {
            assert_eq!(
                rsp.status,
                StatusCode::OK,
                "{name}: {:?}",
                rsp.header("x-gatekit-error")
            );
        } else {
            assert_eq!(rsp.status, StatusCode::BAD_GATEWAY, "{name}");
            assert_eq!(
                rsp.header("x-gatekit-error"),
                Some("upstream-tls"),
                "{name}"
            );
        }
    }
    let seen = backend.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/dns/x", "/uri/x", "/multi/x"]);
    assert!(
        seen.iter().all(|s| s.sni.as_deref() == Some("abc.example")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn another_ca_or_another_hostname_fails_verification_with_502_upstream_tls() {
    let ca = Ca::new();
    let rogue = Ca::new();
    let (cert, key) = ca.leaf_pem(&["backend.example"]);
    let good = TlsBackend::start(&cert, &key, None).await;
    let (rogue_cert, rogue_key) = rogue.leaf_pem(&["backend.example"]);
    let impostor = TlsBackend::start(&rogue_cert, &rogue_key, None).await;
    let port = free_port();
    let valid = format!("{}    hostname: backend.example\n", ca_ref("ca"));
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("ca.yaml", ca_config_map("ca", ca.pem())),
        (
            "rogue.yaml",
            tls_service("rogue", Some("https"), impostor.addr, "gw"),
        ),
        ("rogue-policy.yaml", policy("rogue", "rogue", &valid)),
        (
            "misnamed.yaml",
            tls_service("misnamed", None, good.addr, "gw"),
        ),
        (
            "misnamed-policy.yaml",
            policy(
                "misnamed",
                "misnamed",
                &format!("{}    hostname: elsewhere.example\n", ca_ref("ca")),
            ),
        ),
    ]);
    let _wired = Wired::start(&dirs).await;
    for path in ["/rogue/x", "/misnamed/x"] {
        let rsp = get(port, path).await;
        assert_eq!(rsp.status, StatusCode::BAD_GATEWAY, "{path}");
        assert_eq!(
            rsp.header("x-gatekit-error"),
            Some("upstream-tls"),
            "{path}"
        );
    }
    // No request reached either backend: the handshakes failed on gatekit's side.
    assert!(good.seen().is_empty());
    assert!(impostor.seen().is_empty());
}

#[tokio::test]
async fn well_known_system_roots_are_accepted_and_do_not_trust_a_test_ca() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf_pem(&["backend.example"]);
    let backend = TlsBackend::start(&cert, &key, None).await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("svc.yaml", tls_service("public", None, backend.addr, "gw")),
        (
            "policy.yaml",
            policy(
                "public",
                "public",
                "    wellKnownCACertificates: System\n    hostname: backend.example\n",
            ),
        ),
    ]);
    let wired = Wired::start(&dirs).await;
    let rsp = get(port, "/public/x").await;
    assert_eq!(rsp.status, StatusCode::BAD_GATEWAY);
    assert_eq!(rsp.header("x-gatekit-error"), Some("upstream-tls"));
    assert!(backend.seen().is_empty());
    let config = wired.config().await;
    let statuses = &config["resources"];
    let policy = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.to_string().contains("BackendTLSPolicy"))
        .unwrap_or_else(|| panic!("{statuses}"))
        .to_string();
    assert!(policy.contains("\"Accepted\""), "{policy}");
    assert!(!policy.contains("\"False\""), "{policy}");
}

#[tokio::test]
async fn an_invalid_ca_reference_answers_500_and_never_sends_cleartext() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("svc.yaml", tls_service("broken", None, addr, "gw")),
        (
            "policy.yaml",
            policy(
                "broken",
                "broken",
                &format!("{}    hostname: backend.example\n", ca_ref("missing")),
            ),
        ),
    ]);
    let wired = Wired::start(&dirs).await;
    let rsp = get(port, "/broken/x").await;
    assert_eq!(rsp.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(rsp.header("x-gatekit-error"), Some("invalid-backend"));
    let resources = wired.config().await["resources"].to_string();
    assert!(resources.contains("NoValidCACertificate"), "{resources}");
    assert!(resources.contains("InvalidCACertificateRef"), "{resources}");
    assert!(resources.contains("InvalidBackendTLSPolicy"), "{resources}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

/// A WebSocket echo server over TLS (rustls, ALPN `http/1.1`) with `cert_pem`; returns
/// its address and the SNIs of the connections it accepted.
async fn wss_echo(cert_pem: &str, key_pem: &str) -> (SocketAddr, Arc<Log<Option<String>>>) {
    use futures_util::{SinkExt, StreamExt};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let snis = Arc::new(Log::new());
    let log = snis.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                log.push(tls.get_ref().1.server_name().map(str::to_owned));
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
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
    (addr, snis)
}

#[tokio::test]
async fn a_websocket_upgrade_reaches_a_wss_port_over_tls_under_a_policy() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ca = Ca::new();
    let (cert, key) = ca.leaf_pem(&["chat.example"]);
    let (addr, snis) = wss_echo(&cert, &key).await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("ca.yaml", ca_config_map("ca", ca.pem())),
        (
            "svc.yaml",
            tls_service("chat", Some("kubernetes.io/wss"), addr, "gw"),
        ),
        (
            "policy.yaml",
            policy(
                "chat",
                "chat",
                &format!("{}    hostname: chat.example\n", ca_ref("ca")),
            ),
        ),
    ]);
    let _wired = Wired::start(&dirs).await;
    let (mut ws, rsp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/chat")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(rsp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("over tls")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("over tls"));
    assert_eq!(snis.all(), [Some("chat.example".to_owned())]);
}

/// Two Gateways (two ports) whose routes reach one Service that requires a client
/// certificate from the test CA; only one Gateway names a client certificate.
#[tokio::test]
async fn the_gateways_client_certificate_is_presented_and_without_one_the_backend_refuses() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf_pem(&["backend.example"]);
    let backend = TlsBackend::start(&cert, &key, Some(&ca)).await;
    let (client_cert, client_key) = ca.leaf_pem(&["gateway.example"]);
    let (with, without) = (free_port(), free_port());
    let gateways = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: mtls, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: {with}, protocol: HTTP }}]
  tls:
    backend:
      clientCertificateRef: {{ group: "", kind: Secret, name: client }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: plain, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: {without}, protocol: HTTP }}]
"#
    );
    let route_plain = tls_service("strict", None, backend.addr, "plain");
    let route_plain = route_plain.split("---\n").nth(2).unwrap().to_owned();
    let (_dir, dirs) = dir_with(&[
        ("gateways.yaml", gateways),
        (
            "client.yaml",
            gatekit_tests::wired::secret("client", &client_cert, &client_key),
        ),
        (
            "svc.yaml",
            tls_service("strict", None, backend.addr, "mtls"),
        ),
        ("route-plain.yaml", route_plain),
        ("ca.yaml", ca_config_map("ca", ca.pem())),
        (
            "policy.yaml",
            policy(
                "strict",
                "strict",
                &format!("{}    hostname: backend.example\n", ca_ref("ca")),
            ),
        ),
    ]);
    let wired = Wired::start(&dirs).await;
    let rsp = get(with, "/strict/a").await;
    assert_eq!(
        rsp.status,
        StatusCode::OK,
        "{:?}",
        rsp.header("x-gatekit-error")
    );
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].client_cert);
    let rsp = get(without, "/strict/b").await;
    assert_eq!(rsp.status, StatusCode::BAD_GATEWAY);
    assert_eq!(rsp.header("x-gatekit-error"), Some("upstream-tls"));
    assert_eq!(
        backend.seen().len(),
        1,
        "no request came without a certificate"
    );
    // One upstream per client certificate: the routes of each Gateway name their own.
    let config = wired.config().await;
    let upstreams = &config["upstreams"];
    assert_eq!(
        upstreams["default/strict:443@client=default/client"]["tls"]["clientCertificate"],
        "Secret default/client",
        "{upstreams}"
    );
    assert!(
        upstreams["default/strict:443"]["tls"]["clientCertificate"].is_null(),
        "{upstreams}"
    );
    let resources = config["resources"].to_string();
    assert!(resources.contains("ResolvedRefs"), "{resources}");
}

/// Two Services on the same endpoint address with different SNI (two policies): each
/// request arrives on a connection opened with its own Service's SNI, though gatekit
/// pools connections per endpoint address.
#[tokio::test]
async fn upstreams_with_different_tls_settings_on_one_address_do_not_share_connections() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf_pem(&["a.example", "b.example"]);
    let backend = TlsBackend::start(&cert, &key, None).await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("ca.yaml", ca_config_map("ca", ca.pem())),
        ("a.yaml", tls_service("alpha", None, backend.addr, "gw")),
        ("b.yaml", tls_service("beta", None, backend.addr, "gw")),
        (
            "a-policy.yaml",
            policy(
                "alpha",
                "alpha",
                &format!("{}    hostname: a.example\n", ca_ref("ca")),
            ),
        ),
        (
            "b-policy.yaml",
            policy(
                "beta",
                "beta",
                &format!("{}    hostname: b.example\n", ca_ref("ca")),
            ),
        ),
    ]);
    let _wired = Wired::start(&dirs).await;
    for i in 0..4 {
        for name in ["alpha", "beta"] {
            let rsp = get(port, &format!("/{name}/{i}")).await;
            assert_eq!(rsp.status, StatusCode::OK, "{name} {i}");
        }
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 8);
    for s in &seen {
        let want = if s.path.starts_with("/alpha") {
            "a.example"
        } else {
            "b.example"
        };
        assert_eq!(s.sni.as_deref(), Some(want), "{s:?}");
    }
    // Connections are reused within each upstream (so the check above is about pool
    // separation, not about every request opening its own connection).
    let connections: std::collections::BTreeSet<usize> =
        seen.iter().map(|s| s.connection).collect();
    assert!(connections.len() < seen.len(), "{seen:?}");
}

#[tokio::test]
async fn an_h2_port_under_a_policy_speaks_h2_over_tls_by_alpn() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf_pem(&["backend.example"]);
    let backend = TlsBackend::start(&cert, &key, None).await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("ca.yaml", ca_config_map("ca", ca.pem())),
        (
            "svc.yaml",
            tls_service("multiplexed", Some("kubernetes.io/h2c"), backend.addr, "gw"),
        ),
        (
            "policy.yaml",
            policy(
                "multiplexed",
                "multiplexed",
                &format!(
                    "{}    hostname: backend.example
",
                    ca_ref("ca")
                ),
            ),
        ),
    ]);
    let wired = Wired::start(&dirs).await;
    for i in 0..3 {
        let rsp = get(port, &format!("/multiplexed/{i}")).await;
        assert_eq!(
            rsp.status,
            StatusCode::OK,
            "{:?}",
            rsp.header("x-gatekit-error")
        );
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s.version == http::Version::HTTP_2),
        "{seen:?}"
    );
    // One multiplexed connection carries them all.
    assert!(
        seen.iter().all(|s| s.connection == seen[0].connection),
        "{seen:?}"
    );
    let config = wired.config().await;
    assert_eq!(
        config["upstreams"]["default/multiplexed:443"]["protocol"], "h2 over TLS",
        "{config}"
    );
}

#[tokio::test]
async fn an_active_health_check_over_tls_marks_the_backend_healthy() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf_pem(&["backend.example"]);
    let backend = TlsBackend::start(&cert, &key, None).await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_http(port)),
        ("ca.yaml", ca_config_map("ca", ca.pem())),
        ("svc.yaml", tls_service("checked", Some("https"), backend.addr, "gw")),
        (
            "policy.yaml",
            policy("checked", "checked", &format!("{}    hostname: backend.example\n", ca_ref("ca"))),
        ),
        (
            "health.yaml",
            r#"apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: hc, namespace: default }
spec:
  targetRefs: [{ kind: Service, name: checked }]
  healthCheck:
    active: { type: http, path: /healthz, interval: 20ms, timeout: 1s, healthyThreshold: 1, unhealthyThreshold: 1 }
"#
            .to_owned(),
        ),
    ]);
    let wired = Wired::start(&dirs).await;
    eventually(Duration::from_secs(10), "a health probe over TLS", || {
        let probed = backend
            .seen()
            .iter()
            .any(|s| s.path == "/healthz" && s.sni.as_deref() == Some("backend.example"));
        async move { probed }
    })
    .await;
    let probe = backend
        .seen()
        .into_iter()
        .find(|s| s.path == "/healthz")
        .unwrap();
    assert_eq!(probe.user_agent.as_deref(), Some("gatekit-health-check"));
    let config = wired.config().await;
    let endpoint = &config["upstreams"]["default/checked:443"]["endpoints"][0];
    assert_eq!(endpoint["healthy"], true, "{config}");
    assert!(backend.handshakes.load(Ordering::SeqCst) >= 1);
    let rsp = get(port, "/checked/x").await;
    assert_eq!(rsp.status, StatusCode::OK);
}
