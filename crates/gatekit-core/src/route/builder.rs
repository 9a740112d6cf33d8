//! [`TableBuilder`]: a route table rebuilt after a change at the cost of the change.

use std::fmt;
use std::sync::Arc;

use super::hash::{FastMap, shrink_if_sparse};
use super::model::{Filter, Route};
use super::rule::DefaultRetry;
use super::table::{Bucket, CompiledRoute, HostKey, RouteTable, compile_route};
use crate::Backends;
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
/// A build compares the input with the previous one by pointer from both ends: only the
/// routes between the common prefix and the common suffix are looked up, added or taken
/// away (one changed route costs O(1) hash work, plus O(routes) pointer comparisons and
/// the compilation and bucket rebuilds it needs). Routes naming a `stale` backend are
/// found by a walk of every kept route, and the errors of invalid routes by a walk of the
/// input while there are any.
///
/// Routes with equal creation time and `{namespace}/{name}` (the same route listed twice,
/// say) rank in input order, as seen when they were compiled.
pub struct TableBuilder {
    default_retry: Option<DefaultRetry>,
    /// The routes of the last build, by the address of their input `Arc`.
    routes: FastMap<usize, Entry>,
    buckets: FastMap<HostKey, Members>,
    exact_hosts: FastMap<Arc<str>, Arc<Bucket>>,
    wildcard_hosts: FastMap<Arc<str>, Arc<Bucket>>,
    any_host: Option<Arc<Bucket>>,
    /// Counts compilations, to order equal routes by when they were compiled.
    sequence: u64,
    /// The input of the last build.
    inputs: Vec<Arc<Route>>,
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
            buckets: FastMap::default(),
            exact_hosts: FastMap::default(),
            wildcard_hosts: FastMap::default(),
            any_host: None,
            sequence: 0,
            inputs: Vec::new(),
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
    pub fn build(
        &mut self,
        routes: &[Arc<Route>],
        backends: &dyn Backends,
        stale: &dyn Fn(&str) -> bool,
    ) -> (RouteTable, Vec<ConfigError>) {
        self.build_with(routes, backends, Some(stale))
    }

    /// [`build`](Self::build), told whether any backend name is stale: with `None`,
    /// the kept routes are not looked at (their backends resolve as before).
    pub fn build_with(
        &mut self,
        routes: &[Arc<Route>],
        backends: &dyn Backends,
        stale: Option<&dyn Fn(&str) -> bool>,
    ) -> (RouteTable, Vec<ConfigError>) {
        let mut inputs = std::mem::take(&mut self.inputs);
        let same = |(a, b): (&Arc<Route>, &Arc<Route>)| Arc::ptr_eq(a, b);
        let prefix = inputs.iter().zip(routes).take_while(|p| same(*p)).count();
        let suffix = inputs[prefix..]
            .iter()
            .rev()
            .zip(routes[prefix..].iter().rev())
            .take_while(|p| same(*p))
            .count();
        let added = &routes[prefix..routes.len() - suffix];
        let removed = prefix..inputs.len() - suffix;
        // Added first: a route that only moved keeps its compiled form.
        for route in added {
            self.add(route, backends);
        }
        for route in &inputs[removed.clone()] {
            self.remove(route);
        }
        inputs.splice(removed, added.iter().cloned());
        self.inputs = inputs;
        // After many routes went: their room goes back.
        shrink_if_sparse(&mut self.routes);
        shrink_if_sparse(&mut self.buckets);
        shrink_if_sparse(&mut self.exact_hosts);
        shrink_if_sparse(&mut self.wildcard_hosts);
        if let Some(stale) = stale {
            self.recompile_stale(backends, stale);
        }
        self.rebuild_touched();
        let mut errors = Vec::new();
        if self.invalid > 0 {
            for route in &self.inputs {
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
    pub fn inputs(&self) -> &[Arc<Route>] {
        &self.inputs
    }

    /// Counts one more listing of `route`, compiling it if it is new.
    fn add(&mut self, route: &Arc<Route>, backends: &dyn Backends) {
        let key = Arc::as_ptr(route) as usize;
        let entry = match self.routes.get_mut(&key) {
            Some(entry) => entry,
            None => {
                let entry = self.compile(route, backends);
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
            self.forget(&entry);
        }
    }

    /// Compiles again the routes that send to or mirror a `stale` backend.
    fn recompile_stale(&mut self, backends: &dyn Backends, stale: &dyn Fn(&str) -> bool) {
        // In input order, as a first build would compile them (the order of equal
        // routes).
        let mut seen = std::collections::HashSet::new();
        let keys: Vec<usize> = self
            .inputs
            .iter()
            .filter(|r| names_any(r, stale))
            .map(|r| Arc::as_ptr(r) as usize)
            .filter(|k| seen.insert(*k))
            .collect();
        for key in keys {
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
            .map(Arc::new)
            .map_err(|e| Box::new(e.for_route(route.id.clone())));
        if let Ok(compiled) = &compiled {
            for host in &compiled.hosts {
                let members = self.buckets.entry(host.clone()).or_default();
                members.routes.push((Arc::clone(compiled), sequence));
                members.touched = true;
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
        for host in &compiled.hosts {
            if let Some(members) = self.buckets.get_mut(host)
                && let Some(at) = members
                    .routes
                    .iter()
                    .position(|(r, s)| *s == entry.sequence && Arc::ptr_eq(r, compiled))
            {
                members.routes.remove(at);
                members.touched = true;
            }
        }
    }

    /// Rebuilds the buckets whose routes changed; drops the empty ones.
    fn rebuild_touched(&mut self) {
        let mut emptied = Vec::new();
        for (host, members) in self.buckets.iter_mut().filter(|(_, m)| m.touched) {
            members.touched = false;
            if members.routes.is_empty() {
                emptied.push(host.clone());
                continue;
            }
            members
                .routes
                .sort_by(|(a, sa), (b, sb)| a.precedence(b).then(sa.cmp(sb)));
            // Most buckets hold one route: no room kept for three more.
            members.routes.shrink_to_fit();
            let bucket = Arc::new(Bucket::build(members.routes.iter().map(|(r, _)| &**r)));
            match host {
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
                    self.exact_hosts.remove(&**h);
                }
                HostKey::Wildcard(h) => {
                    self.wildcard_hosts.remove(&**h);
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
        entry.compiled.as_ref().ok().map(|c| c.rules.clone())
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

/// Whether `route` sends to (backendRefs) or mirrors to a backend name `stale` names.
fn names_any(route: &Route, stale: &dyn Fn(&str) -> bool) -> bool {
    let mirrors = |filters: &[Filter]| {
        filters.iter().any(|f| match f {
            Filter::RequestMirror(m) => stale(&m.backend),
            _ => false,
        })
    };
    route.rules.iter().any(|rule| {
        mirrors(&rule.filters)
            || rule
                .backends
                .iter()
                .any(|b| stale(&b.name) || mirrors(&b.filters))
    })
}
