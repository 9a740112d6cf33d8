//! Shared by the reload examples: the manifests of a gateway with N routes, and a free
//! port. Included with `#[path]` (examples cannot share a library module otherwise).

use std::net::SocketAddr;

/// A Gateway, a Service `web` with one endpoint at `backend`, and `routes` HTTPRoutes
/// (`/r0`, `/r1`, ...) in one text; and the probe route `/probe-0` in another.
pub(crate) fn manifests(port: u16, backend: SocketAddr, routes: usize) -> (String, String) {
    let mut text = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: {port}, protocol: HTTP }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: web, namespace: default }}
spec:
  ports: [{{ name: http, port: 80 }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: web-1, namespace: default, labels: {{ kubernetes.io/service-name: web }} }}
addressType: IPv4
ports: [{{ name: http, port: {} }}]
endpoints: [{{ addresses: ["{}"] }}]
"#,
        backend.port(),
        backend.ip()
    );
    for i in 0..routes {
        text.push_str(&route(&format!("r{i}"), &format!("/r{i}")));
    }
    (text, route("probe", "/probe-0"))
}

/// An HTTPRoute `name` sending `path` to `web:80`.
pub(crate) fn route(name: &str, path: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: {name}, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n  rules: [{{ matches: [{{ path: {{ type: PathPrefix, value: \"{path}\" }} }}], backendRefs: [{{ name: web, port: 80 }}] }}]\n"
    )
}

/// A port free on 127.0.0.1 right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
