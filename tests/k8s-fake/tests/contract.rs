//! Contract tests: the fake driven by the real kube-rs `Client`, `watcher` and `reflector`.
//! Each test is bounded by a timeout so a server bug fails fast instead of hanging.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use gatekit_k8s_fake::FakeApiServer;
use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use serde_json::json;

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

fn labelled(ns: &str, name: &str, labels: &[(&str, &str)]) -> Service {
    let mut s = svc(ns, name);
    s.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    );
    s
}

fn slice(name: &str, ip: &str) -> EndpointSlice {
    EndpointSlice {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(vec![Endpoint {
            addresses: vec![ip.into()],
            ..Default::default()
        }]),
        ports: None,
    }
}

/// A short name for an event, for assertions: `Init`, `InitApply(a)`, `Apply(a)`, ...
fn label<K: kube::Resource>(e: &Event<K>) -> String {
    let n = |k: &K| k.meta().name.clone().unwrap_or_default();
    match e {
        Event::Init => "Init".into(),
        Event::InitApply(k) => format!("InitApply({})", n(k)),
        Event::InitDone => "InitDone".into(),
        Event::Apply(k) => format!("Apply({})", n(k)),
        Event::Delete(k) => format!("Delete({})", n(k)),
    }
}

/// Drives a watcher stream on its own task (a watcher only makes requests while polled) and
/// forwards event labels; errors are forwarded as `Err(..)` labels.
fn spawn_events<K, S>(s: S) -> Events
where
    K: kube::Resource + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(s);
        while let Some(e) = s.next().await {
            let l = match e {
                Ok(e) => label(&e),
                Err(e) => format!("Err({e})"),
            };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    Events { rx, task }
}

struct Events {
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Events {
    /// The next `n` non-error events.
    async fn next(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let l = self.rx.recv().await.expect("watcher ended");
            assert!(!l.starts_with("Err("), "unexpected watcher error {l}");
            out.push(l);
        }
        out
    }

    /// Events up to and including `want`, skipping errors (e.g. while a server is down).
    async fn until(&mut self, want: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.rx.recv().await.expect("watcher ended");
            if l.starts_with("Err(") {
                continue;
            }
            let done = l == want;
            out.push(l);
            if done {
                return out;
            }
        }
    }
}

fn list_requests(fake: &FakeApiServer, plural: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.is_list_of(plural))
        .count()
}

/// #1: a paginated initial list (limit 1, three pages), then live create/update/delete.
#[tokio::test]
async fn contract_1_paginated_list_then_events() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        for n in ["a", "b", "c"] {
            fake.apply(&svc("default", n));
        }
        let api: Api<Service> = Api::all(fake.client());
        let mut w = spawn_events(watcher(api, watcher::Config::default().page_size(1)));
        assert_eq!(
            w.next(5).await,
            [
                "Init",
                "InitApply(a)",
                "InitApply(b)",
                "InitApply(c)",
                "InitDone"
            ]
        );
        let lists: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.is_list_of("services"))
            .collect();
        assert_eq!(lists.len(), 3, "three pages");
        assert!(lists[0].param("continue").is_none());
        assert!(lists[1].param("continue").is_some() && lists[2].param("continue").is_some());

        fake.apply(&svc("default", "d"));
        assert_eq!(w.next(1).await, ["Apply(d)"]);
        fake.apply(&labelled("default", "a", &[("x", "y")]));
        assert_eq!(w.next(1).await, ["Apply(a)"]);
        assert!(fake.delete::<Service>(Some("default"), "b"));
        assert_eq!(w.next(1).await, ["Delete(b)"]);
        assert_eq!(list_requests(&fake, "services"), 3, "no re-list");
    })
    .await;
}

fn watcher<K>(api: Api<K>, cfg: watcher::Config) -> impl Stream<Item = watcher::Result<Event<K>>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, cfg)
}

/// #2: a cleanly ended watch is resumed from the last RV seen (object or bookmark), without
/// a re-list.
#[tokio::test]
async fn contract_2_end_watches_resumes_from_last_rv() {
    bounded(async {
        let fake = FakeApiServer::builder()
            .bookmark_interval(Duration::from_secs(3600))
            .start()
            .await;
        fake.apply(&labelled("default", "a", &[("app", "web")]));
        let api: Api<Service> = Api::all(fake.client());
        let mut w = spawn_events(watcher(api, watcher::Config::default().labels("app=web")));
        assert_eq!(w.next(3).await, ["Init", "InitApply(a)", "InitDone"]);
        fake.wait_for_watches("services", 1).await;

        // Resume from an object's RV.
        let b = fake.apply(&labelled("default", "b", &[("app", "web")]));
        assert_eq!(w.next(1).await, ["Apply(b)"]);
        let b_rv = b.metadata.resource_version.clone().unwrap();
        fake.end_watches();
        fake.wait_for_watches("services", 1).await;
        let last = fake.requests().into_iter().rfind(|r| r.is_watch()).unwrap();
        assert_eq!(last.param("resourceVersion"), Some(b_rv.as_str()));

        // Resume from a bookmark's RV: a non-matching write moves the RV, the bookmark
        // carries it, and the stream's end comes after the bookmark on the same connection.
        fake.apply(&labelled("default", "other", &[("app", "db")]));
        let rv = fake.current_rv();
        fake.bookmark_now();
        fake.end_watches();
        fake.wait_for_watches("services", 1).await;
        let last = fake.requests().into_iter().rfind(|r| r.is_watch()).unwrap();
        assert_eq!(last.param("resourceVersion"), Some(rv.to_string().as_str()));
        assert_eq!(list_requests(&fake, "services"), 1, "no re-list");

        // And the resumed watch still delivers.
        fake.apply(&labelled("default", "c", &[("app", "web")]));
        assert_eq!(w.next(1).await, ["Apply(c)"]);
    })
    .await;
}

/// #3: history compacted while the watch was broken: the resumed watch gets an in-stream
/// 410, the watcher re-lists, and objects deleted meanwhile vanish at InitDone.
#[tokio::test]
async fn contract_3_compaction_forces_relist() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        for n in ["a", "b", "c"] {
            fake.apply(&svc("default", n));
        }
        let (store, writer) = reflector::store::<Service>();
        let api: Api<Service> = Api::all(fake.client());
        let mut w = spawn_events(watcher(api, watcher::Config::default()).reflect(writer));
        assert_eq!(
            w.next(5).await,
            [
                "Init",
                "InitApply(a)",
                "InitApply(b)",
                "InitApply(c)",
                "InitDone"
            ]
        );
        fake.wait_for_watches("services", 1).await;

        fake.stall_watches(true);
        fake.delete::<Service>(Some("default"), "b");
        fake.apply(&svc("default", "d"));
        fake.compact_all();
        fake.drop_watches();
        fake.stall_watches(false);

        // The aborted connection surfaces as a watcher error (skipped), the resumed watch
        // gets the in-stream 410, and the watcher starts over.
        assert_eq!(
            w.until("InitDone").await,
            [
                "Init",
                "InitApply(a)",
                "InitApply(c)",
                "InitApply(d)",
                "InitDone"
            ]
        );
        let mut names: Vec<_> = store
            .state()
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "c", "d"]);
        // The resumed watch got a 200 (an in-stream ERROR), and then the watcher re-listed.
        assert_eq!(list_requests(&fake, "services"), 2);
    })
    .await;
}

/// #4: a label-selected watch sees objects start and stop matching as ADDED/DELETED.
#[tokio::test]
async fn contract_4_label_transitions() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let api: Api<EndpointSlice> = Api::namespaced(fake.client(), "default");
        let wp = WatchParams::default().labels("kubernetes.io/service-name=web");
        let mut s = api.watch(&wp, "0").await.unwrap().boxed();

        fake.set_service_endpoints("default", "web", vec![slice("web-1", "10.0.0.1")]);
        let mut next = async || loop {
            match s.next().await.unwrap().unwrap() {
                WatchEvent::Bookmark(_) => continue,
                e => return e,
            }
        };
        assert!(matches!(next().await, WatchEvent::Added(o) if o.metadata.name.as_deref() == Some("web-1")));

        // Relabel away from the selector: DELETED carrying the previous object, new RV.
        let mut moved = fake.get::<EndpointSlice>(Some("default"), "web-1").unwrap();
        moved.metadata.labels.as_mut().unwrap().insert("kubernetes.io/service-name".into(), "api".into());
        let stored = fake.apply(&moved);
        match next().await {
            WatchEvent::Deleted(o) => {
                assert_eq!(o.metadata.labels.unwrap()["kubernetes.io/service-name"], "web");
                assert_eq!(o.metadata.resource_version, stored.metadata.resource_version);
            }
            e => panic!("expected DELETED, got {e:?}"),
        }
        // And back: ADDED.
        fake.apply(&{
            let mut s = stored.clone();
            s.metadata.labels.as_mut().unwrap().insert("kubernetes.io/service-name".into(), "web".into());
            s
        });
        assert!(matches!(next().await, WatchEvent::Added(_)));
        // Replacing the service's slices deletes the old one.
        fake.set_service_endpoints("default", "web", vec![slice("web-2", "10.0.0.2")]);
        let mut seen = vec![];
        for _ in 0..2 {
            seen.push(match next().await {
                WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.unwrap()),
                WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.unwrap()),
                e => format!("{e:?}"),
            });
        }
        assert_eq!(seen, ["DELETED web-1", "ADDED web-2"]);
    })
    .await;
}

/// #5: a streaming list (sendInitialEvents) ends with the annotated bookmark → InitDone.
#[tokio::test]
async fn contract_5_streaming_list() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        for n in ["a", "b"] {
            fake.apply(&svc("ns1", n));
        }
        let api: Api<Service> = Api::namespaced(fake.client(), "ns1");
        let mut w = spawn_events(watcher(api, watcher::Config::default().streaming_lists()));
        // kube 4.2's streaming mode emits no `Init` before the first InitApply.
        let mut got = w.until("InitDone").await;
        got.retain(|l| l != "Init");
        assert_eq!(got, ["InitApply(a)", "InitApply(b)", "InitDone"]);
        assert_eq!(list_requests(&fake, "services"), 0, "no LIST at all");
        let w0 = fake.requests().into_iter().find(|r| r.is_watch()).unwrap();
        assert_eq!(w0.param("sendInitialEvents"), Some("true"));
        fake.apply(&svc("ns1", "c"));
        assert_eq!(w.next(1).await, ["Apply(c)"]);
    })
    .await;
}

/// #6: stale resourceVersion preconditions are 409; replace_status leaves spec alone.
#[tokio::test]
async fn contract_6_conflicts_and_status() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let leases: Api<Lease> = Api::namespaced(fake.client(), "kube-system");
        let mut l = Lease::default();
        l.metadata.name = Some("leader".into());
        l.spec = Some(Default::default());
        let created = leases.create(&PostParams::default(), &l).await.unwrap();
        let rv0 = created.metadata.resource_version.clone().unwrap();

        let mut mine = created.clone();
        mine.spec.as_mut().unwrap().holder_identity = Some("me".into());
        let replaced = leases.replace("leader", &PostParams::default(), &mine).await.unwrap();
        assert_ne!(replaced.metadata.resource_version.as_deref(), Some(rv0.as_str()));

        // The same stale object again: 409 Conflict.
        let err = leases.replace("leader", &PostParams::default(), &mine).await.unwrap_err();
        assert!(matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "{err:?}");
        // A merge patch carrying a stale RV: 409; with the current one: OK.
        let stale = json!({"metadata": {"resourceVersion": rv0}, "spec": {"holderIdentity": "you"}});
        let err = leases
            .patch("leader", &PatchParams::default(), &Patch::Merge(&stale))
            .await
            .unwrap_err();
        assert!(matches!(&err, kube::Error::Api(s) if s.code == 409), "{err:?}");
        let fresh = json!({"metadata": {"resourceVersion": replaced.metadata.resource_version}, "spec": {"holderIdentity": "you"}});
        let patched = leases
            .patch("leader", &PatchParams::default(), &Patch::Merge(&fresh))
            .await
            .unwrap();
        assert_eq!(patched.spec.unwrap().holder_identity.as_deref(), Some("you"));
        // Creating it twice: 409 AlreadyExists.
        let err = leases.create(&PostParams::default(), &l).await.unwrap_err();
        assert!(matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"), "{err:?}");

        // replace_status: only .status changes, generation stays.
        let services: Api<Service> = Api::namespaced(fake.client(), "default");
        let mut s = svc("default", "web");
        s.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
            type_: Some("ClusterIP".into()),
            ..Default::default()
        });
        let s = services.create(&PostParams::default(), &s).await.unwrap();
        assert_eq!(s.metadata.generation, Some(1));
        let mut body = s.clone();
        body.spec.as_mut().unwrap().type_ = Some("NodePort".into());
        body.status = Some(serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})).unwrap());
        let out = services
            .replace_status("web", &PostParams::default(), &body)
            .await
            .unwrap();
        assert_eq!(out.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
        assert_eq!(out.metadata.generation, Some(1));
        let ip = out.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0].ip.clone();
        assert_eq!(ip.as_deref(), Some("1.2.3.4"));
        // A spec change through the main resource bumps generation and ignores status.
        let mut cur = services.get("web").await.unwrap();
        cur.spec.as_mut().unwrap().type_ = Some("NodePort".into());
        cur.status = None;
        let out = services.replace("web", &PostParams::default(), &cur).await.unwrap();
        assert_eq!(out.metadata.generation, Some(2));
        assert!(out.status.unwrap().load_balancer.unwrap().ingress.is_some());
    })
    .await;
}

/// #7 (fake half): two fakes with different tokens and CAs drive two independent clients;
/// stopping one leaves the other's Store intact and live.
#[tokio::test]
async fn contract_7_two_clusters_independent() {
    bounded(async {
        let east = FakeApiServer::builder()
            .token("east-token")
            .tls(true)
            .start()
            .await;
        let west = FakeApiServer::builder()
            .token("west-token")
            .tls(true)
            .start()
            .await;
        assert_ne!(east.ca_der(), west.ca_der());
        east.apply(&svc("default", "e1"));
        west.apply(&svc("default", "w1"));

        let mut stores = vec![];
        let mut streams = vec![];
        for fake in [&east, &west] {
            let (store, writer) = reflector::store::<Service>();
            let api: Api<Service> = Api::all(fake.client());
            let s = watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .boxed();
            streams.push(s);
            stores.push(store);
        }
        let mut east_stream = streams.remove(0);
        let mut west_stream = streams.remove(0);
        let drive_east = tokio::spawn(async move { while east_stream.next().await.is_some() {} });
        let drive_west = tokio::spawn(async move { while west_stream.next().await.is_some() {} });
        for s in &stores {
            s.wait_until_ready().await.unwrap();
        }
        assert_eq!(stores[0].state()[0].metadata.name.as_deref(), Some("e1"));
        assert_eq!(stores[1].state()[0].metadata.name.as_deref(), Some("w1"));

        east.stop().await;
        west.apply(&svc("default", "w2"));
        let west_store = stores[1].clone();
        while west_store.state().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            stores[0].state().len(),
            1,
            "east's store keeps its last state"
        );
        // A client of one cluster is refused by the other (token is per cluster).
        let mut cross = west.kube_config();
        cross.auth_info = east.kube_config().auth_info;
        let cross: Api<Service> = Api::all(kube::Client::try_from(cross).unwrap());
        let err = cross.list(&ListParams::default()).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 401),
            "{err:?}"
        );
        drive_east.abort();
        drive_west.abort();
    })
    .await;
}

/// #8: 503×3 on LIST is retried by kube's default client retry policy.
#[tokio::test]
async fn contract_8_list_503_retried_by_client() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        fake.apply(&svc("default", "a"));
        assert!(
            fake.kube_config().default_retry,
            "kube 4.2 retries 429/503/504 by default"
        );
        fake.fail_next(Some(Method::GET), "*/services", 3, 503, None);
        let api: Api<Service> = Api::all(fake.client());
        let list = api.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(
            list_requests(&fake, "services"),
            4,
            "3 failures + 1 success"
        );

        // Persistent failure surfaces as an error once the client gives up on a non-retried code.
        fake.fail_next(Some(Method::GET), "*/services", 1, 500, None);
        let err = api.list(&ListParams::default()).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 500),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn wrong_token_is_401() {
    bounded(async {
        let fake = FakeApiServer::builder().token("right").start().await;
        let api: Api<Service> = Api::all(fake.client());
        api.list(&ListParams::default()).await.unwrap();
        let mut cfg = fake.kube_config();
        cfg.auth_info = serde_json::from_value(json!({"token": "wrong"})).unwrap();
        let api: Api<Service> = Api::all(kube::Client::try_from(cfg).unwrap());
        let err = api.list(&ListParams::default()).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 401 && s.reason == "Unauthorized"),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn tls_needs_the_ca() {
    bounded(async {
        let fake = FakeApiServer::builder().tls(true).start().await;
        assert!(fake.url().starts_with("https://127.0.0.1:"));
        assert!(fake.ca_pem().unwrap().contains("BEGIN CERTIFICATE"));
        fake.apply(&svc("default", "a"));
        let api: Api<Service> = Api::all(fake.client());
        assert_eq!(
            api.list(&ListParams::default()).await.unwrap().items.len(),
            1
        );

        let mut cfg = fake.kube_config();
        cfg.root_cert = None;
        let api: Api<Service> = Api::all(kube::Client::try_from(cfg).unwrap());
        let err = api.list(&ListParams::default()).await.unwrap_err();
        assert!(
            !matches!(err, kube::Error::Api(_)),
            "a TLS failure, not an API answer: {err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn stop_resume_keeps_data_and_rv() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        let url = fake.url();
        fake.apply(&svc("default", "a"));
        let api: Api<Service> = Api::all(fake.client());
        let (store, writer) = reflector::store::<Service>();
        let mut w = spawn_events(
            watcher(api.clone(), watcher::Config::default())
                .default_backoff()
                .reflect(writer),
        );
        assert_eq!(w.next(3).await, ["Init", "InitApply(a)", "InitDone"]);
        fake.wait_for_watches("services", 1).await;

        fake.stop().await;
        assert_eq!(fake.active_watches("services"), 0);
        assert!(
            api.list(&ListParams::default()).await.is_err(),
            "server is down"
        );
        let rv = fake.current_rv();
        fake.apply(&svc("default", "b"));
        fake.resume().await;
        assert_eq!(fake.url(), url);
        assert_eq!(fake.current_rv(), rv + 1);
        // The watcher reconnects from its last RV and sees b, without a 410.
        let got = w.until("Apply(b)").await;
        assert!(!got.contains(&"Init".to_owned()), "no re-list: {got:?}");
        assert_eq!(store.state().len(), 2);
        let l = api.list(&ListParams::default()).await.unwrap();
        assert_eq!(l.metadata.resource_version, Some((rv + 1).to_string()));
    })
    .await;
}

#[tokio::test]
async fn label_selected_list() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        fake.apply(&labelled("a", "web", &[("app", "web"), ("tier", "front")]));
        fake.apply(&labelled("a", "db", &[("app", "db")]));
        fake.apply(&labelled("b", "web", &[("app", "web")]));
        let all: Api<Service> = Api::all(fake.client());
        let names = |l: kube::core::ObjectList<Service>| {
            l.items
                .into_iter()
                .map(|s| {
                    format!(
                        "{}/{}",
                        s.metadata.namespace.unwrap(),
                        s.metadata.name.unwrap()
                    )
                })
                .collect::<Vec<_>>()
        };
        let l = all
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        assert_eq!(names(l), ["a/web", "b/web"]);
        let l = all
            .list(&ListParams::default().labels("app in (db),!tier"))
            .await
            .unwrap();
        assert_eq!(names(l), ["a/db"]);
        let l = all
            .list(&ListParams::default().labels("tier"))
            .await
            .unwrap();
        assert_eq!(names(l), ["a/web"]);
        let ns_a: Api<Service> = Api::namespaced(fake.client(), "a");
        let l = ns_a
            .list(&ListParams::default().labels("app!=db"))
            .await
            .unwrap();
        assert_eq!(names(l), ["a/web"]);
        let l = all
            .list(&ListParams::default().fields("metadata.namespace=b"))
            .await
            .unwrap();
        assert_eq!(names(l), ["b/web"]);
        let err = all
            .list(&ListParams::default().fields("spec.type=x"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 400),
            "{err:?}"
        );
        let err = all
            .list(&ListParams::default().labels("a b c"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 400),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn expired_continue_is_410() {
    bounded(async {
        let fake = FakeApiServer::start().await;
        for n in ["a", "b", "c"] {
            fake.apply(&svc("default", n));
        }
        let api: Api<Service> = Api::all(fake.client());
        let p1 = api.list(&ListParams::default().limit(1)).await.unwrap();
        let snap_rv = p1.metadata.resource_version.clone();
        assert_eq!(p1.metadata.remaining_item_count, Some(2));
        let token = p1.metadata.continue_.clone().unwrap();
        // Changes after the first page do not show in later pages (consistent snapshot).
        fake.delete::<Service>(Some("default"), "b");
        fake.apply(&svc("default", "bb"));
        let p2 = api
            .list(&ListParams::default().limit(1).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(p2.items[0].metadata.name.as_deref(), Some("b"));
        assert_eq!(p2.metadata.resource_version, snap_rv);
        // Once history is compacted, the token is too old.
        fake.compact_all();
        let err = api
            .list(&ListParams::default().limit(1).continue_token(&token))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 410 && s.reason == "Expired"),
            "{err:?}"
        );
    })
    .await;
}
