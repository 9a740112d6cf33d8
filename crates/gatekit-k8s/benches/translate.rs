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
//! `cargo bench -p gatekit-k8s --bench translate -- --sample-count 10`
#![allow(missing_docs, clippy::unwrap_used)]

use std::fmt::Write as _;

use divan::AllocProfiler;
use gatekit_k8s::{ResourceSet, TranslateOptions, translate};

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
