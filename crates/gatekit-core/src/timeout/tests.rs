use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::oneshot;
use tower::ServiceExt;
use tower_layer::Layer;

use super::*;
use crate::{Body, BoxError, Error, ErrorKind};

/// Sets a flag when dropped: proof that the inner future was cancelled.
struct DropFlag(Arc<AtomicBool>, Option<oneshot::Sender<()>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        if let Some(tx) = self.1.take() {
            let _ = tx.send(());
        }
    }
}

fn hanging(
    dropped: Arc<AtomicBool>,
    tx: oneshot::Sender<()>,
) -> impl tower_service::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Body>, BoxError>>,
> + Clone {
    let tx = Arc::new(parking_lot::Mutex::new(Some(tx)));
    tower::service_fn(move |_req: Request<Body>| {
        let flag = DropFlag(dropped.clone(), tx.lock().take());
        async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok::<_, BoxError>(Response::new(Body::empty()))
        }
    })
}

fn get() -> Request<Body> {
    Request::get("/").body(Body::empty()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_expired_request_timeout_fails_typed_and_drops_the_inner_future() {
    let dropped = Arc::new(AtomicBool::new(false));
    let (tx, rx) = oneshot::channel();
    let svc =
        TimeoutLayer::request(Some(Duration::from_millis(300))).layer(hanging(dropped.clone(), tx));
    let start = tokio::time::Instant::now();
    let err = svc.oneshot(get()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(
        Error::find(&*err).map(Error::kind),
        Some(ErrorKind::RequestTimeout)
    );
    rx.await.unwrap();
    assert!(dropped.load(Ordering::SeqCst));
    let rsp = crate::error_response(&*err);
    assert_eq!(rsp.status(), 504);
    assert_eq!(rsp.headers()["x-gatekit-error"], "request-timeout");
}

#[tokio::test(start_paused = true)]
async fn a_backend_request_timeout_names_its_kind() {
    let (tx, _rx) = oneshot::channel();
    let svc = TimeoutLayer::backend_request(Some(Duration::from_secs(2)))
        .layer(hanging(Arc::default(), tx));
    let err = svc.oneshot(get()).await.unwrap_err();
    let rsp = crate::error_response(&*err);
    assert_eq!(rsp.status(), 504);
    assert_eq!(rsp.headers()["x-gatekit-error"], "backend-request-timeout");
}

#[tokio::test(start_paused = true)]
async fn a_response_in_time_passes_and_no_duration_arms_nothing() {
    let ok = tower::service_fn(|_req: Request<Body>| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, BoxError>(Response::new(Body::from("ok")))
    });
    let svc = TimeoutLayer::request(Some(Duration::from_millis(300))).layer(ok);
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);

    for layer in [
        TimeoutLayer::request(None),
        TimeoutLayer::request(Some(Duration::ZERO)),
    ] {
        assert_eq!(layer.duration(), None);
        let (tx, _rx) = oneshot::channel();
        let mut fut =
            tokio_test::task::spawn(layer.layer(hanging(Arc::default(), tx)).oneshot(get()));
        tokio_test::assert_pending!(fut.poll());
        tokio::time::advance(Duration::from_secs(3600)).await;
        tokio_test::assert_pending!(fut.poll());
    }
}

#[tokio::test]
async fn inner_errors_pass_through() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    handle.allow(1);
    let svc = TimeoutLayer::request(Some(Duration::from_secs(5))).layer(svc);
    let call = tokio::spawn(svc.oneshot(get()));
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_error(Error::new(ErrorKind::Connect));
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(crate::classify(&*err), ErrorKind::Connect);
}
