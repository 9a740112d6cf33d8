//! Incremental apply: what a reload with the same `Arc`s (what an incremental translation
//! hands over for what did not change) does not redo.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use gatekit_core::route::CompiledRule;
use gatekit_core::{Backend, PortTable};
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, translate};
use http::{HeaderMap, Method};

use super::*;
use crate::{Gateway, GatewayOptions};

/// A Gateway on 8080, routes `a` (host a.example.com, Service a) and `b` (b.example.com,
/// Service b), and a BackendPolicy giving Service b `algorithm`.
fn docs(algorithm: &str) -> String {
    let mut out = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: { name: gw, namespace: default }\n\
         spec:\n  gatewayClassName: gatekit\n  \
         listeners: [{ name: http, port: 8080, protocol: HTTP }]\n",
    );
    for name in ["a", "b"] {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{ name: {name}, namespace: default }}\n\
             spec:\n  ports: [{{ name: http, port: 80 }}]\n\
             ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{ name: {name}, namespace: default }}\n\
             spec:\n  parentRefs: [{{ name: gw }}]\n  hostnames: [{name}.example.com]\n  \
             rules:\n  - backendRefs: [{{ name: {name}, port: 80 }}]\n"
        ));
    }
    out.push_str(&format!(
        "---\napiVersion: gatekit.io/v1alpha1\nkind: BackendPolicy\n\
         metadata: {{ name: p, namespace: default }}\n\
         spec:\n  targetRefs: [{{ kind: Service, name: b }}]\n  \
         loadBalancer: {{ algorithm: {algorithm} }}\n"
    ));
    out
}

fn translation(algorithm: &str) -> Translation {
    let docs = docs(algorithm);
    let (set, _) = ResourceSet::from_documents([("t.yaml", docs.as_str())]).unwrap();
    let t = translate(&set, &TranslateOptions::default());
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    t
}

/// The rule a GET / for `host` matches on the port.
fn rule_for(port: &PortTable, host: &str) -> Arc<CompiledRule> {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, host.parse().unwrap());
    let table = port.table(port.listener_for_host(Some(host)).unwrap());
    let found = table.find(&Method::GET, &"/".parse().unwrap(), &headers);
    Arc::clone(found.unwrap().rule)
}

#[tokio::test]
async fn an_unchanged_translation_is_applied_without_a_compile_or_a_store() {
    let mut gateway = Gateway::embedded(GatewayOptions::default());
    let source = Source::Documents(vec![("t.yaml".into(), docs("round-robin"))]);
    let mut wiring = Wiring::start(&mut gateway, source, TranslateOptions::default())
        .await
        .unwrap();
    let t = translation("round-robin");
    let (_, errors) = wiring.apply(&mut gateway, &t, None).await;
    assert!(errors.is_empty(), "{errors:?}");
    let served = wiring.ports[&8080].router.table();
    let (a, b) = (
        rule_for(&served, "a.example.com"),
        rule_for(&served, "b.example.com"),
    );
    let series = wiring
        .series
        .get(&RouteId::new("default", "a"))
        .expect("a's series")
        .backends[0]
        .clone();

    // The same Arcs again: the port's table is not even stored again.
    let generation = wiring.generation();
    let (_, errors) = wiring.apply(&mut gateway, &t.clone(), None).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(wiring.generation(), generation + 1);
    let now = wiring.ports[&8080].router.table();
    assert!(Arc::ptr_eq(&served, &now));
    assert!(Arc::ptr_eq(&a, &rule_for(&now, "a.example.com")));
    let kept = &wiring
        .series
        .get(&RouteId::new("default", "a"))
        .expect("a's series")
        .backends[0];
    assert!(kept.same_series(&series));

    // A new translation (new Arcs for everything): compiled again, served.
    wiring
        .apply(&mut gateway, &translation("round-robin"), None)
        .await;
    let now = wiring.ports[&8080].router.table();
    assert!(!Arc::ptr_eq(&served, &now));
    assert!(!Arc::ptr_eq(&b, &rule_for(&now, "b.example.com")));
    // The series of a (route, backend) pair still served is the same one.
    let kept = &wiring
        .series
        .get(&RouteId::new("default", "a"))
        .expect("a's series")
        .backends[0];
    assert!(kept.same_series(&series));
}

#[test]
fn a_stale_backend_recompiles_only_the_routes_naming_it() {
    let t = translation("round-robin");
    let port = &t.listeners()[0];
    let backends: HashMap<String, Backend> = HashMap::new();
    let defaults = TrafficDefaults::default();
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    let none = BTreeSet::new();
    let first = port_table(
        port,
        &mut groups,
        false,
        &defaults,
        &backends,
        &none,
        &mut errors,
    )
    .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    // The same routes, nothing stale: nothing to store.
    assert!(
        port_table(
            port,
            &mut groups,
            false,
            &defaults,
            &backends,
            &none,
            &mut errors
        )
        .is_none()
    );
    // Service b's upstream was rebuilt: b's rule is compiled again, a's kept.
    let stale = BTreeSet::from(["default/b:80".to_owned()]);
    let third = port_table(
        port,
        &mut groups,
        false,
        &defaults,
        &backends,
        &stale,
        &mut errors,
    )
    .unwrap();
    let rule = |p: &PortTable, h: &str| rule_for(p, h);
    assert!(Arc::ptr_eq(
        &rule(&first, "a.example.com"),
        &rule(&third, "a.example.com")
    ));
    assert!(!Arc::ptr_eq(
        &rule(&first, "b.example.com"),
        &rule(&third, "b.example.com")
    ));
    // The gateway's default retry is in the compiled rules.
    assert!(rule(&third, "a.example.com").policy().retry.is_some());
}

#[tokio::test]
async fn upstream_updates_skip_the_same_specs_and_name_what_changed() {
    let client = gatekit_core::client::Client::new(gatekit_core::client::ClientConfig::default());
    let mut upstreams = Upstreams::new(client, crate::Metrics::new());
    let t1 = translation("round-robin");
    let first = upstreams.update(t1.upstreams(), None);
    assert_eq!(first.created, ["default/a:80", "default/b:80"]);
    assert_eq!(first.stale.len(), 2);

    // The same Arcs: nothing to do.
    let again = upstreams.update(t1.upstreams(), None);
    assert!(again.stale.is_empty() && again.created.is_empty() && again.gone.is_empty());

    // New specs, b's policy changed: b rebuilt (stale), a updated in place.
    let t2 = translation("least-request");
    let second = upstreams.update(t2.upstreams(), None);
    assert_eq!(second.stale, BTreeSet::from(["default/b:80".to_owned()]));
    assert!(second.created.is_empty());
    assert_eq!(
        upstreams
            .upstream("default/b:80")
            .unwrap()
            .config()
            .algorithm()
            .to_string(),
        "least-request"
    );

    // b gone: named, dropped only by retain.
    let mut specs = t2.upstreams().clone();
    specs.remove("default/b:80");
    let third = upstreams.update(&specs, None);
    assert_eq!(third.gone, ["default/b:80"]);
    assert!(third.stale.contains("default/b:80"));
    assert!(upstreams.upstream("default/b:80").is_some());
    upstreams.retain(&third.gone);
    assert!(upstreams.upstream("default/b:80").is_none());
}

/// A route file as `docs` writes them: Service and HTTPRoute `name`.
fn route_file(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  ports: [{{ name: http, port: 80 }}]\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  parentRefs: [{{ name: gw }}]\n  hostnames: [{name}.example.com]\n  \
         rules:\n  - backendRefs: [{{ name: {name}, port: 80 }}]\n"
    )
}

/// An incremental reload applies what changed, then keeps its translation for
/// `/config` without those changes (they named every route a deletion removed and held
/// memory until the next reload); `/config` still shows what is served.
#[tokio::test]
async fn the_kept_translation_holds_no_changes_and_config_stays_right() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: { name: gw, namespace: default }\n\
         spec:\n  gatewayClassName: gatekit\n  \
         listeners: [{ name: http, port: 8080, protocol: HTTP }]\n",
    )
    .unwrap();
    for name in ["a", "b"] {
        std::fs::write(dir.path().join(format!("{name}.yaml")), route_file(name)).unwrap();
    }
    let mut gateway = Gateway::embedded(GatewayOptions::default());
    let source = Source::Dirs(vec![dir.path().to_owned()]);
    let mut wiring = Wiring::start(&mut gateway, source, TranslateOptions::default())
        .await
        .unwrap();
    let served = |wiring: &Wiring| {
        let t = wiring.dump_parts.translation().unwrap();
        let names: Vec<String> = t
            .listeners()
            .iter()
            .flat_map(|p| p.routes())
            .map(|r| r.id.name().to_owned())
            .collect();
        (t.changes().is_none(), names)
    };
    assert_eq!(
        served(&wiring),
        (true, vec!["a".to_owned(), "b".to_owned()])
    );
    let a_series = wiring
        .series
        .get(&RouteId::new("default", "a"))
        .expect("a's series")
        .backends[0]
        .clone();

    // Route b's file deleted: an incremental reload (a's series is not looked at).
    let b = dir.path().join("b.yaml");
    std::fs::remove_file(&b).unwrap();
    wiring.changed_paths = Some(Changed::Paths(BTreeSet::from([b])));
    let before = wiring.generation();
    assert!(wiring.reload(&mut gateway).await.is_empty());
    assert_eq!(wiring.generation(), before + 1);
    assert_eq!(served(&wiring), (true, vec!["a".to_owned()]));
    assert!(wiring.series.get(&RouteId::new("default", "b")).is_none());
    assert!(
        wiring
            .series
            .get(&RouteId::new("default", "a"))
            .expect("a's series")
            .backends[0]
            .same_series(&a_series)
    );

    let config: serde_json::Value =
        serde_json::from_slice(&gateway.config_dump().current()).unwrap();
    let text = config.to_string();
    assert!(text.contains("a.example.com"), "{text}");
    assert!(!text.contains("b.example.com"), "{text}");
}

/// A removed route that never carried an upgrade is retired at once, leaving no task
/// until the drain deadline; one that did keeps its upgraded connections until then.
#[tokio::test]
async fn only_routes_that_carried_an_upgrade_wait_for_the_drain_deadline() {
    let metrics = Metrics::new();
    let series = |id: &RouteId| RouteSeries {
        route: Arc::new(Route::new(id.clone())),
        backends: super::series::Handles::default(),
        fallback: RouteFallback::new(metrics.clone(), id.to_string()),
        seen: 1,
    };
    let deadline = std::time::Duration::from_secs(3600);

    let plain_id = RouteId::new("default", "plain");
    let plain = series(&plain_id);
    assert!(!retire_series(&plain, deadline, &metrics));
    assert!(
        plain.fallback.retirement().has_marked(),
        "retired at once: the retirement's channel exists"
    );

    let ws_id = RouteId::new("default", "ws");
    let ws = series(&ws_id);
    let mut upgrade = http::Request::builder()
        .header(http::header::CONNECTION, "upgrade")
        .header(http::header::UPGRADE, "websocket")
        .body(())
        .unwrap();
    ws.fallback.retirement().mark(&mut upgrade);
    assert!(retire_series(&ws, deadline, &metrics));
    assert_eq!(
        ws.fallback.holders(),
        2,
        "a task holds the retirement until the deadline"
    );
}
