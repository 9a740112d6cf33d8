//! What one configuration change costs in gatekit-k8s today, by the number of routes
//! served (issue 19): parsing every manifest, and translating the whole resource set.
//! Each reload of `gatekit run --resources` parses only the files that changed (the
//! gateway's file cache) but translates everything, so `translate` is the part of a
//! route change that grows with the routes already served.
//!
//! The resources are shaped as users have them: one Gateway, and per route its own
//! Service (two endpoints, one EndpointSlice); routes are told apart by hostname (one
//! hostname per 20 routes) and by path prefix on a shared hostname.
//!
//! The `one_route_*` cases measure one route (with its Service and EndpointSlice)
//! added, changed or removed, through an incremental [`Translator`] told what changed
//! (`incremental`) and through a full `translate` of the new set (`full`).
//!
//! `cargo bench -p gatekit-k8s --bench translate -- --sample-count 10`
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use divan::AllocProfiler;
use gatekit_k8s::status::ResourceRef;
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, Translator, translate};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const SIZES: [usize; 4] = [10, 1_000, 3_000, 5_000];

/// The manifests of `routes` routes, as one YAML stream.
fn manifests(routes: usize) -> String {
    let mut out = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
         metadata: { name: gatekit }\nspec: { controllerName: gatekit.io/gateway-controller }\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: { name: gw, namespace: default }\nspec:\n  gatewayClassName: gatekit\n  \
         listeners: [{ name: http, port: 8080, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }]\n",
    );
    for i in 0..routes {
        let host = i / 20;
        let (a, b) = (i % 250, i / 250);
        let _ = write!(
            out,
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{ name: r{i}, namespace: default }}\n\
             spec:\n  parentRefs: [{{ name: gw }}]\n  hostnames: [h{host}.example.com]\n  rules:\n  \
             - matches: [{{ path: {{ type: PathPrefix, value: /r{i} }} }}]\n    \
             backendRefs: [{{ name: s{i}, port: 80 }}]\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{ name: s{i}, namespace: default }}\n\
             spec: {{ ports: [{{ port: 80 }}] }}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{ name: s{i}-1, namespace: default, labels: {{ kubernetes.io/service-name: s{i} }} }}\n\
             addressType: IPv4\nports: [{{ port: 8080 }}]\n\
             endpoints:\n- {{ addresses: [10.{b}.{a}.1], conditions: {{ ready: true }} }}\n\
             - {{ addresses: [10.{b}.{a}.2], conditions: {{ ready: true }} }}\n"
        );
    }
    out
}

fn resources(routes: usize) -> ResourceSet {
    let text = manifests(routes);
    let (set, warnings) = ResourceSet::from_documents([("bench.yaml", text.as_str())]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    set
}

/// Parsing every manifest (what a reload without the file cache would pay).
#[divan::bench(args = SIZES, sample_count = 10)]
fn parse(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let text = manifests(routes);
    bencher.bench_local(|| ResourceSet::from_documents([("bench.yaml", text.as_str())]).unwrap());
}

/// Translating the whole set: today's cost of any one change.
#[divan::bench(args = SIZES, sample_count = 10)]
fn translate_all(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let set = resources(routes);
    let options = TranslateOptions::default();
    let t = translate(&set, &options);
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    assert_eq!(t.port(8080).map(|p| p.routes().len()), Some(routes));
    bencher.bench_local(|| translate(&set, &options));
}

const CHANGE_SIZES: [usize; 4] = [1_000, 3_000, 5_000, 10_000];

/// A one-route change: the set before and after, and the objects it changed.
struct Change {
    before: ResourceSet,
    after: ResourceSet,
    changed: BTreeSet<ResourceRef>,
}

fn parse_text(text: &str) -> ResourceSet {
    ResourceSet::from_documents([("bench.yaml", text)])
        .unwrap()
        .0
}

/// Route `i`'s objects: the HTTPRoute, its Service, its EndpointSlice.
fn objects(i: usize) -> BTreeSet<ResourceRef> {
    [
        ("HTTPRoute", format!("r{i}")),
        ("Service", format!("s{i}")),
        ("EndpointSlice", format!("s{i}-1")),
    ]
    .into_iter()
    .map(|(kind, name)| ResourceRef::of_kind(kind, Some("default"), &name).unwrap())
    .collect()
}

impl Change {
    /// Route `routes` (with its Service and slice) added to `routes` routes.
    fn add(routes: usize) -> Self {
        Self {
            before: resources(routes),
            after: resources(routes + 1),
            changed: objects(routes),
        }
    }

    /// The last of `routes` routes (with its Service and slice) removed.
    fn remove(routes: usize) -> Self {
        Self {
            before: resources(routes),
            after: resources(routes - 1),
            changed: objects(routes - 1),
        }
    }

    /// The middle route's path and its slice's first address changed.
    fn edit(routes: usize) -> Self {
        let k = routes / 2;
        let text = manifests(routes)
            .replace(&format!("value: /r{k} }}"), &format!("value: /k{k} }}"))
            .replace(
                &format!("[10.{}.{}.1]", k / 250, k % 250),
                &format!("[10.{}.{}.9]", k / 250, k % 250),
            );
        Self {
            before: resources(routes),
            after: parse_text(&text),
            changed: objects(k),
        }
    }

    /// Runs the change through a translator that translated `before` (the previous
    /// translation still held, as the gateway holds it while it applies it), checking
    /// the result once. Primed as in a running gateway: a full translation, then this
    /// change and its reverse (the translator's state is warm in the cache, and the
    /// translation before the last is gone, as the gateway drops it).
    fn bench_incremental(&self, bencher: divan::Bencher<'_, '_>) {
        let options = TranslateOptions::default();
        let primed = || {
            let mut translator = Translator::new(options.clone());
            drop(translator.translate(&self.before, None));
            drop(translator.translate(&self.after, Some(&self.changed)));
            let previous = translator.translate(&self.before, Some(&self.changed));
            (translator, previous)
        };
        let (mut translator, _previous) = primed();
        let t = translator.translate(&self.after, Some(&self.changed));
        assert_eq!(
            format!("{t:?}"),
            format!("{:?}", translate(&self.after, &options))
        );
        bencher.with_inputs(primed).bench_local_refs(
            |(translator, _previous): &mut (Translator, Arc<Translation>)| {
                translator.translate(&self.after, Some(&self.changed))
            },
        );
    }

    fn bench_full(&self, bencher: divan::Bencher<'_, '_>) {
        let options = TranslateOptions::default();
        bencher.bench_local(|| translate(&self.after, &options));
    }
}

/// One route added: incremental.
#[divan::bench(args = CHANGE_SIZES, sample_count = 40, sample_size = 1)]
fn one_route_added_incremental(bencher: divan::Bencher<'_, '_>, routes: usize) {
    Change::add(routes).bench_incremental(bencher);
}

/// One route added: full translation.
#[divan::bench(args = CHANGE_SIZES, sample_count = 10)]
fn one_route_added_full(bencher: divan::Bencher<'_, '_>, routes: usize) {
    Change::add(routes).bench_full(bencher);
}

/// One route changed (path and endpoint): incremental.
#[divan::bench(args = CHANGE_SIZES, sample_count = 40, sample_size = 1)]
fn one_route_changed_incremental(bencher: divan::Bencher<'_, '_>, routes: usize) {
    Change::edit(routes).bench_incremental(bencher);
}

/// One route changed (path and endpoint): full translation.
#[divan::bench(args = CHANGE_SIZES, sample_count = 10)]
fn one_route_changed_full(bencher: divan::Bencher<'_, '_>, routes: usize) {
    Change::edit(routes).bench_full(bencher);
}

/// One route removed: incremental.
#[divan::bench(args = CHANGE_SIZES, sample_count = 40, sample_size = 1)]
fn one_route_removed_incremental(bencher: divan::Bencher<'_, '_>, routes: usize) {
    Change::remove(routes).bench_incremental(bencher);
}

/// One route removed: full translation.
#[divan::bench(args = CHANGE_SIZES, sample_count = 10)]
fn one_route_removed_full(bencher: divan::Bencher<'_, '_>, routes: usize) {
    Change::remove(routes).bench_full(bencher);
}
