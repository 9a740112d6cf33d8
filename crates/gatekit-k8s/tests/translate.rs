//! Translation tests: YAML fixtures through the loader and the translator, no cluster.
#![allow(clippy::unwrap_used)]

use gatekit_core::EndpointState;
use gatekit_core::route::{Filter, PathMatch, PathModifier, Route, StringMatch};
use gatekit_k8s::status::{ConditionStatus, ResourceStatus};
use gatekit_k8s::translate::{AppProtocol, INVALID_BACKEND_PREFIX, Protocol};
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, translate};

fn run(yaml: &str) -> Translation {
    let (set, warnings) =
        ResourceSet::from_documents([("fixture.yaml", yaml)]).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
    assert!(warnings.is_empty(), "{warnings:?}");
    translate(&set, &TranslateOptions::default())
}

fn route_status<'a>(t: &'a Translation, kind: &str, ns: &str, name: &str) -> &'a ResourceStatus {
    t.status(kind, Some(ns), name)
        .unwrap_or_else(|| panic!("no status for {kind} {ns}/{name}: {:#?}", t.statuses()))
}

/// (status, reason) of a condition of a route's first parent.
fn parent_cond(
    t: &Translation,
    kind: &str,
    ns: &str,
    name: &str,
    type_: &str,
) -> (ConditionStatus, String) {
    let s = route_status(t, kind, ns, name);
    let c = s.parents()[0]
        .condition(type_)
        .unwrap_or_else(|| panic!("no {type_} on {name}: {s:#?}"));
    (c.status(), c.reason().to_owned())
}

fn route<'a>(t: &'a Translation, port: u16, name: &str) -> Option<&'a Route> {
    t.routes_for_port(port)
        .iter()
        .find(|r| r.id.name() == name)
        .map(|r| &**r)
}

/// A real self-signed pair (P-256, valid until 2125): translation checks that the key
/// is the certificate's and that it is valid now.
const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBjjCCATOgAwIBAgIUNe1KjXf2EOQPbS/5AVuuJJlRmZ0wCgYIKoZIzj0EAwIw\nDzENMAsGA1UEAwwEdGVzdDAgFw0yNjEyMDYxODA3NDhaGA8yMTI2MTExMjE4MDc0\nOFowDzENMAsGA1UEAwwEdGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNlj\nv7LULGEPAy7SOw4CVsQ2BaVWOcWOC9J/u683FM2UwO0unQ9sm4f2ZJ1pEOvS0T4b\nSA94LHarm/cIBHdwvDejazBpMB0GA1UdDgQWBBSeWrJ73VYaZWP7XfegPwlstcTU\nKTAfBgNVHSMEGDAWgBSeWrJ73VYaZWP7XfegPwlstcTUKTAPBgNVHRMBAf8EBTAD\nAQH/MBYGA1UdEQQPMA2CC2V4YW1wbGUuY29tMAoGCCqGSM49BAMCA0kAMEYCIQDP\n/4Xnad2AGV1E9FqJGS/FUcRrNqKosA77wkQ5SyKwwQIhAKchS1HD+uLAa6CwEIPd\nM3sNe5ohBp+ax4qlebisW2BV\n-----END CERTIFICATE-----\n";
const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHRYGKZMBZqMQ5Jvc\nicmmLnvoZWtZS0erP+GW9hAxEX+hRANCAATZY7+y1CxhDwMu0jsOAlbENgWlVjnF\njgvSf7uvNxTNlMDtLp0PbJuH9mSdaRDr0tE+G0gPeCx2q5v3CAR3cLw3\n-----END PRIVATE KEY-----\n";

fn gateway_fixture() -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra, generation: 3 }}
spec:
  gatewayClassName: gatekit
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {{ namespaces: {{ from: All }} }}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: "*.example.com"
    allowedRoutes: {{ namespaces: {{ from: All }} }}
    tls:
      certificateRefs: [{{ name: tls-cert }}]
---
apiVersion: v1
kind: Secret
metadata: {{ name: tls-cert, namespace: infra }}
type: kubernetes.io/tls
stringData:
  tls.crt: "{cert}"
  tls.key: "{key}"
---
apiVersion: v1
kind: Service
metadata: {{ name: web, namespace: app }}
spec:
  ports: [{{ name: http, port: 80, targetPort: 8080 }}]
"#,
        cert = PEM_CERT.replace('\n', "\\n"),
        key = PEM_KEY.replace('\n', "\\n"),
    )
}

#[test]
fn two_listeners_attach_by_section_name_and_port() {
    let yaml = gateway_fixture()
        + r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: secure, namespace: app, creationTimestamp: "2024-01-01T00:00:10Z" }
spec:
  parentRefs: [{ name: gw, namespace: infra, sectionName: https }]
  hostnames: ["shop.example.com"]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: plain, namespace: app }
spec:
  parentRefs: [{ name: gw, namespace: infra, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80, weight: 7 }] }]
"#;
    let t = run(&yaml);
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    let ports: Vec<_> = t
        .listeners()
        .iter()
        .map(|p| (p.port(), p.protocol()))
        .collect();
    assert_eq!(ports, [(80, Protocol::Http), (443, Protocol::Https)]);

    // sectionName attaches to the HTTPS listener only, port to the HTTP listener only.
    let secure = route(&t, 443, "secure").unwrap();
    assert_eq!(secure.hostnames[..], ["shop.example.com"]);
    assert_eq!(secure.created, 1_704_067_210);
    assert!(route(&t, 80, "secure").is_none());
    let plain = route(&t, 80, "plain").unwrap();
    assert!(plain.hostnames.is_empty());
    assert_eq!(plain.created, 0);
    assert_eq!(plain.rules[0].backends[0].name, "app/web:80");
    assert_eq!(plain.rules[0].backends[0].weight, 7);
    assert!(route(&t, 443, "plain").is_none());

    // Certificates resolved to PEM bytes.
    let https = t.port(443).unwrap();
    let l = &https.listeners()[0];
    assert_eq!(l.name(), "https");
    assert_eq!(l.hostname(), Some("*.example.com"));
    assert_eq!(l.certificates()[0].cert_pem(), PEM_CERT.as_bytes());
    assert_eq!(l.certificates()[0].key_pem(), PEM_KEY.as_bytes());

    // Statuses.
    let gw = t.status("Gateway", Some("infra"), "gw").unwrap();
    assert_eq!(gw.generation(), Some(3));
    for c in ["Accepted", "Programmed"] {
        assert!(gw.condition(c).unwrap().is_true(), "{c}: {gw:#?}");
        assert_eq!(gw.condition(c).unwrap().observed_generation(), Some(3));
    }
    for name in ["http", "https"] {
        let ls = gw.listener(name).unwrap();
        assert_eq!(ls.attached_routes(), 1, "{name}");
        assert!(ls.condition("Programmed").unwrap().is_true());
        assert!(ls.condition("ResolvedRefs").unwrap().is_true());
        assert!(!ls.condition("Conflicted").unwrap().is_true());
        assert_eq!(ls.supported_kinds(), ["HTTPRoute", "GRPCRoute"]);
    }
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "app", "secure", "Accepted"),
        (ConditionStatus::True, "Accepted".into())
    );
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "app", "plain", "ResolvedRefs"),
        (ConditionStatus::True, "ResolvedRefs".into())
    );
    let up = &t.upstreams()["app/web:80"];
    assert_eq!(up.port(), 80);
    assert_eq!(up.service().name(), "web");
    assert_eq!(up.app_protocol(), AppProtocol::Http1);
}

#[test]
fn unknown_section_name_is_no_matching_parent_and_missing_secret_is_invalid_cert() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: http, port: 80, protocol: HTTP }
  - name: https
    port: 443
    protocol: HTTPS
    tls: { certificateRefs: [{ name: nope }] }
  - { name: tcp, port: 9000, protocol: SCTP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r }
spec:
  parentRefs: [{ name: gw, sectionName: nosuch }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: lost }
spec:
  parentRefs: [{ name: nogw }]
"#;
    let t = run(yaml);
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "default", "r", "Accepted"),
        (ConditionStatus::False, "NoMatchingParent".into())
    );
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "default", "lost", "Accepted"),
        (ConditionStatus::False, "NoMatchingParent".into())
    );
    let gw = t.status("Gateway", Some("default"), "gw").unwrap();
    let https = gw.listener("https").unwrap();
    assert_eq!(
        https.condition("ResolvedRefs").unwrap().reason(),
        "InvalidCertificateRef"
    );
    assert!(!https.condition("Programmed").unwrap().is_true());
    let tcp = gw.listener("tcp").unwrap();
    assert_eq!(
        tcp.condition("Accepted").unwrap().reason(),
        "UnsupportedProtocol"
    );
    let accepted = gw.condition("Accepted").unwrap();
    assert!(accepted.is_true());
    assert_eq!(accepted.reason(), "ListenersNotValid");
    assert_eq!(t.listeners().len(), 1, "only port 80 is served");
    assert!(t.errors().iter().any(|e| e.field() == "spec.listeners[1]"));
}

#[test]
fn hostname_intersection_exact_wildcard_none_and_merge() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: wild, port: 8080, protocol: HTTP, hostname: "*.example.com" }
  - { name: a, port: 8081, protocol: HTTP, hostname: a.com }
  - { name: b, port: 8081, protocol: HTTP, hostname: b.com }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: exact }
spec:
  parentRefs: [{ name: gw, sectionName: wild }]
  hostnames: ["API.example.com", "other.org", "deep.x.example.com"]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: none }
spec:
  parentRefs: [{ name: gw, sectionName: wild }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: disjoint }
spec:
  parentRefs: [{ name: gw, sectionName: wild }]
  hostnames: ["other.org", "example.com"]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: both }
spec:
  parentRefs: [{ name: gw, port: 8081 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: twice }
spec:
  parentRefs: [{ name: gw, sectionName: a }, { name: gw, sectionName: b }]
  hostnames: ["a.com", "b.com", "c.com"]
"#;
    let t = run(yaml);
    assert_eq!(
        route(&t, 8080, "exact").unwrap().hostnames[..],
        ["api.example.com", "deep.x.example.com"]
    );
    assert_eq!(
        route(&t, 8080, "none").unwrap().hostnames[..],
        ["*.example.com"]
    );
    assert!(route(&t, 8080, "disjoint").is_none());
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "default", "disjoint", "Accepted"),
        (ConditionStatus::False, "NoMatchingListenerHostname".into())
    );
    // One Route per listener (listener isolation), hostnames intersected with each
    // listener's; two parentRefs naming listeners of one port give one entry each.
    let port = t.port(8081).unwrap();
    let per_listener = |name: &str| -> Vec<(Option<String>, Vec<String>)> {
        port.routes_by_listener()
            .flat_map(|(l, routes)| {
                routes
                    .iter()
                    .filter(|r| r.id.name() == name)
                    .map(move |r| (l.hostname().map(str::to_owned), r.hostnames.to_vec()))
            })
            .collect()
    };
    let a = (Some("a.com".to_owned()), vec!["a.com".to_owned()]);
    let b = (Some("b.com".to_owned()), vec!["b.com".to_owned()]);
    assert_eq!(per_listener("both"), [a.clone(), b.clone()]);
    assert_eq!(per_listener("twice"), [a, b]);
    let gw = t.status("Gateway", Some("default"), "gw").unwrap();
    assert_eq!(gw.listener("wild").unwrap().attached_routes(), 2);
    assert_eq!(gw.listener("a").unwrap().attached_routes(), 2);
}

#[test]
fn listener_conflicts_on_one_port() {
    // Indistinct listeners are all Conflicted (the spec forbids picking a winner); a
    // protocol conflict wins over a hostname conflict; the distinct listener is served.
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: a, port: 80, protocol: HTTP, hostname: a.com }
  - { name: dup, port: 80, protocol: HTTP, hostname: a.com }
  - { name: b, port: 80, protocol: HTTP, hostname: b.com }
  - { name: h, port: 81, protocol: HTTP }
  - { name: tls, port: 81, protocol: HTTPS, tls: { certificateRefs: [{ name: x }] } }
"#;
    let t = run(yaml);
    let gw = t.status("Gateway", Some("default"), "gw").unwrap();
    let reason = |l: &str| {
        gw.listener(l)
            .unwrap()
            .condition("Conflicted")
            .unwrap()
            .reason()
            .to_owned()
    };
    assert_eq!(reason("a"), "HostnameConflict");
    assert_eq!(reason("dup"), "HostnameConflict");
    assert_eq!(reason("b"), "NoConflicts");
    assert_eq!(reason("h"), "ProtocolConflict");
    assert_eq!(reason("tls"), "ProtocolConflict");
    assert_eq!(t.port(80).unwrap().listeners().len(), 1);
    assert!(t.port(81).is_none());
}

#[test]
fn allowed_routes_same_all_selector() {
    let yaml = r#"
apiVersion: v1
kind: Namespace
metadata: { name: team-a, labels: { team: a, tier: web } }
---
apiVersion: v1
kind: Namespace
metadata: { name: team-c, labels: { team: c } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: infra }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: same, port: 81, protocol: HTTP }
  - { name: all, port: 82, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }
  - name: sel
    port: 83
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels: { team: a }
          matchExpressions: [{ key: tier, operator: In, values: [web, api] }]
  - name: byname
    port: 84
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: { matchLabels: { kubernetes.io/metadata.name: team-b } }
  - name: grpc-only
    port: 85
    protocol: HTTP
    allowedRoutes: { namespaces: { from: All }, kinds: [{ kind: GRPCRoute }] }
"#
    .to_owned()
        + &["team-a", "team-b", "team-c", "infra"]
            .iter()
            .map(|ns| {
                format!(
                    r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r, namespace: {ns} }}
spec:
  parentRefs:
  - {{ name: gw, namespace: infra, sectionName: same }}
  - {{ name: gw, namespace: infra, sectionName: all }}
  - {{ name: gw, namespace: infra, sectionName: sel }}
  - {{ name: gw, namespace: infra, sectionName: byname }}
  - {{ name: gw, namespace: infra, sectionName: grpc-only }}
"#
                )
            })
            .collect::<String>();
    let t = run(&yaml);
    let accepted = |ns: &str| -> Vec<bool> {
        route_status(&t, "HTTPRoute", ns, "r")
            .parents()
            .iter()
            .map(|p| p.condition("Accepted").unwrap().is_true())
            .collect()
    };
    //                                same   all   sel    byname grpc-only
    assert_eq!(accepted("infra"), [true, true, false, false, false]);
    assert_eq!(accepted("team-a"), [false, true, true, false, false]);
    // team-b has no Namespace object: only its kubernetes.io/metadata.name label.
    assert_eq!(accepted("team-b"), [false, true, false, true, false]);
    assert_eq!(accepted("team-c"), [false, true, false, false, false]);
    let p = &route_status(&t, "HTTPRoute", "team-c", "r").parents()[0];
    assert_eq!(
        p.condition("Accepted").unwrap().reason(),
        "NotAllowedByListeners"
    );
    assert_eq!(t.routes_for_port(82).len(), 4);
    assert_eq!(t.routes_for_port(83).len(), 1);
    assert!(t.routes_for_port(85).is_empty());
}

fn cross_ns_fixture(grant: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: app }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: 80, protocol: HTTP }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: shared, namespace: global }}
spec: {{ ports: [{{ port: 9000 }}] }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r, namespace: app }}
spec:
  parentRefs: [{{ name: gw }}]
  rules: [{{ backendRefs: [{{ name: shared, namespace: global, port: 9000 }}] }}]
{grant}"#
    )
}

#[test]
fn cross_namespace_backend_needs_reference_grant() {
    // No grant.
    let t = run(&cross_ns_fixture(""));
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "app", "r", "ResolvedRefs"),
        (ConditionStatus::False, "RefNotPermitted".into())
    );
    // The route still serves; the refused share answers 500 through a name that never resolves.
    let r = route(&t, 80, "r").unwrap();
    assert!(
        r.rules[0].backends[0]
            .name
            .starts_with(INVALID_BACKEND_PREFIX)
    );
    assert!(t.upstreams().is_empty());
    assert!(
        t.errors()
            .iter()
            .any(|e| e.field() == "spec.rules[0].backendRefs[0]"
                && e.reason().contains("ReferenceGrant"))
    );

    // A grant for a different Service does not allow it.
    let other = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: { name: g, namespace: global }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app }]
  to: [{ group: "", kind: Service, name: other }]
"#;
    let t = run(&cross_ns_fixture(other));
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "app", "r", "ResolvedRefs"),
        (ConditionStatus::False, "RefNotPermitted".into())
    );

    // A grant from another namespace does not allow it either.
    let wrong_from = other
        .replace("namespace: app", "namespace: elsewhere")
        .replace("name: other", "name: shared");
    let t = run(&cross_ns_fixture(&wrong_from));
    assert!(
        !route_status(&t, "HTTPRoute", "app", "r").parents()[0]
            .condition("ResolvedRefs")
            .unwrap()
            .is_true()
    );

    // A v1beta1 grant for this Service (or all Services) allows it.
    for to in [
        "{ group: \"\", kind: Service, name: shared }",
        "{ group: \"\", kind: Service }",
    ] {
        let grant = format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{ name: g, namespace: global }}
spec:
  from: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app }}]
  to: [{to}]
"#
        );
        let t = run(&cross_ns_fixture(&grant));
        assert_eq!(
            parent_cond(&t, "HTTPRoute", "app", "r", "ResolvedRefs"),
            (ConditionStatus::True, "ResolvedRefs".into())
        );
        assert_eq!(
            route(&t, 80, "r").unwrap().rules[0].backends[0].name,
            "global/shared:9000"
        );
        assert!(t.upstreams().contains_key("global/shared:9000"));
    }
}

#[test]
fn missing_service_wrong_port_and_kind() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: missing }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: nosuch, port: 80 }, { name: web, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: badport }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: web, port: 81 }, { name: web }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: kind }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ group: example.com, kind: Bucket, name: b }] }]
"#;
    let t = run(yaml);
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "default", "missing", "ResolvedRefs"),
        (ConditionStatus::False, "BackendNotFound".into())
    );
    let r = route(&t, 80, "missing").unwrap();
    assert!(
        r.rules[0].backends[0]
            .name
            .starts_with(INVALID_BACKEND_PREFIX)
    );
    assert_eq!(r.rules[0].backends[1].name, "default/web:80");
    // Accepted stays true: the route serves, with a 500 share.
    assert!(
        route_status(&t, "HTTPRoute", "default", "missing").parents()[0]
            .condition("Accepted")
            .unwrap()
            .is_true()
    );
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "default", "badport", "ResolvedRefs"),
        (ConditionStatus::False, "BackendNotFound".into())
    );
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "default", "kind", "ResolvedRefs"),
        (ConditionStatus::False, "InvalidKind".into())
    );
    assert_eq!(t.upstreams().keys().collect::<Vec<_>>(), ["default/web:80"]);
}

#[test]
fn endpoint_slices_join_map_ports_and_conditions() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  ports:
  - { name: http, port: 80, targetPort: web }
  - { name: metrics, port: 9090 }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: metrics, port: 9090 }, { name: http, port: 8080 }]
endpoints:
- addresses: ["10.0.0.1"]
  zone: zone-a
  hostname: pod-1
- addresses: ["10.0.0.2"]
  conditions: { ready: false, serving: true, terminating: true }
- addresses: ["10.0.0.3"]
  conditions: { ready: false }
- addresses: ["10.0.0.9"]
  conditions: { ready: false, serving: false, terminating: true }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-2, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: http, port: 8081 }]
endpoints:
- addresses: ["10.0.0.4"]
  conditions: { ready: true, serving: true, terminating: false }
  zone: zone-b
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: other-1, labels: { kubernetes.io/service-name: other } }
addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: ["10.9.9.9"] }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-fqdn, labels: { kubernetes.io/service-name: web } }
addressType: FQDN
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: ["web.example.com"] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
"#;
    let t = run(yaml);
    let up = &t.upstreams()["default/web:80"];
    let got: Vec<_> = up
        .endpoints()
        .iter()
        .map(|e| {
            (
                e.addr().to_string(),
                e.state(),
                e.zone().map(str::to_owned),
                e.hostname().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "10.0.0.1:8080".into(),
                EndpointState::Ready,
                Some("zone-a".into()),
                Some("pod-1".into())
            ),
            (
                "10.0.0.2:8080".into(),
                EndpointState::Terminating,
                None,
                None
            ),
            ("10.0.0.3:8080".into(), EndpointState::NotReady, None, None),
            (
                "10.0.0.4:8081".into(),
                EndpointState::Ready,
                Some("zone-b".into()),
                None
            ),
            ("10.0.0.9:8080".into(), EndpointState::NotReady, None, None),
        ]
    );
}

#[test]
fn grpc_route_service_and_method_matching() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: grpc }
spec: { ports: [{ port: 50051 }] }
---
apiVersion: v1
kind: Service
metadata: { name: declared }
spec: { ports: [{ port: 8080, appProtocol: http }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: g }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches:
    - method: { service: pkg.Echo, method: Say }
    - method: { service: pkg.Echo }
    - method: { method: Say }
    - method: { type: RegularExpression, service: "pkg\\..*", method: "S.*" }
    - headers: [{ name: x-env, value: canary }]
    backendRefs: [{ name: grpc, port: 50051 }]
  - backendRefs: [{ name: declared, port: 8080 }]
"#;
    let t = run(yaml);
    let r = route(&t, 80, "grpc:g").unwrap();
    let paths: Vec<_> = r.rules[0].matches.iter().map(|m| m.path.clone()).collect();
    assert_eq!(
        paths,
        [
            Some(PathMatch::Exact("/pkg.Echo/Say".into())),
            Some(PathMatch::Prefix("/pkg.Echo".into())),
            Some(PathMatch::Regex("/[^/]+/Say".into())),
            Some(PathMatch::Regex("/(?:pkg\\..*)/(?:S.*)".into())),
            None,
        ]
    );
    assert_eq!(
        r.rules[0].matches[4].headers[0].value,
        StringMatch::Exact("canary".into())
    );
    assert_eq!(
        t.upstreams()["default/grpc:50051"].app_protocol(),
        AppProtocol::H2c
    );
    // The Service says HTTP/1.1: gatekit does not override it.
    assert_eq!(
        t.upstreams()["default/declared:8080"].app_protocol(),
        AppProtocol::Http1
    );
    assert_eq!(
        parent_cond(&t, "GRPCRoute", "default", "g", "Accepted"),
        (ConditionStatus::True, "Accepted".into())
    );
}

#[test]
fn every_http_route_filter_translates() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [{ port: 80 }] }
---
apiVersion: v1
kind: Service
metadata: { name: shadow }
spec: { ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: f }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - name: all-filters
    matches:
    - path: { type: Exact, value: /exact }
      method: POST
      headers: [{ name: x-a, value: "1" }, { type: RegularExpression, name: x-b, value: "v[0-9]+" }]
      queryParams: [{ name: q, value: x }]
    timeouts: { request: 10s, backendRequest: 500ms }
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: { set: [{ name: x-set, value: s }], add: [{ name: x-add, value: a }], remove: [x-rm] }
    - type: ResponseHeaderModifier
      responseHeaderModifier: { set: [{ name: x-resp, value: r }] }
    - type: URLRewrite
      urlRewrite: { hostname: internal, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } }
    - type: RequestMirror
      requestMirror: { backendRef: { name: shadow, port: 80 }, percent: 25 }
    - type: RequestMirror
      requestMirror: { backendRef: { name: shadow, port: 80 }, fraction: { numerator: 1, denominator: 3 } }
    backendRefs:
    - name: web
      port: 80
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: { add: [{ name: x-backend, value: web }] }
  - name: redirect
    matches: [{ path: { value: /old } }]
    filters:
    - type: RequestRedirect
      requestRedirect: { scheme: https, hostname: new.example.com, port: 8443, statusCode: 301, path: { type: ReplaceFullPath, replaceFullPath: /new } }
  - name: extension
    matches: [{ path: { value: /ext } }]
    filters: [{ type: ExtensionRef, extensionRef: { group: example.com, kind: Thing, name: t } }]
    backendRefs: [{ name: web, port: 80 }]
"#;
    let t = run(yaml);
    let r = route(&t, 80, "f").unwrap();
    let rule = &r.rules[0];
    assert_eq!(rule.name.as_deref(), Some("all-filters"));
    let m = &rule.matches[0];
    assert_eq!(m.path, Some(PathMatch::Exact("/exact".into())));
    assert_eq!(m.method, Some(http::Method::POST));
    assert_eq!(m.headers[1].value, StringMatch::Regex("v[0-9]+".into()));
    assert_eq!(m.query[0].name, "q");
    assert_eq!(
        rule.timeouts.request,
        Some(std::time::Duration::from_secs(10))
    );
    assert_eq!(
        rule.timeouts.backend_request,
        Some(std::time::Duration::from_millis(500))
    );
    match &rule.filters[..] {
        [
            Filter::RequestHeaderModifier(req),
            Filter::ResponseHeaderModifier(resp),
            Filter::UrlRewrite(rw),
            Filter::RequestMirror(m1),
            Filter::RequestMirror(m2),
        ] => {
            assert_eq!(req.set, [("x-set".to_owned(), "s".to_owned())]);
            assert_eq!(req.add, [("x-add".to_owned(), "a".to_owned())]);
            assert_eq!(req.remove, ["x-rm"]);
            assert_eq!(resp.set, [("x-resp".to_owned(), "r".to_owned())]);
            assert_eq!(rw.hostname.as_deref(), Some("internal"));
            assert_eq!(
                rw.path,
                Some(PathModifier::ReplacePrefixMatch("/v2".into()))
            );
            assert_eq!(m1.backend, "default/shadow:80");
            assert_eq!(m1.fraction, Some((25, 100)));
            assert_eq!(m2.fraction, Some((1, 3)));
        }
        other => panic!("unexpected filters {other:?}"),
    }
    match &rule.backends[0].filters[..] {
        [Filter::RequestHeaderModifier(h)] => {
            assert_eq!(h.add, [("x-backend".to_owned(), "web".to_owned())])
        }
        other => panic!("unexpected backend filters {other:?}"),
    }
    assert!(
        t.upstreams().contains_key("default/shadow:80"),
        "mirror targets are upstreams too"
    );
    match &r.rules[1].filters[..] {
        [Filter::RequestRedirect(rd)] => {
            assert_eq!(rd.scheme.as_deref(), Some("https"));
            assert_eq!(rd.hostname.as_deref(), Some("new.example.com"));
            assert_eq!(rd.port, Some(8443));
            assert_eq!(rd.status, 301);
            assert_eq!(rd.path, Some(PathModifier::ReplaceFullPath("/new".into())));
        }
        other => panic!("unexpected redirect {other:?}"),
    }
    // The ExtensionRef rule keeps its match but answers 500 (no backends, no filters).
    let ext = &r.rules[2];
    assert_eq!(ext.matches[0].path, Some(PathMatch::Prefix("/ext".into())));
    assert!(ext.backends.is_empty() && ext.filters.is_empty());
    let p = &route_status(&t, "HTTPRoute", "default", "f").parents()[0];
    assert!(p.condition("Accepted").unwrap().is_true());
    let pi = p.condition("PartiallyInvalid").unwrap();
    assert_eq!(pi.reason(), "UnsupportedValue");
    assert!(pi.message().contains("spec.rules[2].filters[0]"), "{pi}");
    let err = t
        .errors()
        .iter()
        .find(|e| e.field() == "spec.rules[2].filters[0]")
        .unwrap();
    assert_eq!(err.route().unwrap().name(), "f");
    assert!(err.reason().contains("ExtensionRef"));
}

#[test]
fn route_with_only_unsupported_rules_is_not_accepted() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: bad }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - timeouts: { request: "5" }
"#;
    let t = run(yaml);
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "default", "bad", "Accepted"),
        (ConditionStatus::False, "UnsupportedValue".into())
    );
    assert!(t.routes_for_port(80).is_empty());
    let e = &t.errors()[0];
    assert_eq!(e.field(), "spec.rules[0].timeouts.request");
    assert!(e.reason().contains("no unit"), "{}", e.reason());
}

#[test]
fn a_backend_request_timeout_longer_than_the_request_timeout_is_refused() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: bad }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - timeouts: { request: 1s, backendRequest: 1m }
  - timeouts: { request: 0s, backendRequest: 1m }
"#;
    let t = run(yaml);
    assert_eq!(t.errors().len(), 1, "{:?}", t.errors());
    let e = &t.errors()[0];
    assert_eq!(e.field(), "spec.rules[0].timeouts.backendRequest");
    assert!(e.reason().contains("timeouts.request"), "{}", e.reason());
}

#[test]
fn backend_policy_attaches_to_its_service() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: p, creationTimestamp: "2024-01-01T00:00:00Z" }
spec:
  targetRefs: [{ kind: Service, name: web }]
  loadBalancer:
    algorithm: consistent-hash
    hashKey: { type: Header, name: x-user }
    slowStart: { window: 30s }
    locality: { preferZone: zone-a, failoverThreshold: 70 }
    panicThreshold: 50
  healthCheck:
    active: { type: http, path: /healthz, interval: 5s, timeout: 1s, expectedStatuses: [{ start: 200, end: 299 }] }
    passive: { consecutive5xx: 5, baseEjectionTime: 30s, maxEjectionPercent: 50 }
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: later, creationTimestamp: "2024-02-01T00:00:00Z" }
spec:
  targetRefs: [{ name: web }]
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: orphan }
spec:
  targetRefs: [{ name: nosuch }]
"#;
    let t = run(yaml);
    let policy = t.upstreams()["default/web:80"].policy().unwrap();
    let lb = policy.load_balancer.as_ref().unwrap();
    assert_eq!(
        lb.algorithm,
        Some(gatekit_k8s::types::policy::Algorithm::ConsistentHash)
    );
    assert_eq!(
        lb.slow_start.as_ref().unwrap().window().unwrap(),
        std::time::Duration::from_secs(30)
    );
    let active = policy
        .health_check
        .as_ref()
        .unwrap()
        .active
        .as_ref()
        .unwrap();
    assert_eq!(
        active.interval().unwrap(),
        Some(std::time::Duration::from_secs(5))
    );
    let reason = |name: &str| {
        let c = t
            .status("BackendPolicy", Some("default"), name)
            .unwrap()
            .condition("Accepted")
            .unwrap();
        (c.is_true(), c.reason().to_owned())
    };
    assert_eq!(reason("p"), (true, "Accepted".into()));
    assert_eq!(reason("later"), (false, "Conflicted".into()));
    assert_eq!(reason("orphan"), (false, "TargetNotFound".into()));
    // An invalid BackendPolicy never reaches translation: the load refuses it
    // (tests/policy.rs).
}

#[test]
fn gateway_class_selection() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: gatekit }
spec: { controllerName: gatekit.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: other }
spec: { controllerName: example.com/other }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: mine }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: theirs }
spec:
  gatewayClassName: other
  listeners: [{ name: http, port: 81, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r }
spec:
  parentRefs: [{ name: theirs }]
"#;
    let t = run(yaml);
    assert!(
        t.status("GatewayClass", None, "gatekit")
            .unwrap()
            .condition("Accepted")
            .unwrap()
            .is_true()
    );
    assert!(t.status("GatewayClass", None, "other").is_none());
    assert!(t.status("Gateway", Some("default"), "theirs").is_none());
    assert_eq!(
        t.listeners().iter().map(|p| p.port()).collect::<Vec<_>>(),
        [80]
    );
    // A route attached only to another controller's Gateway gets no parent status from gatekit.
    assert!(
        route_status(&t, "HTTPRoute", "default", "r")
            .parents()
            .is_empty()
    );

    // Another class name served when configured.
    let (set, _) = ResourceSet::from_documents([("f.yaml", yaml)]).unwrap();
    let t = translate(
        &set,
        &TranslateOptions::default().gateway_class_name("other"),
    );
    assert_eq!(
        t.listeners().iter().map(|p| p.port()).collect::<Vec<_>>(),
        [81]
    );
}

#[test]
fn httproute_cors_filter_translates_on_rules_and_backend_refs() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: cors }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches: [{ path: { value: /cors } }]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1]
        exposeHeaders: [x-header-3]
        allowCredentials: true
        maxAge: 3600
    backendRefs:
    - name: web
      port: 80
      filters:
      - type: CORS
        cors: { allowOrigins: ["*"] }
  - matches: [{ path: { value: /bad-origin } }]
    filters:
    - type: CORS
      cors: { allowOrigins: ["ftp://x.com"] }
    backendRefs: [{ name: web, port: 80 }]
  - matches: [{ path: { value: /bad-age } }]
    filters:
    - type: CORS
      cors: { allowOrigins: ["*"], maxAge: 0 }
    backendRefs: [{ name: web, port: 80 }]
"#;
    let t = run(yaml);
    let r = route(&t, 80, "cors").unwrap();
    match &r.rules[0].filters[..] {
        [Filter::Cors(c)] => {
            assert_eq!(
                c.allow_origins,
                ["https://www.foo.com", "https://*.bar.com"]
            );
            assert_eq!(c.allow_methods, ["GET", "OPTIONS"]);
            assert_eq!(c.allow_headers, ["x-header-1"]);
            assert_eq!(c.expose_headers, ["x-header-3"]);
            assert!(c.allow_credentials);
            assert_eq!(c.max_age, Some(3600));
        }
        other => panic!("unexpected filters {other:?}"),
    }
    assert!(!r.rules[0].backends.is_empty());
    match &r.rules[0].backends[0].filters[..] {
        [Filter::Cors(c)] => {
            assert_eq!(c.allow_origins, ["*"]);
            assert!(!c.allow_credentials);
            assert_eq!(c.max_age, None);
        }
        other => panic!("unexpected backend filters {other:?}"),
    }
    // Invalid values drop their rule and are reported with the field.
    for (i, field, words) in [
        (1, "spec.rules[1].filters[0]", "cors.allowOrigins[0]"),
        (2, "spec.rules[2].filters[0]", "cors.maxAge"),
    ] {
        assert!(r.rules[i].backends.is_empty() && r.rules[i].filters.is_empty());
        let err = t.errors().iter().find(|e| e.field() == field).unwrap();
        assert!(err.reason().contains(words), "{err}");
    }
    let p = &route_status(&t, "HTTPRoute", "default", "cors").parents()[0];
    assert!(p.condition("Accepted").unwrap().is_true());
    let pi = p.condition("PartiallyInvalid").unwrap();
    assert!(pi.message().contains("cors.allowOrigins[0]"), "{pi}");
}
