//! Fuzzing entry point (feature `fuzzing`): [`manifest`] feeds arbitrary or mutated
//! Kubernetes manifests through [`ResourceSet::from_documents`] and [`translate()`], and the
//! translated routes through the data plane's route table. The cargo-fuzz target in
//! `fuzz/` is one line; `tests/fuzz_regressions.rs` replays crash inputs through the same
//! function. See `docs/fuzzing.md`.

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use gatekit_core::{Backend, RouteTable};
use serde_json::{Map, Value};

use crate::{ResourceSet, TranslateOptions, translate};

/// A valid Gateway, HTTPRoute (matches, filters, weighted backends), Service and
/// EndpointSlice set: the structured mode's starting point.
const FIXTURE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: infra }
spec:
  gatewayClassName: gatekit
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    hostname: "*.example.com"
    allowedRoutes: { namespaces: { from: All } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: app }
spec:
  parentRefs: [{ name: gw, namespace: infra, sectionName: http }]
  hostnames: ["a.example.com", "*.example.com"]
  rules:
  - matches:
    - path: { type: PathPrefix, value: /api }
      headers: [{ name: x-a, value: "1" }]
      queryParams: [{ type: RegularExpression, name: q, value: "[0-9]+" }]
      method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: { set: [{ name: x-gw, value: "1" }], remove: [x-drop] }
    - type: URLRewrite
      urlRewrite: { hostname: b.example.com, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } }
    backendRefs: [{ name: web, port: 80, weight: 3 }, { name: web, port: 81, weight: 1 }]
  - matches: [{ path: { type: Exact, value: /old } }]
    filters:
    - type: RequestRedirect
      requestRedirect: { scheme: https, statusCode: 301, path: { type: ReplaceFullPath, replaceFullPath: /new } }
  timeouts: { request: 10s }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: app }
spec:
  ports: [{ name: http, port: 80, targetPort: 8080 }, { name: alt, port: 81, targetPort: alt }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, namespace: app, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: http, port: 8080 }, { name: alt, port: 9090 }]
endpoints:
- addresses: ["10.0.0.1"]
  zone: zone-a
- addresses: ["10.0.0.2"]
  conditions: { ready: false, serving: true, terminating: true }
"#;

/// Values a mutation may put anywhere: the shapes and edge cases validation must catch.
const VALUES: &[&str] = &[
    "null",
    "\"\"",
    "\"*\"",
    "\"*.example.com\"",
    "\"/\"",
    "\"(\"",
    "\"RegularExpression\"",
    "\"PathPrefix\"",
    "\"Exact\"",
    "\"10.0.0.1\"",
    "\"::1\"",
    "0",
    "-1",
    "65536",
    "4294967296",
    "1.5",
    "true",
    "[]",
    "{}",
    "\"10s\"",
    "\"-5s\"",
    "\"99999999h\"",
    "\"HTTPS\"",
    "\"All\"",
    "\"Same\"",
];

#[derive(Arbitrary, Debug)]
enum Mutation {
    /// Replaces the node at a path with a value.
    Set {
        doc: u8,
        path: Vec<u8>,
        value: ValueSpec,
    },
    /// Adds a key to the object at a path.
    Insert {
        doc: u8,
        path: Vec<u8>,
        key: String,
        value: ValueSpec,
    },
    /// Removes the node at a path.
    Delete { doc: u8, path: Vec<u8> },
    /// Repeats a document (duplicate resources).
    Duplicate { doc: u8 },
}

#[derive(Arbitrary, Debug)]
enum ValueSpec {
    Known(u8),
    Int(i64),
    Text(String),
    /// A copy of another node (a valid shape in a wrong place).
    Copy {
        doc: u8,
        path: Vec<u8>,
    },
}

fn documents() -> Vec<Value> {
    FIXTURE
        .split("\n---\n")
        .filter_map(|d| serde_norway::from_str::<Value>(d).ok())
        .collect()
}

/// The node a path of child choices leads to (at most 12 levels down), stopping early
/// at a leaf or an empty container.
fn walk<'v>(v: &'v mut Value, path: &[u8]) -> &'v mut Value {
    let Some((&step, rest)) = path.split_first() else {
        return v;
    };
    if path.len() > 12 {
        return walk(v, &path[..12]);
    }
    let len = match &*v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if len == 0 {
        return v;
    }
    let i = usize::from(step) % len;
    match v {
        Value::Object(m) => {
            let key = m.keys().nth(i).cloned().unwrap_or_default();
            walk(m.entry(key).or_insert(Value::Null), rest)
        }
        Value::Array(a) => walk(&mut a[i], rest),
        other => other,
    }
}

fn value(spec: &ValueSpec, docs: &mut [Value]) -> Value {
    match spec {
        ValueSpec::Known(i) => {
            serde_json::from_str(VALUES[usize::from(*i) % VALUES.len()]).unwrap_or(Value::Null)
        }
        ValueSpec::Int(n) => Value::from(*n),
        ValueSpec::Text(s) => Value::from(s.chars().take(256).collect::<String>()),
        ValueSpec::Copy { doc, path } => {
            let n = docs.len();
            match docs.get_mut(usize::from(*doc) % n.max(1)) {
                Some(d) => walk(d, path).clone(),
                None => Value::Null,
            }
        }
    }
}

fn mutate(docs: &mut Vec<Value>, m: &Mutation) {
    if docs.is_empty() {
        return;
    }
    let pick = |d: u8, n: usize| usize::from(d) % n;
    match m {
        Mutation::Set {
            doc,
            path,
            value: spec,
        } => {
            let v = value(spec, docs);
            let i = pick(*doc, docs.len());
            *walk(&mut docs[i], path) = v;
        }
        Mutation::Insert {
            doc,
            path,
            key,
            value: spec,
        } => {
            let v = value(spec, docs);
            let i = pick(*doc, docs.len());
            if let Value::Object(m) = walk(&mut docs[i], path) {
                m.insert(key.chars().take(64).collect(), v);
            }
        }
        Mutation::Delete { doc, path } => {
            let i = pick(*doc, docs.len());
            let Some((last, parent)) = path.split_last() else {
                docs.remove(i);
                return;
            };
            match walk(&mut docs[i], parent) {
                Value::Object(m) if !m.is_empty() => {
                    let key = m.keys().nth(usize::from(*last) % m.len()).cloned();
                    if let Some(k) = key {
                        m.remove(&k);
                    }
                }
                Value::Array(a) if !a.is_empty() => {
                    let n = a.len();
                    a.remove(usize::from(*last) % n);
                }
                other => *other = Value::Object(Map::new()),
            }
        }
        Mutation::Duplicate { doc } => {
            let i = pick(*doc, docs.len());
            let copy = docs[i].clone();
            docs.push(copy);
        }
    }
}

/// The `manifest` target. The first byte picks the mode:
///
/// - `0`–`63`: the rest, as text (invalid UTF-8 replaced), is one YAML file (possibly
///   multi-document);
/// - `64`–`127`: the rest is one JSON file;
/// - otherwise: the rest is a list of mutations (set, insert, delete a node, duplicate
///   a document) of a valid Gateway + HTTPRoute + Service + EndpointSlice set, each
///   document then given as a JSON file.
///
/// Loading either succeeds or fails with errors that each say why; a loaded set
/// translates (conditions and errors, never a panic), every error of the translation
/// gives a reason, and each port's translated routes compile into a
/// [`RouteTable`] (leniently, invalid routes reported). The
/// unmutated fixture must load without errors and give routes.
///
/// # Panics
///
/// On a panic anywhere in loading, translating or compiling (a bug), or when the
/// checks above fail.
pub fn manifest(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0..64 => check(
            vec![(
                "fuzz.yaml".to_owned(),
                String::from_utf8_lossy(rest).into_owned(),
            )],
            false,
        ),
        64..128 => check(
            vec![(
                "fuzz.json".to_owned(),
                String::from_utf8_lossy(rest).into_owned(),
            )],
            false,
        ),
        _ => {
            let Ok(mutations) = Vec::<Mutation>::arbitrary_take_rest(Unstructured::new(rest))
            else {
                return;
            };
            let mut docs = documents();
            for m in mutations.iter().take(16) {
                mutate(&mut docs, m);
            }
            let files = docs
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("doc{i}.json"), d.to_string()))
                .collect();
            check(files, mutations.is_empty());
        }
    }
}

fn check(files: Vec<(String, String)>, must_succeed: bool) {
    let (set, _warnings) = match ResourceSet::from_documents(files) {
        Ok(ok) => ok,
        Err(errors) => {
            assert!(!must_succeed, "the fixture does not load: {errors:?}");
            assert!(!errors.is_empty(), "a failed load reported no error");
            for e in &errors {
                assert!(!e.reason().is_empty(), "error without a reason: {e:?}");
                assert!(!e.to_string().is_empty());
            }
            return;
        }
    };
    let translation = translate(&set, &TranslateOptions::default());
    for e in translation.errors() {
        assert!(
            !e.reason().is_empty(),
            "translation error without a reason: {e:?}"
        );
    }
    let backends: HashMap<String, Backend> = HashMap::new();
    let mut routes = 0;
    for port in translation.listeners() {
        let (table, errors) = RouteTable::build_partial(
            port.routes().iter().map(|r| (**r).clone()).collect(),
            &backends,
        );
        routes += table.route_count();
        for e in &errors {
            assert!(
                !e.reason().is_empty(),
                "route table error without a reason: {e:?}"
            );
        }
    }
    if must_succeed {
        assert!(
            routes > 0 && translation.errors().is_empty(),
            "the fixture translates to no route: {:?}",
            translation.errors()
        );
    }
}
