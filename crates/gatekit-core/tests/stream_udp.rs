//! UDP flows over real sockets: byte-exact echo of many datagrams across several client
//! flows, a flow's expiry after its idle timeout (and a new flow after it), and the flow
//! bound dropping and counting datagrams of new clients, a route's client-address check
//! giving a denied client no flow.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatekit_core::route::RouteId;
use gatekit_core::stream::{
    ListenerMode, Refusal, StreamAccess, StreamBackend, StreamBackendRef, StreamListener,
    StreamObserver, StreamRoute, StreamRouter, StreamStats, StreamTable, UdpRelay,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("test step timed out")
}

/// A UDP echo server; reports each new source address (a flow's upstream socket).
async fn echo() -> (SocketAddr, mpsc::UnboundedReceiver<SocketAddr>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            if seen.insert(from) {
                let _ = tx.send(from);
            }
            socket.send_to(&buf[..n], from).await.unwrap();
        }
    });
    (addr, rx)
}

fn table(backend: SocketAddr, idle: Option<Duration>) -> StreamTable {
    let mut r = StreamRoute::new(RouteId::new("default", "udp"));
    r.backends = vec![StreamBackendRef::new("echo", 1)];
    StreamTable::build(
        vec![
            StreamListener::new(ListenerMode::Udp)
                .routes([Arc::new(r)])
                .idle_timeout(idle),
        ],
        |_| Some(StreamBackend::fixed([backend])),
    )
    .unwrap()
}

#[derive(Default)]
struct Closed(parking_lot::Mutex<Vec<StreamStats>>);

impl StreamObserver for Closed {
    fn closed(&self, _: &RouteId, stats: &StreamStats) {
        self.0.lock().push(*stats);
    }
}

#[tokio::test]
async fn datagrams_echo_byte_exact_across_flows() {
    let (backend, mut flows) = echo().await;
    let relay = UdpRelay::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .serve(StreamRouter::new(table(backend, None)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.connect(relay.local_addr()).await.unwrap();
        clients.push(s);
    }
    let mut buf = vec![0u8; 65536];
    for i in 0..1000usize {
        let client = &clients[i % 4];
        // Sizes up to 9 KB, and one of 60 KB.
        let len = if i == 500 {
            60_000
        } else {
            1 + (i * 37) % 9000
        };
        let payload: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        client.send(&payload).await.unwrap();
        let n = within(client.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], &payload[..], "datagram {i}");
    }
    // One upstream socket per client flow.
    let mut upstreams = HashSet::new();
    while let Ok(addr) = flows.try_recv() {
        upstreams.insert(addr);
    }
    assert_eq!(upstreams.len(), 4);
    assert_eq!(relay.flows(), 4);
    assert_eq!(relay.dropped(), 0);
}

#[tokio::test]
async fn an_idle_flow_expires_and_the_next_datagram_makes_a_new_one() {
    let (backend, mut flows) = echo().await;
    let closed = Arc::new(Closed::default());
    let relay = UdpRelay::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .serve(
            StreamRouter::new(table(backend, Some(Duration::from_millis(200))))
                .observer(closed.clone()),
        );
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(relay.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    client.send(b"one").await.unwrap();
    within(client.recv(&mut buf)).await.unwrap();
    let first = within(flows.recv()).await.unwrap();
    assert_eq!(relay.flows(), 1);

    // The timeout under test: wait for the flow to end.
    within(async {
        while relay.flows() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let stats = closed.0.lock()[0];
    assert_eq!((stats.received, stats.sent), (3, 3));

    client.send(b"two").await.unwrap();
    let n = within(client.recv(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"two");
    let second = within(flows.recv()).await.unwrap();
    assert_ne!(first, second, "a new flow has a new upstream socket");
}

#[tokio::test]
async fn the_flow_bound_drops_and_counts_new_clients_datagrams() {
    let (backend, _) = echo().await;
    let relay = UdpRelay::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .max_flows(2)
        .serve(StreamRouter::new(table(backend, None)));
    let mut buf = [0u8; 16];
    let mut clients = Vec::new();
    for _ in 0..2 {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.connect(relay.local_addr()).await.unwrap();
        s.send(b"in").await.unwrap();
        within(s.recv(&mut buf)).await.unwrap();
        clients.push(s);
    }
    let third = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    third.connect(relay.local_addr()).await.unwrap();
    for _ in 0..3 {
        third.send(b"out").await.unwrap();
    }
    within(async {
        while relay.dropped() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(relay.flows(), 2);
    // The open flows keep working.
    clients[0].send(b"still").await.unwrap();
    let n = within(clients[0].recv(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"still");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), third.recv(&mut buf))
            .await
            .is_err(),
        "the third client got no answer"
    );
    relay.stop().await;
}

#[derive(Default)]
struct Refused(parking_lot::Mutex<Vec<Refusal>>);

impl StreamObserver for Refused {
    fn refused(&self, _: Option<&RouteId>, reason: Refusal) {
        self.0.lock().push(reason);
    }
}

fn guarded(backend: SocketAddr, allow: &str) -> StreamTable {
    let mut r = StreamRoute::new(RouteId::new("default", "udp"));
    r.backends = vec![StreamBackendRef::new("echo", 1)];
    r.access = vec![Arc::new(
        StreamAccess::new("p", false).allow([allow.parse().unwrap()]),
    )];
    StreamTable::build(
        vec![StreamListener::new(ListenerMode::Udp).routes([Arc::new(r)])],
        |_| Some(StreamBackend::fixed([backend])),
    )
    .unwrap()
}

#[tokio::test]
async fn a_client_its_routes_check_denies_gets_no_flow() {
    let (backend, mut flows) = echo().await;
    let observer = Arc::new(Refused::default());
    let router = StreamRouter::new(guarded(backend, "10.0.0.0/8")).observer(observer.clone());
    let relay = UdpRelay::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .serve(router.clone());
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(relay.local_addr()).await.unwrap();
    for _ in 0..2 {
        client.send(b"out").await.unwrap();
    }
    within(async {
        while relay.dropped() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(relay.flows(), 0);
    assert!(flows.try_recv().is_err(), "the backend heard from a flow");
    assert_eq!(*observer.0.lock(), [Refusal::Denied, Refusal::Denied]);

    // Allowed by the next table: the same client gets its flow.
    router.store(guarded(backend, "127.0.0.0/8"));
    client.send(b"in").await.unwrap();
    let mut buf = [0u8; 16];
    let n = within(client.recv(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"in");
    assert_eq!(relay.flows(), 1);
    relay.stop().await;
}
