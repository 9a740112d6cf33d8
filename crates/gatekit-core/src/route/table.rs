//! The compiled, immutable route table. See the [module docs](super) for the algorithm.

use std::cmp::{Ordering, Reverse};
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};
use regex::Regex;

use super::conditions::{Conditions, preflight_method};
use super::hash::{FastMap, ShardedMap};
use super::host::{self, HostPattern, MAX_HOST};
use super::model::{Filter, Route, RouteId};
use super::path::{PathCond, prefix_candidates};
use super::rule::{CompiledRule, DefaultRetry};
use crate::Backends;
use crate::error::ConfigError;
use crate::small_list::SmallList;

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
/// See the [module docs](super) for the semantics and the algorithm. Each hostname
/// bucket sits behind its own `Arc`, so a [`TableBuilder`](super::TableBuilder) shares
/// the buckets no changed route touches between successive tables.
pub struct RouteTable {
    exact_hosts: ShardedMap<Arc<Bucket>>,
    wildcard_hosts: ShardedMap<Arc<Bucket>>,
    wildcard_max_len: usize,
    any_host: Option<Arc<Bucket>>,
    route_count: usize,
}

/// One entry of a candidate list: a match's conditions and the rule it leads to.
#[derive(Clone, Debug)]
struct Candidate {
    conditions: Arc<Conditions>,
    rule: Arc<CompiledRule>,
}

/// The candidates of one hostname bucket (one exact host, one wildcard suffix, or "any
/// host"), indexed by path, and the routes they come from. Every list is sorted by
/// precedence steps 3 to 8.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    /// The routes in the bucket, in precedence order: what a
    /// [`TableBuilder`](super::TableBuilder) builds the bucket again from when they
    /// change (most buckets hold one, inline).
    members: SmallList<Arc<CompiledRoute>>,
    exact: PathIndex,
    prefix: PathIndex,
    prefix_max_len: usize,
    regex: Box<[(Regex, Candidate)]>,
    /// Matches without a path condition: tried after every path condition.
    any: Box<[Candidate]>,
}

/// Candidate lists by path (`Exact` paths, or normalized `PathPrefix` values), built
/// once. Most buckets hold a path or two (a hostname per route): those are a boxed slice
/// scanned in order (a length comparison rejects most keys), one allocation instead of a
/// hash table sized for growth; from [`FEW_PATHS`] paths on, a hash map (boxed: the
/// index of a bucket of few paths stays two words). The keys are the compiled matches'
/// own strings (`Arc`), not copies; a list of one candidate (most) is kept inline.
#[derive(Debug)]
enum PathIndex {
    Few(Box<[PathEntry]>),
    Many(Box<FastMap<Arc<str>, SmallList<Candidate>>>),
}

/// A path and its candidate list.
type PathEntry = (Arc<str>, SmallList<Candidate>);

/// From this many paths on, a [`PathIndex`] is hashed.
const FEW_PATHS: usize = 5;

impl Default for PathIndex {
    fn default() -> Self {
        PathIndex::Few(Box::default())
    }
}

impl PathIndex {
    /// The index of `lists`, which it takes as they are.
    fn new(lists: Vec<(Arc<str>, Vec<Candidate>)>) -> Self {
        let lists = lists
            .into_iter()
            .map(|(path, list)| (path, SmallList::from(list)));
        if lists.len() < FEW_PATHS {
            PathIndex::Few(lists.collect())
        } else {
            PathIndex::Many(Box::new(lists.collect()))
        }
    }

    #[inline]
    fn is_empty(&self) -> bool {
        match self {
            PathIndex::Few(list) => list.is_empty(),
            PathIndex::Many(map) => map.is_empty(),
        }
    }

    /// The key equal to `path` (borrowed from the index) and its candidates.
    #[inline]
    fn get(&self, path: &str) -> Option<(&str, &[Candidate])> {
        match self {
            PathIndex::Few(list) => list
                .iter()
                .find(|(k, _)| **k == *path)
                .map(|(k, v)| (&**k, &**v)),
            PathIndex::Many(map) => map.get_key_value(path).map(|(k, v)| (&**k, &**v)),
        }
    }

    /// Every candidate list.
    fn lists(&self) -> Box<dyn Iterator<Item = &[Candidate]> + '_> {
        match self {
            PathIndex::Few(list) => Box::new(list.iter().map(|(_, v)| &**v)),
            PathIndex::Many(map) => Box::new(map.values().map(|v| &**v)),
        }
    }
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

/// The hostname bucket a route's matches go into.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum HostKey {
    /// One exact (lowercase) host.
    Exact(Arc<str>),
    /// A wildcard, by its suffix (`example.com` for `*.example.com`).
    Wildcard(Arc<str>),
    /// Routes without hostnames.
    Any,
}

/// A route that passed validation. Its id and creation time are the model's, which it
/// points to (as its rules do).
pub(crate) struct CompiledRoute {
    pub(crate) route: Arc<Route>,
    /// The buckets the route is in, each once (`[Any]` for a route without hostnames).
    /// The lists hold one item inline (most routes have one hostname, one rule, one
    /// match).
    pub(crate) hosts: SmallList<HostKey>,
    pub(crate) rules: SmallList<Arc<CompiledRule>>,
    /// (rule index within `rules`, path, conditions), in rule then match order.
    matches: SmallList<(usize, PathCond, Arc<Conditions>)>,
    /// When a [`TableBuilder`](super::TableBuilder) compiled it: input order among
    /// routes of equal precedence.
    pub(crate) sequence: u64,
}

impl fmt::Debug for CompiledRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledRoute")
            .field("id", &self.route.id)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl CompiledRoute {
    /// Precedence steps 6 and 7: oldest first, then `"{namespace}/{name}"` alphabetical.
    pub(crate) fn precedence(&self, other: &CompiledRoute) -> Ordering {
        self.route
            .created
            .cmp(&other.route.created)
            .then_with(|| cmp_route_names(&self.route.id, &other.route.id))
    }
}

// === impl Bucket ===

impl Bucket {
    /// The bucket of `routes`, given in precedence order (steps 6 and 7).
    pub(crate) fn build(routes: Vec<Arc<CompiledRoute>>) -> Bucket {
        let mut prefix_max_len = 0;
        let mut regex = Vec::new();
        let mut any = Vec::new();
        // Lists by path while building: a position in `exact` or `prefix` by key.
        let mut exact: Vec<(Arc<str>, Vec<Candidate>)> = Vec::new();
        let mut prefix: Vec<(Arc<str>, Vec<Candidate>)> = Vec::new();
        let mut at: FastMap<(bool, &str), usize> = FastMap::default();
        for route in &routes {
            for (rule, path, conds) in route.matches.iter() {
                let key = list_key(conds);
                let cand = Candidate {
                    conditions: Arc::clone(conds),
                    rule: Arc::clone(&route.rules[*rule]),
                };
                let key_of = |c: &Candidate| list_key(&c.conditions);
                let (lists, p) = match path {
                    PathCond::Exact(p) => (&mut exact, p),
                    PathCond::Prefix(p) => {
                        prefix_max_len = prefix_max_len.max(p.len());
                        (&mut prefix, p)
                    }
                    PathCond::Regex(re) => {
                        let key_of = |(_, c): &(Regex, Candidate)| key_of(c);
                        insert_sorted(&mut regex, (Regex::clone(re), cand), key, key_of);
                        continue;
                    }
                    PathCond::Any => {
                        insert_sorted(&mut any, cand, key, key_of);
                        continue;
                    }
                };
                let is_exact = matches!(path, PathCond::Exact(_));
                match at.get(&(is_exact, &**p)) {
                    Some(&i) => insert_sorted(&mut lists[i].1, cand, key, key_of),
                    None => {
                        at.insert((is_exact, &**p), lists.len());
                        lists.push((Arc::clone(p), vec![cand]));
                    }
                }
            }
        }
        Bucket {
            members: routes.into(),
            exact: PathIndex::new(exact),
            prefix: PathIndex::new(prefix),
            prefix_max_len,
            regex: regex.into(),
            any: any.into(),
        }
    }

    /// The routes in the bucket, in precedence order.
    pub(crate) fn members(&self) -> &[Arc<CompiledRoute>] {
        &self.members
    }

    /// How many rules its candidates lead to (for `Debug`).
    fn candidate_count(&self) -> usize {
        self.exact.lists().map(<[Candidate]>::len).sum::<usize>()
            + self.prefix.lists().map(<[Candidate]>::len).sum::<usize>()
            + self.regex.len()
            + self.any.len()
    }
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
    ///
    /// To rebuild a table after a change, compiling only what changed, keep a
    /// [`TableBuilder`](super::TableBuilder) instead.
    pub fn build_partial(
        routes: Vec<Route>,
        backends: &dyn Backends,
    ) -> (RouteTable, Vec<ConfigError>) {
        let routes: Vec<Arc<Route>> = routes.into_iter().map(Arc::new).collect();
        super::TableBuilder::new().build(&routes, backends, &|_| false)
    }

    /// A table without routes: every request finds nothing.
    pub fn empty() -> RouteTable {
        Self::from_buckets(ShardedMap::default(), ShardedMap::default(), None, 0)
    }

    /// The table of these buckets.
    pub(crate) fn from_buckets(
        exact_hosts: ShardedMap<Arc<Bucket>>,
        wildcard_hosts: ShardedMap<Arc<Bucket>>,
        any_host: Option<Arc<Bucket>>,
        route_count: usize,
    ) -> RouteTable {
        let wildcard_max_len = wildcard_hosts
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        RouteTable {
            exact_hosts,
            wildcard_hosts,
            wildcard_max_len,
            any_host,
            route_count,
        }
    }

    /// The number of routes in the table (those that passed validation).
    pub fn route_count(&self) -> usize {
        self.route_count
    }

    /// The bucket of `key`, if the table has one (tests of bucket sharing).
    #[cfg(test)]
    pub(crate) fn bucket(&self, key: &HostKey) -> Option<&Arc<Bucket>> {
        match key {
            HostKey::Exact(h) => self.exact_hosts.get(h),
            HostKey::Wildcard(h) => self.wildcard_hosts.get(h),
            HostKey::Any => self.any_host.as_ref(),
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
            if let Some(b) = self.exact_hosts.get(host)
                && let Some(m) = self.find_in(b, &req)
            {
                return Some(m);
            }
            if !self.wildcard_hosts.is_empty() {
                for suffix in host::wildcard_suffixes(host) {
                    if suffix.len() > self.wildcard_max_len {
                        continue;
                    }
                    if let Some(b) = self.wildcard_hosts.get(suffix)
                        && let Some(m) = self.find_in(b, &req)
                    {
                        return Some(m);
                    }
                }
            }
        }
        self.find_in(self.any_host.as_ref()?, &req)
    }

    #[inline]
    fn find_in<'a>(&'a self, bucket: &'a Bucket, req: &Req<'_>) -> Option<RuleMatch<'a>> {
        // Step 2: an Exact path, then prefixes longest first, then regexes, then no path
        // condition.
        if !bucket.exact.is_empty()
            && let Some((_, list)) = bucket.exact.get(req.path)
            && let Some(rule) = first_match(list, req)
        {
            return Some(RuleMatch {
                rule,
                matched_prefix: None,
            });
        }
        if !bucket.prefix.is_empty() {
            for p in prefix_candidates(req.path, bucket.prefix_max_len) {
                if let Some((key, list)) = bucket.prefix.get(p)
                    && let Some(rule) = first_match(list, req)
                {
                    return Some(RuleMatch {
                        rule,
                        matched_prefix: Some(key),
                    });
                }
            }
        }
        for (re, cand) in bucket.regex.iter() {
            if re.is_match(req.path) && meets(cand, req) {
                return Some(RuleMatch {
                    rule: &cand.rule,
                    matched_prefix: None,
                });
            }
        }
        if !bucket.any.is_empty()
            && let Some(rule) = first_match(&bucket.any, req)
        {
            return Some(RuleMatch {
                rule,
                matched_prefix: Some(""),
            });
        }
        None
    }
}

#[inline]
fn first_match<'a>(list: &'a [Candidate], req: &Req<'_>) -> Option<&'a Arc<CompiledRule>> {
    list.iter().find(|c| meets(c, req)).map(|c| &c.rule)
}

#[inline]
fn meets(cand: &Candidate, req: &Req<'_>) -> bool {
    let c = &*cand.conditions;
    c.matches(
        c.method_for(req.method, req.announced),
        req.query,
        req.headers,
    )
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
            .field(
                "candidates",
                &self
                    .exact_hosts
                    .iter()
                    .chain(self.wildcard_hosts.iter())
                    .map(|(_, b)| b)
                    .chain(&self.any_host)
                    .map(|b| b.candidate_count())
                    .sum::<usize>(),
            )
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

/// The conditions of a match that has none but its path (most matches): one shared
/// value instead of one allocation per match.
fn no_conditions() -> Arc<Conditions> {
    static NONE: std::sync::LazyLock<Arc<Conditions>> =
        std::sync::LazyLock::new(|| Arc::new(Conditions::default()));
    Arc::clone(&NONE)
}

/// Compiles `route`: its hostnames, matches and rules (each rule's stack built, with
/// `default_retry` where the rule sets no retry policy).
pub(crate) fn compile_route(
    route: &Arc<Route>,
    backends: &dyn Backends,
    default_retry: Option<&DefaultRetry>,
) -> Result<CompiledRoute, ConfigError> {
    let mut hosts = Vec::with_capacity(route.hostnames.len().max(1));
    for (i, h) in route.hostnames.iter().enumerate() {
        let pattern = HostPattern::parse(h).map_err(|e| {
            ConfigError::new(format!("hostnames[{i}]"), format!("`{h}`: {}", e.reason()))
        })?;
        let key = match pattern {
            HostPattern::Exact(name) => HostKey::Exact(name.into()),
            HostPattern::Wildcard(suffix) => HostKey::Wildcard(suffix.into()),
        };
        // A route listing `a.com` twice goes into its bucket once.
        if !hosts.contains(&key) {
            hosts.push(key);
        }
    }
    if hosts.is_empty() {
        hosts.push(HostKey::Any);
    }
    let mut rules = Vec::with_capacity(route.rules.len());
    let mut matches = Vec::with_capacity(route.rules.iter().map(|r| r.matches.len().max(1)).sum());
    for (i, rule) in route.rules.iter().enumerate() {
        let at = || format!("rules[{i}]");
        let cors = rule.filters.iter().any(|f| matches!(f, Filter::Cors(_)));
        if rule.matches.is_empty() {
            matches.push((i, PathCond::Any, no_conditions()));
        }
        for (k, m) in rule.matches.iter().enumerate() {
            let within = |e: ConfigError| e.within(&format!("{}.matches[{k}]", at()));
            let path = PathCond::compile(m.path.as_ref()).map_err(within)?;
            let conds = if m.method.is_none() && m.headers.is_empty() && m.query.is_empty() && !cors
            {
                no_conditions()
            } else {
                Arc::new(
                    Conditions::compile(m.method.as_ref(), &m.headers, &m.query)
                        .map_err(within)?
                        .with_preflight_as_announced(cors),
                )
            };
            matches.push((i, path, conds));
        }
        let compiled = CompiledRule::compile(route, i, backends, default_retry)
            .map_err(|e| e.within(&at()))?;
        rules.push(Arc::new(compiled));
    }
    Ok(CompiledRoute {
        route: Arc::clone(route),
        hosts: hosts.into(),
        rules: rules.into(),
        matches: matches.into(),
        sequence: 0,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::model::{HeaderMatch, Match, PathMatch, Rule, StringMatch};
    use super::*;
    use crate::Backend;

    fn route(name: &str, header: bool) -> Route {
        let mut route = Route::new(RouteId::new("ns", name));
        let mut rule = Rule::default();
        rule.matches.push(Match {
            path: Some(PathMatch::Prefix(format!("/{name}"))),
            ..Match::default()
        });
        if header {
            rule.matches[0].headers = Box::new([HeaderMatch {
                name: "x-a".into(),
                value: StringMatch::Exact("1".into()),
            }]);
        }
        route.rules.push(rule.clone());
        route.rules.push(Rule::default());
        route
    }

    /// A table of one host with `n` prefix routes `/p{i}` (route `p{i}`) and as many exact
    /// ones `/e{i}`.
    fn one_host(n: usize) -> RouteTable {
        let routes = (0..n)
            .map(|i| {
                let mut route = Route::new(RouteId::new("ns", format!("p{i}")));
                route.hostnames.push("a.test".into());
                let mut rule = Rule::default();
                rule.matches.push(Match::prefix(format!("/p{i}")));
                rule.matches.push(Match::exact(format!("/e{i}")));
                route.rules.push(rule);
                route
            })
            .collect();
        let backends: HashMap<String, Backend> = HashMap::new();
        RouteTable::build(routes, &backends).unwrap()
    }

    #[test]
    fn few_and_many_paths_are_found_alike() {
        for n in [1, FEW_PATHS - 1, FEW_PATHS, 3 * FEW_PATHS] {
            let table = one_host(n);
            let bucket = table.bucket(&HostKey::Exact("a.test".into())).unwrap();
            let few = n < FEW_PATHS;
            assert_eq!(matches!(bucket.prefix, PathIndex::Few(_)), few, "{n} paths");
            assert_eq!(matches!(bucket.exact, PathIndex::Few(_)), few, "{n} paths");
            let find = |path: &str| {
                let uri: Uri = format!("http://a.test{path}").parse().unwrap();
                table
                    .find(&Method::GET, &uri, &HeaderMap::new())
                    .map(|m| (m.rule.route_id().name().to_owned(), m.matched_prefix))
            };
            for i in 0..n {
                let name = format!("p{i}");
                let prefix = format!("/p{i}");
                assert_eq!(
                    find(&format!("/p{i}/x")),
                    Some((name.clone(), Some(&*prefix)))
                );
                assert_eq!(find(&format!("/e{i}")), Some((name, None)));
            }
            assert_eq!(find(&format!("/p{n}")), None);
            assert_eq!(find("/e0/x"), None);
        }
    }

    #[test]
    fn matches_without_conditions_share_one_and_take_no_spare_room() {
        let backends: HashMap<String, Backend> = HashMap::new();
        let compile = |r| compile_route(&Arc::new(r), &backends, None).unwrap();
        let (a, b, h) = (
            compile(route("a", false)),
            compile(route("b", false)),
            compile(route("h", true)),
        );
        // The path-only match and the rule without matches share the empty conditions.
        assert!(Arc::ptr_eq(&a.matches[0].2, &b.matches[1].2));
        assert!(Arc::ptr_eq(&a.matches[0].2, &a.matches[1].2));
        assert!(!Arc::ptr_eq(&a.matches[0].2, &h.matches[0].2));
        assert_eq!(a.matches.len(), 2);
    }
}
