//! Arbitrary requests never panic the fake, and every failure is a well-formed `Status`
//! whose `code` matches the HTTP status (the no-panic-on-input rule, checked by proptest
//! through the in-process service).

use bytes::Bytes;
use gatekit_k8s_fake::FakeApiServer;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Service;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use tower_service::Service as _;

const VOCAB: &[&str] = &[
    "api",
    "apis",
    "v1",
    "v1beta1",
    "namespaces",
    "default",
    "services",
    "a",
    "status",
    "gateway.networking.k8s.io",
    "httproutes",
    "gatewayclasses",
    "coordination.k8s.io",
    "leases",
    "discovery.k8s.io",
    "endpointslices",
    "",
    "..",
    "%2F",
];

const PREFIXES: &[&str] = &[
    "/api/v1",
    "/apis/gateway.networking.k8s.io/v1",
    "/apis/gateway.networking.k8s.io/v1beta1",
    "/apis/coordination.k8s.io/v1",
    "/apis/discovery.k8s.io/v1",
    "/apis/gatekit.io/v1alpha1",
];

const PLURALS: &[&str] = &[
    "services",
    "namespaces",
    "leases",
    "endpointslices",
    "httproutes",
    "gatewayclasses",
    "referencegrants",
    "backendpolicies",
    "pods",
];

const RESOURCES: &[(&str, &str)] = &[
    ("/api/v1", "services"),
    ("/api/v1", "namespaces"),
    ("/apis/coordination.k8s.io/v1", "leases"),
    ("/apis/discovery.k8s.io/v1", "endpointslices"),
    ("/apis/gateway.networking.k8s.io/v1", "httproutes"),
    ("/apis/gateway.networking.k8s.io/v1", "gatewayclasses"),
    ("/apis/gateway.networking.k8s.io/v1beta1", "referencegrants"),
    ("/apis/gatekit.io/v1alpha1", "backendpolicies"),
];

const QUERIES: &[&str] = &[
    "",
    "&",
    "watch=true&timeoutSeconds=1",
    "watch=1&resourceVersion=1",
    "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=0",
    "limit=1",
    "limit=1&continue=eyJydiI6MX0",
    "labelSelector=a%3Db",
    "labelSelector=!a,b+in+(c)",
    "fieldSelector=metadata.name%3Da",
    "resourceVersion=0&resourceVersionMatch=Exact",
    "dryRun=All",
    "fieldManager=x&force=true",
];

const BODIES: &[&str] = &[
    "",
    "{}",
    "null",
    "[]",
    "{\"metadata\":{\"name\":\"a\"}}",
    "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"},\"spec\":{}}",
    "[{\"op\":\"add\",\"path\":\"/x\",\"value\":1}]",
    "{\"status\":{\"x\":1}}",
    "{\"metadata\":null}",
    "{\"metadata\":{\"labels\":7}}",
    "{\"kind\":7,\"apiVersion\":[]}",
];

const TYPES: &[&str] = &[
    "application/json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "text/plain",
];

fn request() -> impl Strategy<Value = (Method, String, String, String, Vec<u8>)> {
    let method = prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
    ]);
    let segment = prop_oneof![
        3 => prop::sample::select(VOCAB).prop_map(str::to_owned),
        1 => "[a-z0-9.%-]{0,6}",
    ];
    let random_path =
        prop::collection::vec(segment, 0..7).prop_map(|s| format!("/{}", s.join("/")));
    let resource = prop_oneof![
        4 => prop::sample::select(RESOURCES),
        1 => (prop::sample::select(PREFIXES), prop::sample::select(PLURALS)),
    ];
    let structured = (
        resource,
        prop::option::weighted(0.7, prop::sample::select(&["default", "other", ""][..])),
        prop::option::of(prop::sample::select(&["a", "b", "", "a b"][..])),
        any::<bool>(),
    )
        .prop_map(|((prefix, plural), ns, name, status)| {
            let mut p = prefix.to_owned();
            if let Some(ns) = ns {
                p.push_str(&format!("/namespaces/{ns}"));
            }
            p.push_str(&format!("/{plural}"));
            if let Some(n) = name {
                p.push_str(&format!("/{n}"));
                if status {
                    p.push_str("/status");
                }
            }
            p
        });
    let path = prop_oneof![4 => structured, 1 => random_path];
    let query = prop_oneof![
        3 => prop::sample::select(QUERIES).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9=&%+,()!.-]{0,30}",
    ];
    let ct = prop::sample::select(TYPES).prop_map(str::to_owned);
    let body = prop_oneof![
        3 => prop::sample::select(BODIES).prop_map(|b| b.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..48),
    ];
    (method, path, query, ct, body)
}

#[test]
fn arbitrary_requests_are_answered_with_status_objects() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(async {
        let f = FakeApiServer::start().await;
        let mut s = Service::default();
        s.metadata.name = Some("a".into());
        s.metadata.namespace = Some("default".into());
        f.apply(&s);
        f
    });
    let tally = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        ..Config::default()
    });
    runner
        .run(&request(), |(method, path, query, ct, body)| {
            let uri = format!("{path}?{query}");
            let Ok(req) = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header("content-type", ct)
                .body(Full::new(Bytes::from(body)))
            else {
                return Ok(()); // not a valid HTTP request at all
            };
            rt.block_on(async {
                let resp = fake.service().call(req).await.unwrap();
                let status = resp.status().as_u16();
                *tally.borrow_mut().entry(status).or_default() += 1;
                prop_assert!((200..600).contains(&status));
                let watching = query.contains("watch=");
                if status < 300 && watching {
                    return Ok(()); // a stream; dropping it ends the watch
                }
                let bytes = resp.into_body().collect().await.unwrap().to_bytes();
                if status >= 400 {
                    let v: Value = serde_json::from_slice(&bytes)
                        .map_err(|e| TestCaseError::fail(format!("{method} {uri}: {e}")))?;
                    prop_assert_eq!(&v["kind"], "Status", "{} {}", method, uri);
                    prop_assert_eq!(v["code"].as_u64(), Some(u64::from(status)));
                } else if !path.ends_with("healthz")
                    && !path.ends_with("readyz")
                    && !path.ends_with("livez")
                {
                    prop_assert!(
                        serde_json::from_slice::<Value>(&bytes).is_ok(),
                        "{} {}",
                        method,
                        uri
                    );
                }
                Ok(())
            })
        })
        .unwrap();
    // The generator reaches past the router: successes and several kinds of refusal.
    let tally = tally.into_inner();
    println!("statuses: {tally:?}");
    for code in [200, 400, 404, 405, 422] {
        assert!(
            tally.get(&code).is_some_and(|n| *n > 5),
            "{code} rarely hit: {tally:?}"
        );
    }
    // Nothing was left holding a watch.
    assert_eq!(fake.active_watches("services"), 0);
}
