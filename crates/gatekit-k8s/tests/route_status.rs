//! HTTPRoute status (`status.parents[]`), asserted field by field against the Gateway
//! API spec (v1.5 `RouteParentStatus`, `RouteConditionType`/`RouteConditionReason`):
//! a valid route, each `Accepted=False` reason, each `ResolvedRefs=False` reason (with
//! the route still accepted), and `PartiallyInvalid`.
#![allow(clippy::unwrap_used)]

#[path = "support/status.rs"]
mod support;

use gatekit_k8s::status::ParentStatus;
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, translate};
use support::{Cond, conds};

/// Gateway `infra/gw`: listener `http` on 80 for `*.example.com`, routes from its own
/// namespace; Services `infra/svc` (port 80) and `infra/tls` (port 443, appProtocol
/// https); Service `other/svc`.
const BASE: &str = r#"
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
  - { name: http, port: 80, protocol: HTTP, hostname: "*.example.com", allowedRoutes: { namespaces: { from: Same } } }
---
apiVersion: v1
kind: Service
metadata: { name: svc, namespace: infra }
spec: { ports: [{ port: 80 }] }
---
apiVersion: v1
kind: Service
metadata: { name: tls, namespace: infra }
spec: { ports: [{ port: 443, appProtocol: https }] }
---
apiVersion: v1
kind: Service
metadata: { name: svc, namespace: other }
spec: { ports: [{ port: 80 }] }
"#;

/// Translates BASE plus an HTTPRoute `r` in `ns` (generation 4) with `spec`.
fn route(ns: &str, spec: &str) -> Translation {
    let yaml = format!(
        "{BASE}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{ name: r, namespace: {ns}, generation: 4 }}\nspec:\n{spec}"
    );
    let (set, _) = ResourceSet::from_documents([("fixture.yaml", yaml.as_str())])
        .unwrap_or_else(|e| panic!("{e:?}"));
    translate(&set, &TranslateOptions::default())
}

/// The one parent status of route `ns/r`.
fn parent(t: &Translation, ns: &str) -> ParentStatus {
    let s = t
        .status("HTTPRoute", Some(ns), "r")
        .unwrap_or_else(|| panic!("no status: {:#?}", t.statuses()));
    assert_eq!(s.generation(), Some(4));
    assert_eq!(s.parents().len(), 1, "{s:#?}");
    s.parents()[0].clone()
}

/// A condition of generation 4 (the route's).
fn c(type_: &str, ok: bool, reason: &str, message: &str) -> Cond {
    support::c(type_, ok, reason, message, 4)
}

fn resolved() -> Cond {
    c("ResolvedRefs", true, "ResolvedRefs", "")
}

fn accepted() -> Cond {
    c("Accepted", true, "Accepted", "")
}

const TO_SVC: &str = "  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]\n";

#[test]
fn a_valid_route_is_accepted_with_resolved_refs() {
    let t = route(
        "infra",
        &format!(
            "  parentRefs: [{{ name: gw, sectionName: http }}]\n  hostnames: [a.example.com]\n{TO_SVC}"
        ),
    );
    let p = parent(&t, "infra");
    assert_eq!(p.parent().namespace, "infra");
    assert_eq!(p.parent().name, "gw");
    assert_eq!(p.parent().section_name.as_deref(), Some("http"));
    assert_eq!(conds(p.conditions()), [accepted(), resolved()]);
}

#[test]
fn each_accepted_false_reason() {
    let cases: [(&str, String, Cond); 5] = [
        (
            "other",
            format!("  parentRefs: [{{ name: gw, namespace: infra }}]\n{TO_SVC}"),
            c(
                "Accepted",
                false,
                "NotAllowedByListeners",
                "no listener allows HTTPRoute from namespace other",
            ),
        ),
        (
            "infra",
            format!("  parentRefs: [{{ name: gw }}]\n  hostnames: [a.example.org]\n{TO_SVC}"),
            c(
                "Accepted",
                false,
                "NoMatchingListenerHostname",
                "no listener hostname intersects the route's hostnames",
            ),
        ),
        (
            "infra",
            format!("  parentRefs: [{{ name: gw, sectionName: https }}]\n{TO_SVC}"),
            c(
                "Accepted",
                false,
                "NoMatchingParent",
                "no listener matches the parentRef's sectionName/port",
            ),
        ),
        (
            "infra",
            format!("  parentRefs: [{{ name: gw, port: 8080 }}]\n{TO_SVC}"),
            c(
                "Accepted",
                false,
                "NoMatchingParent",
                "no listener matches the parentRef's sectionName/port",
            ),
        ),
        (
            "infra",
            "  parentRefs: [{ name: gw }]\n  rules:\n  - filters: [{ type: ExtensionRef, extensionRef: { group: x.io, kind: K, name: n } }]\n    backendRefs: [{ name: svc, port: 80 }]\n".to_owned(),
            c(
                "Accepted",
                false,
                "UnsupportedValue",
                "spec.rules[0].filters[0]: ExtensionRef filters are not supported",
            ),
        ),
    ];
    for (ns, spec, want) in cases {
        let t = route(ns, &spec);
        let p = parent(&t, ns);
        assert_eq!(conds(p.conditions()), [want, resolved()], "{spec}");
        assert!(
            t.listeners().iter().all(|port| port.routes().is_empty()),
            "a route not accepted serves nothing: {spec}"
        );
    }
}

#[test]
fn each_resolved_refs_false_reason_leaves_the_route_accepted() {
    let cases = [
        (
            "{ name: missing, port: 80 }",
            "BackendNotFound",
            "Service infra/missing not found",
        ),
        (
            "{ name: svc, port: 81 }",
            "BackendNotFound",
            "Service infra/svc has no port 81",
        ),
        (
            "{ name: svc }",
            "BackendNotFound",
            "backendRef to Service infra/svc has no port",
        ),
        (
            "{ group: example.com, kind: Bucket, name: b }",
            "InvalidKind",
            "backendRef kind example.com/Bucket is not supported (only core Services)",
        ),
        (
            "{ name: svc, namespace: other, port: 80 }",
            "RefNotPermitted",
            "backendRef to Service other/svc is not permitted by any ReferenceGrant in namespace other",
        ),
        (
            "{ name: tls, port: 443 }",
            "UnsupportedProtocol",
            "Service infra/tls port 443 has appProtocol \"https\", which gatekit does not speak to backends (served: none, http, h2c, kubernetes.io/h2c, grpc, kubernetes.io/ws; https and kubernetes.io/wss with a BackendTLSPolicy); a backend that asks for TLS is refused rather than sent cleartext",
        ),
    ];
    for (backend, reason, message) in cases {
        let t = route(
            "infra",
            &format!("  parentRefs: [{{ name: gw }}]\n  rules: [{{ backendRefs: [{backend}] }}]\n"),
        );
        let p = parent(&t, "infra");
        assert_eq!(
            conds(p.conditions()),
            [accepted(), c("ResolvedRefs", false, reason, message)],
            "{backend}"
        );
        // Accepted: the rule is served and answers 500 for the unresolved share.
        let routes = t.port(80).unwrap().routes();
        assert_eq!(routes.len(), 1, "{backend}");
    }
}

#[test]
fn a_dropped_rule_makes_the_route_partially_invalid() {
    let t = route(
        "infra",
        "  parentRefs: [{ name: gw }]\n  rules:\n  - matches: [{ path: { type: PathPrefix, value: /ok } }]\n    backendRefs: [{ name: svc, port: 80 }]\n  - matches: [{ path: { type: PathPrefix, value: /ext } }]\n    filters: [{ type: ExtensionRef, extensionRef: { group: x.io, kind: K, name: n } }]\n    backendRefs: [{ name: svc, port: 80 }]\n",
    );
    let p = parent(&t, "infra");
    assert_eq!(
        conds(p.conditions()),
        [
            accepted(),
            resolved(),
            c(
                "PartiallyInvalid",
                true,
                "UnsupportedValue",
                "Dropped Rule(s): spec.rules[1].filters[0]: ExtensionRef filters are not supported"
            ),
        ]
    );
}

#[test]
fn a_missing_gateway_is_no_matching_parent() {
    let t = route(
        "infra",
        &format!("  parentRefs: [{{ name: nope }}]\n{TO_SVC}"),
    );
    let p = parent(&t, "infra");
    assert_eq!(
        conds(p.conditions()),
        [
            c(
                "Accepted",
                false,
                "NoMatchingParent",
                "Gateway infra/nope not found"
            ),
            resolved()
        ]
    );
}
