use http::{Request, Response};
use tower::ServiceExt;

use super::*;
use crate::filter::FilterChain;
use crate::route::{Filter, HeaderModifier, WeightedBackend};
use crate::{Backend, Body, BoxError, ErrorKind, classify};

fn echo() -> Backend {
    Backend::new(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, BoxError>(Response::new(Body::from("ok")))
    }))
}

fn get() -> Request<Body> {
    Request::get("/").body(Body::empty()).unwrap()
}

#[tokio::test]
async fn no_positive_weight_or_an_unresolved_pick_is_an_invalid_backend() {
    for refs in [
        vec![],
        vec![WeightedBackend::new(
            "a",
            0,
            Some(echo()),
            FilterChain::default(),
        )],
        vec![WeightedBackend::new(
            "gone",
            1,
            None,
            FilterChain::default(),
        )],
    ] {
        let svc = Weighted::new(WeightedBackends::new(refs));
        let err = svc.oneshot(get()).await.unwrap_err();
        assert_eq!(classify(&*err), ErrorKind::InvalidBackend);
    }
}

#[tokio::test]
async fn the_chosen_backend_ref_gets_its_own_filters() {
    let add = |name: &str| {
        let mut m = HeaderModifier::default();
        m.set.push(("x-ref".into(), name.into()));
        m
    };
    let backends: std::collections::HashMap<String, Backend> = Default::default();
    let filters = FilterChain::compile(
        &[
            Filter::RequestHeaderModifier(add("req")),
            Filter::ResponseHeaderModifier(add("rsp")),
        ],
        &backends,
    )
    .unwrap();
    let seen = tower::service_fn(|req: Request<Body>| async move {
        let mut rsp = Response::new(Body::empty());
        if let Some(v) = req.headers().get("x-ref") {
            rsp.headers_mut().insert("x-seen", v.clone());
        }
        Ok::<_, BoxError>(rsp)
    });
    let refs = vec![
        WeightedBackend::new("zero", 0, Some(echo()), FilterChain::default()),
        WeightedBackend::new("b", 1, Some(Backend::new(seen)), filters),
    ];
    let rsp = Weighted::new(WeightedBackends::new(refs))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(rsp.headers()["x-seen"], "req");
    assert_eq!(rsp.headers()["x-ref"], "rsp");
}

#[tokio::test]
async fn a_session_pins_its_backend_ref_even_at_weight_zero() {
    use crate::session::Sticky;
    let named = |name: &'static str| {
        Backend::new(tower::service_fn(move |_req: Request<Body>| async move {
            let mut rsp = Response::new(Body::empty());
            rsp.headers_mut().insert("x-ref", name.parse().unwrap());
            Ok::<_, BoxError>(rsp)
        }))
    };
    let refs = vec![
        WeightedBackend::new("a", 1, Some(named("a")), FilterChain::default()),
        WeightedBackend::new("b", 0, Some(named("b")), FilterChain::default()),
        WeightedBackend::new("gone", 5, None, FilterChain::default()),
    ];
    let svc = Weighted::new(WeightedBackends::new(refs));
    let send = |pin: Option<usize>| {
        let svc = svc.clone();
        async move {
            let sticky = Sticky::new(None, pin);
            let mut req = get();
            req.extensions_mut().insert(sticky.clone());
            let rsp = svc.oneshot(req).await;
            (
                rsp.map(|r| r.headers()["x-ref"].clone()),
                sticky.served_backend(),
            )
        }
    };
    let (rsp, served) = send(Some(1)).await;
    assert_eq!((rsp.unwrap(), served), ("b".parse().unwrap(), Some(1)));
    // A pin to an unresolved or missing backendRef is a weighted pick (here 1/6 a, 5/6
    // the unresolved one, which answers 500): never the pinned index.
    for pin in [Some(2), Some(9), None] {
        let (rsp, served) = send(pin).await;
        match served {
            Some(0) => assert_eq!(rsp.unwrap(), "a"),
            Some(2) => assert!(rsp.is_err()),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_single_backend_ref_is_picked_without_a_draw() {
    let one = |weight| {
        WeightedBackends::new(vec![WeightedBackend::new(
            "a",
            weight,
            Some(echo()),
            FilterChain::default(),
        )])
    };
    let b = one(3);
    assert_eq!(b.as_slice()[0].cumulative, 3);
    assert!((0..100).all(|_| b.pick_index() == Some(0)));
    assert_eq!(b.index_at(2), 0);
    assert_eq!(one(0).pick_index(), None);
}
