//! Gateway stream listeners over real sockets: a TCP port and a UDP port added to the
//! gateway's listeners, their per-route metrics, and a removed TCP port's connection
//! closed at the drain deadline.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use gatekit_core::route::RouteId;
use gatekit_core::stream::{
    ListenerMode, StreamBackend, StreamBackendRef, StreamListener, StreamRoute, StreamRouter,
    StreamTable,
};
use gatekit_gateway::metrics::StreamPortMetrics;
use support::{gateway, options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("test step timed out")
}

fn table(mode: ListenerMode, backend: std::net::SocketAddr) -> StreamTable {
    let mut route = StreamRoute::new(RouteId::new("default", "echo"));
    route.backends = vec![StreamBackendRef::new("echo", 1)];
    StreamTable::build(
        vec![StreamListener::new(mode).routes([Arc::new(route)])],
        |_| Some(StreamBackend::fixed([backend])),
    )
    .unwrap()
}

#[tokio::test]
async fn tcp_and_udp_ports_relay_and_are_counted_per_route() {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let udp_echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_echo_addr = udp_echo.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = udp_echo.recv_from(&mut buf).await.unwrap();
            udp_echo.send_to(&buf[..n], from).await.unwrap();
        }
    });

    let mut gw = gateway(options().with_drain_timeout(Duration::from_millis(300)));
    let metrics = gw.metrics().clone();
    let tcp_router = StreamRouter::new(table(ListenerMode::Tcp, echo_addr))
        .observer(StreamPortMetrics::new(metrics.clone(), 0, "tcp"));
    let tcp_addr = gw.listeners_mut().add_streams(0, tcp_router).await.unwrap();
    let udp_router = StreamRouter::new(table(ListenerMode::Udp, udp_echo_addr))
        .observer(StreamPortMetrics::new(metrics.clone(), 0, "udp"));
    let udp_addr = gw.listeners_mut().add_udp(0, udp_router).await.unwrap();

    let mut tcp = TcpStream::connect(tcp_addr).await.unwrap();
    tcp.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    within(tcp.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"hello");
    assert_eq!(gw.listeners().active_connections(), 1);

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(udp_addr).await.unwrap();
    client.send(b"datagram").await.unwrap();
    let mut buf = [0u8; 64];
    let n = within(client.recv(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"datagram");

    let text = metrics.encode();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(r#"gatekit_stream_connections_open{route="default/echo",protocol="tcp"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"gatekit_stream_connections_total{route="default/echo",protocol="udp"} 1"#),
        "{text}"
    );

    // Removing the port: the socket closes at once; the open connection is closed at
    // the drain deadline, and its bytes are then counted.
    assert!(gw.listeners_mut().remove(tcp_addr.port()).await);
    assert!(TcpStream::connect(tcp_addr).await.is_err());
    let mut rest = Vec::new();
    let _ = within(tcp.read_to_end(&mut rest)).await;
    let text = metrics.encode();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(r#"gatekit_stream_connections_open{route="default/echo",protocol="tcp"} 0"#),
        "{text}"
    );
    assert!(
        has(r#"gatekit_stream_received_bytes_total{route="default/echo",protocol="tcp"} 5"#),
        "{text}"
    );
    assert!(gw.listeners_mut().remove_udp(udp_addr.port()).await);
}
