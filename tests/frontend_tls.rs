//! Listener-side TLS end to end through the wired gateway (manifests in a temp dir, real
//! echo backends, real sockets, real TLS with rcgen CAs): client certificates from a
//! Gateway's `spec.tls.frontend` and from Envoy Gateway's ClientTrafficPolicy, the
//! `x-forwarded-client-cert` header, per-listener versions and ALPN, refused cipher
//! names, Secrets that turn bad (last good pair kept), rotation under load, expiry.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{
    Ca, CaExt, Wired, eventually, free_port, secret, service, write_atomic,
};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

const HOST: &str = "app.example.com";

/// Gateway `gw` with one HTTPS listener `https` on `port` for [`HOST`] (certificate
/// Secret `site`), `gateway_tls` spliced under `spec` (a `tls:` block or nothing),
/// and a route to Service `echo`.
fn gateway(port: u16, gateway_tls: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
{gateway_tls}  listeners:
  - name: https
    port: {port}
    protocol: HTTPS
    hostname: {HOST}
    tls: {{ certificateRefs: [{{ name: site }}] }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: app, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - backendRefs: [{{ name: echo, port: 80 }}]
"#
    )
}

/// A ConfigMap `name` holding `ca_pem` under `ca.crt`.
fn ca_config_map(name: &str, ca_pem: &str) -> String {
    let indent: String = ca_pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: {name}, namespace: default }}\ndata:\n  ca.crt: |\n{indent}"
    )
}

/// A ClientTrafficPolicy `name` on listener `https` of `gw`, `spec` spliced in.
fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\n\
         metadata: {{ name: {name}, namespace: default }}\nspec:\n  targetRefs:\n  \
         - {{ group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: https }}\n{spec}"
    )
}

/// A client certificate for `cn` with DNS SAN `dns` and URI SAN `uri`, from `ca`.
fn client_cert(
    ca: &Ca,
    cn: &str,
    dns: &str,
    uri: &str,
) -> (String, String, CertificateDer<'static>) {
    let mut params = rcgen::CertificateParams::new(vec![dns.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(uri).unwrap(),
    ));
    ca.leaf_from(params)
}

/// Everything a test needs: the directory, the gateway, the backend, the server CA.
struct Fixture {
    dir: tempfile::TempDir,
    wired: Wired,
    backend: EchoBackend,
    ca: Ca,
    port: u16,
}

impl Fixture {
    /// Serves `manifests` (plus the site Secret from a fresh CA, and Service `echo`).
    async fn start(port: u16, manifests: &[&str]) -> Self {
        let ca = Ca::new();
        let (cert, key, _) = ca.leaf(HOST);
        let backend = EchoBackend::start("echo").await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.yaml"), secret("site", &cert, &key)).unwrap();
        std::fs::write(dir.path().join("svc.yaml"), service("echo", backend.addr)).unwrap();
        for (i, m) in manifests.iter().enumerate() {
            std::fs::write(dir.path().join(format!("m{i}.yaml")), m).unwrap();
        }
        let wired = Wired::start(&[dir.path().to_path_buf()]).await;
        Self {
            dir,
            wired,
            backend,
            ca,
            port,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// The outcome of one request over a fresh TLS connection.
#[derive(Debug)]
struct Outcome {
    status: Option<StatusCode>,
    alpn: Option<Vec<u8>>,
    leaf: Option<CertificateDer<'static>>,
}

/// A GET `/` for [`HOST`] over a fresh TLS connection made by `connector`, with extra
/// `headers`; `status: None` when the handshake or the request failed. HTTP/2 when ALPN
/// chose it.
async fn request(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Outcome {
    let failed = Outcome {
        status: None,
        alpn: None,
        leaf: None,
    };
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return failed;
    };
    let Ok(tls) = connector
        .connect(ServerName::try_from(HOST.to_owned()).unwrap(), tcp)
        .await
    else {
        return failed;
    };
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = tls.get_ref().1.peer_certificates().map(|c| c[0].clone());
    let mut req = http::Request::get(format!("https://{HOST}/"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    let rsp = if alpn.as_deref() == Some(b"h2") {
        let Ok((mut sender, conn)) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        else {
            return failed;
        };
        tokio::spawn(conn);
        sender.send_request(req).await
    } else {
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await
        else {
            return failed;
        };
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts.uri = "/".parse().unwrap();
        parts.headers.insert("host", HOST.parse().unwrap());
        sender
            .send_request(http::Request::from_parts(parts, body))
            .await
    };
    match rsp {
        Ok(rsp) => {
            let status = rsp.status();
            let _ = rsp.into_body().collect().await;
            Outcome {
                status: Some(status),
                alpn,
                leaf,
            }
        }
        Err(_) => Outcome {
            status: None,
            alpn,
            leaf,
        },
    }
}

fn tls13_and_12() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS13, &rustls::version::TLS12]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_client_certificate_is_verified_and_forwarded() {
    let port = free_port();
    let client_ca = Ca::new();
    let frontend = "  tls:\n    frontend:\n      default:\n        validation:\n          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients }]\n";
    let cm = ca_config_map("clients", &client_ca.pem());
    let mut fx = Fixture::start(port, &[&gateway(port, frontend), &cm]).await;
    let addr = fx.addr();
    let alpn: &[&[u8]] = &[b"http/1.1"];

    // No certificate: refused (TLS 1.3 reports it on the first read).
    let none = fx.ca.client_connector(alpn, &tls13_and_12(), None);
    assert_eq!(request(&none, addr, &[]).await.status, None);
    // A certificate from another CA: refused.
    let stranger = Ca::new();
    let (sc, sk, _) = client_cert(&stranger, "mallory", "mallory.example", "spiffe://evil/m");
    let other = fx
        .ca
        .client_connector(alpn, &tls13_and_12(), Some((&sc, &sk)));
    assert_eq!(request(&other, addr, &[]).await.status, None);
    // TLS 1.2 too.
    let other12 = fx
        .ca
        .client_connector(alpn, &[&rustls::version::TLS12], Some((&sc, &sk)));
    assert_eq!(request(&other12, addr, &[]).await.status, None);
    assert_eq!(fx.backend.hits(), 0, "nothing reached the backend");

    // A good certificate: served, and the backend sees who it was, not what the client
    // claimed in its own x-forwarded-client-cert.
    let (cc, ck, leaf) = client_cert(&client_ca, "alice", "alice.example", "spiffe://td/ns/alice");
    let good = fx
        .ca
        .client_connector(alpn, &tls13_and_12(), Some((&cc, &ck)));
    let out = request(
        &good,
        addr,
        &[("x-forwarded-client-cert", "Hash=forged;Subject=\"CN=root\"")],
    )
    .await;
    assert_eq!(out.status, Some(StatusCode::OK));
    let seen = fx.backend.next_seen().await;
    let xfcc: Vec<_> = seen
        .headers
        .get_all("x-forwarded-client-cert")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let hash = hex(ring::digest::digest(&ring::digest::SHA256, leaf.as_ref()).as_ref());
    assert_eq!(
        xfcc,
        vec![format!(
            "Hash={hash};Subject=\"CN=alice\";URI=spiffe://td/ns/alice;DNS=alice.example"
        )]
    );
    assert!(!xfcc[0].contains("forged"));
    fx.wired.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_client_certificate_serves_clients_without_one_and_no_header() {
    let port = free_port();
    let client_ca = Ca::new();
    let cm = ca_config_map("clients", &client_ca.pem());
    let ctp = policy(
        "mtls",
        "  tls:\n    clientValidation:\n      optional: true\n      caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients }]\n",
    );
    let mut fx = Fixture::start(port, &[&gateway(port, ""), &cm, &ctp]).await;
    let addr = fx.addr();
    let alpn: &[&[u8]] = &[b"http/1.1"];
    let none = fx.ca.client_connector(alpn, &tls13_and_12(), None);
    let out = request(&none, addr, &[("x-forwarded-client-cert", "Hash=forged")]).await;
    assert_eq!(out.status, Some(StatusCode::OK));
    let seen = fx.backend.next_seen().await;
    assert!(
        seen.headers.get("x-forwarded-client-cert").is_none(),
        "{:?}",
        seen.headers
    );
    // A certificate it sends must still verify.
    let stranger = Ca::new();
    let (sc, sk, _) = client_cert(&stranger, "mallory", "m.example", "spiffe://evil/m");
    let other = fx
        .ca
        .client_connector(alpn, &tls13_and_12(), Some((&sc, &sk)));
    assert_eq!(request(&other, addr, &[]).await.status, None);
    // And one that verifies is forwarded.
    let (cc, ck, _) = client_cert(&client_ca, "bob", "bob.example", "spiffe://td/bob");
    let good = fx
        .ca
        .client_connector(alpn, &tls13_and_12(), Some((&cc, &ck)));
    assert_eq!(request(&good, addr, &[]).await.status, Some(StatusCode::OK));
    let seen = fx.backend.next_seen().await;
    let xfcc = seen.headers["x-forwarded-client-cert"].to_str().unwrap();
    assert!(xfcc.contains("Subject=\"CN=bob\""), "{xfcc}");
    // The policy is accepted.
    let config = fx.wired.config().await;
    let ctp = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ClientTrafficPolicy")
        .unwrap();
    assert_eq!(ctp["conditions"][0]["status"], "True", "{ctp}");
    fx.wired.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_sets_versions_and_alpn_and_refuses_unknown_ciphers() {
    let port = free_port();
    let ctp = policy(
        "strict",
        "  tls:\n    minVersion: \"1.3\"\n    alpnProtocols: [http/1.1]\n",
    );
    let mut fx = Fixture::start(port, &[&gateway(port, ""), &ctp]).await;
    let addr = fx.addr();
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    // TLS 1.2 only: refused.
    let tls12 = fx
        .ca
        .client_connector(both, &[&rustls::version::TLS12], None);
    assert_eq!(request(&tls12, addr, &[]).await.status, None);
    // TLS 1.3 offering h2: served over HTTP/1.1, as the ALPN list says.
    let tls13 = fx.ca.client_connector(both, &tls13_and_12(), None);
    let out = request(&tls13, addr, &[]).await;
    assert_eq!(out.status, Some(StatusCode::OK));
    assert_eq!(out.alpn.as_deref(), Some(&b"http/1.1"[..]));

    // Without the policy, the same clients get TLS 1.2 and h2.
    std::fs::remove_file(fx.dir.path().join("m1.yaml")).unwrap();
    eventually(Duration::from_secs(10), "policy removed", || async {
        request(&tls12, addr, &[]).await.status == Some(StatusCode::OK)
    })
    .await;
    let out = request(&tls13, addr, &[]).await;
    assert_eq!(out.alpn.as_deref(), Some(&b"h2"[..]));

    // An unknown cipher name: the policy is refused, naming the field; the listener
    // keeps gatekit's defaults.
    let bad = policy(
        "ciphers",
        "  tls:\n    ciphers: [ECDHE-RSA-AES128-GCM-SHA256, RC4-MD5]\n",
    );
    write_atomic(fx.dir.path(), "m1.yaml", &bad);
    let wired = &fx.wired;
    eventually(Duration::from_secs(10), "policy refused", || async {
        wired.config().await["errors"]
            .to_string()
            .contains("spec.tls.ciphers[1]")
    })
    .await;
    let config = fx.wired.config().await;
    let status = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ClientTrafficPolicy")
        .unwrap()
        .clone();
    assert_eq!(status["conditions"][0]["status"], "False", "{status}");
    assert_eq!(status["conditions"][0]["reason"], "Invalid", "{status}");
    let message = status["conditions"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.tls.ciphers[1]") && message.contains("RC4-MD5"),
        "{message}"
    );
    assert_eq!(
        request(&tls12, addr, &[]).await.status,
        Some(StatusCode::OK)
    );
    let _ = fx.backend.drain_seen();
    fx.wired.stop().await;
}

/// The leaf a fresh handshake gets.
async fn served_leaf(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> Option<CertificateDer<'static>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let tls = connector
        .connect(ServerName::try_from(HOST.to_owned()).unwrap(), tcp)
        .await
        .ok()?;
    tls.get_ref().1.peer_certificates().map(|c| c[0].clone())
}

/// Replaces the Secret `site` in `dir` and waits until `/config` shows an error naming
/// it.
async fn break_secret(dir: &Path, wired: &Wired, cert: &str, key: &str, marker: &str) {
    write_atomic(dir, "secret.yaml", &secret("site", cert, key));
    eventually(Duration::from_secs(10), marker, || async {
        let errors = wired.config().await["errors"].to_string();
        errors.contains("Secret default/site") && errors.contains(marker)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_secret_keeps_the_last_good_certificate_until_fixed() {
    let port = free_port();
    let fx = Fixture::start(port, &[&gateway(port, "")]).await;
    let addr = fx.addr();
    let connector = fx.ca.connector();
    let first = served_leaf(&connector, addr).await.unwrap();

    // Key of another certificate.
    let (other_cert, _, _) = fx.ca.leaf(HOST);
    let (_, other_key, _) = fx.ca.leaf(HOST);
    break_secret(
        fx.dir.path(),
        &fx.wired,
        &other_cert,
        &other_key,
        "rejected",
    )
    .await;
    assert_eq!(served_leaf(&connector, addr).await.unwrap(), first);
    // The listener's condition names the Secret too.
    let config = fx.wired.config().await;
    let gw = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Gateway")
        .unwrap()
        .clone();
    let resolved = gw["listeners"][0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ResolvedRefs")
        .unwrap()
        .clone();
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "InvalidCertificateRef");
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("Secret default/site"),
        "{resolved}"
    );

    // Expired.
    let mut params = rcgen::CertificateParams::new(vec![HOST.to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let (expired_cert, expired_key, _) = fx.ca.leaf_from(params);
    break_secret(
        fx.dir.path(),
        &fx.wired,
        &expired_cert,
        &expired_key,
        "expired",
    )
    .await;
    assert_eq!(served_leaf(&connector, addr).await.unwrap(), first);

    // Garbage.
    break_secret(fx.dir.path(), &fx.wired, "hello", "world", "is not PEM").await;
    assert_eq!(served_leaf(&connector, addr).await.unwrap(), first);

    // Fixed: the new pair is served.
    let (cert, key, leaf) = fx.ca.leaf(HOST);
    write_atomic(fx.dir.path(), "secret.yaml", &secret("site", &cert, &key));
    eventually(Duration::from_secs(10), "the new certificate", || async {
        served_leaf(&connector, addr).await.as_ref() == Some(&leaf)
    })
    .await;
    fx.wired.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_rotated_under_load_fails_no_request() {
    let port = free_port();
    let fx = Fixture::start(port, &[&gateway(port, "")]).await;
    let addr = fx.addr();
    let connector = Arc::new(fx.ca.connector());
    let (cert, key, new_leaf) = fx.ca.leaf(HOST);
    let new_leaf = Arc::new(new_leaf);
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let saw_new = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..20 {
        let (connector, stop, failed, ok, saw_new, new_leaf) = (
            connector.clone(),
            stop.clone(),
            failed.clone(),
            ok.clone(),
            saw_new.clone(),
            new_leaf.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let out = request(&connector, addr, &[]).await;
                if out.status == Some(StatusCode::OK) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if out.leaf.as_ref() == Some(&*new_leaf) {
                    saw_new.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    eventually(Duration::from_secs(10), "requests flowing", || async {
        ok.load(Ordering::Relaxed) >= 40
    })
    .await;
    write_atomic(fx.dir.path(), "secret.yaml", &secret("site", &cert, &key));
    eventually(
        Duration::from_secs(10),
        "new handshakes get the new certificate",
        || async { saw_new.load(Ordering::Relaxed) >= 40 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) >= 80);
    fx.wired.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_a_gauge_and_a_warning_in_config() {
    let port = free_port();
    let fx = Fixture::start(port, &[&gateway(port, "")]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let not_after = now + 10 * 86_400;
    let mut params = rcgen::CertificateParams::new(vec![HOST.to_owned()]).unwrap();
    params.not_after =
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(not_after).unwrap()).unwrap();
    let (cert, key, leaf) = fx.ca.leaf_from(params);
    write_atomic(fx.dir.path(), "secret.yaml", &secret("site", &cert, &key));
    let connector = fx.ca.connector();
    let addr = fx.addr();
    eventually(
        Duration::from_secs(10),
        "the short-lived certificate",
        || async { served_leaf(&connector, addr).await.as_ref() == Some(&leaf) },
    )
    .await;
    // The gauge is set by the same reload, after the certificate store is swapped.
    let wired = &fx.wired;
    let expected = not_after.to_string();
    eventually(Duration::from_secs(10), "the expiry gauge", || {
        let expected = expected.clone();
        async move {
            let (_, metrics) = wired.admin("/metrics").await;
            metrics.lines().any(|l| {
                l.starts_with("gatekit_certificate_not_after_seconds{")
                    && l.ends_with(&format!(" {expected}"))
            })
        }
    })
    .await;
    let (_, metrics) = fx.wired.admin("/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("gatekit_certificate_not_after_seconds{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.contains("secret=\"default/site\""), "{line}");
    assert!(line.contains("gateway=\"default/gw\""), "{line}");
    assert!(line.contains("listener=\"https\""), "{line}");
    assert_eq!(
        line.rsplit(' ').next().unwrap(),
        not_after.to_string(),
        "{line}"
    );
    let config = fx.wired.config().await;
    let cert = &config["certificates"][0];
    assert_eq!(cert["notAfter"], not_after, "{cert}");
    assert!(matches!(cert["daysLeft"].as_i64(), Some(9 | 10)), "{cert}");
    assert!(
        cert["warning"].as_str().unwrap().contains("expires in"),
        "{cert}"
    );
    fx.wired.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_enables_proxy_protocol_from_trusted_sources_and_sets_xfcc_on_cleartext() {
    use gatekit_tests::wired::{gateway_http, route};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = free_port();
    let mut backend = EchoBackend::start("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let ctp = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\n\
               metadata: { name: pp, namespace: default }\nspec:\n  targetRefs:\n  \
               - { group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: http }\n  \
               proxyProtocol: {}\n  headers: { xForwardedClientCert: { mode: AlwaysForwardOnly } }\n";
    for (name, text) in [
        ("gw.yaml", gateway_http(port)),
        ("route.yaml", route("app", "/", "echo")),
        ("svc.yaml", service("echo", backend.addr)),
        ("ctp.yaml", ctp.to_owned()),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut settings = gatekit_bin::Settings::default();
    settings.limits.proxy_protocol_trusted_sources = vec!["127.0.0.1/32".parse().unwrap()];
    let wired = Wired::start_with(&[dir.path().to_path_buf()], settings).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // With the header: the backend sees the address it names.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nhost: a.test\r\nx-forwarded-client-cert: Hash=from-front\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let seen = backend.next_seen().await;
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.7");
    // AlwaysForwardOnly on this cleartext listener: the front proxy's header passes.
    assert_eq!(seen.headers["x-forwarded-client-cert"], "Hash=from-front");

    // Without it, from a trusted source: refused (the connection is closed unanswered).
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(backend.hits(), 1);
    wired.stop().await;
}

/// The conditions of Gateway `gw`'s listener `listener` in `/config`, as
/// (type, status, reason).
async fn listener_conditions(wired: &Wired, listener: &str) -> Vec<(String, String, String)> {
    let config = wired.config().await;
    let gw = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Gateway")
        .unwrap()
        .clone();
    let l = gw["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == listener)
        .unwrap()
        .clone();
    l["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_fallback_serves_everyone_and_forwards_only_verified_identities() {
    let port = free_port();
    let client_ca = Ca::new();
    let frontend = "  tls:\n    frontend:\n      default:\n        validation:\n          mode: AllowInsecureFallback\n          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients }]\n";
    let cm = ca_config_map("clients", &client_ca.pem());
    let mut fx = Fixture::start(port, &[&gateway(port, frontend), &cm]).await;
    let addr = fx.addr();
    let alpn: &[&[u8]] = &[b"http/1.1"];
    // No certificate, and one from another CA: served, without an identity.
    let none = fx.ca.client_connector(alpn, &tls13_and_12(), None);
    assert_eq!(request(&none, addr, &[]).await.status, Some(StatusCode::OK));
    assert!(
        fx.backend
            .next_seen()
            .await
            .headers
            .get("x-forwarded-client-cert")
            .is_none()
    );
    let stranger = Ca::new();
    let (sc, sk, _) = client_cert(&stranger, "mallory", "m.example", "spiffe://evil/m");
    let other = fx
        .ca
        .client_connector(alpn, &tls13_and_12(), Some((&sc, &sk)));
    let out = request(&other, addr, &[("x-forwarded-client-cert", "Hash=forged")]).await;
    assert_eq!(out.status, Some(StatusCode::OK));
    assert!(
        fx.backend
            .next_seen()
            .await
            .headers
            .get("x-forwarded-client-cert")
            .is_none()
    );
    // A verified one: forwarded.
    let (cc, ck, _) = client_cert(&client_ca, "carol", "carol.example", "spiffe://td/carol");
    let good = fx
        .ca
        .client_connector(alpn, &tls13_and_12(), Some((&cc, &ck)));
    assert_eq!(request(&good, addr, &[]).await.status, Some(StatusCode::OK));
    let seen = fx.backend.next_seen().await;
    assert!(
        seen.headers["x-forwarded-client-cert"]
            .to_str()
            .unwrap()
            .contains("CN=carol")
    );
    // The Gateway says its validation is insecure.
    let config = fx.wired.config().await;
    let gw = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Gateway")
        .unwrap()
        .clone();
    let insecure = gw["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "InsecureFrontendValidationMode")
        .unwrap_or_else(|| panic!("{gw}"))
        .clone();
    assert_eq!(insecure["status"], "True");
    assert_eq!(insecure["reason"], "ConfigurationChanged");
    fx.wired.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_ca_ref_keeps_the_https_listener_down_and_http_up() {
    let port = free_port();
    let http_port = free_port();
    let frontend = "  tls:\n    frontend:\n      default:\n        validation:\n          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: does-not-exist }]\n";
    let gw = gateway(port, frontend).replacen(
        "  listeners:\n",
        &format!("  listeners:\n  - {{ name: http, port: {http_port}, protocol: HTTP }}\n"),
        1,
    );
    let fx = Fixture::start(port, &[&gw]).await;
    let https = listener_conditions(&fx.wired, "https").await;
    assert!(
        https.contains(&(
            "ResolvedRefs".into(),
            "False".into(),
            "InvalidCACertificateRef".into()
        )),
        "{https:?}"
    );
    assert!(
        https.contains(&(
            "Accepted".into(),
            "False".into(),
            "NoValidCACertificate".into()
        )),
        "{https:?}"
    );
    assert!(
        https.iter().any(|c| c.0 == "Programmed" && c.1 == "False"),
        "{https:?}"
    );
    let http = listener_conditions(&fx.wired, "http").await;
    assert!(
        http.iter().all(|c| c.0 == "Conflicted" || c.1 == "True"),
        "{http:?}"
    );
    // HTTPS is not served at all (never without the validation asked for); HTTP is.
    let none = fx
        .ca
        .client_connector(&[b"http/1.1"], &tls13_and_12(), None);
    assert_eq!(request(&none, fx.addr(), &[]).await.status, None);
    let (status, _) =
        gatekit_tests::wired::get_raw(SocketAddr::from(([127, 0, 0, 1], http_port)), "/", HOST)
            .await;
    assert_eq!(status, StatusCode::OK);
    fx.wired.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_on_one_port_keep_their_own_validation() {
    let port = free_port();
    let client_ca = Ca::new();
    let ca = Ca::new();
    let (a_cert, a_key, _) = ca.leaf("a.test");
    let (b_cert, b_key, _) = ca.leaf("b.test");
    let backend = EchoBackend::start("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let gw = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners:
  - {{ name: a, port: {port}, protocol: HTTPS, hostname: a.test, tls: {{ certificateRefs: [{{ name: a }}] }} }}
  - {{ name: b, port: {port}, protocol: HTTPS, hostname: b.test, tls: {{ certificateRefs: [{{ name: b }}] }} }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: app, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - backendRefs: [{{ name: echo, port: 80 }}]
"#
    );
    let ctp = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\n\
               metadata: { name: mtls, namespace: default }\nspec:\n  targetRefs:\n  \
               - { group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: a }\n  \
               tls:\n    clientValidation:\n      caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients }]\n";
    for (name, text) in [
        ("gw.yaml", gw),
        ("a.yaml", secret("a", &a_cert, &a_key)),
        ("b.yaml", secret("b", &b_cert, &b_key)),
        ("svc.yaml", service("echo", backend.addr)),
        ("cm.yaml", ca_config_map("clients", &client_ca.pem())),
        ("ctp.yaml", ctp.to_owned()),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let alpn: &[&[u8]] = &[b"http/1.1"];
    let anonymous = ca.client_connector(alpn, &tls13_and_12(), None);
    let (cc, ck, _) = client_cert(&client_ca, "dave", "dave.example", "spiffe://td/dave");
    let with_cert = ca.client_connector(alpn, &tls13_and_12(), Some((&cc, &ck)));

    /// A GET with `Host: host` over a handshake for `sni` (`None`: no SNI).
    async fn get(
        connector: &tokio_rustls::TlsConnector,
        addr: SocketAddr,
        sni: &str,
        send_sni: bool,
        host: &str,
    ) -> Option<StatusCode> {
        let connector = if send_sni {
            connector.clone()
        } else {
            // The same client without SNI (rustls then sends none; the name still
            // verifies the server's certificate).
            let mut config = (**connector.config()).clone();
            config.enable_sni = false;
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };
        let tcp = TcpStream::connect(addr).await.ok()?;
        let tls = connector
            .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
            .await
            .ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .unwrap();
        Some(sender.send_request(req).await.ok()?.status())
    }

    // b needs no certificate; a needs one.
    assert_eq!(
        get(&anonymous, addr, "b.test", true, "b.test").await,
        Some(StatusCode::OK)
    );
    assert_eq!(get(&anonymous, addr, "a.test", true, "a.test").await, None);
    assert_eq!(
        get(&with_cert, addr, "a.test", true, "a.test").await,
        Some(StatusCode::OK)
    );
    // b's handshake cannot reach a's routes, with or without SNI.
    assert_eq!(
        get(&anonymous, addr, "b.test", true, "a.test").await,
        Some(StatusCode::MISDIRECTED_REQUEST)
    );
    // Without SNI the handshake gets the default listener's settings (a's: the first,
    // none lacks a hostname): an anonymous client is refused there, and even a client
    // with a certificate reaches no listener's routes (none is the SNI-less one).
    assert_eq!(get(&anonymous, addr, "a.test", false, "b.test").await, None);
    assert_eq!(
        get(&with_cert, addr, "a.test", false, "a.test").await,
        Some(StatusCode::MISDIRECTED_REQUEST)
    );
    assert_eq!(backend.hits(), 2);
    wired.stop().await;
}
