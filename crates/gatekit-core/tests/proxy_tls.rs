//! TLS to backends: verification against a configured CA, server name, ALPN.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::net::SocketAddr;

use gatekit_core::client::{Client, ClientConfig, Protocol, TlsSettings, Transport};
use gatekit_core::{Backend, Body};
use http::{Request, Response};
use support::{Mode, TestPki, body_bytes, gateway, h1_client, pki, tls_server_config, within};
use tokio::net::TcpListener;

/// A TLS backend presenting `pki`'s leaf, offering ALPN h2 and http/1.1 and serving
/// whichever was negotiated. Answers with the request's HTTP version.
async fn tls_backend(pki: &TestPki) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_server_config(pki, &[b"h2", b"http/1.1"]));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Handshake failures are what some tests expect.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mode = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    Mode::Http2
                } else {
                    Mode::Http1
                };
                support::serve(
                    mode,
                    hyper_util::rt::TokioIo::new(tls),
                    |req: Request<hyper::body::Incoming>| async move {
                        Response::new(Body::from(format!("{:?}", req.version())))
                    },
                )
                .await;
            });
        }
    });
    addr
}

async fn version_through(client: &Client, addr: SocketAddr, transport: Transport) -> (u16, String) {
    let gw = gateway(Backend::single_with(client, addr, transport)).await;
    let rsp = within(
        h1_client().request(
            Request::get(format!("http://{gw}/"))
                .header("host", "app.example")
                .body(Body::empty())
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    let status = rsp.status().as_u16();
    let header = rsp
        .headers()
        .get("x-gatekit-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(body_bytes(rsp.into_body()).await.to_vec()).unwrap();
    (status, header.unwrap_or(body))
}

#[tokio::test]
async fn tls_backend_verified_with_its_ca() {
    let pki = pki("backend.test");
    let addr = tls_backend(&pki).await;
    let client = Client::default();
    let tls = TlsSettings::from_ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .server_name("backend.test")
        .unwrap();

    let h1 = Transport::http1().with_tls(tls.clone());
    assert_eq!(
        version_through(&client, addr, h1).await,
        (200, "HTTP/1.1".into())
    );

    let h2 = Transport::http2().with_tls(tls.clone());
    assert_eq!(
        version_through(&client, addr, h2).await,
        (200, "HTTP/2.0".into())
    );

    // Auto: ALPN picks h2 first.
    let auto = Transport::new(Protocol::Auto).with_tls(tls);
    assert_eq!(
        version_through(&client, addr, auto.clone()).await,
        (200, "HTTP/2.0".into())
    );
    assert_eq!(
        version_through(&client, addr, auto).await,
        (200, "HTTP/2.0".into())
    );
}

#[tokio::test]
async fn unverifiable_tls_backends_are_upstream_tls_errors() {
    let pki_ok = pki("backend.test");
    let addr = tls_backend(&pki_ok).await;
    let client = Client::default();
    let failed = (502, "upstream-tls".to_owned());

    // Default roots do not know the test CA.
    let webpki = TlsSettings::webpki_roots()
        .unwrap()
        .server_name("backend.test")
        .unwrap();
    assert_eq!(
        version_through(&client, addr, Transport::http1().with_tls(webpki)).await,
        failed
    );

    // Another CA.
    let other = pki("backend.test");
    let wrong_ca = TlsSettings::from_ca_pem(other.ca_pem.as_bytes())
        .unwrap()
        .server_name("backend.test")
        .unwrap();
    assert_eq!(
        version_through(&client, addr, Transport::http2().with_tls(wrong_ca)).await,
        failed
    );

    // The right CA, the wrong name.
    let wrong_name = TlsSettings::from_ca_pem(pki_ok.ca_pem.as_bytes())
        .unwrap()
        .server_name("other.test")
        .unwrap();
    assert_eq!(
        version_through(&client, addr, Transport::http1().with_tls(wrong_name)).await,
        failed
    );

    // No server name configured: the endpoint IP is verified, and the leaf has no IP SAN.
    let no_name = TlsSettings::from_ca_pem(pki_ok.ca_pem.as_bytes()).unwrap();
    assert_eq!(
        version_through(&client, addr, Transport::http1().with_tls(no_name)).await,
        failed
    );
}

#[test]
fn invalid_tls_settings_are_config_errors() {
    let err = TlsSettings::from_ca_pem(b"not a pem").unwrap_err();
    assert_eq!(err.field(), "caCertificate");
    let pki = pki("backend.test");
    let err = TlsSettings::from_ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .server_name("bad name!")
        .unwrap_err();
    assert_eq!(err.field(), "hostname");
}

#[tokio::test]
async fn a_silent_tls_handshake_hits_the_connect_timeout() {
    // Accepts TCP connections and never answers the ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let connect_timeout = std::time::Duration::from_millis(150);
    let client = Client::new(ClientConfig::default().connect_timeout(connect_timeout));
    let pki = pki("backend.test");
    let tls = TlsSettings::from_ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .server_name("backend.test")
        .unwrap();
    let ep = client.endpoint(addr, Transport::http1().with_tls(tls.clone()));

    let started = tokio::time::Instant::now();
    let err = within(ep.send(Request::get("/").body(Body::empty()).unwrap()))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= connect_timeout);

    // An upstream's own connect timeout wins over the client's.
    let slow =
        Client::new(ClientConfig::default().connect_timeout(std::time::Duration::from_secs(3600)));
    let own = slow.endpoint_with(
        addr,
        Transport::http1().with_tls(tls),
        gatekit_core::client::PoolLimits::new().with_connect_timeout(connect_timeout),
    );
    let started = tokio::time::Instant::now();
    let own_err = within(own.send(Request::get("/").body(Body::empty()).unwrap()))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= connect_timeout);
    let own_err = gatekit_core::Error::find(&*own_err).unwrap();
    assert_eq!(own_err.kind(), gatekit_core::ErrorKind::Connect);
    let err = gatekit_core::Error::find(&*err).unwrap();
    assert_eq!(err.kind(), gatekit_core::ErrorKind::Connect);
    assert!(err.is_retry_safe());
    assert_eq!(gatekit_core::error_response(err).status(), 503);
}
