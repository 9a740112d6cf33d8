//! Behaviour of the fake beyond the contract tests: writes (finalizers, dry runs,
//! generateName, apply, JSON/strategic patches), error answers, watch edge cases
//! (replay, too-new RVs, timeouts, clean end vs abort, bookmarks, slow readers), faults,
//! version aliases and the in-process service. Every test is bounded by a timeout.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use gatekit_k8s_fake::FakeApiServer;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, VersionMatch,
    WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

fn svc(ns: &str, name: &str) -> Service {
    let mut s = Service::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(ns.into());
    s
}

fn api_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request through kube's client (its Status parsing, no typed API).
async fn raw(
    client: &kube::Client,
    method: Method,
    uri: &str,
    content_type: &str,
    body: &str,
) -> Result<Value, kube::Error> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body.as_bytes().to_vec())
        .expect("test helper");
    client.request::<Value>(req).await
}

/// A raw HTTP/1.1 GET over its own connection: (status, headers, body stream).
async fn hyper_get(fake: &FakeApiServer, path: &str) -> http::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(fake.addr())
        .await
        .expect("test helper");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("test helper");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("test helper");
    send.send_request(req).await.expect("test helper")
}

/// Reads body frames until the end: `Ok(lines)` on a clean end, `Err` on an abort.
async fn read_to_end(mut body: hyper::body::Incoming) -> Result<Vec<Value>, hyper::Error> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            buf.extend_from_slice(&d);
        }
    }
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("test helper"))
        .collect())
}

#[tokio::test]
async fn finalizers_delay_deletion() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let api: Api<Service> = Api::namespaced(fake.client(), "default");
        let mut s = svc("default", "f");
        s.metadata.finalizers = Some(vec!["gatekit.io/cleanup".into()]);
        api.create(&PostParams::default(), &s).await.unwrap();
        let mut events = api
            .watch(
                &WatchParams::default().disable_bookmarks(),
                &fake.current_rv().to_string(),
            )
            .await
            .unwrap()
            .boxed();

        let pending = api.delete("f", &DeleteParams::default()).await.unwrap();
        let obj = pending
            .left()
            .expect("deletion pending: the object comes back");
        assert!(obj.metadata.deletion_timestamp.is_some());
        assert!(
            api.get("f").await.is_ok(),
            "still there while finalizers remain"
        );
        assert!(matches!(
            events.try_next().await.unwrap(),
            Some(WatchEvent::Modified(_))
        ));

        let p = json!({"metadata": {"finalizers": null}});
        api.patch("f", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap();
        assert_eq!(api_code(&api.get("f").await.unwrap_err()), 404);
        assert!(matches!(
            events.try_next().await.unwrap(),
            Some(WatchEvent::Deleted(_))
        ));

        // Without finalizers: a Success Status, and a second delete is 404.
        api.create(&PostParams::default(), &svc("default", "g"))
            .await
            .unwrap();
        let gone = api.delete("g", &DeleteParams::default()).await.unwrap();
        assert!(
            gone.right()
                .is_some_and(|s| s.status == Some(kube::core::response::StatusSummary::Success))
        );
        assert_eq!(
            api_code(&api.delete("g", &DeleteParams::default()).await.unwrap_err()),
            404
        );
    })
    .await;
}

#[tokio::test]
async fn dry_run_generate_name_and_create_rules() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let api: Api<Service> = Api::namespaced(fake.client(), "default");
        let rv = fake.current_rv();
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let out = api.create(&pp, &svc("default", "dry")).await.unwrap();
        assert_eq!(out.metadata.name.as_deref(), Some("dry"));
        assert_eq!(api_code(&api.get("dry").await.unwrap_err()), 404);
        assert_eq!(fake.current_rv(), rv, "a dry run writes nothing");
        api.create(&PostParams::default(), &svc("default", "keep"))
            .await
            .unwrap();
        let rv = fake.current_rv();
        let dp = DeleteParams {
            dry_run: true,
            ..Default::default()
        };
        api.delete("keep", &dp).await.unwrap();
        assert!(
            api.get("keep").await.is_ok(),
            "a dry-run delete deletes nothing"
        );
        assert_eq!(fake.current_rv(), rv);

        let mut g = Service::default();
        g.metadata.generate_name = Some("web-".into());
        let out = api.create(&PostParams::default(), &g).await.unwrap();
        let name = out.metadata.name.unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert!(out.metadata.uid.is_some() && out.metadata.creation_timestamp.is_some());

        let err = api
            .create(&PostParams::default(), &Service::default())
            .await
            .unwrap_err();
        assert_eq!(api_code(&err), 422, "no name");
        let err = api
            .create(&PostParams::default(), &svc("other", "x"))
            .await
            .unwrap_err();
        assert_eq!(api_code(&err), 400, "namespace mismatch");
        let mut with_rv = svc("default", "rv");
        with_rv.metadata.resource_version = Some("5".into());
        assert_eq!(
            api_code(
                &api.create(&PostParams::default(), &with_rv)
                    .await
                    .unwrap_err()
            ),
            500
        );
    })
    .await;
}

#[tokio::test]
async fn server_side_apply() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let api: Api<Lease> = Api::namespaced(fake.client(), "default");
        let body = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10}});
        let err = api
            .patch("l", &PatchParams::default(), &Patch::Apply(&body))
            .await
            .unwrap_err();
        assert_eq!(api_code(&err), 422, "apply needs a field manager");
        let pp = PatchParams::apply("gatekit").force();
        let created = api.patch("l", &pp, &Patch::Apply(&body)).await.unwrap();
        assert_eq!(created.spec.as_ref().unwrap().holder_identity.as_deref(), Some("a"));
        let again = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l"}, "spec": {"holderIdentity": "b"}});
        let merged = api.patch("l", &pp, &Patch::Apply(&again)).await.unwrap();
        let spec = merged.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_duration_seconds, Some(10));
    })
    .await;
}

#[tokio::test]
async fn json_and_strategic_patches() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let c = fake.client();
        let mut s = svc("default", "p");
        s.metadata.labels = Some([("a".to_owned(), "1".to_owned())].into());
        fake.apply(&s);
        let uri = "/api/v1/namespaces/default/services/p";
        let v = raw(&c, Method::PATCH, uri, "application/json-patch+json",
            r#"[{"op":"add","path":"/metadata/labels/b","value":"2"},{"op":"remove","path":"/metadata/labels/a"}]"#)
            .await
            .unwrap();
        assert_eq!(v["metadata"]["labels"], json!({"b": "2"}));
        // A failing `test` op is 422; a stale RV left in the result is 409.
        let e = raw(&c, Method::PATCH, uri, "application/json-patch+json",
            r#"[{"op":"test","path":"/metadata/labels/b","value":"9"}]"#).await.unwrap_err();
        assert_eq!(api_code(&e), 422);
        let e = raw(&c, Method::PATCH, uri, "application/json-patch+json",
            r#"[{"op":"replace","path":"/metadata/resourceVersion","value":"1"}]"#).await.unwrap_err();
        assert_eq!(api_code(&e), 409);
        let v = raw(&c, Method::PATCH, uri, "application/strategic-merge-patch+json",
            r#"{"metadata":{"labels":{"c":"3","$patch":"merge"}},"spec":{"$retainKeys":["type"],"type":"ClusterIP"}}"#)
            .await
            .unwrap();
        assert_eq!(v["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(v["spec"], json!({"type": "ClusterIP"}));
        assert_eq!(v["metadata"]["generation"], json!(2), "spec changed");
        let e = raw(&c, Method::PATCH, uri, "application/json", "{}").await.unwrap_err();
        assert_eq!(api_code(&e), 415);
    })
    .await;
}

#[tokio::test]
async fn malformed_requests_are_answered_not_panicked() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        fake.apply(&svc("default", "a"));
        let c = fake.client();
        let list = "/api/v1/namespaces/default/services";
        let cases: &[(Method, &str, &str, u16)] = &[
            (Method::POST, list, "{not json", 400),
            (Method::POST, list, "[1,2]", 400),
            (
                Method::POST,
                list,
                r#"{"kind":"Pod","metadata":{"name":"x"}}"#,
                400,
            ),
            (Method::GET, "/api/v1/services?limit=abc", "", 400),
            (
                Method::GET,
                "/api/v1/services?limit=1&continue=%%%",
                "",
                400,
            ),
            (Method::GET, "/api/v1/services?labelSelector=a%20b", "", 400),
            (
                Method::GET,
                "/api/v1/services?resourceVersion=x&resourceVersionMatch=Exact",
                "",
                400,
            ),
            (
                Method::GET,
                "/api/v1/services?resourceVersionMatch=Exact",
                "",
                422,
            ),
            (
                Method::GET,
                "/api/v1/services?watch=true&resourceVersion=abc",
                "",
                400,
            ),
            (
                Method::GET,
                "/api/v1/services?watch=true&sendInitialEvents=true",
                "",
                422,
            ),
            (
                Method::GET,
                "/api/v1/services?watch=1&timeoutSeconds=-1",
                "",
                400,
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/default/services/a",
                "{",
                400,
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/default/services/a",
                r#"{"metadata":{"name":"b"}}"#,
                400,
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/default/services/zz",
                r#"{"metadata":{"name":"zz"}}"#,
                404,
            ),
            (Method::GET, "/api/v1/widgets", "", 404),
            (
                Method::GET,
                "/apis/gateway.networking.k8s.io/v1/namespaces/x/gatewayclasses",
                "",
                404,
            ),
            (
                Method::GET,
                "/apis/gateway.networking.k8s.io/v1/gateways/x",
                "",
                404,
            ),
            (
                Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/a/leases/l/status",
                "",
                404,
            ),
            (Method::GET, "/nonsense", "", 404),
            (
                Method::POST,
                "/api/v1/services",
                r#"{"metadata":{"name":"x"}}"#,
                405,
            ),
        ];
        for (m, uri, body, want) in cases {
            let e = raw(&c, m.clone(), uri, "application/json", body)
                .await
                .unwrap_err();
            assert_eq!(api_code(&e), *want, "{m} {uri} {body}");
        }
        let big = format!(
            "{{\"metadata\":{{\"name\":\"big\"}},\"x\":\"{}\"}}",
            "a".repeat(9 << 20)
        );
        let e = raw(&c, Method::POST, list, "application/json", &big)
            .await
            .unwrap_err();
        assert_eq!(api_code(&e), 413);
        // Still serving.
        let api: Api<Service> = Api::all(c.clone());
        assert_eq!(
            api.list(&ListParams::default()).await.unwrap().items.len(),
            1
        );
        let v = c.apiserver_version().await.unwrap();
        assert_eq!(v.major, "1");
    })
    .await;
}

#[tokio::test]
async fn watch_replays_from_rv_and_rejects_future_rv() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let a = fake.apply(&svc("default", "a"));
        fake.apply(&svc("default", "b"));
        fake.delete::<Service>(Some("default"), "a");
        let api: Api<Service> = Api::all(fake.client());
        let wp = WatchParams::default().disable_bookmarks();
        let rv = a.metadata.resource_version.unwrap();
        let mut s = api.watch(&wp, &rv).await.unwrap().boxed();
        assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Added(o)) if o.metadata.name.as_deref() == Some("b")));
        match s.try_next().await.unwrap() {
            Some(WatchEvent::Deleted(o)) => {
                assert_eq!(o.metadata.name.as_deref(), Some("a"));
                assert_eq!(o.metadata.resource_version, Some(fake.current_rv().to_string()));
            }
            e => panic!("{e:?}"),
        }
        // From "0": the current state as ADDED.
        let mut s = api.watch(&wp, "0").await.unwrap().boxed();
        assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Added(o)) if o.metadata.name.as_deref() == Some("b")));
        // From the future: one in-stream error, then the end.
        let future = (fake.current_rv() + 10).to_string();
        let mut s = api.watch(&wp, &future).await.unwrap().boxed();
        assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Error(e)) if e.code == 504));
        assert!(s.try_next().await.unwrap().is_none());
        // A field-selected watch (kube's await_condition pattern).
        let wp = WatchParams::default().fields("metadata.name=c").disable_bookmarks();
        let mut s = api.watch(&wp, &fake.current_rv().to_string()).await.unwrap().boxed();
        fake.apply(&svc("default", "d"));
        fake.apply(&svc("default", "c"));
        assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Added(o)) if o.metadata.name.as_deref() == Some("c")));
    })
    .await;
}

#[tokio::test]
async fn clean_end_versus_abort() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        fake.apply(&svc("default", "a"));
        let path = "/api/v1/services?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true";

        let resp = hyper_get(&fake, path).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        fake.wait_for_watches("services", 1).await;
        fake.end_watches();
        let lines = read_to_end(resp.into_body()).await.expect("clean end");
        assert_eq!(lines[0]["type"], "ADDED");
        assert_eq!(lines[0]["object"]["kind"], "Service");
        assert_eq!(lines[0]["object"]["apiVersion"], "v1");

        let resp = hyper_get(&fake, path).await;
        fake.wait_for_watches("services", 1).await;
        fake.drop_watches();
        assert!(
            read_to_end(resp.into_body()).await.is_err(),
            "no final chunk"
        );
        assert_eq!(fake.active_watches("services"), 0);
    })
    .await;
}

#[tokio::test]
async fn timeout_ends_cleanly_after_a_bookmark() {
    bounded(async {
        let fake = FakeApiServer::builder()
            .bookmark_interval(Duration::from_secs(3600))
            .start()
            .await;
        let rv = fake.apply(&svc("default", "a")).metadata.resource_version.unwrap();
        let path = format!("/api/v1/services?&watch=true&timeoutSeconds=1&allowWatchBookmarks=true&resourceVersion={rv}");
        let resp = hyper_get(&fake, &path).await;
        let lines = read_to_end(resp.into_body()).await.expect("clean end at the deadline");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["type"], "BOOKMARK");
        assert_eq!(lines[0]["object"]["metadata"]["resourceVersion"], json!(rv));
        // Without allowWatchBookmarks: nothing at all.
        let path = format!("/api/v1/services?&watch=true&timeoutSeconds=1&resourceVersion={rv}");
        let lines = read_to_end(hyper_get(&fake, &path).await.into_body()).await.unwrap();
        assert!(lines.is_empty());
    })
    .await;
}

#[tokio::test]
async fn periodic_bookmarks_pause_and_on_demand() {
    bounded(async {
        let fake = FakeApiServer::builder()
            .bookmark_interval(Duration::from_millis(20))
            .start()
            .await;
        let api: Api<Service> = Api::all(fake.client());
        let mut s = api
            .watch(&WatchParams::default(), "0")
            .await
            .unwrap()
            .boxed();
        for _ in 0..2 {
            match s.try_next().await.unwrap() {
                Some(WatchEvent::Bookmark(b)) => {
                    assert_eq!(b.metadata.resource_version, fake.current_rv().to_string());
                }
                e => panic!("{e:?}"),
            }
        }
        fake.pause_bookmarks(true);
        fake.apply(&svc("default", "x"));
        // Bookmarks queued before the pause may come first; then the ADDED.
        loop {
            match s.try_next().await.unwrap() {
                Some(WatchEvent::Bookmark(_)) => continue,
                Some(WatchEvent::Added(_)) => break,
                e => panic!("{e:?}"),
            }
        }
        // Ten intervals with no bookmark while paused.
        let quiet = tokio::time::timeout(Duration::from_millis(200), s.try_next()).await;
        assert!(quiet.is_err(), "no bookmark while paused: {quiet:?}");
        fake.bookmark_now();
        assert!(matches!(
            s.try_next().await.unwrap(),
            Some(WatchEvent::Bookmark(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn stalled_slow_reader_is_disconnected() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let path = "/api/v1/services?&watch=true&resourceVersion=0";
        let resp = hyper_get(&fake, path).await;
        fake.wait_for_watches("services", 1).await;
        fake.stall_watches(true);
        for i in 0..5000 {
            fake.apply(&svc("default", &format!("s{i}")));
        }
        assert_eq!(
            fake.active_watches("services"),
            0,
            "overflowed watcher dropped"
        );
        fake.stall_watches(false);
        assert!(
            read_to_end(resp.into_body()).await.is_err(),
            "aborted, not ended"
        );
    })
    .await;
}

#[tokio::test]
async fn injected_failures_and_delays() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        fake.fail_next(None, "/api/v1/services", 1, 429, Some(7));
        let resp = hyper_get(&fake, "/api/v1/services").await;
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let status: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(
            hyper_get(&fake, "/api/v1/services").await.status(),
            200,
            "only once"
        );
        // Method filter: a POST rule leaves GETs alone.
        fake.fail_next(Some(Method::POST), "*", 1, 500, None);
        assert_eq!(hyper_get(&fake, "/api/v1/services").await.status(), 200);

        fake.delay("*/leases*", Duration::from_millis(150));
        let leases: Api<Lease> = Api::all(fake.client());
        let t = tokio::time::Instant::now();
        leases.list(&ListParams::default()).await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(150));
        fake.delay("*/leases*", Duration::ZERO);
        let recs = fake.requests();
        let last = recs.last().unwrap();
        assert_eq!(last.path, "/apis/coordination.k8s.io/v1/leases");
    })
    .await;
}

#[tokio::test]
async fn exact_list_and_compaction() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let rv = fake.apply(&svc("default", "a")).metadata.resource_version.unwrap();
        fake.apply(&svc("default", "b"));
        let api: Api<Service> = Api::all(fake.client());
        let lp = ListParams::default().at(&rv).matching(VersionMatch::Exact);
        let l = api.list(&lp).await.unwrap();
        assert_eq!(l.items.len(), 1, "the state at {rv}");
        assert_eq!(l.metadata.resource_version.as_deref(), Some(rv.as_str()));
        let l = api.list(&ListParams::default().at(&rv).matching(VersionMatch::NotOlderThan)).await.unwrap();
        assert_eq!(l.items.len(), 2);
        fake.compact_all();
        assert_eq!(api_code(&api.list(&lp).await.unwrap_err()), 410);
        // Watch from a compacted RV: HTTP 200 and an in-stream 410, never an HTTP 410.
        let mut s = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
        assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Error(e)) if e.code == 410 && e.reason == "Expired"));
        assert!(s.try_next().await.unwrap().is_none());
        // A small event log expires old RVs too.
        let small = FakeApiServer::builder().event_log_capacity(2).start().await;
        let first = small.apply(&svc("default", "a")).metadata.resource_version.unwrap();
        for n in ["b", "c", "d"] {
            small.apply(&svc("default", n));
        }
        let api: Api<Service> = Api::all(small.client());
        let mut s = api.watch(&WatchParams::default(), &first).await.unwrap().boxed();
        assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Error(e)) if e.code == 410));
    })
    .await;
}

#[tokio::test]
async fn version_alias_and_json_helpers() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        fake.apply_json(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "ReferenceGrant",
            "metadata": {"name": "rg", "namespace": "infra"},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "apps"}],
                     "to": [{"group": "", "kind": "Service"}]}
        }));
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "referencegrants");
        let api: Api<DynamicObject> = Api::all_with(fake.client(), &ar);
        let l = api.list(&ListParams::default()).await.unwrap();
        assert_eq!(l.items.len(), 1);
        let mut s = api.watch(&WatchParams::default(), "0").await.unwrap().boxed();
        match s.try_next().await.unwrap() {
            Some(WatchEvent::Added(o)) => {
                let t = o.types.unwrap();
                assert_eq!(t.api_version, "gateway.networking.k8s.io/v1beta1");
            }
            e => panic!("{e:?}"),
        }
        // A custom status on a CRD-like type via the typed status helper.
        fake.apply_json(json!({
            "apiVersion": "gatekit.io/v1alpha1", "kind": "BackendPolicy",
            "metadata": {"name": "bp", "namespace": "apps"}, "spec": {"x": 1}
        }));
        let gvk = GroupVersionKind::gvk("gatekit.io", "v1alpha1", "BackendPolicy");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "backendpolicies");
        let bp: Api<DynamicObject> = Api::namespaced_with(fake.client(), "apps", &ar);
        let st = json!({"status": {"conditions": [{"type": "Accepted", "status": "True"}]}});
        let out = bp.patch_status("bp", &PatchParams::default(), &Patch::Merge(&st)).await.unwrap();
        assert_eq!(out.data["status"]["conditions"][0]["type"], "Accepted");
        assert_eq!(out.metadata.generation, Some(1));
    })
    .await;
}

#[tokio::test]
async fn typed_helpers() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let rv0 = fake.current_rv();
        let a = fake.apply(&svc("default", "a"));
        assert_eq!(fake.current_rv(), rv0 + 1);
        assert_eq!(a.metadata.resource_version, Some((rv0 + 1).to_string()));
        let same = fake.apply(&svc("default", "a"));
        assert_eq!(
            fake.current_rv(),
            rv0 + 1,
            "a no-op write does not bump the RV"
        );
        assert_eq!(same.metadata.uid, a.metadata.uid);
        let mut ns = Namespace::default();
        ns.metadata.name = Some("apps".into());
        fake.apply(&ns);
        assert!(fake.get::<Namespace>(None, "apps").is_some());
        assert_eq!(fake.list::<Service>().len(), 1);
        fake.patch_status::<Service>(
            Some("default"),
            "a",
            json!({"loadBalancer": {"ingress": [{"hostname": "lb"}]}}),
        );
        let a = fake.get::<Service>(Some("default"), "a").unwrap();
        assert!(a.status.unwrap().load_balancer.unwrap().ingress.is_some());
        assert_eq!(a.metadata.generation, Some(1));
        assert!(fake.delete::<Service>(Some("default"), "a"));
        assert!(!fake.delete::<Service>(Some("default"), "a"));
        assert!(fake.get::<Service>(Some("default"), "a").is_none());
    })
    .await;
}

#[tokio::test]
async fn in_process_service_client() {
    bounded(async {
        let fake = FakeApiServer::builder().token("t").start().await;
        fake.apply(&svc("default", "a"));
        let client = fake.in_process_client();
        let api: Api<Service> = Api::all(client);
        assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);
        let mut s = api.watch(&WatchParams::default(), "0").await.unwrap().boxed();
        assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Added(_))));
        fake.apply(&svc("default", "b"));
        assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Added(o)) if o.metadata.name.as_deref() == Some("b")));
        // Without the token the in-process service answers 401 too.
        let bare: Api<Service> = Api::all(kube::Client::new(fake.service(), "default"));
        assert_eq!(api_code(&bare.list(&ListParams::default()).await.unwrap_err()), 401);
        // The in-process service is unaffected by a stopped listener.
        fake.stop().await;
        assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 2);
        let _ = s.next().await;
    })
    .await;
}

#[tokio::test]
async fn drop_watches_for_one_resource() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let services = hyper_get(&fake, "/api/v1/services?watch=true").await;
        let leases = hyper_get(&fake, "/apis/coordination.k8s.io/v1/leases?watch=true").await;
        fake.wait_for_watches("services", 1).await;
        fake.wait_for_watches("leases", 1).await;
        assert_eq!(fake.drop_watches_for("leases"), 1);
        assert!(
            read_to_end(leases.into_body()).await.is_err(),
            "leases aborted"
        );
        assert_eq!(fake.active_watches("services"), 1, "services untouched");
        fake.apply(&svc("default", "a"));
        fake.end_watches();
        let lines = read_to_end(services.into_body()).await.expect("clean end");
        assert_eq!(lines.len(), 1);
    })
    .await;
}

/// Concurrent writers through the API and several watchers: every stream sees strictly
/// increasing RVs, and every reflector converges on the stored state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_watchers_converge() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let mut watchers = Vec::new();
        for _ in 0..3 {
            let api: Api<Service> = Api::all(fake.client());
            let rv = fake.current_rv().to_string();
            let s = api
                .watch(&WatchParams::default().disable_bookmarks(), &rv)
                .await
                .unwrap();
            watchers.push(tokio::spawn(async move {
                let mut s = std::pin::pin!(s);
                let mut last = 0u64;
                let mut state = std::collections::BTreeMap::new();
                let mut seen = 0;
                // 4 writers × 25 objects × (create + update) + 25 deletes = 225 events.
                while seen < 225 {
                    let e = s.try_next().await.unwrap().unwrap();
                    let (o, del) = match e {
                        WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                        WatchEvent::Deleted(o) => (o, true),
                        e => panic!("{e:?}"),
                    };
                    let rv: u64 = o
                        .metadata
                        .resource_version
                        .clone()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(rv > last, "RVs increase on a stream: {rv} after {last}");
                    last = rv;
                    let name = o.metadata.name.clone().unwrap();
                    if del {
                        state.remove(&name);
                    } else {
                        state.insert(name, rv);
                    }
                    seen += 1;
                }
                state
            }));
        }
        let mut writers = Vec::new();
        for w in 0..4 {
            let api: Api<Service> = Api::namespaced(fake.client(), "default");
            writers.push(tokio::spawn(async move {
                for i in 0..25 {
                    let name = format!("w{w}-{i}");
                    let created = api
                        .create(&PostParams::default(), &svc("default", &name))
                        .await
                        .unwrap();
                    let mut next = created.clone();
                    next.metadata.labels = Some([("n".to_owned(), i.to_string())].into());
                    api.replace(&name, &PostParams::default(), &next)
                        .await
                        .unwrap();
                    if w == 0 {
                        api.delete(&name, &DeleteParams::default()).await.unwrap();
                    }
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let stored: std::collections::BTreeMap<String, u64> = fake
            .list::<Service>()
            .into_iter()
            .map(|s| {
                (
                    s.metadata.name.unwrap(),
                    s.metadata.resource_version.unwrap().parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(stored.len(), 75);
        for w in watchers {
            assert_eq!(w.await.unwrap(), stored);
        }
    })
    .await;
}

#[tokio::test]
async fn discovery_with_kube() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let client = fake.client();
        let d = kube::Discovery::new(client.clone()).run().await.unwrap();
        assert!(d.has_group("gateway.networking.k8s.io"));
        assert!(d.has_group("gatekit.io"));
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
        let (ar, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        assert_eq!(ar.plural, "httproutes");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GatewayClass");
        let (_, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
        let g = kube::discovery::group(&client, "gateway.networking.k8s.io")
            .await
            .unwrap();
        assert_eq!(g.preferred_version_or_latest(), "v1");
        assert!(
            kube::discovery::group(&client, "nope.example.com")
                .await
                .is_err()
        );
    })
    .await;
}
