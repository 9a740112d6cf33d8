//! The compiled, immutable route table. See the [module docs](super) for the algorithm.

use std::cmp::{Ordering, Reverse};
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};
use regex::Regex;

use super::conditions::{Conditions, preflight_method};
use super::hash::FastMap;
use super::host::{self, HostPattern, MAX_HOST};
use super::model::{Filter, Route, RouteId};
use super::path::{PathCond, prefix_candidates};
use super::rule::CompiledRule;
use crate::Backends;
use crate::error::ConfigError;

/// The result of [`RouteTable::find`]: the matched rule and, for a `PathPrefix` match,
/// the prefix it matched on.
#[derive(Debug, Clone, Copy)]
pub struct RuleMatch<'a> {
    /// The matched rule.
    pub rule: &'a Arc<CompiledRule>,
    /// For a `PathPrefix` match (or a match without a path condition): the matched prefix
    /// value without trailing `/` (`""` for `/`); `None` for `Exact` and
    /// `RegularExpression` matches.
    pub matched_prefix: Option<&'a str>,
}

/// Routes compiled for matching: immutable, shared by every request (put it in an
/// `ArcSwap` and swap a new one in on change).
///
/// [`find`](Self::find) does hash lookups and comparisons only, and never allocates.
/// See the [module docs](super) for the semantics and the algorithm.
pub struct RouteTable {
    rules: Vec<Arc<CompiledRule>>,
    conditions: Vec<Conditions>,
    buckets: Vec<Bucket>,
    exact_hosts: FastMap<Box<str>, u32>,
    wildcard_hosts: FastMap<Box<str>, u32>,
    wildcard_max_len: usize,
    any_host: Option<u32>,
    route_count: usize,
}

/// One entry of a candidate list: a match's conditions and the rule it leads to.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    conditions: u32,
    rule: u32,
}

/// The candidates of one hostname bucket (one exact host, one wildcard suffix, or "any
/// host"), indexed by path. Every list is sorted by precedence steps 3 to 8.
#[derive(Debug, Default)]
struct Bucket {
    exact: FastMap<Box<str>, Vec<Candidate>>,
    prefix: FastMap<Box<str>, Vec<Candidate>>,
    prefix_max_len: usize,
    regex: Vec<(Regex, Candidate)>,
    /// Matches without a path condition: tried after every path condition.
    any: Vec<Candidate>,
}

/// Precedence steps 3 to 5 (method, header count, query count), larger first. Steps 6 to 8
/// (route age, route name, rule and match order) are the order candidates are added in;
/// [`insert_sorted`] keeps that order among equal keys.
type ListKey = (Reverse<bool>, Reverse<usize>, Reverse<usize>);

fn list_key(c: &Conditions) -> ListKey {
    (
        Reverse(c.has_method()),
        Reverse(c.header_count()),
        Reverse(c.query_count()),
    )
}

/// Inserts after every candidate whose key is not greater (a stable insertion sort).
fn insert_sorted<T>(list: &mut Vec<T>, item: T, key: ListKey, key_of: impl Fn(&T) -> ListKey) {
    let at = list.partition_point(|c| key_of(c) <= key);
    list.insert(at, item);
}

/// A route that passed validation.
struct CompiledRoute {
    id: RouteId,
    created: i64,
    hosts: Vec<HostPattern>,
    rules: Vec<Arc<CompiledRule>>,
    /// (rule index within `rules`, path, conditions), in rule then match order.
    matches: Vec<(usize, PathCond, Conditions)>,
}

// === impl RouteTable ===

impl RouteTable {
    /// Compiles `routes`, strictly: any invalid route fails the whole build.
    ///
    /// Backend names are resolved through `backends`; a name that does not resolve is not
    /// an error (its share of traffic answers 500 at request time).
    ///
    /// # Errors
    ///
    /// The first invalid route's [`ConfigError`], naming the route and the field in Gateway
    /// API spelling (`rules[0].matches[1].path.value`).
    pub fn build(routes: Vec<Route>, backends: &dyn Backends) -> Result<RouteTable, ConfigError> {
        let (table, mut errors) = Self::build_partial(routes, backends);
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// Compiles `routes`, leniently: an invalid route is left out and its error reported
    /// (one per route, for its Kubernetes status); the others serve.
    pub fn build_partial(
        routes: Vec<Route>,
        backends: &dyn Backends,
    ) -> (RouteTable, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut compiled = Vec::with_capacity(routes.len());
        for route in &routes {
            match compile_route(route, backends) {
                Ok(r) => compiled.push(r),
                Err(e) => errors.push(e.for_route(route.id.clone())),
            }
        }
        // Precedence steps 6 and 7: oldest first, then "{namespace}/{name}" alphabetical.
        // The sort is stable, so routes with equal ids keep their input order.
        compiled.sort_by(|a, b| {
            a.created
                .cmp(&b.created)
                .then_with(|| cmp_route_names(&a.id, &b.id))
        });
        (Self::assemble(compiled), errors)
    }

    /// A table without routes: every request finds nothing.
    pub fn empty() -> RouteTable {
        Self::assemble(Vec::new())
    }

    /// The number of routes in the table (those that passed validation).
    pub fn route_count(&self) -> usize {
        self.route_count
    }

    fn assemble(routes: Vec<CompiledRoute>) -> RouteTable {
        let mut rules = Vec::new();
        let mut conditions: Vec<Conditions> = Vec::new();
        let mut buckets: Vec<Bucket> = Vec::new();
        let mut exact_hosts: FastMap<Box<str>, u32> = FastMap::default();
        let mut wildcard_hosts: FastMap<Box<str>, u32> = FastMap::default();
        let mut any_host = None;
        let route_count = routes.len();

        let mut bucket_ids = Vec::new();
        for route in routes {
            let rule_base = rules.len();
            rules.extend(route.rules);
            bucket_ids.clear();
            if route.hosts.is_empty() {
                bucket_ids.push(bucket_for(&mut any_host, &mut buckets));
            }
            for h in route.hosts {
                let id = match h {
                    HostPattern::Exact(name) => bucket_in(&mut exact_hosts, name, &mut buckets),
                    HostPattern::Wildcard(suffix) => {
                        bucket_in(&mut wildcard_hosts, suffix, &mut buckets)
                    }
                };
                // A route listing `a.com` twice goes into its bucket once.
                if !bucket_ids.contains(&id) {
                    bucket_ids.push(id);
                }
            }
            for (rule, path, conds) in route.matches {
                let key = list_key(&conds);
                let cand = Candidate {
                    conditions: index_u32(conditions.len()),
                    rule: index_u32(rule_base + rule),
                };
                conditions.push(conds);
                let key_of = |c: &Candidate| list_key(&conditions[c.conditions as usize]);
                for &b in &bucket_ids {
                    let bucket = &mut buckets[b as usize];
                    let (map, p) = match &path {
                        PathCond::Exact(p) => (&mut bucket.exact, p),
                        PathCond::Prefix(p) => {
                            bucket.prefix_max_len = bucket.prefix_max_len.max(p.len());
                            (&mut bucket.prefix, p)
                        }
                        PathCond::Regex(re) => {
                            let key_of = |(_, c): &(Regex, Candidate)| key_of(c);
                            insert_sorted(&mut bucket.regex, (re.clone(), cand), key, key_of);
                            continue;
                        }
                        PathCond::Any => {
                            insert_sorted(&mut bucket.any, cand, key, key_of);
                            continue;
                        }
                    };
                    match map.get_mut(&**p) {
                        Some(list) => insert_sorted(list, cand, key, key_of),
                        None => {
                            map.insert(p.clone(), vec![cand]);
                        }
                    }
                }
            }
        }

        let wildcard_max_len = wildcard_hosts.keys().map(|k| k.len()).max().unwrap_or(0);
        RouteTable {
            rules,
            conditions,
            buckets,
            exact_hosts,
            wildcard_hosts,
            wildcard_max_len,
            any_host,
            route_count,
        }
    }

    /// Finds the highest-precedence rule match for a request, or `None` (a 404).
    ///
    /// The host is taken from the URI authority if present, else from the `Host` header;
    /// its port is dropped and it is compared case-insensitively. The path is matched as
    /// received, without the query. Does not allocate.
    pub fn find<'a>(
        &'a self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<RuleMatch<'a>> {
        let mut buf = [0u8; MAX_HOST];
        let host = host::raw_request_host(uri, headers).and_then(|h| host::lowercase(h, &mut buf));
        self.find_for_host(method, uri, headers, host)
    }

    /// [`find`](Self::find) with the request's host already found and lowercased (`None`
    /// when the request has no usable host).
    #[inline]
    pub(crate) fn find_for_host<'a>(
        &'a self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        host: Option<&str>,
    ) -> Option<RuleMatch<'a>> {
        let announced = preflight_method(method, headers);
        let req = Req {
            method,
            announced: announced.as_ref(),
            path: uri.path(),
            query: uri.query(),
            headers,
        };
        if let Some(host) = host {
            // Precedence step 1: an exact hostname first, then wildcards from the longest
            // suffix to the shortest, then routes without hostnames. A bucket's candidates
            // all beat every candidate of the buckets after it.
            if let Some(&b) = self.exact_hosts.get(host)
                && let Some(m) = self.find_in(b, &req)
            {
                return Some(m);
            }
            if !self.wildcard_hosts.is_empty() {
                for suffix in host::wildcard_suffixes(host) {
                    if suffix.len() > self.wildcard_max_len {
                        continue;
                    }
                    if let Some(&b) = self.wildcard_hosts.get(suffix)
                        && let Some(m) = self.find_in(b, &req)
                    {
                        return Some(m);
                    }
                }
            }
        }
        self.find_in(self.any_host?, &req)
    }

    #[inline]
    fn find_in<'a>(&'a self, bucket: u32, req: &Req<'_>) -> Option<RuleMatch<'a>> {
        let bucket = &self.buckets[bucket as usize];
        // Step 2: an Exact path, then prefixes longest first, then regexes, then no path
        // condition.
        if !bucket.exact.is_empty()
            && let Some(list) = bucket.exact.get(req.path)
            && let Some(rule) = self.first_match(list, req)
        {
            return Some(RuleMatch {
                rule,
                matched_prefix: None,
            });
        }
        if !bucket.prefix.is_empty() {
            for p in prefix_candidates(req.path, bucket.prefix_max_len) {
                if let Some((key, list)) = bucket.prefix.get_key_value(p)
                    && let Some(rule) = self.first_match(list, req)
                {
                    return Some(RuleMatch {
                        rule,
                        matched_prefix: Some(key),
                    });
                }
            }
        }
        for (re, cand) in bucket.regex.iter() {
            if re.is_match(req.path) && self.meets(*cand, req) {
                return Some(RuleMatch {
                    rule: &self.rules[cand.rule as usize],
                    matched_prefix: None,
                });
            }
        }
        if !bucket.any.is_empty()
            && let Some(rule) = self.first_match(&bucket.any, req)
        {
            return Some(RuleMatch {
                rule,
                matched_prefix: Some(""),
            });
        }
        None
    }

    #[inline]
    fn first_match<'a>(
        &'a self,
        list: &[Candidate],
        req: &Req<'_>,
    ) -> Option<&'a Arc<CompiledRule>> {
        list.iter()
            .find(|c| self.meets(**c, req))
            .map(|c| &self.rules[c.rule as usize])
    }

    #[inline]
    fn meets(&self, cand: Candidate, req: &Req<'_>) -> bool {
        let c = &self.conditions[cand.conditions as usize];
        c.matches(
            c.method_for(req.method, req.announced),
            req.query,
            req.headers,
        )
    }
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.route_count)
            .field("rules", &self.rules.len())
            .field("exact_hosts", &self.exact_hosts.len())
            .field("wildcard_hosts", &self.wildcard_hosts.len())
            .field("any_host", &self.any_host.is_some())
            .finish_non_exhaustive()
    }
}

/// The parts of a request that matching reads.
struct Req<'r> {
    method: &'r Method,
    /// For a CORS preflight: the method it announces.
    announced: Option<&'r Method>,
    path: &'r str,
    query: Option<&'r str>,
    headers: &'r HeaderMap,
}

/// Indices are `u32` to keep candidates small; a table never holds 4 billion matches.
fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn bucket_for(slot: &mut Option<u32>, buckets: &mut Vec<Bucket>) -> u32 {
    *slot.get_or_insert_with(|| {
        buckets.push(Bucket::default());
        index_u32(buckets.len() - 1)
    })
}

fn bucket_in(map: &mut FastMap<Box<str>, u32>, key: Box<str>, buckets: &mut Vec<Bucket>) -> u32 {
    if let Some(&b) = map.get(&*key) {
        return b;
    }
    buckets.push(Bucket::default());
    let b = index_u32(buckets.len() - 1);
    map.insert(key, b);
    b
}

/// Compares route ids as the strings `"{namespace}/{name}"` would compare, without
/// building them (`a-b/x` sorts before `a/x`, since `-` < `/`; comparing the
/// `(namespace, name)` tuples would say the opposite).
pub(crate) fn cmp_route_names(a: &RouteId, b: &RouteId) -> Ordering {
    fn joined(id: &RouteId) -> impl Iterator<Item = u8> + '_ {
        id.namespace()
            .bytes()
            .chain(std::iter::once(b'/'))
            .chain(id.name().bytes())
    }
    joined(a).cmp(joined(b))
}

// === compile a route ===

fn compile_route(route: &Route, backends: &dyn Backends) -> Result<CompiledRoute, ConfigError> {
    let mut hosts = Vec::with_capacity(route.hostnames.len());
    for (i, h) in route.hostnames.iter().enumerate() {
        let pattern = HostPattern::parse(h).map_err(|e| {
            ConfigError::new(format!("hostnames[{i}]"), format!("`{h}`: {}", e.reason()))
        })?;
        if !hosts.contains(&pattern) {
            hosts.push(pattern);
        }
    }
    let mut rules = Vec::with_capacity(route.rules.len());
    let mut matches = Vec::new();
    for (i, rule) in route.rules.iter().enumerate() {
        let at = || format!("rules[{i}]");
        let cors = rule.filters.iter().any(|f| matches!(f, Filter::Cors(_)));
        if rule.matches.is_empty() {
            matches.push((i, PathCond::Any, Conditions::default()));
        }
        for (k, m) in rule.matches.iter().enumerate() {
            let within = |e: ConfigError| e.within(&format!("{}.matches[{k}]", at()));
            let path = PathCond::compile(m.path.as_ref()).map_err(within)?;
            let conds = Conditions::compile(m.method.as_ref(), &m.headers, &m.query)
                .map_err(within)?
                .with_preflight_as_announced(cors);
            matches.push((i, path, conds));
        }
        let compiled =
            CompiledRule::compile(&route.id, i, rule, backends).map_err(|e| e.within(&at()))?;
        rules.push(Arc::new(compiled));
    }
    Ok(CompiledRoute {
        id: route.id.clone(),
        created: route.created,
        hosts,
        rules,
        matches,
    })
}
