use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio_test::assert_ready_err;
use tower::{Service, ServiceExt};
use tower_layer::Layer;

use super::*;
use crate::{Body, BoxError, Error, ErrorKind, classify, error_response};

/// A body of `frames` frames of `size` bytes each, of unknown length (chunked).
fn chunked(frames: usize, size: usize) -> Body {
    let frames =
        (0..frames).map(move |_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'x'; size]))));
    Body::new(StreamBody::new(futures_util::stream::iter(frames)))
}

fn post(body: Body) -> Request<Body> {
    Request::post("/").body(body).unwrap()
}

/// What the inner service saw: how often it was called, how the body arrived (`Debug` of the gatekit `Body`), the
/// data it passed on, and the error that ended it, if any.
#[derive(Debug, Default)]
struct Seen {
    calls: usize,
    kind: String,
    bytes: usize,
    error: Option<ErrorKind>,
}

/// An inner service that reads the whole request body, records what it saw and answers
/// 200; when the body fails, it fails with an upstream protocol error that has the
/// body's error as its cause (as gatekit's HTTP/1.1 client does) or, without
/// `keep_cause`, an error that lost it (as hyper's HTTP/2 client does: a stream reset).
fn reader(
    keep_cause: bool,
    seen: Arc<parking_lot::Mutex<Seen>>,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Body>, BoxError>>,
> + Clone {
    tower::service_fn(move |req: Request<Body>| {
        seen.lock().calls += 1;
        let seen = seen.clone();
        async move {
            let mut body = req.into_body();
            seen.lock().kind = format!("{body:?}");
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => seen.lock().bytes += frame.data_ref().map_or(0, Bytes::len),
                    Err(e) => {
                        seen.lock().error = Some(classify(&*e));
                        return Err(if keep_cause {
                            Error::with_source(ErrorKind::UpstreamProtocol, e).into()
                        } else {
                            "stream reset".into()
                        });
                    }
                }
            }
            Ok(Response::new(Body::empty()))
        }
    })
}

fn limited(
    max: u64,
    keep_cause: bool,
) -> (
    impl Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
    Arc<parking_lot::Mutex<Seen>>,
) {
    let seen = Arc::new(parking_lot::Mutex::new(Seen::default()));
    let svc = BodyLimitLayer::new(max).layer(reader(keep_cause, seen.clone()));
    (svc, seen)
}

#[tokio::test]
async fn a_content_length_over_the_bound_fails_at_once_without_calling_the_inner_service() {
    let (mut svc, seen) = limited(1000, true);
    let req = Request::post("/")
        .header("content-length", "1001")
        .body(chunked(1, 1001))
        .unwrap();
    let mut fut = tokio_test::task::spawn(svc.ready().await.unwrap().call(req));
    let err = assert_ready_err!(fut.poll());
    let rsp = error_response(&*err);
    assert_eq!(rsp.status(), 413);
    assert_eq!(rsp.headers()["x-gatekit-error"], "payload-too-large");
    assert_eq!(seen.lock().calls, 0);

    // A body whose size is known (no header) is refused the same way.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(post(Body::full(vec![0; 1001])))
        .await
        .unwrap_err();
    assert_eq!(classify(&*err), ErrorKind::PayloadTooLarge);
    assert_eq!(seen.lock().calls, 0);
}

#[tokio::test]
async fn a_streamed_body_is_cut_off_at_the_frame_that_passes_the_bound() {
    // Whether the inner service keeps the body's error as a cause or loses it, the
    // request failed for its body's size: 413.
    for keep_cause in [true, false] {
        let (mut svc, seen) = limited(1000, keep_cause);
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(post(chunked(4, 400)))
            .await
            .unwrap_err();
        // Two frames (800 bytes) passed; the third would have made 1200 and was not passed.
        let seen = seen.lock();
        assert_eq!(seen.bytes, 800);
        assert_eq!(seen.error, Some(ErrorKind::PayloadTooLarge));
        assert_eq!(seen.calls, 1);
        let rsp = error_response(&*err);
        assert_eq!(rsp.status(), 413, "keep_cause: {keep_cause}");
        assert_eq!(rsp.headers()["x-gatekit-error"], "payload-too-large");
    }
}

#[tokio::test]
async fn bodies_within_the_bound_pass_and_bounded_ones_are_not_wrapped() {
    let (mut svc, seen) = limited(1000, true);
    // Exactly the bound, of unknown length: wrapped, counted, passed whole.
    svc.ready()
        .await
        .unwrap()
        .call(post(chunked(4, 250)))
        .await
        .unwrap();
    assert_eq!(seen.lock().bytes, 1000);
    assert_eq!(seen.lock().error, None);
    assert_eq!(seen.lock().kind, "Body(\"Boxed\")");

    // Known to be within the bound, or empty: passed on as they are (no allocation).
    *seen.lock() = Seen::default();
    svc.ready()
        .await
        .unwrap()
        .call(post(Body::full(vec![0; 1000])))
        .await
        .unwrap();
    assert_eq!(seen.lock().bytes, 1000);
    assert_eq!(seen.lock().kind, "Body(\"Full\")");
    svc.ready()
        .await
        .unwrap()
        .call(post(Body::empty()))
        .await
        .unwrap();
    assert_eq!(seen.lock().kind, "Body(\"Empty\")");
}

#[tokio::test]
async fn other_inner_errors_pass_unchanged() {
    let failing = tower::service_fn(|_req: Request<Body>| async {
        Err::<Response<Body>, BoxError>(Error::new(ErrorKind::UpstreamProtocol).into())
    });
    let err = BodyLimitLayer::new(10)
        .layer(failing)
        .oneshot(post(chunked(1, 5)))
        .await
        .unwrap_err();
    assert_eq!(classify(&*err), ErrorKind::UpstreamProtocol);
}

#[tokio::test]
async fn a_limited_body_ends_after_its_error_and_bounds_its_size_hint() {
    let mut body = LimitedBody::new(chunked(3, 10), 15);
    assert_eq!(body.size_hint().upper(), Some(15));
    assert_eq!(
        body.frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap()
            .len(),
        10
    );
    assert_eq!(body.remaining(), 5);
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(
        Error::find(&*err).map(Error::kind),
        Some(ErrorKind::PayloadTooLarge)
    );
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());

    let exact = LimitedBody::new(Body::full("abc"), 15);
    assert_eq!(exact.size_hint().exact(), Some(3));
    let larger = LimitedBody::new(Body::full("abc"), 2);
    assert_eq!(larger.size_hint().upper(), Some(2));
}
