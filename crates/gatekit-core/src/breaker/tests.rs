use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_test::task::{Spawn, spawn};
use tokio_test::{assert_pending, assert_ready};
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::retry::Attempt;
use crate::{Body, BoxError, Error, ErrorKind};

// === a backend the tests control ===

type FrameSender = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// Counts the requests inside it (current and peak) and answers each only when the test
/// opens the gate for it (one semaphore permit per answer).
struct Gate {
    current: AtomicUsize,
    peak: AtomicUsize,
    order: parking_lot::Mutex<Vec<String>>,
    open: Semaphore,
    /// When set, answers carry a streamed body fed by the sender handed out here.
    streaming: parking_lot::Mutex<Option<FrameSender>>,
    stream_next: std::sync::atomic::AtomicBool,
}

/// Counts a request out of the gate when its future ends or is dropped.
struct Inside(Arc<Gate>);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            order: Default::default(),
            open: Semaphore::new(0),
            streaming: Default::default(),
            stream_next: Default::default(),
        })
    }

    fn service(
        self: &Arc<Self>,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send + use<>,
    > + Clone
    + Send
    + use<> {
        let gate = self.clone();
        tower::service_fn(move |req: Request<Body>| {
            let gate = gate.clone();
            let now = gate.current.fetch_add(1, Ordering::SeqCst) + 1;
            gate.peak.fetch_max(now, Ordering::SeqCst);
            gate.order.lock().push(req.uri().path().to_owned());
            let inside = Inside(gate.clone());
            async move {
                let _inside = inside;
                gate.open
                    .acquire()
                    .await
                    .map_err(|_| BoxError::from("gate closed"))?
                    .forget();
                if gate.stream_next.swap(false, Ordering::SeqCst) {
                    let (tx, rx) = mpsc::channel(4);
                    *gate.streaming.lock() = Some(tx);
                    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|frame| (frame, rx))
                    });
                    return Ok(Response::new(Body::new(http_body_util::StreamBody::new(
                        stream,
                    ))));
                }
                if req.uri().path() == "/fail" {
                    return Err(BoxError::from("backend failed"));
                }
                Ok(Response::new(Body::empty()))
            }
        })
    }

    /// Lets `n` waiting requests answer.
    fn answer(&self, n: usize) {
        self.open.add_permits(n);
    }

    fn current(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    fn order(&self) -> Vec<String> {
        self.order.lock().clone()
    }
}

fn config(
    parallel: Option<u32>,
    pending: Option<u32>,
    retries: Option<u32>,
) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        max_parallel_requests: parallel,
        max_pending_requests: pending,
        max_parallel_retries: retries,
        ..Default::default()
    }
}

fn breaker(config: CircuitBreakerConfig) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new("default/web/0/api", config))
}

fn request(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn retry(path: &str, n: u32) -> Request<Body> {
    let mut req = request(path);
    req.extensions_mut().insert(Attempt(n));
    req
}

/// Calls the service (ready at once, as the gate is) and wraps the future for polling
/// by hand.
fn start<S>(svc: &mut Breaker<S>, req: Request<Body>) -> Spawn<ResponseFuture<S>>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    svc.ready().now_or_never().unwrap().unwrap();
    spawn(svc.call(req))
}

/// Asserts a refusal by `threshold` on the first poll: no waiting.
fn assert_refused<F>(fut: &mut Spawn<F>, threshold: Threshold)
where
    F: Future<Output = Result<Response<Body>, BoxError>>,
{
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert_open(&err, threshold);
}

/// Asserts that `err` is a refusal by `threshold` of the test breaker.
fn assert_open(err: &BoxError, threshold: Threshold) {
    assert_eq!(
        Error::find(&**err).map(Error::kind),
        Some(ErrorKind::CircuitOpen)
    );
    let rsp = crate::error_response(&**err);
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["x-gatekit-error"], "circuit-open");
    assert_eq!(rsp.headers()[BREAKER_HEADER], "default/web/0/api");
    assert_eq!(rsp.headers()[THRESHOLD_HEADER], threshold.as_str());
}

/// Polls the futures not done yet; returns how many are done.
fn poll_all<F>(futs: &mut [Option<Spawn<F>>]) -> usize
where
    F: Future<Output = Result<Response<Body>, BoxError>>,
{
    for slot in futs.iter_mut() {
        if let Some(fut) = slot
            && let std::task::Poll::Ready(result) = fut.poll()
        {
            result.unwrap();
            *slot = None;
        }
    }
    futs.iter().filter(|f| f.is_none()).count()
}

// === max_parallel_requests ===

#[tokio::test(start_paused = true)]
async fn sixteen_requests_against_four_slots_four_pass_twelve_fail_fast_then_recovery() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(4), None, None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());

    let mut passed = Vec::new();
    let mut refused = 0;
    for i in 0..16 {
        let mut fut = start(&mut svc, request(&format!("/{i}")));
        match fut.poll() {
            std::task::Poll::Pending => passed.push(fut),
            std::task::Poll::Ready(result) => {
                assert_open(&result.unwrap_err(), Threshold::MaxParallelRequests);
                refused += 1;
            }
        }
    }
    assert_eq!(passed.len(), 4);
    assert_eq!(refused, 12);
    assert_eq!(gate.current(), 4);
    assert_eq!(gate.peak(), 4, "the backend never saw more than four");
    assert!(breaker.is_open());
    let stats = breaker.stats();
    assert_eq!(stats.in_flight, 4);
    assert_eq!(stats.rejected_parallel, 12);
    assert_eq!(stats.pending, 0);

    gate.answer(4);
    for fut in &mut passed {
        assert!(fut.is_woken());
        let rsp = assert_ready!(fut.poll()).unwrap();
        assert_eq!(rsp.status(), 200);
    }
    assert_eq!(breaker.stats().in_flight, 0);
    assert!(!breaker.is_open());

    // Recovery: four pass again, the fifth is refused.
    let mut again: Vec<_> = (0..4)
        .map(|i| start(&mut svc, request(&format!("/again/{i}"))))
        .collect();
    for fut in &mut again {
        assert_pending!(fut.poll());
    }
    assert_refused(
        &mut start(&mut svc, request("/fifth")),
        Threshold::MaxParallelRequests,
    );
    gate.answer(4);
    for fut in &mut again {
        assert_ready!(fut.poll()).unwrap();
    }
    assert_eq!(gate.peak(), 4);
    assert_eq!(breaker.stats().in_flight, 0);
}

#[tokio::test]
async fn without_thresholds_everything_passes_and_is_counted() {
    let gate = Gate::new();
    let breaker = breaker(CircuitBreakerConfig::default());
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());
    let mut futs: Vec<_> = (0..100).map(|_| start(&mut svc, request("/"))).collect();
    for fut in &mut futs {
        assert_pending!(fut.poll());
    }
    assert_eq!(breaker.stats().in_flight, 100);
    assert!(!breaker.is_open());
    gate.answer(100);
    for fut in &mut futs {
        assert_ready!(fut.poll()).unwrap();
    }
    assert_eq!(breaker.stats(), BreakerStats::default());
}

#[tokio::test]
async fn a_zero_limit_refuses_everything_even_with_a_queue() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(0), Some(5), None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());
    // No slot will ever free, so nothing waits for one.
    assert_refused(
        &mut start(&mut svc, request("/")),
        Threshold::MaxParallelRequests,
    );
    assert_eq!(breaker.stats().pending, 0);
    assert_eq!(gate.current(), 0);
}

// === max_pending_requests ===

#[tokio::test(start_paused = true)]
async fn one_slot_two_waiting_one_refused_and_the_waiters_pass_in_order() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(1), Some(2), None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());

    let mut a = start(&mut svc, request("/a"));
    let mut b = start(&mut svc, request("/b"));
    let mut c = start(&mut svc, request("/c"));
    let mut d = start(&mut svc, request("/d"));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_pending!(c.poll());
    assert_refused(&mut d, Threshold::MaxPendingRequests);
    assert_eq!(gate.order(), ["/a"]);
    let stats = breaker.stats();
    assert_eq!((stats.in_flight, stats.pending), (1, 2));
    assert_eq!(stats.rejected_pending, 1);
    assert!(breaker.is_open());

    // One answer at a time: each frees the slot for the oldest waiter.
    gate.answer(1);
    assert_ready!(a.poll()).unwrap();
    assert!(b.is_woken());
    assert!(!c.is_woken(), "the slot went to the oldest waiter only");
    assert_pending!(b.poll());
    assert_pending!(c.poll());
    assert_eq!(gate.order(), ["/a", "/b"]);
    assert_eq!(breaker.stats().pending, 1);

    gate.answer(1);
    assert_ready!(b.poll()).unwrap();
    assert_pending!(c.poll());
    gate.answer(1);
    assert_ready!(c.poll()).unwrap();
    assert_eq!(gate.order(), ["/a", "/b", "/c"]);
    assert_eq!(gate.peak(), 1);
    assert_eq!(breaker.stats().in_flight, 0);
    assert_eq!(breaker.stats().pending, 0);
}

#[tokio::test]
async fn a_newcomer_does_not_overtake_a_waiter_that_was_handed_a_slot() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(1), Some(2), None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());
    let mut a = start(&mut svc, request("/a"));
    let mut b = start(&mut svc, request("/b"));
    assert_pending!(a.poll());
    assert_pending!(b.poll());

    gate.answer(1);
    assert_ready!(a.poll()).unwrap();
    // The freed slot is b's now, although b has not run yet: a newcomer queues.
    let mut c = start(&mut svc, request("/c"));
    assert_pending!(c.poll());
    assert_eq!(gate.order(), ["/a"]);
    assert_eq!(breaker.stats().in_flight, 1);
    assert_pending!(b.poll());
    assert_eq!(gate.order(), ["/a", "/b"]);
    gate.answer(2);
    assert_ready!(b.poll()).unwrap();
    assert_ready!(c.poll()).unwrap();
    assert_eq!(gate.order(), ["/a", "/b", "/c"]);
}

#[tokio::test(start_paused = true)]
async fn the_request_timeout_bounds_the_wait_and_frees_the_place_in_the_queue() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(1), Some(1), None));
    let timeout = crate::timeout::TimeoutLayer::request(Some(Duration::from_secs(2)));
    let mut svc = timeout.layer(CircuitBreakerLayer::new(breaker.clone()).layer(gate.service()));

    let mut a = spawn(svc.ready().await.unwrap().call(request("/a")));
    assert_pending!(a.poll());
    let started = tokio::time::Instant::now();
    let b = svc.ready().await.unwrap().call(request("/b"));
    let err = b.await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        Error::find(&*err).map(Error::kind),
        Some(ErrorKind::RequestTimeout)
    );
    assert_eq!(breaker.stats().pending, 0, "b left the queue");

    // The place is free again: c may wait, and gets the slot when a is done.
    let mut c = spawn(svc.ready().await.unwrap().call(request("/c")));
    assert_pending!(c.poll());
    assert_eq!(breaker.stats().pending, 1);
    gate.answer(1);
    assert_ready!(a.poll()).unwrap();
    assert_pending!(c.poll());
    gate.answer(1);
    assert_ready!(c.poll()).unwrap();
    assert_eq!(gate.order(), ["/a", "/c"], "b never reached the backend");
}

#[tokio::test]
async fn a_slot_handed_to_a_waiter_that_is_dropped_goes_to_the_next() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(1), Some(2), None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());
    let mut a = start(&mut svc, request("/a"));
    let mut b = start(&mut svc, request("/b"));
    let mut c = start(&mut svc, request("/c"));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_pending!(c.poll());

    gate.answer(1);
    assert_ready!(a.poll()).unwrap();
    assert!(b.is_woken());
    drop(b);
    assert!(c.is_woken(), "b's slot went on to c");
    assert_pending!(c.poll());
    assert_eq!(gate.order(), ["/a", "/c"]);
    assert_eq!(breaker.stats().in_flight, 1);
    assert_eq!(breaker.stats().pending, 0);
    gate.answer(1);
    assert_ready!(c.poll()).unwrap();
    assert_eq!(breaker.stats().in_flight, 0);
}

#[tokio::test]
async fn raising_the_limit_lets_waiters_through() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(1), Some(10), None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());
    let mut futs: Vec<_> = (0..4)
        .map(|_| Some(start(&mut svc, request("/"))))
        .collect();
    assert_eq!(poll_all(&mut futs), 0);
    assert_eq!(gate.current(), 1);
    breaker.set_config(config(Some(3), Some(10), None));
    assert_eq!(breaker.config().max_parallel_requests, Some(3));
    assert_eq!(poll_all(&mut futs), 0);
    assert_eq!(gate.current(), 3);
    assert_eq!(breaker.stats().pending, 1);
    gate.answer(3);
    assert_eq!(poll_all(&mut futs), 3);
    assert_eq!(gate.current(), 1, "the last waiter got a freed slot");
    gate.answer(1);
    assert_eq!(poll_all(&mut futs), 4);
    assert_eq!(gate.peak(), 3);
}

// === max_parallel_retries ===

#[tokio::test]
async fn retries_in_flight_are_bounded_apart_from_first_attempts() {
    let gate = Gate::new();
    let breaker = breaker(config(None, None, Some(1)));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());

    let mut first_retry = start(&mut svc, retry("/r1", 2));
    assert_pending!(first_retry.poll());
    assert_eq!(breaker.stats().retries_in_flight, 1);
    assert!(breaker.is_open());
    assert_refused(
        &mut start(&mut svc, retry("/r2", 3)),
        Threshold::MaxParallelRetries,
    );
    // First attempts (marked or not) do not count as retries.
    let mut attempt = start(&mut svc, retry("/a1", 1));
    let mut plain = start(&mut svc, request("/plain"));
    assert_pending!(attempt.poll());
    assert_pending!(plain.poll());
    assert_eq!(gate.order(), ["/r1", "/a1", "/plain"]);
    assert_eq!(breaker.stats().rejected_retries, 1);

    gate.answer(3);
    assert_ready!(first_retry.poll()).unwrap();
    assert_eq!(breaker.stats().retries_in_flight, 0);
    let mut next_retry = start(&mut svc, retry("/r3", 2));
    assert_pending!(next_retry.poll());
    assert_eq!(breaker.stats().retries_in_flight, 1);
    drop(next_retry);
    assert_eq!(breaker.stats().retries_in_flight, 0);
}

#[tokio::test]
async fn a_retry_refused_by_the_parallel_limit_gives_its_retry_slot_back() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(1), None, Some(5)));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());
    let mut a = start(&mut svc, request("/a"));
    assert_pending!(a.poll());
    assert_refused(
        &mut start(&mut svc, retry("/r", 2)),
        Threshold::MaxParallelRequests,
    );
    assert_eq!(breaker.stats().retries_in_flight, 0);
}

// === releasing slots ===

#[tokio::test]
async fn a_dropped_future_gives_its_slot_back_and_cancels_the_inner_call() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(1), None, None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());
    let mut a = start(&mut svc, request("/a"));
    assert_pending!(a.poll());
    assert_eq!(gate.current(), 1);
    drop(a);
    assert_eq!(gate.current(), 0);
    assert_eq!(breaker.stats().in_flight, 0);
    let mut b = start(&mut svc, request("/b"));
    assert_pending!(b.poll());
}

#[tokio::test]
async fn a_failed_call_gives_its_slot_back() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(1), None, None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());
    gate.answer(1);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request("/fail"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "backend failed");
    assert_eq!(breaker.stats().in_flight, 0);
}

#[tokio::test]
async fn the_slot_is_held_until_the_response_body_ends() {
    let gate = Gate::new();
    let breaker = breaker(config(Some(1), None, None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(gate.service());

    gate.stream_next.store(true, Ordering::SeqCst);
    gate.answer(1);
    let rsp = svc
        .ready()
        .await
        .unwrap()
        .call(request("/stream"))
        .await
        .unwrap();
    assert_eq!(gate.current(), 0, "the backend's future is done");
    assert_eq!(breaker.stats().in_flight, 1, "but its body still streams");
    assert_refused(
        &mut start(&mut svc, request("/other")),
        Threshold::MaxParallelRequests,
    );

    let tx = gate.streaming.lock().take().unwrap();
    let mut body = rsp.into_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "part");
    assert_eq!(breaker.stats().in_flight, 1);
    drop(tx);
    assert!(body.frame().await.is_none());
    assert_eq!(
        breaker.stats().in_flight,
        0,
        "given back at the end of the body"
    );

    // Dropped half way: given back as well.
    gate.stream_next.store(true, Ordering::SeqCst);
    gate.answer(1);
    let rsp = svc
        .ready()
        .await
        .unwrap()
        .call(request("/stream"))
        .await
        .unwrap();
    assert_eq!(breaker.stats().in_flight, 1);
    drop(rsp);
    assert_eq!(breaker.stats().in_flight, 0);

    // A body error: given back as well.
    gate.stream_next.store(true, Ordering::SeqCst);
    gate.answer(1);
    let rsp = svc
        .ready()
        .await
        .unwrap()
        .call(request("/stream"))
        .await
        .unwrap();
    let tx = gate.streaming.lock().take().unwrap();
    tx.send(Err("reset".into())).await.unwrap();
    let mut body = rsp.into_body();
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(breaker.stats().in_flight, 0);
    drop(body);

    // An empty body ends with the head: nothing is held, nothing wraps it.
    gate.answer(1);
    let rsp = svc
        .ready()
        .await
        .unwrap()
        .call(request("/empty"))
        .await
        .unwrap();
    assert!(http_body::Body::is_end_stream(rsp.body()));
    assert_eq!(breaker.stats().in_flight, 0);
}

#[tokio::test]
async fn a_buffered_body_is_released_with_its_last_frame() {
    let breaker = breaker(config(Some(1), None, None));
    let svc = tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, BoxError>(Response::new(Body::from("hello")))
    });
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(svc);
    let rsp = svc.ready().await.unwrap().call(request("/")).await.unwrap();
    assert_eq!(breaker.stats().in_flight, 1);
    let mut body = rsp.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "hello");
    assert_eq!(
        breaker.stats().in_flight,
        0,
        "the last frame gives the slot back, before the end is polled"
    );
}

// === concurrency ===

/// Many tasks on two threads through one small breaker: the backend never sees more
/// than the limit, every request is answered or refused, and nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_contention_the_limit_holds_and_nothing_leaks() {
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (c, p) = (current.clone(), peak.clone());
    let backend = tower::service_fn(move |_req: Request<Body>| {
        let (c, p) = (c.clone(), p.clone());
        async move {
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            c.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, BoxError>(Response::new(Body::from("x")))
        }
    });
    let breaker = breaker(config(Some(3), Some(4), Some(1)));
    // Erased, as in a gateway (and so the tasks' futures are plainly `Send`).
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(crate::Backend::new(backend));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
            for i in 0..200 {
                let req = if (t + i) % 5 == 0 {
                    retry("/", 2)
                } else {
                    request("/")
                };
                match svc.clone().oneshot(req).await {
                    Ok(rsp) => {
                        rsp.into_body().collect().await.unwrap();
                        ok += 1;
                    }
                    Err(err) => {
                        assert_eq!(crate::classify(&*err), ErrorKind::CircuitOpen);
                        refused += 1;
                    }
                }
            }
            (ok, refused)
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let (o, r) = task.await.unwrap();
        assert_eq!(o + r, 200);
        ok += o;
    }
    assert!(ok > 0);
    assert!(peak.load(Ordering::SeqCst) <= 3);
    let stats = breaker.stats();
    assert_eq!(
        (stats.in_flight, stats.pending, stats.retries_in_flight),
        (0, 0, 0),
        "{stats:?}"
    );
}
