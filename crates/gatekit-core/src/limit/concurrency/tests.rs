use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tokio_test::{assert_pending, assert_ready_err};
use tower::{Service, ServiceExt};
use tower_layer::Layer;

use super::*;
use crate::{Body, BoxError, ErrorKind, classify, error_response};

fn get() -> Request<Body> {
    Request::get("/").body(Body::empty()).unwrap()
}

/// A response body fed from a channel: it ends when the sender is dropped.
fn channel_body() -> (mpsc::UnboundedSender<Bytes>, Body) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|next| next.map(|b| Ok::<_, BoxError>(Frame::data(b))))
    });
    (tx, Body::new(StreamBody::new(stream)))
}

#[tokio::test]
async fn a_full_limit_rejects_at_once_without_calling_the_inner_service() {
    let limit = Arc::new(InFlightLimit::new(2));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = tower::service_fn({
        let calls = calls.clone();
        move |_req: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<Response<Body>, BoxError>>()
        }
    });
    let mut svc = ConcurrencyLimitLayer::new(limit.clone()).layer(svc);
    let _a = svc.ready().await.unwrap().call(get());
    let _b = svc.ready().await.unwrap().call(get());
    assert_eq!(limit.in_flight(), 2);

    let mut third = tokio_test::task::spawn(svc.ready().await.unwrap().call(get()));
    let err = assert_ready_err!(third.poll());
    assert_eq!(classify(&*err), ErrorKind::Overloaded);
    let rsp = error_response(&*err);
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["x-gatekit-error"], "overloaded");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(limit.rejected(), 1);
    assert_eq!(limit.in_flight(), 2);
}

#[tokio::test]
async fn the_slot_is_held_until_the_response_body_ends() {
    let limit = Arc::new(InFlightLimit::new(1));
    let (body_tx, body) = channel_body();
    let body = parking_lot::Mutex::new(Some(body));
    let svc = tower::service_fn(move |_req: Request<Body>| {
        let body = body.lock().take().unwrap_or_default();
        async move { Ok::<_, BoxError>(Response::new(body)) }
    });
    let mut svc = ConcurrencyLimitLayer::new(limit.clone()).layer(svc);

    let rsp = svc.ready().await.unwrap().call(get()).await.unwrap();
    // The head is out, the body streams: still in flight, so the next is refused.
    assert_eq!(limit.in_flight(), 1);
    let err = svc.ready().await.unwrap().call(get()).await.unwrap_err();
    assert_eq!(classify(&*err), ErrorKind::Overloaded);

    let mut body = rsp.into_body();
    body_tx.send(Bytes::from_static(b"part")).unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "part");
    assert_eq!(limit.in_flight(), 1);

    // The end of the stream frees the slot, before the body is even dropped.
    drop(body_tx);
    assert!(body.frame().await.is_none());
    assert_eq!(limit.in_flight(), 0);
    // An empty body, complete with its head: released at once, nothing to hold.
    let rsp = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(limit.in_flight(), 0);
    drop(body);
}

#[tokio::test]
async fn a_dropped_body_future_or_an_inner_error_releases_the_slot() {
    let limit = Arc::new(InFlightLimit::new(1));
    let (inner, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    handle.allow(3);
    let mut svc = ConcurrencyLimitLayer::new(limit.clone()).layer(inner);

    // A response body dropped before its end (the client went away).
    let fut = svc.ready().await.unwrap().call(get());
    let (_body_tx, body) = channel_body();
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(body));
    let rsp = fut.await.unwrap();
    assert_eq!(limit.in_flight(), 1);
    drop(rsp);
    assert_eq!(limit.in_flight(), 0);

    // A response future dropped before the head (a timeout above, a cancellation).
    let fut = svc.ready().await.unwrap().call(get());
    assert_eq!(limit.in_flight(), 1);
    drop(fut);
    assert_eq!(limit.in_flight(), 0);
    let _ = handle.next_request().await.unwrap();

    // The inner service failed: its error passes, the slot is freed.
    let fut = svc.ready().await.unwrap().call(get());
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_error(crate::Error::new(ErrorKind::Connect));
    let err = fut.await.unwrap_err();
    assert_eq!(classify(&*err), ErrorKind::Connect);
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(limit.rejected(), 0);
}

#[tokio::test]
async fn stacks_built_from_one_limit_share_it_and_set_max_applies() {
    let limit = Arc::new(InFlightLimit::new(1));
    let hanging = tower::service_fn(|_req: Request<Body>| {
        std::future::pending::<Result<Response<Body>, BoxError>>()
    });
    let layer = ConcurrencyLimitLayer::new(limit.clone());
    // The stacks of an old and a new route table, built with the same state.
    let mut old = layer.layer(hanging);
    let mut new = layer.layer(hanging).clone();
    let held = old.ready().await.unwrap().call(get());
    let mut refused = tokio_test::task::spawn(new.ready().await.unwrap().call(get()));
    assert_ready_err!(refused.poll());

    limit.set_max(2);
    let mut admitted = tokio_test::task::spawn(new.ready().await.unwrap().call(get()));
    assert_pending!(admitted.poll());
    assert_eq!(limit.in_flight(), 2);

    limit.set_max(0);
    drop(held);
    drop(admitted);
    assert_eq!(limit.in_flight(), 0);
    let mut refused = tokio_test::task::spawn(old.ready().await.unwrap().call(get()));
    assert_ready_err!(refused.poll());
    assert_eq!(limit.rejected(), 2);
    assert_eq!(limit.max(), 0);
}
