//! ListenerSets (GEP-1713) end to end through the wired gateway: manifests in a temp
//! dir, real echo backends, real sockets, real TLS. A ListenerSet in `team-a` adds
//! listeners to the Gateway's ports (HTTP, and HTTPS with its own certificate chosen by
//! SNI); a ListenerSet the Gateway does not allow adds nothing.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;

use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{Ca, CaExt, Wired, free_port, get_raw, secret, service, tls_get};
use http::StatusCode;

/// Gateway `infra/gw` (HTTP `gw.example.com` on `http`, HTTPS `gw.example.com` on
/// `https`) allowing ListenerSets from `team-a` only; a ListenerSet in `team-a` adding
/// `team-a.example.com` on both ports (its certificate a Secret of `team-a`), one in
/// `team-b` adding `team-b.example.com` (refused); one route per resource.
fn manifests(http: u16, https: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra }}
spec:
  gatewayClassName: gatekit
  allowedListeners:
    namespaces:
      from: Selector
      selector: {{ matchLabels: {{ kubernetes.io/metadata.name: team-a }} }}
  listeners:
  - {{ name: web, port: {http}, protocol: HTTP, hostname: gw.example.com }}
  - name: secure
    port: {https}
    protocol: HTTPS
    hostname: gw.example.com
    tls: {{ certificateRefs: [{{ name: gw-cert }}] }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{ name: apps, namespace: team-a }}
spec:
  parentRef: {{ name: gw, namespace: infra }}
  listeners:
  - {{ name: web, port: {http}, protocol: HTTP, hostname: team-a.example.com }}
  - name: secure
    port: {https}
    protocol: HTTPS
    hostname: team-a.example.com
    tls: {{ certificateRefs: [{{ name: team-a-cert }}] }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{ name: apps, namespace: team-b }}
spec:
  parentRef: {{ name: gw, namespace: infra }}
  listeners:
  - {{ name: web, port: {http}, protocol: HTTP, hostname: team-b.example.com }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: gw-route, namespace: infra }}
spec:
  parentRefs: [{{ name: gw }}]
  rules: [{{ backendRefs: [{{ name: infra-svc, port: 80 }}] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: app, namespace: team-a }}
spec:
  parentRefs: [{{ kind: ListenerSet, name: apps }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: /app }} }}]
    backendRefs: [{{ name: app-svc, port: 80 }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: app, namespace: team-b }}
spec:
  parentRefs: [{{ kind: ListenerSet, name: apps }}]
  rules: [{{ backendRefs: [{{ name: app-svc, port: 80 }}] }}]
"#
    )
}

fn in_namespace(yaml: String, ns: &str) -> String {
    yaml.replace("namespace: default", &format!("namespace: {ns}"))
}

#[tokio::test]
async fn a_listener_set_adds_listeners_with_their_own_routes_and_certificates() {
    let infra = EchoBackend::start("infra").await;
    let app = EchoBackend::start("app").await;
    let team_b = EchoBackend::start("team-b").await;
    let ca = Ca::new();
    let (gw_cert, gw_key, gw_leaf) = ca.leaf("gw.example.com");
    let (app_cert, app_key, app_leaf) = ca.leaf("team-a.example.com");
    let (http, https) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("gateway.yaml", manifests(http, https)),
        (
            "infra.yaml",
            in_namespace(service("infra-svc", infra.addr), "infra"),
        ),
        (
            "app.yaml",
            in_namespace(service("app-svc", app.addr), "team-a"),
        ),
        (
            "team-b.yaml",
            in_namespace(service("app-svc", team_b.addr), "team-b"),
        ),
        (
            "gw-cert.yaml",
            in_namespace(secret("gw-cert", &gw_cert, &gw_key), "infra"),
        ),
        (
            "app-cert.yaml",
            in_namespace(secret("team-a-cert", &app_cert, &app_key), "team-a"),
        ),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let http_addr: SocketAddr = ([127, 0, 0, 1], http).into();
    let https_addr: SocketAddr = ([127, 0, 0, 1], https).into();

    // The ListenerSet's listener serves its route on the Gateway's port.
    assert_eq!(
        get_raw(http_addr, "/app", "team-a.example.com").await.0,
        StatusCode::OK
    );
    assert_eq!(app.hits(), 1);
    // Listener isolation across the Gateway's and the ListenerSet's listeners: each
    // host reaches its own listener's routes only.
    assert_eq!(
        get_raw(http_addr, "/", "team-a.example.com").await.0,
        StatusCode::NOT_FOUND,
        "the Gateway's route is not on the ListenerSet's listener"
    );
    assert_eq!(
        get_raw(http_addr, "/app", "gw.example.com").await.0,
        StatusCode::OK
    );
    assert_eq!(
        (infra.hits(), app.hits()),
        (1, 1),
        "gw.example.com/app went to the Gateway's route"
    );
    // The ListenerSet the Gateway does not allow adds no listener.
    assert_eq!(
        get_raw(http_addr, "/", "team-b.example.com").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(team_b.hits(), 0);

    // HTTPS: each listener's certificate by SNI, then its own routes.
    let connector = ca.connector();
    let (leaf, status, _) = tls_get(&connector, https_addr, "team-a.example.com", "/app").await;
    assert_eq!(leaf, app_leaf, "the ListenerSet's certificate");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.hits(), 2);
    let (leaf, status, _) = tls_get(&connector, https_addr, "gw.example.com", "/").await;
    assert_eq!(leaf, gw_leaf, "the Gateway's certificate");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(infra.hits(), 2);

    // `/config`: the ListenerSet's listeners, and its status.
    let config = wired.config().await;
    let port = config["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == http)
        .unwrap();
    let listeners: Vec<(&str, Option<&str>)> = port["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["hostname"].as_str().unwrap(), l["listenerSet"].as_str()))
        .collect();
    assert_eq!(
        listeners,
        [
            ("gw.example.com", None),
            ("team-a.example.com", Some("ListenerSet team-a/apps")),
        ]
    );
    let resources = config["resources"].as_array().unwrap();
    let find = |kind: &str, ns: &str, name: &str| {
        resources
            .iter()
            .find(|r| r["kind"] == kind && r["namespace"] == ns && r["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {ns}/{name} in {resources:#?}"))
    };
    let apps = find("ListenerSet", "team-a", "apps");
    assert_eq!(apps["conditions"][0]["type"], "Accepted");
    assert_eq!(apps["conditions"][0]["status"], "True");
    assert_eq!(apps["listeners"][0]["attachedRoutes"], 1);
    let refused = find("ListenerSet", "team-b", "apps");
    assert_eq!(refused["conditions"][0]["reason"], "NotAllowed");
    assert_eq!(find("Gateway", "infra", "gw")["attachedListenerSets"], 1);
    let route = find("HTTPRoute", "team-a", "app");
    assert_eq!(route["parents"][0]["kind"], "ListenerSet");
    wired.stop().await;
}
