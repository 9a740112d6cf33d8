//! Secrets and ConfigMaps watched only by the names the configuration references,
//! against the in-process API server: what the provider asks the API server for (its
//! request log), what it holds (`resources()`), a reference added or removed at runtime,
//! a change adding a reference handed out together with the referenced Secret, and the
//! namespace watch that replaces more than 16 named watches in one namespace.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use gatekit_k8s::types::{Gateway, Secret};
use gatekit_k8s::{ClusterSpec, Provider, ProviderSettings};
use gatekit_k8s_fake::{FakeApiServer, ResourceType};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(10);

fn secret(ns: &str, name: &str, kind: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": kind,
        "stringData": {"tls.crt": "x", "tls.key": "y", "ca.crt": "z"}
    })
}

fn config_map(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"ca.crt": "z"}
    })
}

/// Gateway `infra/gw` with one HTTPS listener per certificate reference
/// (`namespace/name`, or a name in `infra`).
fn gateway(refs: &[&str]) -> Value {
    let listeners: Vec<Value> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let cert = match r.split_once('/') {
                Some((ns, name)) => json!({"name": name, "namespace": ns}),
                None => json!({"name": r}),
            };
            json!({
                "name": format!("l{i}"), "port": 443, "protocol": "HTTPS",
                "hostname": format!("h{i}.example"),
                "tls": {"certificateRefs": [cert]}
            })
        })
        .collect();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "infra"},
        "spec": {"gatewayClassName": "gatekit", "listeners": listeners}
    })
}

fn backend_tls_policy() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "api"}],
            "validation": {
                "hostname": "api.shop",
                "caCertificateRefs": [
                    {"group": "", "kind": "Secret", "name": "opaque-ca"},
                    {"group": "", "kind": "ConfigMap", "name": "api-ca"}
                ]
            }
        }
    })
}

async fn fake() -> FakeApiServer {
    FakeApiServer::builder()
        .resource(ResourceType::new(
            "gateway.networking.k8s.io",
            "v1",
            "backendtlspolicies",
            "BackendTLSPolicy",
            true,
            true,
        ))
        .start()
        .await
}

async fn start(fake: &FakeApiServer) -> Provider {
    let mut settings = ProviderSettings::new(vec![ClusterSpec::new("local", fake.url())]);
    settings.backoff_min = Some(Duration::from_millis(20));
    settings.backoff_max = Some(Duration::from_millis(200));
    let provider = Provider::start(&settings).await.unwrap();
    tokio::time::timeout(WITHIN, provider.synced())
        .await
        .unwrap();
    provider
}

/// `namespace/name` of every Secret the provider holds.
fn secrets(provider: &Provider) -> Vec<String> {
    let r = provider.resources();
    r.secrets
        .iter()
        .map(|s| {
            let m = &s.metadata;
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap(),
                m.name.as_deref().unwrap()
            )
        })
        .collect()
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

/// Waits until `fake` has `n` open watches on `plural` (watches end asynchronously
/// when the provider aborts them).
async fn watches(fake: &FakeApiServer, plural: &str, n: usize) {
    tokio::time::timeout(WITHIN, async {
        while fake.active_watches(plural) != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} watches on {plural}, not {n}",
            fake.active_watches(plural)
        )
    });
}

/// The (path, fieldSelector) of every request on `plural`.
fn requests(fake: &FakeApiServer, plural: &str) -> Vec<(String, Option<String>)> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.ends_with(&format!("/{plural}")))
        .map(|r| (r.path.clone(), r.param("fieldSelector").map(str::to_owned)))
        .collect()
}

/// Only the referenced Secrets (TLS and Opaque alike) and ConfigMaps are requested,
/// each by name in its namespace, and held; an unreferenced one never is. A reference
/// added later is watched and held; one removed leaves the store and its watch ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_referenced_secrets_and_config_maps_are_requested_and_held() {
    let fake = fake().await;
    fake.apply_json(gateway(&["pair"]));
    fake.apply_json(backend_tls_policy());
    fake.apply_json(secret("infra", "pair", "kubernetes.io/tls"));
    fake.apply_json(secret("infra", "other", "kubernetes.io/tls"));
    fake.apply_json(secret("shop", "opaque-ca", "Opaque"));
    fake.apply_json(config_map("shop", "api-ca"));
    fake.apply_json(config_map("shop", "unrelated"));
    let provider = start(&fake).await;

    assert_eq!(secrets(&provider), ["infra/pair", "shop/opaque-ca"]);
    let maps: Vec<_> = provider
        .resources()
        .config_maps
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(maps, ["api-ca"]);
    let mut asked = requests(&fake, "secrets");
    asked.extend(requests(&fake, "configmaps"));
    assert!(!asked.is_empty());
    for (path, selector) in &asked {
        let ok = matches!(
            (path.as_str(), selector.as_deref()),
            (
                "/api/v1/namespaces/infra/secrets",
                Some("metadata.name=pair")
            ) | (
                "/api/v1/namespaces/shop/secrets",
                Some("metadata.name=opaque-ca")
            ) | (
                "/api/v1/namespaces/shop/configmaps",
                Some("metadata.name=api-ca")
            )
        );
        assert!(ok, "unexpected request {path} {selector:?}");
    }
    watches(&fake, "secrets", 2).await;
    watches(&fake, "configmaps", 1).await;

    // A listener now references `other`: the batch that hands out the Gateway change
    // already holds the Secret (the change waited for the new watch's first list).
    fake.apply_json(gateway(&["pair", "other"]));
    let references_other = |p: &Provider| p.resources().gateways[0].spec.listeners.len() == 2;
    tokio::time::timeout(WITHIN, async {
        loop {
            provider.changed().await;
            if references_other(&provider) {
                break;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        secrets(&provider),
        ["infra/other", "infra/pair", "shop/opaque-ca"],
        "the Gateway change was handed out before its new Secret"
    );

    // `pair` is no longer referenced: removed from the store, its watch ended.
    fake.apply_json(gateway(&["other"]));
    until(&provider, "infra/pair to leave the store", |p| {
        secrets(p) == ["infra/other", "shop/opaque-ca"]
    })
    .await;
    watches(&fake, "secrets", 2).await;
    // Secrets nobody references, edited or created, are not taken in (a Namespace
    // applied after them marks when the provider has seen everything before it).
    fake.apply_json(secret("infra", "pair", "Opaque"));
    fake.apply_json(secret("infra", "unrelated", "Opaque"));
    fake.apply_json(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "marker"}}),
    );
    until(&provider, "the marker", |p| {
        p.resources()
            .namespaces
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("marker"))
    })
    .await;
    assert_eq!(secrets(&provider), ["infra/other", "shop/opaque-ca"]);
}

/// More than 16 referenced names in one namespace: one watch of the namespace (no
/// field selector) replaces the named watches, and objects not referenced are dropped
/// on receipt. Back to 16: named watches again, and the name no longer referenced
/// leaves the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_sixteen_names_one_namespace_watch_replaces_the_named_ones() {
    let fake = fake().await;
    let names: Vec<String> = (0..17).map(|i| format!("c{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for name in &names {
        fake.apply_json(secret("infra", name, "kubernetes.io/tls"));
    }
    fake.apply_json(secret("infra", "unreferenced", "kubernetes.io/tls"));
    fake.apply_json(gateway(&refs));
    let provider = start(&fake).await;

    let held = secrets(&provider);
    assert_eq!(held.len(), 17, "{held:?}");
    assert!(!held.contains(&"infra/unreferenced".to_owned()));
    watches(&fake, "secrets", 1).await;
    assert!(
        requests(&fake, "secrets")
            .iter()
            .any(
                |(path, selector)| path == "/api/v1/namespaces/infra/secrets" && selector.is_none()
            ),
        "no namespace watch: {:?}",
        requests(&fake, "secrets")
    );

    // A referenced Secret edited is seen through the namespace watch; the
    // unreferenced one still is not.
    fake.apply_json(secret("infra", "unreferenced", "Opaque"));
    let mut edited = secret("infra", "c03", "Opaque");
    edited["metadata"]["labels"] = json!({"edited": "yes"});
    fake.apply_json(edited);
    until(&provider, "the edited Secret", |p| {
        p.resources().secrets.iter().any(|s| {
            s.metadata.name.as_deref() == Some("c03")
                && s.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("edited"))
        })
    })
    .await;
    assert_eq!(secrets(&provider).len(), 17);

    // 16 names: one watch per name, the 17th Secret gone from the store.
    fake.clear_requests();
    fake.apply_json(gateway(&refs[..16]));
    until(&provider, "c16 to leave the store", |p| {
        secrets(p).len() == 16
    })
    .await;
    assert!(!secrets(&provider).contains(&"infra/c16".to_owned()));
    watches(&fake, "secrets", 16).await;
    assert!(
        requests(&fake, "secrets")
            .iter()
            .all(|(_, selector)| selector
                .as_deref()
                .is_some_and(|s| s.starts_with("metadata.name="))),
        "{:?}",
        requests(&fake, "secrets")
    );

    // 17 again (a new name): one namespace watch, which takes the new Secret.
    fake.apply_json(secret("infra", "c99", "kubernetes.io/tls"));
    let mut more = refs[..16].to_vec();
    more.push("c99");
    fake.apply_json(gateway(&more));
    until(&provider, "c99 in the store", |p| {
        secrets(p).contains(&"infra/c99".to_owned())
    })
    .await;
    watches(&fake, "secrets", 1).await;
    assert_eq!(secrets(&provider).len(), 17);
    assert!(fake.get::<Secret>(Some("infra"), "unreferenced").is_some());
    assert!(fake.get::<Gateway>(Some("infra"), "gw").is_some());
}

/// A reference into a namespace gatekit may not read (403, RBAC narrowed to some
/// namespaces) counts as a missing object: the replica still syncs, the cluster stays
/// connected, and the readable references are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_reference_is_missing_not_a_cluster_failure() {
    let fake = fake().await;
    fake.fail_next(
        Some(http::Method::GET),
        "/api/v1/namespaces/locked/secrets",
        usize::MAX,
        403,
        None,
    );
    fake.apply_json(secret("infra", "pair", "kubernetes.io/tls"));
    fake.apply_json(secret("locked", "pair", "kubernetes.io/tls"));
    fake.apply_json(gateway(&["pair", "locked/pair"]));
    let provider = start(&fake).await;
    assert_eq!(secrets(&provider), ["infra/pair"]);
    let cluster = &provider.clusters()[0];
    assert!(cluster.connected && cluster.synced, "{cluster:?}");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path == "/api/v1/namespaces/locked/secrets"),
        "the locked Secret was never asked for"
    );
}
