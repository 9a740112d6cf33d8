//! [`TableBuilder`]: a route table rebuilt after a change at the cost of the change.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use super::hash::{FastMap, FoldBuild, ShardedMap, shrink_if_sparse};
use super::model::{Filter, Route};
use super::rule::DefaultRetry;
use super::table::{Bucket, CompiledRoute, HostKey, RouteTable, compile_route};
use crate::Backends;
use crate::chunked::Chunked;
use crate::error::ConfigError;
use crate::retry::RetryPolicy;

/// Builds [`RouteTable`]s from successive versions of one route list (one listener's
/// routes, say), compiling only what changed since the previous build.
///
/// Identity is the contract: a route is the same as last time when its `Arc` is the same
/// one ([`Arc::ptr_eq`]); its compiled form (hostnames, matches, every rule's stack) is
/// then reused as it is, unless a backend it names resolves differently now (the caller
/// says which names, see [`build`](Self::build)). A new or changed route is compiled.
/// Each hostname bucket of the table is behind its own `Arc`: the buckets no added,
/// changed or removed route is in are shared with the previous table, the others are
/// rebuilt from their routes. The tables are the ones [`RouteTable::build_partial`] would
/// build from the same routes (which builds with a fresh builder): same precedence, one
/// error per invalid route (in input order).
///
/// A build compares the input with the previous one by pointer from both ends, chunk by
/// chunk for a [`Chunked`] input ([`build_list`](Self::build_list)), then route by route
/// within the chunks that differ: only the routes between the common prefix and the
/// common suffix are looked up, added or taken away (one changed route costs O(1) hash
/// work, a pointer comparison per chunk, and the compilation and bucket rebuilds it
/// needs). Routes naming a `stale` backend are found by an index from backend names to
/// routes; the errors of invalid routes by a walk of the input while there are any.
/// The host maps of the tables it makes are sharded: a table shares the shards no
/// change reached with the previous one.
///
/// Routes with equal creation time and `{namespace}/{name}` (the same route listed twice,
/// say) rank in input order, as seen when they were compiled.
pub struct TableBuilder {
    default_retry: Option<DefaultRetry>,
    /// The routes of the last build, by the address of their input `Arc`.
    routes: FastMap<usize, Entry>,
    /// (hash of a backend name, key in `routes`) for every backend name a route sends
    /// or mirrors to: the routes a stale name reaches, without a walk of every route.
    by_backend: BTreeSet<(u64, usize)>,
    buckets: FastMap<HostKey, Members>,
    /// The buckets whose routes changed since the last build.
    touched: Vec<HostKey>,
    exact_hosts: ShardedMap<Arc<Bucket>>,
    wildcard_hosts: ShardedMap<Arc<Bucket>>,
    any_host: Option<Arc<Bucket>>,
    /// Counts compilations, to order equal routes by when they were compiled.
    sequence: u64,
    /// The input of the last build.
    inputs: Chunked<Arc<Route>>,
    /// How many of `inputs` are invalid routes (counting repeats).
    invalid: usize,
}

/// One input route of the last build.
struct Entry {
    /// Held so its address is not reused by another route while the entry exists.
    input: Arc<Route>,
    /// The error boxed: most routes are valid, and an inline error would make every
    /// entry (one per route) three times the size.
    compiled: Result<Arc<CompiledRoute>, Box<ConfigError>>,
    /// Input order, among routes of equal precedence.
    sequence: u64,
    /// How many times the last build's input lists it.
    uses: usize,
}

/// The routes of one hostname bucket, and the bucket built from them.
#[derive(Default)]
struct Members {
    routes: Vec<(Arc<CompiledRoute>, u64)>,
    touched: bool,
}

impl TableBuilder {
    /// A builder that has built nothing yet.
    pub fn new() -> Self {
        Self {
            default_retry: None,
            routes: FastMap::default(),
            by_backend: BTreeSet::new(),
            buckets: FastMap::default(),
            touched: Vec::new(),
            exact_hosts: ShardedMap::default(),
            wildcard_hosts: ShardedMap::default(),
            any_host: None,
            sequence: 0,
            inputs: Chunked::new(),
            invalid: 0,
        }
    }

    /// Gives every rule that sets no retry policy `retry` (a gateway's traffic default),
    /// as if its route said so. Applies to the routes compiled from now on: set it before
    /// the first build.
    #[must_use]
    pub fn with_default_retry(mut self, retry: Option<RetryPolicy>) -> Self {
        self.default_retry = retry.map(DefaultRetry::new);
        self
    }

    /// The table of `routes`: the routes ptr-equal to one of the previous build are
    /// reused unless one of the backend names they send to (backendRefs and mirrors) is
    /// `stale` (it resolves to a different backend than at the previous build: rebuilt,
    /// new or gone); the others are compiled (backends through `backends`). Invalid
    /// routes are left out and reported, one error each, in input order.
    ///
    /// Walks every route (to list the stale names, and to compare with the previous
    /// input): [`build_list`](Self::build_list) costs what changed.
    pub fn build(
        &mut self,
        routes: &[Arc<Route>],
        backends: &dyn Backends,
        stale: &dyn Fn(&str) -> bool,
    ) -> (RouteTable, Vec<ConfigError>) {
        let inputs = self.inputs.clone();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for route in routes.iter().chain(inputs.iter()) {
            names.extend(backend_names(route).filter(|n| stale(n)));
        }
        let names: Vec<&str> = names.into_iter().collect();
        let list: Chunked<Arc<Route>> = routes.iter().cloned().collect();
        self.build_list(&list, backends, &names)
    }

    /// [`build`](Self::build) from a [`Chunked`] list, told the `stale` backend names:
    /// the chunks the same `Arc`s as in the previous input are not looked into, and the
    /// routes naming a stale backend are found by an index. One changed route among
    /// thousands costs a pointer comparison per chunk, O(1) hash work, and the
    /// compilation and bucket rebuilds it needs.
    pub fn build_list(
        &mut self,
        routes: &Chunked<Arc<Route>>,
        backends: &dyn Backends,
        stale: &[&str],
    ) -> (RouteTable, Vec<ConfigError>) {
        let inputs = std::mem::replace(&mut self.inputs, routes.clone());
        let (old, new) = (inputs.chunks(), routes.chunks());
        let same = |a: &Arc<Vec<Arc<Route>>>, b: &Arc<Vec<Arc<Route>>>| Arc::ptr_eq(a, b);
        let prefix = old.iter().zip(new).take_while(|(a, b)| same(a, b)).count();
        let suffix = old[prefix..]
            .iter()
            .rev()
            .zip(new[prefix..].iter().rev())
            .take_while(|(a, b)| same(a, b))
            .count();
        let old: Vec<&Arc<Route>> = old[prefix..old.len() - suffix]
            .iter()
            .flat_map(|c| c.iter())
            .collect();
        let new: Vec<&Arc<Route>> = new[prefix..new.len() - suffix]
            .iter()
            .flat_map(|c| c.iter())
            .collect();
        // Within the chunks that differ, by pointer from both ends.
        let same = |(a, b): (&&Arc<Route>, &&Arc<Route>)| Arc::ptr_eq(a, b);
        let prefix = old.iter().zip(&new).take_while(|p| same(*p)).count();
        let suffix = old[prefix..]
            .iter()
            .rev()
            .zip(new[prefix..].iter().rev())
            .take_while(|p| same(*p))
            .count();
        // Added first: a route that only moved keeps its compiled form.
        for route in &new[prefix..new.len() - suffix] {
            self.add(route, backends);
        }
        for route in &old[prefix..old.len() - suffix] {
            self.remove(route);
        }
        if !stale.is_empty() {
            self.recompile_stale(backends, stale);
        }
        self.rebuild_touched();
        // After many routes went (emptied buckets are removed just above): their room
        // goes back.
        shrink_if_sparse(&mut self.routes);
        shrink_if_sparse(&mut self.buckets);
        let mut errors = Vec::new();
        if self.invalid > 0 {
            for route in self.inputs.iter() {
                if let Some(Err(e)) = self
                    .routes
                    .get(&(Arc::as_ptr(route) as usize))
                    .map(|e| &e.compiled)
                {
                    errors.push(ConfigError::clone(e));
                }
            }
        }
        let table = RouteTable::from_buckets(
            self.exact_hosts.clone(),
            self.wildcard_hosts.clone(),
            self.any_host.clone(),
            self.inputs.len() - self.invalid,
        );
        (table, errors)
    }

    /// The routes of the last build, in input order.
    pub fn inputs(&self) -> &Chunked<Arc<Route>> {
        &self.inputs
    }

    /// Whether a route of the last build sends or mirrors to one of `names` (by the
    /// index: a hash collision can say yes for a name no route uses).
    pub fn sends_to_any(&self, names: &[&str]) -> bool {
        names.iter().any(|name| {
            let hash = FoldBuild.hash_one(name);
            self.by_backend
                .range((hash, 0)..=(hash, usize::MAX))
                .next()
                .is_some()
        })
    }

    /// Counts one more listing of `route`, compiling it if it is new.
    fn add(&mut self, route: &Arc<Route>, backends: &dyn Backends) {
        let key = Arc::as_ptr(route) as usize;
        let entry = match self.routes.get_mut(&key) {
            Some(entry) => entry,
            None => {
                let entry = self.compile(route, backends);
                for name in backend_names(route) {
                    self.by_backend.insert((FoldBuild.hash_one(name), key));
                }
                self.routes.entry(key).or_insert(entry)
            }
        };
        entry.uses += 1;
        if entry.compiled.is_err() {
            self.invalid += 1;
        }
    }

    /// Counts one listing of `route` less, forgetting it at none.
    fn remove(&mut self, route: &Arc<Route>) {
        let key = Arc::as_ptr(route) as usize;
        let Some(entry) = self.routes.get_mut(&key) else {
            return;
        };
        entry.uses -= 1;
        if entry.compiled.is_err() {
            self.invalid -= 1;
        }
        if entry.uses == 0
            && let Some(entry) = self.routes.remove(&key)
        {
            for name in backend_names(&entry.input) {
                self.by_backend.remove(&(FoldBuild.hash_one(name), key));
            }
            self.forget(&entry);
        }
    }

    /// Compiles again the routes that send to or mirror a `stale` backend (found by
    /// `by_backend`; a hash collision recompiles a route more, to the same result).
    fn recompile_stale(&mut self, backends: &dyn Backends, stale: &[&str]) {
        let mut keys: BTreeSet<usize> = BTreeSet::new();
        for name in stale {
            let hash = FoldBuild.hash_one(name);
            keys.extend(
                self.by_backend
                    .range((hash, 0)..=(hash, usize::MAX))
                    .map(|(_, k)| *k),
            );
        }
        // In the order they were compiled (the order of equal routes).
        let mut keys: Vec<(u64, usize)> = keys
            .into_iter()
            .filter_map(|k| Some((self.routes.get(&k)?.sequence, k)))
            .collect();
        keys.sort_unstable();
        for (_, key) in keys {
            let Some(old) = self.routes.remove(&key) else {
                continue;
            };
            self.forget(&old);
            let mut entry = self.compile(&old.input, backends);
            entry.uses = old.uses;
            if old.compiled.is_err() {
                self.invalid -= old.uses;
            }
            if entry.compiled.is_err() {
                self.invalid += entry.uses;
            }
            self.routes.insert(key, entry);
        }
    }

    /// Compiles `route` and puts it into its buckets.
    fn compile(&mut self, route: &Arc<Route>, backends: &dyn Backends) -> Entry {
        self.sequence += 1;
        let sequence = self.sequence;
        let compiled = compile_route(route, backends, self.default_retry.as_ref())
            .map(|mut compiled| {
                // Routes on a hostname another route has share its name.
                for host in &mut *compiled.hosts {
                    if let Some((known, _)) = self.buckets.get_key_value(host) {
                        *host = known.clone();
                    }
                }
                Arc::new(compiled)
            })
            .map_err(|e| Box::new(e.for_route(route.id.clone())));
        if let Ok(compiled) = &compiled {
            for host in &*compiled.hosts {
                let members = self.buckets.entry(host.clone()).or_default();
                members.routes.push((Arc::clone(compiled), sequence));
                if !members.touched {
                    members.touched = true;
                    self.touched.push(host.clone());
                }
            }
        }
        Entry {
            input: Arc::clone(route),
            compiled,
            sequence,
            uses: 0,
        }
    }

    /// Takes a route of the previous build out of its buckets.
    fn forget(&mut self, entry: &Entry) {
        let Ok(compiled) = &entry.compiled else {
            return;
        };
        for host in &*compiled.hosts {
            if let Some(members) = self.buckets.get_mut(host)
                && let Some(at) = members
                    .routes
                    .iter()
                    .position(|(r, s)| *s == entry.sequence && Arc::ptr_eq(r, compiled))
            {
                members.routes.remove(at);
                if !members.touched {
                    members.touched = true;
                    self.touched.push(host.clone());
                }
            }
        }
    }

    /// Rebuilds the buckets whose routes changed; drops the empty ones.
    fn rebuild_touched(&mut self) {
        let mut emptied = Vec::new();
        for host in std::mem::take(&mut self.touched) {
            let Some(members) = self.buckets.get_mut(&host) else {
                continue;
            };
            members.touched = false;
            if members.routes.is_empty() {
                emptied.push(host);
                continue;
            }
            members
                .routes
                .sort_by(|(a, sa), (b, sb)| a.precedence(b).then(sa.cmp(sb)));
            // Most buckets hold one route: no room kept for three more.
            members.routes.shrink_to_fit();
            let bucket = Arc::new(Bucket::build(members.routes.iter().map(|(r, _)| &**r)));
            match &host {
                HostKey::Exact(h) => {
                    self.exact_hosts.insert(Arc::clone(h), bucket);
                }
                HostKey::Wildcard(h) => {
                    self.wildcard_hosts.insert(Arc::clone(h), bucket);
                }
                HostKey::Any => self.any_host = Some(bucket),
            }
        }
        for host in emptied {
            self.buckets.remove(&host);
            match &host {
                HostKey::Exact(h) => {
                    self.exact_hosts.remove(h);
                }
                HostKey::Wildcard(h) => {
                    self.wildcard_hosts.remove(h);
                }
                HostKey::Any => self.any_host = None,
            }
        }
    }

    /// The compiled rules of the route at `input`'s address in the last build (tests of
    /// reuse).
    #[cfg(test)]
    pub(crate) fn compiled_rules(
        &self,
        input: &Arc<Route>,
    ) -> Option<Vec<Arc<super::CompiledRule>>> {
        let entry = self.routes.get(&(Arc::as_ptr(input) as usize))?;
        entry.compiled.as_ref().ok().map(|c| c.rules.to_vec())
    }
}

impl Default for TableBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TableBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableBuilder")
            .field("routes", &self.routes.len())
            .field("buckets", &self.buckets.len())
            .field("default_retry", &self.default_retry.is_some())
            .finish_non_exhaustive()
    }
}

/// Every backend name `route` sends to (backendRefs) or mirrors to, repeats included.
fn backend_names(route: &Route) -> impl Iterator<Item = &str> {
    route.rules.iter().flat_map(|rule| {
        mirrors(&rule.filters).chain(
            rule.backends
                .iter()
                .flat_map(|b| std::iter::once(b.name.as_str()).chain(mirrors(&b.filters))),
        )
    })
}

/// The backend names of the `RequestMirror` filters among `filters`.
fn mirrors(filters: &[Filter]) -> impl Iterator<Item = &str> {
    filters.iter().filter_map(|f| match f {
        Filter::RequestMirror(m) => Some(m.backend.as_str()),
        _ => None,
    })
}
