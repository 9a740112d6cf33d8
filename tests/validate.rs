//! `gatekit validate` on broken references: readable output naming the resource, the
//! condition and the reason, and a failing verdict (exit 1 in the binary).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use gatekit_bin::TranslateOptions;

fn validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    let mut out = Vec::new();
    let ok = gatekit_bin::validate(
        &[PathBuf::from(dir.path())],
        &TranslateOptions::default(),
        &mut out,
    );
    (ok, String::from_utf8(out).unwrap())
}

const BASE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: infra }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 8080, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: app }
spec:
  ports: [{ name: http, port: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: other }
spec:
  ports: [{ name: http, port: 80 }]
"#;

fn with_route(route: &str) -> String {
    format!("{BASE}---\n{route}")
}

#[test]
fn valid_manifests_pass() {
    let (ok, out) = validate(&with_route(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: app }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
"#,
    ));
    assert!(ok, "{out}");
    assert!(out.contains("✓ HTTPRoute app/r"), "{out}");
    assert!(out.contains("ResolvedRefs=True"), "{out}");
}

#[test]
fn a_missing_service_is_reported_and_fails() {
    let (ok, out) = validate(&with_route(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: app }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
  rules: [{ backendRefs: [{ name: nope, port: 80 }] }]
"#,
    ));
    assert!(!ok, "{out}");
    assert!(out.contains("✗ HTTPRoute app/r"), "{out}");
    assert!(
        out.contains("ResolvedRefs=False (BackendNotFound)"),
        "{out}"
    );
    assert!(out.contains("nope"), "{out}");
}

#[test]
fn a_cross_namespace_backend_without_reference_grant_is_reported_and_fails() {
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: app }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
  rules: [{ backendRefs: [{ name: db, namespace: other, port: 80 }] }]
"#;
    let (ok, out) = validate(&with_route(route));
    assert!(!ok, "{out}");
    assert!(
        out.contains("ResolvedRefs=False (RefNotPermitted)"),
        "{out}"
    );

    // With the grant it passes.
    let grant = r#"---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: allow-app, namespace: other }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app }]
  to: [{ group: "", kind: Service }]
"#;
    let (ok, out) = validate(&format!("{}{grant}", with_route(route)));
    assert!(ok, "{out}");
}

#[test]
fn an_unknown_listener_section_name_is_reported_and_fails() {
    let (ok, out) = validate(&with_route(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: app }
spec:
  parentRefs: [{ name: gw, namespace: infra, sectionName: https }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
"#,
    ));
    assert!(!ok, "{out}");
    assert!(
        out.contains("parent Gateway infra/gw sectionName=https"),
        "{out}"
    );
    assert!(out.contains("Accepted=False (NoMatchingParent)"), "{out}");
}

#[test]
fn an_unparsable_file_is_named_with_document_and_field() {
    let (ok, out) = validate(&with_route(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: app }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
  rules: [{ backendRefs: [{ name: web, port: eighty }] }]
"#,
    ));
    assert!(!ok);
    assert!(
        out.contains("all.yaml (document 3): HTTPRoute app/r: spec.rules"),
        "{out}"
    );
}

#[test]
fn a_backend_that_asks_for_tls_is_reported_with_file_resource_and_field() {
    let tls_service = r#"---
apiVersion: v1
kind: Service
metadata: { name: secure, namespace: app }
spec:
  ports: [{ name: https, port: 443, appProtocol: https }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: app }
spec:
  parentRefs: [{ name: gw, namespace: infra }]
  rules: [{ backendRefs: [{ name: web, port: 80 }, { name: secure, port: 443 }] }]
"#;
    let (ok, out) = validate(&format!("{BASE}{tls_service}"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("ResolvedRefs=False (UnsupportedProtocol)"),
        "{out}"
    );
    // The file and document, the route and the field of the refused reference.
    assert!(
        out.contains("all.yaml (document 4): route app/r: spec.rules[0].backendRefs[1]:"),
        "{out}"
    );
    assert!(
        out.contains(r#"Service app/secure port 443 has appProtocol "https""#),
        "{out}"
    );
}

#[test]
fn an_invalid_traffic_policy_is_reported_with_file_resource_and_field() {
    let (ok, out) = validate(&with_route(
        r#"apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: limits, namespace: app }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: r }]
  rateLimit:
    rules:
    - limit: { requests: 0, unit: Minute }
"#,
    ));
    assert!(!ok, "{out}");
    assert!(out.contains("all.yaml"), "{out}");
    assert!(out.contains("TrafficPolicy"), "{out}");
    assert!(out.contains("app/limits"), "{out}");
    assert!(
        out.contains("spec.rateLimit.rules[0].limit.requests"),
        "{out}"
    );
}

/// `gatekit validate --config` translates as `gatekit run` would with those settings: a
/// Global rate limit says it runs per replica only when the settings name no Redis.
#[test]
fn validate_with_settings_knows_whether_global_limits_have_redis() {
    let yaml = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: edge
  listeners: [{ name: http, port: 8080, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  ports: [{ name: http, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - backendRefs: [{ name: web, port: 80 }]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: global, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }]
  rateLimit:
    type: Global
    global:
      rules:
      - limit: { requests: 5, unit: Minute }
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    let check = |settings: &str| {
        let settings = gatekit_bin::Settings::from_yaml(settings, "gatekit.yaml").unwrap();
        let mut out = Vec::new();
        let ok = gatekit_bin::validate(
            &[PathBuf::from(dir.path())],
            &settings.translate_options(),
            &mut out,
        );
        (ok, String::from_utf8(out).unwrap())
    };
    let (ok, out) = check("gatewayClassName: edge");
    assert!(ok, "{out}");
    assert!(out.contains("no Redis configured"), "{out}");
    let (ok, out) = check("gatewayClassName: edge\nredis: { url: redis://127.0.0.1:6379 }");
    assert!(ok, "{out}");
    assert!(!out.contains("no Redis configured"), "{out}");
}

#[test]
fn listener_sets_are_shown_and_a_refused_one_fails() {
    let listener_set = |ns: &str| {
        format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{ name: ls, namespace: {ns} }}
spec:
  parentRef: {{ name: gw, namespace: infra }}
  listeners: [{{ name: extra, port: 8080, protocol: HTTP, hostname: {ns}.example.com }}]
"#
        )
    };
    let route = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: app }
spec:
  parentRefs: [{ kind: ListenerSet, name: ls, sectionName: extra }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
"#;
    let allowing = BASE.replace(
        "gatewayClassName: gatekit\n",
        "gatewayClassName: gatekit\n  allowedListeners: { namespaces: { from: All } }\n",
    );
    let (ok, out) = validate(&format!("{allowing}{}{route}", listener_set("app")));
    assert!(ok, "{out}");
    assert!(out.contains("✓ ListenerSet app/ls"), "{out}");
    assert!(out.contains("attachedListenerSets: 1"), "{out}");
    assert!(out.contains("listener extra (1 routes attached)"), "{out}");
    assert!(
        out.contains("parent ListenerSet app/ls sectionName=extra:"),
        "{out}"
    );

    // The Gateway allows no ListenerSet by default.
    let (ok, out) = validate(&format!("{BASE}{}{route}", listener_set("app")));
    assert!(!ok, "{out}");
    assert!(out.contains("✗ ListenerSet app/ls"), "{out}");
    assert!(
        out.contains(
            "Accepted=False (NotAllowed): Gateway infra/gw does not allow ListenerSets from namespace app (spec.allowedListeners)"
        ),
        "{out}"
    );
    assert!(out.contains("attachedListenerSets: 0"), "{out}");
}
