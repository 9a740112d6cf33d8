//! Envoy Gateway policies on stream listeners and routes, translated: a
//! BackendTrafficPolicy's `circuitBreaker.maxConnections` on TCPRoute/UDPRoute targets
//! and through the Gateway (route beats Gateway, 1024 when omitted), request-level
//! fields on a stream target refused by name, and a ClientTrafficPolicy's
//! `timeout.tcp.idleTimeout` and `connectionLimit` per listener (listener beats Gateway,
//! invalid values and unimplemented fields refused by name).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use gatekit_core::stream::StreamRoute;
use gatekit_k8s::Translation;
use gatekit_k8s::status::{Condition, ConditionStatus, ResourceStatus};
use gatekit_k8s::translate::ListenerSpec;
use gatekit_k8s::{ResourceSet, TranslateOptions, translate};

fn run(yaml: &str) -> Translation {
    let (set, _warnings) =
        ResourceSet::from_documents([("fixture.yaml", yaml)]).unwrap_or_else(|e| panic!("{e:?}"));
    translate(&set, &TranslateOptions::default())
}

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: tcp, port: 5432, protocol: TCP }
  - { name: tcp2, port: 5433, protocol: TCP }
  - { name: udp, port: 53, protocol: UDP }
  - { name: http, port: 80, protocol: HTTP }
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: default }
spec:
  ports: [{ port: 5432, protocol: TCP }]
---
apiVersion: v1
kind: Service
metadata: { name: dns, namespace: default }
spec:
  ports: [{ port: 53, protocol: UDP }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: { name: db, namespace: default }
spec:
  parentRefs: [{ name: gw, sectionName: tcp }]
  rules: [{ backendRefs: [{ name: db, port: 5432 }] }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: { name: db2, namespace: default }
spec:
  parentRefs: [{ name: gw, sectionName: tcp2 }]
  rules: [{ backendRefs: [{ name: db, port: 5432 }] }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: { name: dns, namespace: default }
spec:
  parentRefs: [{ name: gw, sectionName: udp }]
  rules: [{ backendRefs: [{ name: dns, port: 53 }] }]
"#;

fn btp(name: &str, target: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\n\
         metadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, {target} }}]\n{spec}"
    )
}

fn ctp(name: &str, section: Option<&str>, spec: &str) -> String {
    let section = section.map_or(String::new(), |s| format!(", sectionName: {s}"));
    format!(
        "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\n\
         metadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, kind: Gateway, name: gw{section} }}]\n{spec}"
    )
}

fn listener<'a>(t: &'a Translation, name: &str) -> (&'a ListenerSpec, Vec<&'a StreamRoute>) {
    for port in t.listeners() {
        for l in port.listeners() {
            if l.name() == name {
                let routes = port
                    .listener_stream_routes(l)
                    .iter()
                    .map(|r| &**r)
                    .collect();
                return (l, routes);
            }
        }
    }
    panic!("no programmed listener {name}")
}

fn max_connections(t: &Translation, listener_name: &str) -> Option<u32> {
    let (_, routes) = listener(t, listener_name);
    assert_eq!(routes.len(), 1);
    routes[0].max_connections
}

fn policy<'a>(t: &'a Translation, kind: &str, name: &str) -> &'a ResourceStatus {
    t.status(kind, Some("default"), name)
        .unwrap_or_else(|| panic!("no status for {kind} {name}: {:#?}", t.statuses()))
}

fn accepted<'a>(t: &'a Translation, kind: &str, name: &str) -> &'a Condition {
    policy(t, kind, name).condition("Accepted").unwrap()
}

#[test]
fn a_route_policy_beats_the_gateways_and_an_omitted_max_connections_is_1024() {
    let yaml = format!(
        "{BASE}{}{}",
        btp(
            "gw-wide",
            "kind: Gateway, name: gw",
            "  circuitBreaker: {}\n"
        ),
        btp(
            "db",
            "kind: TCPRoute, name: db",
            "  circuitBreaker: { maxConnections: 2 }\n"
        ),
    );
    let t = run(&yaml);
    assert_eq!(max_connections(&t, "tcp"), Some(2));
    // Through the Gateway only, with Envoy Gateway's default.
    assert_eq!(max_connections(&t, "tcp2"), Some(1024));
    assert_eq!(max_connections(&t, "udp"), Some(1024));
    let c = accepted(&t, "BackendTrafficPolicy", "db");
    assert_eq!(c.status(), ConditionStatus::True, "{c:?}");
    // Reported at the Gateway the route's parentRef names, as Envoy Gateway does.
    let ancestors = policy(&t, "BackendTrafficPolicy", "db").ancestors();
    assert_eq!(ancestors.len(), 1);
    let a = ancestors[0].ancestor();
    assert_eq!((a.kind.as_str(), a.name.as_str()), ("Gateway", "gw"));
    assert_eq!(a.section_name.as_deref(), Some("tcp"));

    // Without policies: no limit of the route's own.
    let t = run(BASE);
    assert_eq!(max_connections(&t, "tcp"), None);
}

#[test]
fn a_udp_route_target_bounds_its_flows_and_takes_per_service_settings() {
    let yaml = format!(
        "{BASE}{}",
        btp(
            "dns",
            "kind: UDPRoute, name: dns",
            "  circuitBreaker: { maxConnections: 3 }\n  loadBalancer: { type: Random }\n"
        ),
    );
    let t = run(&yaml);
    assert_eq!(max_connections(&t, "udp"), Some(3));
    assert_eq!(max_connections(&t, "tcp"), None);
    let c = accepted(&t, "BackendTrafficPolicy", "dns");
    assert_eq!(c.status(), ConditionStatus::True, "{c:?}");
    // The Service the route reaches took the balancing setting.
    let spec = t.upstreams().get("default/dns:53/udp").unwrap_or_else(|| {
        panic!("{:?}", t.upstreams().keys().collect::<Vec<_>>());
    });
    assert!(spec.policy().is_some_and(|p| p.load_balancer.is_some()));
}

#[test]
fn request_level_fields_on_a_stream_target_are_refused_by_name() {
    for (spec, field) in [
        ("  retry: { numRetries: 2 }\n", "spec.retry"),
        (
            "  timeout: { http: { requestTimeout: 1s } }\n",
            "spec.timeout.http.requestTimeout",
        ),
        (
            "  rateLimit: { type: Local, local: { rules: [{ limit: { requests: 1, unit: Second } }] } }\n",
            "spec.rateLimit",
        ),
    ] {
        let yaml = format!(
            "{BASE}{}",
            btp(
                "db",
                "kind: TCPRoute, name: db",
                &format!("  circuitBreaker: {{ maxConnections: 2 }}\n{spec}")
            )
        );
        let t = run(&yaml);
        let c = accepted(&t, "BackendTrafficPolicy", "db");
        assert_eq!(c.status(), ConditionStatus::False, "{c:?}");
        assert_eq!(c.reason(), "Unsupported");
        assert!(c.message().contains(field), "{field}: {}", c.message());
        // Never half applied.
        assert_eq!(max_connections(&t, "tcp"), None);
    }
}

#[test]
fn tcp_idle_timeout_and_connection_limit_per_listener_listener_beats_gateway() {
    let yaml = format!(
        "{BASE}{}{}",
        ctp(
            "wide",
            None,
            "  timeout: { tcp: { idleTimeout: 10s } }\n  connection: { connectionLimit: { value: 100 } }\n"
        ),
        ctp(
            "one",
            Some("tcp2"),
            "  timeout: { tcp: { idleTimeout: 200ms } }\n"
        ),
    );
    let t = run(&yaml);
    let (tcp, _) = listener(&t, "tcp");
    assert_eq!(tcp.idle_timeout(), Some(Duration::from_secs(10)));
    assert_eq!(tcp.connection_limit(), Some(100));
    // The listener's policy replaces the Gateway's wholly (Envoy Gateway's precedence).
    let (tcp2, _) = listener(&t, "tcp2");
    assert_eq!(tcp2.idle_timeout(), Some(Duration::from_millis(200)));
    assert_eq!(tcp2.connection_limit(), None);
    let (http, _) = listener(&t, "http");
    assert_eq!(http.connection_limit(), Some(100));
    for name in ["wide", "one"] {
        let c = accepted(&t, "ClientTrafficPolicy", name);
        assert_eq!(c.status(), ConditionStatus::True, "{c:?}");
    }
}

#[test]
fn invalid_values_and_unimplemented_fields_are_refused_by_name() {
    for (spec, reason, field) in [
        (
            "  connection: { connectionLimit: { value: 0 } }\n",
            "Invalid",
            "spec.connection.connectionLimit.value",
        ),
        (
            "  timeout: { tcp: { idleTimeout: soon } }\n",
            "Invalid",
            "spec.timeout.tcp.idleTimeout",
        ),
        (
            "  timeout: { tcp: { idleTimeout: 0s } }\n",
            "Invalid",
            "spec.timeout.tcp.idleTimeout",
        ),
        (
            "  connection: { connectionLimit: { value: 5, closeDelay: 1s } }\n",
            "Unsupported",
            "connection.connectionLimit.closeDelay",
        ),
        (
            "  timeout: { http: { idleTimeout: 5s } }\n",
            "Unsupported",
            "timeout.http",
        ),
    ] {
        let t = run(&format!("{BASE}{}", ctp("bad", None, spec)));
        let c = accepted(&t, "ClientTrafficPolicy", "bad");
        assert_eq!(c.status(), ConditionStatus::False, "{spec}: {c:?}");
        assert_eq!(c.reason(), reason, "{spec}: {c:?}");
        assert!(c.message().contains(field), "{spec}: {}", c.message());
        let (tcp, _) = listener(&t, "tcp");
        assert_eq!(tcp.idle_timeout(), None);
        assert_eq!(tcp.connection_limit(), None);
    }
}
