//! The conformance feature list stays honest: every test a supported feature names
//! exists, `docs/conformance.md` is what the list generates, and the accepted
//! GatewayClass reports exactly the supported features, sorted.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::PathBuf;

use gatekit_k8s::features::{FEATURES, Level, markdown, supported_names};
use gatekit_k8s::{ResourceSet, TranslateOptions, translate};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `source` defines a function named `name` (`fn name(` or `fn name<`).
fn defines_fn(source: &str, name: &str) -> bool {
    let needle = format!("fn {name}");
    source.match_indices(&needle).any(|(i, _)| {
        let before_ok = i == 0
            || !source[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let after = source[i + needle.len()..].chars().next();
        before_ok && matches!(after, Some('(' | '<'))
    })
}

#[test]
fn every_supported_feature_names_tests_that_exist() {
    let mut missing = Vec::new();
    for f in FEATURES {
        if f.is_supported() && f.tests().is_empty() {
            missing.push(format!("{}: supported but names no test", f.name()));
        }
        for t in f.tests() {
            let Some((file, test)) = t.split_once("::") else {
                missing.push(format!("{}: {t:?} is not \"file::test_name\"", f.name()));
                continue;
            };
            match std::fs::read_to_string(root().join(file)) {
                Ok(source) if defines_fn(&source, test) => {}
                Ok(_) => missing.push(format!("{}: no `fn {test}` in {file}", f.name())),
                Err(e) => missing.push(format!("{}: cannot read {file}: {e}", f.name())),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "features name tests that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_test_check_sees_a_missing_fn() {
    assert!(defines_fn("async fn some_test() {}", "some_test"));
    assert!(defines_fn("fn g<T>() {}", "g"));
    assert!(!defines_fn("fn some_test_longer() {}", "some_test"));
    assert!(!defines_fn("fn other() { some_test() }", "some_test"));
}

#[test]
fn names_are_unique_and_unsupported_ones_say_why() {
    let mut seen = HashSet::new();
    for f in FEATURES {
        assert!(seen.insert(f.name()), "{} listed twice", f.name());
        assert_eq!(f.is_supported(), f.unsupported_reason().is_none());
        if let Some(reason) = f.unsupported_reason() {
            assert!(!reason.is_empty(), "{} says no reason", f.name());
        }
    }
    // Each resource's one core feature is its own name.
    for f in FEATURES.iter().filter(|f| f.level() == Level::Core) {
        assert_eq!(f.name(), f.resource());
    }
    for name in ["Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant"] {
        assert!(supported_names().contains(&name), "{name}");
    }
}

#[test]
fn committed_conformance_doc_is_current() {
    let path = root().join("docs/conformance.md");
    let generated = markdown();
    if std::env::var_os("GATEKIT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale; regenerate with GATEKIT_BLESS=1 cargo test -p gatekit-k8s --test features",
        path.display()
    );
    for f in FEATURES {
        assert!(committed.contains(&format!("| `{}` |", f.name())));
    }
}

#[test]
fn the_accepted_gateway_class_reports_the_supported_features_sorted() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: gatekit }
spec: { controllerName: gatekit.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: other }
spec: { controllerName: gatekit.io/gateway-controller }
"#;
    let (resources, _) = ResourceSet::from_documents([("c.yaml", yaml)]).unwrap();
    let t = translate(&resources, &TranslateOptions::default());
    let class = |name: &str| {
        t.statuses()
            .iter()
            .find(|s| s.resource().kind() == "GatewayClass" && s.resource().name() == name)
            .unwrap()
    };
    let features = class("gatekit").supported_features();
    assert_eq!(features, supported_names().as_slice());
    assert!(features.windows(2).all(|w| w[0] < w[1]), "{features:?}");
    assert!(features.contains(&"HTTPRouteQueryParamMatching"));
    assert!(features.contains(&"ListenerSet"));
    assert!(!features.contains(&"GatewayInfrastructurePropagation"));
    assert!(class("other").supported_features().is_empty());
}
