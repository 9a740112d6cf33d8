//! The Kubernetes provider against the in-process API server: an invalid policy is
//! treated like an object that does not fit its type (skipped, the cluster's last error
//! names it, a previous valid version keeps serving), never translated.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use gatekit_k8s::{ClusterSpec, Provider, ProviderSettings};
use gatekit_k8s_fake::{FakeApiServer, ResourceType};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(10);

fn traffic_policy(name: &str, requests: u64) -> serde_json::Value {
    json!({
        "apiVersion": "gatekit.io/v1alpha1", "kind": "TrafficPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "targetRefs": [{"kind": "Gateway", "name": "gw"}],
            "rateLimit": {"rules": [{"limit": {"requests": requests, "unit": "Second"}}]}
        }
    })
}

/// The requests of each TrafficPolicy the provider hands out, by name.
fn served(provider: &Provider) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = provider
        .resources()
        .traffic_policies
        .iter()
        .map(|p| {
            let rules = &p.spec.rate_limit.as_ref().unwrap().rules;
            (p.metadata.name.clone().unwrap(), rules[0].limit.requests)
        })
        .collect();
    out.sort();
    out
}

/// Waits until `f` holds, taking the provider's change batches meanwhile.
async fn until(provider: &Provider, what: &str, f: impl Fn(&Provider) -> bool) {
    tokio::time::timeout(WITHIN, async {
        while !f(provider) {
            provider.changed().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn last_error(provider: &Provider) -> String {
    provider.clusters()[0]
        .last_error
        .clone()
        .unwrap_or_default()
}

#[tokio::test]
async fn invalid_policies_are_skipped_and_the_last_valid_version_keeps_serving() {
    let fake = FakeApiServer::builder()
        .resource(ResourceType::new(
            "gatekit.io",
            "v1alpha1",
            "trafficpolicies",
            "TrafficPolicy",
            true,
            true,
        ))
        .start()
        .await;
    fake.apply_json(traffic_policy("good", 5));
    fake.apply_json(traffic_policy("bad", 0));
    let mut settings = ProviderSettings::new(vec![ClusterSpec::new("local", fake.url())]);
    settings.backoff_min = Some(Duration::from_millis(20));
    settings.backoff_max = Some(Duration::from_millis(200));
    let provider = Provider::start(&settings).await.unwrap();
    tokio::time::timeout(WITHIN, provider.synced())
        .await
        .unwrap();

    assert_eq!(served(&provider), [("good".to_owned(), 5)]);
    let error = last_error(&provider);
    assert!(
        error.contains("TrafficPolicy default/bad")
            && error.contains("spec.rateLimit.rules[0].limit.requests"),
        "{error}"
    );

    // A valid policy turned invalid: its last valid version keeps serving.
    fake.apply_json(traffic_policy("good", 0));
    until(&provider, "the invalid update to be reported", |p| {
        last_error(p).contains("TrafficPolicy default/good")
    })
    .await;
    assert_eq!(served(&provider), [("good".to_owned(), 5)]);

    // Fixed: served.
    fake.apply_json(traffic_policy("bad", 7));
    until(&provider, "the fixed policy", |p| served(p).len() == 2).await;
    assert_eq!(
        served(&provider),
        [("bad".to_owned(), 7), ("good".to_owned(), 5)]
    );
}

fn backend_traffic_policy(name: &str, group: &str) -> serde_json::Value {
    json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "BackendTrafficPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "targetRefs": [{"group": group, "kind": "HTTPRoute", "name": "web"}],
            "timeout": {"http": {"requestTimeout": "10s"}}
        }
    })
}

fn served_btps(provider: &Provider) -> Vec<String> {
    let mut out: Vec<String> = provider
        .resources()
        .backend_traffic_policies
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn backend_traffic_policies_are_read_and_invalid_ones_skipped() {
    let fake = FakeApiServer::builder()
        .resource(ResourceType::new(
            "gateway.envoyproxy.io",
            "v1alpha1",
            "backendtrafficpolicies",
            "BackendTrafficPolicy",
            true,
            true,
        ))
        .start()
        .await;
    fake.apply_json(backend_traffic_policy("good", "gateway.networking.k8s.io"));
    fake.apply_json(backend_traffic_policy("bad", "example.com"));
    let mut settings = ProviderSettings::new(vec![ClusterSpec::new("local", fake.url())]);
    settings.backoff_min = Some(Duration::from_millis(20));
    settings.backoff_max = Some(Duration::from_millis(200));
    let provider = Provider::start(&settings).await.unwrap();
    tokio::time::timeout(WITHIN, provider.synced())
        .await
        .unwrap();

    assert_eq!(served_btps(&provider), ["good"]);
    let error = last_error(&provider);
    assert!(
        error.contains("BackendTrafficPolicy default/bad")
            && error.contains("spec.targetRefs[0].group"),
        "{error}"
    );
    let policy = &provider.resources().backend_traffic_policies[0];
    let timeout = policy.spec.timeout.as_ref().unwrap();
    assert!(timeout.http.as_ref().unwrap().request_timeout.is_some());

    // Created later: served too.
    fake.apply_json(backend_traffic_policy("later", "gateway.networking.k8s.io"));
    until(&provider, "the new policy", |p| served_btps(p).len() == 2).await;
    assert_eq!(served_btps(&provider), ["good", "later"]);
}

fn route_with_session(name: &str, session: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
            "backendRefs": [{"name": "web", "port": 80}],
            "sessionPersistence": session,
        }]}
    })
}

/// The watcher runs the same raw pre-pass as the manifest loader: a rule's Gateway API
/// v1.7 `sessionPersistence` is read (not dropped), an invalid one skips the route with
/// the field named.
#[tokio::test]
async fn http_route_rules_v1_7_session_persistence_is_read_or_refused_by_name() {
    let fake = FakeApiServer::start().await;
    fake.apply_json(route_with_session(
        "good",
        json!({"type": "Header", "header": {"name": "X-Sticky"}}),
    ));
    fake.apply_json(route_with_session(
        "bad",
        json!({"cookie": {"name": "c", "path": "/api"}}),
    ));
    let mut settings = ProviderSettings::new(vec![ClusterSpec::new("local", fake.url())]);
    settings.backoff_min = Some(Duration::from_millis(20));
    settings.backoff_max = Some(Duration::from_millis(200));
    let provider = Provider::start(&settings).await.unwrap();
    tokio::time::timeout(WITHIN, provider.synced())
        .await
        .unwrap();

    let resources = provider.resources();
    let names: Vec<_> = resources
        .http_routes
        .iter()
        .map(|r| r.metadata.name().to_owned())
        .collect();
    assert_eq!(names, ["good"]);
    let s = resources.http_routes[0].spec.rules.as_ref().unwrap()[0]
        .session_persistence
        .as_ref()
        .unwrap();
    assert_eq!(s.session_name.as_deref(), Some("X-Sticky"));
    let error = last_error(&provider);
    assert!(
        error.contains("HTTPRoute default/bad")
            && error.contains("spec.rules[0].sessionPersistence.cookie.path"),
        "{error}"
    );
}

/// One step of [`kept_resources_follow_random_changes_in_two_clusters`]: an object in
/// one of a few namespaces and names, applied (with a random variant) or deleted.
fn random_object(rng: &mut u64, port: u16) -> (Value, bool) {
    let mut next = |n: u64| {
        *rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (*rng >> 33) % n
    };
    let ns = ["shop", "team"][next(2) as usize];
    let svc = format!("s{}", next(3));
    let name = format!("o{}", next(3));
    let object = match next(5) {
        0 | 1 => json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "gw", "namespace": "shop"}],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": format!("/{}", next(4))}}],
                    "backendRefs": [{"name": svc, "port": 80}]
                }]
            }
        }),
        2 => json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": svc, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8000 + next(3)}]}
        }),
        // Slices move between Services (their label changes) and change endpoints.
        3 => json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": name, "namespace": ns,
                "labels": {"kubernetes.io/service-name": svc}
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [format!("127.0.0.{}", 1 + next(5))]}]
        }),
        _ => json!({
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "team"}],
                "to": [{"group": "", "kind": "Service"}]
            }
        }),
    };
    (object, next(4) == 0)
}

fn delete_json(fake: &FakeApiServer, object: &Value) {
    use gatekit_k8s::types::{EndpointSlice, HttpRoute, ReferenceGrant, Service};
    let ns = object["metadata"]["namespace"].as_str();
    let name = object["metadata"]["name"].as_str().unwrap();
    match object["kind"].as_str().unwrap() {
        "HTTPRoute" => fake.delete::<HttpRoute>(ns, name),
        "Service" => fake.delete::<Service>(ns, name),
        "EndpointSlice" => fake.delete::<EndpointSlice>(ns, name),
        _ => fake.delete::<ReferenceGrant>(ns, name),
    };
}

/// The changes the provider reports name every object whose merged view changed: a
/// set kept with [`Provider::update`] from them equals a fresh `resources()` after
/// every batch (when no later event is pending), and an incremental translation from
/// them equals a full one — over random applies and deletes of routes, Services,
/// EndpointSlices (moving between Services) and grants in two config+endpoints
/// clusters, where the first cluster's objects win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_resources_follow_random_changes_in_two_clusters() {
    use gatekit_k8s::{TranslateOptions, Translator, translate};
    let fakes = [FakeApiServer::start().await, FakeApiServer::start().await];
    fakes[0].apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "shop"},
        "spec": {"gatewayClassName": "gatekit", "listeners": [{
            "name": "http", "port": 8080, "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "All"}}
        }]}
    }));
    let spec = |i: usize| {
        let mut c = ClusterSpec::new(format!("c{i}"), fakes[i].url());
        c.roles = vec![gatekit_k8s::Role::Config, gatekit_k8s::Role::Endpoints];
        c
    };
    let mut settings = ProviderSettings::new(vec![spec(0), spec(1)]);
    settings.backoff_min = Some(Duration::from_millis(20));
    settings.backoff_max = Some(Duration::from_millis(200));
    let provider = Provider::start(&settings).await.unwrap();
    tokio::time::timeout(WITHIN, provider.synced())
        .await
        .unwrap();
    while provider.take_changes().is_some() {}
    let mut kept = provider.resources();
    let mut translator = Translator::new(TranslateOptions::default());
    translator.translate(&kept, None);

    let (mut rng, mut checked, mut incremental) = (0x5eed_u64, 0, 0);
    for round in 0..40 {
        for _ in 0..1 + round % 4 {
            let cluster = usize::from(rng & 4 == 0);
            let (object, delete) = random_object(&mut rng, 9000);
            if delete {
                delete_json(&fakes[cluster], &object);
            } else {
                fakes[cluster].apply_json(object);
            }
        }
        // A marker seen in the kept set means every earlier event was taken.
        let marker = format!("m{round}");
        fakes[1].apply_json(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": marker}
        }));
        tokio::time::timeout(WITHIN, async {
            loop {
                let changes = provider.changed().await;
                match &changes.objects {
                    Some(objects) => {
                        provider.update(&mut kept, objects, &changes.services);
                        incremental += 1;
                    }
                    None => kept = provider.resources(),
                }
                let fresh = provider.resources();
                if provider.settled() {
                    checked += 1;
                    assert_eq!(
                        format!("{kept:?}"),
                        format!("{fresh:?}"),
                        "round {round}: the kept set missed a change ({changes:?})"
                    );
                }
                let t = translator.translate(&kept, changes.objects.as_ref());
                assert_eq!(
                    format!("{t:?}"),
                    format!("{:?}", translate(&kept, translator.options())),
                    "round {round}: incremental translation differs ({changes:?})"
                );
                let seen = kept
                    .namespaces
                    .iter()
                    .any(|n| n.metadata.name.as_deref() == Some(marker.as_str()));
                if seen {
                    break;
                }
            }
        })
        .await
        .unwrap();
    }
    assert!(
        checked >= 20 && incremental >= 40,
        "{checked} {incremental}"
    );
}

/// What translation reads of a Service and its EndpointSlices (kept in their compact
/// forms) reaches the upstream alike from a file and from the provider: the port's
/// `appProtocol` and numeric `targetPort` (a slice without ports), the slice port by
/// name and protocol, each endpoint's conditions, zone and hostname, an address that is
/// not an IP reported with its field, and, from the provider, the cluster.
#[tokio::test]
async fn service_and_slice_fields_reach_the_upstream_from_files_and_from_the_provider() {
    use gatekit_core::EndpointState;
    use gatekit_k8s::translate::AppProtocol;
    use gatekit_k8s::{ResourceSet, TranslateOptions, translate};

    let objects = [
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {"gatewayClassName": "gatekit",
                     "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}],
                     "rules": [{"backendRefs": [{"name": "web", "port": 80},
                                                {"name": "bare", "port": 81}]}]}
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "grpc", "port": 80, "targetPort": 9000, "appProtocol": "kubernetes.io/h2c"},
                {"name": "grpc", "port": 80, "protocol": "UDP"}
            ]}
        }),
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-a", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "grpc", "port": 9001, "protocol": "UDP"},
                      {"name": "grpc", "port": 9000, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "zone": "z1", "hostname": "web-0", "nodeName": "n1",
                 "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["web-2.example"]}
            ]
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "bare", "namespace": "default"},
            "spec": {"ports": [{"port": 81, "targetPort": 7000}]}
        }),
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "bare-a", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "bare"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.1.1"]}]
        }),
    ];
    // (address, state, zone, hostname, cluster) of each endpoint, with the protocol.
    let upstreams = |set: &ResourceSet| {
        let t = translate(set, &TranslateOptions::default());
        let web = &t.upstreams()["default/web:80"];
        let bare = &t.upstreams()["default/bare:81"];
        let show = |u: &gatekit_k8s::translate::UpstreamSpec| {
            let endpoints: Vec<_> = u
                .endpoints()
                .iter()
                .map(|e| {
                    (
                        e.addr().to_string(),
                        e.state(),
                        e.zone().map(str::to_owned),
                        e.hostname().map(str::to_owned),
                        e.cluster().map(str::to_owned),
                    )
                })
                .collect();
            (u.app_protocol(), endpoints)
        };
        let errors: Vec<String> = t.errors().iter().map(ToString::to_string).collect();
        (show(web), show(bare), errors)
    };
    let expect = |cluster: Option<&str>| {
        let c = cluster.map(str::to_owned);
        (
            (
                AppProtocol::H2c,
                vec![
                    (
                        "10.0.0.1:9000".to_owned(),
                        EndpointState::Terminating,
                        Some("z1".to_owned()),
                        Some("web-0".to_owned()),
                        c.clone(),
                    ),
                    (
                        "10.0.0.2:9000".to_owned(),
                        EndpointState::NotReady,
                        None,
                        None,
                        c.clone(),
                    ),
                ],
            ),
            (
                AppProtocol::Http1,
                vec![(
                    "10.0.1.1:7000".to_owned(),
                    EndpointState::Ready,
                    None,
                    None,
                    c,
                )],
            ),
        )
    };

    let docs: String = objects
        .iter()
        .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
        .collect();
    let (from_file, _) = ResourceSet::from_documents([("all.yaml", docs.as_str())]).unwrap();
    let (web, bare, errors) = upstreams(&from_file);
    assert_eq!((web, bare), expect(None));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("endpoints[2].addresses[0]") && e.contains("\"web-2.example\"")),
        "{errors:?}"
    );

    let fake = FakeApiServer::start().await;
    for o in &objects {
        fake.apply_json(o.clone());
    }
    let mut spec = ClusterSpec::new("east", fake.url());
    spec.roles = vec![gatekit_k8s::Role::Config, gatekit_k8s::Role::Endpoints];
    let provider = Provider::start(&ProviderSettings::new(vec![spec]))
        .await
        .unwrap();
    tokio::time::timeout(WITHIN, provider.synced())
        .await
        .unwrap();
    let (web, bare, errors) = upstreams(&provider.resources());
    assert_eq!((web, bare), expect(Some("east")));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("endpoints[2].addresses[0]")),
        "{errors:?}"
    );
    // The provider's own endpoint computation (EndpointSlice-only changes) agrees.
    let (endpoints, _) = provider.service_endpoints("default", "web", 80, false);
    let cluster: Vec<_> = endpoints
        .iter()
        .map(|e| (e.addr().port(), e.cluster()))
        .collect();
    assert_eq!(cluster, [(9000, Some("east")), (9000, Some("east"))]);
}
