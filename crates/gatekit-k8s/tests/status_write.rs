//! Status write-back against the in-process API server (`gatekit-k8s-fake`) with kube's
//! real Client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gatekit_k8s::status_write::StatusWriter;
use gatekit_k8s::types::{
    BackendPolicy, BackendTrafficPolicy, Gateway, GatewayClass, HttpRoute, SecurityOverride,
    SecurityPolicy, Service, TrafficPolicy, XBackendTrafficPolicy,
};
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, translate};
use gatekit_k8s_fake::FakeApiServer;
use http::Method;
use serde_json::{Value, json};
use tokio::sync::watch;

const ME: &str = "gatekit.io/gateway-controller";
const OTHER: &str = "example.com/other-controller";

const FIXTURE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: gatekit }
spec: { controllerName: gatekit.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: infra }
spec:
  gatewayClassName: gatekit
  listeners:
    - { name: http, port: 8080, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: theirs, namespace: infra }
spec:
  gatewayClassName: other
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: app }
spec: { ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: app }
spec:
  parentRefs:
    - { name: gw, namespace: infra }
    - { name: theirs, namespace: infra }
  rules:
    - backendRefs: [{ name: web, port: 80 }]
"#;

/// Loads the fixture into the fake, with a foreign and a stale own entry in the route's
/// status, as another controller and an earlier gatekit would have left them.
async fn setup() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    for doc in FIXTURE.split("\n---\n") {
        let v: Value = serde_norway::from_str(doc).unwrap();
        fake.apply_json(v);
    }
    fake.patch_status::<HttpRoute>(
        Some("app"),
        "web",
        json!({"parents": [
            {"parentRef": {"name": "theirs", "namespace": "infra"}, "controllerName": OTHER,
             "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                             "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
            {"parentRef": {"name": "gone", "namespace": "infra"}, "controllerName": ME,
             "conditions": []},
        ]}),
    );
    fake
}

/// Translation of what the fake holds (as the provider would compute it).
fn translation(fake: &FakeApiServer) -> Translation {
    let mut set = ResourceSet::default();
    set.gateway_classes = fake.list::<GatewayClass>();
    set.gateways = fake.list::<Gateway>();
    set.http_routes = fake.list::<HttpRoute>().iter().map(Into::into).collect();
    set.services = fake.list::<Service>().iter().map(Into::into).collect();
    set.backend_policies = fake.list::<BackendPolicy>();
    set.traffic_policies = fake.list::<TrafficPolicy>();
    set.backend_traffic_policies = fake.list::<BackendTrafficPolicy>();
    set.x_backend_traffic_policies = fake.list::<XBackendTrafficPolicy>();
    set.security_policies = fake.list::<SecurityPolicy>();
    set.security_overrides = fake.list::<SecurityOverride>();
    translate(&set, &TranslateOptions::default())
}

fn status_json<K>(fake: &FakeApiServer, ns: Option<&str>, name: &str) -> Value
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned + serde::Serialize,
{
    let obj = fake.get::<K>(ns, name).expect("object exists");
    serde_json::to_value(obj).unwrap()["status"].clone()
}

fn count(fake: &FakeApiServer, method: Method, path_suffix: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(path_suffix))
        .count()
}

fn gateway_api_requests(fake: &FakeApiServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.starts_with("/apis/gateway.networking.k8s.io/"))
        .count()
}

fn own_parent(status: &Value) -> &Value {
    status["parents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["controllerName"] == ME)
        .expect("gatekit's entry")
}

fn condition<'a>(conditions: &'a Value, type_: &str) -> &'a Value {
    conditions
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {conditions}"))
}

#[tokio::test]
async fn writes_route_gateway_and_class_status_keeping_foreign_entries() {
    let fake = setup().await;
    let t = translation(&fake);
    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&t).await;
    assert_eq!((report.written, report.failed), (3, 0), "{report:?}");

    let route = status_json::<HttpRoute>(&fake, Some("app"), "web");
    let parents = route["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2, "foreign kept, stale own removed: {route}");
    assert_eq!(parents[0]["controllerName"], OTHER);
    assert_eq!(
        parents[0]["conditions"][0]["lastTransitionTime"], "2020-01-01T00:00:00Z",
        "foreign entry untouched"
    );
    let own = own_parent(&route);
    assert_eq!(
        own["parentRef"],
        json!({"name": "gw", "namespace": "infra"}),
        "parentRef copied from the spec"
    );
    let accepted = condition(&own["conditions"], "Accepted");
    assert_eq!(accepted["status"], "True");
    assert!(accepted["lastTransitionTime"].is_string());
    let generation = fake
        .get::<HttpRoute>(Some("app"), "web")
        .unwrap()
        .metadata
        .generation;
    if let Some(g) = generation {
        assert_eq!(accepted["observedGeneration"], g);
    }
    assert_eq!(
        condition(&own["conditions"], "ResolvedRefs")["status"],
        "True"
    );

    let gw = status_json::<Gateway>(&fake, Some("infra"), "gw");
    assert_eq!(condition(&gw["conditions"], "Accepted")["status"], "True");
    assert_eq!(condition(&gw["conditions"], "Programmed")["status"], "True");
    let listener = &gw["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 1);
    assert!(
        listener["supportedKinds"]
            .as_array()
            .unwrap()
            .contains(&json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"})),
        "{listener}"
    );
    assert_eq!(
        condition(&listener["conditions"], "Programmed")["status"],
        "True"
    );

    let class = status_json::<GatewayClass>(&fake, None, "gatekit");
    assert_eq!(
        condition(&class["conditions"], "Accepted")["status"],
        "True"
    );
    // GEP-2162: the supported features, sorted by name, from the one list in code.
    let features: Vec<_> = class["supportedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(features, gatekit_k8s::features::supported_names());

    let theirs = fake.get::<Gateway>(Some("infra"), "theirs").unwrap();
    assert!(
        theirs.status.is_none(),
        "another controller's Gateway untouched"
    );
}

#[tokio::test]
async fn second_identical_write_sends_no_put() {
    let fake = setup().await;
    let t = translation(&fake);
    let mut writer = StatusWriter::new(fake.client());
    assert_eq!(writer.resync(&t).await.written, 3);

    // Same writer: nothing even read.
    fake.clear_requests();
    let report = writer.write(&t).await;
    assert_eq!((report.cached, report.written), (3, 0), "{report:?}");
    assert_eq!(gateway_api_requests(&fake), 0, "{:?}", fake.requests());

    // A new writer (a new leader) reads everything, writes nothing: only timestamps
    // could differ and they are kept.
    let mut fresh = StatusWriter::new(fake.client());
    fake.clear_requests();
    let report = fresh.resync(&t).await;
    assert_eq!((report.unchanged, report.written), (3, 0), "{report:?}");
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == Method::PUT)
            .count(),
        0,
        "{:?}",
        fake.requests()
    );
}

#[tokio::test]
async fn transition_time_kept_for_unchanged_conditions() {
    let fake = setup().await;
    let mut writer = StatusWriter::new(fake.client());
    writer.resync(&translation(&fake)).await;
    // Age gatekit's condition timestamps.
    let mut route = status_json::<HttpRoute>(&fake, Some("app"), "web");
    for p in route["parents"].as_array_mut().unwrap() {
        if p["controllerName"] == ME {
            for c in p["conditions"].as_array_mut().unwrap() {
                c["lastTransitionTime"] = json!("2021-06-01T00:00:00Z");
            }
        }
    }
    fake.patch_status::<HttpRoute>(Some("app"), "web", route);

    // The Service disappears: ResolvedRefs turns False, Accepted stays True.
    fake.delete::<Service>(Some("app"), "web");
    let report = writer.write(&translation(&fake)).await;
    assert_eq!(report.written, 1, "only the route changed: {report:?}");
    let route = status_json::<HttpRoute>(&fake, Some("app"), "web");
    let own = own_parent(&route);
    let accepted = condition(&own["conditions"], "Accepted");
    assert_eq!(accepted["lastTransitionTime"], "2021-06-01T00:00:00Z");
    let resolved = condition(&own["conditions"], "ResolvedRefs");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "BackendNotFound");
    assert_ne!(resolved["lastTransitionTime"], "2021-06-01T00:00:00Z");
}

#[tokio::test]
async fn conflict_rereads_and_retries() {
    let fake = setup().await;
    fake.fail_next(Some(Method::PUT), "*/httproutes/web/status", 1, 409, None);
    fake.clear_requests();
    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&translation(&fake)).await;
    assert_eq!((report.written, report.failed), (3, 0), "{report:?}");
    assert_eq!(count(&fake, Method::PUT, "/httproutes/web/status"), 2);
    assert_eq!(count(&fake, Method::GET, "/httproutes/web"), 2, "re-read");
    let route = status_json::<HttpRoute>(&fake, Some("app"), "web");
    assert_eq!(route["parents"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn filter_restricts_the_objects_written() {
    let fake = setup().await;
    let mut writer = StatusWriter::new(fake.client()).filter(|r| r.kind() == "Gateway");
    let report = writer.resync(&translation(&fake)).await;
    assert_eq!(report.written, 1, "{report:?}");
    assert!(
        fake.get::<Gateway>(Some("infra"), "gw")
            .unwrap()
            .status
            .is_some()
    );
    let route = status_json::<HttpRoute>(&fake, Some("app"), "web");
    assert_eq!(
        route["parents"].as_array().unwrap().len(),
        2,
        "route untouched (its stale own entry too)"
    );
    assert!(
        fake.get::<GatewayClass>(None, "gatekit")
            .unwrap()
            .status
            .is_none_or(|s| s
                .conditions
                .as_ref()
                .is_none_or(|c| c.iter().all(|c| c.status != "True")))
    );
}

#[tokio::test]
async fn resync_removes_own_entries_from_routes_no_longer_handled() {
    let fake = setup().await;
    // A route that now only attaches to another controller's Gateway, still carrying an
    // entry gatekit wrote when it attached to gw.
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "moved", "namespace": "app"},
        "spec": {"parentRefs": [{"name": "theirs", "namespace": "infra"}]},
    }));
    fake.patch_status::<HttpRoute>(
        Some("app"),
        "moved",
        json!({"parents": [
            {"parentRef": {"name": "gw", "namespace": "infra"}, "controllerName": ME, "conditions": []},
            {"parentRef": {"name": "theirs", "namespace": "infra"}, "controllerName": OTHER, "conditions": []},
        ]}),
    );
    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&translation(&fake)).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let moved = status_json::<HttpRoute>(&fake, Some("app"), "moved");
    let parents = moved["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 1, "{moved}");
    assert_eq!(parents[0]["controllerName"], OTHER);
}

#[tokio::test]
async fn only_the_leader_writes_and_a_new_leader_writes_everything() {
    let fake = setup().await;
    let t = Arc::new(translation(&fake));
    let (desired_tx, desired) = watch::channel(t.clone());
    let (a_lead, a_rx) = watch::channel(false);
    let (b_lead, b_rx) = watch::channel(false);
    let a = tokio::spawn(StatusWriter::new(fake.client()).run(desired.clone(), a_rx));
    let b = tokio::spawn(StatusWriter::new(fake.client()).run(desired.clone(), b_rx));

    // Nobody leads: nothing is read or written.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gateway_api_requests(&fake), 0, "{:?}", fake.requests());

    a_lead.send_replace(true);
    let wait_written = async {
        loop {
            let gw = fake.get::<Gateway>(Some("infra"), "gw").unwrap();
            let route = status_json::<HttpRoute>(&fake, Some("app"), "web");
            let class = fake.get::<GatewayClass>(None, "gatekit").unwrap();
            if gw.status.is_some_and(|s| s.listeners.is_some())
                && class.status.is_some_and(|s| s.conditions.is_some())
                && route["parents"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p["controllerName"] == ME
                            && p["conditions"].as_array().is_some_and(|c| !c.is_empty())
                    })
                })
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait_written)
        .await
        .expect("leader wrote status");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Exactly one writer's work: one read and one write per object.
    assert_eq!(count(&fake, Method::GET, "/httproutes/web"), 1);
    assert_eq!(count(&fake, Method::PUT, "/httproutes/web/status"), 1);
    assert_eq!(count(&fake, Method::PUT, "/gateways/gw/status"), 1);
    assert_eq!(
        count(&fake, Method::PUT, "/gatewayclasses/gatekit/status"),
        1
    );

    // Leadership moves to b: it reads everything (resync) and writes nothing new.
    fake.clear_requests();
    a_lead.send_replace(false);
    b_lead.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), async {
        while count(&fake, Method::GET, "/gateways/gw") == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("new leader resyncs");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == Method::PUT)
            .count(),
        0
    );

    // A new translation is written by b only (a follows now).
    fake.delete::<Service>(Some("app"), "web");
    fake.clear_requests();
    desired_tx.send_replace(Arc::new(translation(&fake)));
    tokio::time::timeout(Duration::from_secs(10), async {
        while count(&fake, Method::PUT, "/httproutes/web/status") == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("leader writes the change");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        count(&fake, Method::GET, "/httproutes/web"),
        1,
        "one writer"
    );
    assert_eq!(count(&fake, Method::PUT, "/httproutes/web/status"), 1);

    drop(desired_tx);
    tokio::time::timeout(Duration::from_secs(5), async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .await
    .expect("writers stop when the translation channel closes");
}

fn own_ancestor(status: &Value) -> &Value {
    status["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["controllerName"] == ME)
        .unwrap_or_else(|| panic!("no gatekit ancestor in {status}"))
}

fn traffic_policy(name: &str, retry_attempts: u32) -> Value {
    json!({
        "apiVersion": "gatekit.io/v1alpha1", "kind": "TrafficPolicy",
        "metadata": {"name": name, "namespace": "app"},
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "web"}],
            "retry": {"attempts": retry_attempts},
        },
    })
}

#[tokio::test]
async fn policy_statuses_say_which_policy_won_a_conflict() {
    let fake = setup().await;
    // Oldest first: by creationTimestamp (the fake stamps whole seconds), then name.
    fake.apply_json(traffic_policy("a-older", 2));
    fake.apply_json(traffic_policy("b-newer", 5));
    // Another controller's verdict on the older policy, and an entry gatekit wrote when
    // the policy named a route it no longer does.
    let route_ref = json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                           "namespace": "app", "name": "web"});
    fake.patch_status::<TrafficPolicy>(
        Some("app"),
        "a-older",
        json!({"ancestors": [
            {"ancestorRef": route_ref, "controllerName": OTHER,
             "conditions": [{"type": "Accepted", "status": "False", "reason": "Invalid",
                             "message": "theirs", "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
            {"ancestorRef": {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                             "namespace": "app", "name": "gone"},
             "controllerName": ME, "conditions": []},
        ]}),
    );

    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&translation(&fake)).await;
    assert_eq!(
        (report.written, report.failed),
        (5, 0),
        "route, gateway, class and two policies: {report:?}"
    );

    let older = status_json::<TrafficPolicy>(&fake, Some("app"), "a-older");
    let ancestors = older["ancestors"].as_array().unwrap();
    assert_eq!(
        ancestors.len(),
        2,
        "foreign kept, stale own dropped: {older}"
    );
    assert_eq!(ancestors[0]["controllerName"], OTHER);
    assert_eq!(ancestors[0]["conditions"][0]["message"], "theirs");
    let own = own_ancestor(&older);
    assert_eq!(own["ancestorRef"], route_ref);
    let accepted = condition(&own["conditions"], "Accepted");
    assert_eq!(accepted["status"], "True");
    assert_eq!(accepted["reason"], "Accepted");
    assert!(accepted["lastTransitionTime"].is_string());
    assert_eq!(accepted["observedGeneration"], 1);

    let newer = status_json::<TrafficPolicy>(&fake, Some("app"), "b-newer");
    let entry = &newer["ancestors"][0];
    assert_eq!(entry["controllerName"], ME);
    assert_eq!(entry["ancestorRef"], route_ref);
    let accepted = condition(&entry["conditions"], "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "Conflicted");
    let message = accepted["message"].as_str().unwrap();
    assert!(
        message.contains("app/a-older"),
        "names the winner: {message}"
    );

    // Written once: a new leader reads, finds the same, writes nothing.
    let mut fresh = StatusWriter::new(fake.client());
    let report = fresh.resync(&translation(&fake)).await;
    assert_eq!((report.unchanged, report.written), (5, 0), "{report:?}");

    // The older policy goes away: the newer one now applies.
    fake.delete::<TrafficPolicy>(Some("app"), "a-older");
    let report = writer.write(&translation(&fake)).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let newer = status_json::<TrafficPolicy>(&fake, Some("app"), "b-newer");
    let accepted = condition(&own_ancestor(&newer)["conditions"], "Accepted");
    assert_eq!(accepted["status"], "True", "{newer}");
}

#[tokio::test]
async fn a_backend_policy_for_a_missing_service_is_target_not_found() {
    let fake = setup().await;
    fake.apply_json(json!({
        "apiVersion": "gatekit.io/v1alpha1", "kind": "BackendPolicy",
        "metadata": {"name": "lb", "namespace": "app"},
        "spec": {"targetRefs": [{"kind": "Service", "name": "web"}, {"kind": "Service", "name": "nosuch"}]},
    }));
    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&translation(&fake)).await;
    assert_eq!(report.failed, 0, "{report:?}");

    let status = status_json::<BackendPolicy>(&fake, Some("app"), "lb");
    let ancestors = status["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 2, "{status}");
    assert_eq!(
        ancestors[0]["ancestorRef"],
        json!({"group": "", "kind": "Service", "namespace": "app", "name": "web"})
    );
    assert_eq!(
        condition(&ancestors[0]["conditions"], "Accepted")["status"],
        "True"
    );
    assert_eq!(ancestors[1]["ancestorRef"]["name"], "nosuch");
    assert_eq!(ancestors[1]["controllerName"], ME);
    let accepted = condition(&ancestors[1]["conditions"], "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "TargetNotFound");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("Service app/nosuch not found"),
        "{accepted}"
    );
}

#[tokio::test]
async fn resync_removes_own_entries_from_policies_no_longer_translated() {
    let fake = setup().await;
    fake.apply_json(traffic_policy("refused", 2));
    let route_ref = json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                           "namespace": "app", "name": "web"});
    let entry = |controller: &str| {
        json!({"ancestorRef": route_ref, "controllerName": controller,
               "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                               "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"}]})
    };
    fake.patch_status::<TrafficPolicy>(
        Some("app"),
        "refused",
        json!({"ancestors": [entry(ME), entry(OTHER)]}),
    );
    // The policy is in the cluster but not in the translation (as when the loader
    // refuses it): gatekit's verdict on it is withdrawn, the other controller's kept.
    let mut t = translation(&fake);
    assert!(t.status("TrafficPolicy", Some("app"), "refused").is_some());
    let mut set = ResourceSet::default();
    set.gateway_classes = fake.list::<GatewayClass>();
    set.gateways = fake.list::<Gateway>();
    set.http_routes = fake.list::<HttpRoute>().iter().map(Into::into).collect();
    set.services = fake.list::<Service>().iter().map(Into::into).collect();
    t = translate(&set, &TranslateOptions::default());

    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&t).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let status = status_json::<TrafficPolicy>(&fake, Some("app"), "refused");
    let ancestors = status["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 1, "{status}");
    assert_eq!(ancestors[0]["controllerName"], OTHER);
}

// === Envoy Gateway's BackendTrafficPolicy ===

fn backend_traffic_policy(name: &str, extra: Value) -> Value {
    let mut spec = json!({
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "web"}],
        "retry": {"numRetries": 2},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "BackendTrafficPolicy",
        "metadata": {"name": name, "namespace": "app"},
        "spec": spec,
    })
}

#[tokio::test]
async fn backend_traffic_policy_statuses_are_written_keeping_foreign_ancestors() {
    let fake = setup().await;
    fake.apply_json(backend_traffic_policy("btp", json!({})));
    // Unsupported and on another route, so the two policies do not conflict.
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "other", "namespace": "app"},
        "spec": {"parentRefs": [{"name": "gw", "namespace": "infra"}],
                 "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
    }));
    fake.apply_json(json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "BackendTrafficPolicy",
        "metadata": {"name": "unsupported", "namespace": "app"},
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "other"}],
            "faultInjection": {"abort": {"httpStatus": 503}},
        },
    }));
    // Envoy Gateway's own verdict on the first policy, left by its controller. Like
    // Envoy Gateway, gatekit reports a route target at the Gateways the route names.
    let gw_ref = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
                        "namespace": "infra", "name": "gw"});
    let theirs_ref = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
                            "namespace": "infra", "name": "theirs"});
    fake.patch_status::<BackendTrafficPolicy>(
        Some("app"),
        "btp",
        json!({"ancestors": [
            {"ancestorRef": gw_ref, "controllerName": OTHER,
             "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                             "message": "theirs", "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
        ]}),
    );

    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&translation(&fake)).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        count(&fake, Method::PUT, "/backendtrafficpolicies/btp/status") >= 1,
        "written through the status subresource of gateway.envoyproxy.io/v1alpha1"
    );
    assert!(fake.requests().iter().any(|r| r.method == Method::PUT
        && r.path
            == "/apis/gateway.envoyproxy.io/v1alpha1/namespaces/app/backendtrafficpolicies/btp/status"));

    let status = status_json::<BackendTrafficPolicy>(&fake, Some("app"), "btp");
    let ancestors = status["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 3, "foreign entry kept: {status}");
    assert_eq!(ancestors[0]["controllerName"], OTHER);
    assert_eq!(ancestors[0]["conditions"][0]["message"], "theirs");
    let own: Vec<&Value> = ancestors
        .iter()
        .filter(|a| a["controllerName"] == ME)
        .collect();
    assert_eq!(
        own.iter().map(|a| &a["ancestorRef"]).collect::<Vec<_>>(),
        [&gw_ref, &theirs_ref],
        "the route's parent Gateways, not the route: {status}"
    );
    let accepted = condition(&own[0]["conditions"], "Accepted");
    assert_eq!(accepted["status"], "True", "{status}");
    assert_eq!(accepted["reason"], "Accepted");
    assert_eq!(accepted["observedGeneration"], 1);
    assert!(accepted["lastTransitionTime"].is_string());

    let status = status_json::<BackendTrafficPolicy>(&fake, Some("app"), "unsupported");
    let own = own_ancestor(&status);
    assert_eq!(own["ancestorRef"], gw_ref, "route other's Gateway");
    let accepted = condition(&own["conditions"], "Accepted");
    assert_eq!(accepted["status"], "False", "{status}");
    assert_eq!(accepted["reason"], "Unsupported");
    let message = accepted["message"].as_str().unwrap();
    assert!(
        message.contains("spec.faultInjection"),
        "names the field: {message}"
    );

    // A second pass finds everything in place and writes nothing.
    let report = StatusWriter::new(fake.client())
        .resync(&translation(&fake))
        .await;
    assert_eq!((report.written, report.failed), (0, 0), "{report:?}");

    // The policy no longer translated: gatekit's entry withdrawn, Envoy Gateway's kept.
    fake.delete::<BackendTrafficPolicy>(Some("app"), "unsupported");
    let mut set = ResourceSet::default();
    set.gateway_classes = fake.list::<GatewayClass>();
    set.gateways = fake.list::<Gateway>();
    set.http_routes = fake.list::<HttpRoute>().iter().map(Into::into).collect();
    set.services = fake.list::<Service>().iter().map(Into::into).collect();
    let report = writer
        .write(&translate(&set, &TranslateOptions::default()))
        .await;
    assert_eq!(report.failed, 0, "{report:?}");
    let status = status_json::<BackendTrafficPolicy>(&fake, Some("app"), "btp");
    let ancestors = status["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 1, "{status}");
    assert_eq!(ancestors[0]["controllerName"], OTHER);
}

#[tokio::test]
async fn without_envoy_gateways_crd_backend_traffic_policies_fail_nothing() {
    let fake = setup().await;
    // The policy comes from elsewhere (a manifest file) while this cluster has no
    // Envoy Gateway CRD: every request to the group is a 404.
    fake.apply_json(backend_traffic_policy("btp", json!({})));
    let t = translation(&fake);
    assert!(
        t.status("BackendTrafficPolicy", Some("app"), "btp")
            .is_some()
    );
    fake.fail_next(None, "/apis/gateway.envoyproxy.io/*", 1000, 404, None);

    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&t).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.missing, 1, "{report:?}");
    assert_eq!(report.written, 3, "route, gateway and class: {report:?}");
    let report = writer.write(&t).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let status = status_json::<BackendTrafficPolicy>(&fake, Some("app"), "btp");
    assert!(status.is_null(), "nothing written: {status}");
    assert_eq!(
        count(&fake, Method::PUT, "/backendtrafficpolicies/btp/status"),
        0
    );
}

/// An API server without Envoy Gateway's group answers its paths with a plain-text
/// `404 page not found` (no `Status` body): still "not installed", never a failure.
#[tokio::test]
async fn a_plain_text_404_is_not_installed_either() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let fake = setup().await;
    fake.apply_json(backend_traffic_policy("btp", json!({})));
    let t = translation(&fake);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = "404 page not found\n";
                let response = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let mut writer = StatusWriter::new(client).filter(|r| r.kind() == "BackendTrafficPolicy");
    let report = tokio::time::timeout(Duration::from_secs(10), writer.resync(&t))
        .await
        .unwrap();
    assert_eq!((report.failed, report.missing), (0, 1), "{report:?}");
    server.abort();
}

#[tokio::test]
async fn gateway_addresses_from_the_gateway_service_are_written() {
    let fake = setup().await;
    fake.apply_json(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "gatekit", "namespace": "gatekit"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}, {"hostname": "lb.example.net"}]}},
    }));
    let mut set = ResourceSet::default();
    set.gateway_classes = fake.list::<GatewayClass>();
    set.gateways = fake.list::<Gateway>();
    set.services = fake.list::<Service>().iter().map(Into::into).collect();
    let t = translate(
        &set,
        &TranslateOptions::default().gateway_service("gatekit", "gatekit"),
    );
    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&t).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let gw = status_json::<Gateway>(&fake, Some("infra"), "gw");
    assert_eq!(
        gw["addresses"],
        json!([
            {"type": "IPAddress", "value": "203.0.113.5"},
            {"type": "Hostname", "value": "lb.example.net"},
        ])
    );
    assert_eq!(condition(&gw["conditions"], "Programmed")["status"], "True");

    // Without the option the writer leaves the addresses as they are.
    let t = translate(&set, &TranslateOptions::default());
    let mut writer = StatusWriter::new(fake.client());
    writer.resync(&t).await;
    let gw = status_json::<Gateway>(&fake, Some("infra"), "gw");
    assert_eq!(gw["addresses"][0]["value"], "203.0.113.5");
}

// === XBackendTrafficPolicy ===

#[tokio::test]
async fn x_backend_traffic_policy_statuses_are_written_in_the_cluster() {
    let fake = setup().await;
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.x-k8s.io/v1alpha1", "kind": "XBackendTrafficPolicy",
        "metadata": {"name": "sticky", "namespace": "app"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "web"},
                           {"group": "", "kind": "Service", "name": "nosuch"}],
            "sessionPersistence": {"sessionName": "sid", "type": "Cookie"},
        },
    }));
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.x-k8s.io/v1alpha1", "kind": "XBackendTrafficPolicy",
        "metadata": {"name": "bad", "namespace": "app"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
            "sessionPersistence": {"cookieConfig": {"lifetimeType": "Permanent"}},
        },
    }));
    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&translation(&fake)).await;
    assert_eq!(report.failed, 0, "{report:?}");

    let status = status_json::<XBackendTrafficPolicy>(&fake, Some("app"), "sticky");
    let ancestors = status["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 2, "{status}");
    assert_eq!(
        ancestors[0]["ancestorRef"],
        json!({"group": "", "kind": "Service", "namespace": "app", "name": "web"})
    );
    assert_eq!(ancestors[0]["controllerName"], ME);
    let ok = condition(&ancestors[0]["conditions"], "Accepted");
    assert_eq!(
        (ok["status"].as_str(), ok["reason"].as_str()),
        (Some("True"), Some("Accepted"))
    );
    let missing = condition(&ancestors[1]["conditions"], "Accepted");
    assert_eq!(missing["reason"], "TargetNotFound");

    let status = status_json::<XBackendTrafficPolicy>(&fake, Some("app"), "bad");
    let refused = condition(&own_ancestor(&status)["conditions"], "Accepted");
    assert_eq!(
        (refused["status"].as_str(), refused["reason"].as_str()),
        (Some("False"), Some("Invalid"))
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("spec.sessionPersistence.absoluteTimeout"),
        "{refused}"
    );
}

// === SecurityPolicy and SecurityOverride ===

#[tokio::test]
async fn security_policy_and_override_statuses_are_written() {
    let fake = setup().await;
    fake.apply_json(json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "SecurityPolicy",
        "metadata": {"name": "login", "namespace": "app"},
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "web"}],
            "oidc": {
                "provider": {"issuer": "https://idp.test"}, "clientID": "web",
                "clientSecret": {"name": "s"}, "disableTokenEncryption": true,
            },
        },
    }));
    fake.apply_json(json!({
        "apiVersion": "gatekit.io/v1alpha1", "kind": "SecurityOverride",
        "metadata": {"name": "platform", "namespace": "infra"},
        "spec": {
            "targetRefs": [{"kind": "Gateway", "name": "gw"}],
            "basicAuth": {"users": {"name": "missing"}},
        },
    }));
    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&translation(&fake)).await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(fake.requests().iter().any(|r| r.method == Method::PUT
        && r.path
            == "/apis/gateway.envoyproxy.io/v1alpha1/namespaces/app/securitypolicies/login/status"));
    assert!(fake.requests().iter().any(|r| r.method == Method::PUT
        && r.path
            == "/apis/gatekit.io/v1alpha1/namespaces/infra/securityoverrides/platform/status"));

    let status = status_json::<SecurityPolicy>(&fake, Some("app"), "login");
    let own = own_ancestor(&status);
    let accepted = condition(&own["conditions"], "Accepted");
    assert_eq!(accepted["status"], "False", "{status}");
    assert_eq!(accepted["reason"], "Unsupported");
    assert!(
        accepted["message"].as_str().unwrap().contains("oidc"),
        "{status}"
    );

    let status = status_json::<SecurityOverride>(&fake, Some("infra"), "platform");
    let own = own_ancestor(&status);
    assert_eq!(own["ancestorRef"]["kind"], "Gateway", "{status}");
    let accepted = condition(&own["conditions"], "Accepted");
    assert_eq!(accepted["status"], "False", "{status}");
    assert_eq!(accepted["reason"], "Invalid");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("Secret infra/missing not found"),
        "{status}"
    );
}
