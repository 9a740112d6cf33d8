//! The Kubernetes provider against the in-process API server: an invalid policy is
//! treated like an object that does not fit its type (skipped, the cluster's last error
//! names it, a previous valid version keeps serving), never translated.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use gatekit_k8s::{ClusterSpec, Provider, ProviderSettings};
use gatekit_k8s_fake::{FakeApiServer, ResourceType};
use serde_json::json;

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
