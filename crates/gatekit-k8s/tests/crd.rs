//! The committed BackendPolicy CRD equals what the Rust type generates.

use std::path::PathBuf;

#[test]
fn committed_backend_policy_crd_is_current() {
    let generated = gatekit_k8s::types::policy::crd_yaml();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/crds/gatekit.io_backendpolicies.yaml");
    if std::env::var_os("GATEKIT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale; regenerate with GATEKIT_BLESS=1 cargo test -p gatekit-k8s --test crd",
        path.display()
    );
    // The CRD is what it claims to be.
    assert!(generated.contains("name: backendpolicies.gatekit.io"));
    assert!(generated.contains("scope: Namespaced"));
    assert!(generated.contains("v1alpha1"));
    assert!(generated.contains("weighted-round-robin"));
}
