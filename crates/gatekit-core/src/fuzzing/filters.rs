//! `filters`: header modifiers, URL rewrites and redirects applied by a rule's
//! [`FilterChain`](crate::filter::FilterChain) to arbitrary requests.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, header};

use super::{MAX_TEXT, alphabet_text, truncate};
use crate::filter::RequestContext;
use crate::route::{
    BackendRef, Filter, HeaderModifier, Match, PathMatch, PathModifier, Redirect, Route, RouteId,
    Rule, UrlRewrite,
};
use crate::{Backend, Body, ConnectionInfo, RouteTable, proxy};

const NAMES: &[&str] = &[
    "x-a",
    "X-B",
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "x-forwarded-for",
    "te",
];
const HOSTS: &[&str] = &[
    "a.example.com",
    "b.example.com:8080",
    "[::1]",
    "x",
    "A.EXAMPLE.COM",
];
/// Characters of paths and queries, including ones that must be escaped.
const PATH_CHARS: &[u8] = b"/ab.%2F?#&= ~\\\"";

#[derive(Arbitrary, Debug)]
struct Input {
    prefix: Text,
    request_headers: Option<ModifierSpec>,
    response_headers: Option<ModifierSpec>,
    action: Option<ActionSpec>,
    /// Filters after the action (a second header modifier must be refused).
    header_modifier_last: bool,
    method: u8,
    authority: Option<Text>,
    path: Text,
    query: Option<Text>,
    headers: Vec<(NameSpec, Vec<u8>)>,
    tls: bool,
    listener_port: Option<u16>,
}

#[derive(Arbitrary, Debug)]
enum Text {
    Alphabet(Vec<u8>),
    Free(String),
}

impl Text {
    fn path(&self) -> String {
        match self {
            Self::Alphabet(b) => format!("/{}", alphabet_text(PATH_CHARS, b)),
            Self::Free(s) => s.chars().take(MAX_TEXT).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum NameSpec {
    Known(u8),
    Free(String),
}

impl NameSpec {
    fn name(&self) -> String {
        match self {
            Self::Known(i) => NAMES[usize::from(*i) % NAMES.len()].to_owned(),
            Self::Free(s) => s.chars().take(MAX_TEXT).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct ModifierSpec {
    set: Vec<(NameSpec, String)>,
    add: Vec<(NameSpec, String)>,
    remove: Vec<NameSpec>,
}

#[derive(Arbitrary, Debug)]
enum HostSpec {
    Known(u8),
    Free(String),
}

impl HostSpec {
    fn host(&self) -> String {
        match self {
            Self::Known(i) => HOSTS[usize::from(*i) % HOSTS.len()].to_owned(),
            Self::Free(s) => s.chars().take(MAX_TEXT).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum PathSpec {
    Full(Text),
    Prefix(Text),
}

#[derive(Arbitrary, Debug)]
enum ActionSpec {
    Redirect {
        scheme: Option<bool>,
        hostname: Option<HostSpec>,
        port: Option<u16>,
        path: Option<PathSpec>,
        status: u8,
    },
    Rewrite {
        hostname: Option<HostSpec>,
        path: Option<PathSpec>,
    },
}

fn modifier(spec: &ModifierSpec) -> HeaderModifier {
    let pairs = |v: &[(NameSpec, String)]| {
        truncate(v, 4)
            .iter()
            .map(|(n, v)| (n.name(), v.chars().take(MAX_TEXT).collect()))
            .collect()
    };
    HeaderModifier {
        set: pairs(&spec.set),
        add: pairs(&spec.add),
        remove: truncate(&spec.remove, 4)
            .iter()
            .map(NameSpec::name)
            .collect(),
    }
}

fn path_modifier(spec: &PathSpec) -> PathModifier {
    match spec {
        PathSpec::Full(t) => PathModifier::ReplaceFullPath(t.path()),
        PathSpec::Prefix(t) => PathModifier::ReplacePrefixMatch(t.path()),
    }
}

/// The rewrite's hostname, when the chain has one.
fn action(spec: &ActionSpec) -> (Filter, Option<String>) {
    match spec {
        ActionSpec::Redirect {
            scheme,
            hostname,
            port,
            path,
            status,
        } => {
            let r = Redirect {
                scheme: scheme.map(|https| if https { "https" } else { "http" }.to_owned()),
                hostname: hostname.as_ref().map(HostSpec::host),
                port: *port,
                path: path.as_ref().map(path_modifier),
                status: [301, 302, 303, 307, 308, 200, 0][usize::from(*status) % 7],
            };
            (Filter::RequestRedirect(r), None)
        }
        ActionSpec::Rewrite { hostname, path } => {
            let w = UrlRewrite {
                hostname: hostname.as_ref().map(HostSpec::host),
                path: path.as_ref().map(path_modifier),
            };
            let host = w.hostname.clone();
            (Filter::UrlRewrite(w), host)
        }
    }
}

fn build_request(input: &Input) -> Option<Request<Body>> {
    let mut target = input.path.path();
    if let Some(q) = &input.query {
        target.push('?');
        target.push_str(q.path().trim_start_matches('/'));
    }
    let uri: Uri = match &input.authority {
        Some(a) => format!("http://{}{target}", a.path().trim_start_matches('/'))
            .parse()
            .ok()?,
        None => target.parse().ok()?,
    };
    let mut req = Request::new(Body::empty());
    *req.method_mut() = [Method::GET, Method::POST, Method::HEAD, Method::OPTIONS]
        [usize::from(input.method) % 4]
        .clone();
    *req.uri_mut() = uri;
    for (n, v) in truncate(&input.headers, 6) {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.name().as_bytes()),
            HeaderValue::from_bytes(v),
        ) else {
            continue;
        };
        req.headers_mut().append(n, v);
    }
    Some(req)
}

/// The `filters` target: one route with a `PathPrefix` match and arbitrary filters
/// (request and response header modifiers, a redirect or a URL rewrite, with free-form
/// names, values, hostnames and paths) is built; an arbitrary request that the route
/// matches goes through the gateway's request preparation and the rule's filters.
///
/// Checks: no panic; only a rewrite of an authority-form target is refused (400); a
/// redirect answers 301/302/303/307/308 with a `Location` that parses
/// as a URI (absolute with an `http`/`https` scheme and a host, or a path); otherwise the
/// request keeps a valid origin-form path and query, and after a rewrite with a hostname
/// its `Host` header and URI authority (those present, at least one) name that host;
/// header modifiers leave each `set` header with exactly its value and no `remove`d one.
///
/// # Panics
///
/// When one of these checks fails (a bug).
pub fn filters(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut filters = Vec::new();
    let request_mod = input.request_headers.as_ref().map(modifier);
    let mut rewrite_host = None;
    let act = input.action.as_ref().map(action);
    if let Some((f, host)) = &act {
        rewrite_host.clone_from(host);
        if !input.header_modifier_last {
            filters.push(f.clone());
        }
    }
    if let Some(m) = &request_mod {
        filters.push(Filter::RequestHeaderModifier(m.clone()));
    }
    if let Some((f, _)) = &act
        && input.header_modifier_last
    {
        filters.push(f.clone());
    }
    let response_mod = input.response_headers.as_ref().map(modifier);
    if let Some(m) = &response_mod {
        filters.push(Filter::ResponseHeaderModifier(m.clone()));
    }

    let mut route = Route::new(RouteId::new("ns", "filters"));
    route.rules.push(Rule {
        matches: vec![Match {
            path: Some(PathMatch::Prefix(input.prefix.path())),
            ..Match::default()
        }]
        .into(),
        filters: filters.into(),
        backends: vec![BackendRef::new("svc", 1)].into(),
        ..Rule::default()
    });
    let backends: HashMap<String, Backend> = HashMap::new();
    let Ok(table) = RouteTable::build(vec![route], &backends) else {
        return;
    };
    let Some(mut req) = build_request(&input) else {
        return;
    };
    let Some(found) = table.find(req.method(), req.uri(), req.headers()) else {
        return;
    };
    let conn = ConnectionInfo::new(
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 40000)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, input.listener_port.unwrap_or(80))),
        input.tls,
    );
    let cx = RequestContext {
        matched_prefix: found.matched_prefix,
        tls: input.tls,
        listener_port: input.listener_port,
    };
    let original_uri = req.uri().clone();
    proxy::prepare_request(&mut req, Some(&conn));
    let chain = found.rule.filters();
    match chain.apply_request(&mut req, &cx) {
        Some(mut rsp) => {
            if rsp.status() == http::StatusCode::BAD_REQUEST {
                // A rewrite of an authority-form target (`GET host:80`, valid only for
                // CONNECT) cannot form a URI: refused, as it should be. Anything else
                // that a route matched must be rewritable.
                assert!(
                    !original_uri.path().starts_with('/'),
                    "rewrite of {original_uri} refused"
                );
                return;
            }
            check_redirect(&rsp, &original_uri);
            chain.apply_response(&mut rsp);
            if let Some(m) = &response_mod {
                check_modifier(m, rsp.headers(), None);
            }
        }
        None => {
            // A header modifier naming `host` overrides the rewrite's Host on purpose (the
            // configuration says so); the consistency check is for the rewrite alone.
            let modifier_host = request_mod.as_ref().is_some_and(|m| {
                let host = |n: &String| n.eq_ignore_ascii_case("host");
                m.set.iter().any(|(n, _)| host(n))
                    || m.add.iter().any(|(n, _)| host(n))
                    || m.remove.iter().any(host)
            });
            let checked_host = rewrite_host.as_deref().filter(|_| !modifier_host);
            check_request(&req, &original_uri, checked_host);
            if let Some(m) = &request_mod {
                let overwritten = rewrite_host.is_some().then_some(header::HOST);
                check_modifier(m, req.headers(), overwritten.as_ref());
            }
            let mut rsp = Response::new(Body::empty());
            chain.apply_response(&mut rsp);
            if let Some(m) = &response_mod {
                check_modifier(m, rsp.headers(), None);
            }
        }
    }
}

fn check_redirect(rsp: &Response<Body>, original: &Uri) {
    let status = rsp.status();
    assert!(
        [301, 302, 303, 307, 308].contains(&status.as_u16()),
        "filters answered {status} for {original}"
    );
    let Some(location) = rsp.headers().get(header::LOCATION) else {
        panic!("redirect without Location for {original}");
    };
    // Parsed the way the request target was: the `http` crate accepts non-ASCII bytes
    // in a query, and the redirect keeps the request's query as received.
    let uri = match Uri::try_from(location.as_bytes()) {
        Ok(u) => u,
        Err(e) => panic!("Location {location:?} is not a URI: {e}"),
    };
    match uri.scheme_str() {
        Some(s) => {
            assert!(s == "http" || s == "https", "Location scheme {s}");
            assert!(
                uri.host().is_some_and(|h| !h.is_empty()),
                "Location {location:?} has no host"
            );
        }
        None => assert!(
            location.as_bytes().starts_with(b"/"),
            "relative Location {location:?}"
        ),
    }
}

fn check_request(req: &Request<Body>, original: &Uri, rewrite_host: Option<&str>) {
    let uri = req.uri();
    let path = uri.path();
    assert!(
        // `*` (OPTIONS) and authority-form targets have no path a filter would touch.
        path.starts_with('/') || path == original.path(),
        "path {path:?} after filters (was {original})"
    );
    if let Some(pq) = uri.path_and_query() {
        let again = PathAndQuery::try_from(pq.as_str());
        assert!(
            again.is_ok_and(|p| p.as_str() == pq.as_str()),
            "path and query {pq} does not re-parse"
        );
    }
    if let Some(h) = rewrite_host {
        let header = req.headers().get(header::HOST);
        if let Some(v) = header {
            assert_eq!(v.as_bytes(), h.as_bytes(), "Host after rewrite to {h}");
        }
        if let Some(a) = uri.authority() {
            assert_eq!(a.as_str(), h, "authority after rewrite to {h}");
        }
        assert!(
            header.is_some() || uri.authority().is_some(),
            "no host after rewrite to {h}"
        );
    }
}

/// Each `set` header holds exactly its value (plus `add`ed ones of the same name); no
/// `remove`d header remains unless set or added. `overwritten` is a header a later
/// filter owns (the Host of a rewrite).
fn check_modifier(m: &HeaderModifier, headers: &HeaderMap, overwritten: Option<&HeaderName>) {
    let name = |s: &str| HeaderName::from_bytes(s.as_bytes()).ok();
    let added = |n: &HeaderName| m.add.iter().any(|(a, _)| name(a).as_ref() == Some(n));
    for (n, v) in &m.set {
        let Some(n) = name(n) else { continue };
        if overwritten == Some(&n) {
            continue;
        }
        let values: Vec<_> = headers.get_all(&n).iter().collect();
        assert_eq!(
            values.first().map(|x| x.as_bytes()),
            Some(v.as_bytes()),
            "set {n}: {v:?} gave {values:?}"
        );
        if !added(&n) {
            assert_eq!(values.len(), 1, "set {n} left {values:?}");
        }
    }
    for r in &m.remove {
        let Some(n) = name(r) else { continue };
        let set = m.set.iter().any(|(s, _)| name(s).as_ref() == Some(&n));
        if !set && !added(&n) && overwritten != Some(&n) {
            assert!(!headers.contains_key(&n), "removed {n} is still there");
        }
    }
}
