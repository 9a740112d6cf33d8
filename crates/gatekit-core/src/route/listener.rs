//! Listener isolation: one [`RouteTable`] per listener of a port, and the choice of the
//! listener before any route is matched.
//!
//! # Semantics (Gateway API GEP-1713, `GatewayHTTPListenerIsolation`)
//!
//! Several listeners may share a port, each with a hostname (exact, `*.` wildcard) or
//! none. A request is handled by the *most specific* listener whose hostname matches its
//! host, alone: an exact hostname first, then wildcards by most labels (the longest
//! matching suffix), then the listener without hostname. Routes are then matched within
//! that listener's own table only; when none of them matches, the answer is a 404, never
//! a fall-through to a less specific listener's routes.
//!
//! The request host is found as [`RouteTable::find`] finds it (URI authority, else
//! `Host`; port dropped; case-insensitive). A request without a usable host goes to the
//! listener without hostname, if there is one.
//!
//! # Cost
//!
//! Choosing a listener is at most one hash lookup per label of the host, with the host
//! lowercased into a stack buffer: nothing is allocated. A port with one listener
//! without hostname (what [`PortTable::from`] a [`RouteTable`] builds) skips the choice.
//!
//! Each listener's table is behind its own `Arc`, so replacing one listener's table
//! ([`PortTable::with_listener_table`]) rebuilds neither the other tables nor their rule
//! stacks.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Uri};

use super::hash::FastMap;
use super::host::{self, HostPattern, MAX_HOST};
use super::table::RouteTable;
use crate::error::ConfigError;

/// A port's route tables, one per listener, with the index that picks the listener for a
/// request's host. Immutable, shared by every request (the [`Router`](crate::Router)
/// serves one behind an `ArcSwap`).
///
/// ```
/// use gatekit_core::RouteTable;
/// use gatekit_core::route::PortTable;
///
/// let port = PortTable::new([
///     (Some("*.example.com"), RouteTable::empty()),
///     (Some("api.example.com"), RouteTable::empty()),
///     (None, RouteTable::empty()),
/// ])
/// .unwrap();
/// assert_eq!(port.listener_for_host(Some("API.example.com")), Some(1));
/// assert_eq!(port.listener_for_host(Some("a.b.example.com")), Some(0));
/// assert_eq!(port.listener_for_host(Some("example.org")), Some(2));
/// ```
pub struct PortTable {
    listeners: Vec<Listener>,
    exact: FastMap<Box<str>, u32>,
    wildcard: FastMap<Box<str>, u32>,
    wildcard_max_len: usize,
    any: Option<u32>,
}

#[derive(Clone)]
struct Listener {
    hostname: Option<HostPattern>,
    table: Arc<RouteTable>,
}

// === impl PortTable ===

impl PortTable {
    /// One listener per `(hostname, table)`, in the order given (which is the order of
    /// the indices [`listener_for_host`](Self::listener_for_host) returns). A hostname is
    /// exact (`api.example.com`) or a wildcard (`*.example.com`), case-insensitive;
    /// `None` takes every host.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `listeners[i].hostname` when a hostname is not a valid
    /// one, or when two listeners have the same hostname (or both none): their routes
    /// belong in one table.
    pub fn new<'h, I>(listeners: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (Option<&'h str>, RouteTable)>,
    {
        Self::from_shared(listeners.into_iter().map(|(h, t)| (h, Arc::new(t))))
    }

    /// [`new`](Self::new) with tables that may be shared (with the previous `PortTable`
    /// of the port, say: a listener whose routes did not change keeps its table).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_shared<'h, I>(listeners: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (Option<&'h str>, Arc<RouteTable>)>,
    {
        let mut port = Self {
            listeners: Vec::new(),
            exact: FastMap::default(),
            wildcard: FastMap::default(),
            wildcard_max_len: 0,
            any: None,
        };
        for (i, (hostname, table)) in listeners.into_iter().enumerate() {
            let field = || format!("listeners[{i}].hostname");
            let hostname = hostname
                .map(HostPattern::parse)
                .transpose()
                .map_err(|e| ConfigError::new(field(), e.reason().to_owned()))?;
            let index = u32::try_from(i)
                .map_err(|_| ConfigError::new(field(), "too many listeners on one port"))?;
            let slot = match &hostname {
                None => port.any.replace(index),
                Some(HostPattern::Exact(name)) => port.exact.insert(name.clone(), index),
                Some(HostPattern::Wildcard(suffix)) => {
                    port.wildcard_max_len = port.wildcard_max_len.max(suffix.len());
                    port.wildcard.insert(suffix.clone(), index)
                }
            };
            if let Some(first) = slot {
                return Err(ConfigError::new(
                    field(),
                    format!("listener {i} has the same hostname as listener {first}"),
                ));
            }
            port.listeners.push(Listener { hostname, table });
        }
        Ok(port)
    }

    /// A port without listeners: every request is a 404.
    pub fn empty() -> Self {
        Self::from(RouteTable::empty())
    }

    /// The index of the listener that handles requests for `host` (as received: the
    /// port, if any, must already be stripped; compared case-insensitively), `None` when
    /// no listener's hostname matches it and there is no listener without hostname.
    pub fn listener_for_host(&self, host: Option<&str>) -> Option<usize> {
        let mut buf = [0u8; MAX_HOST];
        let host = host.and_then(|h| host::lowercase(h, &mut buf));
        self.select(host).map(|i| i as usize)
    }

    /// The index of the listener that handles a request with this URI and headers (its
    /// host taken as [`RouteTable::find`] takes it).
    pub fn listener_for_request(&self, uri: &Uri, headers: &HeaderMap) -> Option<usize> {
        self.listener_for_host(host::raw_request_host(uri, headers))
    }

    /// The listener for an already lowercased host (`None`: the request has no usable
    /// host). Most specific first: exact, wildcards by longest suffix, then no hostname.
    #[inline]
    pub(crate) fn select(&self, host: Option<&str>) -> Option<u32> {
        if let Some(host) = host {
            if !self.exact.is_empty()
                && let Some(&i) = self.exact.get(host)
            {
                return Some(i);
            }
            if !self.wildcard.is_empty() {
                for suffix in host::wildcard_suffixes(host) {
                    if suffix.len() > self.wildcard_max_len {
                        continue;
                    }
                    if let Some(&i) = self.wildcard.get(suffix) {
                        return Some(i);
                    }
                }
            }
        }
        self.any
    }

    /// Whether the port is one listener without hostname: every request goes to it, and
    /// there is no choice to make (or to check against a TLS server name).
    #[inline]
    pub(crate) fn is_single(&self) -> bool {
        self.listeners.len() == 1 && self.any.is_some()
    }

    /// The route table of listener `index`.
    ///
    /// # Panics
    ///
    /// When `index` is not below [`listener_count`](Self::listener_count).
    #[inline]
    pub fn table(&self, index: usize) -> &RouteTable {
        &self.listeners[index].table
    }

    /// The hostname of listener `index` (lowercase; `*.` for a wildcard), `None` for
    /// the listener without hostname or an index out of range.
    pub fn hostname(&self, index: usize) -> Option<String> {
        match self.listeners.get(index)?.hostname.as_ref()? {
            HostPattern::Exact(name) => Some(name.to_string()),
            HostPattern::Wildcard(suffix) => Some(format!("*.{suffix}")),
        }
    }

    /// How many listeners the port has.
    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    /// How many routes the listeners' tables hold together (a route attached to two
    /// listeners counts twice).
    pub fn route_count(&self) -> usize {
        self.listeners.iter().map(|l| l.table.route_count()).sum()
    }

    /// This port with listener `index`'s table replaced by `table`; the other listeners'
    /// tables are shared, not rebuilt. `None` when `index` is out of range.
    pub fn with_listener_table(&self, index: usize, table: RouteTable) -> Option<Self> {
        self.with_shared_listener_table(index, Arc::new(table))
    }

    /// [`with_listener_table`](Self::with_listener_table) with a table that may be shared.
    pub(crate) fn with_shared_listener_table(
        &self,
        index: usize,
        table: Arc<RouteTable>,
    ) -> Option<Self> {
        let mut listeners = self.listeners.clone();
        listeners.get_mut(index)?.table = table;
        Some(Self {
            listeners,
            exact: self.exact.clone(),
            wildcard: self.wildcard.clone(),
            wildcard_max_len: self.wildcard_max_len,
            any: self.any,
        })
    }
}

/// One listener without hostname serving `table`: the behaviour of a port before
/// listeners had tables of their own.
impl From<RouteTable> for PortTable {
    fn from(table: RouteTable) -> Self {
        Self {
            listeners: vec![Listener {
                hostname: None,
                table: Arc::new(table),
            }],
            exact: FastMap::default(),
            wildcard: FastMap::default(),
            wildcard_max_len: 0,
            any: Some(0),
        }
    }
}

impl Default for PortTable {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for PortTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (i, l) in self.listeners.iter().enumerate() {
            list.entry(&(self.hostname(i), l.table.route_count()));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use http::Method;

    use super::*;
    use crate::Backend;
    use crate::route::{Route, RouteId, Rule};

    fn table(name: &str, path: &str) -> RouteTable {
        let mut rule = Rule::default();
        rule.matches.push(crate::route::Match {
            path: Some(crate::route::PathMatch::Prefix(path.to_owned())),
            ..Default::default()
        });
        let mut route = Route::new(RouteId::new("ns", name));
        route.rules.push(rule);
        let backends: HashMap<String, Backend> = HashMap::new();
        RouteTable::build(vec![route], &backends).unwrap()
    }

    /// The four listeners of the GatewayHTTPListenerIsolation conformance test.
    fn isolation() -> PortTable {
        PortTable::new([
            (None, table("empty", "/empty-hostname")),
            (
                Some("*.example.com"),
                table("wildcard", "/wildcard-example-com"),
            ),
            (
                Some("*.foo.example.com"),
                table("foo-wildcard", "/wildcard-foo-example-com"),
            ),
            (
                Some("abc.foo.example.com"),
                table("abc", "/abc-foo-example-com"),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn exact_beats_wildcards_and_longer_wildcards_beat_shorter() {
        let port = isolation();
        assert_eq!(port.listener_for_host(Some("abc.foo.example.com")), Some(3));
        assert_eq!(port.listener_for_host(Some("bar.foo.example.com")), Some(2));
        assert_eq!(port.listener_for_host(Some("a.b.foo.example.com")), Some(2));
        assert_eq!(port.listener_for_host(Some("bar.example.com")), Some(1));
        // A wildcard needs a label before its suffix.
        assert_eq!(port.listener_for_host(Some("foo.example.com")), Some(1));
        assert_eq!(port.listener_for_host(Some("example.com")), Some(0));
    }

    #[test]
    fn the_listener_without_hostname_takes_the_rest() {
        let port = isolation();
        assert_eq!(port.listener_for_host(Some("bar.com")), Some(0));
        assert_eq!(port.listener_for_host(None), Some(0));
        let no_catch_all = PortTable::new([(Some("a.example.com"), RouteTable::empty())]).unwrap();
        assert_eq!(no_catch_all.listener_for_host(Some("b.example.com")), None);
        assert_eq!(no_catch_all.listener_for_host(None), None);
    }

    #[test]
    fn hosts_are_compared_case_insensitively_without_port() {
        let port = isolation();
        assert_eq!(port.listener_for_host(Some("ABC.Foo.EXAMPLE.com")), Some(3));
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::HOST,
            "ABC.foo.example.com:8443".parse().unwrap(),
        );
        let uri: Uri = "/abc-foo-example-com".parse().unwrap();
        assert_eq!(port.listener_for_request(&uri, &headers), Some(3));
        let uri: Uri = "http://x.Foo.example.com:81/".parse().unwrap();
        assert_eq!(port.listener_for_request(&uri, &headers), Some(2));
    }

    #[test]
    fn a_listener_matches_only_its_own_routes() {
        let port = isolation();
        let find = |host: &str, path: &str| {
            let i = port.listener_for_host(Some(host))?;
            let uri: Uri = path.parse().unwrap();
            let m = port.table(i).find(&Method::GET, &uri, &HeaderMap::new())?;
            Some(m.rule.route_id().name().to_owned())
        };
        for (host, own) in [
            ("abc.foo.example.com", "/abc-foo-example-com"),
            ("bar.foo.example.com", "/wildcard-foo-example-com"),
            ("bar.example.com", "/wildcard-example-com"),
            ("bar.com", "/empty-hostname"),
        ] {
            for path in [
                "/abc-foo-example-com",
                "/wildcard-foo-example-com",
                "/wildcard-example-com",
                "/empty-hostname",
            ] {
                let found = find(host, path);
                assert_eq!(found.is_some(), path == own, "{host}{path}: {found:?}");
            }
        }
    }

    #[test]
    fn duplicate_and_invalid_hostnames_are_refused() {
        let err = PortTable::new([
            (Some("A.example.com"), RouteTable::empty()),
            (Some("a.example.com"), RouteTable::empty()),
        ])
        .unwrap_err();
        assert_eq!(err.field(), "listeners[1].hostname");
        assert!(
            PortTable::new([(None, RouteTable::empty()), (None, RouteTable::empty())]).is_err()
        );
        assert!(PortTable::new([(Some("a..b"), RouteTable::empty())]).is_err());
    }

    #[test]
    fn one_listeners_table_is_replaced_alone() {
        let port = isolation();
        let shared = Arc::clone(&port.listeners[1].table);
        let next = port
            .with_listener_table(3, table("abc2", "/other"))
            .unwrap();
        assert!(Arc::ptr_eq(&shared, &next.listeners[1].table));
        assert_eq!(next.listener_for_host(Some("abc.foo.example.com")), Some(3));
        let uri: Uri = "/other".parse().unwrap();
        assert!(
            next.table(3)
                .find(&Method::GET, &uri, &HeaderMap::new())
                .is_some()
        );
        assert!(port.with_listener_table(4, RouteTable::empty()).is_none());
    }
}
