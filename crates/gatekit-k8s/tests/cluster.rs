//! Cluster specs against the in-process API server: every way of reaching and trusting
//! a cluster yields a working client, and a wrong CA or token fails clearly.
#![allow(clippy::unwrap_used, missing_docs)]

use base64::Engine;
use gatekit_k8s::ClusterSpec;
use gatekit_k8s_fake::FakeApiServer;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ListParams;

async fn services(spec: &ClusterSpec) -> Result<usize, String> {
    let client = spec.client().await.map_err(|e| e.to_string())?;
    let api: Api<Service> = Api::all(client);
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        api.list(&ListParams::default()),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map(|l| l.items.len())
    .map_err(|e| e.to_string())
}

fn one_service(fake: &FakeApiServer) {
    fake.apply_json(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 80}]}
    }));
}

#[tokio::test]
async fn ca_data_ca_file_and_token_reach_a_tls_cluster() {
    let fake = FakeApiServer::builder()
        .tls(true)
        .token("s3cret")
        .start()
        .await;
    one_service(&fake);
    let mut spec = ClusterSpec::new("east", fake.url());
    spec.ca_data = fake.ca_pem();
    spec.token = Some("s3cret".to_owned());
    assert_eq!(services(&spec).await, Ok(1));

    // The same through files (the token file is how projected tokens are mounted).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), fake.ca_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("token"), "s3cret").unwrap();
    let mut files = ClusterSpec::new("east", fake.url());
    files.ca_file = Some(dir.path().join("ca.crt"));
    files.token_file = Some(dir.path().join("token"));
    assert_eq!(services(&files).await, Ok(1));

    // A wrong token is refused by the server; no CA at all fails the handshake.
    spec.token = Some("wrong".to_owned());
    let e = services(&spec).await.unwrap_err();
    assert!(e.contains("401") || e.contains("Unauthorized"), "{e}");
    let mut untrusted = ClusterSpec::new("east", fake.url());
    untrusted.token = Some("s3cret".to_owned());
    assert!(services(&untrusted).await.is_err());
    // ...unless verification is explicitly off.
    untrusted.insecure_skip_verify = true;
    assert_eq!(services(&untrusted).await, Ok(1));
}

#[tokio::test]
async fn kubeconfig_and_context_reach_the_cluster() {
    let good = FakeApiServer::builder()
        .tls(true)
        .token("t-good")
        .start()
        .await;
    let other = FakeApiServer::builder()
        .tls(true)
        .token("t-other")
        .start()
        .await;
    one_service(&good);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kubeconfig = format!(
        r#"apiVersion: v1
kind: Config
current-context: other
clusters:
- name: good
  cluster: {{ server: "{}", certificate-authority-data: "{}" }}
- name: other
  cluster: {{ server: "{}", certificate-authority-data: "{}" }}
users:
- name: good
  user: {{ token: t-good }}
- name: other
  user: {{ token: t-other }}
contexts:
- name: good
  context: {{ cluster: good, user: good }}
- name: other
  context: {{ cluster: other, user: other }}
"#,
        good.url(),
        b64(&good.ca_pem().unwrap()),
        other.url(),
        b64(&other.ca_pem().unwrap()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let mut spec: ClusterSpec = serde_norway::from_str(&format!(
        "name: k\nkubeconfig: {}\ncontext: good\n",
        path.display()
    ))
    .unwrap();
    assert_eq!(services(&spec).await, Ok(1), "the named context");
    spec.context = None;
    assert_eq!(
        services(&spec).await,
        Ok(0),
        "the current context: the other cluster"
    );
    spec.context = Some("missing".to_owned());
    let e = services(&spec).await.unwrap_err();
    assert!(e.contains("cluster k") && e.contains("kubeconfig"), "{e}");
}
