//! TLSRoute, TCPRoute and UDPRoute: conversion to core
//! [`StreamRoute`]s and attachment to `TLS`, `TCP` and `UDP` listeners.
//!
//! Attachment is HTTPRoute's ([`match_parent`]): parentRef, `sectionName`/`port`,
//! `allowedRoutes` (a TLS listener takes TLSRoutes only, TCP TCPRoutes, UDP UDPRoutes:
//! another kind is `NotAllowedByListeners`) and, for TLSRoutes, hostnames intersected
//! with the listener's (none in common: `NoMatchingListenerHostname`). TCPRoutes and
//! UDPRoutes have no hostnames.
//!
//! Every rule's backendRefs go into one weighted list (stream routes have no matches).
//! A backendRef to a Service port becomes the same upstream as an HTTP backendRef
//! (`"<namespace>/<service>:<port>"`; a UDP port `".../udp"`), whatever the port's
//! `appProtocol` (bytes pass through). One that cannot be used (missing Service or
//! port, wrong kind, cross-namespace without ReferenceGrant, a TCP port for a UDPRoute)
//! stays in the list under a name starting with
//! [`INVALID_BACKEND_PREFIX`](super::INVALID_BACKEND_PREFIX): its share of connections
//! is closed, and `ResolvedRefs` says why.
//!
//! Several routes may attach to one listener: all are `Accepted` and counted in
//! `attachedRoutes`, and each listener's routes are listed oldest first (then by
//! namespace/name). On TCP and UDP listeners only the oldest takes traffic (the data
//! plane's rule, as the conformance tests `TCPRouteMultipleRoutesAttachment` and
//! `UDPRouteMultipleRoutesAttachment` ask); on TLS listeners the SNI picks.
//!
//! `spec.useDefaultGateways` is not supported: a route that sets it is reported
//! (and attaches through its parentRefs only). The v1 types carry no idle timeout, so
//! [`StreamRoute::idle_timeout`] stays `None` (the listener's: an Envoy Gateway
//! ClientTrafficPolicy's `timeout.tcp.idleTimeout`, else the default). An Envoy
//! Gateway BackendTrafficPolicy's `circuitBreaker.maxConnections` (on the route, or
//! its Gateway or listener; see `policy.rs`) becomes
//! [`StreamRoute::max_connections`]: 1024 when the policy sets a `circuitBreaker`
//! without it, as for HTTP routes. A SecurityPolicy's `authorization` by client CIDR
//! (on the route, or its Gateway or listener; see `stream_access.rs`) becomes
//! [`StreamRoute::access`].
//!
//! **Incremental translation.** Stream routes belong to the translation's frame: a
//! change of a TLSRoute, TCPRoute or UDPRoute, or of a Service one of them names,
//! translates everything (there are few of them, and the oldest route of a listener
//! depends on the others). EndpointSlice changes rebuild their upstreams only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gatekit_core::ConfigError;
use gatekit_core::route::RouteId;
use gatekit_core::stream::{StreamBackendRef, StreamRoute};

use super::backend::{Context, INVALID_BACKEND_PREFIX, RefSpec, Unresolved, name_of, ns_of};
use super::hostname::Hosts;
use super::listener::Listener;
use super::route::{
    ListenerKey, ParentMatch, RawParent, RouteView, Use, match_parent, raw_parents, refused_parent,
    resolved_condition, route_view,
};
use crate::status::{Condition, ParentStatus, ResourceRef, ResourceStatus, reason};
use crate::types::{TcpRoute, TlsRoute, UdpRoute};

/// The stream routes attached to each listener, keyed by the listener's
/// `(status_index, listener_index)`.
pub(crate) type ListenerStreamRoutes = BTreeMap<ListenerKey, Vec<Arc<StreamRoute>>>;

/// Everything one stream route contributes to a translation.
pub(crate) struct StreamPiece {
    pub(crate) status: Arc<ResourceStatus>,
    /// One route per programmed listener it attaches to.
    pub(crate) routes: Vec<(ListenerKey, Arc<StreamRoute>)>,
    /// The listeners whose `attachedRoutes` count it (unprogrammed ones included).
    pub(crate) counted: Vec<ListenerKey>,
    /// The upstreams it materializes (none when it attached nowhere), in order.
    pub(crate) uses: Vec<Use>,
    pub(crate) errors: Vec<ConfigError>,
    /// Every Service its references name (namespace, name), resolved or not.
    pub(crate) services: Vec<(String, String)>,
}

/// A backendRef of any stream route kind, as written.
struct RawBackend<'a> {
    spec: RefSpec<'a>,
    weight: Option<i32>,
}

/// The backendRefs of a stream route (every kind's rule and backendRef types have the
/// same fields).
macro_rules! raw_backends {
    ($route:expr) => {
        $route
            .spec
            .rules
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.backend_refs.iter().enumerate().map(move |(j, b)| {
                    (
                        format!("spec.rules[{i}].backendRefs[{j}]"),
                        RawBackend {
                            spec: RefSpec {
                                group: b.group.as_deref(),
                                kind: b.kind.as_deref(),
                                name: &b.name,
                                namespace: b.namespace.as_deref(),
                                port: b.port,
                            },
                            weight: b.weight,
                        },
                    )
                })
            })
            .collect::<Vec<_>>()
    };
}

/// The id of a stream route: its name prefixed by its kind (`tls:`, `tcp:`, `udp:`),
/// so it never collides with another kind's route of the same name.
fn stream_id(prefix: &str, ns: &str, name: &str) -> RouteId {
    RouteId::new(ns, format!("{prefix}:{name}"))
}

/// Converts and attaches every TLSRoute, TCPRoute and UDPRoute (TLSRoutes, then
/// TCPRoutes, then UDPRoutes, each kind by namespace/name), and puts each listener's
/// stream routes oldest first.
pub(crate) fn attach_stream_routes(
    cx: &Context<'_>,
    listeners: &[Listener<'_>],
    listener_statuses: &[ResourceStatus],
) -> Vec<StreamPiece> {
    let resources = cx.resources;
    let mut out = Vec::with_capacity(
        resources.tls_routes.len() + resources.tcp_routes.len() + resources.udp_routes.len(),
    );
    // One kind's routes, by namespace/name: its kind name, id prefix, hostnames (TLS
    // only) and whether its backends are UDP ports. A macro: the three route types share
    // their fields' shape but no trait.
    macro_rules! kind {
        ($list:expr, $kind:literal, $prefix:literal, $udp:literal, $hostnames:expr) => {
            let mut routes: Vec<_> = $list.iter().collect();
            routes.sort_by_key(|r| (ns_of(&r.metadata), name_of(&r.metadata)));
            for r in routes {
                let view = route_view(
                    &cx.namespace_names,
                    $kind,
                    &r.metadata,
                    |ns, name| stream_id($prefix, ns, name),
                    $hostnames(r),
                    raw_parents!(r),
                );
                let default_gateways = r.spec.use_default_gateways.is_some();
                let backends = raw_backends!(r);
                let rules: Vec<Option<&str>> = r
                    .spec
                    .rules
                    .iter()
                    .map(|rule| rule.name.as_deref())
                    .collect();
                out.push(piece(
                    cx,
                    listeners,
                    listener_statuses,
                    view,
                    (&backends, &rules),
                    $udp,
                    default_gateways,
                ));
            }
        };
    }
    fn tls_hostnames(r: &TlsRoute) -> Option<&[String]> {
        Some(&r.spec.hostnames)
    }
    fn none<T>(_: &T) -> Option<&[String]> {
        None
    }
    kind!(
        resources.tls_routes,
        "TLSRoute",
        "tls",
        false,
        tls_hostnames
    );
    kind!(
        resources.tcp_routes,
        "TCPRoute",
        "tcp",
        false,
        none::<TcpRoute>
    );
    kind!(
        resources.udp_routes,
        "UDPRoute",
        "udp",
        true,
        none::<UdpRoute>
    );
    out
}

/// Groups the pieces' routes by listener, oldest first, then by namespace/name.
pub(crate) fn by_listener<'p>(
    pieces: impl Iterator<Item = &'p StreamPiece>,
) -> ListenerStreamRoutes {
    let mut out: ListenerStreamRoutes = BTreeMap::new();
    for piece in pieces {
        for (listener, route) in &piece.routes {
            out.entry(*listener).or_default().push(route.clone());
        }
    }
    for routes in out.values_mut() {
        routes.sort_by(|a, b| {
            (a.created, a.id.namespace(), a.id.name()).cmp(&(
                b.created,
                b.id.namespace(),
                b.id.name(),
            ))
        });
    }
    out
}

/// One stream route's piece: its backends resolved, its parents matched.
fn piece(
    cx: &Context<'_>,
    listeners: &[Listener<'_>],
    statuses: &[ResourceStatus],
    view: RouteView<'_>,
    (raw, rules): (&[(String, RawBackend<'_>)], &[Option<&str>]),
    udp: bool,
    default_gateways: bool,
) -> StreamPiece {
    let generation = view.generation;
    let mut errors = Vec::new();
    if default_gateways {
        errors.push(
            ConfigError::new(
                "spec.useDefaultGateways",
                format!(
                    "{} {}/{}: default Gateways are not supported; the route attaches through its parentRefs only",
                    view.kind, view.ns, view.name
                ),
            )
            .for_route(view.id.clone()),
        );
    }
    let mut services: Vec<(String, String)> = Vec::new();
    let mut unresolved: Vec<Unresolved> = Vec::new();
    let mut wanted = Vec::new();
    let mut backends = Vec::with_capacity(raw.len());
    for (field, b) in raw {
        let named = (b.spec.namespace.unwrap_or(view.ns), b.spec.name);
        if !services
            .iter()
            .any(|(n, s)| (n.as_str(), s.as_str()) == named)
        {
            services.push((named.0.to_owned(), named.1.to_owned()));
        }
        let weight = match u32::try_from(b.weight.unwrap_or(1)) {
            Ok(w) => w,
            Err(_) => {
                errors.push(
                    ConfigError::new(format!("{field}.weight"), "must not be negative")
                        .for_route(view.id.clone()),
                );
                0
            }
        };
        let name = match cx.resolve_stream(view.kind, view.ns, &b.spec, udp) {
            Ok(w) => {
                let name = w.upstream_name();
                wanted.push(w);
                name
            }
            Err(u) => {
                errors.push(
                    ConfigError::new(field.clone(), u.message.clone()).for_route(view.id.clone()),
                );
                unresolved.push(u);
                format!(
                    "{INVALID_BACKEND_PREFIX}{}/{}:{}",
                    named.0,
                    named.1,
                    b.spec.port.unwrap_or(0)
                )
            }
        };
        backends.push(StreamBackendRef::new(name, weight));
    }
    let resolved = resolved_condition(&unresolved, generation);
    let mut status = ResourceStatus::new(
        ResourceRef::new(view.kind, Some(view.ns), view.name),
        generation,
    );
    let mut counted = Vec::new();
    let mut parents = Vec::new();
    let mut unprogrammed = BTreeSet::new();
    let mut per_listener: BTreeMap<ListenerKey, Hosts> = BTreeMap::new();
    for p in &view.parents {
        let (parent, matched) = match match_parent(
            cx,
            listeners,
            statuses,
            &view,
            p,
            true,
            &mut unprogrammed,
            &mut counted,
        ) {
            ParentMatch::Ignored => continue,
            ParentMatch::Refused(parent, r, m) => {
                parents.push(refused_parent(parent, r, m, &resolved));
                continue;
            }
            ParentMatch::Matched(parent, matched) => (parent, matched),
        };
        for (l, hosts) in matched {
            let key = (l.status_index, l.listener_index);
            match per_listener.entry(key) {
                // Two parentRefs naming the same listener: one entry, hostnames united.
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(hosts),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(hosts);
                    counted.push(key);
                }
            }
        }
        let conditions = vec![
            Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "", generation),
            resolved.clone(),
        ];
        parents.push(ParentStatus::new(parent, conditions));
    }
    status.set_parents(cx.parents.get(parents));
    let uses = if per_listener.is_empty() {
        Vec::new()
    } else {
        wanted
            .into_iter()
            .map(|w| Use {
                name: Arc::from(w.upstream_name()),
                wanted: w,
            })
            .collect()
    };
    let routes = per_listener
        .into_iter()
        .map(|(listener, hosts)| {
            let mut route = StreamRoute::new(view.id.clone());
            route.hostnames = hosts.into_vec();
            route.created = view.created;
            route.backends = backends.clone();
            // An Envoy Gateway BackendTrafficPolicy's `circuitBreaker.maxConnections`.
            if let Some(l) = listeners
                .iter()
                .find(|l| (l.status_index, l.listener_index) == listener)
            {
                let section = (l.owner.kind == "Gateway").then_some(l.name);
                route.max_connections = cx.stream_max_connections(
                    (view.kind, view.ns, view.name),
                    rules,
                    (l.gateway_ns, l.gateway_name, section),
                );
                // SecurityPolicy `authorization` by client address (`access.rs`).
                route.access = cx.stream_access(
                    (view.kind, view.ns, view.name),
                    rules,
                    (l.gateway_ns, l.gateway_name, section),
                );
            }
            (listener, Arc::new(route))
        })
        .collect();
    StreamPiece {
        status: Arc::new(status),
        routes,
        counted,
        uses,
        errors,
        services,
    }
}
