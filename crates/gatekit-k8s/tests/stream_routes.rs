//! TLSRoute, TCPRoute and UDPRoute translation: TLS/TCP/UDP listeners, their conflicts
//! and route kinds, attachment and hostnames, statuses and reasons, backends
//! (ReferenceGrants, weights, invalid ones, UDP ports, `appProtocol`), and the
//! incremental translator agreeing with a full translation.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use gatekit_core::stream::StreamRoute;
use gatekit_k8s::status::{ConditionStatus, ResourceRef, ResourceStatus};
use gatekit_k8s::translate::{INVALID_BACKEND_PREFIX, Protocol, TlsMode};
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, Translator, translate};

fn set(yaml: &str) -> ResourceSet {
    let (set, warnings) =
        ResourceSet::from_documents([("fixture.yaml", yaml)]).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    set
}

fn run(yaml: &str) -> Translation {
    translate(&set(yaml), &TranslateOptions::default())
}

fn status<'a>(t: &'a Translation, kind: &str, name: &str) -> &'a ResourceStatus {
    t.status(kind, Some("default"), name)
        .unwrap_or_else(|| panic!("no status for {kind} {name}: {:#?}", t.statuses()))
}

/// (status, reason) of a condition of a route's parent `i`.
fn parent_cond(
    t: &Translation,
    kind: &str,
    name: &str,
    i: usize,
    type_: &str,
) -> (ConditionStatus, String) {
    let s = status(t, kind, name);
    let c = s.parents()[i]
        .condition(type_)
        .unwrap_or_else(|| panic!("no {type_} on {name}: {s:#?}"));
    (c.status(), c.reason().to_owned())
}

fn accepted(t: &Translation, kind: &str, name: &str) -> (ConditionStatus, String) {
    parent_cond(t, kind, name, 0, "Accepted")
}

fn yes(reason: &str) -> (ConditionStatus, String) {
    (ConditionStatus::True, reason.to_owned())
}

fn no(reason: &str) -> (ConditionStatus, String) {
    (ConditionStatus::False, reason.to_owned())
}

/// (status, reason) of a listener condition of Gateway `gw`.
fn listener_cond(
    t: &Translation,
    gw: &str,
    listener: &str,
    type_: &str,
) -> (ConditionStatus, String) {
    let c = status(t, "Gateway", gw)
        .listener(listener)
        .unwrap_or_else(|| panic!("no listener {listener}"))
        .condition(type_)
        .unwrap();
    (c.status(), c.reason().to_owned())
}

fn attached(t: &Translation, gw: &str, listener: &str) -> u32 {
    status(t, "Gateway", gw)
        .listener(listener)
        .unwrap()
        .attached_routes()
}

/// The stream routes of the listener `name` (on whatever port it is).
fn stream_routes<'a>(t: &'a Translation, name: &str) -> Vec<&'a StreamRoute> {
    for port in t.listeners() {
        for l in port.listeners() {
            if l.name() == name {
                return port
                    .listener_stream_routes(l)
                    .iter()
                    .map(|r| &**r)
                    .collect();
            }
        }
    }
    panic!("no programmed listener {name}")
}

fn backends(r: &StreamRoute) -> Vec<(&str, u32)> {
    r.backends
        .iter()
        .map(|b| (b.name.as_str(), b.weight))
        .collect()
}

/// A real self-signed pair (translation checks that the key is the certificate's and
/// that it is valid now): certificate PEM, key PEM.
static PAIR: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    let c = rcgen::generate_simple_self_signed(vec!["example.com".to_owned()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
});

fn secret(name: &str) -> String {
    format!(
        r#"
---
apiVersion: v1
kind: Secret
metadata: {{ name: {name} }}
type: kubernetes.io/tls
stringData:
  tls.crt: "{}"
  tls.key: "{}"
"#,
        PAIR.0.replace('\n', "\\n"),
        PAIR.1.replace('\n', "\\n")
    )
}

/// A Service `name` with one port (`protocol`, `appProtocol` optional) and an
/// EndpointSlice with one endpoint.
fn service(name: &str, port: u16, protocol: &str, app_protocol: Option<&str>) -> String {
    let app = app_protocol.map_or(String::new(), |a| format!(", appProtocol: {a}"));
    format!(
        r#"
---
apiVersion: v1
kind: Service
metadata: {{ name: {name} }}
spec:
  ports: [{{ port: {port}, protocol: {protocol}{app} }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: {name}-1, labels: {{ kubernetes.io/service-name: {name} }} }}
addressType: IPv4
ports: [{{ port: {port}, protocol: {protocol} }}]
endpoints: [{{ addresses: [10.0.0.1] }}]
"#
    )
}

const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, generation: 2 }
spec:
  gatewayClassName: gatekit
  listeners:
  - name: pass
    port: 443
    protocol: TLS
    hostname: "*.example.com"
    tls: { mode: Passthrough }
  - name: term
    port: 443
    protocol: TLS
    hostname: term.example.org
    tls: { mode: Terminate, certificateRefs: [{ name: cert }] }
  - { name: tcp, port: 5432, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
  - { name: http, port: 80, protocol: HTTP }
"#;

#[test]
fn stream_listeners_are_programmed_by_protocol_and_mode() {
    let yaml = format!(
        r#"{GATEWAY}
  - name: term-nocert
    port: 8443
    protocol: TLS
    tls: {{ mode: Terminate }}
  - name: default-mode
    port: 9443
    protocol: TLS
    tls: {{ certificateRefs: [{{ name: cert }}] }}
{}"#,
        secret("cert")
    );
    let t = run(&yaml);
    // Passthrough and Terminate share port 443 (TLSRouteModeMixed), told apart by
    // hostname.
    let p443 = t.port(443).unwrap();
    assert_eq!(p443.protocol(), Protocol::Tls);
    let modes: Vec<_> = p443
        .listeners()
        .iter()
        .map(|l| (l.name(), l.tls_mode(), l.certificates().len()))
        .collect();
    assert_eq!(
        modes,
        [
            ("pass", Some(TlsMode::Passthrough), 0),
            ("term", Some(TlsMode::Terminate), 1)
        ]
    );
    assert_eq!(t.port(5432).unwrap().protocol(), Protocol::Tcp);
    assert_eq!(t.port(53).unwrap().protocol(), Protocol::Udp);
    assert_eq!(t.port(5432).unwrap().listeners()[0].tls_mode(), None);
    assert_eq!(t.port(80).unwrap().listeners()[0].tls_mode(), None);
    // Terminate is the default mode and needs certificates.
    assert_eq!(
        t.port(9443).unwrap().listeners()[0].tls_mode(),
        Some(TlsMode::Terminate)
    );
    assert_eq!(
        listener_cond(&t, "gw", "term-nocert", "ResolvedRefs"),
        no("InvalidCertificateRef")
    );
    assert_eq!(
        listener_cond(&t, "gw", "term-nocert", "Programmed"),
        no("Invalid")
    );
    assert!(t.port(8443).is_none());
    for l in ["pass", "term", "tcp", "udp", "default-mode"] {
        assert_eq!(
            listener_cond(&t, "gw", l, "Accepted"),
            yes("Accepted"),
            "{l}"
        );
        assert_eq!(
            listener_cond(&t, "gw", l, "Programmed"),
            yes("Programmed"),
            "{l}"
        );
        assert_eq!(
            listener_cond(&t, "gw", l, "Conflicted"),
            no("NoConflicts"),
            "{l}"
        );
    }
    // Supported kinds by protocol.
    let gw = status(&t, "Gateway", "gw");
    let kinds = |l: &str| gw.listener(l).unwrap().supported_kinds().to_vec();
    assert_eq!(kinds("pass"), ["TLSRoute"]);
    assert_eq!(kinds("term"), ["TLSRoute"]);
    assert_eq!(kinds("tcp"), ["TCPRoute"]);
    assert_eq!(kinds("udp"), ["UDPRoute"]);
    assert_eq!(kinds("http"), ["HTTPRoute", "GRPCRoute"]);
}

#[test]
fn stream_listener_conflicts_on_one_port() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw }}
spec:
  gatewayClassName: gatekit
  listeners:
  # TCP listeners are told apart by port only: a hostname does not help.
  - {{ name: tcp-a, port: 1000, protocol: TCP, hostname: a.com }}
  - {{ name: tcp-b, port: 1000, protocol: TCP, hostname: b.com }}
  - {{ name: udp-a, port: 1001, protocol: UDP }}
  - {{ name: udp-b, port: 1001, protocol: UDP }}
  # HTTPS and TLS on one port: protocol conflict.
  - {{ name: https, port: 1002, protocol: HTTPS, tls: {{ certificateRefs: [{{ name: cert }}] }} }}
  - {{ name: tls, port: 1002, protocol: TLS, tls: {{ mode: Passthrough }} }}
  # TLS and TCP on one port: protocol conflict.
  - {{ name: tls2, port: 1003, protocol: TLS, tls: {{ mode: Passthrough }} }}
  - {{ name: tcp2, port: 1003, protocol: TCP }}
  # Two TLS listeners with one hostname, whatever their modes.
  - {{ name: t1, port: 1004, protocol: TLS, hostname: x.com, tls: {{ mode: Passthrough }} }}
  - {{ name: t2, port: 1004, protocol: TLS, hostname: x.com, tls: {{ certificateRefs: [{{ name: cert }}] }} }}
  # Distinct by hostname: both served.
  - {{ name: t3, port: 1005, protocol: TLS, hostname: a.com, tls: {{ mode: Passthrough }} }}
  - {{ name: t4, port: 1005, protocol: TLS, hostname: b.com, tls: {{ mode: Passthrough }} }}
{}"#,
        secret("cert")
    );
    let t = run(&yaml);
    let conflict = |l: &str| listener_cond(&t, "gw", l, "Conflicted");
    for l in ["tcp-a", "tcp-b", "udp-a", "udp-b", "t1", "t2"] {
        assert_eq!(conflict(l), yes("HostnameConflict"), "{l}");
    }
    for l in ["https", "tls", "tls2", "tcp2"] {
        assert_eq!(conflict(l), yes("ProtocolConflict"), "{l}");
    }
    for p in 1000..=1004 {
        assert!(t.port(p).is_none(), "port {p} is served");
    }
    assert_eq!(conflict("t3"), no("NoConflicts"));
    assert_eq!(t.port(1005).unwrap().listeners().len(), 2);

    // Across Gateways the older one keeps the port.
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: old, creationTimestamp: "2024-01-01T00:00:00Z" }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: tcp, port: 2000, protocol: TCP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: new, creationTimestamp: "2024-01-02T00:00:00Z" }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: tcp, port: 2000, protocol: TCP }
  - { name: http, port: 2000, protocol: HTTP }
"#;
    let t = run(yaml);
    assert_eq!(
        listener_cond(&t, "old", "tcp", "Conflicted"),
        no("NoConflicts")
    );
    assert_eq!(
        listener_cond(&t, "new", "tcp", "Conflicted").0,
        ConditionStatus::True
    );
    assert_eq!(
        listener_cond(&t, "new", "http", "Conflicted").0,
        ConditionStatus::True
    );
    let port = t.port(2000).unwrap();
    assert_eq!(port.listeners().len(), 1);
    assert_eq!(port.listeners()[0].gateway().name(), "old");
}

#[test]
fn udp_and_tcp_based_listeners_share_a_port_number_without_conflict() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: dns, creationTimestamp: "2024-01-01T00:00:00Z" }
spec:
  gatewayClassName: gatekit
  listeners:
  # DNS: 53/TCP and 53/UDP.
  - { name: dns-tcp, port: 53, protocol: TCP }
  - { name: dns-udp, port: 53, protocol: UDP }
  # TLS and UDP (QUIC-like) on one number.
  - { name: tls, port: 443, protocol: TLS, tls: { mode: Passthrough } }
  - { name: quic, port: 443, protocol: UDP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: web, creationTimestamp: "2024-01-02T00:00:00Z" }
spec:
  gatewayClassName: gatekit
  listeners:
  # Across Gateways too: HTTP on a number an older Gateway serves over UDP.
  - { name: http, port: 443, protocol: HTTP }
  - { name: udp, port: 53, protocol: UDP }
"#;
    let t = run(yaml);
    for l in ["dns-tcp", "dns-udp", "tls", "quic"] {
        assert_eq!(
            listener_cond(&t, "dns", l, "Conflicted"),
            no("NoConflicts"),
            "{l}"
        );
    }
    // A TCP-based protocol still conflicts with another on the TCP port; UDP with UDP
    // by hostname (none).
    assert_eq!(
        listener_cond(&t, "web", "http", "Conflicted"),
        yes("ProtocolConflict")
    );
    assert_eq!(
        listener_cond(&t, "web", "udp", "Conflicted"),
        yes("HostnameConflict")
    );
    let served: Vec<(u16, Protocol)> = t
        .listeners()
        .iter()
        .map(|p| (p.port(), p.protocol()))
        .collect();
    assert_eq!(
        served,
        [
            (53, Protocol::Tcp),
            (53, Protocol::Udp),
            (443, Protocol::Tls),
            (443, Protocol::Udp)
        ]
    );
    assert_eq!(t.port(53).unwrap().protocol(), Protocol::Tcp);
    assert_eq!(
        t.port_over(53, true).unwrap().listeners()[0].name(),
        "dns-udp"
    );
    assert_eq!(t.port_over(443, false).unwrap().protocol(), Protocol::Tls);
}

#[test]
fn route_kinds_must_fit_the_listener_protocol() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw }}
spec:
  gatewayClassName: gatekit
  listeners:
  # TLSRouteListenerPassthroughSupportedKinds: TCPRoute is not a TLS listener's kind.
  - name: tls
    port: 443
    protocol: TLS
    allowedRoutes: {{ kinds: [{{ kind: TCPRoute }}, {{ kind: TLSRoute }}] }}
    tls: {{ mode: Passthrough }}
  - name: tcp-http
    port: 1000
    protocol: TCP
    allowedRoutes: {{ kinds: [{{ kind: HTTPRoute }}] }}
  - {{ name: http, port: 80, protocol: HTTP }}
  - {{ name: https, port: 8443, protocol: HTTPS, tls: {{ certificateRefs: [{{ name: cert }}] }} }}
  - {{ name: tcp, port: 1001, protocol: TCP }}
{}{}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: tcp-on-http }}
spec:
  parentRefs: [{{ name: gw, sectionName: http }}]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{ name: tls-on-https }}
spec:
  parentRefs: [{{ name: gw, sectionName: https }}]
  hostnames: [a.example.com]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{ name: udp-on-tls }}
spec:
  parentRefs: [{{ name: gw, sectionName: tls }}]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: http-on-tcp }}
spec:
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: tcp-nosection }}
spec:
  parentRefs: [{{ name: gw, sectionName: nosuch }}]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
"#,
        secret("cert"),
        service("db", 5432, "TCP", None)
    );
    let t = run(&yaml);
    let gw = status(&t, "Gateway", "gw");
    assert_eq!(gw.listener("tls").unwrap().supported_kinds(), ["TLSRoute"]);
    assert_eq!(
        listener_cond(&t, "gw", "tls", "ResolvedRefs"),
        no("InvalidRouteKinds")
    );
    assert_eq!(
        listener_cond(&t, "gw", "tls", "Programmed"),
        yes("Programmed")
    );
    assert!(
        gw.listener("tcp-http")
            .unwrap()
            .supported_kinds()
            .is_empty()
    );
    assert_eq!(
        listener_cond(&t, "gw", "tcp-http", "ResolvedRefs"),
        no("InvalidRouteKinds")
    );
    assert!(t.port(1000).is_none());
    for route in [
        ("TCPRoute", "tcp-on-http"),
        ("TLSRoute", "tls-on-https"),
        ("UDPRoute", "udp-on-tls"),
        ("HTTPRoute", "http-on-tcp"),
    ] {
        assert_eq!(
            accepted(&t, route.0, route.1),
            no("NotAllowedByListeners"),
            "{route:?}"
        );
    }
    assert_eq!(
        accepted(&t, "TCPRoute", "tcp-nosection"),
        no("NoMatchingParent")
    );
    for l in ["tls", "http", "https", "tcp"] {
        assert_eq!(attached(&t, "gw", l), 0, "{l}");
    }
    assert!(t.upstreams().is_empty());
}

#[test]
fn tls_route_hostnames_intersect_with_the_listener() {
    let yaml = format!(
        r#"{GATEWAY}{}{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{ name: some, generation: 4, creationTimestamp: "2024-01-02T00:00:00Z" }}
spec:
  parentRefs: [{{ name: gw, sectionName: pass }}]
  hostnames: [a.example.com, other.org, "*.b.example.com"]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{ name: wide, creationTimestamp: "2024-01-01T00:00:00Z" }}
spec:
  parentRefs: [{{ name: gw, port: 443 }}]
  hostnames: ["*.org"]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{ name: none }}
spec:
  parentRefs: [{{ name: gw, sectionName: pass }}]
  hostnames: [other.org]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
"#,
        secret("cert"),
        service("db", 5432, "TCP", None)
    );
    let t = run(&yaml);
    let pass = stream_routes(&t, "pass");
    assert_eq!(pass.len(), 1);
    assert_eq!(pass[0].id.name(), "tls:some");
    assert_eq!(pass[0].hostnames, ["a.example.com", "*.b.example.com"]);
    assert_eq!(backends(pass[0]), [("default/db:5432", 1)]);
    // A wildcard route hostname on an exact listener: the listener's hostname.
    let term = stream_routes(&t, "term");
    assert_eq!(term.len(), 1);
    assert_eq!(term[0].id.name(), "tls:wide");
    assert_eq!(term[0].hostnames, ["term.example.org"]);
    assert_eq!(term[0].created, 1_704_067_200);
    assert_eq!(accepted(&t, "TLSRoute", "some"), yes("Accepted"));
    assert_eq!(
        parent_cond(&t, "TLSRoute", "some", 0, "ResolvedRefs"),
        yes("ResolvedRefs")
    );
    assert_eq!(
        status(&t, "TLSRoute", "some").parents()[0].conditions()[0].observed_generation(),
        Some(4)
    );
    assert_eq!(accepted(&t, "TLSRoute", "wide"), yes("Accepted"));
    assert_eq!(
        accepted(&t, "TLSRoute", "none"),
        no("NoMatchingListenerHostname")
    );
    assert_eq!(attached(&t, "gw", "pass"), 1);
    assert_eq!(attached(&t, "gw", "term"), 1);
    assert!(t.upstreams().contains_key("default/db:5432"));
}

#[test]
fn several_tcp_routes_on_a_listener_are_all_accepted_oldest_first() {
    let yaml = format!(
        r#"{GATEWAY}{}{}{}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: a-newer, creationTimestamp: "2024-01-02T00:00:00Z" }}
spec:
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules: [{{ backendRefs: [{{ name: two, port: 3000 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{ name: z-older, creationTimestamp: "2024-01-01T00:00:00Z" }}
spec:
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules: [{{ backendRefs: [{{ name: one, port: 3000 }}] }}]
"#,
        secret("cert"),
        service("one", 3000, "TCP", None),
        service("two", 3000, "TCP", None)
    );
    let t = run(&yaml);
    assert_eq!(accepted(&t, "TCPRoute", "a-newer"), yes("Accepted"));
    assert_eq!(accepted(&t, "TCPRoute", "z-older"), yes("Accepted"));
    assert_eq!(attached(&t, "gw", "tcp"), 2);
    let routes = stream_routes(&t, "tcp");
    let names: Vec<_> = routes.iter().map(|r| r.id.name()).collect();
    assert_eq!(names, ["tcp:z-older", "tcp:a-newer"]);
    assert!(
        routes
            .iter()
            .all(|r| r.hostnames.is_empty() && r.idle_timeout.is_none())
    );
    let port = t.port(5432).unwrap();
    assert_eq!(port.stream_routes().len(), 2);
    assert!(port.routes().is_empty());
}

#[test]
fn cross_namespace_backends_need_a_reference_grant() {
    let grant = r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: allow, namespace: data }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: TCPRoute, namespace: default }]
  to: [{ group: "", kind: Service }]
"#;
    let base = format!(
        r#"{GATEWAY}{}
---
apiVersion: v1
kind: Service
metadata: {{ name: db, namespace: data }}
spec: {{ ports: [{{ port: 5432 }}] }}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: r }}
spec:
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules: [{{ backendRefs: [{{ name: db, namespace: data, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{ name: t }}
spec:
  parentRefs: [{{ name: gw, sectionName: pass }}]
  hostnames: [a.example.com]
  rules: [{{ backendRefs: [{{ name: db, namespace: data, port: 5432 }}] }}]
"#,
        secret("cert")
    );
    let t = run(&base);
    assert_eq!(accepted(&t, "TCPRoute", "r"), yes("Accepted"));
    assert_eq!(
        parent_cond(&t, "TCPRoute", "r", 0, "ResolvedRefs"),
        no("RefNotPermitted")
    );
    let tcp = stream_routes(&t, "tcp");
    assert!(tcp[0].backends[0].name.starts_with(INVALID_BACKEND_PREFIX));
    assert!(t.upstreams().is_empty());
    assert!(
        t.errors()
            .iter()
            .any(|e| e.field() == "spec.rules[0].backendRefs[0]"),
        "{:?}",
        t.errors()
    );

    let t = run(&format!("{base}{grant}"));
    assert_eq!(
        parent_cond(&t, "TCPRoute", "r", 0, "ResolvedRefs"),
        yes("ResolvedRefs")
    );
    assert_eq!(backends(stream_routes(&t, "tcp")[0]), [("data/db:5432", 1)]);
    assert!(t.upstreams().contains_key("data/db:5432"));
    // The grant names TCPRoutes: a TLSRoute is still refused.
    assert_eq!(
        parent_cond(&t, "TLSRoute", "t", 0, "ResolvedRefs"),
        no("RefNotPermitted")
    );
}

#[test]
fn weights_and_invalid_backends() {
    let yaml = format!(
        r#"{GATEWAY}{}{}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: r }}
spec:
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules:
  - backendRefs:
    - {{ name: a, port: 1, weight: 3 }}
    - {{ name: missing, port: 1, weight: 1 }}
  - backendRefs:
    - {{ name: a, port: 2 }}
    - {{ group: example.com, kind: Thing, name: a, port: 1, weight: 0 }}
"#,
        secret("cert"),
        service("a", 1, "TCP", None)
    );
    let t = run(&yaml);
    let r = stream_routes(&t, "tcp")[0];
    assert_eq!(
        backends(r),
        [
            ("default/a:1", 3),
            ("!invalid:default/missing:1", 1),
            ("!invalid:default/a:2", 1),
            ("!invalid:default/a:1", 0),
        ]
    );
    // The route is accepted; ResolvedRefs gives the first refusal's reason and every
    // refusal's message.
    assert_eq!(accepted(&t, "TCPRoute", "r"), yes("Accepted"));
    let s = status(&t, "TCPRoute", "r");
    let resolved = s.parents()[0].condition("ResolvedRefs").unwrap();
    assert_eq!(resolved.reason(), "BackendNotFound");
    assert!(
        resolved
            .message()
            .contains("Service default/missing not found")
    );
    assert!(resolved.message().contains("has no port 2"));
    assert!(resolved.message().contains("example.com/Thing"));
    assert_eq!(t.upstreams().keys().collect::<Vec<_>>(), ["default/a:1"]);
    assert_eq!(t.upstreams()["default/a:1"].endpoints().len(), 1);

    // InvalidKind first: TLSRouteInvalidBackendRefUnknownKind.
    let yaml = format!(
        r#"{GATEWAY}{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{ name: t }}
spec:
  parentRefs: [{{ name: gw, sectionName: pass }}]
  hostnames: [a.example.com]
  rules: [{{ backendRefs: [{{ group: example.com, kind: Unknown, name: x, port: 1 }}] }}]
"#,
        secret("cert")
    );
    let t = run(&yaml);
    assert_eq!(
        parent_cond(&t, "TLSRoute", "t", 0, "ResolvedRefs"),
        no("InvalidKind")
    );
    assert_eq!(accepted(&t, "TLSRoute", "t"), yes("Accepted"));
}

#[test]
fn udp_routes_use_udp_service_ports() {
    // One port number for TCP and UDP, as DNS Services have: the UDPRoute gets the UDP
    // port's endpoints under its own upstream name, the TCPRoute the TCP port's.
    let yaml = format!(
        r#"{GATEWAY}{}
---
apiVersion: v1
kind: Service
metadata: {{ name: dns }}
spec:
  ports:
  - {{ name: dns-tcp, port: 53, protocol: TCP, targetPort: 1053 }}
  - {{ name: dns, port: 53, protocol: UDP, targetPort: 2053 }}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: dns-1, labels: {{ kubernetes.io/service-name: dns }} }}
addressType: IPv4
ports: [{{ name: dns-tcp, port: 1053, protocol: TCP }}, {{ name: dns, port: 2053, protocol: UDP }}]
endpoints: [{{ addresses: [10.0.0.9] }}]
{}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{ name: u }}
spec:
  parentRefs: [{{ name: gw, sectionName: udp }}]
  rules: [{{ backendRefs: [{{ name: dns, port: 53 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: t }}
spec:
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules: [{{ backendRefs: [{{ name: dns, port: 53 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{ name: u-on-tcp-port }}
spec:
  parentRefs: [{{ name: gw, sectionName: udp }}]
  rules: [{{ backendRefs: [{{ name: tcponly, port: 7 }}] }}]
"#,
        secret("cert"),
        service("tcponly", 7, "TCP", None)
    );
    let t = run(&yaml);
    let udp = stream_routes(&t, "udp");
    assert_eq!(backends(udp[0]), [("default/dns:53/udp", 1)]);
    assert_eq!(
        backends(stream_routes(&t, "tcp")[0]),
        [("default/dns:53", 1)]
    );
    let port_of = |name: &str| {
        t.upstreams()[name]
            .endpoints()
            .iter()
            .map(|e| e.addr().port())
            .collect::<Vec<_>>()
    };
    assert_eq!(port_of("default/dns:53/udp"), [2053]);
    assert_eq!(port_of("default/dns:53"), [1053]);
    assert_eq!(
        gatekit_k8s::translate::udp_backend_name("default", "dns", 53),
        "default/dns:53/udp"
    );
    assert_eq!(
        parent_cond(&t, "UDPRoute", "u-on-tcp-port", 0, "ResolvedRefs"),
        no("UnsupportedProtocol")
    );
    assert_eq!(attached(&t, "gw", "udp"), 2);
}

#[test]
fn stream_backends_ignore_the_app_protocol() {
    // A port that asks for TLS cannot be an HTTP upstream, but bytes pass through a
    // TCPRoute untouched.
    let yaml = format!(
        r#"{GATEWAY}{}{}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: t }}
spec:
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules: [{{ backendRefs: [{{ name: secure, port: 443 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: h }}
spec:
  parentRefs: [{{ name: gw, sectionName: http }}]
  rules: [{{ backendRefs: [{{ name: secure, port: 443 }}] }}]
"#,
        secret("cert"),
        service("secure", 443, "TCP", Some("https"))
    );
    let t = run(&yaml);
    assert_eq!(
        parent_cond(&t, "TCPRoute", "t", 0, "ResolvedRefs"),
        yes("ResolvedRefs")
    );
    assert_eq!(
        parent_cond(&t, "HTTPRoute", "h", 0, "ResolvedRefs"),
        no("UnsupportedProtocol")
    );
    assert_eq!(t.upstreams()["default/secure:443"].endpoints().len(), 1);
}

#[test]
fn default_gateways_are_reported_not_ignored() {
    let yaml = format!(
        r#"{GATEWAY}{}{}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: t }}
spec:
  useDefaultGateways: All
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
"#,
        secret("cert"),
        service("db", 5432, "TCP", None)
    );
    let t = run(&yaml);
    assert!(
        t.errors()
            .iter()
            .any(|e| e.field() == "spec.useDefaultGateways"),
        "{:?}",
        t.errors()
    );
    assert_eq!(accepted(&t, "TCPRoute", "t"), yes("Accepted"));
}

#[test]
fn incremental_translation_agrees_with_full_for_stream_changes() {
    let base = format!(
        r#"{GATEWAY}{}{}{}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: t }}
spec:
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: h }}
spec:
  parentRefs: [{{ name: gw, sectionName: http }}]
  rules: [{{ backendRefs: [{{ name: web, port: 80 }}] }}]
"#,
        secret("cert"),
        service("db", 5432, "TCP", None),
        service("web", 80, "TCP", None)
    );
    let mut translator = Translator::new(TranslateOptions::default());
    let first = set(&base);
    translator.translate(&first, None);
    let changed = |kind: &str, name: &str| -> BTreeSet<ResourceRef> {
        [ResourceRef::of_kind(kind, Some("default"), name).unwrap()]
            .into_iter()
            .collect()
    };
    let steps: Vec<(String, BTreeSet<ResourceRef>)> = vec![
        // A new TLSRoute.
        (
            format!(
                r#"{base}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{ name: s }}
spec:
  parentRefs: [{{ name: gw, sectionName: pass }}]
  hostnames: [a.example.com]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
"#
            ),
            changed("TLSRoute", "s"),
        ),
        // The Service the TCPRoute uses goes away.
        (
            base.replace(
                "\n---\napiVersion: v1\nkind: Service\nmetadata: { name: db }\nspec:\n  ports: [{ port: 5432, protocol: TCP }]",
                "",
            ),
            changed("Service", "db"),
        ),
        // Back, and the HTTPRoute changes (the incremental path).
        (
            base.replace("name: web, port: 80 }] }]", "name: db, port: 5432 }] }]"),
            [
                ResourceRef::of_kind("Service", Some("default"), "db").unwrap(),
                ResourceRef::of_kind("HTTPRoute", Some("default"), "h").unwrap(),
            ]
            .into_iter()
            .collect(),
        ),
        // An EndpointSlice of a stream backend changes (and the HTTPRoute goes back).
        (
            base.replace("endpoints: [{ addresses: [10.0.0.1] }]\n\n---\napiVersion: v1\nkind: Service\nmetadata: { name: web }", "endpoints: [{ addresses: [10.0.0.7] }]\n\n---\napiVersion: v1\nkind: Service\nmetadata: { name: web }"),
            [
                ResourceRef::of_kind("EndpointSlice", Some("default"), "db-1").unwrap(),
                ResourceRef::of_kind("HTTPRoute", Some("default"), "h").unwrap(),
            ]
            .into_iter()
            .collect(),
        ),
    ];
    for (i, (yaml, changed)) in steps.iter().enumerate() {
        let resources = set(yaml);
        let incremental = translator.translate(&resources, Some(changed));
        let full = translate(&resources, &TranslateOptions::default());
        assert_eq!(
            format!("{incremental:?}"),
            format!("{full:?}"),
            "step {i} differs"
        );
        // Stream routes and the Services they name are frame changes; an
        // EndpointSlice and an HTTPRoute change are incremental.
        assert_eq!(incremental.changes().is_some(), i == 3, "step {i}");
    }
    // The last step moved the db endpoint.
    let last = translate(&set(&steps[3].0), &TranslateOptions::default());
    assert_eq!(
        last.upstreams()["default/db:5432"].endpoints()[0]
            .addr()
            .ip()
            .to_string(),
        "10.0.0.7"
    );
}

#[test]
fn a_v1alpha2_tls_route_without_hostnames_takes_the_listeners() {
    let yaml = format!(
        r#"{GATEWAY}{}{}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{ name: any }}
spec:
  parentRefs: [{{ name: gw, sectionName: pass }}]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
"#,
        secret("cert"),
        service("db", 5432, "TCP", None)
    );
    let t = run(&yaml);
    assert_eq!(accepted(&t, "TLSRoute", "any"), yes("Accepted"));
    assert_eq!(stream_routes(&t, "pass")[0].hostnames, ["*.example.com"]);
}

#[tokio::test]
async fn stream_route_statuses_are_written_back() {
    use gatekit_k8s::status_write::StatusWriter;
    use gatekit_k8s::types::{Gateway, Service, TcpRoute, TlsRoute, UdpRoute};
    use serde_json::Value;

    use gatekit_k8s_fake::{FakeApiServer, ResourceType};
    let gw = "gateway.networking.k8s.io";
    let fake = FakeApiServer::builder()
        .resource(ResourceType::new(
            gw,
            "v1",
            "tlsroutes",
            "TLSRoute",
            true,
            true,
        ))
        .resource(ResourceType::new(
            gw,
            "v1alpha2",
            "tcproutes",
            "TCPRoute",
            true,
            true,
        ))
        .resource(ResourceType::new(
            gw,
            "v1alpha2",
            "udproutes",
            "UDPRoute",
            true,
            true,
        ))
        .start()
        .await;
    let yaml = format!(
        r#"{GATEWAY}{}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{ name: t, namespace: default }}
spec:
  parentRefs: [{{ name: gw, sectionName: tcp }}]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{ name: s, namespace: default }}
spec:
  parentRefs: [{{ name: gw, sectionName: pass }}]
  hostnames: [other.org]
  rules: [{{ backendRefs: [{{ name: db, port: 5432 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{ name: u, namespace: default }}
spec:
  parentRefs: [{{ name: gw, sectionName: udp }}]
  rules: [{{ backendRefs: [{{ name: missing, port: 53 }}] }}]
"#,
        service("db", 5432, "TCP", None)
    );
    for doc in yaml.split("\n---\n").filter(|d| !d.trim().is_empty()) {
        let mut v: Value = serde_norway::from_str(doc).unwrap();
        if v["kind"] != "EndpointSlice" {
            v["metadata"]["namespace"] = "default".into();
            fake.apply_json(v);
        }
    }
    let mut set = ResourceSet::default();
    set.gateways = fake.list::<Gateway>();
    set.services = fake.list::<Service>().iter().map(Into::into).collect();
    set.tcp_routes = fake.list::<TcpRoute>();
    set.tls_routes = fake.list::<TlsRoute>();
    set.udp_routes = fake.list::<UdpRoute>();
    let t = translate(&set, &TranslateOptions::default());
    let mut writer = StatusWriter::new(fake.client());
    let report = writer.resync(&t).await;
    assert_eq!(report.failed, 0, "{report:?}");

    let parent = |status: Value| status["status"]["parents"][0].clone();
    let cond = |p: &Value, type_: &str| {
        p["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .map(|c| (c["status"].clone(), c["reason"].clone()))
            .unwrap()
    };
    let tcp =
        parent(serde_json::to_value(fake.get::<TcpRoute>(Some("default"), "t").unwrap()).unwrap());
    assert_eq!(tcp["controllerName"], "gatekit.io/gateway-controller");
    assert_eq!(tcp["parentRef"]["sectionName"], "tcp");
    assert_eq!(cond(&tcp, "Accepted"), ("True".into(), "Accepted".into()));
    let tls =
        parent(serde_json::to_value(fake.get::<TlsRoute>(Some("default"), "s").unwrap()).unwrap());
    assert_eq!(
        cond(&tls, "Accepted"),
        ("False".into(), "NoMatchingListenerHostname".into())
    );
    let udp =
        parent(serde_json::to_value(fake.get::<UdpRoute>(Some("default"), "u").unwrap()).unwrap());
    assert_eq!(
        cond(&udp, "ResolvedRefs"),
        ("False".into(), "BackendNotFound".into())
    );
    let gw = serde_json::to_value(fake.get::<Gateway>(Some("default"), "gw").unwrap()).unwrap();
    let listeners = gw["status"]["listeners"].as_array().unwrap();
    let tcp_listener = listeners.iter().find(|l| l["name"] == "tcp").unwrap();
    assert_eq!(tcp_listener["attachedRoutes"], 1);
    assert_eq!(
        tcp_listener["supportedKinds"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}])
    );
}
