//! `route_match`: arbitrary route sets and requests; [`RouteTable::find`] must agree with
//! the [linear reference](super::reference_find).

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use super::reference::reference_find;
use super::{MAX_TEXT, alphabet_text, truncate};
use crate::Backend;
use crate::RouteTable;
use crate::route::{
    BackendRef, HeaderMatch, Match, PathMatch, QueryMatch, Route, RouteId, Rule, StringMatch,
};

const ROUTE_HOSTS: &[&str] = &[
    "a.example.com",
    "b.example.com",
    "x.a.example.com",
    "*.example.com",
    "*.a.example.com",
    "example.com",
    "A.Example.com",
    "*.com",
];
const REQUEST_HOSTS: &[&str] = &[
    "",
    "a.example.com",
    "A.EXAMPLE.com",
    "x.a.example.com",
    "y.b.example.com",
    "example.com",
    "other.org",
    "a.example.com.",
    "[::1]",
    "..example.com",
    "a..example.com",
    "EXAMPLE.COM",
];
/// Path segments; paths are `/` + segments joined by `/`.
const SEGMENTS: &[&str] = &["", "a", "b", "ab", "A", "%41", ".", "..", "a.b", "%2F"];
/// Characters of path regexes: enough for classes, alternations and repetitions, small
/// enough that most strings compile.
const PATH_REGEX: &[u8] = b"/ab.*+?|()[]^$";
const VALUE_REGEX: &[u8] = b"12|.*[]a ";
const MATCH_HEADERS: &[&str] = &["x-a", "X-B", "x-c"];
const REQUEST_HEADERS: &[&str] = &["x-a", "x-b", "X-C", "x-d"];
const EXACT_VALUES: &[&str] = &["1", "2", "", "a b", "a+b"];
const HEADER_VALUES: &[&[u8]] = &[b"1", b"2", b"3", b"", b"a b", b"\xe9", b"12"];
const QUERY_NAMES: &[&str] = &["q", "r", "Q"];
const REQUEST_QUERY_NAMES: &[&str] = &["q", "r", "Q", "%71", "", "q%"];
const QUERY_VALUES: &[&str] = &["1", "2", "a%20b", "a+b", "a b", "%zz", "", "%E9", "12"];
const METHODS: &[Method] = &[Method::GET, Method::POST, Method::PUT, Method::HEAD];
const NAMESPACES: &[&str] = &["a", "a-b", "b"];

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<RouteSpec>,
    requests: Vec<RequestSpec>,
}

#[derive(Arbitrary, Debug)]
struct RouteSpec {
    namespace: u8,
    created: u8,
    hostnames: Vec<HostSpec>,
    rules: Vec<Vec<MatchSpec>>,
}

#[derive(Arbitrary, Debug)]
enum HostSpec {
    Known(u8),
    Free(String),
}

#[derive(Arbitrary, Debug)]
struct MatchSpec {
    path: Option<PathSpec>,
    headers: Vec<(u8, ValueSpec)>,
    query: Vec<(u8, ValueSpec)>,
    method: Option<u8>,
}

#[derive(Arbitrary, Debug)]
enum PathSpec {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Regex(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum ValueSpec {
    Exact(u8),
    Regex(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct RequestSpec {
    host: HostSpec,
    port: Option<u16>,
    authority: bool,
    path: Vec<u8>,
    query: Vec<(u8, u8, bool)>,
    headers: Vec<(u8, u8)>,
    method: u8,
}

fn pick<T: Clone>(table: &[T], i: u8) -> T {
    table[usize::from(i) % table.len()].clone()
}

/// `/` + segments chosen by `bytes`, joined by `/`.
fn path_from(bytes: &[u8]) -> String {
    let mut p = String::from("/");
    for (i, &b) in bytes.iter().take(6).enumerate() {
        if i > 0 {
            p.push('/');
        }
        p.push_str(pick(SEGMENTS, b));
    }
    p
}

fn value(spec: &ValueSpec) -> StringMatch {
    match spec {
        ValueSpec::Exact(i) => StringMatch::Exact(pick(EXACT_VALUES, *i).into()),
        ValueSpec::Regex(b) => StringMatch::Regex(alphabet_text(VALUE_REGEX, b)),
    }
}

fn host(spec: &HostSpec, known: &[&str]) -> String {
    match spec {
        HostSpec::Known(i) => pick(known, *i).to_owned(),
        HostSpec::Free(s) => s.chars().take(MAX_TEXT).collect(),
    }
}

fn build_routes(specs: &[RouteSpec]) -> Vec<Route> {
    truncate(specs, 8)
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let mut route = Route::new(RouteId::new(
                pick(NAMESPACES, spec.namespace),
                format!("r{i}"),
            ));
            route.created = i64::from(spec.created % 3);
            route.hostnames = truncate(&spec.hostnames, 3)
                .iter()
                .map(|h| host(h, ROUTE_HOSTS))
                .collect();
            route.rules = truncate(&spec.rules, 3)
                .iter()
                .map(|matches| Rule {
                    matches: truncate(matches, 3).iter().map(build_match).collect(),
                    backends: vec![BackendRef::new("svc", 1)].into(),
                    ..Rule::default()
                })
                .collect();
            route
        })
        .collect()
}

fn build_match(spec: &MatchSpec) -> Match {
    Match {
        path: spec.path.as_ref().map(|p| match p {
            PathSpec::Exact(b) => PathMatch::Exact(path_from(b)),
            PathSpec::Prefix(b) => PathMatch::Prefix(path_from(b)),
            PathSpec::Regex(b) => PathMatch::Regex(alphabet_text(PATH_REGEX, b)),
        }),
        headers: truncate(&spec.headers, 2)
            .iter()
            .map(|(n, v)| HeaderMatch {
                name: pick(MATCH_HEADERS, *n).into(),
                value: value(v),
            })
            .collect(),
        query: truncate(&spec.query, 2)
            .iter()
            .map(|(n, v)| QueryMatch {
                name: pick(QUERY_NAMES, *n).into(),
                value: value(v),
            })
            .collect(),
        method: spec.method.map(|m| pick(METHODS, m)),
    }
}

/// A request from its spec; `None` when the pieces do not form a valid URI.
fn build_request(spec: &RequestSpec) -> Option<(Method, Uri, HeaderMap)> {
    let host = host(&spec.host, REQUEST_HOSTS);
    let host = match spec.port {
        Some(p) if !host.is_empty() => format!("{host}:{p}"),
        _ => host,
    };
    let mut target = path_from(&spec.path);
    for (i, (n, v, eq)) in truncate(&spec.query, 4).iter().enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        target.push_str(pick(REQUEST_QUERY_NAMES, *n));
        if *eq {
            target.push('=');
            target.push_str(pick(QUERY_VALUES, *v));
        }
    }
    let mut headers = HeaderMap::new();
    let uri: Uri = if spec.authority && !host.is_empty() {
        headers.insert(http::header::HOST, HeaderValue::from_static("ignored.org"));
        format!("http://{host}{target}").parse().ok()?
    } else {
        if !host.is_empty() {
            headers.insert(http::header::HOST, HeaderValue::from_str(&host).ok()?);
        }
        target.parse().ok()?
    };
    for (n, v) in truncate(&spec.headers, 4) {
        let name = HeaderName::from_bytes(pick(REQUEST_HEADERS, *n).as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_bytes(pick(HEADER_VALUES, *v)).ok()?);
    }
    Some((pick(METHODS, spec.method), uri, headers))
}

/// The `route_match` target: builds a [`RouteTable`] from arbitrary routes (a bounded
/// number, with hostnames, exact/prefix/regex paths, header, query and method
/// conditions) and checks that [`RouteTable::find`] agrees with [`reference_find`] for
/// arbitrary requests.
///
/// # Panics
///
/// When the table and the reference disagree (a bug), with both answers.
pub fn route_match(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let routes = build_routes(&input.routes);
    let backends: HashMap<String, Backend> = HashMap::new();
    // Invalid routes (free-form hostnames, regexes that do not compile) fail the build;
    // that is validation working, not a finding.
    let Ok(table) = RouteTable::build(routes.clone(), &backends) else {
        return;
    };
    assert_eq!(table.route_count(), routes.len());
    for spec in truncate(&input.requests, 8) {
        let Some((method, uri, headers)) = build_request(spec) else {
            continue;
        };
        let found = table.find(&method, &uri, &headers).map(|m| {
            (
                format!("{}#{}", m.rule.route_id(), m.rule.rule_index()),
                m.matched_prefix.map(str::to_owned),
            )
        });
        let expected = reference_find(&routes, &method, &uri, &headers);
        assert_eq!(
            found, expected,
            "find disagrees with the reference for {method} {uri} {headers:?}\nroutes: {routes:#?}"
        );
    }
}
