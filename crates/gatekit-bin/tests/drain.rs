//! Graceful shutdown: the shutdown sequence driven by a future instead of a signal.
#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::time::Duration;

use gatekit_bin::{DrainOutcome, Phase, Transport};
use gatekit_core::Body;
use http::{Request, Response, StatusCode};
use support::{get, http1, process, send, settings};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

/// `/slow` tells `started` it began, then answers only once `release` turns true.
fn slow_service(
    started: mpsc::UnboundedSender<()>,
    release: watch::Receiver<bool>,
) -> impl tower::Service<
    Request<gatekit_core::Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: Request<gatekit_core::Body>| {
        let started = started.clone();
        let mut release = release.clone();
        async move {
            if req.uri().path() == "/slow" {
                started.send(()).unwrap();
                release.wait_for(|r| *r).await.unwrap();
            }
            Ok::<_, Infallible>(Response::new(Body::full("done")))
        }
    })
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_request_and_refuses_new_connections() {
    let mut settings = settings();
    settings.drain_timeout = Duration::from_secs(30);
    let mut process = process(settings).await;
    let admin = process.admin_addr();
    let readiness = process.readiness().clone();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let addr = process
        .listeners_mut()
        .add(0, Transport::Plain, slow_service(started_tx, release_rx))
        .await
        .unwrap();
    readiness.mark_served();
    assert_eq!(get(admin, "/readyz").await.0, StatusCode::OK);

    // A slow request in flight.
    let mut slow = http1(TcpStream::connect(addr).await.unwrap()).await;
    let in_flight = tokio::spawn(async move { send(&mut slow, "/slow").await });
    started.recv().await.unwrap();

    // The "signal".
    let (signal, signalled) = oneshot::channel::<()>();
    let running = tokio::spawn(process.run_until(async {
        let _ = signalled.await;
    }));
    signal.send(()).unwrap();

    // Listeners closed, the request still in flight.
    readiness.reached(Phase::Draining).await;
    assert_eq!(readiness.phase(), Phase::Draining);
    assert_eq!(
        get(admin, "/readyz").await,
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
    );
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(!in_flight.is_finished());
    assert!(!running.is_finished());

    // The in-flight request completes, then the process stops.
    release.send(true).unwrap();
    assert_eq!(
        in_flight.await.unwrap(),
        (StatusCode::OK, "done".to_owned())
    );
    let outcome = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, DrainOutcome::Complete);
    assert_eq!(readiness.phase(), Phase::Stopped);
}

#[tokio::test]
async fn drain_deadline_drops_what_is_left() {
    let mut settings = settings();
    settings.drain_timeout = Duration::from_millis(200);
    let mut process = process(settings).await;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (_release, release_rx) = watch::channel(false);
    let addr = process
        .listeners_mut()
        .add(0, Transport::Plain, slow_service(started_tx, release_rx))
        .await
        .unwrap();
    let mut slow = http1(TcpStream::connect(addr).await.unwrap()).await;
    let in_flight = tokio::spawn(async move {
        let req = Request::get("/slow")
            .header(http::header::HOST, "gatekit.test")
            .body(http_body_util::Empty::new())
            .unwrap();
        slow.send_request(req).await
    });
    started.recv().await.unwrap();

    let outcome = tokio::time::timeout(Duration::from_secs(5), process.shutdown())
        .await
        .unwrap();
    assert_eq!(outcome, DrainOutcome::TimedOut { dropped: 1 });
    // The client sees its connection end without a response.
    let result = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_err());
}

#[tokio::test]
async fn idle_keep_alive_connections_do_not_hold_the_drain() {
    let mut process = process(settings()).await;
    let (started_tx, _started) = mpsc::unbounded_channel();
    let (_release, release_rx) = watch::channel(false);
    let addr = process
        .listeners_mut()
        .add(0, Transport::Plain, slow_service(started_tx, release_rx))
        .await
        .unwrap();
    // An idle HTTP/1.1 keep-alive connection after one request.
    let mut idle = http1(TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(send(&mut idle, "/").await.0, StatusCode::OK);
    // The default drain timeout is 30 s: finishing well within 5 s shows the idle
    // connection was closed, not waited for.
    let outcome = tokio::time::timeout(Duration::from_secs(5), process.shutdown())
        .await
        .unwrap();
    assert_eq!(outcome, DrainOutcome::Complete);
}
