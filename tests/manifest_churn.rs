//! Manifest robustness: a running gateway (`gatekit run`'s library entry point on a temp
//! dir) takes a long sequence of random valid and invalid manifests, seeded with
//! `fastrand`, while a client loop keeps requesting a route that stays valid throughout.
//! After each write the test waits for the reload to be counted in `/metrics` (ok or
//! failed), then checks what is served: a refused load keeps the last good snapshot
//! (its marker route answers, the new one does not), an accepted load serves the new
//! marker. The stable route never fails and the process never panics.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{Wired, free_port, gateway_http, route, service, write_atomic};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Manifests applied. Each waits for its reload (debounced 20 ms by the watcher).
const MANIFESTS: usize = 1_000;

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// (ok, failed) reload counts.
async fn reloads(wired: &Wired) -> (u64, u64) {
    let (_, text) = wired.admin("/metrics").await;
    (
        metric(&text, r#"gatekit_reloads_total{result="ok"}"#) as u64,
        metric(&text, r#"gatekit_reloads_total{result="failed"}"#) as u64,
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Valid,
    BrokenYaml,
    WrongTypes,
    BadRegex,
    DanglingRefs,
    HugeValues,
    DuplicateNames,
    RandomBytes,
    UnknownResource,
    Empty,
}

const KINDS: [Kind; 10] = [
    Kind::Valid,
    Kind::BrokenYaml,
    Kind::WrongTypes,
    Kind::BadRegex,
    Kind::DanglingRefs,
    Kind::HugeValues,
    Kind::DuplicateNames,
    Kind::RandomBytes,
    Kind::UnknownResource,
    Kind::Empty,
];

fn marker(i: usize) -> String {
    route("marker", &format!("/marker/{i}"), "stable")
}

/// Manifest `i` of kind `kind`: bytes to write.
fn generate(rng: &mut fastrand::Rng, kind: Kind, i: usize) -> Vec<u8> {
    let marker = marker(i);
    let text = match kind {
        Kind::Valid => {
            // The marker and a few extra valid routes with random paths and weights.
            let mut text = marker;
            for r in 0..rng.usize(0..4) {
                text.push_str(&format!(
                    "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: extra-{r}, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n  rules:\n  - matches: [{{ path: {{ type: PathPrefix, value: /x{} }} }}]\n    backendRefs: [{{ name: stable, port: 80, weight: {} }}]\n",
                    rng.u32(..),
                    rng.u32(0..1_000_000)
                ));
            }
            text
        }
        Kind::BrokenYaml => {
            let cut = rng.usize(1..marker.len());
            let junk = [
                "{",
                ": : [",
                "\t- ]",
                "'unterminated",
                "&a *b",
                "!!binary ][",
            ];
            format!("{}{}\n", &marker[..cut], junk[rng.usize(..junk.len())])
        }
        Kind::WrongTypes => {
            let bad = [
                "spec:\n  parentRefs: [{ name: gw }]\n  rules: 5\n",
                "spec:\n  parentRefs: [{ name: gw }]\n  rules:\n  - matches: [{ path: { value: /other } }]\n    backendRefs: [{ name: stable, port: eighty }]\n",
                "spec:\n  parentRefs: [{ name: gw }]\n  hostnames: { a: b }\n",
                "spec:\n  parentRefs: [{ name: gw }]\n  rules:\n  - matches: [{ path: { value: /other } }]\n    backendRefs: [{ name: stable, port: 80, weight: -1 }]\n",
                "spec: [1, 2, 3]\n",
            ];
            format!(
                "{marker}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: wrong, namespace: default }}\n{}",
                bad[rng.usize(..bad.len())]
            )
        }
        Kind::BadRegex => {
            let bad = ["([a-z", "*", "a{99999999}", "\\\\", "(?<x", "[z-a]"];
            format!(
                "{marker}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: regex, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n  rules:\n  - matches: [{{ path: {{ type: RegularExpression, value: '/{}' }} }}]\n    backendRefs: [{{ name: stable, port: 80 }}]\n",
                bad[rng.usize(..bad.len())].replace('\'', "''")
            )
        }
        Kind::DanglingRefs => {
            let bad = [
                route("dangling", "/dangling", "no-such-service"),
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: orphan, namespace: default }\nspec:\n  parentRefs: [{ name: no-such-gateway }]\n  rules:\n  - matches: [{ path: { value: /other } }]\n    backendRefs: [{ name: stable, port: 80 }]\n".to_owned(),
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: other-ns, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n  rules:\n  - matches: [{ path: { value: /other } }]\n    backendRefs: [{ name: stable, namespace: elsewhere, port: 80 }]\n".to_owned(),
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: bad-port, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n  rules:\n  - matches: [{ path: { value: /other } }]\n    backendRefs: [{ name: stable, port: 9 }]\n".to_owned(),
            ];
            format!("{marker}---\n{}", bad[rng.usize(..bad.len())])
        }
        Kind::HugeValues => {
            let huge = [
                route("huge-path", &format!("/{}", "p".repeat(rng.usize(10_000..200_000))), "stable"),
                format!(
                    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: huge-host, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n  hostnames: [\"{}.example\"]\n  rules:\n  - matches: [{{ path: {{ value: /other }} }}]\n    backendRefs: [{{ name: stable, port: 80 }}]\n",
                    "h".repeat(rng.usize(300..5_000))
                ),
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: huge-weight, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n  rules:\n  - matches: [{ path: { value: /other } }]\n    backendRefs: [{ name: stable, port: 80, weight: 99999999999999999999 }]\n".to_owned(),
                format!(
                    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: {}, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n  rules: []\n",
                    "n".repeat(rng.usize(300..3_000))
                ),
                format!(
                    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: many-rules, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n  rules:\n{}",
                    "  - matches: [{ path: { value: /many } }]\n    backendRefs: [{ name: stable, port: 80 }]\n".repeat(rng.usize(20..2_000))
                ),
            ];
            format!("{marker}---\n{}", huge[rng.usize(..huge.len())])
        }
        Kind::DuplicateNames => {
            format!(
                "{marker}---\n{}",
                route("marker", &format!("/dup/{i}"), "stable")
            )
        }
        Kind::RandomBytes => {
            let len = rng.usize(0..4096);
            return std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
        }
        Kind::UnknownResource => {
            let bad = [
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRouteX\nmetadata: { name: x, namespace: default }\n",
                "kind: HTTPRoute\nmetadata: { name: x }\n",
                "apiVersion: v1\n",
                "- 1\n- 2\n",
            ];
            format!("{marker}---\n{}", bad[rng.usize(..bad.len())])
        }
        Kind::Empty => String::new(),
    };
    text.into_bytes()
}

async fn status(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>,
    url: &str,
) -> StatusCode {
    let rsp = client.get(url.parse().unwrap()).await.unwrap();
    let status = rsp.status();
    rsp.into_body().collect().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_manifests_never_take_down_the_last_good_snapshot() {
    let seed = std::env::var("CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6a7e_c0de);
    let mut rng = fastrand::Rng::with_seed(seed);
    let backend = EchoBackend::start("stable").await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_atomic(
        dir.path(),
        "base.yaml",
        &format!(
            "{}---\n{}---\n{}",
            gateway_http(port),
            service("stable", backend.addr),
            route("stable", "/stable", "stable")
        ),
    );
    write_atomic(dir.path(), "churn.yaml", &marker(0));
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    assert_eq!(wired.admin("/readyz").await.0, StatusCode::OK);

    // The client loop on the route that stays valid throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
            let url: http::Uri = format!("http://127.0.0.1:{port}/stable/x").parse().unwrap();
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                let ok = match client.get(url.clone()).await {
                    Ok(rsp) => {
                        rsp.status() == StatusCode::OK && rsp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let url = |path: String| format!("http://127.0.0.1:{port}{path}");
    let mut last_good = Some(0usize);
    let mut outcomes: std::collections::BTreeMap<Kind, (u32, u32)> = Default::default();
    let (mut ok_before, mut failed_before) = reloads(&wired).await;
    let started = tokio::time::Instant::now();
    let mut previous = marker(0).into_bytes();
    for i in 1..=MANIFESTS {
        let kind = KINDS[rng.usize(..KINDS.len())];
        let bytes = generate(&mut rng, kind, i);
        if bytes == previous {
            // The same text again (two empty files in a row): the gateway does not
            // reload files that did not change, so there is no reload to wait for.
            continue;
        }
        previous.clone_from(&bytes);
        let tmp = dir.path().join(".churn.yaml.tmp");
        std::fs::write(&tmp, &bytes).unwrap();
        std::fs::rename(&tmp, dir.path().join("churn.yaml")).unwrap();
        // Wait for the reload to be counted, one way or the other.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let (ok_now, failed_now) = loop {
            let now = reloads(&wired).await;
            if now.0 + now.1 > ok_before + failed_before {
                break now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "manifest {i} ({kind:?}): no reload counted in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let accepted = ok_now > ok_before;
        (ok_before, failed_before) = (ok_now, failed_now);
        let entry = outcomes.entry(kind).or_default();
        if accepted {
            entry.0 += 1;
            let new = status(&client, &url(format!("/marker/{i}"))).await;
            if kind == Kind::DuplicateNames {
                let dup = status(&client, &url(format!("/dup/{i}"))).await;
                assert!(
                    new == StatusCode::OK || dup == StatusCode::OK,
                    "manifest {i}: neither duplicate is served"
                );
                last_good = (new == StatusCode::OK).then_some(i);
            } else if matches!(kind, Kind::Empty | Kind::RandomBytes | Kind::BrokenYaml)
                && new != StatusCode::OK
            {
                // Accepted without a (whole) marker: an empty file or bytes that happen to
                // be an empty YAML stream (the churn file then has no route: the old
                // marker is gone), or a cut that still parses (a route without its
                // matches is a catch-all: nothing to say about the old marker's path).
                if let (Some(old), false) = (last_good, kind == Kind::BrokenYaml) {
                    assert_eq!(
                        status(&client, &url(format!("/marker/{old}"))).await,
                        StatusCode::NOT_FOUND,
                        "manifest {i} ({kind:?}) replaced the snapshot, yet marker {old} is served"
                    );
                }
                last_good = None;
            } else {
                assert_eq!(
                    new,
                    StatusCode::OK,
                    "manifest {i} ({kind:?}) accepted but its marker is not served"
                );
                last_good = Some(i);
            }
        } else {
            entry.1 += 1;
            assert_ne!(
                kind,
                Kind::Valid,
                "manifest {i}: a valid manifest was refused"
            );
            if let Some(last_good) = last_good {
                assert_eq!(
                    status(&client, &url(format!("/marker/{last_good}"))).await,
                    StatusCode::OK,
                    "manifest {i} ({kind:?}) refused, but the last good snapshot's marker {last_good} is gone"
                );
            }
            // Not served: 404, or 500 from a catch-all route with an invalid backend that
            // an accepted dangling-refs manifest left in the last good snapshot.
            assert_ne!(
                status(&client, &url(format!("/marker/{i}"))).await,
                StatusCode::OK,
                "manifest {i} ({kind:?}) refused but served"
            );
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "seed {seed:#x}: {MANIFESTS} manifests in {elapsed:?}; accepted/refused by kind: {outcomes:?}; {sent} requests on the stable route, {failed} failed"
    );
    assert_eq!(failed, 0, "requests on the stable route failed");
    assert!(sent > MANIFESTS as u64, "the client loop ran: {sent}");
    assert!(
        outcomes.values().map(|o| o.1).sum::<u32>() > 0,
        "some manifests were refused"
    );
    let drained = wired.stop().await;
    assert_eq!(
        drained,
        gatekit_bin::DrainOutcome::Complete,
        "the process ended cleanly (no panic)"
    );
}
