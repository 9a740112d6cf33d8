use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_service::Service;

use super::*;
use crate::{Body, BoxError, Error, ErrorKind};

// === helpers ===

/// What the inner service saw of one attempt.
#[derive(Clone, Debug)]
struct Seen {
    attempt: Option<u32>,
    tried: Option<TriedEndpoints>,
    at: Instant,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// What the inner service does with an attempt.
#[derive(Clone, Debug)]
enum Outcome {
    /// Reads the body, then answers with this status.
    Status(u16),
    /// Reads the body, then answers with this status and `Retry-After`.
    RetryAfter(u16, &'static str),
    /// Reads the body, then fails with an error of this kind.
    Fail(ErrorKind),
    /// Reads the body, then fails with an error of this kind marked retry-safe.
    FailSafe(ErrorKind),
    /// Fails without reading the body.
    FailUnread(ErrorKind),
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn addr(n: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000 + n as u16))
}

/// An inner service that records every attempt (after reading its body) and answers
/// as `script` says for the attempt's index (from 0). Each attempt records a distinct
/// endpoint into its `TriedEndpoints`.
#[allow(clippy::type_complexity)]
fn inner(
    script: impl Fn(usize) -> Outcome + Send + Sync + 'static,
) -> (
    impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send,
    > + Clone
    + Send
    + 'static,
    Log,
) {
    let log = Log::default();
    let script = Arc::new(script);
    let calls = Arc::new(AtomicU32::new(0));
    let svc = tower::service_fn({
        let log = log.clone();
        move |req: Request<Body>| {
            let log = log.clone();
            let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
            let outcome = script(n);
            async move {
                let at = Instant::now();
                let attempt = req.extensions().get::<Attempt>().map(|a| a.0);
                let tried = req.extensions().get::<TriedEndpoints>().cloned();
                if let Some(tried) = &tried {
                    tried.record(addr(n));
                }
                let (body, trailers) = if let Outcome::FailUnread(_) = outcome {
                    (Bytes::new(), None)
                } else {
                    let collected = req.into_body().collect().await?;
                    let trailers = collected.trailers().cloned();
                    (collected.to_bytes(), trailers)
                };
                log.lock().push(Seen {
                    attempt,
                    tried,
                    at,
                    body,
                    trailers,
                });
                let status = |s: u16| {
                    let mut rsp = Response::new(Body::from("answer"));
                    *rsp.status_mut() = StatusCode::from_u16(s).unwrap();
                    rsp
                };
                match outcome {
                    Outcome::Status(s) => Ok(status(s)),
                    Outcome::RetryAfter(s, after) => {
                        let mut rsp = status(s);
                        rsp.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
                        Ok(rsp)
                    }
                    Outcome::Fail(kind) | Outcome::FailUnread(kind) => {
                        Err(Box::new(Error::new(kind)) as BoxError)
                    }
                    Outcome::FailSafe(kind) => {
                        Err(Box::new(Error::new(kind).retry_safe(true)) as BoxError)
                    }
                }
            }
        }
    });
    (svc, log)
}

fn policy(attempts: u32, on: impl FnOnce(&mut RetryOn)) -> RetryPolicy {
    let mut o = RetryOn::default();
    on(&mut o);
    RetryPolicy::new(attempts, o)
}

fn gateway(attempts: u32) -> RetryPolicy {
    policy(attempts, |o| o.gateway_error = true)
}

fn layer(policy: RetryPolicy) -> RetryLayer {
    RetryLayer::new(Arc::new(policy), None)
}

fn get() -> Request<Body> {
    Request::get("http://backend/items")
        .body(Body::empty())
        .unwrap()
}

/// A streamed body fed through a channel.
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

fn channel_body() -> (mpsc::Sender<Frame<Bytes>>, Body) {
    let (tx, rx) = mpsc::channel(64);
    (tx, Body::new(ChannelBody(rx)))
}

/// Ten 1 KiB frames of distinct bytes, and their concatenation.
fn ten_kib() -> (Vec<Bytes>, Bytes) {
    let frames: Vec<Bytes> = (0..10u8)
        .map(|i| Bytes::from(vec![b'a' + i; 1024]))
        .collect();
    let all = frames.concat().into();
    (frames, all)
}

fn trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("x-checksum", HeaderValue::from_static("c0ffee"));
    t
}

/// Sends `frames` and then `trailers` (if any) into a channel body.
async fn feed(tx: mpsc::Sender<Frame<Bytes>>, frames: Vec<Bytes>, trailers: Option<HeaderMap>) {
    for f in frames {
        tx.send(Frame::data(f)).await.unwrap();
        tokio::task::yield_now().await;
    }
    if let Some(t) = trailers {
        tx.send(Frame::trailers(t)).await.unwrap();
    }
}

/// `f`, or a panic after five seconds.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("timed out")
}

// === retries ===

#[tokio::test(start_paused = true)]
async fn a_503_then_200_is_retried_once_with_attempt_and_shared_tried_endpoints() {
    let (svc, log) = inner(|n| Outcome::Status(if n == 0 { 503 } else { 200 }));
    let layer = layer(gateway(2));
    let rsp = layer.layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(
        &rsp.into_body().collect().await.unwrap().to_bytes()[..],
        b"answer"
    );

    let log = log.lock();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].attempt, Some(1));
    assert_eq!(log[1].attempt, Some(2));
    // One list for both attempts: the second sees what the first recorded.
    let tried = log[1].tried.as_ref().unwrap();
    assert_eq!(tried.to_vec(), vec![addr(0), addr(1)]);
    assert!(log[0].tried.as_ref().unwrap().contains(addr(1)));
    assert!(log[1].body.is_empty());

    let stats = layer.stats();
    assert_eq!((stats.attempts(), stats.retries()), (2, 1));
    assert_eq!((stats.budget_exhausted(), stats.replay_overflow()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded_and_the_last_failure_is_returned_as_is() {
    let (svc, log) = inner(|_| Outcome::Status(502));
    let layer = layer(gateway(3));
    let rsp = layer.layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(rsp.status(), 502);
    assert_eq!(
        &rsp.into_body().collect().await.unwrap().to_bytes()[..],
        b"answer"
    );
    let attempts: Vec<_> = log.lock().iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, [Some(1), Some(2), Some(3), Some(4)]);
    assert_eq!(layer.stats().retries(), 3);

    let (svc, log) = inner(|n| {
        Outcome::Fail(if n < 2 {
            ErrorKind::Connect
        } else {
            ErrorKind::BackendRequestTimeout
        })
    });
    let err = layer.layer(svc).oneshot(get()).await.unwrap_err();
    assert_eq!(log.lock().len(), 4);
    assert_eq!(
        Error::find(&*err).map(Error::kind),
        Some(ErrorKind::BackendRequestTimeout)
    );
}

#[tokio::test(start_paused = true)]
async fn a_streamed_post_is_replayed_byte_for_byte_with_its_trailers() {
    let (svc, log) = inner(|n| Outcome::Status(if n == 0 { 503 } else { 200 }));
    let (tx, body) = channel_body();
    let (frames, all) = ten_kib();
    tokio::spawn(feed(tx, frames, Some(trailers())));
    let req = Request::post("http://backend/upload").body(body).unwrap();
    let layer = layer(gateway(2));
    let rsp = layer.layer(svc).oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), 200);

    let log = log.lock();
    assert_eq!(log.len(), 2);
    for seen in log.iter() {
        assert_eq!(seen.body.len(), 10 * 1024);
        assert_eq!(seen.body, all);
        assert_eq!(seen.trailers.as_ref(), Some(&trailers()));
    }
}

#[tokio::test(start_paused = true)]
async fn an_early_answer_is_retried_with_the_whole_body_and_the_old_body_is_superseded() {
    let stash: Arc<Mutex<Option<Body>>> = Arc::default();
    let seen: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let calls = Arc::new(AtomicU32::new(0));
    let svc = tower::service_fn({
        let (stash, seen) = (stash.clone(), seen.clone());
        move |req: Request<Body>| {
            let (stash, seen) = (stash.clone(), seen.clone());
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut body = req.into_body();
                let mut rsp = Response::new(Body::empty());
                if n == 0 {
                    // Answers after one frame and keeps the body, as a connection
                    // still uploading it would.
                    let first = body.frame().await.unwrap()?.into_data().unwrap();
                    seen.lock().push(first);
                    *stash.lock() = Some(body);
                    *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                } else {
                    let all = body.collect().await?.to_bytes();
                    seen.lock().push(all);
                }
                Ok::<_, BoxError>(rsp)
            }
        }
    });
    let (tx, body) = channel_body();
    let (frames, all) = ten_kib();
    tokio::spawn(feed(tx, frames.clone(), None));
    let req = Request::post("http://backend/upload").body(body).unwrap();
    let rsp = layer(gateway(1)).layer(svc).oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(*seen.lock(), vec![frames[0].clone(), all]);
    let mut stale = stash.lock().take().unwrap();
    let err = stale.frame().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("retry"), "{err}");
}

#[tokio::test]
async fn the_first_attempt_streams_the_body_as_it_arrives_and_after_the_response() {
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<Bytes>();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let got_tx = got_tx.clone();
        async move {
            let mut body = req.into_body();
            let first = body.frame().await.unwrap()?.into_data().unwrap();
            got_tx.send(first).unwrap();
            // Answer at once and keep reading: a bidirectional stream.
            tokio::spawn(async move {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        let _ = got_tx.send(data);
                    }
                }
            });
            Ok::<_, BoxError>(Response::new(Body::empty()))
        }
    });
    let (tx, body) = channel_body();
    let req = Request::post("http://backend/stream").body(body).unwrap();
    let call = tokio::spawn(layer(gateway(2)).layer(svc).oneshot(req));

    tx.send(Frame::data(Bytes::from_static(b"one")))
        .await
        .unwrap();
    // The first frame reached the backend before the rest of the body exists.
    assert_eq!(within(got_rx.recv()).await.unwrap(), "one");
    let rsp = within(call).await.unwrap().unwrap();
    assert_eq!(rsp.status(), 200);
    tx.send(Frame::data(Bytes::from_static(b"two")))
        .await
        .unwrap();
    assert_eq!(within(got_rx.recv()).await.unwrap(), "two");
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_bound_is_sent_once_in_full_and_not_retried() {
    let (svc, log) = inner(|_| Outcome::Status(503));
    let (tx, body) = channel_body();
    let (frames, all) = ten_kib();
    tokio::spawn(feed(tx, frames, None));
    let req = Request::post("http://backend/upload").body(body).unwrap();
    let layer = layer(gateway(2).with_max_replay_body(4096));
    let rsp = layer.layer(svc).oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), 503);

    let log = log.lock();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].body, all);
    let stats = layer.stats();
    assert_eq!(
        (stats.attempts(), stats.retries(), stats.replay_overflow()),
        (1, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_large_body_that_was_never_read_is_still_retried_when_unsent() {
    let (svc, log) = inner(|n| {
        if n == 0 {
            Outcome::FailUnread(ErrorKind::Connect)
        } else {
            Outcome::Status(200)
        }
    });
    let big = Bytes::from(vec![9u8; 200_000]);
    let req = Request::post("http://backend/upload")
        .body(Body::full(big.clone()))
        .unwrap();
    // `reset` too: a policy that keeps a copy (the error hands nothing back here).
    let p = policy(1, |o| {
        o.unsent = true;
        o.reset = true;
    });
    let rsp = layer(p).layer(svc).oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let log = log.lock();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].body, big);
}

#[tokio::test(start_paused = true)]
async fn no_attempts_or_no_matching_class_means_one_attempt() {
    // attempts: 0 is a pass-through: no Attempt, no TriedEndpoints.
    let (svc, log) = inner(|_| Outcome::Status(503));
    let layer0 = layer(gateway(0));
    let rsp = layer0.layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(log.lock().len(), 1);
    assert_eq!(log.lock()[0].attempt, None);
    assert!(log.lock()[0].tried.is_none());
    assert_eq!(layer0.stats().attempts(), 1);

    // Only 502 is listed.
    let (svc, log) = inner(|_| Outcome::Status(503));
    let p = policy(3, |o| o.statuses = vec![StatusCode::BAD_GATEWAY]);
    let rsp = layer(p).layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(log.lock().len(), 1);

    // A default "unsent" policy leaves responses and sent failures alone.
    let (svc, log) = inner(|_| Outcome::Fail(ErrorKind::UpstreamProtocol));
    let layer_unsent = layer(RetryPolicy::unsent_once());
    layer_unsent.layer(svc).oneshot(get()).await.unwrap_err();
    assert_eq!(log.lock().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn request_timeouts_client_errors_and_gateway_refusals_are_never_retried() {
    let everything = policy(3, |o| {
        o.unsent = true;
        o.connect_failure = true;
        o.reset = true;
        o.timeout = true;
        o.server_error = true;
        o.gateway_error = true;
    });
    for outcome in [
        Outcome::Fail(ErrorKind::RequestTimeout),
        Outcome::FailSafe(ErrorKind::CircuitOpen),
        Outcome::FailSafe(ErrorKind::Overloaded),
        Outcome::Fail(ErrorKind::RateLimited),
        Outcome::Fail(ErrorKind::PayloadTooLarge),
        Outcome::Fail(ErrorKind::BadRequest),
    ] {
        let (Outcome::Fail(kind) | Outcome::FailSafe(kind)) = outcome else {
            unreachable!()
        };
        let (svc, log) = inner(move |_| outcome.clone());
        let err = layer(everything.clone())
            .layer(svc)
            .oneshot(get())
            .await
            .unwrap_err();
        assert_eq!(Error::find(&*err).map(Error::kind), Some(kind));
        assert_eq!(log.lock().len(), 1, "{kind:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_retried_response_body_is_dropped() {
    struct Flagged(Arc<AtomicBool>);
    impl Drop for Flagged {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    impl http_body::Body for Flagged {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Pending
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let svc = tower::service_fn({
        let (dropped, calls) = (dropped.clone(), calls.clone());
        move |_req: Request<Body>| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            let body = Body::new(Flagged(dropped.clone()));
            async move {
                let mut rsp = Response::new(if first { body } else { Body::empty() });
                if first {
                    *rsp.status_mut() = StatusCode::BAD_GATEWAY;
                }
                Ok::<_, BoxError>(rsp)
            }
        }
    });
    let rsp = layer(gateway(1)).layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert!(dropped.load(Ordering::SeqCst));
}

// === backoff and Retry-After ===

fn gaps(log: &Log) -> Vec<Duration> {
    let log = log.lock();
    log.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(start_paused = true)]
async fn no_retry_is_sent_before_the_base_backoff() {
    let (svc, log) = inner(|n| Outcome::Status(if n == 0 { 503 } else { 200 }));
    let p = gateway(1).with_backoff(Backoff::new(Duration::from_millis(100)));
    let call = tokio::spawn(layer(p).layer(svc).oneshot(get()));
    tokio::time::sleep(Duration::from_millis(99)).await;
    assert_eq!(log.lock().len(), 1);
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(log.lock().len(), 2);
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_exponentially_with_jitter_up_to_its_cap() {
    // The timer wheel rounds deadlines up to the millisecond.
    let ms = Duration::from_millis;
    for _ in 0..10 {
        let (svc, log) = inner(|_| Outcome::Status(503));
        let p = gateway(4).with_backoff(Backoff::new(ms(100)).with_max(ms(1000)));
        layer(p).layer(svc).oneshot(get()).await.unwrap();
        let g = gaps(&log);
        assert_eq!(g.len(), 4);
        for (gap, high) in g.iter().zip([100, 200, 400, 800]) {
            assert!(*gap >= ms(100) && *gap <= ms(high + 1), "{g:?}");
        }

        let (svc, log) = inner(|_| Outcome::Status(503));
        let p = gateway(6).with_backoff(Backoff::new(ms(100)).with_max(ms(150)));
        layer(p).layer(svc).oneshot(get()).await.unwrap();
        let g = gaps(&log);
        assert_eq!(g.len(), 6);
        assert!(g.iter().all(|g| *g >= ms(100) && *g <= ms(151)), "{g:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_within_the_cap_is_waited_for() {
    let (svc, log) = inner(|n| {
        if n == 0 {
            Outcome::RetryAfter(503, "2")
        } else {
            Outcome::Status(200)
        }
    });
    let rsp = layer(gateway(2)).layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let g = gaps(&log);
    assert!(
        g[0] >= Duration::from_secs(2) && g[0] <= Duration::from_millis(2001),
        "{g:?}"
    );

    // A 429 counts when listed; a date in the past is no wait beyond the backoff.
    let (svc, log) = inner(|n| {
        if n == 0 {
            Outcome::RetryAfter(429, "Sun, 06 Nov 1994 08:49:37 GMT")
        } else {
            Outcome::Status(200)
        }
    });
    let p = policy(1, |o| o.statuses = vec![StatusCode::TOO_MANY_REQUESTS]);
    let rsp = layer(p).layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert!(gaps(&log)[0] <= Duration::from_millis(26));
}

#[tokio::test(start_paused = true)]
async fn retry_after_past_the_cap_returns_the_response_at_once() {
    let (svc, log) = inner(|_| Outcome::RetryAfter(503, "100"));
    let start = Instant::now();
    let rsp = layer(gateway(2)).layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()[header::RETRY_AFTER], "100");
    assert_eq!(log.lock().len(), 1);
}

// === budget ===

/// 50 concurrent requests against an inner that fails every attempt (once all 50 first
/// attempts are in), with 3 retries each: (total attempts, stats).
async fn fifty_against_a_failing_inner(budget: RetryBudgetConfig) -> (u32, Arc<RetryStats>) {
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let calls = Arc::new(AtomicU32::new(0));
    let svc = tower::service_fn({
        let calls = calls.clone();
        move |_req: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut open = open_rx.clone();
            async move {
                open.wait_for(|open| *open).await.unwrap();
                Ok::<_, BoxError>(Response::builder().status(503).body(Body::empty()).unwrap())
            }
        }
    });
    let budget = Arc::new(RetryBudget::new(budget));
    let layer = RetryLayer::new(Arc::new(gateway(3)), Some(budget));
    let svc = layer.layer(svc);
    let tasks: Vec<_> = (0..50)
        .map(|_| tokio::spawn(svc.clone().oneshot(get())))
        .collect();
    while calls.load(Ordering::SeqCst) < 50 {
        tokio::task::yield_now().await;
    }
    open_tx.send(true).unwrap();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status(), 503);
    }
    (calls.load(Ordering::SeqCst), layer.stats().clone())
}

#[tokio::test(start_paused = true)]
async fn a_budget_bounds_retries_to_a_share_of_requests() {
    let config = RetryBudgetConfig {
        percent: 20.0,
        min_retries_per_second: 0,
        ..RetryBudgetConfig::default()
    };
    let (attempts, stats) = fifty_against_a_failing_inner(config).await;
    // 20% of 50 requests: 10 retries, then every request's next retry is refused.
    assert_eq!(attempts, 50 + 10);
    assert_eq!(stats.attempts(), 60);
    assert_eq!(stats.retries(), 10);
    assert_eq!(stats.budget_exhausted(), 50);
}

#[tokio::test(start_paused = true)]
async fn a_budget_with_only_a_minimum_rate_lets_that_rate_through() {
    let config = RetryBudgetConfig {
        percent: 0.0,
        min_retries_per_second: 2,
        interval: Duration::from_secs(10),
    };
    let (attempts, stats) = fifty_against_a_failing_inner(config).await;
    assert_eq!(attempts, 50 + 20);
    assert_eq!(stats.retries(), 20);
    assert_eq!(stats.budget_exhausted(), 50);
}

// === cancellation ===

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_backoff_sends_nothing_more() {
    let (svc, log) = inner(|_| Outcome::Status(503));
    let p = gateway(3).with_backoff(Backoff::new(Duration::from_secs(1)));
    let layer = layer(p);
    let mut call = Box::pin(layer.layer(svc).oneshot(get()));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut call)
            .await
            .is_err()
    );
    assert_eq!(log.lock().len(), 1);
    drop(call);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(log.lock().len(), 1);
    assert_eq!((layer.stats().attempts(), layer.stats().retries()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_attempt_drops_the_attempt() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let svc = tower::service_fn({
        let (dropped, calls) = (dropped.clone(), calls.clone());
        move |_req: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let flag = Flag(dropped.clone());
            async move {
                let _flag = flag;
                std::future::pending::<()>().await;
                Ok::<_, BoxError>(Response::new(Body::empty()))
            }
        }
    });
    // As the whole-request timeout above it does.
    let outer = crate::timeout::TimeoutLayer::request(Some(Duration::from_millis(300)));
    let err = outer
        .layer(layer(gateway(3)).layer(svc))
        .oneshot(get())
        .await
        .unwrap_err();
    assert_eq!(
        Error::find(&*err).map(Error::kind),
        Some(ErrorKind::RequestTimeout)
    );
    assert!(dropped.load(Ordering::SeqCst));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// === a real backend ===

/// A hyper HTTP/1.1 backend on loopback that answers 503 to its first request and 200
/// to the others, after reading each body whole; the bodies it read.
async fn flaky_backend() -> (SocketAddr, Arc<Mutex<Vec<Bytes>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let seen = seen.clone();
                async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    let first = {
                        let mut seen = seen.lock();
                        seen.push(body);
                        seen.len() == 1
                    };
                    let mut rsp =
                        Response::new(http_body_util::Full::new(Bytes::from_static(b"done")));
                    if first {
                        *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, hyper::Error>(rsp)
                }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    (addr, bodies)
}

#[tokio::test]
async fn a_post_to_a_real_backend_is_retried_after_a_503() {
    use crate::client::{Client, Transport};

    let client = Client::default();
    let p = gateway(2).with_backoff(Backoff::new(Duration::from_millis(1)));
    let layer = layer(p);

    // A streamed (chunked) body.
    let (addr, bodies) = flaky_backend().await;
    let svc = layer.layer(client.endpoint(addr, Transport::http1()));
    let (tx, body) = channel_body();
    let (frames, all) = ten_kib();
    tokio::spawn(feed(tx, frames, None));
    let req = Request::post(format!("http://{addr}/upload"))
        .header(header::HOST, "backend")
        .body(body)
        .unwrap();
    let rsp = svc.oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(
        &rsp.into_body().collect().await.unwrap().to_bytes()[..],
        b"done"
    );
    assert_eq!(*bodies.lock(), vec![all.clone(), all]);

    // A body with a Content-Length.
    let (addr, bodies) = flaky_backend().await;
    let svc = layer.layer(client.endpoint(addr, Transport::http1()));
    let data = Bytes::from_static(b"{\"id\":42}");
    let req = Request::post(format!("http://{addr}/items"))
        .header(header::HOST, "backend")
        .header(header::CONTENT_LENGTH, data.len())
        .body(Body::full(data.clone()))
        .unwrap();
    let rsp = svc.oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(*bodies.lock(), vec![data.clone(), data]);
    assert_eq!(layer.stats().retries(), 2);
}

// === requests that never left: no copy ===

/// What the inner service saw of one attempt, without touching its body.
#[derive(Debug)]
struct Arrived {
    attempt: Option<u32>,
    tried: Option<Vec<SocketAddr>>,
    extensions: usize,
    at: Instant,
}

/// What an unsent-path inner service does with an attempt.
#[derive(Clone, Copy, Debug)]
enum Unsent {
    /// Fails with a retry-safe error of this kind, handing the request back unread
    /// (as a balancer would, after recording the endpoint it picked).
    HandBack(ErrorKind),
    /// Fails with an error of this kind, retry-safe or not, handing the request back.
    HandBackAs(ErrorKind, bool),
    /// Fails with a retry-safe error of this kind, without the request.
    Keep(ErrorKind),
    /// Reads the body and answers with this status and the body read.
    Answer(u16),
}

type Arrivals = Arc<Mutex<Vec<Arrived>>>;

/// An inner service scripted per attempt index (from 0). A request handed back has the
/// attempt's endpoint (`addr(n)`) recorded in its `TriedEndpoints`, inserted if absent.
#[allow(clippy::type_complexity)]
fn unsent_inner(
    script: impl Fn(usize) -> Unsent + Send + Sync + 'static,
) -> (
    impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send,
    > + Clone
    + Send
    + 'static,
    Arrivals,
) {
    let log = Arrivals::default();
    let calls = Arc::new(AtomicU32::new(0));
    let script = Arc::new(script);
    let svc = tower::service_fn({
        let log = log.clone();
        move |mut req: Request<Body>| {
            let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
            let outcome = script(n);
            let log = log.clone();
            async move {
                log.lock().push(Arrived {
                    attempt: req.extensions().get::<Attempt>().map(|a| a.0),
                    tried: req.extensions().get::<TriedEndpoints>().map(|t| t.to_vec()),
                    extensions: req.extensions().len(),
                    at: Instant::now(),
                });
                let mut hand_back = |kind: ErrorKind, safe: bool| {
                    match req.extensions().get::<TriedEndpoints>() {
                        Some(t) => t.record(addr(n)),
                        None => {
                            let t = TriedEndpoints::new();
                            t.record(addr(n));
                            req.extensions_mut().insert(t);
                        }
                    }
                    Err(Box::new(
                        Error::new(kind)
                            .retry_safe(safe)
                            .with_unsent_request(std::mem::take(&mut req)),
                    ) as BoxError)
                };
                match outcome {
                    Unsent::HandBack(kind) => hand_back(kind, true),
                    Unsent::HandBackAs(kind, safe) => hand_back(kind, safe),
                    Unsent::Keep(kind) => Err(Box::new(Error::new(kind)) as BoxError),
                    Unsent::Answer(s) => {
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut rsp = Response::new(Body::full(body));
                        *rsp.status_mut() = StatusCode::from_u16(s).unwrap();
                        Ok(rsp)
                    }
                }
            }
        }
    });
    (svc, log)
}

#[derive(Clone, Debug, PartialEq)]
struct Tag(u8);

fn tagged_post(body: Body) -> Request<Body> {
    let mut req = Request::post("http://backend/items")
        .header("x-request-id", "r-1")
        .body(body)
        .unwrap();
    req.extensions_mut().insert(Tag(9));
    req
}

#[test]
fn only_classes_that_can_need_a_sent_request_need_a_copy() {
    let on = |f: fn(&mut RetryOn)| {
        let mut o = RetryOn::default();
        f(&mut o);
        o
    };
    assert!(!RetryOn::default().needs_copy());
    assert!(!RetryPolicy::unsent_once().on.needs_copy());
    assert!(!on(|o| o.connect_failure = true).needs_copy());
    assert!(
        !on(|o| {
            o.unsent = true;
            o.connect_failure = true;
        })
        .needs_copy()
    );
    assert!(on(|o| o.reset = true).needs_copy());
    assert!(on(|o| o.timeout = true).needs_copy());
    assert!(on(|o| o.server_error = true).needs_copy());
    assert!(on(|o| o.gateway_error = true).needs_copy());
    assert!(on(|o| o.statuses = vec![StatusCode::BAD_GATEWAY]).needs_copy());
    assert!(on(|o| o.grpc = vec![14]).needs_copy());
    // The default retries at once.
    assert_eq!(RetryPolicy::unsent_once().backoff.base, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_unsent_policy_adds_nothing_and_retries_the_request_handed_back_at_once() {
    let (svc, log) = unsent_inner(|n| {
        if n == 0 {
            Unsent::HandBack(ErrorKind::Connect)
        } else {
            Unsent::Answer(200)
        }
    });
    let layer = layer(RetryPolicy::unsent_once());
    let start = Instant::now();
    let rsp = layer
        .layer(svc)
        .oneshot(tagged_post(Body::from("the payload")))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(
        &rsp.into_body().collect().await.unwrap().to_bytes()[..],
        b"the payload"
    );
    // unsent_once has no backoff.
    assert_eq!(start.elapsed(), Duration::ZERO);

    let log = log.lock();
    assert_eq!(log.len(), 2);
    // The first attempt is the request as it came: no Attempt, no TriedEndpoints.
    assert_eq!(log[0].attempt, None);
    assert_eq!(log[0].tried, None);
    assert_eq!(log[0].extensions, 1, "only the caller's Tag");
    // The retry: its Attempt, and the TriedEndpoints the failed attempt recorded in.
    assert_eq!(log[1].attempt, Some(2));
    assert_eq!(log[1].tried, Some(vec![addr(0)]));
    assert_eq!(log[1].extensions, 3);

    let stats = layer.stats();
    assert_eq!((stats.attempts(), stats.retries()), (2, 1));
    assert_eq!(stats.unreturned(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_streamed_body_handed_back_unread_is_sent_whole_on_the_retry() {
    let (svc, log) = unsent_inner(|n| {
        if n == 0 {
            Unsent::HandBack(ErrorKind::NoHealthyEndpoint)
        } else {
            Unsent::Answer(200)
        }
    });
    let (tx, body) = channel_body();
    let (frames, all) = ten_kib();
    tokio::spawn(feed(tx, frames, Some(trailers())));
    let rsp = layer(RetryPolicy::unsent_once())
        .layer(svc)
        .oneshot(tagged_post(body))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), all);
    assert_eq!(log.lock().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unsent_failure_without_the_request_is_not_retried_and_counted() {
    let (svc, log) = unsent_inner(|_| Unsent::Keep(ErrorKind::Connect));
    let layer = layer(RetryPolicy::unsent_once());
    let err = layer
        .layer(svc)
        .oneshot(tagged_post(Body::from("x")))
        .await
        .unwrap_err();
    assert_eq!(
        Error::find(&*err).map(Error::kind),
        Some(ErrorKind::Connect)
    );
    assert_eq!(log.lock().len(), 1);
    let stats = layer.stats();
    assert_eq!(
        (stats.attempts(), stats.retries(), stats.unreturned()),
        (1, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn unsent_retries_are_bounded_and_the_last_error_keeps_its_request() {
    let (svc, log) = unsent_inner(|_| Unsent::HandBack(ErrorKind::Connect));
    let layer = layer(policy(2, |o| o.unsent = true).with_backoff(Backoff::new(Duration::ZERO)));
    let err = layer
        .layer(svc)
        .oneshot(tagged_post(Body::from("x")))
        .await
        .unwrap_err();
    let attempts: Vec<_> = log.lock().iter().map(|a| a.attempt).collect();
    assert_eq!(attempts, [None, Some(2), Some(3)]);
    let tried = log.lock()[2].tried.clone();
    assert_eq!(tried, Some(vec![addr(0), addr(1)]));
    // Returned as it is: the request still in it.
    let back = crate::take_unsent_request::<Body>(&*err).unwrap();
    assert_eq!(back.extensions().get::<Tag>(), Some(&Tag(9)));
    assert_eq!(back.extensions().get::<Attempt>(), Some(&Attempt(3)));
    let stats = layer.stats();
    assert_eq!(
        (stats.attempts(), stats.retries(), stats.unreturned()),
        (3, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn unsent_retries_are_classified_first() {
    // Retriable only when the policy names them; gateway refusals never.
    for (outcome, on, retried) in [
        // Not retry-safe: `unsent` does not name it, whatever it carries.
        (
            Unsent::HandBackAs(ErrorKind::UpstreamProtocol, false),
            RetryPolicy::unsent_once(),
            false,
        ),
        (
            Unsent::HandBack(ErrorKind::CircuitOpen),
            RetryPolicy::unsent_once(),
            false,
        ),
        (
            Unsent::HandBack(ErrorKind::Overloaded),
            RetryPolicy::unsent_once(),
            false,
        ),
        // `connect_failure` names connect errors, retry-safe or not.
        (
            Unsent::HandBackAs(ErrorKind::Connect, false),
            policy(1, |o| o.connect_failure = true),
            true,
        ),
        (
            Unsent::HandBack(ErrorKind::NoHealthyEndpoint),
            policy(1, |o| o.connect_failure = true),
            false,
        ),
        // An empty policy retries nothing.
        (
            Unsent::HandBack(ErrorKind::Connect),
            policy(1, |_| {}),
            false,
        ),
    ] {
        let (svc, log) = unsent_inner(move |n| if n == 0 { outcome } else { Unsent::Answer(200) });
        let result = layer(on).layer(svc).oneshot(get()).await;
        assert_eq!(result.is_ok(), retried, "{outcome:?}");
        assert_eq!(log.lock().len(), if retried { 2 } else { 1 }, "{outcome:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unsent_policy_returns_responses_as_they_are() {
    let (svc, log) = unsent_inner(|_| Unsent::Answer(503));
    let rsp = layer(RetryPolicy::unsent_once())
        .layer(svc)
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(log.lock().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hand_written_unsent_policy_keeps_its_backoff() {
    let (svc, log) = unsent_inner(|n| {
        if n == 0 {
            Unsent::HandBack(ErrorKind::Connect)
        } else {
            Unsent::Answer(200)
        }
    });
    let p = policy(1, |o| o.unsent = true).with_backoff(Backoff::new(Duration::from_millis(100)));
    let rsp = layer(p).layer(svc).oneshot(get()).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let log = log.lock();
    let gap = log[1].at - log[0].at;
    assert!(gap >= Duration::from_millis(100), "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_returns_the_unsent_failure_with_its_request() {
    let (svc, log) = unsent_inner(|_| Unsent::HandBack(ErrorKind::Connect));
    let budget = Arc::new(RetryBudget::new(RetryBudgetConfig {
        percent: 0.0,
        min_retries_per_second: 0,
        ..RetryBudgetConfig::default()
    }));
    let layer = RetryLayer::new(Arc::new(RetryPolicy::unsent_once()), Some(budget.clone()));
    let err = layer
        .layer(svc)
        .oneshot(tagged_post(Body::from("x")))
        .await
        .unwrap_err();
    assert_eq!(log.lock().len(), 1);
    assert!(crate::take_unsent_request::<Body>(&*err).is_some());
    let stats = layer.stats();
    assert_eq!((stats.retries(), stats.budget_exhausted()), (0, 1));
    assert_eq!(budget.counts(), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn dropping_an_unsent_retry_in_its_backoff_sends_nothing_more() {
    let (svc, log) = unsent_inner(|_| Unsent::HandBack(ErrorKind::Connect));
    let p = policy(3, |o| o.unsent = true).with_backoff(Backoff::new(Duration::from_secs(1)));
    let layer = layer(p);
    let mut call = Box::pin(layer.layer(svc).oneshot(get()));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut call)
            .await
            .is_err()
    );
    drop(call);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(log.lock().len(), 1);
    assert_eq!((layer.stats().attempts(), layer.stats().retries()), (1, 0));
}
