//! Gateway listeners over real sockets: plain and TLS with SNI, HTTP/2 by ALPN, the
//! connection limit, and the HTTP/1 header deadline.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::tls::{CertSet, CertStore};
use gatekit_gateway::Transport;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{
    Ca, CaExt, closed_by_peer, gateway, get, hello_service, http1, options, send, tls_connect,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn plain_and_tls_listeners_with_two_sni_certificates() {
    let ca = Ca::new();
    let (a, a_der) = ca.leaf("a.test");
    let (b, b_der) = ca.leaf("b.test");
    let mut set = CertSet::new();
    set.insert("a.test", a).unwrap();
    set.insert("b.test", b).unwrap();
    let store = Arc::new(CertStore::new(set));

    let mut gw = gateway(options());
    let plain = gw
        .listeners_mut()
        .add(0, Transport::Plain, hello_service())
        .await
        .unwrap();
    let tls = gw
        .listeners_mut()
        .add(0, Transport::Tls(store.clone()), hello_service())
        .await
        .unwrap();
    assert_eq!(
        gw.listeners().local_addrs().len(),
        2,
        "{:?}",
        gw.listeners()
    );

    assert_eq!(
        get(plain, "/").await,
        (StatusCode::OK, "hello tls=false HTTP/1.1".into())
    );

    let connector = ca.connector(&[b"http/1.1"]);
    for (sni, der) in [("a.test", &a_der), ("b.test", &b_der)] {
        let stream = tls_connect(&connector, tls, sni).await.unwrap();
        assert_eq!(
            &stream.get_ref().1.peer_certificates().unwrap()[0],
            der,
            "{sni}"
        );
        let mut sender = http1(stream).await;
        assert_eq!(
            send(&mut sender, "/").await,
            (StatusCode::OK, "hello tls=true HTTP/1.1".into())
        );
    }
    // A name no certificate covers fails the handshake.
    assert!(tls_connect(&connector, tls, "c.test").await.is_err());

    // Rotating the store changes what the same listener presents, without a restart.
    let (a2, a2_der) = ca.leaf("a.test");
    let mut set = CertSet::new();
    set.insert("a.test", a2).unwrap();
    store.replace(set);
    let stream = tls_connect(&connector, tls, "a.test").await.unwrap();
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], a2_der);
}

#[tokio::test]
async fn tls_listener_serves_http2_by_alpn() {
    let ca = Ca::new();
    let (a, _) = ca.leaf("a.test");
    let store = Arc::new(CertStore::new(CertSet::new().with_default(a)));
    let mut gw = gateway(options());
    let tls = gw
        .listeners_mut()
        .add(0, Transport::Tls(store), hello_service())
        .await
        .unwrap();
    let stream = tls_connect(&ca.connector(&[b"h2", b"http/1.1"]), tls, "a.test")
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://a.test/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello tls=true HTTP/2.0");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let mut settings = options();
    settings.limits.max_connections = 2;
    let mut gw = gateway(settings);
    let addr = gw
        .listeners_mut()
        .add(0, Transport::Plain, hello_service())
        .await
        .unwrap();

    // Two connections, each proven accepted by a served request, kept open.
    let mut first = http1(TcpStream::connect(addr).await.unwrap()).await;
    let mut second = http1(TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(send(&mut first, "/").await.0, StatusCode::OK);
    assert_eq!(send(&mut second, "/").await.0, StatusCode::OK);
    assert_eq!(gw.listeners().active_connections(), 2);

    // The third is closed at once, and counted.
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_peer(&mut third).await,
        "third connection not closed"
    );
    let metrics = gw.metrics().encode();
    assert!(
        metrics.contains("gatekit_connections_rejected_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "gatekit_active_connections{{port=\"{}\"}} 2",
            addr.port()
        )),
        "{metrics}"
    );
    // The open connections still work.
    assert_eq!(send(&mut first, "/").await.0, StatusCode::OK);

    // Closing one frees a slot.
    drop(second);
    for _ in 0..500 {
        if gw.listeners().active_connections() < 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.listeners().active_connections(), 1);
    assert_eq!(get(addr, "/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn slowloris_is_closed_by_the_header_read_timeout() {
    let mut settings = options();
    settings.limits.header_read_timeout = Duration::from_millis(300);
    let mut gw = gateway(settings);
    let addr = gw
        .listeners_mut()
        .add(0, Transport::Plain, hello_service())
        .await
        .unwrap();

    let started = tokio::time::Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut slow).await, "slow client not closed");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A client that sends its head in time is served on the same listener.
    assert_eq!(get(addr, "/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn removed_listener_refuses_and_port_can_be_rebound() {
    let mut gw = gateway(options());
    let addr = gw
        .listeners_mut()
        .add(0, Transport::Plain, hello_service())
        .await
        .unwrap();
    assert!(matches!(
        gw.listeners_mut()
            .add(addr.port(), Transport::Plain, hello_service())
            .await,
        Err(gatekit_gateway::ListenError::PortInUse(_))
    ));
    assert!(gw.listeners_mut().remove(addr.port()).await);
    assert!(TcpStream::connect(addr).await.is_err());
    let again = gw
        .listeners_mut()
        .add(addr.port(), Transport::Plain, hello_service())
        .await
        .unwrap();
    assert_eq!(again, addr);
    assert_eq!(get(addr, "/").await.0, StatusCode::OK);
}
