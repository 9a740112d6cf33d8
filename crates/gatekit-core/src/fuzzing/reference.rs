//! A linear reference matcher for [`RouteTable::find`](crate::RouteTable::find): every
//! (route, rule, match) that matches the request, ranked by the full Gateway API
//! precedence key of the [route module docs](crate::route), written as plainly as
//! possible (allocating freely). Shared by the route proptests and the `route_match`
//! fuzz target.

use std::cmp::Reverse;

use http::{HeaderMap, Method, Uri};

use crate::route::{Filter, Match, PathMatch, Route, StringMatch};

/// Precedence key: host (kind, length), path (kind, length), method, header count, query
/// count, then (reversed, smaller wins) created, `"ns/name"`, route, rule and match index.
type Key = (
    (u8, usize),
    (u8, usize),
    bool,
    usize,
    usize,
    Reverse<(i64, String, usize, usize, usize)>,
);

/// The rule `find` should pick for this request, as `("ns/name#rule", matched prefix)`,
/// or `None` when no rule matches.
///
/// Routes are taken as given (validation is [`RouteTable::build`]'s job): call it only
/// with routes that built. A regular expression that does not compile matches nothing.
///
/// [`RouteTable::build`]: crate::RouteTable::build
pub fn reference_find(
    routes: &[Route],
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<(String, Option<String>)> {
    let raw_host = uri.host().map(str::to_owned).or_else(|| {
        let h = headers.get(http::header::HOST)?.to_str().ok()?;
        // An IPv6 literal keeps its brackets; otherwise the port follows the first `:`.
        let host = if h.starts_with('[') {
            h.find(']').map_or(h, |end| &h[..=end])
        } else {
            h.split(':').next().unwrap_or("")
        };
        Some(host.to_owned())
    });
    let host = raw_host
        .filter(|h| h.len() <= 253)
        .map(|h| h.to_ascii_lowercase());
    let path = uri.path();
    let params: Vec<(Vec<u8>, Vec<u8>)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(n), percent_decode(v))
        })
        .filter(|(n, _)| !n.is_empty())
        .collect();

    // A CORS preflight meets the method conditions of rules with a CORS filter with the
    // method it announces.
    let announced = (*method == Method::OPTIONS && headers.contains_key(http::header::ORIGIN))
        .then(|| headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD))
        .flatten()
        .and_then(|v| Method::from_bytes(v.as_bytes()).ok());
    let mut best: Option<(Key, String, Option<String>)> = None;
    for (ri, route) in routes.iter().enumerate() {
        let Some(host_score) = host_score(route, host.as_deref()) else {
            continue;
        };
        for (rule_i, rule) in route.rules.iter().enumerate() {
            let has_cors = rule.filters.iter().any(|f| matches!(f, Filter::Cors(_)));
            let method = match &announced {
                Some(m) if has_cors => m,
                _ => method,
            };
            let default = [Match::default()];
            let matches: &[Match] = if rule.matches.is_empty() {
                &default
            } else {
                &rule.matches
            };
            for (mi, m) in matches.iter().enumerate() {
                let Some((path_score, matched_prefix)) = path_score(m.path.as_ref(), path) else {
                    continue;
                };
                if m.method.as_ref().is_some_and(|want| want != method) {
                    continue;
                }
                let headers_ok = m.headers.iter().all(|h| {
                    headers
                        .get(h.name.as_str())
                        .is_some_and(|v| value_ok(&h.value, v.as_bytes()))
                });
                let query_ok = m.query.iter().all(|q| {
                    params
                        .iter()
                        .find(|(n, _)| n == q.name.as_bytes())
                        .is_some_and(|(_, v)| value_ok(&q.value, v))
                });
                if !headers_ok || !query_ok {
                    continue;
                }
                let key: Key = (
                    host_score,
                    path_score,
                    m.method.is_some(),
                    m.headers.len(),
                    m.query.len(),
                    Reverse((
                        route.created,
                        format!("{}/{}", route.id.namespace(), route.id.name()),
                        ri,
                        rule_i,
                        mi,
                    )),
                );
                if best.as_ref().is_none_or(|(k, _, _)| key > *k) {
                    best = Some((key, format!("{}#{}", route.id, rule_i), matched_prefix));
                }
            }
        }
    }
    best.map(|(_, id, p)| (id, p))
}

/// The best (kind, length) of the route's hostnames that match `host`: 2 exact, 1
/// wildcard, 0 for a route without hostnames; `None` when none matches.
fn host_score(route: &Route, host: Option<&str>) -> Option<(u8, usize)> {
    if route.hostnames.is_empty() {
        return Some((0, 0));
    }
    let host = host?;
    route
        .hostnames
        .iter()
        .filter_map(|h| {
            let h = h.to_ascii_lowercase();
            if let Some(suffix) = h.strip_prefix("*.") {
                let ok = host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.';
                ok.then_some((1, h.len()))
            } else {
                (h == host).then_some((2, h.len()))
            }
        })
        .max()
}

/// The path's (kind, length) score and matched prefix, or `None` when it does not match.
fn path_score(m: Option<&PathMatch>, path: &str) -> Option<((u8, usize), Option<String>)> {
    match m {
        // No path condition: after every path condition.
        None => Some(((0, 0), Some(String::new()))),
        Some(PathMatch::Exact(p)) => (p == path).then_some(((3, 0), None)),
        Some(PathMatch::Prefix(p)) => {
            let p = p.trim_end_matches('/');
            let ok = p.is_empty() || path == p || path.starts_with(&format!("{p}/"));
            ok.then(|| ((2, p.len()), Some(p.to_owned())))
        }
        Some(PathMatch::Regex(re)) => {
            let re = regex::Regex::new(&format!("^(?:{re})$")).ok()?;
            re.is_match(path).then_some(((1, 0), None))
        }
    }
}

/// RFC 3986 percent-decoding: `%` and two hex digits is a byte, anything else stays.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn value_ok(m: &StringMatch, v: &[u8]) -> bool {
    match m {
        StringMatch::Exact(e) => e.as_bytes() == v,
        StringMatch::Regex(re) => {
            let Ok(re) = regex::Regex::new(&format!("^(?:{re})$")) else {
                return false;
            };
            std::str::from_utf8(v).is_ok_and(|s| re.is_match(s))
        }
    }
}
