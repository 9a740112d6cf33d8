//! The incremental translator against the full translation: random change sequences
//! (the results must be equal after every step), and identity (what a change does not
//! reach keeps its `Arc`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use super::Translator;
use crate::manifest::ResourceSet;
use crate::status::ResourceRef;
use crate::translate::{TranslateOptions, Translation, translate};

/// xorshift64*: a seeded PRNG, enough to draw test worlds.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// An object slot: kind, namespace, name.
type Key = (&'static str, &'static str, String);

const SERVICES: [(&str, &str); 8] = [
    ("default", "s0"),
    ("default", "s1"),
    ("default", "s2"),
    ("default", "s3"),
    ("default", "s4"),
    ("default", "s5"),
    ("other", "shared"),
    ("other", "private"),
];

/// Every slot the random worlds use.
fn slots() -> Vec<Key> {
    let mut out = Vec::new();
    for i in 0..12 {
        out.push(("HTTPRoute", "default", format!("h{i}")));
    }
    for i in 0..3 {
        out.push(("HTTPRoute", "other", format!("h{i}")));
    }
    for i in 0..6 {
        out.push(("GRPCRoute", "default", format!("g{i}")));
    }
    for (ns, s) in SERVICES {
        out.push(("Service", ns, s.to_owned()));
        out.push(("EndpointSlice", ns, format!("{s}-a")));
        out.push(("EndpointSlice", ns, format!("{s}-b")));
    }
    out.push(("Gateway", "default", "gw".to_owned()));
    out.push(("BackendPolicy", "default", "bp".to_owned()));
    out.push(("TrafficPolicy", "default", "tp".to_owned()));
    out.push(("SecurityPolicy", "default", "sp".to_owned()));
    out
}

/// What never changes: the class and a grant from `default` HTTPRoutes to
/// `other/shared`.
const FIXED: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: gatekit }
spec: { controllerName: gatekit.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: g, namespace: other }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default }]
  to: [{ group: \"\", kind: Service, name: shared }]
";

fn backend_ref(rng: &mut Rng) -> String {
    let port = *rng.pick(&[80, 80, 80, 81, 82]);
    match rng.below(10) {
        0 => "{ name: shared, namespace: other, port: 80 }".to_owned(),
        1 => "{ name: private, namespace: other, port: 80 }".to_owned(),
        2 => format!(
            "{{ name: s{}, namespace: default, port: {port} }}",
            rng.below(6)
        ),
        3 => "{ name: missing, port: 80 }".to_owned(),
        _ => format!(
            "{{ name: s{}, port: {port}, weight: {} }}",
            rng.below(6),
            rng.below(3) + 1
        ),
    }
}

fn route(kind: &str, ns: &str, name: &str, rng: &mut Rng) -> String {
    let parents = *rng.pick(&[
        "[{ name: gw, namespace: default }]",
        "[{ name: gw, namespace: default }]",
        "[{ name: gw, namespace: default, sectionName: http }]",
        "[{ name: gw, namespace: default, sectionName: sec }]",
        "[{ name: gw, namespace: default, sectionName: nope }]",
        "[{ name: nogw, namespace: default }]",
        "[{ name: gw, namespace: default, sectionName: http }, { name: gw, namespace: default, sectionName: extra }]",
        "[{ name: gw, namespace: default, port: 8081 }]",
    ]);
    let hosts = *rng.pick(&[
        "",
        "",
        "  hostnames: [a.example.com]\n",
        "  hostnames: [x.test]\n",
        "  hostnames: [a.example.com, b.example.com]\n",
    ]);
    let mut out = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: {kind}\n\
         metadata: {{ name: {name}, namespace: {ns} }}\nspec:\n  parentRefs: {parents}\n{hosts}  rules:\n"
    );
    for i in 0..=rng.below(2) {
        if kind == "HTTPRoute" {
            let _ = writeln!(
                out,
                "  - matches: [{{ path: {{ type: PathPrefix, value: /{name}/{i} }} }}]"
            );
        } else {
            let _ = writeln!(
                out,
                "  - matches: [{{ method: {{ service: s.{name}{i} }} }}]"
            );
        }
        let refs: Vec<String> = (0..rng.below(3)).map(|_| backend_ref(rng)).collect();
        let _ = writeln!(out, "    backendRefs: [{}]", refs.join(", "));
        if kind == "HTTPRoute" && rng.chance(15) {
            let _ = writeln!(
                out,
                "    filters:\n    - type: RequestMirror\n      requestMirror: {{ backendRef: {} }}",
                backend_ref(rng)
            );
        } else if rng.chance(5) {
            let _ = writeln!(
                out,
                "    filters:\n    - type: ExtensionRef\n      extensionRef: {{ group: example.com, kind: Foo, name: x }}"
            );
        }
    }
    out
}

fn service(ns: &str, name: &str, rng: &mut Rng) -> String {
    let ports = *rng.pick(&[
        "[{ port: 80 }]",
        "[{ port: 80 }]",
        "[{ port: 80, appProtocol: h2c }]",
        "[{ port: 80, appProtocol: https }]",
        "[{ name: a, port: 80 }, { name: b, port: 81, appProtocol: http }]",
    ]);
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: {name}, namespace: {ns} }}\nspec: {{ ports: {ports} }}\n"
    )
}

fn slice(ns: &str, name: &str, rng: &mut Rng) -> String {
    let own = name.rsplit_once('-').map_or(name, |(s, _)| s);
    let service = if rng.chance(15) {
        SERVICES[rng.below(SERVICES.len())].1
    } else {
        own
    };
    let ports = *rng.pick(&[
        "[{ port: 8080 }]",
        "[{ name: a, port: 8080 }, { name: b, port: 8081 }]",
        "[]",
    ]);
    let mut endpoints = String::new();
    for _ in 0..=rng.below(3) {
        let _ = writeln!(
            endpoints,
            "- {{ addresses: [10.0.0.{}], zone: z{}, conditions: {{ ready: {} }} }}",
            rng.below(4),
            rng.below(2),
            rng.chance(80)
        );
    }
    if rng.chance(10) {
        endpoints.push_str("- { addresses: [bogus] }\n");
    }
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{ name: {name}, namespace: {ns}, labels: {{ kubernetes.io/service-name: {service} }} }}\n\
         addressType: IPv4\nports: {ports}\nendpoints:\n{endpoints}"
    )
}

fn frame(kind: &str, rng: &mut Rng) -> String {
    match kind {
        "Gateway" => {
            let mut out = String::from(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
                 metadata: { name: gw, namespace: default }\nspec:\n  gatewayClassName: gatekit\n  listeners:\n  \
                 - { name: http, port: 8080, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }\n  \
                 - { name: sec, port: 8081, protocol: HTTP, hostname: \"*.example.com\" }\n",
            );
            if rng.chance(50) {
                out.push_str(
                    "  - { name: extra, port: 8082, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }\n",
                );
            }
            out
        }
        "BackendPolicy" => format!(
            "apiVersion: gatekit.io/v1alpha1\nkind: BackendPolicy\nmetadata: {{ name: bp, namespace: default }}\n\
             spec:\n  targetRefs: [{{ name: s{} }}]\n  connection: {{ connectTimeout: 250ms }}\n",
            rng.below(2)
        ),
        "SecurityPolicy" => format!(
            "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\nmetadata: {{ name: sp, namespace: default }}\n\
             spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: h{} }}]\n  \
             extAuth: {{ http: {{ backendRefs: [{{ name: s{}, port: 80 }}] }} }}\n",
            rng.below(2),
            rng.below(2)
        ),
        _ => format!(
            "apiVersion: gatekit.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {{ name: tp, namespace: default }}\n\
             spec:\n  targetRefs: [{{ kind: HTTPRoute, name: h{} }}]\n  retry: {{ attempts: 5 }}\n",
            rng.below(2)
        ),
    }
}

/// A new value for a slot: absent now and then, else a random object.
fn draw(key: &Key, rng: &mut Rng) -> Option<String> {
    let (kind, ns, name) = key;
    if *kind != "Gateway" && rng.chance(25) {
        return None;
    }
    // A SecurityPolicy makes every route change a full translation: present less often,
    // so that most steps still exercise the incremental path.
    if *kind == "SecurityPolicy" && rng.chance(60) {
        return None;
    }
    Some(match *kind {
        "HTTPRoute" | "GRPCRoute" => route(kind, ns, name, rng),
        "Service" => service(ns, name, rng),
        "EndpointSlice" => slice(ns, name, rng),
        _ => frame(kind, rng),
    })
}

fn resources(world: &BTreeMap<Key, String>) -> ResourceSet {
    let mut text = String::from(FIXED);
    for doc in world.values() {
        text.push_str("---\n");
        text.push_str(doc);
    }
    let (set, _) = ResourceSet::from_documents([("world.yaml", text.as_str())])
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    set
}

fn kind_of(kind: &str) -> &'static str {
    match kind {
        "HTTPRoute" => "HTTPRoute",
        "GRPCRoute" => "GRPCRoute",
        "Service" => "Service",
        "EndpointSlice" => "EndpointSlice",
        "Gateway" => "Gateway",
        "BackendPolicy" => "BackendPolicy",
        "SecurityPolicy" => "SecurityPolicy",
        _ => "TrafficPolicy",
    }
}

fn same(incremental: &Translation, full: &Translation) -> Result<(), String> {
    let (a, b) = (format!("{incremental:#?}"), format!("{full:#?}"));
    if a == b {
        return Ok(());
    }
    let first = a
        .lines()
        .zip(b.lines())
        .position(|(x, y)| x != y)
        .unwrap_or(0);
    let around = |s: &str| {
        s.lines()
            .skip(first.saturating_sub(40))
            .take(80)
            .collect::<Vec<_>>()
            .join("\n")
    };
    Err(format!(
        "first difference at line {first}:\n--- incremental\n{}\n--- full\n{}",
        around(&a),
        around(&b)
    ))
}

/// Whether `next.changes()` tells what changed from `prev`: applying it to `prev`
/// (drop the routes of changed ids, add the changed routes, take the named upstreams
/// from `next`) gives `next`, by identity.
fn check_changes(prev: &Translation, next: &Translation) -> Result<(), String> {
    let Some(c) = next.changes() else {
        return Ok(());
    };
    let ptr = |r: &Arc<gatekit_core::route::Route>| Arc::as_ptr(r) as usize;
    let changed_routes: BTreeSet<usize> = c.routes().iter().map(ptr).collect();
    let ports: BTreeSet<u16> = prev
        .listeners()
        .iter()
        .chain(next.listeners())
        .map(|p| p.port())
        .collect();
    let mut served = BTreeSet::new();
    for port in ports {
        let (a, b) = (prev.routes_for_port(port), next.routes_for_port(port));
        let listed =
            |routes: &[Arc<gatekit_core::route::Route>]| routes.iter().map(ptr).collect::<Vec<_>>();
        if !c.ports().contains(&port) && listed(a) != listed(b) {
            return Err(format!("port {port} changed but is not in changes"));
        }
        let kept = |routes: &[Arc<gatekit_core::route::Route>]| {
            let mut out: Vec<usize> = routes
                .iter()
                .filter(|r| !c.route_ids().contains(&r.id))
                .map(ptr)
                .collect();
            out.sort_unstable();
            out
        };
        if kept(a) != kept(b) {
            return Err(format!("port {port}: a route of an unchanged id changed"));
        }
        for r in b.iter().filter(|r| c.route_ids().contains(&r.id)) {
            if !changed_routes.contains(&ptr(r)) {
                return Err(format!(
                    "port {port}: {:?} is served but not in changes",
                    r.id
                ));
            }
            served.insert(ptr(r));
        }
    }
    if served != changed_routes {
        return Err("changes name routes that are not served".to_owned());
    }
    let names: BTreeSet<&String> = prev
        .upstreams()
        .keys()
        .chain(next.upstreams().keys())
        .collect();
    for name in names {
        let same = match (prev.upstreams().get(name), next.upstreams().get(name)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same == c.upstreams().contains(name) {
            return Err(format!(
                "upstream {name}: changed {}, in changes {}",
                !same, same
            ));
        }
    }
    Ok(())
}

#[test]
fn incremental_translation_equals_full_translation_after_every_change() {
    let options = TranslateOptions::default();
    let slots = slots();
    for seed in 1..=8u64 {
        let mut rng = Rng::new(seed);
        let mut world: BTreeMap<Key, String> = BTreeMap::new();
        for key in &slots {
            if let Some(doc) = draw(key, &mut rng).filter(|_| rng.chance(60)) {
                world.insert(key.clone(), doc);
            }
        }
        world.insert(slots[slots.len() - 4].clone(), frame("Gateway", &mut rng));
        let mut translator = Translator::new(options.clone());
        let set = resources(&world);
        let first = translator.translate(&set, None);
        same(&first, &translate(&set, &options)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(first.changes().is_none());
        let mut prev = first;
        let mut incremental_steps = 0;
        let mut described = 0;
        for step in 0..200 {
            let mut changed = BTreeSet::new();
            for _ in 0..=rng.below(3).saturating_sub(1) {
                // Routes, Services and slices mostly; the frame now and then.
                let key = loop {
                    let key = rng.pick(&slots).clone();
                    let frame = !matches!(
                        key.0,
                        "HTTPRoute" | "GRPCRoute" | "Service" | "EndpointSlice"
                    );
                    if !frame || rng.chance(20) {
                        break key;
                    }
                };
                let before = world.get(&key).cloned();
                let after = draw(&key, &mut rng);
                match &after {
                    Some(doc) => world.insert(key.clone(), doc.clone()),
                    None => world.remove(&key),
                };
                if before != after {
                    changed.insert(ResourceRef::new(kind_of(key.0), Some(key.1), &key.2));
                }
            }
            let set = resources(&world);
            let full = translate(&set, &options);
            let was = translator.state.is_some();
            let t = translator.translate(&set, Some(&changed));
            if was
                && changed.iter().all(|r| {
                    matches!(
                        r.kind(),
                        "HTTPRoute" | "GRPCRoute" | "Service" | "EndpointSlice"
                    )
                })
            {
                incremental_steps += 1;
            }
            same(&t, &full)
                .unwrap_or_else(|e| panic!("seed {seed} step {step}, changed {changed:?}: {e}"));
            assert_eq!(t.statuses(), full.statuses(), "seed {seed} step {step}");
            check_changes(&prev, &t)
                .unwrap_or_else(|e| panic!("seed {seed} step {step}, changed {changed:?}: {e}"));
            described += usize::from(t.changes().is_some());
            prev = t;
        }
        assert!(incremental_steps > 100, "seed {seed}: {incremental_steps}");
        assert!(described > 100, "seed {seed}: {described}");
    }
}

/// `n` routes, each with its own Service and EndpointSlice, as the live-change
/// benchmark writes them.
fn route_world(n: usize) -> BTreeMap<Key, String> {
    let mut world = BTreeMap::new();
    world.insert(
        ("Gateway", "default", "gw".to_owned()),
        frame("Gateway", &mut Rng::new(2)),
    );
    for i in 0..n {
        add_route(&mut world, i);
    }
    world
}

fn add_route(world: &mut BTreeMap<Key, String>, i: usize) {
    world.insert(
        ("HTTPRoute", "default", format!("r{i}")),
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{ name: r{i}, namespace: default }}\nspec:\n  parentRefs: [{{ name: gw }}]\n  \
             hostnames: [h{}.example.com]\n  rules:\n  - matches: [{{ path: {{ type: PathPrefix, value: /r{i} }} }}]\n    \
             backendRefs: [{{ name: s{i}, port: 80 }}]\n",
            i / 10
        ),
    );
    world.insert(
        ("Service", "default", format!("s{i}")),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{ name: s{i}, namespace: default }}\nspec: {{ ports: [{{ port: 80 }}] }}\n"),
    );
    world.insert(
        ("EndpointSlice", "default", format!("s{i}-1")),
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{ name: s{i}-1, namespace: default, labels: {{ kubernetes.io/service-name: s{i} }} }}\n\
             addressType: IPv4\nports: [{{ port: 8080 }}]\nendpoints:\n- {{ addresses: [10.1.{}.{}] }}\n",
            i / 250,
            i % 250
        ),
    );
}

fn refs_of(i: usize) -> BTreeSet<ResourceRef> {
    [
        ResourceRef::new("HTTPRoute", Some("default"), &format!("r{i}")),
        ResourceRef::new("Service", Some("default"), &format!("s{i}")),
        ResourceRef::new("EndpointSlice", Some("default"), &format!("s{i}-1")),
    ]
    .into_iter()
    .collect()
}

/// Every route and upstream of `before` other than `except`'s is the same `Arc` in
/// `after`, and so is every route status.
fn assert_kept(before: &Translation, after: &Translation, except: &str) {
    let routes = |t: &Translation| -> BTreeMap<String, Arc<gatekit_core::route::Route>> {
        t.routes_for_port(8080)
            .iter()
            .map(|r| (r.id.to_string(), r.clone()))
            .collect()
    };
    let (a, b) = (routes(before), routes(after));
    let mut kept = 0;
    for (id, route) in &a {
        if id.ends_with(&format!("/{except}")) {
            continue;
        }
        assert!(Arc::ptr_eq(route, &b[id]), "route {id} rebuilt");
        kept += 1;
    }
    assert!(kept > 0);
    for (name, spec) in before.upstreams() {
        if name.contains(&format!("/s{}:", &except[1..])) {
            continue;
        }
        assert!(
            Arc::ptr_eq(spec, &after.upstreams()[name]),
            "upstream {name} rebuilt"
        );
    }
    for s in before.statuses() {
        if s.resource().kind() == "HTTPRoute" && s.resource().name() != except {
            let now = after
                .statuses()
                .iter()
                .find(|n| n.resource() == s.resource())
                .unwrap();
            assert!(Arc::ptr_eq(s, now), "status of {} rebuilt", s.resource());
        }
    }
}

#[test]
fn a_route_change_keeps_every_other_route_and_upstream() {
    let options = TranslateOptions::default();
    let mut world = route_world(40);
    let mut translator = Translator::new(options.clone());
    let t0 = translator.translate(&resources(&world), None);

    // Added.
    add_route(&mut world, 40);
    let set = resources(&world);
    let t1 = translator.translate(&set, Some(&refs_of(40)));
    same(&t1, &translate(&set, &options)).unwrap();
    assert_eq!(t1.routes_for_port(8080).len(), 41);
    assert!(t1.upstreams().contains_key("default/s40:80"));
    assert_kept(&t0, &t1, "r40");

    // Changed (its path), with its slice.
    let route = world[&("HTTPRoute", "default", "r7".to_owned())].replace("/r7", "/seven");
    world.insert(("HTTPRoute", "default", "r7".to_owned()), route);
    let slice =
        world[&("EndpointSlice", "default", "s7-1".to_owned())].replace("10.1.0.7", "10.9.9.9");
    world.insert(("EndpointSlice", "default", "s7-1".to_owned()), slice);
    let set = resources(&world);
    let t2 = translator.translate(&set, Some(&refs_of(7)));
    same(&t2, &translate(&set, &options)).unwrap();
    assert_kept(&t1, &t2, "r7");
    assert!(!Arc::ptr_eq(
        &t1.upstreams()["default/s7:80"],
        &t2.upstreams()["default/s7:80"]
    ));

    // Removed.
    for key in [
        ("HTTPRoute", "default", "r3".to_owned()),
        ("Service", "default", "s3".to_owned()),
        ("EndpointSlice", "default", "s3-1".to_owned()),
    ] {
        world.remove(&key);
    }
    let set = resources(&world);
    let t3 = translator.translate(&set, Some(&refs_of(3)));
    same(&t3, &translate(&set, &options)).unwrap();
    assert!(!t3.upstreams().contains_key("default/s3:80"));
    assert_kept(&t2, &t3, "r3");

    // Nothing changed: the upstream map itself is shared.
    let t4 = translator.translate(&set, Some(&BTreeSet::new()));
    same(&t4, &t3).unwrap();
    assert_kept(&t3, &t4, "none");
}

/// How many chunks of `after` are not chunks of `before` (by pointer).
fn new_chunks<T>(
    before: &gatekit_core::chunked::Chunked<T>,
    after: &gatekit_core::chunked::Chunked<T>,
) -> usize {
    after
        .chunks()
        .iter()
        .filter(|c| !before.chunks().iter().any(|b| Arc::ptr_eq(b, c)))
        .count()
}

/// A one-route change hands the apply stage lists that share every chunk but the one
/// (or two, after a split) the route is in: the route list of its listener and the
/// route statuses, so neither the translator nor a consumer walks every route.
#[test]
fn a_route_change_shares_every_chunk_it_does_not_reach() {
    let options = TranslateOptions::default();
    let mut world = route_world(600);
    let mut translator = Translator::new(options.clone());
    let mut previous = translator.translate(&resources(&world), None);
    let list = |t: &Translation| {
        t.port(8080)
            .unwrap()
            .route_lists()
            .next()
            .unwrap()
            .1
            .clone()
    };
    assert!(list(&previous).chunks().len() > 8);
    for step in 0..3 {
        let i = [600, 17, 333][step];
        match step {
            0 => add_route(&mut world, i),
            1 => {
                let key = ("HTTPRoute", "default", format!("r{i}"));
                let route = world[&key].replace(&format!("/r{i}"), "/changed");
                world.insert(key, route);
            }
            _ => {
                world.remove(&("HTTPRoute", "default", format!("r{i}")));
            }
        }
        let set = resources(&world);
        let next = translator.translate(&set, Some(&refs_of(i)));
        same(&next, &translate(&set, &options)).unwrap();
        assert!(
            new_chunks(&list(&previous), &list(&next)) <= 2,
            "step {step}"
        );
        assert!(
            new_chunks(&previous.statuses.routes, &next.statuses.routes) <= 2,
            "step {step}"
        );
        previous = next;
    }
}

/// Accepted routes' statuses share one list of parent statuses (one allocation for
/// all of them, not four each), in a full translation and in an incremental one, and
/// the kept per-route records stay a few words.
#[test]
fn accepted_routes_share_their_parent_statuses() {
    let options = TranslateOptions::default();
    let mut world = route_world(10);
    let mut translator = Translator::new(options.clone());
    let t0 = translator.translate(&resources(&world), None);
    let lists = |t: &Translation| -> Vec<*const crate::status::ParentStatus> {
        t.statuses()
            .iter()
            .filter(|s| s.resource().kind() == "HTTPRoute")
            .map(|s| s.parents().as_ptr())
            .collect()
    };
    let first = lists(&t0);
    assert_eq!(first.len(), 10);
    assert!(first.iter().all(|p| *p == first[0]), "one list for all");
    // And one namespace name for all.
    let namespace = |name: &str| {
        let status = t0.status("HTTPRoute", Some("default"), name).unwrap();
        status.resource().namespace_arc().unwrap().clone()
    };
    assert!(Arc::ptr_eq(&namespace("r0"), &namespace("r9")));
    let accepted = t0.status("HTTPRoute", Some("default"), "r0").unwrap();
    assert_eq!(accepted.parents().len(), 1);
    let conditions: Vec<_> = accepted.parents()[0]
        .conditions()
        .iter()
        .map(|c| (c.type_(), c.is_true()))
        .collect();
    assert_eq!(conditions, [("Accepted", true), ("ResolvedRefs", true)]);

    add_route(&mut world, 10);
    let set = resources(&world);
    let t1 = translator.translate(&set, Some(&refs_of(10)));
    same(&t1, &translate(&set, &options)).unwrap();
    let next = lists(&t1);
    assert_eq!(next.len(), 11);
    let added = t1.status("HTTPRoute", Some("default"), "r10").unwrap();
    assert_eq!(added.parents(), accepted.parents());

    // (A piece keeps its one route and its one use inline: no allocation for them.)
    let word = std::mem::size_of::<usize>();
    let piece = std::mem::size_of::<super::route::RoutePiece>();
    assert!(piece <= 18 * word, "{piece}");
    assert!(std::mem::size_of::<super::route::Use>() <= 11 * word);
    assert!(std::mem::size_of::<super::UpstreamState>() <= 15 * word);
}

/// `find_named` and `slices_of` pass objects over on their inline hashes: what they
/// find must be what comparing every name finds, with and without a namespace, for
/// few names (compared one by one) and many (looked up in a map).
#[test]
fn scans_by_inline_hash_find_exactly_the_named_objects() {
    use super::{Named, find_named, slices_of};
    use crate::types::Object;

    let mut docs = String::new();
    for i in 0..40 {
        // Every third object has no namespace (it is in `default`); route names
        // repeat across namespaces.
        let ns = match i % 3 {
            0 => "",
            1 => "namespace: other\n  ",
            _ => "namespace: third\n  ",
        };
        let _ = write!(
            docs,
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  {ns}name: r{}\nspec: {{}}\n---\n",
            i / 3
        );
        let _ = write!(
            docs,
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  {ns}name: e{i}\n  labels:\n    kubernetes.io/service-name: s{}\naddressType: IPv4\nendpoints: []\n---\n",
            i % 7
        );
    }
    let (set, _) = match ResourceSet::from_documents([("t.yaml", docs.as_str())]) {
        Ok(set) => set,
        Err(e) => panic!("{e:?}"),
    };
    let routes = &set.http_routes;
    assert!(routes.len() > 20, "{}", routes.len());
    let named = |ns: &str, n: &str| -> Named { (Arc::from(ns), Arc::from(n)) };
    let by_compare = |wanted: &[Named]| -> Vec<Option<usize>> {
        wanted
            .iter()
            .map(|(ns, n)| {
                routes
                    .iter()
                    .position(|r| r.name() == &**n && r.namespace().unwrap_or("default") == &**ns)
            })
            .collect()
    };
    let few = vec![
        named("default", "r0"),
        named("other", "r2"),
        named("default", "r12"),
        named("nowhere", "r1"),
        named("default", "absent"),
    ];
    let mut many: Vec<Named> = (0..25)
        .map(|i| named("default", &format!("r{i}")))
        .collect();
    many.extend((0..5).map(|i| named("other", &format!("r{i}"))));
    for wanted in [&few, &many] {
        let found: Vec<Option<usize>> = find_named(routes, wanted)
            .into_iter()
            .map(|f| f.map(|(p, _)| p))
            .collect();
        assert_eq!(found, by_compare(wanted));
        assert!(found.iter().filter(|f| f.is_some()).count() >= wanted.len() / 2);
    }

    let wanted = [
        ("default", "s1"),
        ("default", "s6"),
        ("other", "s2"),
        ("x", "s3"),
    ];
    let slices = slices_of(&set.endpoint_slices, &wanted);
    for ((ns, svc), got) in wanted.iter().zip(&slices) {
        let expected: Vec<&str> = set
            .endpoint_slices
            .iter()
            .filter(|s| s.service() == Some(*svc) && s.namespace().unwrap_or("default") == *ns)
            .map(|s| s.name())
            .collect();
        let got: Vec<&str> = got.iter().map(|s| s.name()).collect();
        assert_eq!(got, expected, "{ns}/{svc}");
    }
    assert!(slices[0].len() >= 2 && slices[3].is_empty());
}
