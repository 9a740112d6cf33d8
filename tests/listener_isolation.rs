//! Listener isolation (Gateway API GEP-1713, `GatewayHTTPListenerIsolation`) and 421
//! Misdirected Request (`HTTPRouteHTTPSListenerDetectMisdirectedRequests`), end to end
//! through the wired gateway: manifests in a temp dir, a real echo backend, real
//! sockets, real TLS (HTTP/1.1 and h2).
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{Ca, CaExt, Wired, free_port, get_raw, secret, service};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

fn dir_with(files: &[(&str, String)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let dirs = vec![dir.path().to_path_buf()];
    (dir, dirs)
}

/// The listeners of the conformance test `GatewayHTTPListenerIsolation`: (name,
/// hostname, the path of the route attached to it alone, a host it takes).
const LISTENERS: [(&str, Option<&str>, &str, &str); 4] = [
    ("empty-hostname", None, "/empty-hostname", "bar.com"),
    (
        "wildcard-example-com",
        Some("*.example.com"),
        "/wildcard-example-com",
        "bar.example.com",
    ),
    (
        "wildcard-foo-example-com",
        Some("*.foo.example.com"),
        "/wildcard-foo-example-com",
        "bar.foo.example.com",
    ),
    (
        "abc-foo-example-com",
        Some("abc.foo.example.com"),
        "/abc-foo-example-com",
        "abc.foo.example.com",
    ),
];

fn isolation_manifests(port: u16) -> String {
    let mut out = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: { name: gw, namespace: default }\n\
         spec:\n  gatewayClassName: gatekit\n  listeners:\n",
    );
    for (name, hostname, _, _) in LISTENERS {
        out.push_str(&format!(
            "  - {{ name: {name}, port: {port}, protocol: HTTP"
        ));
        if let Some(h) = hostname {
            out.push_str(&format!(", hostname: \"{h}\""));
        }
        out.push_str(" }\n");
    }
    for (name, _, path, _) in LISTENERS {
        out.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{ name: {name}, namespace: default }}\n\
             spec:\n  parentRefs: [{{ name: gw, sectionName: {name} }}]\n  rules:\n\
             \x20 - matches: [{{ path: {{ type: PathPrefix, value: \"{path}\" }} }}]\n\
             \x20   backendRefs: [{{ name: svc, port: 80 }}]\n"
        ));
    }
    out
}

#[tokio::test]
async fn each_host_reaches_only_its_most_specific_listeners_routes() {
    let backend = EchoBackend::start("svc").await;
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", isolation_manifests(port)),
        ("service.yaml", service("svc", backend.addr)),
    ]);
    let wired = Wired::start(&dirs).await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // Every host sends every listener's path: only its own listener's is served; the
    // others answer 404 even where a less specific listener has a route for the path
    // (`abc.foo.example.com/wildcard-example-com` must not reach `*.example.com`'s).
    for (listener, _, _, host) in LISTENERS {
        for (_, _, path, _) in LISTENERS {
            let own = LISTENERS.iter().any(|l| l.0 == listener && l.2 == path);
            let (status, _) = get_raw(addr, path, host).await;
            let want = if own {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(status, want, "{host}{path} (listener {listener})");
        }
    }
    // Case and port of the Host do not change the listener.
    let (status, _) = get_raw(addr, "/abc-foo-example-com", "ABC.Foo.Example.com:80").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_raw(addr, "/wildcard-example-com", "ABC.foo.example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // `/config` lists each listener's routes.
    let config = wired.config().await;
    let listeners = config["listeners"][0]["listeners"].as_array().unwrap();
    for (name, _, _, _) in LISTENERS {
        let l = listeners.iter().find(|l| l["name"] == name).unwrap();
        assert_eq!(
            l["routes"],
            serde_json::json!([format!("default/{name}")]),
            "{l}"
        );
    }
    wired.stop().await;
}

fn gateway_https(port: u16, cert_a: &str, cert_b: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners:
  - name: a
    port: {port}
    protocol: HTTPS
    hostname: a.example.com
    tls: {{ mode: Terminate, certificateRefs: [{{ name: {cert_a} }}] }}
  - name: b
    port: {port}
    protocol: HTTPS
    hostname: b.example.com
    tls: {{ mode: Terminate, certificateRefs: [{{ name: {cert_b} }}] }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - backendRefs: [{{ name: svc, port: 80 }}]
"#
    )
}

async fn tls(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .unwrap()
}

/// A GET over HTTP/1.1 on a fresh TLS connection opened for `sni`, with `Host: host`:
/// (status, `x-gatekit-error`).
async fn h1_get(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sni: &str,
    host: &str,
) -> (StatusCode, Option<String>) {
    let stream = tls(connector, addr, sni).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = sender.send_request(req).await.unwrap();
    let error = rsp
        .headers()
        .get("x-gatekit-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = rsp.status();
    rsp.into_body().collect().await.unwrap();
    (status, error)
}

#[tokio::test]
async fn a_host_of_another_listener_than_the_sni_is_misdirected() {
    let backend = EchoBackend::start("svc").await;
    let ca = Ca::new();
    let (cert_a, key_a, _) = ca.leaf("a.example.com");
    let (cert_b, key_b, _) = ca.leaf("b.example.com");
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_https(port, "cert-a", "cert-b")),
        ("service.yaml", service("svc", backend.addr)),
        ("secret-a.yaml", secret("cert-a", &cert_a, &key_a)),
        ("secret-b.yaml", secret("cert-b", &cert_b, &key_b)),
    ]);
    let wired = Wired::start(&dirs).await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let connector = ca.connector();
    assert_eq!(
        h1_get(&connector, addr, "a.example.com", "a.example.com").await,
        (StatusCode::OK, None)
    );
    assert_eq!(
        h1_get(&connector, addr, "b.example.com", "B.example.com:443").await,
        (StatusCode::OK, None)
    );
    assert_eq!(
        h1_get(&connector, addr, "a.example.com", "b.example.com").await,
        (
            StatusCode::MISDIRECTED_REQUEST,
            Some("misdirected-request".to_owned())
        )
    );
    assert_eq!(
        h1_get(&connector, addr, "b.example.com", "a.example.com")
            .await
            .0,
        StatusCode::MISDIRECTED_REQUEST
    );
    wired.stop().await;
}

#[tokio::test]
async fn h2_connection_reuse_for_another_listeners_host_is_misdirected() {
    let backend = EchoBackend::start("svc").await;
    let ca = Ca::new();
    // One certificate for both names: a client may reuse a connection for either.
    let (cert, key, _) = ca.leaf_pem(&["a.example.com", "b.example.com"]);
    let port = free_port();
    let (_dir, dirs) = dir_with(&[
        ("gateway.yaml", gateway_https(port, "cert-ab", "cert-ab")),
        ("service.yaml", service("svc", backend.addr)),
        ("secret.yaml", secret("cert-ab", &cert, &key)),
    ]);
    let wired = Wired::start(&dirs).await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let connector = ca.tls_connector(&[b"h2"]);
    let stream = tls(&connector, addr, "a.example.com").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut get = async |authority: &str| {
        let req = http::Request::get(format!("https://{authority}/"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let rsp = sender.send_request(req).await.unwrap();
        let status = rsp.status();
        let error = rsp
            .headers()
            .get("x-gatekit-error")
            .map(|v| v.to_str().unwrap().to_owned());
        rsp.into_body().collect().await.unwrap();
        (status, error)
    };
    assert_eq!(get("a.example.com").await, (StatusCode::OK, None));
    // The same connection, another listener's host.
    assert_eq!(
        get("b.example.com").await,
        (
            StatusCode::MISDIRECTED_REQUEST,
            Some("misdirected-request".to_owned())
        )
    );
    // And the connection still serves its own listener.
    assert_eq!(get("a.example.com").await, (StatusCode::OK, None));
    wired.stop().await;
}
