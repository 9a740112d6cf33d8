//! `hostname`: route hostname validation, request host extraction (URI authority or
//! `Host` header, port stripping, IPv6 literals) and host matching.

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderValue, Method, Uri, header};

use crate::route::host::{self, HostPattern, MAX_HOST};
use crate::route::{Route, RouteId, Rule};
use crate::{Backend, RouteTable};

#[derive(Arbitrary, Debug)]
struct Input {
    /// A route hostname candidate.
    name: String,
    /// Which letters of the request host are uppercased (bit i for letter i, cycling).
    case_mask: u64,
    port: Option<u16>,
    /// A raw `Host` header value.
    raw_host: Vec<u8>,
    /// A raw request target.
    raw_target: String,
}

/// The route names the table is built with; what `find` returns.
const EXACT: &str = "exact";
const WILDCARD: &str = "wildcard";
const ANY: &str = "any";

/// The `hostname` target. Checks, without panicking on any input:
///
/// - validation: a hostname that parses is lowercased, parses the same in any case, and
///   its parsed form parses to itself;
/// - extraction: the request host of an arbitrary `Host` header or request target is a
///   substring of it without port, and every wildcard suffix is a suffix of the host;
/// - matching, for a valid exact hostname `h` with routes for `h`, `*.h` and any host:
///   `h` in any case, with or without port, in the `Host` header or the URI authority,
///   finds the exact route; `x.h` finds the wildcard route; an IPv6 literal finds only
///   the any-host route; and an arbitrary host finds the exact route only if it is `h`
///   (case-insensitively, without port, optionally with a trailing dot) and the wildcard
///   route only if it ends in `.h` after a non-empty label.
///
/// # Panics
///
/// When one of these invariants fails (a bug).
pub fn hostname(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let name: String = input.name.chars().take(2 * MAX_HOST).collect();
    check_extraction(&input);
    let Ok(pattern) = HostPattern::parse(&name) else {
        return;
    };
    let lower = name.to_ascii_lowercase();
    assert_eq!(
        HostPattern::parse(&name.to_ascii_uppercase()).ok().as_ref(),
        Some(&pattern),
        "hostname validation depends on case: {name:?}"
    );
    match &pattern {
        HostPattern::Exact(n) => {
            assert_eq!(**n, *lower, "exact hostname not lowercased: {name:?}");
            assert_eq!(HostPattern::parse(n).ok(), Some(pattern.clone()));
            check_matching(n, &input);
        }
        HostPattern::Wildcard(suffix) => {
            assert_eq!(
                format!("*.{suffix}"),
                lower,
                "wildcard not lowercased: {name:?}"
            );
            let again = HostPattern::parse(&format!("*.{suffix}")).ok();
            assert_eq!(again, Some(pattern.clone()));
        }
    }
}

fn check_extraction(input: &Input) {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(&input.raw_host) {
        headers.insert(header::HOST, v);
    }
    let uri = Uri::try_from(input.raw_target.as_str()).unwrap_or_else(|_| Uri::from_static("/"));
    let Some(raw) = host::raw_request_host(&uri, &headers) else {
        return;
    };
    let source = match uri.host() {
        Some(h) => h.to_owned(),
        None => String::from_utf8_lossy(&input.raw_host).into_owned(),
    };
    assert!(
        source.starts_with(raw),
        "host {raw:?} is not a prefix of {source:?}"
    );
    if !raw.starts_with('[') {
        assert!(!raw.contains(':'), "port not stripped: {raw:?}");
    }
    let mut buf = [0u8; MAX_HOST];
    let Some(lower) = host::lowercase(raw, &mut buf) else {
        assert!(
            raw.len() > MAX_HOST,
            "lowercase refused a short host {raw:?}"
        );
        return;
    };
    assert!(lower.eq_ignore_ascii_case(raw));
    for suffix in host::wildcard_suffixes(lower) {
        assert!(
            lower.len() > suffix.len() + 1 && lower.ends_with(&format!(".{suffix}")),
            "bad wildcard suffix {suffix:?} of {lower:?}"
        );
    }
}

fn route(name: &str, hostnames: Vec<String>) -> Route {
    let mut r = Route::new(RouteId::new("ns", name));
    r.hostnames = hostnames.into();
    r.rules.push(Rule::default());
    r
}

fn flip_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask & (1 << (i % 64)) != 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn found(table: &RouteTable, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    table
        .find(&Method::GET, uri, headers)
        .map(|m| m.rule.route_id().name().to_owned())
}

fn with_host(value: &str) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_str(value).ok()?);
    Some(headers)
}

fn check_matching(n: &str, input: &Input) {
    let routes = vec![
        route(EXACT, vec![n.to_owned()]),
        route(WILDCARD, vec![format!("*.{n}")]),
        route(ANY, Vec::new()),
    ];
    let backends: HashMap<String, Backend> = HashMap::new();
    let table = match RouteTable::build(routes, &backends) {
        Ok(t) => t,
        Err(e) => panic!("valid hostname {n:?} failed the build: {e}"),
    };
    let origin = Uri::from_static("/");
    let port = input.port.map(|p| format!(":{p}")).unwrap_or_default();
    let flipped = flip_case(n, input.case_mask);

    // The exact name, in any case, with or without a port, in the Host header...
    if let Some(h) = with_host(&format!("{flipped}{port}")) {
        assert_eq!(
            found(&table, &origin, &h).as_deref(),
            Some(EXACT),
            "Host {flipped}{port}"
        );
    }
    // ... or in the URI authority, which beats the Host header.
    if let Ok(uri) = Uri::try_from(format!("http://{flipped}{port}/x")) {
        let h = with_host("ignored.invalid").unwrap_or_default();
        assert_eq!(found(&table, &uri, &h).as_deref(), Some(EXACT), "URI {uri}");
    }
    // One more label: the wildcard, unless the name became too long to be a host.
    let sub = format!("x.{flipped}");
    if let Some(h) = with_host(&format!("{sub}{port}")) {
        let want = if sub.len() <= MAX_HOST { WILDCARD } else { ANY };
        assert_eq!(
            found(&table, &origin, &h).as_deref(),
            Some(want),
            "Host {sub}"
        );
    }
    // IPv6 literals are never route hostnames.
    if let Some(h) = with_host(&format!("[::1]{port}")) {
        assert_eq!(found(&table, &origin, &h).as_deref(), Some(ANY));
    }
    // No false positives for an arbitrary Host header.
    if let Ok(v) = HeaderValue::from_bytes(&input.raw_host) {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, v);
        let hit = found(&table, &origin, &h);
        let norm = host::raw_request_host(&origin, &h).map(|r| r.to_ascii_lowercase());
        check_no_false_positive(n, hit.as_deref(), norm.as_deref());
    }
    if let Ok(uri) = Uri::try_from(input.raw_target.as_str()) {
        let hit = found(&table, &uri, &HeaderMap::new());
        let norm = uri.host().map(str::to_ascii_lowercase);
        check_no_false_positive(n, hit.as_deref(), norm.as_deref());
    }
}

fn check_no_false_positive(n: &str, hit: Option<&str>, host: Option<&str>) {
    match hit {
        Some(EXACT) => {
            let host = host.unwrap_or_default();
            let host = host.strip_suffix('.').unwrap_or(host);
            assert_eq!(host, n, "exact route {n:?} matched host {host:?}");
        }
        Some(WILDCARD) => {
            let host = host.unwrap_or_default();
            let label = host.strip_suffix(n).and_then(|h| h.strip_suffix('.'));
            assert!(
                label.is_some_and(|l| !l.is_empty()),
                "wildcard route *.{n} matched host {host:?}"
            );
        }
        Some(ANY) => {}
        other => panic!("no route found ({other:?}) though one takes any host"),
    }
}
