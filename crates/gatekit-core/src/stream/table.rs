//! [`StreamTable`]: a port's stream listeners and their routes, compiled for the choice
//! made per connection.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::access::StreamAccess;
use super::backend::StreamBackend;
use super::model::StreamRoute;
use crate::error::ConfigError;
use crate::limit::InFlightLimit;
use crate::limit::concurrency::Slot;
use crate::route::RouteId;
use crate::route::host::HostPattern;
use crate::tls::TlsAcceptor;

/// Default idle timeout of a TCP or TLS stream connection: one hour, as Envoy's
/// `tcp_proxy` (a route's `idle_timeout` or the listener's setting overrides it).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Default idle timeout of a UDP flow: 60 seconds, as Envoy's `udp_proxy`.
pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a stream listener does with a connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ListenerMode {
    /// Plain TCP: the oldest route takes every connection.
    Tcp,
    /// TLS passed through untouched, routed by the ClientHello's SNI.
    Passthrough,
    /// TLS terminated with this acceptor (its certificates chosen by SNI), the plaintext
    /// relayed, routed by the SNI.
    Terminate(TlsAcceptor),
    /// UDP datagrams, relayed per client flow (see [`UdpRelay`](super::UdpRelay)).
    Udp,
}

impl ListenerMode {
    fn is_tls(&self) -> bool {
        matches!(self, Self::Passthrough | Self::Terminate(_))
    }
}

/// One listener of a stream port, as configured: its hostname (TLS only), its mode,
/// its routes and its default idle timeout.
#[derive(Clone, Debug)]
pub struct StreamListener {
    hostname: Option<String>,
    mode: ListenerMode,
    routes: Vec<Arc<StreamRoute>>,
    idle_timeout: Option<Duration>,
}

impl StreamListener {
    /// A listener of `mode` without hostname, routes or idle timeout of its own.
    pub fn new(mode: ListenerMode) -> Self {
        Self {
            hostname: None,
            mode,
            routes: Vec::new(),
            idle_timeout: None,
        }
    }

    /// The listener's hostname (exact or `*.` wildcard): it takes the connections whose
    /// SNI it matches best (see [`StreamTable`]). `None`: every other SNI.
    #[must_use]
    pub fn hostname(mut self, hostname: Option<&str>) -> Self {
        self.hostname = hostname.map(str::to_owned);
        self
    }

    /// The listener's routes.
    #[must_use]
    pub fn routes(mut self, routes: impl IntoIterator<Item = Arc<StreamRoute>>) -> Self {
        self.routes = routes.into_iter().collect();
        self
    }

    /// The idle timeout of its connections when their route sets none (default
    /// [`DEFAULT_TCP_IDLE_TIMEOUT`], UDP [`DEFAULT_UDP_IDLE_TIMEOUT`]).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

/// A port's stream listeners and routes, compiled: immutable, shared by every
/// connection, swapped whole on reload (a [`StreamRouter`](super::StreamRouter) holds it
/// in an `ArcSwap`; a connection keeps the table it started with).
///
/// # Choice per connection
///
/// 1. The listener: on a TLS port, by the SNI as HTTP listeners are chosen by host
///    (`GatewayHTTPListenerIsolation`): an exact hostname, then the wildcard with the
///    longest suffix, then the listener without hostname. A TLS connection without SNI,
///    or whose SNI no listener takes, is closed. A TCP or UDP port takes its (first)
///    listener without hostname.
/// 2. The route, within that listener only: the best hostname match (exact, then the
///    longest wildcard, then a route without hostnames); ties go to the oldest route
///    (`created`), then the smaller id. On TCP and UDP that is the oldest route.
/// 3. The backend: a weighted random pick among the route's backends (weight 0 never);
///    a backend name that did not resolve takes its share and closes it.
///
/// Listeners and routes are scanned (a port has few); nothing is allocated.
pub struct StreamTable {
    listeners: Vec<Listener>,
    tls: bool,
}

struct Listener {
    hostname: Option<HostPattern>,
    mode: ListenerMode,
    routes: Vec<Route>,
    idle_timeout: Duration,
}

struct Route {
    id: RouteId,
    hostnames: Vec<HostPattern>,
    backends: Vec<(Option<StreamBackend>, u32)>,
    total_weight: u64,
    idle_timeout: Option<Duration>,
    max_connections: Option<u32>,
    /// Open connections under `max_connections` (no limit: `usize::MAX`), handed on to
    /// the next table (see [`StreamTable::carry_over`]).
    open: Arc<InFlightLimit>,
    access: Vec<Arc<StreamAccess>>,
}

/// The route a connection was given, with what serving it needs.
pub(crate) struct Selected<'t> {
    pub(crate) route: &'t RouteId,
    pub(crate) mode: &'t ListenerMode,
    /// `None`: the picked share's backend does not resolve (or every weight is 0).
    pub(crate) backend: Option<&'t StreamBackend>,
    pub(crate) idle_timeout: Duration,
    open: &'t Arc<InFlightLimit>,
    access: &'t [Arc<StreamAccess>],
}

impl Selected<'_> {
    /// Whether every client-address check of the route allows `ip` (no check: yes).
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        self.access.iter().all(|check| check.allows(ip))
    }

    /// A place under the route's `max_connections`, held while the connection (or
    /// flow) is open; `None` when the route is at its limit.
    pub(crate) fn acquire(&self) -> Option<Slot> {
        self.open.try_acquire()
    }
}

// === impl StreamTable ===

impl StreamTable {
    /// An empty table: every connection is closed.
    pub fn empty() -> Self {
        Self {
            listeners: Vec::new(),
            tls: false,
        }
    }

    /// Compiles `listeners`, looking each route backend's name up with `backend`
    /// (`None`: that backend's share of connections is closed).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `listeners[i].hostname` or the route's `hostnames[j]`
    /// when a hostname is not valid, or when two listeners have the same hostname.
    pub fn build(
        listeners: Vec<StreamListener>,
        mut backend: impl FnMut(&str) -> Option<StreamBackend>,
    ) -> Result<Self, ConfigError> {
        let tls = listeners.iter().any(|l| l.mode.is_tls());
        let mut compiled: Vec<Listener> = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let hostname = match &listener.hostname {
                None => None,
                Some(h) => Some(
                    HostPattern::parse(h)
                        .map_err(|e| e.within(&format!("listeners[{i}].hostname")))?,
                ),
            };
            if compiled.iter().any(|l| l.hostname == hostname) {
                return Err(ConfigError::new(
                    format!("listeners[{i}].hostname"),
                    "another listener of the port has the same hostname",
                ));
            }
            let default_idle = match listener.mode {
                ListenerMode::Udp => DEFAULT_UDP_IDLE_TIMEOUT,
                _ => DEFAULT_TCP_IDLE_TIMEOUT,
            };
            let mut routes = Vec::with_capacity(listener.routes.len());
            let mut sorted = listener.routes;
            sorted.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| cmp_id(&a.id, &b.id)));
            for route in sorted {
                let mut hostnames = Vec::with_capacity(route.hostnames.len());
                for (j, h) in route.hostnames.iter().enumerate() {
                    let pattern = HostPattern::parse(h).map_err(|e| {
                        e.within(&format!("hostnames[{j}]"))
                            .for_route(route.id.clone())
                    })?;
                    hostnames.push(pattern);
                }
                let backends: Vec<_> = route
                    .backends
                    .iter()
                    .filter(|b| b.weight > 0)
                    .map(|b| (backend(&b.name), b.weight))
                    .collect();
                let total_weight = backends.iter().map(|(_, w)| u64::from(*w)).sum();
                routes.push(Route {
                    id: route.id.clone(),
                    hostnames,
                    backends,
                    total_weight,
                    idle_timeout: route.idle_timeout,
                    max_connections: route.max_connections,
                    open: Arc::new(InFlightLimit::new(open_limit(route.max_connections))),
                    access: route.access.clone(),
                });
            }
            compiled.push(Listener {
                hostname,
                mode: listener.mode,
                routes,
                idle_timeout: listener.idle_timeout.unwrap_or(default_idle),
            });
        }
        // A route attached to several listeners of the port counts its connections once.
        let mut counts: Vec<(RouteId, Arc<InFlightLimit>)> = Vec::new();
        for route in compiled.iter_mut().flat_map(|l| l.routes.iter_mut()) {
            match counts.iter().find(|(id, _)| *id == route.id) {
                Some((_, count)) => route.open = count.clone(),
                None => counts.push((route.id.clone(), route.open.clone())),
            }
        }
        Ok(Self {
            listeners: compiled,
            tls,
        })
    }

    /// Whether connections are routed by SNI (a listener passes TLS through or
    /// terminates it): the ClientHello is read first.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The id of the route a connection with SNI `server_name` would be given (see the
    /// [choice](Self#choice-per-connection)).
    pub fn route_for(&self, server_name: Option<&str>) -> Option<&RouteId> {
        let (listener, route) = self.find(server_name)?;
        Some(&listener.routes[route].id)
    }

    /// The route for `server_name`, with a backend picked by weight.
    pub(crate) fn select(&self, server_name: Option<&str>) -> Option<Selected<'_>> {
        let (listener, route) = self.find(server_name)?;
        let route = &listener.routes[route];
        let backend = if route.total_weight == 0 {
            None
        } else {
            let mut ticket = fastrand::u64(..route.total_weight);
            route.backends.iter().find_map(|(backend, weight)| {
                let w = u64::from(*weight);
                if ticket < w {
                    Some(backend.as_ref())
                } else {
                    ticket -= w;
                    None
                }
            })?
        };
        Some(Selected {
            route: &route.id,
            mode: &listener.mode,
            backend,
            idle_timeout: route.idle_timeout.unwrap_or(listener.idle_timeout),
            open: &route.open,
            access: &route.access,
        })
    }

    /// Takes over `old`'s open-connection counts, route by route id, so connections
    /// opened under `old` count against this table's limits.
    pub(crate) fn carry_over(&mut self, old: &StreamTable) {
        for route in self.listeners.iter_mut().flat_map(|l| l.routes.iter_mut()) {
            if let Some(count) = old
                .listeners
                .iter()
                .flat_map(|l| &l.routes)
                .find(|r| r.id == route.id)
                .map(|r| &r.open)
            {
                count.set_max(route.open.max());
                route.open = count.clone();
            }
        }
    }

    /// Per route (by id, each once): its `max_connections` and the connections (UDP:
    /// flows) open through it now.
    pub fn open_connections(&self) -> impl Iterator<Item = (&RouteId, Option<u32>, u32)> {
        let mut seen: Vec<&RouteId> = Vec::new();
        self.listeners
            .iter()
            .flat_map(|l| &l.routes)
            .filter(move |r| {
                let new = !seen.contains(&&r.id);
                seen.push(&r.id);
                new
            })
            .map(|r| (&r.id, r.max_connections, open_count(&r.open)))
    }

    fn find(&self, server_name: Option<&str>) -> Option<(&Listener, usize)> {
        let listener = if self.tls {
            let name = server_name?;
            best(self.listeners.iter(), |l| {
                l.hostname.as_ref().map_or(Some(0), |h| score(h, name))
            })?
        } else {
            self.listeners.iter().find(|l| l.hostname.is_none())?
        };
        let route = match server_name {
            Some(name) if self.tls => {
                best(listener.routes.iter().enumerate(), |(_, r)| {
                    if r.hostnames.is_empty() {
                        return Some(0);
                    }
                    r.hostnames.iter().filter_map(|h| score(h, name)).max()
                })?
                .0
            }
            // Sorted oldest first.
            _ if listener.routes.is_empty() => return None,
            _ => 0,
        };
        Some((listener, route))
    }

    /// The listeners' hostnames and, per listener, its routes' ids (oldest first).
    pub fn routes(&self) -> impl Iterator<Item = (Option<String>, Vec<&RouteId>)> {
        self.listeners.iter().map(|l| {
            let host = l.hostname.as_ref().map(|h| match h {
                HostPattern::Exact(n) => n.to_string(),
                HostPattern::Wildcard(s) => format!("*.{s}"),
            });
            (host, l.routes.iter().map(|r| &r.id).collect())
        })
    }
}

impl Default for StreamTable {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for StreamTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamTable")
            .field("tls", &self.tls)
            .field("listeners", &self.routes().collect::<Vec<_>>())
            .finish()
    }
}

/// How well `pattern` matches the SNI `name` (lowercase): exact beats any wildcard,
/// a longer wildcard suffix beats a shorter one; `None` when it does not match. A
/// missing hostname scores 0.
fn score(pattern: &HostPattern, name: &str) -> Option<usize> {
    match pattern {
        HostPattern::Exact(h) => (**h == *name).then_some(usize::MAX),
        HostPattern::Wildcard(suffix) => {
            let matches = name.len() > suffix.len() + 1
                && name.ends_with(&**suffix)
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.';
            matches.then_some(1 + suffix.len())
        }
    }
}

/// The first item with the highest score (items come in precedence order).
fn best<T>(items: impl Iterator<Item = T>, score: impl Fn(&T) -> Option<usize>) -> Option<T> {
    let mut found: Option<(usize, T)> = None;
    for item in items {
        if let Some(s) = score(&item)
            && found.as_ref().is_none_or(|(best, _)| s > *best)
        {
            found = Some((s, item));
        }
    }
    found.map(|(_, item)| item)
}

fn cmp_id(a: &RouteId, b: &RouteId) -> std::cmp::Ordering {
    (a.namespace(), a.name()).cmp(&(b.namespace(), b.name()))
}

/// The [`InFlightLimit`] bound of a route's `max_connections`: none is no bound.
fn open_limit(max_connections: Option<u32>) -> usize {
    max_connections.map_or(usize::MAX, |max| max as usize)
}

/// The connections open under a route's limit, as the `u32` the table reports.
fn open_count(open: &InFlightLimit) -> u32 {
    u32::try_from(open.in_flight()).unwrap_or(u32::MAX)
}
