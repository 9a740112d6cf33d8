//! Route table tests: each match kind, each precedence step, validation errors, and a
//! property test against a linear reference implementation.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};
use proptest::prelude::*;

use super::table::HostKey;
use super::*;
use crate::small_list::SmallList;
use crate::{Backend, Body, BoxError};

// === helpers ===

fn backends() -> HashMap<String, Backend> {
    let svc = tower::service_fn(|_req: http::Request<Body>| async {
        Ok::<_, BoxError>(http::Response::new(Body::empty()))
    });
    let mut m = HashMap::new();
    m.insert("svc".to_string(), Backend::new(svc));
    m
}

fn route(ns: &str, name: &str, hosts: &[&str], rules: Vec<Rule>) -> Route {
    let mut r = Route::new(RouteId::new(ns, name));
    r.hostnames = hosts.iter().map(|h| h.to_string()).collect();
    r.rules = rules.into();
    r
}

fn rule(matches: Vec<Match>) -> Rule {
    Rule {
        matches: matches.into(),
        backends: SmallList::One(BackendRef::new("svc", 1)),
        ..Rule::default()
    }
}

fn path(p: PathMatch) -> Match {
    Match {
        path: Some(p),
        ..Match::default()
    }
}

fn exact(p: &str) -> Match {
    path(PathMatch::Exact(p.into()))
}

fn prefix(p: &str) -> Match {
    path(PathMatch::Prefix(p.into()))
}

fn regex(p: &str) -> Match {
    path(PathMatch::Regex(p.into()))
}

fn header(m: Match, name: &str, value: &str) -> Match {
    m.with_header(name, value)
}

fn query(m: Match, name: &str, value: &str) -> Match {
    m.with_query(name, value)
}

fn method(mut m: Match, method: Method) -> Match {
    m.method = Some(method);
    m
}

#[derive(Debug)]
struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

fn req(host: &str, uri: &str) -> Req {
    let mut headers = HeaderMap::new();
    if !host.is_empty() {
        headers.insert(http::header::HOST, host.parse().unwrap());
    }
    Req {
        method: Method::GET,
        uri: uri.parse().unwrap(),
        headers,
    }
}

impl Req {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.append(name, value.parse().unwrap());
        self
    }

    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
}

/// `"ns/name#rule"` and the matched prefix, or `None`.
fn find(table: &RouteTable, r: &Req) -> Option<(String, Option<String>)> {
    table.find(&r.method, &r.uri, &r.headers).map(|m| {
        (
            format!("{}#{}", m.rule.route_id(), m.rule.rule_index()),
            m.matched_prefix.map(str::to_owned),
        )
    })
}

fn hit(table: &RouteTable, r: &Req) -> Option<String> {
    find(table, r).map(|(id, _)| id)
}

fn build(routes: Vec<Route>) -> RouteTable {
    RouteTable::build(routes, &backends()).unwrap()
}

// === match kinds ===

#[test]
fn tables_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<RouteTable>();
    assert_send_sync::<std::sync::Arc<CompiledRule>>();
}

#[test]
fn empty_table_finds_nothing() {
    let t = RouteTable::default();
    assert_eq!(t.route_count(), 0);
    assert_eq!(hit(&t, &req("a.com", "/")), None);
}

#[test]
fn rule_without_matches_takes_every_path_as_prefix_root() {
    let t = build(vec![route("ns", "all", &[], vec![rule(vec![])])]);
    assert_eq!(
        find(&t, &req("", "/any/thing?x=1")),
        Some(("ns/all#0".into(), Some(String::new())))
    );
}

#[test]
fn exact_path_matches_only_the_whole_path() {
    let t = build(vec![route("ns", "r", &[], vec![rule(vec![exact("/foo")])])]);
    assert_eq!(
        find(&t, &req("", "/foo?q=1")),
        Some(("ns/r#0".into(), None))
    );
    assert_eq!(hit(&t, &req("", "/foo/")), None);
    assert_eq!(hit(&t, &req("", "/fo")), None);
}

#[test]
fn prefix_matches_whole_segments() {
    let t = build(vec![route(
        "ns",
        "r",
        &[],
        vec![rule(vec![prefix("/foo/")])],
    )]);
    for p in ["/foo", "/foo/", "/foo/bar", "/foo/bar/baz?x"] {
        assert_eq!(
            find(&t, &req("", p)),
            Some(("ns/r#0".into(), Some("/foo".into()))),
            "{p}"
        );
    }
    assert_eq!(hit(&t, &req("", "/foobar")), None);
    assert_eq!(hit(&t, &req("", "/")), None);
}

#[test]
fn regex_matches_the_whole_path() {
    let t = build(vec![route(
        "ns",
        "r",
        &[],
        vec![rule(vec![regex("/v[0-9]+/.*")])],
    )]);
    assert_eq!(find(&t, &req("", "/v12/x")), Some(("ns/r#0".into(), None)));
    assert_eq!(hit(&t, &req("", "/api/v12/x")), None);
    assert_eq!(hit(&t, &req("", "/v1")), None);
}

#[test]
fn header_query_and_method_conditions_all_apply() {
    let m = method(
        query(header(prefix("/"), "X-Env", "canary"), "debug", "1"),
        Method::POST,
    );
    let t = build(vec![route("ns", "r", &[], vec![rule(vec![m])])]);
    let ok = || {
        req("", "/x?debug=1")
            .header("x-env", "canary")
            .method(Method::POST)
    };
    assert_eq!(hit(&t, &ok()), Some("ns/r#0".into()));
    assert_eq!(hit(&t, &ok().method(Method::GET)), None);
    assert_eq!(hit(&t, &req("", "/x?debug=1").method(Method::POST)), None);
    let no_query = req("", "/x?debug=2")
        .header("x-env", "canary")
        .method(Method::POST);
    assert_eq!(hit(&t, &no_query), None);
}

#[test]
fn any_match_of_a_rule_suffices() {
    let t = build(vec![route(
        "ns",
        "r",
        &[],
        vec![rule(vec![exact("/a"), exact("/b")])],
    )]);
    assert_eq!(hit(&t, &req("", "/b")), Some("ns/r#0".into()));
}

// === hosts ===

#[test]
fn hosts_match_exactly_or_by_wildcard_case_insensitively_without_port() {
    let t = build(vec![
        route("ns", "exact", &["api.example.com"], vec![rule(vec![])]),
        route("ns", "wild", &["*.example.com"], vec![rule(vec![])]),
    ]);
    assert_eq!(
        hit(&t, &req("API.Example.COM:8443", "/")),
        Some("ns/exact#0".into())
    );
    assert_eq!(
        hit(&t, &req("a.example.com", "/")),
        Some("ns/wild#0".into())
    );
    assert_eq!(
        hit(&t, &req("a.b.example.com", "/")),
        Some("ns/wild#0".into())
    );
    assert_eq!(hit(&t, &req("example.com", "/")), None);
    assert_eq!(hit(&t, &req("other.org", "/")), None);
    assert_eq!(hit(&t, &req("", "/")), None);
}

#[test]
fn unusable_hosts_match_only_routes_without_hostnames() {
    let t = build(vec![
        route("ns", "named", &["*.example.com"], vec![rule(vec![])]),
        route("ns", "any", &[], vec![rule(vec![exact("/x")])]),
    ]);
    let long = format!("{}.example.com", "a.".repeat(130));
    assert_eq!(hit(&t, &req(&long, "/")), None);
    assert_eq!(hit(&t, &req(&long, "/x")), Some("ns/any#0".into()));
    let mut r = req("", "/x");
    r.headers.insert(
        http::header::HOST,
        http::HeaderValue::from_bytes(b"\xe4.example.com").unwrap(),
    );
    assert_eq!(hit(&t, &r), Some("ns/any#0".into()));
}

#[test]
fn uri_authority_beats_host_header() {
    let t = build(vec![route("ns", "r", &["a.com"], vec![rule(vec![])])]);
    assert_eq!(
        hit(&t, &req("b.com", "http://a.com:80/x")),
        Some("ns/r#0".into())
    );
    assert_eq!(hit(&t, &req("a.com", "http://b.com/x")), None);
}

#[test]
fn host_specificity_comes_first_then_falls_through() {
    let t = build(vec![
        route("ns", "any", &[], vec![rule(vec![exact("/x"), prefix("/")])]),
        route(
            "ns",
            "short",
            &["*.example.com"],
            vec![rule(vec![prefix("/a")])],
        ),
        route(
            "ns",
            "long",
            &["*.b.example.com"],
            vec![rule(vec![prefix("/a/b")])],
        ),
        route(
            "ns",
            "exact",
            &["c.b.example.com"],
            vec![rule(vec![prefix("/a/b/c")])],
        ),
    ]);
    // The exact host wins even though "any" has an Exact path match.
    let h = "c.b.example.com";
    assert_eq!(hit(&t, &req(h, "/a/b/c")), Some("ns/exact#0".into()));
    // Nothing for /a/b/x in the exact bucket: the longest wildcard takes it.
    assert_eq!(hit(&t, &req(h, "/a/b/x")), Some("ns/long#0".into()));
    assert_eq!(hit(&t, &req(h, "/a/x")), Some("ns/short#0".into()));
    assert_eq!(hit(&t, &req(h, "/x")), Some("ns/any#0".into()));
    assert_eq!(
        hit(&t, &req("z.example.com", "/a/b/c")),
        Some("ns/short#0".into())
    );
}

#[test]
fn a_route_with_several_hostnames_uses_its_most_specific_match() {
    let t = build(vec![
        route(
            "ns",
            "both",
            &["*.example.com", "a.example.com"],
            vec![rule(vec![exact("/")])],
        ),
        route(
            "ns",
            "other",
            &["a.example.com"],
            vec![rule(vec![prefix("/")])],
        ),
    ]);
    // Both have an exact hostname match for a.example.com; Exact path wins.
    assert_eq!(
        hit(&t, &req("a.example.com", "/")),
        Some("ns/both#0".into())
    );
    assert_eq!(
        hit(&t, &req("b.example.com", "/")),
        Some("ns/both#0".into())
    );
    assert_eq!(
        hit(&t, &req("a.example.com", "/z")),
        Some("ns/other#0".into())
    );
}

// === precedence steps ===

#[test]
fn exact_path_beats_prefix_even_with_more_headers() {
    let t = build(vec![
        route(
            "ns",
            "p",
            &[],
            vec![rule(vec![header(prefix("/foo"), "x", "1")])],
        ),
        route("ns", "e", &[], vec![rule(vec![exact("/foo")])]),
    ]);
    assert_eq!(
        hit(&t, &req("", "/foo").header("x", "1")),
        Some("ns/e#0".into())
    );
}

#[test]
fn a_cors_preflight_meets_method_conditions_with_the_method_it_announces() {
    let mut cors_put = rule(vec![method(prefix("/items"), Method::PUT)]);
    let policy = crate::route::CorsPolicy {
        allow_origins: vec!["*".into()],
        ..Default::default()
    };
    cors_put.filters = Box::new([crate::route::Filter::Cors(policy)]);
    let t = build(vec![
        route("ns", "a-cors-put", &[], vec![cors_put]),
        route(
            "ns",
            "b-plain-get",
            &[],
            vec![rule(vec![method(prefix("/items"), Method::GET)])],
        ),
    ]);
    let preflight = |announced: &str| {
        req("", "/items/1")
            .method(Method::OPTIONS)
            .header("origin", "https://a.example")
            .header("access-control-request-method", announced)
    };
    assert_eq!(hit(&t, &preflight("PUT")), Some("ns/a-cors-put#0".into()));
    // A rule without a CORS filter compares the request's own method.
    assert_eq!(hit(&t, &preflight("GET")), None);
    // Not a preflight without `Origin`; the actual requests as usual.
    let no_origin = req("", "/items/1")
        .method(Method::OPTIONS)
        .header("access-control-request-method", "PUT");
    assert_eq!(hit(&t, &no_origin), None);
    assert_eq!(
        hit(&t, &req("", "/items/1").method(Method::PUT)),
        Some("ns/a-cors-put#0".into())
    );
    assert_eq!(
        hit(&t, &req("", "/items/1")),
        Some("ns/b-plain-get#0".into())
    );
}

#[test]
fn a_regex_beats_no_path_condition_even_with_more_headers() {
    // A GRPCRoute method-only match (a regex) against a headers-only match (no path).
    let no_path = Match {
        path: None,
        ..Match::default()
    };
    let t = build(vec![
        route(
            "ns",
            "a-headers",
            &[],
            vec![rule(vec![header(header(no_path, "x", "1"), "y", "1")])],
        ),
        route(
            "ns",
            "b-method",
            &[],
            vec![rule(vec![regex("/[^/]+/Echo")])],
        ),
        route("ns", "c-none", &[], vec![rule(vec![])]),
    ]);
    let both = req("", "/svc.A/Echo").header("x", "1").header("y", "1");
    assert_eq!(hit(&t, &both), Some("ns/b-method#0".into()));
    let other = req("", "/svc.A/Other").header("x", "1").header("y", "1");
    assert_eq!(
        find(&t, &other),
        Some(("ns/a-headers#0".into(), Some("".into())))
    );
    assert_eq!(
        hit(&t, &req("", "/svc.A/Other")),
        Some("ns/c-none#0".into())
    );
    // An explicit prefix `/` still beats a regex.
    let t = build(vec![
        route("ns", "a", &[], vec![rule(vec![regex("/[^/]+/Echo")])]),
        route("ns", "b", &[], vec![rule(vec![prefix("/")])]),
    ]);
    assert_eq!(hit(&t, &req("", "/svc.A/Echo")), Some("ns/b#0".into()));
}

#[test]
fn longest_prefix_wins_and_prefix_beats_regex() {
    let t = build(vec![
        route("ns", "re", &[], vec![rule(vec![regex("/a/.*")])]),
        route(
            "ns",
            "short",
            &[],
            vec![rule(vec![header(prefix("/a"), "x", "1")])],
        ),
        route("ns", "long", &[], vec![rule(vec![prefix("/a/b")])]),
    ]);
    assert_eq!(
        find(&t, &req("", "/a/b/c").header("x", "1")),
        Some(("ns/long#0".into(), Some("/a/b".into())))
    );
    assert_eq!(
        hit(&t, &req("", "/a/c").header("x", "1")),
        Some("ns/short#0".into())
    );
    assert_eq!(hit(&t, &req("", "/a/c")), Some("ns/re#0".into()));
}

#[test]
fn method_beats_headers_beats_query() {
    let t = build(vec![
        route(
            "ns",
            "q",
            &[],
            vec![rule(vec![query(query(prefix("/"), "a", "1"), "b", "1")])],
        ),
        route(
            "ns",
            "h",
            &[],
            vec![rule(vec![header(prefix("/"), "x", "1")])],
        ),
        route(
            "ns",
            "m",
            &[],
            vec![rule(vec![method(prefix("/"), Method::GET)])],
        ),
    ]);
    let r = || req("", "/?a=1&b=1").header("x", "1");
    assert_eq!(hit(&t, &r()), Some("ns/m#0".into()));
    assert_eq!(hit(&t, &r().method(Method::PUT)), Some("ns/h#0".into()));
    assert_eq!(
        hit(&t, &req("", "/?a=1&b=1").method(Method::PUT)),
        Some("ns/q#0".into())
    );
}

#[test]
fn more_headers_and_more_query_params_win() {
    let t = build(vec![
        route(
            "ns",
            "one",
            &[],
            vec![rule(vec![header(prefix("/"), "x", "1")])],
        ),
        route(
            "ns",
            "two",
            &[],
            vec![rule(vec![header(header(prefix("/"), "x", "1"), "y", "1")])],
        ),
    ]);
    assert_eq!(
        hit(&t, &req("", "/").header("x", "1").header("y", "1")),
        Some("ns/two#0".into())
    );
    assert_eq!(
        hit(&t, &req("", "/").header("x", "1")),
        Some("ns/one#0".into())
    );
}

#[test]
fn oldest_route_then_name_then_rule_order_break_ties() {
    let mut young = route("a", "young", &[], vec![rule(vec![prefix("/")])]);
    young.created = 10;
    let mut old = route("z", "old", &[], vec![rule(vec![prefix("/")])]);
    old.created = 5;
    let t = build(vec![young, old]);
    assert_eq!(hit(&t, &req("", "/")), Some("z/old#0".into()));

    // Same age: "{namespace}/{name}" order, where "a-b/x" < "a/x" since '-' < '/'.
    let t = build(vec![
        route("a", "x", &[], vec![rule(vec![prefix("/")])]),
        route("a-b", "x", &[], vec![rule(vec![prefix("/")])]),
    ]);
    assert_eq!(hit(&t, &req("", "/")), Some("a-b/x#0".into()));

    // Within a route: the first rule.
    let t = build(vec![route(
        "ns",
        "r",
        &[],
        vec![rule(vec![prefix("/")]), rule(vec![prefix("/")])],
    )]);
    assert_eq!(hit(&t, &req("", "/")), Some("ns/r#0".into()));
}

#[test]
fn conditions_that_fail_fall_through_to_the_next_candidate() {
    let t = build(vec![
        route(
            "ns",
            "h",
            &[],
            vec![rule(vec![header(exact("/a"), "x", "1")])],
        ),
        route("ns", "e", &[], vec![rule(vec![exact("/a")])]),
        route("ns", "p", &[], vec![rule(vec![prefix("/")])]),
    ]);
    assert_eq!(
        hit(&t, &req("", "/a").header("x", "1")),
        Some("ns/h#0".into())
    );
    assert_eq!(
        hit(&t, &req("", "/a").header("x", "2")),
        Some("ns/e#0".into())
    );
    assert_eq!(hit(&t, &req("", "/b")), Some("ns/p#0".into()));
}

#[test]
fn compiled_rule_exposes_its_parts() {
    let mut r = rule(vec![]);
    r.name = Some("main".into());
    r.backends.push(BackendRef::new("missing", 0));
    let t = build(vec![route("ns", "r", &[], vec![r])]);
    let m = t
        .find(&Method::GET, &"/".parse().unwrap(), &HeaderMap::new())
        .unwrap();
    assert_eq!(m.rule.name(), Some("main"));
    assert_eq!(m.rule.backends().len(), 2);
    assert!(m.rule.backends()[1].backend().is_none());
    let b = m.rule.pick_backend().unwrap();
    assert_eq!(b.name(), "svc");
    assert!(b.backend().is_some());
    assert!(b.filters().is_empty());
    assert!(m.rule.filters().is_empty());
    assert_eq!(m.rule.timeouts(), Timeouts::default());
}

// === validation ===

fn build_err(r: Route) -> crate::ConfigError {
    RouteTable::build(vec![r], &backends()).unwrap_err()
}

#[test]
fn invalid_config_names_route_and_field() {
    let e = build_err(route(
        "ns",
        "r",
        &[],
        vec![rule(vec![exact("/a"), regex("(")])],
    ));
    assert_eq!(e.field(), "rules[0].matches[1].path.value");
    assert_eq!(e.route(), Some(&RouteId::new("ns", "r")));

    let e = build_err(route(
        "ns",
        "r",
        &[],
        vec![rule(vec![]), rule(vec![prefix("a")])],
    ));
    assert_eq!(e.field(), "rules[1].matches[0].path.value");

    let e = build_err(route(
        "ns",
        "r",
        &[],
        vec![rule(vec![header(prefix("/"), "a b", "1")])],
    ));
    assert_eq!(e.field(), "rules[0].matches[0].headers[0].name");

    let dup = header(header(prefix("/"), "X-A", "1"), "x-a", "2");
    let e = build_err(route("ns", "r", &[], vec![rule(vec![dup])]));
    assert_eq!(e.field(), "rules[0].matches[0].headers[1].name");

    let e = build_err(route("ns", "r", &["ok.com", "a.*.com"], vec![rule(vec![])]));
    assert_eq!(e.field(), "hostnames[1]");

    let r = rule(vec![exact("/a")]).with_filter(Filter::RequestRedirect(Redirect {
        path: Some(PathModifier::ReplacePrefixMatch("/b".into())),
        ..Redirect::default()
    }));
    let e = build_err(route("ns", "r", &[], vec![rule(vec![]), r]));
    assert_eq!(e.field(), "rules[1].filters[0].requestRedirect.path");
}

#[test]
fn build_partial_keeps_the_valid_routes_and_reports_the_rest() {
    let (t, errors) = RouteTable::build_partial(
        vec![
            route("ns", "bad", &[], vec![rule(vec![exact("nope")])]),
            route("ns", "good", &[], vec![rule(vec![prefix("/")])]),
            route("ns", "bad2", &["*"], vec![rule(vec![])]),
        ],
        &backends(),
    );
    assert_eq!(t.route_count(), 1);
    assert_eq!(hit(&t, &req("", "/x")), Some("ns/good#0".into()));
    let ids: Vec<_> = errors
        .iter()
        .map(|e| e.route().unwrap().name().to_owned())
        .collect();
    assert_eq!(ids, ["bad", "bad2"]);
    // Unresolvable backends are not errors.
    let mut r = rule(vec![]);
    r.backends = SmallList::One(BackendRef::new("nowhere", 1));
    assert!(RouteTable::build(vec![route("ns", "r", &[], vec![r])], &backends()).is_ok());
}

// === property test against a linear reference ===

/// The linear reference, shared with the `route_match` fuzz target.
fn reference(routes: &[Route], r: &Req) -> Option<(String, Option<String>)> {
    crate::fuzzing::reference_find(routes, &r.method, &r.uri, &r.headers)
}

const PATHS: &[&str] = &["/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/b", "/b/a"];

fn string_match(
    exacts: &'static [&'static str],
    regexes: &'static [&'static str],
) -> impl Strategy<Value = StringMatch> {
    prop_oneof![
        prop::sample::select(exacts).prop_map(|s| StringMatch::Exact(s.into())),
        prop::sample::select(regexes).prop_map(|s| StringMatch::Regex(s.into())),
    ]
}

fn match_strategy() -> impl Strategy<Value = Match> {
    let path = prop_oneof![
        Just(None),
        prop::sample::select(PATHS).prop_map(|p| Some(PathMatch::Exact(p.into()))),
        prop::sample::select(PATHS).prop_map(|p| Some(PathMatch::Prefix(p.into()))),
        prop::sample::select(&["/a.*", "/a/[bc]+", ".*", "/b"][..])
            .prop_map(|p| Some(PathMatch::Regex(p.into()))),
    ];
    let headers = prop::sample::subsequence(vec!["x-a", "X-B"], 0..=2).prop_flat_map(|names| {
        names
            .into_iter()
            .map(|n| {
                string_match(&["1", "2"], &["[12]", "1|3"]).prop_map(move |value| HeaderMatch {
                    name: n.into(),
                    value,
                })
            })
            .collect::<Vec<_>>()
    });
    let query = prop::sample::subsequence(vec!["q", "r"], 0..=2).prop_flat_map(|names| {
        names
            .into_iter()
            .map(|n| {
                string_match(&["1", "2", "a b"], &["[12]", "a.b"]).prop_map(move |value| {
                    QueryMatch {
                        name: n.into(),
                        value,
                    }
                })
            })
            .collect::<Vec<_>>()
    });
    let method = prop::option::of(prop::sample::select(vec![Method::GET, Method::POST]));
    (path, headers, query, method).prop_map(|(path, headers, query, method)| Match {
        path,
        headers: headers.into(),
        query: query.into(),
        method,
    })
}

fn routes_strategy() -> impl Strategy<Value = Vec<Route>> {
    let hosts = prop::collection::vec(
        prop::sample::select(vec![
            "a.example.com",
            "b.example.com",
            "x.a.example.com",
            "*.example.com",
            "*.a.example.com",
            "example.com",
            "A.Example.com",
        ]),
        0..3,
    );
    let rules = prop::collection::vec(prop::collection::vec(match_strategy(), 0..3), 1..3);
    let one = (
        hosts,
        rules,
        0i64..3,
        prop::sample::select(vec!["a", "a-b", "b"]),
    );
    prop::collection::vec(one, 1..12).prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(i, (hosts, rules, created, ns))| {
                let mut r = route(
                    ns,
                    &format!("r{i}"),
                    &hosts,
                    rules.into_iter().map(rule).collect(),
                );
                r.created = created;
                r
            })
            .collect()
    })
}

fn request_strategy() -> impl Strategy<Value = Req> {
    let host = prop::sample::select(vec![
        "",
        "a.example.com",
        "A.EXAMPLE.com:8080",
        "x.a.example.com",
        "y.b.example.com",
        "example.com",
        "other.org",
    ]);
    let authority = any::<bool>();
    let path = prop::sample::select(vec![
        "/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/a/b/c/d", "/b", "/abc", "/a//b", "/b/a",
    ]);
    let query = prop::sample::select(vec![
        "",
        "?q=1",
        "?q=2&r=1",
        "?r=a%20b&q=1",
        "?q=3&q=1",
        "?Q=1",
        "?r=a+b",
        "?%71=2",
    ]);
    let headers = prop::collection::vec(
        (
            prop::sample::select(vec!["x-a", "x-b"]),
            prop::sample::select(vec!["1", "2", "3"]),
        ),
        0..4,
    );
    let method = prop::sample::select(vec![Method::GET, Method::POST, Method::PUT]);
    (host, authority, path, query, headers, method).prop_map(
        |(host, authority, path, query, headers, method)| {
            let uri = if authority && !host.is_empty() {
                format!("http://{host}{path}{query}")
            } else {
                format!("{path}{query}")
            };
            let mut r = req(if authority { "ignored.org" } else { host }, &uri);
            for (n, v) in headers {
                r = r.header(n, v);
            }
            r.method(method)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn find_agrees_with_the_linear_reference(
        routes in routes_strategy(),
        requests in prop::collection::vec(request_strategy(), 1..16),
    ) {
        let table = RouteTable::build(routes.clone(), &backends()).unwrap();
        prop_assert_eq!(table.route_count(), routes.len());
        for r in &requests {
            prop_assert_eq!(find(&table, r), reference(&routes, r), "uri {} headers {:?}", r.uri, r.headers);
        }
    }
}

// === incremental builds (TableBuilder) ===

fn arcs(routes: &[&Arc<Route>]) -> Vec<Arc<Route>> {
    routes.iter().map(|r| Arc::clone(r)).collect()
}

fn never(_: &str) -> bool {
    false
}

#[test]
fn a_builder_reuses_unchanged_routes_and_shares_untouched_buckets() {
    let a = Arc::new(route(
        "ns",
        "a",
        &["a.example.com"],
        vec![rule(vec![prefix("/a")])],
    ));
    let b = Arc::new(route(
        "ns",
        "b",
        &["b.example.com"],
        vec![rule(vec![prefix("/b")])],
    ));
    let mut builder = TableBuilder::new();
    let (t1, errors) = builder.build(&arcs(&[&a, &b]), &backends(), &never);
    assert!(errors.is_empty());
    let a_rules = builder.compiled_rules(&a).unwrap();
    let b_rules = builder.compiled_rules(&b).unwrap();

    // b edited: a's compiled rule and bucket are the same ones, b's are new.
    let b2 = Arc::new(route(
        "ns",
        "b",
        &["b.example.com"],
        vec![rule(vec![prefix("/c")])],
    ));
    let (t2, _) = builder.build(&arcs(&[&a, &b2]), &backends(), &never);
    assert!(Arc::ptr_eq(
        &a_rules[0],
        &builder.compiled_rules(&a).unwrap()[0]
    ));
    assert!(!Arc::ptr_eq(
        &b_rules[0],
        &builder.compiled_rules(&b2).unwrap()[0]
    ));
    let a_host = HostKey::Exact("a.example.com".into());
    let b_host = HostKey::Exact("b.example.com".into());
    assert!(Arc::ptr_eq(
        t1.bucket(&a_host).unwrap(),
        t2.bucket(&a_host).unwrap()
    ));
    assert!(!Arc::ptr_eq(
        t1.bucket(&b_host).unwrap(),
        t2.bucket(&b_host).unwrap()
    ));
    assert_eq!(
        hit(&t2, &req("b.example.com", "/c")).as_deref(),
        Some("ns/b#0")
    );
    assert_eq!(hit(&t2, &req("b.example.com", "/b")), None);
    // The table found through a reused rule is the one the first build compiled.
    let found = t2.find(
        &Method::GET,
        &"/a".parse().unwrap(),
        req("a.example.com", "/").headers(),
    );
    assert!(Arc::ptr_eq(found.unwrap().rule, &a_rules[0]));

    // A backend a's rules send to resolves differently now: a is compiled again.
    let (t3, _) = builder.build(&arcs(&[&a, &b2]), &backends(), &|name| name == "svc");
    assert!(!Arc::ptr_eq(
        &a_rules[0],
        &builder.compiled_rules(&a).unwrap()[0]
    ));
    assert!(!Arc::ptr_eq(
        t2.bucket(&a_host).unwrap(),
        t3.bucket(&a_host).unwrap()
    ));

    // b removed: its bucket is gone, a's stays.
    let (t4, _) = builder.build(&arcs(&[&a]), &backends(), &never);
    assert!(t4.bucket(&b_host).is_none());
    assert!(Arc::ptr_eq(
        t3.bucket(&a_host).unwrap(),
        t4.bucket(&a_host).unwrap()
    ));
    assert_eq!(t4.route_count(), 1);
    assert_eq!(hit(&t4, &req("b.example.com", "/c")), None);
}

impl Req {
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

#[test]
fn a_builder_gives_rules_without_retry_the_default_retry() {
    let mut with = rule(vec![prefix("/")]);
    with.policy_mut().retry = Some(crate::retry::RetryPolicy::new(
        3,
        crate::retry::RetryOn::default(),
    ));
    let r = Arc::new(route("ns", "r", &[], vec![rule(vec![prefix("/a")]), with]));
    let mut builder =
        TableBuilder::new().with_default_retry(Some(crate::retry::RetryPolicy::unsent_once()));
    builder.build(&arcs(&[&r]), &backends(), &never);
    let rules = builder.compiled_rules(&r).unwrap();
    assert_eq!(
        rules[0].policy().retry,
        Some(crate::retry::RetryPolicy::unsent_once())
    );
    assert_eq!(rules[1].policy().retry, r.rules[1].policy.retry);
    // Without a default, the rule's own (none).
    let mut plain = TableBuilder::new();
    plain.build(&arcs(&[&r]), &backends(), &never);
    assert_eq!(plain.compiled_rules(&r).unwrap()[0].policy().retry, None);
}

/// A route in one of three versions: two valid ones and an invalid one.
fn versions_strategy() -> impl Strategy<Value = Vec<[Route; 3]>> {
    (routes_strategy(), routes_strategy()).prop_map(|(a, b)| {
        a.into_iter()
            .enumerate()
            .map(|(i, ra)| {
                let mut rb = b.get(i).cloned().unwrap_or_else(|| ra.clone());
                rb.id = ra.id.clone();
                let mut bad = ra.clone();
                bad.hostnames = SmallList::One("not a host!".into());
                [ra, rb, bad]
            })
            .collect()
    })
}

fn error_names(errors: &[crate::ConfigError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| format!("{:?} {} {}", e.route(), e.field(), e.reason()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Successive builds with routes added, edited, made invalid and removed (each step
    /// picks, per route, absent or one of three versions) answer as a fresh
    /// `build_partial` of the same routes does.
    /// Inputs that repeat routes, reorder them and move them around (the builder's
    /// diff by pointer from both ends, its per-route listing counts).
    #[test]
    fn incremental_builds_of_reordered_and_repeated_routes_agree_with_full_builds(
        versions in versions_strategy(),
        steps in prop::collection::vec(prop::collection::vec(0usize..36, 0..16), 1..8),
        requests in prop::collection::vec(request_strategy(), 1..12),
    ) {
        let arcs: Vec<[Arc<Route>; 3]> = versions
            .iter()
            .map(|vs| vs.clone().map(Arc::new))
            .collect();
        let mut builder = TableBuilder::new();
        for step in &steps {
            // One version of a route per input (versions share an id: their order among
            // themselves is the builder's documented exception), repeated at will.
            let mut chosen: Vec<Option<usize>> = vec![None; arcs.len()];
            let input: Vec<Arc<Route>> = step
                .iter()
                .map(|i| {
                    let slot = i % arcs.len();
                    let version = *chosen[slot].get_or_insert(i / arcs.len() % 3);
                    Arc::clone(&arcs[slot][version])
                })
                .collect();
            let (table, errors) = builder.build(&input, &backends(), &never);
            prop_assert_eq!(builder.inputs().len(), input.len());
            let plain: Vec<Route> = input.iter().map(|r| Route::clone(r)).collect();
            let (full, full_errors) = RouteTable::build_partial(plain, &backends());
            prop_assert_eq!(table.route_count(), full.route_count());
            prop_assert_eq!(error_names(&errors), error_names(&full_errors));
            for r in &requests {
                prop_assert_eq!(find(&table, r), find(&full, r), "uri {} headers {:?}", r.uri, r.headers);
            }
        }
    }

    #[test]
    fn incremental_builds_agree_with_full_builds(
        versions in versions_strategy(),
        steps in prop::collection::vec(prop::collection::vec(0usize..4, 12), 1..6),
        requests in prop::collection::vec(request_strategy(), 1..12),
    ) {
        let arcs: Vec<[Arc<Route>; 3]> = versions
            .iter()
            .map(|vs| vs.clone().map(Arc::new))
            .collect();
        let mut builder = TableBuilder::new();
        for step in &steps {
            let input: Vec<Arc<Route>> = arcs
                .iter()
                .zip(step)
                .filter(|(_, pick)| **pick > 0)
                .map(|(vs, pick)| Arc::clone(&vs[pick - 1]))
                .collect();
            let (table, errors) = builder.build(&input, &backends(), &never);
            let plain: Vec<Route> = input.iter().map(|r| Route::clone(r)).collect();
            let (full, full_errors) = RouteTable::build_partial(plain.clone(), &backends());
            prop_assert_eq!(table.route_count(), full.route_count());
            prop_assert_eq!(error_names(&errors), error_names(&full_errors));
            let valid: Vec<Route> = plain
                .into_iter()
                .filter(|r| r.hostnames.iter().all(|h| h != "not a host!"))
                .collect();
            for r in &requests {
                prop_assert_eq!(find(&table, r), find(&full, r), "uri {} headers {:?}", r.uri, r.headers);
                prop_assert_eq!(find(&table, r), reference(&valid, r));
            }
        }
    }
}

/// The model is kept for every route (by the translation and the table builder): its
/// rare settings stay out of line. 408 and 216 bytes before they were.
#[test]
fn rules_and_backend_refs_keep_rare_settings_out_of_line() {
    // A rule holds its first match and backendRef inline (`SmallList`): the usual rule
    // is one block. Beyond those two it keeps 80 bytes.
    assert!(
        std::mem::size_of::<Rule>()
            <= 80 + std::mem::size_of::<Match>() + std::mem::size_of::<BackendRef>(),
        "{} (Match {}, BackendRef {})",
        std::mem::size_of::<Rule>(),
        std::mem::size_of::<Match>(),
        std::mem::size_of::<BackendRef>(),
    );
    assert!(
        std::mem::size_of::<BackendRef>() <= 80,
        "{}",
        std::mem::size_of::<BackendRef>()
    );
    // Rules without a policy share the empty one.
    assert!(Arc::ptr_eq(&Rule::new().policy, &Rule::default().policy));
    let mut rule = Rule::new().with_retry(crate::retry::RetryPolicy::unsent_once());
    assert!(!Arc::ptr_eq(&rule.policy, &RulePolicy::none()));
    rule.update_policy(|p| p.retry = None);
    assert!(Arc::ptr_eq(&rule.policy, &RulePolicy::none()));
}

/// A backend whose first `fail` calls fail unsent (connect refused, the request handed
/// back, as a balancer's do), counting its calls.
fn refusing(fail: usize) -> (Backend, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let svc = tower::service_fn(move |req: http::Request<Body>| {
        let n = seen.fetch_add(1, Ordering::Relaxed);
        async move {
            if n < fail {
                return Err(Box::new(
                    crate::Error::new(crate::ErrorKind::Connect).with_unsent_request(req),
                ) as BoxError);
            }
            Ok(http::Response::new(Body::empty()))
        }
    });
    (Backend::new(svc), calls)
}

/// The lookup of a wired gateway: backends by name and a policy state.
struct WithState {
    backends: HashMap<String, Backend>,
    state: PolicyState,
}

impl crate::Backends for WithState {
    fn backend(&self, name: &str) -> Option<Backend> {
        self.backends.get(name).cloned()
    }

    fn policy_state(&self) -> Option<&PolicyState> {
        Some(&self.state)
    }
}

#[tokio::test]
async fn rules_taking_the_default_retry_share_one_layer_and_its_counters() {
    use std::sync::atomic::Ordering;
    let (one, one_calls) = refusing(1);
    let (two, two_calls) = refusing(1);
    let lookup = WithState {
        backends: HashMap::from([("one".to_owned(), one), ("two".to_owned(), two)]),
        state: PolicyState::new(),
    };
    let on = |name: &str| Rule {
        matches: SmallList::One(prefix(&format!("/{name}"))),
        backends: SmallList::One(BackendRef::new(name, 1)),
        ..Rule::default()
    };
    // A rule of one backendRef (the retry around its weighted choice), a rule of two
    // (the retry per backendRef), and a rule with a policy of its own.
    let mut both = on("both");
    both.backends = vec![BackendRef::new("one", 1), BackendRef::new("two", 0)].into();
    let own = on("one").with_retry(crate::retry::RetryPolicy::new(
        0,
        crate::retry::RetryOn::default(),
    ));
    let a = Arc::new(route("ns", "a", &[], vec![on("one"), both]));
    let b = Arc::new(route("ns", "b", &[], vec![on("two")]));
    let c = Arc::new(route("ns", "c", &["c.test"], vec![own]));
    let mut builder =
        TableBuilder::new().with_default_retry(Some(crate::retry::RetryPolicy::unsent_once()));
    let (table, errors) = builder.build(&arcs(&[&a, &b, &c]), &lookup, &never);
    assert!(errors.is_empty(), "{errors:?}");

    let send = |host: &str, path: &str| {
        let uri: Uri = format!("http://{host}{path}").parse().unwrap();
        let m = table.find(&Method::GET, &uri, &HeaderMap::new()).unwrap();
        let req = http::Request::get(uri).body(Body::empty()).unwrap();
        m.rule.send(req)
    };
    // Each refused first attempt is retried once, on the same backend.
    assert!(send("a.test", "/one").await.is_ok());
    assert!(send("a.test", "/two").await.is_ok());
    assert_eq!(one_calls.load(Ordering::Relaxed), 2);
    assert_eq!(two_calls.load(Ordering::Relaxed), 2);
    assert!(send("a.test", "/both").await.is_ok());
    assert_eq!(one_calls.load(Ordering::Relaxed), 3);

    // Counted once, under the default's scope; the rule with its own policy alone has
    // counters of its own (made when its stack was built).
    let counters = lookup.state.retry_counters();
    let scopes: Vec<&str> = counters.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(scopes, [DEFAULT_RETRY_SCOPE, "ns/c/rules[0]"]);
    let stats = &counters[0].1;
    assert_eq!((stats.attempts(), stats.retries()), (5, 2));

    // The layer (and the counters) outlive a rebuild that compiles a route again.
    let b2 = Arc::new(route("ns", "b", &[], vec![on("two")]));
    builder.build(&arcs(&[&a, &b2, &c]), &lookup, &never);
    lookup.state.sweep();
    let again = lookup.state.retry_counters();
    assert!(Arc::ptr_eq(&again[0].1, stats));
    drop((counters, again));
    // Without routes taking it, the default's layer and counters go at the sweep that
    // follows their last use.
    let mut only_own = TableBuilder::new();
    drop(builder);
    drop(table);
    only_own.build(&arcs(&[&c]), &lookup, &never);
    lookup.state.sweep();
    let left = lookup.state.retry_counters();
    let scopes: Vec<&str> = left.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(scopes, ["ns/c/rules[0]"]);
}
