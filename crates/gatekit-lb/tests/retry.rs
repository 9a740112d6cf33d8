//! Retries through an `Upstream`: a request carrying `TriedEndpoints` goes to an endpoint
//! its earlier attempts did not, with every algorithm, and the pick is recorded.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use gatekit_core::retry::TriedEndpoints;
use gatekit_core::{Backend, Body, BoxError, Change, ConnectionInfo, Endpoint, EndpointState};
use gatekit_lb::{Algorithm, Upstream, UpstreamConfig};
use http::{Request, Response};
use http_body_util::BodyExt;

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
