use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1 as client_h1, http2 as client_h2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use super::*;

/// A server whose service answers with the client address it found in the request's
/// `ConnectionInfo`.
async fn start(config: ServerConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = tower::service_fn(|req: Request<crate::Body>| async move {
        let info = req.extensions().get::<ConnectionInfo>().cloned();
        let body = info.map_or("none".to_owned(), |i| i.remote_addr().ip().to_string());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(
        listener,
        svc,
        async move {
            let _ = stopped.await;
        },
        config,
    ));
    (addr, stop)
}

type Sender = client_h1::SendRequest<Empty<Bytes>>;

async fn connect_h1(addr: SocketAddr) -> Sender {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = client_h1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    tx
}

async fn send(tx: &mut Sender, path: &str) -> Result<String, hyper::Error> {
    let req = Request::get(path)
        .header("host", "x")
        .body(Empty::new())
        .unwrap();
    let rsp = tx.send_request(req).await?;
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

async fn get_h1(addr: SocketAddr) -> String {
    send(&mut connect_h1(addr).await, "/").await.unwrap()
}

async fn get_h2(addr: SocketAddr) -> Result<String, hyper::Error> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) =
        client_h2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::get("http://x/").body(Full::default()).unwrap();
    let rsp = tx.send_request(req).await?;
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

/// Reads until the peer closes; `true` if it did (EOF or reset) within five seconds.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    read.is_ok()
}

/// `/slow` tells `started` it began, then answers only once `release` turns true; any
/// other path answers at once.
fn slow_service(
    started: mpsc::UnboundedSender<()>,
    release: watch::Receiver<bool>,
) -> impl Service<
    Request<crate::Body>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: Request<crate::Body>| {
        let started = started.clone();
        let mut release = release.clone();
        async move {
            if req.uri().path() == "/slow" {
                started.send(()).unwrap();
                let _ = release.wait_for(|r| *r).await;
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("done"))))
        }
    })
}

/// Reports each connection event on a channel, so a test awaits the event itself.
#[derive(Debug)]
struct Events(mpsc::UnboundedSender<&'static str>);

impl ConnectionObserver for Events {
    fn opened(&self) {
        let _ = self.0.send("opened");
    }
    fn closed(&self) {
        let _ = self.0.send("closed");
    }
    fn rejected(&self) {
        let _ = self.0.send("rejected");
    }
}

#[tokio::test]
async fn default_config_serves_http1_and_h2c_with_connection_info() {
    let (addr, _stop) = start(ServerConfig::default()).await;
    assert_eq!(get_h1(addr).await, "127.0.0.1");
    assert_eq!(get_h2(addr).await.unwrap(), "127.0.0.1");
}

#[tokio::test]
async fn http1_only_config_serves_http1_and_refuses_the_h2_preface() {
    let (addr, _stop) = start(ServerConfig::default().http2(false)).await;
    assert_eq!(get_h1(addr).await, "127.0.0.1");
    let h2 = tokio::time::timeout(Duration::from_secs(5), get_h2(addr)).await;
    assert!(
        matches!(h2, Ok(Err(_))),
        "h2 must fail on an HTTP/1-only server"
    );
}

#[tokio::test]
async fn a_shared_limit_closes_the_connection_beyond_it_on_any_listener() {
    let limit = ConnectionLimit::new(2);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let observer: Arc<dyn ConnectionObserver> = Arc::new(Events(events_tx));
    let (started, _) = mpsc::unbounded_channel();
    let (_release, release) = watch::channel(false);
    let mut servers = Vec::new();
    for _ in 0..2 {
        let server = Server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
            .limit(limit.clone())
            .observer(observer.clone())
            .serve(slow_service(started.clone(), release.clone()));
        servers.push(server);
    }
    let (a, b) = (servers[0].local_addr(), servers[1].local_addr());

    // One connection on each listener, each proven accepted by a served request.
    let mut first = connect_h1(a).await;
    let mut second = connect_h1(b).await;
    assert_eq!(send(&mut first, "/").await.unwrap(), "done");
    assert_eq!(send(&mut second, "/").await.unwrap(), "done");
    assert_eq!(limit.active(), 2);

    // The third, on either listener, is closed at once and counted.
    let mut third = TcpStream::connect(a).await.unwrap();
    assert!(
        closed_by_peer(&mut third).await,
        "third connection not closed"
    );
    assert_eq!(limit.rejected(), 1);
    let seen: Vec<_> = [
        events.recv().await,
        events.recv().await,
        events.recv().await,
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(seen, ["opened", "opened", "rejected"]);

    // Closing one frees a slot.
    drop(second);
    assert_eq!(events.recv().await, Some("closed"));
    assert_eq!(limit.active(), 1);
    assert_eq!(get_h1(b).await, "done");
    assert_eq!(send(&mut first, "/").await.unwrap(), "done");
}

#[tokio::test]
async fn stop_closes_the_socket_and_keeps_open_connections() {
    let (started, _) = mpsc::unbounded_channel();
    let (_release, release) = watch::channel(false);
    let server = Server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .serve(slow_service(started, release));
    let addr = server.local_addr();
    let mut open = connect_h1(addr).await;
    assert_eq!(send(&mut open, "/").await.unwrap(), "done");

    server.stop().await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(send(&mut open, "/").await.unwrap(), "done");
}

#[tokio::test]
async fn drain_completes_an_in_flight_request_and_refuses_new_connections() {
    let drain = Drain::new();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let server = Server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .config(ServerConfig::default().path_policy(Some(Default::default())))
        .drain(&drain)
        .observer(Arc::new(Events(events_tx)))
        .serve(slow_service(started_tx, release_rx));
    let addr = server.local_addr();
    // An idle keep-alive connection does not hold the drain.
    let mut idle = connect_h1(addr).await;
    assert_eq!(send(&mut idle, "/").await.unwrap(), "done");

    let mut slow = connect_h1(addr).await;
    let in_flight = tokio::spawn(async move { send(&mut slow, "/slow").await });
    started.recv().await.unwrap();
    assert_eq!(drain.active_connections(), 2);

    let draining = tokio::spawn({
        let drain = drain.clone();
        async move { drain.drain(Duration::from_secs(30)).await }
    });
    // The idle connection is closed by the drain (which closed the socket first) while
    // the slow request is in flight.
    assert_eq!(events.recv().await, Some("opened"));
    assert_eq!(events.recv().await, Some("opened"));
    assert_eq!(events.recv().await, Some("closed"));
    assert!(send(&mut idle, "/").await.is_err());
    assert!(!in_flight.is_finished());
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    release.send(true).unwrap();
    assert_eq!(in_flight.await.unwrap().unwrap(), "done");
    let outcome = tokio::time::timeout(Duration::from_secs(5), draining)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, DrainOutcome::Complete);
    assert_eq!(drain.active_connections(), 0);
    // The handle outlives its stopped listener harmlessly.
    server.stop().await;
}

#[tokio::test]
async fn drain_deadline_drops_a_hung_request() {
    let drain = Drain::new();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (_release, release_rx) = watch::channel(false);
    let _server = Server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .drain(&drain)
        .serve(slow_service(started_tx, release_rx));
    let addr = _server.local_addr();
    let mut slow = connect_h1(addr).await;
    let in_flight = tokio::spawn(async move { send(&mut slow, "/slow").await });
    started.recv().await.unwrap();

    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        drain.drain(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    assert_eq!(outcome, DrainOutcome::TimedOut { dropped: 1 });
    assert_eq!(drain.active_connections(), 0);
    // The client sees its connection end without a response.
    let result = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_err());
}

/// A TCP connection to `addr` from the loopback address `from` (any of 127.0.0.0/8).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

async fn h1_over(tcp: TcpStream) -> Sender {
    let (tx, conn) = client_h1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    tx
}

#[tokio::test]
async fn a_per_client_limit_closes_a_clients_connection_beyond_it_and_no_one_elses() {
    let per_client = PerClientLimit::new(2);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    // Answers with the client address the request came from.
    let svc = tower::service_fn(|req: Request<crate::Body>| async move {
        let info = req.extensions().get::<ConnectionInfo>().cloned();
        let body = info.map_or("none".to_owned(), |i| i.remote_addr().ip().to_string());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    let server = Server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .per_client_limit(per_client.clone())
        .observer(Arc::new(Events(events_tx)))
        .serve(svc);
    let addr = server.local_addr();
    let local: std::net::IpAddr = [127, 0, 0, 1].into();

    // Two connections from 127.0.0.1, each proven accepted by a served request.
    let mut first = h1_over(connect_from([127, 0, 0, 1], addr).await).await;
    let mut second = h1_over(connect_from([127, 0, 0, 1], addr).await).await;
    assert_eq!(send(&mut first, "/").await.unwrap(), "127.0.0.1");
    assert_eq!(send(&mut second, "/").await.unwrap(), "127.0.0.1");
    assert_eq!(per_client.active(local), 2);

    // The third from the same address is closed at once, without an HTTP answer.
    let mut third = connect_from([127, 0, 0, 1], addr).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .expect("third connection not closed");
    assert!(read.is_err() || answer.is_empty(), "answered: {answer:?}");
    assert_eq!(per_client.rejected(), 1);

    // Another client address is not affected.
    let mut other = h1_over(connect_from([127, 0, 0, 2], addr).await).await;
    assert_eq!(send(&mut other, "/").await.unwrap(), "127.0.0.2");
    assert_eq!(per_client.clients(), 2);
    let seen: Vec<_> = [
        events.recv().await,
        events.recv().await,
        events.recv().await,
        events.recv().await,
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(seen, ["opened", "opened", "rejected", "opened"]);

    // Closing one frees a slot for its client.
    drop(second);
    assert_eq!(events.recv().await, Some("closed"));
    assert_eq!(per_client.active(local), 1);
    let mut fourth = h1_over(connect_from([127, 0, 0, 1], addr).await).await;
    assert_eq!(send(&mut fourth, "/").await.unwrap(), "127.0.0.1");
    assert_eq!(send(&mut first, "/").await.unwrap(), "127.0.0.1");
    assert_eq!(per_client.rejected(), 1);

    // Entries go with a client's last connection: nothing is left once all are closed.
    drop((first, fourth, other));
    assert_eq!(events.recv().await, Some("opened"));
    for _ in 0..3 {
        assert_eq!(events.recv().await, Some("closed"));
    }
    assert_eq!(per_client.clients(), 0);
    assert_eq!(per_client.active(local), 0);
}

/// A server with `detection` whose service answers `<remote ip> <peer ip>` from the
/// request's `ConnectionInfo`.
async fn start_detecting(
    detection: crate::client_ip::ClientIpDetection,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = tower::service_fn(|req: Request<crate::Body>| async move {
        let info = req.extensions().get::<ConnectionInfo>().cloned().unwrap();
        let body = format!("{} {}", info.remote_addr().ip(), info.peer_addr().ip());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig::default().client_ip(Some(detection));
    tokio::spawn(serve_with(
        listener,
        svc,
        async move {
            let _ = stopped.await;
        },
        config,
    ));
    (addr, stop)
}

/// A GET of `/` with `headers` over a new HTTP/1 connection: (status, x-gatekit-error,
/// body).
async fn get_with(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut tx = connect_h1(addr).await;
    let mut req = Request::get("/").header("host", "x");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let rsp = tx
        .send_request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = rsp.status().as_u16();
    let error = rsp
        .headers()
        .get("x-gatekit-error")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, error, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_client_behind_a_trusted_hop_is_the_requests_remote_address() {
    use crate::client_ip::ClientIpDetection;
    let (addr, _stop) = start_detecting(ClientIpDetection::xff_trusted_hops(1)).await;
    let (status, _, body) = get_with(addr, &[("x-forwarded-for", "6.6.6.6, 10.1.2.3")]).await;
    assert_eq!((status, body.as_str()), (200, "10.1.2.3 127.0.0.1"));
    // Without the header, or with garbage, the peer is the client.
    assert_eq!(get_with(addr, &[]).await.2, "127.0.0.1 127.0.0.1");
    let garbage = get_with(addr, &[("x-forwarded-for", "10.1.2.3:99")]).await;
    assert_eq!(garbage.2, "127.0.0.1 127.0.0.1");

    // Trusted ranges: loopback is not one, so the header is not read.
    let (addr, _stop) = start_detecting(ClientIpDetection::xff_trusted_cidrs(["10.0.0.0/8"
        .parse()
        .unwrap()]))
    .await;
    let (_, _, body) = get_with(addr, &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(body, "127.0.0.1 127.0.0.1");
}

#[tokio::test]
async fn a_fail_closed_custom_header_refuses_a_request_without_a_valid_address() {
    use crate::client_ip::ClientIpDetection;
    let name = http::HeaderName::from_static("x-real-ip");
    let (addr, _stop) = start_detecting(ClientIpDetection::custom_header(name, true)).await;
    let (status, _, body) = get_with(addr, &[("x-real-ip", "2001:db8::9")]).await;
    assert_eq!((status, body.as_str()), (200, "2001:db8::9 127.0.0.1"));
    for headers in [vec![], vec![("x-real-ip", "nonsense")]] {
        let (status, error, body) = get_with(addr, &headers).await;
        assert_eq!(
            (status, error.as_str(), body.as_str()),
            (403, "forbidden", "")
        );
    }
}
