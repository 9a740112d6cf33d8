//! The committed CRDs equal what the Rust types generate.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

/// Compares (or, with `GATEKIT_BLESS` set, rewrites) `deploy/crds/<file>`.
fn check_committed(file: &str, generated: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/crds")
        .join(file);
    if std::env::var_os("GATEKIT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale; regenerate with GATEKIT_BLESS=1 cargo test -p gatekit-k8s --test crd",
        path.display()
    );
}

#[test]
fn committed_backend_policy_crd_is_current() {
    let generated = gatekit_k8s::types::policy::crd_yaml();
    check_committed("gatekit.io_backendpolicies.yaml", &generated);
    // The CRD is what it claims to be.
    assert!(generated.contains("name: backendpolicies.gatekit.io"));
    assert!(generated.contains("scope: Namespaced"));
    assert!(generated.contains("v1alpha1"));
    assert!(generated.contains("weighted-round-robin"));
    assert!(generated.contains("circuitBreaker:"));
    assert!(generated.contains("minRetryRate:"));
    assert!(generated.contains("idleTimeout:"));
}

#[test]
fn committed_traffic_policy_crd_is_current() {
    let generated = gatekit_k8s::types::traffic::crd_yaml();
    check_committed("gatekit.io_trafficpolicies.yaml", &generated);
    assert!(generated.contains("name: trafficpolicies.gatekit.io"));
    assert!(generated.contains("scope: Namespaced"));
    assert!(generated.contains("- gktp"));
    assert!(generated.contains("retriable-status-codes"));
    assert!(generated.contains("resource-exhausted"));
    assert!(generated.contains("clientIP:"));
    // Byte sizes take an integer or a quantity string.
    assert!(generated.contains("x-kubernetes-int-or-string: true"));
}

#[test]
fn committed_security_override_crd_is_current() {
    let generated = gatekit_k8s::types::security::crd_yaml();
    check_committed("gatekit.io_securityoverrides.yaml", &generated);
    assert!(generated.contains("name: securityoverrides.gatekit.io"));
    assert!(generated.contains("scope: Namespaced"));
    assert!(generated.contains("- gkso"));
    assert!(generated.contains("apiKeyAuth:"));
    assert!(generated.contains("clientCIDRs:"));
}
