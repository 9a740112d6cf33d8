//! Gateway, listener and GatewayClass statuses, asserted field by field against the
//! Gateway API spec (v1.5 type docs: `GatewaySpec.listeners` "Handling indistinct
//! Listeners", `GatewayStatusListeners.supportedKinds`/`attachedRoutes`,
//! `GatewaySpec.addresses`), for a valid Gateway and each invalid case the spec names.
#![allow(clippy::unwrap_used)]

#[path = "support/status.rs"]
mod support;

use gatekit_k8s::status::{Condition, ListenerStatus, ResourceStatus};
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, translate};
use support::{Cond, c, conds, run, secret};

const SERVICE: &str = r#"
---
apiVersion: v1
kind: Service
metadata: { name: svc, namespace: infra }
spec:
  ports: [{ name: http, port: 80 }]
"#;

/// An HTTPRoute in `infra` attached to the whole Gateway `gw`.
const ROUTE: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: infra }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: svc, port: 80 }] }]
"#;

/// Listener conditions, in the order gatekit writes them.
fn listener_conds(
    accepted: (bool, &str, &str),
    resolved: (bool, &str, &str),
    programmed: (bool, &str, &str),
    conflicted: (bool, &str, &str),
    generation: i64,
) -> Vec<Cond> {
    vec![
        c("Accepted", accepted.0, accepted.1, accepted.2, generation),
        c(
            "ResolvedRefs",
            resolved.0,
            resolved.1,
            resolved.2,
            generation,
        ),
        c(
            "Programmed",
            programmed.0,
            programmed.1,
            programmed.2,
            generation,
        ),
        c(
            "Conflicted",
            conflicted.0,
            conflicted.1,
            conflicted.2,
            generation,
        ),
    ]
}

const OK_ACCEPTED: (bool, &str, &str) = (true, "Accepted", "");
const OK_RESOLVED: (bool, &str, &str) = (true, "ResolvedRefs", "");
const OK_PROGRAMMED: (bool, &str, &str) = (true, "Programmed", "");
const NOT_PROGRAMMED: (bool, &str, &str) = (false, "Invalid", "the listener is not valid");
const NO_CONFLICTS: (bool, &str, &str) = (false, "NoConflicts", "");
const BOTH_KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

fn gateway<'a>(t: &'a Translation, name: &str) -> &'a ResourceStatus {
    t.status("Gateway", Some("infra"), name)
        .unwrap_or_else(|| panic!("no status for Gateway infra/{name}: {:#?}", t.statuses()))
}

fn listener<'a>(gw: &'a ResourceStatus, name: &str) -> &'a ListenerStatus {
    gw.listener(name)
        .unwrap_or_else(|| panic!("no listener {name}: {gw:#?}"))
}

#[test]
fn valid_gateway_with_two_listeners() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{ name: gatekit, generation: 2 }}
spec: {{ controllerName: gatekit.io/gateway-controller }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 3 }}
spec:
  gatewayClassName: gatekit
  listeners:
  - {{ name: http, port: 80, protocol: HTTP }}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: secure.example.com
    tls: {{ certificateRefs: [{{ name: cert }}] }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{ name: g, namespace: infra }}
spec:
  parentRefs: [{{ name: gw, sectionName: https }}]
  rules: [{{ backendRefs: [{{ name: svc, port: 80 }}] }}]
{SERVICE}{ROUTE}{}"#,
        secret("infra", "cert")
    );
    let t = run(&yaml);

    let class = t.status("GatewayClass", None, "gatekit").unwrap();
    assert_eq!(class.generation(), Some(2));
    assert_eq!(
        conds(class.conditions()),
        [c("Accepted", true, "Accepted", "", 2)]
    );
    assert!(!class.supported_features().is_empty());

    let gw = gateway(&t, "gw");
    assert_eq!(gw.generation(), Some(3));
    assert_eq!(
        conds(gw.conditions()),
        [
            c("Accepted", true, "Accepted", "", 3),
            c("Programmed", true, "Programmed", "", 3),
        ]
    );
    let names: Vec<&str> = gw.listeners().iter().map(ListenerStatus::name).collect();
    assert_eq!(names, ["http", "https"]);
    let valid = listener_conds(OK_ACCEPTED, OK_RESOLVED, OK_PROGRAMMED, NO_CONFLICTS, 3);

    let http = listener(gw, "http");
    assert_eq!(http.supported_kinds(), BOTH_KINDS);
    // The HTTPRoute (whole Gateway); the GRPCRoute names the https listener only.
    assert_eq!(http.attached_routes(), 1);
    assert_eq!(conds(http.conditions()), valid);

    let https = listener(gw, "https");
    assert_eq!(https.supported_kinds(), BOTH_KINDS);
    assert_eq!(https.attached_routes(), 2);
    assert_eq!(conds(https.conditions()), valid);

    assert_eq!(t.port(80).unwrap().listeners().len(), 1);
    assert_eq!(t.port(443).unwrap().listeners().len(), 1);
}

#[test]
fn unsupported_protocol_is_not_accepted_and_supports_no_kind() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 1 }}
spec:
  gatewayClassName: gatekit
  listeners:
  - {{ name: http, port: 80, protocol: HTTP }}
  - {{ name: sctp, port: 81, protocol: SCTP }}
{SERVICE}{ROUTE}"#
    );
    let t = run(&yaml);
    let gw = gateway(&t, "gw");
    assert_eq!(
        conds(gw.conditions()),
        [
            c(
                "Accepted",
                true,
                "ListenersNotValid",
                "1 of 2 listeners are not valid: sctp (UnsupportedProtocol)",
                1
            ),
            c("Programmed", true, "Programmed", "", 1),
        ]
    );
    let sctp = listener(gw, "sctp");
    assert!(sctp.supported_kinds().is_empty());
    assert_eq!(sctp.attached_routes(), 0);
    assert_eq!(
        conds(sctp.conditions()),
        listener_conds(
            (
                false,
                "UnsupportedProtocol",
                "protocol SCTP is not supported (HTTP, HTTPS, TLS, TCP, UDP)"
            ),
            OK_RESOLVED,
            NOT_PROGRAMMED,
            NO_CONFLICTS,
            1
        )
    );
    let http = listener(gw, "http");
    assert_eq!(http.attached_routes(), 1);
    assert_eq!(
        conds(http.conditions()),
        listener_conds(OK_ACCEPTED, OK_RESOLVED, OK_PROGRAMMED, NO_CONFLICTS, 1)
    );
    assert!(t.port(81).is_none());
}

#[test]
fn unknown_route_kinds_are_invalid_and_left_out_of_supported_kinds() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 1 }}
spec:
  gatewayClassName: gatekit
  listeners:
  - name: mixed
    port: 80
    protocol: HTTP
    allowedRoutes: {{ kinds: [{{ kind: TCPRoute }}, {{ kind: HTTPRoute }}] }}
  - name: unknown
    port: 81
    protocol: HTTP
    allowedRoutes: {{ kinds: [{{ group: example.com, kind: HTTPRoute }}] }}
{SERVICE}{ROUTE}"#
    );
    let t = run(&yaml);
    let gw = gateway(&t, "gw");
    assert_eq!(
        conds(gw.conditions()),
        [
            c(
                "Accepted",
                true,
                "ListenersNotValid",
                "1 of 2 listeners are not valid: unknown (InvalidRouteKinds)",
                1
            ),
            c("Programmed", true, "Programmed", "", 1),
        ]
    );
    // Valid and invalid kinds: the valid ones are listed, ResolvedRefs is False, the
    // listener still serves the valid kinds.
    let mixed = listener(gw, "mixed");
    assert_eq!(mixed.supported_kinds(), ["HTTPRoute"]);
    assert_eq!(mixed.attached_routes(), 1);
    assert_eq!(
        conds(mixed.conditions()),
        listener_conds(
            OK_ACCEPTED,
            (
                false,
                "InvalidRouteKinds",
                "route kind gateway.networking.k8s.io/TCPRoute is not supported"
            ),
            OK_PROGRAMMED,
            NO_CONFLICTS,
            1
        )
    );
    // Only invalid kinds: nothing supported, nothing attached, not programmed.
    let unknown = listener(gw, "unknown");
    assert!(unknown.supported_kinds().is_empty());
    assert_eq!(unknown.attached_routes(), 0);
    assert_eq!(
        conds(unknown.conditions()),
        listener_conds(
            OK_ACCEPTED,
            (
                false,
                "InvalidRouteKinds",
                "route kind example.com/HTTPRoute is not supported"
            ),
            NOT_PROGRAMMED,
            NO_CONFLICTS,
            1
        )
    );
}

#[test]
fn indistinct_listeners_are_all_conflicted() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 1 }}
spec:
  gatewayClassName: gatekit
  listeners:
  - {{ name: a, port: 80, protocol: HTTP, hostname: a.example.com }}
  - {{ name: b, port: 80, protocol: HTTP, hostname: A.example.com }}
  - {{ name: h, port: 81, protocol: HTTP }}
  - {{ name: s, port: 81, protocol: HTTPS, tls: {{ certificateRefs: [{{ name: cert }}] }} }}
  - {{ name: ok, port: 82, protocol: HTTP }}
{}"#,
        secret("infra", "cert")
    );
    let t = run(&yaml);
    let gw = gateway(&t, "gw");
    assert_eq!(
        conds(gw.conditions()),
        [
            c(
                "Accepted",
                true,
                "ListenersNotValid",
                "4 of 5 listeners are not valid: a (HostnameConflict), b (HostnameConflict), \
                 h (ProtocolConflict), s (ProtocolConflict)",
                1
            ),
            c("Programmed", true, "Programmed", "", 1),
        ]
    );
    let expect = [
        (
            "a",
            "HostnameConflict",
            "listener b also uses port 80 and hostname a.example.com",
        ),
        (
            "b",
            "HostnameConflict",
            "listener a also uses port 80 and hostname a.example.com",
        ),
        (
            "h",
            "ProtocolConflict",
            "listener s also uses port 81, with another protocol",
        ),
        (
            "s",
            "ProtocolConflict",
            "listener h also uses port 81, with another protocol",
        ),
    ];
    for (name, reason, message) in expect {
        let l = listener(gw, name);
        assert_eq!(l.supported_kinds(), BOTH_KINDS, "{name}");
        assert_eq!(
            conds(l.conditions()),
            listener_conds(
                OK_ACCEPTED,
                OK_RESOLVED,
                NOT_PROGRAMMED,
                (true, reason, message),
                1
            ),
            "{name}"
        );
    }
    assert_eq!(
        conds(listener(gw, "ok").conditions()),
        listener_conds(OK_ACCEPTED, OK_RESOLVED, OK_PROGRAMMED, NO_CONFLICTS, 1)
    );
    assert!(t.port(80).is_none());
    assert!(t.port(81).is_none());
    assert_eq!(t.port(82).unwrap().listeners().len(), 1);
}

#[test]
fn a_protocol_conflict_in_a_newer_gateway_rejects_both_listeners() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: old, namespace: infra, generation: 1, creationTimestamp: "2024-01-01T00:00:00Z" }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: new, namespace: infra, generation: 1, creationTimestamp: "2025-01-01T00:00:00Z" }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }, { name: s, port: 80, protocol: HTTPS }]
"#;
    let t = run(yaml);
    assert_eq!(
        conds(listener(gateway(&t, "old"), "http").conditions()),
        listener_conds(OK_ACCEPTED, OK_RESOLVED, OK_PROGRAMMED, NO_CONFLICTS, 1)
    );
    let new = gateway(&t, "new");
    assert_eq!(
        conds(listener(new, "http").conditions()),
        listener_conds(
            OK_ACCEPTED,
            OK_RESOLVED,
            NOT_PROGRAMMED,
            (
                true,
                "ProtocolConflict",
                "listener s also uses port 80, with another protocol"
            ),
            1
        )
    );
    assert_eq!(
        conds(new.conditions())[0],
        c(
            "Accepted",
            false,
            "ListenersNotValid",
            "no listener is valid: http (ProtocolConflict), s (InvalidCertificateRef)",
            1
        )
    );
    assert_eq!(
        conds(new.conditions())[1],
        c(
            "Programmed",
            false,
            "Invalid",
            "no listener is programmed",
            1
        )
    );
}

#[test]
fn a_listener_of_a_newer_gateway_with_the_same_hostname_conflicts() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: old, namespace: infra, generation: 1, creationTimestamp: "2024-01-01T00:00:00Z" }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: new, namespace: infra, generation: 1, creationTimestamp: "2025-01-01T00:00:00Z" }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
"#;
    let t = run(yaml);
    assert_eq!(
        conds(listener(gateway(&t, "new"), "http").conditions()),
        listener_conds(
            OK_ACCEPTED,
            OK_RESOLVED,
            NOT_PROGRAMMED,
            (
                true,
                "HostnameConflict",
                "a listener of an older Gateway on port 80 already has hostname (none)"
            ),
            1
        )
    );
}

#[test]
fn https_listeners_with_missing_or_unpermitted_certificates() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 4 }}
spec:
  gatewayClassName: gatekit
  listeners:
  - name: missing
    port: 443
    protocol: HTTPS
    hostname: a.example.com
    tls: {{ certificateRefs: [{{ name: nope }}] }}
  - name: foreign
    port: 443
    protocol: HTTPS
    hostname: b.example.com
    tls: {{ certificateRefs: [{{ name: cert, namespace: other }}] }}
{SERVICE}{ROUTE}{}"#,
        secret("other", "cert")
    );
    let t = run(&yaml);
    let gw = gateway(&t, "gw");
    assert_eq!(
        conds(gw.conditions()),
        [
            c(
                "Accepted",
                false,
                "ListenersNotValid",
                "no listener is valid: missing (InvalidCertificateRef), foreign (RefNotPermitted)",
                4
            ),
            c(
                "Programmed",
                false,
                "Invalid",
                "no listener is programmed",
                4
            ),
        ]
    );
    let missing = listener(gw, "missing");
    assert_eq!(missing.supported_kinds(), BOTH_KINDS);
    // The route selects the listener: attached although the listener is not
    // programmed (spec: listener status does not impact attachment).
    assert_eq!(missing.attached_routes(), 1);
    assert_eq!(
        conds(missing.conditions()),
        listener_conds(
            OK_ACCEPTED,
            (
                false,
                "InvalidCertificateRef",
                "Secret infra/nope not found"
            ),
            NOT_PROGRAMMED,
            NO_CONFLICTS,
            4
        )
    );
    let foreign = listener(gw, "foreign");
    assert_eq!(foreign.attached_routes(), 1);
    assert_eq!(
        conds(foreign.conditions()),
        listener_conds(
            OK_ACCEPTED,
            (
                false,
                "RefNotPermitted",
                "certificateRef to Secret other/cert is not permitted by any ReferenceGrant \
                 in namespace other"
            ),
            NOT_PROGRAMMED,
            NO_CONFLICTS,
            4
        )
    );
    assert!(t.port(443).is_none());
}

#[test]
fn a_reference_grant_permits_the_foreign_certificate() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 1 }}
spec:
  gatewayClassName: gatekit
  listeners:
  - name: foreign
    port: 443
    protocol: HTTPS
    tls: {{ certificateRefs: [{{ name: cert, namespace: other }}] }}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{ name: certs, namespace: other }}
spec:
  from: [{{ group: gateway.networking.k8s.io, kind: Gateway, namespace: infra }}]
  to: [{{ group: "", kind: Secret }}]
{}"#,
        secret("other", "cert")
    );
    let t = run(&yaml);
    assert_eq!(
        conds(listener(gateway(&t, "gw"), "foreign").conditions()),
        listener_conds(OK_ACCEPTED, OK_RESOLVED, OK_PROGRAMMED, NO_CONFLICTS, 1)
    );
}

#[test]
fn spec_addresses_are_not_supported() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 2 }}
spec:
  gatewayClassName: gatekit
  addresses: [{{ type: IPAddress, value: 10.1.2.3 }}, {{ type: Hostname }}]
  listeners: [{{ name: http, port: 80, protocol: HTTP }}]
{SERVICE}{ROUTE}"#
    );
    let t = run(&yaml);
    let gw = gateway(&t, "gw");
    assert_eq!(
        conds(gw.conditions()),
        [
            c(
                "Accepted",
                false,
                "UnsupportedAddress",
                "spec.addresses is not supported: gatekit assigns no address to a Gateway \
                 (requested: IPAddress 10.1.2.3, Hostname (any)); name the Service in front \
                 of the replicas in the settings (kubernetes.gatewayService) to request its \
                 addresses",
                2
            ),
            c(
                "Programmed",
                false,
                "AddressNotAssigned",
                "no requested address is assigned",
                2
            ),
        ]
    );
    let http = listener(gw, "http");
    assert_eq!(http.supported_kinds(), BOTH_KINDS);
    assert_eq!(http.attached_routes(), 1);
    assert_eq!(
        conds(http.conditions()),
        listener_conds(
            OK_ACCEPTED,
            OK_RESOLVED,
            (
                false,
                "Invalid",
                "the Gateway is not accepted (UnsupportedAddress)"
            ),
            NO_CONFLICTS,
            2
        )
    );
    assert!(t.port(80).is_none());
    let route = t.status("HTTPRoute", Some("infra"), "r").unwrap();
    assert_eq!(
        route.parents()[0].condition("Accepted").unwrap().reason(),
        "NoMatchingParent"
    );
}

/// A Gateway (one HTTP listener) and the Service in front of the replicas, whose
/// `spec`/`status` tail is `service`.
fn with_gateway_service(service: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 1 }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: 80, protocol: HTTP }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: gatekit, namespace: gatekit }}
{service}
"#
    )
}

fn run_with_service(yaml: &str) -> Translation {
    let (set, _) =
        ResourceSet::from_documents([("fixture.yaml", yaml)]).unwrap_or_else(|e| panic!("{e:?}"));
    translate(
        &set,
        &TranslateOptions::default().gateway_service("gatekit", "gatekit"),
    )
}

fn addresses(gw: &ResourceStatus) -> Vec<(&'static str, String)> {
    gw.addresses()
        .expect("addresses known")
        .iter()
        .map(|a| (a.type_(), a.value().to_owned()))
        .collect()
}

#[test]
fn status_addresses_are_the_gateway_services_load_balancer_addresses() {
    let t = run_with_service(&with_gateway_service(
        r#"spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  externalIPs: [198.51.100.7]
  ports: [{ port: 80 }]
status:
  loadBalancer:
    ingress: [{ ip: 203.0.113.5 }, { hostname: gw.lb.example.net }, { ip: 203.0.113.5 }]"#,
    ));
    let gw = gateway(&t, "gw");
    assert_eq!(
        addresses(gw),
        [
            ("IPAddress", "203.0.113.5".to_owned()),
            ("Hostname", "gw.lb.example.net".to_owned()),
            ("IPAddress", "198.51.100.7".to_owned()),
        ],
        "ingress (deduplicated) then external IPs; no cluster IP when reachable from outside"
    );
    assert_eq!(
        conds(gw.conditions()),
        [
            c("Accepted", true, "Accepted", "", 1),
            c("Programmed", true, "Programmed", "", 1),
        ]
    );
}

#[test]
fn a_cluster_ip_gateway_service_reports_its_cluster_ips() {
    let t = run_with_service(&with_gateway_service(
        "spec: { clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10, 'fd00::10'], ports: [{ port: 80 }] }",
    ));
    assert_eq!(
        addresses(gateway(&t, "gw")),
        [
            ("IPAddress", "10.96.0.10".to_owned()),
            ("IPAddress", "fd00::10".to_owned()),
        ]
    );
}

#[test]
fn a_pending_load_balancer_leaves_the_gateway_not_programmed_address_not_assigned() {
    let t = run_with_service(&with_gateway_service(
        "spec: { type: LoadBalancer, clusterIP: 10.96.0.10, ports: [{ port: 80 }] }",
    ));
    let gw = gateway(&t, "gw");
    assert!(addresses(gw).is_empty());
    assert_eq!(
        conds(gw.conditions()),
        [
            c("Accepted", true, "Accepted", "", 1),
            c(
                "Programmed",
                false,
                "AddressNotAssigned",
                "the gateway Service gatekit/gatekit has no address yet (load balancer pending)",
                1
            ),
        ]
    );
    // Serving is not affected: the listener is programmed and its port served.
    assert_eq!(
        listener(gw, "http")
            .condition("Programmed")
            .map(Condition::is_true),
        Some(true)
    );
    assert_eq!(t.port(80).unwrap().listeners().len(), 1);
}

#[test]
fn a_missing_gateway_service_is_named_in_the_programmed_condition() {
    let yaml = with_gateway_service("spec: { ports: [{ port: 80 }] }").replace(
        "name: gatekit, namespace: gatekit",
        "name: other, namespace: gatekit",
    );
    let gw_status = run_with_service(&yaml);
    let gw = gateway(&gw_status, "gw");
    assert!(addresses(gw).is_empty());
    let programmed = gw.condition("Programmed").unwrap();
    assert!(!programmed.is_true());
    assert_eq!(programmed.reason(), "AddressNotAssigned");
    assert_eq!(
        programmed.message(),
        "the gateway Service gatekit/gatekit (settings: kubernetes.gatewayService) does not exist"
    );
}

#[test]
fn without_a_gateway_service_translation_reports_no_addresses() {
    let (set, _) = ResourceSet::from_documents([(
        "fixture.yaml",
        with_gateway_service("spec: { clusterIP: 10.96.0.10, ports: [{ port: 80 }] }").as_str(),
    )])
    .unwrap();
    let t = translate(&set, &TranslateOptions::default());
    let gw = gateway(&t, "gw");
    assert_eq!(gw.addresses(), None);
    assert!(gw.condition("Programmed").unwrap().is_true());
}

/// A Gateway requesting `addresses` (a YAML flow list), in front of a gateway Service
/// with a load-balancer IP and hostname.
fn requesting(addresses: &str) -> Translation {
    let yaml = with_gateway_service(
        r#"spec: { type: LoadBalancer, ports: [{ port: 80 }] }
status: { loadBalancer: { ingress: [{ ip: 203.0.113.5 }, { hostname: gw.lb.example.net }] } }"#,
    )
    .replace(
        "  gatewayClassName: gatekit\n",
        &format!("  gatewayClassName: gatekit\n  addresses: {addresses}\n"),
    );
    run_with_service(&yaml)
}

#[test]
fn gateway_address_empty_is_assigned_from_the_gateway_service() {
    let t = requesting("[{ type: IPAddress }, { type: Hostname, value: '' }]");
    let gw = gateway(&t, "gw");
    assert_eq!(
        conds(gw.conditions()),
        [
            c("Accepted", true, "Accepted", "", 1),
            c("Programmed", true, "Programmed", "", 1),
        ]
    );
    assert_eq!(
        addresses(gw),
        [
            ("IPAddress", "203.0.113.5".to_owned()),
            ("Hostname", "gw.lb.example.net".to_owned()),
        ]
    );
    assert_eq!(t.port(80).unwrap().listeners().len(), 1);
}

#[test]
fn a_static_address_the_gateway_service_has_is_honoured_and_one_it_lacks_is_not_assigned() {
    let t = requesting("[{ type: IPAddress, value: 203.0.113.5 }]");
    assert!(gateway(&t, "gw").condition("Programmed").unwrap().is_true());

    let t = requesting("[{ value: 203.0.113.9 }, { type: Hostname, value: gw.lb.example.net }]");
    let gw = gateway(&t, "gw");
    assert_eq!(
        conds(gw.conditions()),
        [
            c("Accepted", true, "Accepted", "", 1),
            c(
                "Programmed",
                false,
                "AddressNotAssigned",
                "requested IPAddress 203.0.113.9 not among the addresses of the gateway \
                 Service gatekit/gatekit",
                1
            ),
        ]
    );
    // The listeners still serve (on the addresses the Service does have).
    assert_eq!(t.port(80).unwrap().listeners().len(), 1);
}

#[test]
fn an_address_type_other_than_ip_or_hostname_is_unsupported() {
    let t = requesting("[{ type: example.com/NamedAddress, value: pool-a }]");
    let gw = gateway(&t, "gw");
    let accepted = gw.condition("Accepted").unwrap();
    assert!(!accepted.is_true());
    assert_eq!(accepted.reason(), "UnsupportedAddress");
    assert_eq!(
        accepted.message(),
        "spec.addresses[0].type example.com/NamedAddress is not supported (IPAddress and \
         Hostname are)"
    );
    assert!(t.port(80).is_none());
}
