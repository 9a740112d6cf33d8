//! Retries through an `Upstream`: a request carrying `TriedEndpoints` goes to an endpoint
//! its earlier attempts did not, with every algorithm, and the pick is recorded.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use gatekit_core::retry::TriedEndpoints;
use gatekit_core::{
    Backend, Body, BoxError, Change, ConnectionInfo, Endpoint, EndpointState, take_unsent_request,
};
use gatekit_lb::{Algorithm, Upstream, UpstreamConfig};
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 8080))
}

fn upstream(alg: Algorithm, endpoints: Vec<Endpoint>) -> Upstream<()> {
    let up = Upstream::new(UpstreamConfig::new(alg), |_: &Endpoint| ());
    up.apply(Change::Replace(endpoints));
    up
}

/// A request from client `client` (the hash algorithms' key) carrying `tried`.
fn req(client: u8, tried: &TriedEndpoints) -> Request<()> {
    let mut r = Request::new(());
    r.extensions_mut().insert(ConnectionInfo::new(
        SocketAddr::from(([192, 168, 0, client], 40000)),
        "127.0.0.1:80".parse().unwrap(),
        false,
    ));
    r.extensions_mut().insert(tried.clone());
    r
}

fn tried(addrs: &[SocketAddr]) -> TriedEndpoints {
    let t = TriedEndpoints::new();
    for a in addrs {
        t.record(*a);
    }
    t
}

/// Equal weights take each algorithm's plain path, unequal ones its weighted table.
fn two_endpoint_sets() -> [Vec<Endpoint>; 2] {
    [
        vec![Endpoint::new(addr(0)), Endpoint::new(addr(1))],
        vec![
            Endpoint::new(addr(0)).with_weight(1),
            Endpoint::new(addr(1)).with_weight(3),
        ],
    ]
}

#[test]
fn a_retry_goes_to_the_other_endpoint_and_is_recorded_with_every_algorithm() {
    for alg in Algorithm::ALL {
        for set in two_endpoint_sets() {
            let up = upstream(alg, set);
            for (first, other) in [(addr(0), addr(1)), (addr(1), addr(0))] {
                // Many clients and repeats: without avoidance, round robin alternates,
                // random and least-request draw, and a hash sends half the clients to
                // `first`.
                for client in 0..40 {
                    let t = tried(&[first]);
                    let picked = up.pick(&req(client, &t)).unwrap();
                    assert_eq!(picked.addr(), other, "{alg}: client {client}");
                    assert_eq!(t.to_vec(), [first, other], "{alg}: the pick is recorded");
                }
            }
            assert_eq!(up.total_in_flight(), 0);
        }
    }
}

#[test]
fn when_every_endpoint_was_tried_the_pick_is_made_as_usual() {
    for alg in Algorithm::ALL {
        let up = upstream(alg, two_endpoint_sets()[0].clone());
        let mut seen = [false; 2];
        for client in 0..40 {
            let t = tried(&[addr(0), addr(1)]);
            let picked = up.pick(&req(client, &t)).unwrap();
            seen[usize::from(picked.addr() == addr(1))] = true;
            assert_eq!(t.to_vec(), [addr(0), addr(1)], "{alg}: recorded once");
        }
        // Balanced as usual among the tried ones (a hash spreads 40 clients too).
        assert_eq!(seen, [true, true], "{alg}");
    }
}

#[test]
fn a_tried_endpoint_is_picked_again_when_the_untried_one_is_unavailable() {
    for alg in Algorithm::ALL {
        let up = upstream(alg, two_endpoint_sets()[0].clone());
        up.health_of(addr(1)).unwrap().set_active_healthy(false);
        for client in 0..20 {
            let t = tried(&[addr(0)]);
            assert_eq!(up.pick(&req(client, &t)).unwrap().addr(), addr(0), "{alg}");
        }
    }
}

#[test]
fn the_one_untried_endpoint_of_a_large_set_is_found_with_every_algorithm() {
    // 20 endpoints: least-request uses power of two choices, random redraws give up
    // and scan, hashes walk far along the Maglev table.
    let all: Vec<SocketAddr> = (0..20).map(addr).collect();
    for alg in Algorithm::ALL {
        let up = upstream(alg, all.iter().map(|a| Endpoint::new(*a)).collect());
        for left in [0, 7, 19] {
            let others: Vec<SocketAddr> = all.iter().copied().filter(|a| *a != all[left]).collect();
            for client in 0..10 {
                let t = tried(&others);
                let picked = up.pick(&req(client, &t)).unwrap();
                assert_eq!(picked.addr(), all[left], "{alg}");
            }
        }
    }
}

#[test]
fn a_hash_retry_goes_to_the_keys_next_preference() {
    // The endpoint a key's retry goes to is the one it would go to if its first choice
    // were unavailable: the next endpoint along the Maglev table, the same every time.
    for alg in [Algorithm::IpHash, Algorithm::ConsistentHash] {
        let up = upstream(alg, (0..10).map(|i| Endpoint::new(addr(i))).collect());
        for client in 0..50 {
            let first = up
                .pick(&req(client, &TriedEndpoints::new()))
                .unwrap()
                .addr();
            let retry = up.pick(&req(client, &tried(&[first]))).unwrap().addr();
            assert_ne!(retry, first);
            for _ in 0..5 {
                let again = up.pick(&req(client, &tried(&[first]))).unwrap().addr();
                assert_eq!(again, retry, "{alg}: stable per key");
            }
            let health = up.health_of(first).unwrap();
            health.set_active_healthy(false);
            let skipped = up
                .pick(&req(client, &TriedEndpoints::new()))
                .unwrap()
                .addr();
            health.set_active_healthy(true);
            assert_eq!(retry, skipped, "{alg}: client {client}");
        }
    }
}

#[test]
fn a_retry_stays_among_ready_endpoints_rather_than_a_terminating_one() {
    let up = upstream(
        Algorithm::RoundRobin,
        vec![
            Endpoint::new(addr(0)),
            Endpoint::new(addr(1)).with_state(EndpointState::Terminating),
        ],
    );
    for _ in 0..10 {
        let t = tried(&[addr(0)]);
        assert_eq!(up.pick(&req(1, &t)).unwrap().addr(), addr(0));
    }
}

#[test]
fn a_request_without_the_extension_is_balanced_as_before() {
    let up = upstream(Algorithm::RoundRobin, two_endpoint_sets()[0].clone());
    let picks: Vec<_> = (0..4)
        .map(|_| up.pick(&Request::new(())).unwrap().addr())
        .collect();
    assert_eq!(
        picks.iter().filter(|a| **a == addr(0)).count(),
        2,
        "{picks:?}"
    );
}

#[tokio::test]
async fn the_service_avoids_and_records_through_call() {
    let up = Upstream::new(
        UpstreamConfig::new(Algorithm::LeastRequest),
        |ep: &Endpoint| {
            let addr = ep.addr();
            tower::service_fn(move |_req: Request<Body>| async move {
                Ok::<_, BoxError>(Response::new(Body::from(addr.to_string())))
            })
        },
    );
    up.apply(Change::Replace(two_endpoint_sets()[0].clone()));
    let backend = Backend::new(up);
    let t = TriedEndpoints::new();
    let mut answered = Vec::new();
    for _ in 0..3 {
        let mut r = Request::new(Body::empty());
        r.extensions_mut().insert(t.clone());
        let rsp = backend.send(r).await.unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        answered.push(String::from_utf8(body.to_vec()).unwrap());
    }
    // Attempts 1 and 2 on different endpoints; attempt 3 on one of them again.
    assert_ne!(answered[0], answered[1]);
    assert!(answered[..2].contains(&answered[2]));
    let recorded: Vec<String> = t.to_vec().iter().map(ToString::to_string).collect();
    assert_eq!(recorded, answered[..2]);
}

// === requests handed back unsent ===

#[tokio::test]
async fn no_healthy_endpoint_hands_the_request_back() {
    let up = Upstream::new(
        UpstreamConfig::new(Algorithm::RoundRobin),
        |_: &Endpoint| {
            tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, BoxError>(Response::new(Body::empty()))
            })
        },
    );
    let mut req = Request::post("/items").body(Body::from("payload")).unwrap();
    req.extensions_mut().insert(7u8);
    let err = up.oneshot(req).await.unwrap_err();
    let gatekit = gatekit_core::Error::find(&*err).unwrap();
    assert_eq!(gatekit.kind(), gatekit_core::ErrorKind::NoHealthyEndpoint);
    assert!(gatekit.is_retry_safe());
    let back = take_unsent_request::<Body>(&*err).unwrap();
    assert_eq!(back.extensions().get::<u8>(), Some(&7));
    // Nothing was picked: nothing recorded.
    assert!(back.extensions().get::<TriedEndpoints>().is_none());
    let body = back.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"payload");
}

/// An endpoint service that fails every request unsent, as the client does when the
/// endpoint refuses connections: in its call, or already in its readiness.
#[derive(Clone)]
struct Refusing {
    in_ready: bool,
}

fn refused() -> gatekit_core::Error {
    gatekit_core::Error::new(gatekit_core::ErrorKind::Connect)
}

impl tower::Service<Request<Body>> for Refusing {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<Body>, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(if self.in_ready {
            Err(Box::new(refused()))
        } else {
            Ok(())
        })
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        std::future::ready(Err(Box::new(refused().with_unsent_request(req))))
    }
}

#[tokio::test]
async fn a_request_handed_back_by_the_endpoint_records_it_as_tried() {
    for in_ready in [false, true] {
        let up = Upstream::new(
            UpstreamConfig::new(Algorithm::RoundRobin),
            move |_: &Endpoint| Refusing { in_ready },
        );
        up.apply(Change::Replace(vec![Endpoint::new(addr(0))]));
        // Without TriedEndpoints: one is inserted. With one: the pick is recorded there.
        for tried in [None, Some(tried(&[addr(5)]))] {
            let mut req = Request::post("/items").body(Body::from("payload")).unwrap();
            if let Some(t) = &tried {
                req.extensions_mut().insert(t.clone());
            }
            let err = up.clone().oneshot(req).await.unwrap_err();
            let back = take_unsent_request::<Body>(&*err).expect("handed back");
            let recorded = back.extensions().get::<TriedEndpoints>().unwrap().to_vec();
            match &tried {
                None => assert_eq!(recorded, [addr(0)], "in_ready: {in_ready}"),
                Some(t) => {
                    assert_eq!(recorded, [addr(5), addr(0)]);
                    assert_eq!(t.to_vec(), recorded, "the same list");
                }
            }
            let body = back.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"payload");
        }
        assert_eq!(up.total_in_flight(), 0);
    }
}

/// A hyper HTTP/1.1 server that echoes each request body, naming itself in
/// `x-served-by`.
async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut rsp = Response::new(http_body_util::Full::new(body));
                        rsp.headers_mut()
                            .insert("x-served-by", addr.to_string().parse().unwrap());
                        Ok::<_, hyper::Error>(rsp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The default retry over a real `Upstream` and the real client, one endpoint refusing
/// connections and one live: every POST reaches the live one with its body whole,
/// whichever endpoint it was sent to first, with every algorithm.
#[tokio::test]
async fn the_default_retry_sends_posts_refused_by_one_endpoint_to_the_other() {
    use gatekit_core::client::{Client, Transport};
    use gatekit_core::retry::{RetryLayer, RetryPolicy};
    use std::sync::Arc;
    use tower::Layer;

    let live = echo_server().await;
    let refusing = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let client = Client::default();
    for alg in Algorithm::ALL {
        let up = Upstream::new(UpstreamConfig::new(alg), {
            let client = client.clone();
            move |ep: &Endpoint| client.endpoint(ep.addr(), Transport::http1())
        });
        up.apply(Change::Replace(vec![
            Endpoint::new(refusing),
            Endpoint::new(live),
        ]));
        let layer = RetryLayer::new(Arc::new(RetryPolicy::unsent_once()), None);
        let svc = layer.layer(up.clone());
        let mut ok = 0;
        for i in 0..100u32 {
            let payload = format!("{{\"request\":{i},\"algorithm\":\"{alg}\"}}");
            // Sized bodies and streamed (chunked) ones.
            let body = if i % 2 == 0 {
                Body::from(payload.clone())
            } else {
                let frames = payload
                    .as_bytes()
                    .chunks(7)
                    .map(|c| {
                        Ok::<_, BoxError>(http_body::Frame::data(bytes::Bytes::copy_from_slice(c)))
                    })
                    .collect::<Vec<_>>();
                Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
                    frames,
                )))
            };
            let req = Request::post("/items")
                .header(http::header::HOST, "api.example.com")
                .body(body)
                .unwrap();
            let rsp = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(req))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{alg}: request {i} lost: {e}"));
            assert_eq!(rsp.status(), 200);
            assert_eq!(rsp.headers()["x-served-by"], live.to_string().as_str());
            let echoed = rsp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(echoed, payload.as_bytes(), "{alg}: request {i}");
            ok += 1;
        }
        assert_eq!(ok, 100, "{alg}: no request lost");
        let stats = layer.stats();
        eprintln!("{alg}: {} retries", stats.retries());
        if alg == Algorithm::RoundRobin {
            // Every other request went to the refusing endpoint first.
            assert!(stats.retries() >= 49, "{alg}: {}", stats.retries());
        }
        assert_eq!(stats.attempts(), 100 + stats.retries(), "{alg}");
        assert_eq!(stats.unreturned(), 0, "{alg}");
        assert_eq!(up.total_in_flight(), 0);
    }
}

/// A retry does not take a round-robin turn: with two endpoints, each request's first
/// attempt alternates between them whether or not the one before was retried (otherwise
/// every first attempt after a retry lands on the same endpoint).
#[test]
fn a_retry_does_not_take_a_round_robin_turn() {
    for alg in [Algorithm::RoundRobin, Algorithm::WeightedRoundRobin] {
        let up = upstream(alg, vec![Endpoint::new(addr(0)), Endpoint::new(addr(1))]);
        let mut firsts = Vec::new();
        for _ in 0..10 {
            let t = TriedEndpoints::new();
            let first = up.pick(&req(1, &t)).unwrap().addr();
            firsts.push(first);
            // Every request is retried once, on the other endpoint.
            let retry = up.pick(&req(1, &t)).unwrap().addr();
            assert_ne!(retry, first, "{alg}");
        }
        let on_first = firsts.iter().filter(|a| **a == addr(0)).count();
        assert_eq!(on_first, 5, "{alg}: first attempts {firsts:?}");
    }
}
