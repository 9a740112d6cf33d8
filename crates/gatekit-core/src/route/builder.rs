//! [`TableBuilder`]: a route table rebuilt after a change at the cost of the change.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use super::hash::{FastMap, FoldBuild, ShardedMap};
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
    /// The routes of the last build, found by the address of their input `Arc` (which
    /// each entry holds: no key kept beside it).
    routes: HashTable<Entry>,
    /// (hash of a backend name, key in `routes`) for every backend name a route sends
    /// or mirrors to: the routes a stale name reaches, without a walk of every route.
    by_backend: BTreeSet<(u64, usize)>,
    /// During a build, the routes of the buckets it changes (taken from their buckets
    /// at the first change), which [`rebuild_touched`](Self::rebuild_touched) makes
    /// the new buckets of. Empty between builds: a bucket keeps its own routes.
    pending: FastMap<HostKey, Vec<Arc<CompiledRoute>>>,
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

/// One input route of the last build (one per route: kept small).
struct Entry {
    compiled: Compiled,
    /// How many times the last build's input lists it.
    uses: usize,
}

/// A route as compiled: its compiled form, which points to the input route (held so its
/// address is not reused by another route while the entry exists) and keeps its
/// sequence number, or the route's error.
enum Compiled {
    Valid(Arc<CompiledRoute>),
    /// Boxed: most routes are valid, and an inline error would make every entry
    /// several times the size.
    Invalid(Box<Invalid>),
}

/// A route that did not compile, and why.
struct Invalid {
    input: Arc<Route>,
    error: ConfigError,
    /// When it was compiled (see [`CompiledRoute::sequence`]).
    sequence: u64,
}

impl Entry {
    /// The input route.
    fn input(&self) -> &Arc<Route> {
        match &self.compiled {
            Compiled::Valid(c) => &c.route,
            Compiled::Invalid(i) => &i.input,
        }
    }

    /// When it was compiled.
    fn sequence(&self) -> u64 {
        match &self.compiled {
            Compiled::Valid(c) => c.sequence,
            Compiled::Invalid(i) => i.sequence,
        }
    }

    fn is_invalid(&self) -> bool {
        matches!(self.compiled, Compiled::Invalid(_))
    }
}

/// The key of an input route in [`TableBuilder::routes`]: its address.
fn key_of(route: &Arc<Route>) -> usize {
    Arc::as_ptr(route) as usize
}

fn hash_key(key: usize) -> u64 {
    FoldBuild.hash_one(key)
}

impl TableBuilder {
    /// A builder that has built nothing yet.
    pub fn new() -> Self {
        Self {
            default_retry: None,
            routes: HashTable::new(),
            by_backend: BTreeSet::new(),
            pending: FastMap::default(),
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
        // After many routes went: their room goes back.
        if self.routes.capacity() > 64 && self.routes.len() < self.routes.capacity() / 4 {
            self.routes.shrink_to_fit(|e| hash_key(key_of(e.input())));
        }
        let mut errors = Vec::new();
        if self.invalid > 0 {
            for route in self.inputs.iter() {
                if let Some(Compiled::Invalid(i)) = self.entry(key_of(route)).map(|e| &e.compiled) {
                    errors.push(i.error.clone());
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

    /// The entry of the input route at address `key`.
    fn entry(&self, key: usize) -> Option<&Entry> {
        self.routes
            .find(hash_key(key), |e| key_of(e.input()) == key)
    }

    fn entry_mut(&mut self, key: usize) -> Option<&mut Entry> {
        self.routes
            .find_mut(hash_key(key), |e| key_of(e.input()) == key)
    }

    /// Takes the entry of the input route at address `key` out.
    fn take_entry(&mut self, key: usize) -> Option<Entry> {
        let found = self
            .routes
            .find_entry(hash_key(key), |e| key_of(e.input()) == key);
        found.ok().map(|slot| slot.remove().0)
    }

    /// Puts in the entry of a route that has none.
    fn put_entry(&mut self, entry: Entry) {
        let hash = hash_key(key_of(entry.input()));
        self.routes
            .insert_unique(hash, entry, |e| hash_key(key_of(e.input())));
    }

    /// Counts one more listing of `route`, compiling it if it is new.
    fn add(&mut self, route: &Arc<Route>, backends: &dyn Backends) {
        let key = key_of(route);
        if self.entry(key).is_none() {
            let entry = self.compile(route, backends);
            for name in backend_names(route) {
                self.by_backend.insert((FoldBuild.hash_one(name), key));
            }
            self.put_entry(entry);
        }
        let Some(entry) = self.entry_mut(key) else {
            return;
        };
        entry.uses += 1;
        let invalid = entry.is_invalid();
        self.invalid += usize::from(invalid);
    }

    /// Counts one listing of `route` less, forgetting it at none.
    fn remove(&mut self, route: &Arc<Route>) {
        let key = key_of(route);
        let Some(entry) = self.entry_mut(key) else {
            return;
        };
        entry.uses -= 1;
        let (invalid, unused) = (entry.is_invalid(), entry.uses == 0);
        self.invalid -= usize::from(invalid);
        if unused && let Some(entry) = self.take_entry(key) {
            for name in backend_names(entry.input()) {
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
            .filter_map(|k| Some((self.entry(k)?.sequence(), k)))
            .collect();
        keys.sort_unstable();
        for (_, key) in keys {
            let Some(old) = self.take_entry(key) else {
                continue;
            };
            self.forget(&old);
            let mut entry = self.compile(old.input(), backends);
            entry.uses = old.uses;
            if old.is_invalid() {
                self.invalid -= old.uses;
            }
            if entry.is_invalid() {
                self.invalid += entry.uses;
            }
            self.put_entry(entry);
        }
    }

    /// Compiles `route` and puts it into its buckets.
    fn compile(&mut self, route: &Arc<Route>, backends: &dyn Backends) -> Entry {
        self.sequence += 1;
        let sequence = self.sequence;
        let compiled = match compile_route(route, backends, self.default_retry.as_ref()) {
            Ok(mut compiled) => {
                compiled.sequence = sequence;
                // Routes on a hostname another route has share its name.
                for host in compiled.hosts.iter_mut() {
                    if let Some(known) = self.known_host(host) {
                        *host = known;
                    }
                }
                Arc::new(compiled)
            }
            Err(e) => {
                return Entry {
                    compiled: Compiled::Invalid(Box::new(Invalid {
                        input: Arc::clone(route),
                        error: e.for_route(route.id.clone()),
                        sequence,
                    })),
                    uses: 0,
                };
            }
        };
        for host in compiled.hosts.iter() {
            self.members_mut(host).push(Arc::clone(&compiled));
        }
        Entry {
            compiled: Compiled::Valid(compiled),
            uses: 0,
        }
    }

    /// Takes a route of the previous build out of its buckets.
    fn forget(&mut self, entry: &Entry) {
        let Compiled::Valid(compiled) = &entry.compiled else {
            return;
        };
        for host in compiled.hosts.iter() {
            let members = self.members_mut(host);
            if let Some(at) = members.iter().position(|r| Arc::ptr_eq(r, compiled)) {
                members.remove(at);
            }
        }
    }

    /// The bucket of `host` in the last table.
    fn bucket(&self, host: &HostKey) -> Option<&Arc<Bucket>> {
        match host {
            HostKey::Exact(h) => self.exact_hosts.get(h),
            HostKey::Wildcard(h) => self.wildcard_hosts.get(h),
            HostKey::Any => self.any_host.as_ref(),
        }
    }

    /// `host` with the name a bucket or a pending change already has (to share it).
    fn known_host(&self, host: &HostKey) -> Option<HostKey> {
        if let Some((known, _)) = self.pending.get_key_value(host) {
            return Some(known.clone());
        }
        match host {
            HostKey::Exact(h) => self
                .exact_hosts
                .get_key_value(h)
                .map(|(k, _)| HostKey::Exact(Arc::clone(k))),
            HostKey::Wildcard(h) => self
                .wildcard_hosts
                .get_key_value(h)
                .map(|(k, _)| HostKey::Wildcard(Arc::clone(k))),
            HostKey::Any => None,
        }
    }

    /// The routes of `host`'s bucket, to change in this build (the bucket is rebuilt).
    fn members_mut(&mut self, host: &HostKey) -> &mut Vec<Arc<CompiledRoute>> {
        if !self.pending.contains_key(host) {
            let routes = self
                .bucket(host)
                .map(|b| b.members().to_vec())
                .unwrap_or_default();
            self.pending.insert(host.clone(), routes);
        }
        self.pending.entry(host.clone()).or_default()
    }

    /// Rebuilds the buckets whose routes changed; drops the empty ones.
    fn rebuild_touched(&mut self) {
        let mut emptied = Vec::new();
        for (host, mut routes) in std::mem::take(&mut self.pending) {
            if routes.is_empty() {
                emptied.push(host);
                continue;
            }
            routes.sort_by(|a, b| a.precedence(b).then(a.sequence.cmp(&b.sequence)));
            let bucket = Arc::new(Bucket::build(routes));
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
        match &self.entry(key_of(input))?.compiled {
            Compiled::Valid(c) => Some(c.rules.to_vec()),
            Compiled::Invalid(_) => None,
        }
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
            .field(
                "buckets",
                &(self.exact_hosts.len()
                    + self.wildcard_hosts.len()
                    + usize::from(self.any_host.is_some())),
            )
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
