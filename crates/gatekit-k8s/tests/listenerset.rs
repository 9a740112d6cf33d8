//! ListenerSets (GEP-1713, Standard since Gateway API v1.5): attachment through the
//! Gateway's `spec.allowedListeners`, listener precedence and conflicts, routes attached
//! to a ListenerSet, certificates in the ListenerSet's namespace, and every status (the
//! ListenerSet's, its listeners', the Gateway's `attachedListenerSets`, the routes'
//! parents) asserted field by field for a valid ListenerSet and each invalid case the
//! GEP and the v1.5 conformance tests name.
#![allow(clippy::unwrap_used)]

#[path = "support/status.rs"]
mod support;

use gatekit_k8s::Translation;
use gatekit_k8s::status::ResourceStatus;
use support::{Cond, c, conds, run, secret};

/// Gateway `infra/gw` (generation 1) with one HTTP listener `web` on port 80 for
/// `gw.example.com`, and `allowedListeners` as given (YAML, or empty for none).
fn gateway(allowed: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 1 }}
spec:
  gatewayClassName: gatekit
  {allowed}
  listeners:
  - {{ name: web, port: 80, protocol: HTTP, hostname: gw.example.com }}
"#
    )
}

/// ListenerSet `ns/name` (generation 2, created at `created`) on `infra/gw`, with
/// listeners as given (YAML list items, indented by two).
fn listener_set(ns: &str, name: &str, created: &str, listeners: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{ name: {name}, namespace: {ns}, generation: 2, creationTimestamp: "{created}" }}
spec:
  parentRef: {{ name: gw, namespace: infra, kind: Gateway, group: gateway.networking.k8s.io }}
  listeners:
{listeners}
"#
    )
}

fn namespace(name: &str, labels: &str) -> String {
    format!(
        r#"
---
apiVersion: v1
kind: Namespace
metadata: {{ name: {name}, labels: {{ {labels} }} }}
"#
    )
}

const T1: &str = "2026-01-01T00:00:00Z";
const T2: &str = "2026-01-02T00:00:00Z";

/// One HTTP listener `name` on port 80 for `host`.
fn http(name: &str, host: &str) -> String {
    format!("  - {{ name: {name}, port: 80, protocol: HTTP, hostname: {host} }}\n")
}

/// A valid, programmed listener's conditions.
fn valid_listener(generation: i64) -> Vec<Cond> {
    vec![
        c("Accepted", true, "Accepted", "", generation),
        c("ResolvedRefs", true, "ResolvedRefs", "", generation),
        c("Programmed", true, "Programmed", "", generation),
        c("Conflicted", false, "NoConflicts", "", generation),
    ]
}

/// A ListenerSet listener that lost a conflict: not accepted, not programmed, conflicted,
/// each with the conflict's reason and message (conformance
/// `ListenerSetHostnameConflict` / `ListenerSetProtocolConflict`).
fn lost_listener(reason: &str, message: &str) -> Vec<Cond> {
    vec![
        c("Accepted", false, reason, message, 2),
        c("ResolvedRefs", true, "ResolvedRefs", "", 2),
        c("Programmed", false, reason, message, 2),
        c("Conflicted", true, reason, message, 2),
    ]
}

fn accepted_set() -> Vec<Cond> {
    vec![
        c("Accepted", true, "Accepted", "", 2),
        c("Programmed", true, "Programmed", "", 2),
    ]
}

fn status<'a>(t: &'a Translation, kind: &str, ns: &str, name: &str) -> &'a ResourceStatus {
    t.status(kind, Some(ns), name)
        .unwrap_or_else(|| panic!("no status for {kind} {ns}/{name}: {:#?}", t.statuses()))
}

/// Asserts one listener's whole status: supported kinds, attached routes, conditions.
fn assert_listener(s: &ResourceStatus, name: &str, attached: u32, expected: &[Cond]) {
    let l = s
        .listener(name)
        .unwrap_or_else(|| panic!("no listener {name}: {s:#?}"));
    assert_eq!(l.name(), name);
    assert_eq!(l.supported_kinds(), ["HTTPRoute", "GRPCRoute"], "{name}");
    assert_eq!(l.attached_routes(), attached, "{name}");
    assert_eq!(conds(l.conditions()), expected, "{name}");
}

/// The (hostname, ListenerSet) of every listener served on `port`.
fn served(t: &Translation, port: u16) -> Vec<(Option<String>, Option<String>)> {
    t.port(port)
        .map(|p| {
            p.listeners()
                .iter()
                .map(|l| {
                    (
                        l.hostname().map(str::to_owned),
                        l.listener_set().map(ToString::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn gw_served() -> (Option<String>, Option<String>) {
    (Some("gw.example.com".to_owned()), None)
}

fn ls_served(host: &str, ns: &str, name: &str) -> (Option<String>, Option<String>) {
    (
        Some(host.to_owned()),
        Some(format!("ListenerSet {ns}/{name}")),
    )
}

/// The Gateway's own status is unchanged by its ListenerSets (GEP-1713 "Gateway
/// Conditions"); only `attachedListenerSets` counts them.
fn assert_gateway(t: &Translation, attached: u32) {
    let gw = status(t, "Gateway", "infra", "gw");
    assert_eq!(
        conds(gw.conditions()),
        [
            c("Accepted", true, "Accepted", "", 1),
            c("Programmed", true, "Programmed", "", 1),
        ]
    );
    assert_eq!(
        gw.listeners().len(),
        1,
        "no ListenerSet listener in the Gateway's status"
    );
    assert_listener(gw, "web", 0, &valid_listener(1));
    assert_eq!(gw.attached_listener_sets(), Some(attached));
}

#[test]
fn allowed_from_same_attaches_a_listener_set_of_the_gateway_namespace_only() {
    let yaml = [
        gateway("allowedListeners: { namespaces: { from: Same } }"),
        listener_set("infra", "ls", T1, &http("extra", "extra.example.com")),
        listener_set("team-a", "ls", T1, &http("extra", "team-a.example.com")),
    ]
    .concat();
    let t = run(&yaml);

    let ls = status(&t, "ListenerSet", "infra", "ls");
    assert_eq!(ls.generation(), Some(2));
    assert_eq!(conds(ls.conditions()), accepted_set());
    assert_eq!(ls.listeners().len(), 1);
    assert_listener(ls, "extra", 0, &valid_listener(2));

    let other = status(&t, "ListenerSet", "team-a", "ls");
    let message = "Gateway infra/gw does not allow ListenerSets from namespace team-a (spec.allowedListeners)";
    assert_eq!(
        conds(other.conditions()),
        [
            c("Accepted", false, "NotAllowed", message, 2),
            c("Programmed", false, "NotAllowed", message, 2),
        ]
    );
    assert!(other.listeners().is_empty());
    assert!(
        t.errors().iter().any(|e| e
            .to_string()
            .contains("ListenerSet team-a/ls: Gateway infra/gw does not allow")),
        "{:?}",
        t.errors()
    );

    assert_gateway(&t, 1);
    assert_eq!(
        served(&t, 80),
        [gw_served(), ls_served("extra.example.com", "infra", "ls")]
    );
}

#[test]
fn allowed_from_all_attaches_a_listener_set_of_any_namespace() {
    let yaml = [
        gateway("allowedListeners: { namespaces: { from: All } }"),
        listener_set("team-a", "ls", T1, &http("extra", "team-a.example.com")),
    ]
    .concat();
    let t = run(&yaml);
    let ls = status(&t, "ListenerSet", "team-a", "ls");
    assert_eq!(conds(ls.conditions()), accepted_set());
    assert_listener(ls, "extra", 0, &valid_listener(2));
    assert_gateway(&t, 1);
    assert_eq!(
        served(&t, 80),
        [gw_served(), ls_served("team-a.example.com", "team-a", "ls")]
    );
}

#[test]
fn allowed_from_selector_attaches_listener_sets_of_matching_namespaces() {
    let yaml = [
        gateway(
            "allowedListeners: { namespaces: { from: Selector, selector: { matchLabels: { listeners: allowed } } } }",
        ),
        namespace("team-a", "listeners: allowed"),
        namespace("team-b", "listeners: other"),
        listener_set("team-a", "ls", T1, &http("extra", "team-a.example.com")),
        listener_set("team-b", "ls", T1, &http("extra", "team-b.example.com")),
    ]
    .concat();
    let t = run(&yaml);
    let a = status(&t, "ListenerSet", "team-a", "ls");
    assert_eq!(conds(a.conditions()), accepted_set());
    assert_listener(a, "extra", 0, &valid_listener(2));

    let b = status(&t, "ListenerSet", "team-b", "ls");
    let message = "Gateway infra/gw does not allow ListenerSets from namespace team-b (spec.allowedListeners)";
    assert_eq!(
        conds(b.conditions()),
        [
            c("Accepted", false, "NotAllowed", message, 2),
            c("Programmed", false, "NotAllowed", message, 2),
        ]
    );
    assert!(b.listeners().is_empty());
    assert_gateway(&t, 1);
    assert_eq!(
        served(&t, 80),
        [gw_served(), ls_served("team-a.example.com", "team-a", "ls")]
    );
}

#[test]
fn refused_by_default_and_with_from_none() {
    for allowed in ["", "allowedListeners: { namespaces: { from: None } }"] {
        let yaml = [
            gateway(allowed),
            listener_set("infra", "ls", T1, &http("extra", "extra.example.com")),
        ]
        .concat();
        let t = run(&yaml);
        let ls = status(&t, "ListenerSet", "infra", "ls");
        let message = "Gateway infra/gw does not allow ListenerSets from namespace infra (spec.allowedListeners)";
        assert_eq!(
            conds(ls.conditions()),
            [
                c("Accepted", false, "NotAllowed", message, 2),
                c("Programmed", false, "NotAllowed", message, 2),
            ],
            "{allowed:?}"
        );
        assert!(ls.listeners().is_empty());
        assert_gateway(&t, 0);
        assert_eq!(served(&t, 80), [gw_served()], "its listener is not served");
    }
}

#[test]
fn refused_when_the_parent_gateway_is_missing_or_not_accepted() {
    let missing = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: { name: orphan, namespace: team-a, generation: 4 }
spec:
  parentRef: { name: nope }
  listeners:
  - { name: extra, port: 80, protocol: HTTP }
"#;
    let rejected = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: infra, generation: 1 }
spec:
  gatewayClassName: gatekit
  addresses: [{ value: 10.0.0.1 }]
  allowedListeners: { namespaces: { from: All } }
  listeners:
  - { name: web, port: 80, protocol: HTTP }
"#;
    let yaml = [
        missing.to_owned(),
        rejected.to_owned(),
        listener_set("team-a", "ls", T1, &http("extra", "team-a.example.com")),
    ]
    .concat();
    let t = run(&yaml);

    let orphan = status(&t, "ListenerSet", "team-a", "orphan");
    let message = "Gateway team-a/nope not found";
    assert_eq!(
        conds(orphan.conditions()),
        [
            c("Accepted", false, "ParentNotAccepted", message, 4),
            c("Programmed", false, "ParentNotProgrammed", message, 4),
        ]
    );
    assert!(orphan.listeners().is_empty());

    let ls = status(&t, "ListenerSet", "team-a", "ls");
    let message = "Gateway infra/gw is not accepted";
    assert_eq!(
        conds(ls.conditions()),
        [
            c("Accepted", false, "ParentNotAccepted", message, 2),
            c("Programmed", false, "ParentNotProgrammed", message, 2),
        ]
    );
    assert!(ls.listeners().is_empty());
    assert_eq!(
        status(&t, "Gateway", "infra", "gw").attached_listener_sets(),
        Some(0)
    );
    assert!(
        t.port(80).is_none(),
        "nothing is served: {:?}",
        t.listeners()
    );
}

#[test]
fn a_listener_conflicting_with_the_gateway_loses_and_the_others_serve() {
    let yaml = [
        gateway("allowedListeners: { namespaces: { from: All } }"),
        listener_set(
            "team-a",
            "ls",
            T1,
            &[
                http("dup", "gw.example.com"),
                http("extra", "team-a.example.com"),
            ]
            .concat(),
        ),
    ]
    .concat();
    let t = run(&yaml);
    let ls = status(&t, "ListenerSet", "team-a", "ls");
    assert_eq!(
        conds(ls.conditions()),
        [
            c(
                "Accepted",
                true,
                "ListenersNotValid",
                "1 of 2 listeners are not valid: dup (HostnameConflict)",
                2
            ),
            c("Programmed", true, "Programmed", "", 2),
        ]
    );
    assert_listener(
        ls,
        "dup",
        0,
        &lost_listener(
            "HostnameConflict",
            "a listener of the Gateway or an older ListenerSet on port 80 already has hostname gw.example.com",
        ),
    );
    assert_listener(ls, "extra", 0, &valid_listener(2));
    // The Gateway's own listener keeps its place and its status.
    assert_gateway(&t, 1);
    assert_eq!(
        served(&t, 80),
        [gw_served(), ls_served("team-a.example.com", "team-a", "ls")]
    );
}

#[test]
fn a_protocol_conflict_with_the_gateway_leaves_a_listener_set_without_listeners_unaccepted() {
    let yaml = [
        gateway("allowedListeners: { namespaces: { from: All } }"),
        listener_set(
            "team-a",
            "ls",
            T1,
            "  - { name: tls, port: 80, protocol: HTTPS, hostname: team-a.example.com, tls: { certificateRefs: [{ name: cert }] } }\n",
        ),
        secret("team-a", "cert"),
    ]
    .concat();
    let t = run(&yaml);
    let ls = status(&t, "ListenerSet", "team-a", "ls");
    assert_eq!(
        conds(ls.conditions()),
        [
            c(
                "Accepted",
                false,
                "ListenersNotValid",
                "no listener is valid: tls (ProtocolConflict)",
                2
            ),
            c(
                "Programmed",
                false,
                "ListenersNotValid",
                "no listener is programmed",
                2
            ),
        ]
    );
    assert_listener(
        ls,
        "tls",
        0,
        &lost_listener(
            "ProtocolConflict",
            "port 80 is already used with another protocol by the Gateway or an older ListenerSet",
        ),
    );
    // Not Accepted, so not counted (conformance `ListenerSetProtocolConflict`).
    assert_gateway(&t, 0);
    assert_eq!(served(&t, 80), [gw_served()]);
}

#[test]
fn between_two_listener_sets_the_older_wins_then_namespace_and_name() {
    // `team-b/ls` is older than `team-a/ls`: it wins although it sorts after it.
    let yaml = [
        gateway("allowedListeners: { namespaces: { from: All } }"),
        listener_set("team-a", "ls", T2, &http("mine", "shared.example.com")),
        listener_set("team-b", "ls", T1, &http("mine", "shared.example.com")),
        // Same creation time as team-b/ls: namespace/name decides (team-b/ls first).
        listener_set("team-c", "ls", T1, &http("mine", "shared.example.com")),
    ]
    .concat();
    let t = run(&yaml);
    let winner = status(&t, "ListenerSet", "team-b", "ls");
    assert_eq!(conds(winner.conditions()), accepted_set());
    assert_listener(winner, "mine", 0, &valid_listener(2));

    let message = "a listener of the Gateway or an older ListenerSet on port 80 already has hostname shared.example.com";
    for loser in ["team-a", "team-c"] {
        let ls = status(&t, "ListenerSet", loser, "ls");
        assert_eq!(
            conds(ls.conditions()),
            [
                c(
                    "Accepted",
                    false,
                    "ListenersNotValid",
                    "no listener is valid: mine (HostnameConflict)",
                    2
                ),
                c(
                    "Programmed",
                    false,
                    "ListenersNotValid",
                    "no listener is programmed",
                    2
                ),
            ],
            "{loser}"
        );
        assert_listener(ls, "mine", 0, &lost_listener("HostnameConflict", message));
    }
    assert_gateway(&t, 1);
    assert_eq!(
        served(&t, 80),
        [gw_served(), ls_served("shared.example.com", "team-b", "ls")]
    );
}

/// A ListenerSet in `team-a` with listeners `a` and `b`, and an HTTPRoute in `team-a`.
fn routed(parent_refs: &str) -> String {
    [
        gateway("allowedListeners: { namespaces: { from: All } }"),
        listener_set(
            "team-a",
            "ls",
            T1,
            &[http("a", "a.example.com"), http("b", "b.example.com")].concat(),
        ),
        format!(
            r#"
---
apiVersion: v1
kind: Service
metadata: {{ name: svc, namespace: team-a }}
spec:
  ports: [{{ name: http, port: 80 }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r, namespace: team-a, generation: 5 }}
spec:
  parentRefs: {parent_refs}
  rules: [{{ backendRefs: [{{ name: svc, port: 80 }}] }}]
"#
        ),
    ]
    .concat()
}

/// Route ids attached to the listener for `host` on port 80.
fn routes_on(t: &Translation, host: &str) -> Vec<String> {
    let port = t.port(80).unwrap();
    let l = port
        .listeners()
        .iter()
        .find(|l| l.hostname() == Some(host))
        .unwrap_or_else(|| panic!("no listener for {host}"));
    port.listener_routes(l)
        .iter()
        .map(|r| r.id.to_string())
        .collect()
}

#[test]
fn a_route_attaches_to_a_listener_set_listener_by_section_name() {
    let t = run(&routed(
        "[{ kind: ListenerSet, group: gateway.networking.k8s.io, name: ls, sectionName: a }]",
    ));
    let route = status(&t, "HTTPRoute", "team-a", "r");
    assert_eq!(route.parents().len(), 1);
    let p = &route.parents()[0];
    assert_eq!(p.parent().kind, "ListenerSet");
    assert_eq!(p.parent().namespace, "team-a");
    assert_eq!(p.parent().name, "ls");
    assert_eq!(p.parent().section_name.as_deref(), Some("a"));
    assert_eq!(p.parent().port, None);
    assert_eq!(
        conds(p.conditions()),
        [
            c("Accepted", true, "Accepted", "", 5),
            c("ResolvedRefs", true, "ResolvedRefs", "", 5),
        ]
    );
    let ls = status(&t, "ListenerSet", "team-a", "ls");
    assert_listener(ls, "a", 1, &valid_listener(2));
    assert_listener(ls, "b", 0, &valid_listener(2));
    assert_eq!(routes_on(&t, "a.example.com").len(), 1);
    assert!(routes_on(&t, "b.example.com").is_empty());
    assert!(routes_on(&t, "gw.example.com").is_empty());
}

#[test]
fn a_route_on_a_listener_set_without_section_name_attaches_to_all_its_listeners_by_port() {
    let t = run(&routed("[{ kind: ListenerSet, name: ls, port: 80 }]"));
    let ls = status(&t, "ListenerSet", "team-a", "ls");
    assert_listener(ls, "a", 1, &valid_listener(2));
    assert_listener(ls, "b", 1, &valid_listener(2));
    assert!(routes_on(&t, "gw.example.com").is_empty());
    let route = status(&t, "HTTPRoute", "team-a", "r");
    assert_eq!(route.parents()[0].parent().port, Some(80));
    assert!(route.parents()[0].condition("Accepted").unwrap().is_true());
}

#[test]
fn a_route_on_the_gateway_does_not_attach_to_listener_set_listeners() {
    // GEP-1713 "Gateway Parents and sectionName": a Gateway parentRef reaches the
    // Gateway's own `spec.listeners` only, with or without a sectionName.
    let t = run(&routed(
        "[{ name: gw, namespace: infra }, { name: gw, namespace: infra, sectionName: a }]",
    ));
    let route = status(&t, "HTTPRoute", "team-a", "r");
    assert_eq!(route.parents().len(), 2);
    let whole = &route.parents()[0];
    assert_eq!(whole.parent().kind, "Gateway");
    // The Gateway's listener allows its own namespace only (default).
    assert_eq!(
        conds(whole.conditions()),
        [
            c(
                "Accepted",
                false,
                "NotAllowedByListeners",
                "no listener allows HTTPRoute from namespace team-a",
                5
            ),
            c("ResolvedRefs", true, "ResolvedRefs", "", 5),
        ]
    );
    let section = &route.parents()[1];
    assert_eq!(section.parent().section_name.as_deref(), Some("a"));
    assert_eq!(
        conds(section.conditions()),
        [
            c(
                "Accepted",
                false,
                "NoMatchingParent",
                "no listener matches the parentRef's sectionName/port",
                5
            ),
            c("ResolvedRefs", true, "ResolvedRefs", "", 5),
        ]
    );
    let ls = status(&t, "ListenerSet", "team-a", "ls");
    assert_listener(ls, "a", 0, &valid_listener(2));
    assert_listener(ls, "b", 0, &valid_listener(2));
    assert!(routes_on(&t, "a.example.com").is_empty());
    assert!(routes_on(&t, "b.example.com").is_empty());
}

#[test]
fn a_listener_set_listener_allows_routes_relative_to_the_listener_set_namespace() {
    // The Gateway's namespace is not the ListenerSet's: a route in `infra` is refused by
    // the ListenerSet's listeners (allowedRoutes defaults to Same).
    let yaml = routed("[{ kind: ListenerSet, name: ls, namespace: team-a }]")
        .replace("name: r, namespace: team-a", "name: r, namespace: infra");
    let t = run(&yaml);
    let route = status(&t, "HTTPRoute", "infra", "r");
    assert_eq!(
        conds(route.parents()[0].conditions())[0],
        c(
            "Accepted",
            false,
            "NotAllowedByListeners",
            "no listener allows HTTPRoute from namespace infra",
            5
        )
    );
    let ls = status(&t, "ListenerSet", "team-a", "ls");
    assert_listener(ls, "a", 0, &valid_listener(2));
}

#[test]
fn route_parent_ref_to_a_missing_or_refused_listener_set() {
    let yaml = routed(
        "[{ kind: ListenerSet, name: nope }, { kind: ListenerSet, name: ls, sectionName: zz }]",
    )
    .replace(
        "{ namespaces: { from: All } }",
        "{ namespaces: { from: Same } }",
    );
    let t = run(&yaml);
    let route = status(&t, "HTTPRoute", "team-a", "r");
    let accepted: Vec<Cond> = route
        .parents()
        .iter()
        .map(|p| conds(p.conditions())[0].clone())
        .collect();
    assert_eq!(
        accepted,
        [
            c(
                "Accepted",
                false,
                "NoMatchingParent",
                "ListenerSet team-a/nope not found",
                5
            ),
            c(
                "Accepted",
                false,
                "NoMatchingParent",
                "ListenerSet team-a/ls is not accepted by its Gateway",
                5
            ),
        ]
    );
}

#[test]
fn certificates_resolve_in_the_listener_set_namespace_with_its_own_grants() {
    let https = |name: &str, host: &str, cert_ns: &str, cert: &str| {
        format!(
            "  - {{ name: {name}, port: 443, protocol: HTTPS, hostname: {host}, tls: {{ certificateRefs: [{{ name: {cert}, namespace: {cert_ns} }}] }} }}\n"
        )
    };
    let grant = |from_kind: &str, name: &str| {
        format!(
            r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{ name: {name}, namespace: certs }}
spec:
  from: [{{ group: gateway.networking.k8s.io, kind: {from_kind}, namespace: team-a }}]
  to: [{{ group: "", kind: Secret, name: granted }}]
"#
        )
    };
    let yaml = [
        gateway("allowedListeners: { namespaces: { from: All } }"),
        listener_set(
            "team-a",
            "ls",
            T1,
            &[
                https("own", "own.example.com", "team-a", "cert"),
                https("granted", "granted.example.com", "certs", "granted"),
                https("refused", "refused.example.com", "certs", "other"),
            ]
            .concat(),
        ),
        secret("team-a", "cert"),
        secret("certs", "granted"),
        secret("certs", "other"),
        grant("ListenerSet", "to-listenersets"),
        // A grant to Gateways in team-a does not extend to ListenerSets (GEP-1713
        // "ReferenceGrant Semantics").
        grant("Gateway", "to-gateways").replace("name: granted", "name: other"),
    ]
    .concat();
    let t = run(&yaml);
    let ls = status(&t, "ListenerSet", "team-a", "ls");
    assert_eq!(
        conds(ls.conditions()),
        [
            c(
                "Accepted",
                true,
                "ListenersNotValid",
                "1 of 3 listeners are not valid: refused (RefNotPermitted)",
                2
            ),
            c("Programmed", true, "Programmed", "", 2),
        ]
    );
    assert_listener(ls, "own", 0, &valid_listener(2));
    assert_listener(ls, "granted", 0, &valid_listener(2));
    assert_listener(
        ls,
        "refused",
        0,
        &[
            c("Accepted", true, "Accepted", "", 2),
            c(
                "ResolvedRefs",
                false,
                "RefNotPermitted",
                "certificateRef to Secret certs/other is not permitted by any ReferenceGrant in namespace certs",
                2,
            ),
            c(
                "Programmed",
                false,
                "Invalid",
                "the listener is not valid",
                2,
            ),
            c("Conflicted", false, "NoConflicts", "", 2),
        ],
    );
    let port = t.port(443).unwrap();
    let certs: Vec<(Option<&str>, Vec<String>)> = port
        .listeners()
        .iter()
        .map(|l| {
            (
                l.hostname(),
                l.certificates()
                    .iter()
                    .map(|c| c.secret().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        certs,
        [
            (
                Some("own.example.com"),
                vec!["Secret team-a/cert".to_owned()]
            ),
            (
                Some("granted.example.com"),
                vec!["Secret certs/granted".to_owned()]
            ),
        ]
    );
}

#[test]
fn a_route_with_gateway_and_listener_set_parents_has_independent_statuses() {
    // Conformance `ListenerSetDualParentRefIndependence`: each parentRef is judged on
    // its own; a ListenerSet parentRef naming a missing section does not affect the
    // accepted Gateway parentRef.
    let yaml = routed(
        "[{ name: gw, namespace: infra, sectionName: web }, { kind: ListenerSet, name: ls, sectionName: zz }, { kind: ListenerSet, name: ls, sectionName: b }]",
    )
    .replace(
        "hostname: gw.example.com }",
        "hostname: gw.example.com, allowedRoutes: { namespaces: { from: All } } }",
    );
    let t = run(&yaml);
    let route = status(&t, "HTTPRoute", "team-a", "r");
    let parents: Vec<(&str, Option<&str>, Cond)> = route
        .parents()
        .iter()
        .map(|p| {
            (
                p.parent().kind,
                p.parent().section_name.as_deref(),
                conds(p.conditions())[0].clone(),
            )
        })
        .collect();
    assert_eq!(
        parents,
        [
            (
                "Gateway",
                Some("web"),
                c("Accepted", true, "Accepted", "", 5)
            ),
            (
                "ListenerSet",
                Some("zz"),
                c(
                    "Accepted",
                    false,
                    "NoMatchingParent",
                    "no listener matches the parentRef's sectionName/port",
                    5
                )
            ),
            (
                "ListenerSet",
                Some("b"),
                c("Accepted", true, "Accepted", "", 5)
            ),
        ]
    );
    let gw = status(&t, "Gateway", "infra", "gw");
    assert_eq!(gw.listener("web").unwrap().attached_routes(), 1);
    let ls = status(&t, "ListenerSet", "team-a", "ls");
    assert_listener(ls, "a", 0, &valid_listener(2));
    assert_listener(ls, "b", 1, &valid_listener(2));
    assert_eq!(routes_on(&t, "gw.example.com").len(), 1);
    assert!(routes_on(&t, "a.example.com").is_empty());
    assert_eq!(routes_on(&t, "b.example.com").len(), 1);
}
