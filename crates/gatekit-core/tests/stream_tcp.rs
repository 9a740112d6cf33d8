//! The TCP stream data plane over real sockets: byte-exact relay both ways, half-close,
//! weighted backends, the idle timeout, draining, refusal without a route, and the
//! PROXY protocol read on accept and written to backends.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_core::route::RouteId;
use gatekit_core::server::{
    Drain, DrainOutcome, ProxyHeader, ProxyProtocol, ProxyVersion, Server, ServerConfig,
    ServerHandle, encode_proxy_header, parse_proxy_header,
};
use gatekit_core::stream::{
    ListenerMode, Refusal, StreamBackend, StreamBackendRef, StreamListener, StreamObserver,
    StreamRoute, StreamRouter, StreamStats, StreamTable,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("test step timed out")
}

/// An echo server: echoes until EOF, then shuts its writing down. Counts accepts.
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
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

/// A server that writes `tag` and closes.
async fn tagged(tag: u8) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = tcp.write_all(&[tag]).await;
            });
        }
    });
    addr
}

/// A server that sends each connection's first 256 bytes (or fewer, at EOF) down `tx`.
async fn recorder() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let _ = (&mut tcp).take(256).read_to_end(&mut buf).await;
                let _ = tx.send(buf);
            });
        }
    });
    (addr, rx)
}

fn route(name: &str, backends: &[(&str, u32)], idle: Option<Duration>) -> Arc<StreamRoute> {
    let mut r = StreamRoute::new(RouteId::new("default", name));
    r.backends = backends
        .iter()
        .map(|(n, w)| StreamBackendRef::new(*n, *w))
        .collect();
    r.idle_timeout = idle;
    Arc::new(r)
}

fn tcp_table(routes: Vec<Arc<StreamRoute>>, backends: Vec<(&str, StreamBackend)>) -> StreamTable {
    let backends: std::collections::HashMap<String, StreamBackend> = backends
        .into_iter()
        .map(|(n, b)| (n.to_owned(), b))
        .collect();
    StreamTable::build(
        vec![StreamListener::new(ListenerMode::Tcp).routes(routes)],
        |name| backends.get(name).cloned(),
    )
    .unwrap()
}

async fn serve(router: StreamRouter, config: ServerConfig, drain: &Drain) -> ServerHandle {
    Server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .config(config)
        .drain(drain)
        .serve_streams(router)
}

#[derive(Default)]
struct Recorded {
    opened: AtomicUsize,
    closed: parking_lot::Mutex<Vec<StreamStats>>,
    refused: parking_lot::Mutex<Vec<Refusal>>,
}

impl StreamObserver for Recorded {
    fn opened(&self, _: &RouteId) {
        self.opened.fetch_add(1, Ordering::SeqCst);
    }
    fn closed(&self, _: &RouteId, stats: &StreamStats) {
        self.closed.lock().push(*stats);
    }
    fn refused(&self, _: Option<&RouteId>, reason: Refusal) {
        self.refused.lock().push(reason);
    }
}

#[tokio::test]
async fn one_megabyte_each_way_byte_exact_and_counted() {
    let (backend, _) = echo().await;
    let observer = Arc::new(Recorded::default());
    let table = tcp_table(
        vec![route("echo", &[("echo", 1)], None)],
        vec![("echo", StreamBackend::fixed([backend]))],
    );
    let router = StreamRouter::new(table).observer(observer.clone());
    let server = serve(router, ServerConfig::default(), &Drain::new()).await;

    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let (mut r, mut w) = tcp.into_split();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    within(r.read_to_end(&mut got)).await.unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the echoed bytes differ");

    // The close is reported with both directions' counts.
    within(async {
        while observer.closed.lock().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let stats = observer.closed.lock()[0];
    assert_eq!((stats.received, stats.sent), (1_000_000, 1_000_000));
    assert_eq!(observer.opened.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn half_close_keeps_the_other_direction_open() {
    // A backend that reads to EOF, then answers with what it read, reversed.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        tcp.read_to_end(&mut buf).await.unwrap();
        buf.reverse();
        tcp.write_all(&buf).await.unwrap();
    });
    let table = tcp_table(
        vec![route("r", &[("b", 1)], None)],
        vec![("b", StreamBackend::fixed([backend]))],
    );
    let server = serve(
        StreamRouter::new(table),
        ServerConfig::default(),
        &Drain::new(),
    )
    .await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(b"abcdef").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(tcp.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"fedcba");
}

#[tokio::test]
async fn weights_split_connections_three_to_one() {
    let (a, b) = (tagged(b'a').await, tagged(b'b').await);
    let table = tcp_table(
        vec![route("split", &[("a", 3), ("b", 1), ("never", 0)], None)],
        vec![
            ("a", StreamBackend::fixed([a])),
            ("b", StreamBackend::fixed([b])),
            ("never", StreamBackend::fixed([b])),
        ],
    );
    let server = serve(
        StreamRouter::new(table),
        ServerConfig::default(),
        &Drain::new(),
    )
    .await;
    let mut counts = [0usize; 2];
    for _ in 0..1000 {
        let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut tag = [0u8; 1];
        within(tcp.read_exact(&mut tag)).await.unwrap();
        counts[usize::from(tag[0] == b'b')] += 1;
    }
    // Binomial(1000, 0.75): mean 750, sd 13.7; 5 sd either side.
    assert!((682..=818).contains(&counts[0]), "{counts:?}");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_its_timeout() {
    let (backend, accepted) = echo().await;
    let table = tcp_table(
        vec![route("idle", &[("b", 1)], Some(Duration::from_millis(300)))],
        vec![("b", StreamBackend::fixed([backend]))],
    );
    let server = serve(
        StreamRouter::new(table),
        ServerConfig::default(),
        &Drain::new(),
    )
    .await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    // Traffic keeps it open past the timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        tcp.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        within(tcp.read_exact(&mut one)).await.unwrap();
    }
    // ...silence closes it.
    let start = tokio::time::Instant::now();
    let mut rest = Vec::new();
    within(tcp.read_to_end(&mut rest)).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_drain_leaves_streams_open_until_its_deadline() {
    let (backend, _) = echo().await;
    let table = tcp_table(
        vec![route("r", &[("b", 1)], None)],
        vec![("b", StreamBackend::fixed([backend]))],
    );
    let drain = Drain::new();
    let server = serve(StreamRouter::new(table), ServerConfig::default(), &drain).await;
    let addr = server.local_addr();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"1").await.unwrap();
    let mut one = [0u8; 1];
    within(tcp.read_exact(&mut one)).await.unwrap();

    let draining = tokio::spawn({
        let drain = drain.clone();
        async move { drain.drain(Duration::from_millis(500)).await }
    });
    // Still relaying while the drain waits; new connections are refused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    tcp.write_all(b"2").await.unwrap();
    within(tcp.read_exact(&mut one)).await.unwrap();
    assert_eq!(&one, b"2");
    assert!(TcpStream::connect(addr).await.is_err());
    // At the deadline it is closed.
    let outcome = within(draining).await.unwrap();
    assert_eq!(outcome, DrainOutcome::TimedOut { dropped: 1 });
    let mut rest = Vec::new();
    let read = within(tcp.read_to_end(&mut rest)).await;
    assert!(read.is_err() || rest.is_empty());
}

#[tokio::test]
async fn no_route_or_no_valid_backend_closes_before_any_backend_is_contacted() {
    let (backend, accepted) = echo().await;
    let observer = Arc::new(Recorded::default());
    let router = StreamRouter::new(StreamTable::empty()).observer(observer.clone());
    let server = serve(router.clone(), ServerConfig::default(), &Drain::new()).await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut buf = Vec::new();
    within(tcp.read_to_end(&mut buf)).await.unwrap();

    // A reload: the route's only backend does not resolve.
    router.store(tcp_table(
        vec![route("r", &[("missing", 1)], None)],
        vec![("b", StreamBackend::fixed([backend]))],
    ));
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    within(tcp.read_to_end(&mut buf)).await.unwrap();
    assert!(buf.is_empty());
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert_eq!(
        *observer.refused.lock(),
        [Refusal::NoRoute, Refusal::InvalidBackend]
    );
}

#[tokio::test]
async fn a_failed_endpoint_is_skipped_for_another() {
    let (backend, accepted) = echo().await;
    // A port nobody listens on.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let table = tcp_table(
        vec![route("r", &[("b", 1)], None)],
        vec![("b", StreamBackend::fixed([dead, backend]))],
    );
    let server = serve(
        StreamRouter::new(table),
        ServerConfig::default(),
        &Drain::new(),
    )
    .await;
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        tcp.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        within(tcp.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"ping");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn proxy_protocol_from_a_trusted_source_sets_the_client_written_to_the_backend() {
    let (backend, mut seen) = recorder().await;
    let table = || {
        tcp_table(
            vec![route("r", &[("b", 1)], None)],
            vec![(
                "b",
                StreamBackend::fixed([backend]).proxy_protocol(Some(ProxyVersion::V1)),
            )],
        )
    };
    let trusted = ServerConfig::default()
        .proxy_protocol(Some(ProxyProtocol::new(["127.0.0.0/8".parse().unwrap()])));
    let server = serve(StreamRouter::new(table()), trusted, &Drain::new()).await;
    let claimed: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let header = encode_proxy_header(ProxyVersion::V2, claimed, server.local_addr());

    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(&header).await.unwrap();
    tcp.write_all(b"payload").await.unwrap();
    tcp.shutdown().await.unwrap();
    let got = within(seen.recv()).await.unwrap();
    let (written, len) = parse_proxy_header(&got).unwrap().unwrap();
    assert_eq!(
        written.source(),
        Some(claimed),
        "the header's client reaches the backend"
    );
    assert_eq!(&got[len..], b"payload");

    // Untrusted (another range): the header is not honoured, it is payload.
    let untrusted = ServerConfig::default()
        .proxy_protocol(Some(ProxyProtocol::new(["10.0.0.0/8".parse().unwrap()])));
    let server2 = serve(StreamRouter::new(table()), untrusted, &Drain::new()).await;
    let mut tcp = TcpStream::connect(server2.local_addr()).await.unwrap();
    let header = encode_proxy_header(ProxyVersion::V1, claimed, server2.local_addr());
    tcp.write_all(&header).await.unwrap();
    tcp.shutdown().await.unwrap();
    let got = within(seen.recv()).await.unwrap();
    let (written, len) = parse_proxy_header(&got).unwrap().unwrap();
    let ProxyHeader::Proxied { source, .. } = written else {
        panic!("{written:?}")
    };
    assert_eq!(source.ip(), tcp.local_addr().unwrap().ip());
    assert_eq!(source.port(), tcp.local_addr().unwrap().port());
    assert_eq!(&got[len..], &header[..]);

    // Trusted and malformed: closed, the backend never hears of it.
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(b"PROXY TCP4 not an address\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = within(tcp.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        seen.try_recv().is_err(),
        "no backend connection for a malformed header"
    );
}

#[tokio::test]
async fn proxy_protocol_sets_the_remote_address_http_requests_see() {
    use gatekit_core::ConnectionInfo;
    let svc = tower::service_fn(|req: http::Request<gatekit_core::Body>| async move {
        let info = req.extensions().get::<ConnectionInfo>().cloned().unwrap();
        let body = http_body_util::Full::new(bytes::Bytes::from(info.remote_addr().to_string()));
        Ok::<_, std::convert::Infallible>(http::Response::new(body))
    });
    let config = ServerConfig::default()
        .proxy_protocol(Some(ProxyProtocol::new(["127.0.0.1/32".parse().unwrap()])));
    let server = Server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .config(config)
        .serve(svc);
    let claimed: SocketAddr = "[2001:db8::9]:1234".parse().unwrap();
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(&encode_proxy_header(
        ProxyVersion::V1,
        claimed,
        server.local_addr(),
    ))
    .await
    .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    within(tcp.read_to_string(&mut answer)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("[2001:db8::9]:1234"), "{answer}");
}
