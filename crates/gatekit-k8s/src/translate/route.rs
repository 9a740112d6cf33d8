//! HTTPRoute and GRPCRoute: conversion to core rules, attachment to listeners.
//!
//! GRPCRoute method matches become path matches on `/<service>/<method>`: service and
//! method `Exact` → `PathMatch::Exact`, service only → `PathMatch::Prefix("/<service>")`
//! (whole segments), method only or `RegularExpression` → `PathMatch::Regex`. GRPCRoutes
//! get route ids named `grpc:<name>` so they never collide with an HTTPRoute of the same
//! name (Kubernetes names cannot contain `:`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gatekit_core::ConfigError;
use gatekit_core::filter::FilterChain;
use gatekit_core::retry::{Backoff, RetryPolicy};
use gatekit_core::route::{
    BackendRef, CorsPolicy, Filter, HeaderMatch, HeaderModifier, Match, Mirror, PathMatch,
    PathModifier, QueryMatch, Redirect, Route, RouteId, Rule, RulePolicy, StringMatch, Timeouts,
    UrlRewrite,
};
use gateway_api::experimental::httproutes::{
    HttpRouteRulesFilters, HttpRouteRulesFiltersRequestRedirectPathType as RedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme as Scheme, HttpRouteRulesFiltersType as FilterType,
    HttpRouteRulesFiltersUrlRewritePathType as RewritePathType, HttpRouteRulesMatchesHeadersType,
    HttpRouteRulesMatchesMethod as Method, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType, HttpRouteRulesRetry,
};
use gateway_api::grpcroutes::{GrpcRoute, GrpcRouteRulesMatchesMethodType};
use serde::Serialize;

use super::backend::{
    Context, INVALID_BACKEND_PREFIX, MetaView, RefSpec, Unresolved, Wanted, backend_name,
    created_of, name_of, ns_of,
};
use super::hostname::{Hosts, intersect};
use super::listener::Listener;
use super::session::{ServiceSettings, route_rule_session};
use super::small_set::SmallList;
use crate::duration;
use crate::status::{Condition, ParentRef, ParentStatus, ResourceRef, ResourceStatus, reason};
use crate::types::GATEWAY_GROUP;
use crate::types::compact_route::{CompactHttpRoute, RouteMatch};
use crate::types::policy::BackendPolicySpec;
use crate::types::traffic::{
    DEFAULT_RETRY_ATTEMPTS, TrafficValues, connection_and_status_retries, retry_status,
};

/// A route converted once, attached per parentRef.
struct Converted {
    /// Every Service a reference names (namespace, name), resolved or not.
    services: Vec<(String, String)>,
    rules: Vec<Rule>,
    wanted: Vec<Wanted>,
    unresolved: Vec<Unresolved>,
    dropped: Vec<String>,
    all_dropped: bool,
    errors: Vec<ConfigError>,
    /// The access policies of its rules' `ExternalAuth` filters, by name.
    access: Vec<(String, super::AccessEntry)>,
}

/// A parentRef as written.
pub(crate) struct RawParent<'a> {
    pub(crate) group: Option<&'a str>,
    pub(crate) kind: Option<&'a str>,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) section: Option<&'a str>,
    pub(crate) port: Option<i32>,
}

/// What every route kind shares for attachment.
pub(crate) struct RouteView<'a> {
    pub(crate) kind: &'static str,
    pub(crate) ns: &'a str,
    pub(crate) name: &'a str,
    /// `ns` and `name`, shared by its id and its status.
    pub(crate) shared: (Arc<str>, Arc<str>),
    pub(crate) generation: Option<i64>,
    pub(crate) id: RouteId,
    pub(crate) created: i64,
    pub(crate) hostnames: &'a [String],
    pub(crate) parents: Vec<RawParent<'a>>,
}

/// The routes attached to each listener, keyed by the listener's
/// `(status_index, listener_index)`.
pub(crate) type ListenerRoutes =
    BTreeMap<(usize, usize), gatekit_core::chunked::Chunked<Arc<Route>>>;

/// What a route gets per listener it attaches to: the listener's traffic policy
/// values, the intersected hostnames, and the Secret (namespace, name) of the client
/// certificate its Gateway presents to TLS backends.
type PerListener = (
    TrafficValues,
    Hosts,
    Option<(String, String)>,
    super::access::ListenerAccess,
);

/// A listener: its `(status_index, listener_index)`.
pub(crate) type ListenerKey = (usize, usize);

/// A Service port a route uses (its upstream), once the route is attached.
pub(crate) struct Use {
    /// The upstream name ([`backend_name`]): shared with the
    /// [`Translator`](super::Translator)'s entries for the upstream.
    pub(crate) name: Arc<str>,
    pub(crate) wanted: Wanted,
}

/// Everything one route contributes to a translation: what the incremental
/// [`Translator`](super::Translator) keeps per route and reuses while neither the
/// route nor a Service it references changes. Kept for every route, so its lists are
/// boxed slices (no spare capacity: a `Vec`'s first push makes room for four), and
/// those that mostly hold one item keep that one inline ([`SmallList`]).
pub(crate) struct RoutePiece {
    /// Its status, which also names the route (see [`key`](Self::key)).
    pub(crate) status: Arc<ResourceStatus>,
    /// One route per programmed listener it attaches to, in listener order.
    pub(crate) routes: SmallList<(ListenerKey, Arc<Route>)>,
    /// The upstreams it materializes (none when it attached nowhere), in order.
    pub(crate) uses: SmallList<Use>,
    /// Its errors, access policies, unprogrammed listeners and Services no use names:
    /// `None` while all are empty (most routes).
    rare: Option<Box<PieceRare>>,
}

/// The parts of a [`RoutePiece`] most routes do not have.
struct PieceRare {
    /// The listeners whose `attachedRoutes` count it besides those of `routes`
    /// (unprogrammed ones; see [`RoutePiece::counted`]).
    unprogrammed: Box<[ListenerKey]>,
    /// The Services its references name (namespace, name), resolved or not, that no
    /// use names (see [`RoutePiece::services`]).
    other_services: Box<[(Arc<str>, Arc<str>)]>,
    errors: Box<[ConfigError]>,
    /// The access policies of its rules' `ExternalAuth` filters, by name.
    access: Box<[(String, super::AccessEntry)]>,
}

impl RoutePiece {
    /// The listeners whose `attachedRoutes` count it (unprogrammed ones included),
    /// each once.
    pub(crate) fn counted(&self) -> impl Iterator<Item = &ListenerKey> {
        self.routes
            .iter()
            .map(|(l, _)| l)
            .chain(self.rare.iter().flat_map(|r| r.unprogrammed.iter()))
    }

    /// Every Service its references name (namespace, name), resolved or not; one
    /// may come more than once (a TLS backend's upstream per client certificate).
    pub(crate) fn services(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> {
        self.uses
            .iter()
            .map(|u| (&u.wanted.namespace, &u.wanted.service))
            .chain(
                (self.rare.iter())
                    .flat_map(|r| r.other_services.iter())
                    .map(|(ns, name)| (ns, name)),
            )
    }

    /// Its errors.
    pub(crate) fn errors(&self) -> &[ConfigError] {
        self.rare.as_ref().map_or(&[], |r| &r.errors)
    }

    /// The access policies of its rules' `ExternalAuth` filters, by name.
    pub(crate) fn access(&self) -> &[(String, super::AccessEntry)] {
        self.rare.as_ref().map_or(&[], |r| &r.access)
    }

    /// Sort key: 0 for HTTPRoutes, 1 for GRPCRoutes; namespace; name (its status's
    /// resource's shared names: not kept twice).
    pub(crate) fn key(&self) -> (u8, Arc<str>, Arc<str>) {
        let r = self.status.resource();
        (
            u8::from(r.kind() == "GRPCRoute"),
            r.namespace_arc().cloned().unwrap_or_else(|| Arc::from("")),
            r.name_arc().clone(),
        )
    }
}

/// Converts and attaches every route, HTTPRoutes then GRPCRoutes, each kind by
/// namespace/name. `listener_statuses` are the statuses the listener pass pushed
/// (indexed by the listeners' `status_index`).
pub(crate) fn attach_routes(
    cx: &Context<'_>,
    listeners: &[Listener<'_>],
    listener_statuses: &[ResourceStatus],
) -> Vec<RoutePiece> {
    let resources = cx.resources;
    let mut http: Vec<&CompactHttpRoute> = resources.http_routes.iter().collect();
    http.sort_by_key(|r| (ns_of(&r.metadata), name_of(&r.metadata)));
    let mut grpc: Vec<&GrpcRoute> = resources.grpc_routes.iter().collect();
    grpc.sort_by_key(|r| (ns_of(&r.metadata), name_of(&r.metadata)));
    let mut out = Vec::with_capacity(http.len() + grpc.len());
    for r in http {
        out.push(http_piece(cx, listeners, listener_statuses, r));
    }
    for r in grpc {
        out.push(grpc_piece(cx, listeners, listener_statuses, r));
    }
    out
}

/// The parentRefs of a route of any kind, as written (every kind's parentRef type has
/// the same fields).
macro_rules! raw_parents {
    ($route:expr) => {
        $route
            .spec
            .parent_refs
            .iter()
            .flatten()
            .map(|p| RawParent {
                group: p.group.as_deref(),
                kind: p.kind.as_deref(),
                namespace: p.namespace.as_deref(),
                name: &p.name,
                section: p.section_name.as_deref(),
                port: p.port,
            })
            .collect()
    };
}
pub(crate) use raw_parents;

/// What every route kind shares, from its metadata, hostnames and parentRefs; `id`
/// from the namespace (shared through `names`) and name.
pub(crate) fn route_view<'a>(
    names: &crate::status::SharedNames,
    kind: &'static str,
    meta: &'a (impl MetaView + ?Sized),
    id: impl FnOnce(&Arc<str>, &Arc<str>) -> RouteId,
    hostnames: Option<&'a [String]>,
    parents: Vec<RawParent<'a>>,
) -> RouteView<'a> {
    let ns = ns_of(meta);
    let name = name_of(meta);
    let shared: (Arc<str>, Arc<str>) = (names.get(ns), name.into());
    RouteView {
        kind,
        ns,
        name,
        generation: meta.generation_of(),
        id: id(&shared.0, &shared.1),
        shared,
        created: created_of(meta),
        hostnames: hostnames.unwrap_or(&[]),
        parents,
    }
}

/// One HTTPRoute's [`RoutePiece`].
pub(crate) fn http_piece(
    cx: &Context<'_>,
    listeners: &[Listener<'_>],
    listener_statuses: &[ResourceStatus],
    r: &CompactHttpRoute,
) -> RoutePiece {
    let view = route_view(
        &cx.namespace_names,
        "HTTPRoute",
        &r.metadata,
        |ns, name| route_id(0, ns, name),
        r.spec.hostnames.as_deref(),
        raw_parents!(r),
    );
    let conv = convert_http(cx, &view, r);
    attach(cx, listeners, listener_statuses, view, conv)
}

/// The id of the route of `kind` (0 HTTPRoute, 1 GRPCRoute, as in
/// [`RoutePiece::key`]) `namespace`/`name`: GRPCRoutes' names get a `grpc:` prefix.
pub(crate) fn route_id(kind: u8, namespace: &Arc<str>, name: &Arc<str>) -> RouteId {
    if kind == 1 {
        RouteId::new(namespace.clone(), format!("grpc:{name}"))
    } else {
        RouteId::new(namespace.clone(), name.clone())
    }
}

/// One GRPCRoute's [`RoutePiece`].
pub(crate) fn grpc_piece(
    cx: &Context<'_>,
    listeners: &[Listener<'_>],
    listener_statuses: &[ResourceStatus],
    r: &GrpcRoute,
) -> RoutePiece {
    let view = route_view(
        &cx.namespace_names,
        "GRPCRoute",
        &r.metadata,
        |ns, name| route_id(1, ns, name),
        r.spec.hostnames.as_deref(),
        raw_parents!(r),
    );
    let conv = convert_grpc(cx, &view, r);
    attach(cx, listeners, listener_statuses, view, conv)
}

fn attach(
    cx: &Context<'_>,
    listeners: &[Listener<'_>],
    statuses: &[ResourceStatus],
    view: RouteView<'_>,
    conv: Converted,
) -> RoutePiece {
    let mut counted = Vec::new();
    let generation = view.generation;
    let mut status = ResourceStatus::new(
        ResourceRef::shared(
            view.kind,
            Some(view.shared.0.clone()),
            view.shared.1.clone(),
        ),
        generation,
    );
    let resolved = resolved_condition(&conv.unresolved, generation);
    let mut parents = Vec::new();
    // Per listener (listener isolation: each listener matches its own routes), the
    // route's hostnames intersected with the listener's and what its policies set.
    // And the Secret of the client certificate its Gateway presents to TLS backends.
    let mut per_listener: BTreeMap<(usize, usize), PerListener> = BTreeMap::new();
    // Listeners that are not programmed but that the route attaches to: the spec counts
    // it in their `attachedRoutes` too ("Listener or Route status does not impact
    // successful attachment").
    let mut unprogrammed = std::collections::BTreeSet::new();
    for p in &view.parents {
        let attachable = !conv.all_dropped;
        let (parent, matched) = match match_parent(
            cx,
            listeners,
            statuses,
            &view,
            p,
            attachable,
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
        if conv.all_dropped {
            parents.push(refused_parent(
                parent,
                reason::UNSUPPORTED_VALUE,
                conv.dropped.join("; "),
                &resolved,
            ));
            continue;
        }
        for (l, hosts) in matched {
            match per_listener.entry((l.status_index, l.listener_index)) {
                // Two parentRefs naming the same listener: one entry, hostnames united.
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().1.merge(hosts),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let section = (l.owner.kind == "Gateway").then_some(l.name);
                    let traffic = cx.listener_traffic(l.gateway_ns, l.gateway_name, section);
                    let client = cx.gateway_client(l.gateway_ns, l.gateway_name);
                    let access = cx.listener_access(l.gateway_ns, l.gateway_name, section);
                    e.insert((traffic, hosts, client, access));
                    counted.push((l.status_index, l.listener_index));
                }
            }
        }
        let mut conditions = vec![
            Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "", generation),
            resolved.clone(),
        ];
        if !conv.dropped.is_empty() {
            conditions.push(Condition::new(
                reason::PARTIALLY_INVALID,
                true,
                reason::UNSUPPORTED_VALUE,
                format!("Dropped Rule(s): {}", conv.dropped.join("; ")),
                generation,
            ));
        }
        parents.push(ParentStatus::new(parent, conditions));
    }
    // TLS backends get one upstream per client certificate of the route's Gateways
    // (see `backend_tls.rs`); every other backend one upstream.
    let mut clients: Vec<Option<&(String, String)>> = per_listener
        .values()
        .map(|(_, _, c, _)| c.as_ref())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    let mut tls_names: Vec<String> = Vec::new();
    let mut uses = Vec::new();
    if !per_listener.is_empty() {
        for w in conv.wanted {
            let base = w.upstream_name();
            if !w.tls {
                uses.push(Use {
                    name: Arc::from(base),
                    wanted: w,
                });
                continue;
            }
            for client in &clients {
                let mut w = w.clone();
                w.client = client.cloned().map(Box::new);
                uses.push(Use {
                    name: Arc::from(super::backend_tls::client_backend_name(&base, *client)),
                    wanted: w,
                });
            }
            if !tls_names.contains(&base) {
                tls_names.push(base);
            }
        }
    }
    let mut routes = Vec::with_capacity(per_listener.len());
    for (listener, (traffic, hosts, client, access)) in per_listener {
        let mut route = Route::new(view.id.clone());
        route.hostnames = hosts.into_list();
        route.created = view.created;
        route.rules = conv.rules.iter().cloned().collect();
        cx.apply_traffic(view.kind, view.ns, view.name, &traffic, &mut route.rules);
        cx.apply_access(view.kind, view.ns, view.name, &access, &mut route.rules);
        if let Some(client) = &client
            && !tls_names.is_empty()
        {
            super::backend_tls::rename_backends(&mut route.rules, &tls_names, client);
        }
        routes.push((listener, Arc::new(route)));
    }
    status.set_parents(cx.parents.get(parents));
    status.shrink();
    // (Every programmed listener it counts in has a route: only the others are kept.)
    let unprogrammed: Box<[ListenerKey]> = counted
        .into_iter()
        .filter(|k| !routes.iter().any(|(l, _)| l == k))
        .collect();
    // (The Services of its uses are named by the uses, with names shared.)
    let other_services: Box<[(Arc<str>, Arc<str>)]> = conv
        .services
        .iter()
        .filter(|(ns, name)| {
            !uses
                .iter()
                .any(|u| *u.wanted.namespace == **ns && *u.wanted.service == **name)
        })
        .map(|(ns, name)| (cx.namespace_names.get(ns), Arc::from(name.as_str())))
        .collect();
    let rare = PieceRare {
        unprogrammed,
        other_services,
        errors: conv.errors.into_boxed_slice(),
        access: conv.access.into_boxed_slice(),
    };
    let empty = rare.unprogrammed.is_empty()
        && rare.other_services.is_empty()
        && rare.errors.is_empty()
        && rare.access.is_empty();
    RoutePiece {
        status: Arc::new(status),
        routes: routes.into(),
        uses: uses.into(),
        rare: (!empty).then(|| Box::new(rare)),
    }
}

/// A route's `ResolvedRefs`: true, or false with the first refusal's reason and every
/// refusal's message.
pub(crate) fn resolved_condition(unresolved: &[Unresolved], generation: Option<i64>) -> Condition {
    match unresolved.first() {
        None => Condition::new(
            reason::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "",
            generation,
        ),
        Some(first) => Condition::new(
            reason::RESOLVED_REFS,
            false,
            first.reason,
            unresolved
                .iter()
                .map(|u| u.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            generation,
        ),
    }
}

/// What one parentRef of a route reaches.
pub(crate) enum ParentMatch<'l, 'a> {
    /// Not gatekit's to report on (another group or kind, another controller's
    /// Gateway).
    Ignored,
    /// Not accepted: the parent, the `Accepted` reason and message.
    Refused(ParentRef, &'static str, String),
    /// The programmed listeners it attaches to, each with the route's hostnames
    /// intersected with the listener's.
    Matched(ParentRef, Vec<(&'l Listener<'a>, Hosts)>),
}

/// Matches one parentRef of a route against the listeners: the Gateway or ListenerSet
/// (namespace defaults to the route's; a Gateway parentRef reaches the Gateway's own
/// listeners only), `sectionName` and `port`, programmed listeners, `allowedRoutes`
/// (kinds, namespaces), hostname intersection, in that order of refusal reasons.
/// Unprogrammed listeners the route would attach to count it in `attachedRoutes`
/// when `attachable` ("Listener or Route status does not impact successful
/// attachment"): they are added to `counted` once (`unprogrammed` remembers them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn match_parent<'l, 'a>(
    cx: &Context<'_>,
    listeners: &'l [Listener<'a>],
    statuses: &[ResourceStatus],
    view: &RouteView<'_>,
    p: &RawParent<'_>,
    attachable: bool,
    unprogrammed: &mut std::collections::BTreeSet<ListenerKey>,
    counted: &mut Vec<ListenerKey>,
) -> ParentMatch<'l, 'a> {
    if p.group.unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP {
        return ParentMatch::Ignored;
    }
    // GEP-1713: a route attaches to the listeners of its direct parent only; a
    // Gateway parentRef never reaches its ListenerSets' listeners.
    let kind = match p.kind.unwrap_or("Gateway") {
        "Gateway" => "Gateway",
        "ListenerSet" => "ListenerSet",
        _ => return ParentMatch::Ignored,
    };
    let parent_ns = p.namespace.unwrap_or(view.ns);
    let parent = ParentRef {
        kind,
        namespace: parent_ns.to_owned(),
        name: p.name.to_owned(),
        section_name: p.section.map(str::to_owned),
        port: p.port.and_then(|p| u16::try_from(p).ok()),
    };
    let named = |m: &crate::types::ObjectMeta| ns_of(m) == parent_ns && name_of(m) == p.name;
    let exists = if kind == "Gateway" {
        cx.resources.gateways.iter().any(|g| named(&g.metadata))
    } else {
        cx.resources
            .listener_sets
            .iter()
            .any(|s| named(&s.metadata))
    };
    let ours: Vec<&'l Listener<'a>> = listeners
        .iter()
        .filter(|l| l.owner.kind == kind && l.owner.ns == parent_ns && l.owner.name == p.name)
        .collect();
    // (Checked last: the statuses grow with the routes, so a scan per parentRef
    // made translation quadratic.)
    if exists && ours.is_empty() && !resource_served(statuses, kind, parent_ns, p.name) {
        // Another controller's Gateway (or ListenerSet): not ours to report on.
        return ParentMatch::Ignored;
    }
    if !exists {
        let message = format!("{kind} {parent_ns}/{} not found", p.name);
        return ParentMatch::Refused(parent, reason::NO_MATCHING_PARENT, message);
    }
    if kind == "ListenerSet" && ours.is_empty() {
        let message = format!(
            "ListenerSet {parent_ns}/{} is not accepted by its Gateway",
            p.name
        );
        return ParentMatch::Refused(parent, reason::NO_MATCHING_PARENT, message);
    }
    let candidates: Vec<&'l Listener<'a>> = ours
        .into_iter()
        .filter(|l| p.section.is_none_or(|s| s == l.name))
        .filter(|l| p.port.is_none_or(|port| port == i32::from(l.port)))
        .collect();
    if candidates.is_empty() {
        return ParentMatch::Refused(
            parent,
            reason::NO_MATCHING_PARENT,
            "no listener matches the parentRef's sectionName/port".to_owned(),
        );
    }
    if attachable {
        for l in candidates.iter().filter(|l| !l.programmed) {
            if l.kinds.contains(&view.kind)
                && l.allows_namespace(cx, view.ns)
                && intersect(l.hostname.as_deref(), view.hostnames).is_some()
                && unprogrammed.insert((l.status_index, l.listener_index))
            {
                counted.push((l.status_index, l.listener_index));
            }
        }
    }
    let programmed: Vec<&'l Listener<'a>> =
        candidates.into_iter().filter(|l| l.programmed).collect();
    if programmed.is_empty() {
        return ParentMatch::Refused(
            parent,
            reason::NO_MATCHING_PARENT,
            "the matching listeners are not valid".to_owned(),
        );
    }
    let allowed: Vec<&'l Listener<'a>> = programmed
        .into_iter()
        .filter(|l| l.kinds.contains(&view.kind) && l.allows_namespace(cx, view.ns))
        .collect();
    if allowed.is_empty() {
        let message = format!(
            "no listener allows {} from namespace {}",
            view.kind, view.ns
        );
        return ParentMatch::Refused(parent, reason::NOT_ALLOWED_BY_LISTENERS, message);
    }
    let matched: Vec<_> = allowed
        .into_iter()
        .filter_map(|l| intersect(l.hostname.as_deref(), view.hostnames).map(|h| (l, h)))
        .collect();
    if matched.is_empty() {
        return ParentMatch::Refused(
            parent,
            reason::NO_MATCHING_LISTENER_HOSTNAME,
            "no listener hostname intersects the route's hostnames".to_owned(),
        );
    }
    ParentMatch::Matched(parent, matched)
}

/// The status of a parent that did not accept the route: `Accepted=False` with
/// `reason` and `message`, and the route's `ResolvedRefs`.
pub(crate) fn refused_parent(
    parent: ParentRef,
    reason: &'static str,
    message: String,
    resolved: &Condition,
) -> ParentStatus {
    let generation = resolved.observed_generation();
    ParentStatus::new(
        parent,
        vec![
            Condition::new(reason::ACCEPTED, false, reason, message, generation),
            resolved.clone(),
        ],
    )
}

/// Whether a Gateway (or ListenerSet) with this namespace/name is one gatekit serves
/// (its status exists).
fn resource_served(statuses: &[ResourceStatus], kind: &str, ns: &str, name: &str) -> bool {
    statuses.iter().any(|s| {
        let r = s.resource();
        r.kind() == kind && r.namespace() == Some(ns) && r.name() == name
    })
}

/// Per-rule accumulation while converting.
struct RuleWork<'c, 'a> {
    cx: &'c Context<'a>,
    view_kind: &'static str,
    ns: &'c str,
    grpc: bool,
    wanted: Vec<Wanted>,
    /// Every Service a reference names (see [`Converted::services`]).
    services: Vec<(String, String)>,
    /// Refused references with their field paths.
    unresolved: Vec<(String, Unresolved)>,
    problems: Vec<(String, String)>,
}

impl<'c> RuleWork<'c, '_> {
    /// Resolves a reference; an unresolved one is recorded (it does not drop the rule)
    /// and named so that it never resolves.
    /// `field` is the reference's path in the route, for the error it may give.
    fn backend(&mut self, r: &RefSpec<'_>, field: &str) -> String {
        self.resolve(r, field).0
    }

    /// [`backend`](Self::backend), with the BackendPolicy and the XBackendTrafficPolicy
    /// settings of the Service it resolved to.
    fn resolve(
        &mut self,
        r: &RefSpec<'_>,
        field: &str,
    ) -> (
        String,
        Option<&'c BackendPolicySpec>,
        Option<&'c ServiceSettings>,
    ) {
        let named = (r.namespace.unwrap_or(self.ns), r.name);
        if !self
            .services
            .iter()
            .any(|(n, s)| (n.as_str(), s.as_str()) == named)
        {
            self.services.push((named.0.to_owned(), named.1.to_owned()));
        }
        match self.cx.resolve(self.view_kind, self.ns, r, self.grpc) {
            Ok(w) => {
                let name = backend_name(&w.namespace, &w.service, w.port);
                let policy = self.cx.backend_policy(&w.namespace, &w.service);
                let x = self.cx.x_policy(&w.namespace, &w.service);
                self.wanted.push(w);
                (name, policy, x)
            }
            Err(u) => {
                self.unresolved.push((field.to_owned(), u));
                let ns = r.namespace.unwrap_or(self.ns);
                let name = format!(
                    "{INVALID_BACKEND_PREFIX}{ns}/{}:{}",
                    r.name,
                    r.port.unwrap_or(0)
                );
                (name, None, None)
            }
        }
    }

    /// The access policy of an `ExternalAuth` filter (GEP-1494): its backendRef
    /// resolved like the rule's (an unresolved one is reported in `ResolvedRefs` and
    /// leaves the policy without a spec, so the rule refuses).
    fn external_auth(
        &mut self,
        f: &HttpRouteRulesFilters,
        field: &str,
        view: &RouteView<'_>,
    ) -> super::AccessEntry {
        use gateway_api::experimental::httproutes::HttpRouteRulesFiltersExternalAuthProtocol as Protocol;
        let source = ResourceRef::new(view.kind, Some(view.ns), view.name);
        let target = format!("{} {}/{} {field}", view.kind, view.ns, view.name);
        let Some(x) = f.external_auth.as_ref() else {
            let why = "type ExternalAuth needs its externalAuth field".to_owned();
            self.problems.push((field.to_owned(), why.clone()));
            return super::AccessEntry::new(source, "extAuth", vec![target], None, Some(why));
        };
        let grpc = matches!(x.protocol, Protocol::Grpc);
        let r = &x.backend_ref;
        let spec = RefSpec {
            group: r.group.as_deref(),
            kind: r.kind.as_deref(),
            name: &r.name,
            namespace: r.namespace.as_deref(),
            port: r.port,
        };
        let named = (spec.namespace.unwrap_or(self.ns), spec.name);
        if !self
            .services
            .iter()
            .any(|(n, s)| (n.as_str(), s.as_str()) == named)
        {
            self.services.push((named.0.to_owned(), named.1.to_owned()));
        }
        let upstream = match self.cx.resolve(self.view_kind, self.ns, &spec, grpc) {
            Ok(w) => {
                let name = w.upstream_name();
                self.wanted.push(w);
                name
            }
            Err(u) => {
                let why = u.message.clone();
                self.unresolved
                    .push((format!("{field}.externalAuth.backendRef"), u));
                return super::AccessEntry::new(source, "extAuth", vec![target], None, Some(why));
            }
        };
        let mode = if grpc {
            super::ExtAuthMode::Grpc
        } else {
            super::ExtAuthMode::Http {
                path: x.http.as_ref().and_then(|h| h.path.clone()),
                headers_to_backend: x
                    .http
                    .as_ref()
                    .and_then(|h| h.allowed_response_headers.clone())
                    .unwrap_or_default(),
            }
        };
        let allowed = if grpc {
            x.grpc.as_ref().and_then(|g| g.allowed_headers.clone())
        } else {
            x.http.as_ref().and_then(|h| h.allowed_headers.clone())
        };
        let spec = super::AccessSpec::ExtAuth(super::ExtAuthSpec {
            mode,
            upstream,
            headers_to_ext_auth: allowed.unwrap_or_default(),
            fail_open: false,
            max_request_bytes: x
                .forward_body
                .as_ref()
                .and_then(|b| b.max_size)
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| *m > 0),
            timeout: None,
        });
        super::AccessEntry::new(source, "extAuth", vec![target], Some(Arc::new(spec)), None)
    }

    fn filter(&mut self, f: &HttpRouteRulesFilters, field: &str) -> Option<Filter> {
        match convert_filter(self, f, field) {
            Ok(f) => Some(f),
            Err(reason) => {
                self.problems.push((field.to_owned(), reason));
                None
            }
        }
    }
}

fn convert_filter(
    w: &mut RuleWork<'_, '_>,
    f: &HttpRouteRulesFilters,
    field: &str,
) -> Result<Filter, String> {
    let missing = |what: &str| format!("type {what} needs its {what} field");
    Ok(match f.r#type {
        FilterType::RequestHeaderModifier => {
            let m = f
                .request_header_modifier
                .as_ref()
                .ok_or_else(|| missing("requestHeaderModifier"))?;
            Filter::RequestHeaderModifier(header_modifier(
                m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                m.remove.as_deref(),
            ))
        }
        FilterType::ResponseHeaderModifier => {
            let m = f
                .response_header_modifier
                .as_ref()
                .ok_or_else(|| missing("responseHeaderModifier"))?;
            Filter::ResponseHeaderModifier(header_modifier(
                m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                m.remove.as_deref(),
            ))
        }
        FilterType::RequestRedirect => {
            let r = f
                .request_redirect
                .as_ref()
                .ok_or_else(|| missing("requestRedirect"))?;
            let mut out = Redirect::default();
            out.scheme = match &r.scheme {
                None => None,
                Some(Scheme::Http) => Some("http".to_owned()),
                Some(Scheme::Https) => Some("https".to_owned()),
            };
            out.hostname = r.hostname.clone();
            out.port = match r.port {
                None => None,
                Some(p) => Some(
                    u16::try_from(p)
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| format!("requestRedirect.port {p} is not a port"))?,
                ),
            };
            if let Some(p) = &r.path {
                out.path = Some(path_modifier(
                    matches!(p.r#type, RedirectPathType::ReplaceFullPath),
                    p.replace_full_path.as_deref(),
                    p.replace_prefix_match.as_deref(),
                    "requestRedirect.path",
                )?);
            }
            let code = r.status_code.unwrap_or(302);
            out.status = match code {
                301 | 302 | 303 | 307 | 308 => code as u16,
                _ => {
                    return Err(format!(
                        "requestRedirect.statusCode {code} is not supported"
                    ));
                }
            };
            Filter::RequestRedirect(out)
        }
        FilterType::UrlRewrite => {
            let r = f
                .url_rewrite
                .as_ref()
                .ok_or_else(|| missing("urlRewrite"))?;
            let mut out = UrlRewrite::default();
            out.hostname = r.hostname.clone();
            if let Some(p) = &r.path {
                out.path = Some(path_modifier(
                    matches!(p.r#type, RewritePathType::ReplaceFullPath),
                    p.replace_full_path.as_deref(),
                    p.replace_prefix_match.as_deref(),
                    "urlRewrite.path",
                )?);
            }
            Filter::UrlRewrite(out)
        }
        FilterType::RequestMirror => {
            let m = f
                .request_mirror
                .as_ref()
                .ok_or_else(|| missing("requestMirror"))?;
            let b = &m.backend_ref;
            let name = w.backend(
                &RefSpec {
                    group: b.group.as_deref(),
                    kind: b.kind.as_deref(),
                    name: &b.name,
                    namespace: b.namespace.as_deref(),
                    port: b.port,
                },
                &format!("{field}.requestMirror.backendRef"),
            );
            let mut out = Mirror::new(name);
            out.fraction = match (m.percent, &m.fraction) {
                (Some(_), Some(_)) => {
                    return Err("requestMirror: set percent or fraction, not both".to_owned());
                }
                (Some(p), None) => Some((
                    u32::try_from(p)
                        .ok()
                        .filter(|p| *p <= 100)
                        .ok_or_else(|| format!("requestMirror.percent {p} is not 0-100"))?,
                    100,
                )),
                (None, Some(fr)) => {
                    let d = fr.denominator.unwrap_or(100);
                    match (u32::try_from(fr.numerator), u32::try_from(d)) {
                        (Ok(n), Ok(d)) if d > 0 && n <= d => Some((n, d)),
                        _ => {
                            return Err(format!(
                                "requestMirror.fraction {}/{d} is not a fraction",
                                fr.numerator
                            ));
                        }
                    }
                }
                (None, None) => None,
            };
            Filter::RequestMirror(out)
        }
        FilterType::ExtensionRef => {
            return Err("ExtensionRef filters are not supported".to_owned());
        }
        FilterType::Cors => {
            let c = f.cors.as_ref().ok_or_else(|| missing("cors"))?;
            let mut out = CorsPolicy::default();
            out.allow_origins = c.allow_origins.clone().unwrap_or_default();
            out.allow_credentials = c.allow_credentials.unwrap_or(false);
            out.allow_methods = c.allow_methods.clone().unwrap_or_default();
            out.allow_headers = c.allow_headers.clone().unwrap_or_default();
            out.expose_headers = c.expose_headers.clone().unwrap_or_default();
            out.max_age = match c.max_age {
                None => None,
                Some(s) => Some(
                    u32::try_from(s)
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| format!("cors.maxAge {s} must be at least 1 (seconds)"))?,
                ),
            };
            cors_filter(out).map_err(|e| format!("cors.{}: {}", e.field(), e.reason()))?
        }
        FilterType::ExternalAuth => {
            return Err("ExternalAuth filters are not supported".to_owned());
        }
    })
}

/// A CORS filter of `policy` (an HTTPRoute's `CORS` filter, a SecurityPolicy's
/// `cors`), checked as the core checks it when the table is built, so that the field
/// lands on the resource's status. Error fields are relative to the policy
/// (`allowOrigins[1]`).
pub(crate) fn cors_filter(policy: CorsPolicy) -> Result<Filter, ConfigError> {
    let filter = Filter::Cors(policy);
    let none: HashMap<String, gatekit_core::Backend> = HashMap::new();
    if let Err(e) = FilterChain::compile(std::slice::from_ref(&filter), &none) {
        let field = e.field().strip_prefix("[0].").unwrap_or(e.field());
        let field = field.strip_prefix("cors.").unwrap_or(field);
        return Err(ConfigError::new(field, e.reason()));
    }
    Ok(filter)
}

fn header_modifier<'a>(
    set: impl Iterator<Item = (&'a String, &'a String)>,
    add: impl Iterator<Item = (&'a String, &'a String)>,
    remove: Option<&[String]>,
) -> HeaderModifier {
    let mut m = HeaderModifier::default();
    m.set = set.map(|(n, v)| (n.clone(), v.clone())).collect();
    m.add = add.map(|(n, v)| (n.clone(), v.clone())).collect();
    m.remove = remove.map(<[String]>::to_vec).unwrap_or_default();
    m
}

fn path_modifier(
    full: bool,
    full_path: Option<&str>,
    prefix: Option<&str>,
    field: &str,
) -> Result<PathModifier, String> {
    if full {
        full_path
            .map(|p| PathModifier::ReplaceFullPath(p.to_owned()))
            .ok_or_else(|| format!("{field}.replaceFullPath is required for type ReplaceFullPath"))
    } else {
        prefix
            .map(|p| PathModifier::ReplacePrefixMatch(p.to_owned()))
            .ok_or_else(|| {
                format!("{field}.replacePrefixMatch is required for type ReplacePrefixMatch")
            })
    }
}

/// Re-reads a filter of another route or level as an HTTPRoute rule filter (the
/// generated types differ only in name; the JSON shapes are the same).
fn as_http_filter<T: Serialize>(f: &T) -> Result<HttpRouteRulesFilters, String> {
    serde_json::to_value(f)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("filter not understood: {e}"))
}

fn http_match(m: &RouteMatch) -> Match {
    let mut out = Match::default();
    // A match without a path is a `PathPrefix` of `/` (the CRD's default).
    let (kind, value) = match &m.path {
        Some(p) => (p.r#type.clone(), p.value.as_deref().unwrap_or("/")),
        None => (None, "/"),
    };
    let value = value.to_owned();
    out.path = Some(match kind {
        Some(HttpRouteRulesMatchesPathType::Exact) => PathMatch::Exact(value),
        None | Some(HttpRouteRulesMatchesPathType::PathPrefix) => PathMatch::Prefix(value),
        Some(HttpRouteRulesMatchesPathType::RegularExpression) => PathMatch::Regex(value),
    });
    out.headers = (m.headers.iter().flatten())
        .map(|h| HeaderMatch {
            name: h.name.clone(),
            value: match h.r#type {
                Some(HttpRouteRulesMatchesHeadersType::RegularExpression) => {
                    StringMatch::Regex(h.value.clone())
                }
                _ => StringMatch::Exact(h.value.clone()),
            },
        })
        .collect();
    out.query = (m.query_params.iter().flatten())
        .map(|q| QueryMatch {
            name: q.name.clone(),
            value: match q.r#type {
                Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression) => {
                    StringMatch::Regex(q.value.clone())
                }
                _ => StringMatch::Exact(q.value.clone()),
            },
        })
        .collect();
    out.method = m.method.as_ref().map(|m| match m {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
    });
    out
}

fn duration_of(s: Option<&str>) -> Result<Option<std::time::Duration>, String> {
    match s {
        None => Ok(None),
        Some(s) => {
            let d = duration::parse(s).map_err(|e| e.to_string())?;
            // "0s" disables the timeout.
            Ok((!d.is_zero()).then_some(d))
        }
    }
}

/// Shared tail of rule conversion: records problems, drops the rule if any.
fn finish_rule(conv: &mut Converted, view: &RouteView<'_>, mut rule: Rule, work: RuleWork<'_, '_>) {
    for (field, reason) in &work.problems {
        conv.errors
            .push(ConfigError::new(field.clone(), reason.clone()).for_route(view.id.clone()));
    }
    for (field, u) in &work.unresolved {
        conv.errors
            .push(ConfigError::new(field.clone(), u.message.clone()).for_route(view.id.clone()));
    }
    conv.unresolved
        .extend(work.unresolved.into_iter().map(|(_, u)| u));
    for s in work.services {
        if !conv.services.contains(&s) {
            conv.services.push(s);
        }
    }
    if work.problems.is_empty() {
        conv.wanted.extend(work.wanted);
    } else {
        let reasons: Vec<_> = work
            .problems
            .iter()
            .map(|(f, r)| format!("{f}: {r}"))
            .collect();
        conv.dropped.push(reasons.join("; "));
        // Keep the matches so requests do not fall through to another route; with no
        // filters and no backends the rule answers 500.
        rule.filters = Box::default();
        rule.backends = SmallList::default();
        rule.timeouts = Timeouts::default();
        rule.policy = RulePolicy::none();
    }
    conv.rules.push(rule);
}

fn new_converted() -> Converted {
    Converted {
        services: Vec::new(),
        rules: Vec::new(),
        wanted: Vec::new(),
        unresolved: Vec::new(),
        dropped: Vec::new(),
        all_dropped: false,
        errors: Vec::new(),
        access: Vec::new(),
    }
}

fn convert_http(cx: &Context<'_>, view: &RouteView<'_>, route: &CompactHttpRoute) -> Converted {
    let mut conv = new_converted();
    let rules = route.spec.rules.as_deref().unwrap_or(&[]);
    for (i, r) in rules.iter().enumerate() {
        let field = format!("spec.rules[{i}]");
        let mut work = RuleWork {
            cx,
            view_kind: view.kind,
            ns: view.ns,
            grpc: false,
            wanted: Vec::new(),
            services: Vec::new(),
            unresolved: Vec::new(),
            problems: Vec::new(),
        };
        let mut rule = Rule::default();
        rule.name = r.name.as_deref().map(str::to_owned);
        rule.matches = r.matches.iter().flatten().map(http_match).collect();
        if rule.matches.is_empty() {
            // HTTPRoute's default: one match of path prefix `/` (core's match without
            // conditions would rank after regexes, as GRPCRoute's must).
            rule.matches.push(http_match(&RouteMatch::default()));
        }
        let mut filters = Vec::new();
        for (j, f) in r.filters.iter().flatten().enumerate() {
            if f.r#type == FilterType::ExternalAuth {
                // GEP-1494: an access policy of this rule, not a filter.
                let name = format!(
                    "HTTPRoute/{}/{}/rules[{i}]/externalAuth",
                    view.ns, view.name
                );
                let entry = work.external_auth(f, &format!("{field}.filters[{j}]"), view);
                rule.policy_mut().access.push(name.clone());
                conv.access.push((name, entry));
                continue;
            }
            if let Some(f) = work.filter(f, &format!("{field}.filters[{j}]")) {
                filters.push(f);
            }
        }
        rule.filters = filters.into_boxed_slice();
        if let Some(t) = &r.timeouts {
            match duration_of(t.request.as_deref()) {
                Ok(d) => rule.timeouts.request = d,
                Err(e) => work.problems.push((format!("{field}.timeouts.request"), e)),
            }
            match duration_of(t.backend_request.as_deref()) {
                Ok(d) => rule.timeouts.backend_request = d,
                Err(e) => work
                    .problems
                    .push((format!("{field}.timeouts.backendRequest"), e)),
            }
            // GEP-1742: backendRequest must not exceed request (zero disables either).
            if let Some((request, backend)) =
                rule.timeouts.request.zip(rule.timeouts.backend_request)
                && backend > request
            {
                work.problems.push((
                    format!("{field}.timeouts.backendRequest"),
                    format!("must not be longer than timeouts.request ({backend:?} > {request:?})"),
                ));
            }
        }
        if let Some(retry) = &r.retry {
            match route_retry(retry, &format!("{field}.retry")) {
                Ok(p) => rule.policy_mut().retry = Some(p),
                Err(problems) => work.problems.extend(problems),
            }
        }
        // Deprecated in Gateway API v1.7 in favour of XBackendTrafficPolicy; still read.
        if let Some(s) = &r.session_persistence {
            match route_rule_session(s, &field) {
                Ok(s) => rule.policy_mut().session = Some(s),
                Err(problems) => work.problems.extend(problems),
            }
        }
        for (j, b) in r.backend_refs.iter().flatten().enumerate() {
            let spec = RefSpec {
                group: b.group.as_deref(),
                kind: b.kind.as_deref(),
                name: &b.name,
                namespace: b.namespace.as_deref(),
                port: b.port,
            };
            let bfield = format!("{field}.backendRefs[{j}]");
            backend_ref(
                &mut work,
                &mut rule,
                &spec,
                b.weight,
                b.filters.as_deref(),
                &bfield,
            );
        }
        finish_rule(&mut conv, view, rule, work);
    }
    conv.all_dropped = !rules.is_empty() && conv.dropped.len() == rules.len();
    conv
}

/// HTTPRoute `retry` (GEP-1731) as a core retry policy (mapping in the
/// [`translate`](super) module docs). `field` is `spec.rules[i].retry`.
fn route_retry(r: &HttpRouteRulesRetry, field: &str) -> Result<RetryPolicy, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let attempts = match r.attempts {
        None => DEFAULT_RETRY_ATTEMPTS,
        Some(a) => u32::try_from(a).unwrap_or_else(|_| {
            problems.push((
                format!("{field}.attempts"),
                format!("{a} is not a number of retries (0 or more)"),
            ));
            0
        }),
    };
    let mut statuses = Vec::new();
    for (j, c) in r.codes.iter().flatten().enumerate() {
        match retry_status(*c, &format!("{field}.codes[{j}]")) {
            Ok(s) if !statuses.contains(&s) => statuses.push(s),
            Ok(_) => {}
            Err(e) => problems.push((e.field().to_owned(), e.reason().to_owned())),
        }
    }
    // `codes: []` retries on connection errors only; unset means the gateway-error class.
    let on = connection_and_status_retries(r.codes.as_ref().map(|_| statuses));
    let mut policy = RetryPolicy::new(attempts, on);
    if let Some(b) = &r.backoff {
        match duration::parse(b) {
            Ok(d) => policy = policy.with_backoff(Backoff::new(d)),
            Err(e) => problems.push((format!("{field}.backoff"), e.to_string())),
        }
    }
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(problems)
    }
}

/// Adds one backendRef (of an HTTPRoute or a GRPCRoute: their filters share the HTTP
/// filter schema) to `rule`.
fn backend_ref<F: Serialize>(
    work: &mut RuleWork<'_, '_>,
    rule: &mut Rule,
    spec: &RefSpec<'_>,
    weight: Option<i32>,
    ref_filters: Option<&[F]>,
    field: &str,
) {
    let mut filters = Vec::new();
    for (k, f) in ref_filters.unwrap_or_default().iter().enumerate() {
        let ffield = format!("{field}.filters[{k}]");
        match as_http_filter(f) {
            Ok(f) => filters.extend(work.filter(&f, &ffield)),
            Err(e) => work.problems.push((ffield, e)),
        }
    }
    let weight = match u32::try_from(weight.unwrap_or(1)) {
        Ok(w) => w,
        Err(_) => {
            work.problems
                .push((format!("{field}.weight"), "must not be negative".to_owned()));
            0
        }
    };
    let (name, policy, x) = work.resolve(spec, field);
    let mut b = BackendRef::new(name, weight);
    b.filters = filters.into_boxed_slice();
    if let Some(x) = x {
        b.session = x.session.clone().map(Box::new);
        b.retry_budget = x.retry_budget.map(Box::new);
    }
    if let Some(p) = policy {
        b.breaker = p.circuit_breaker_config().map(Box::new);
        // Attached policies were validated (`attach_policies`); a BackendPolicy's
        // budget wins over an XBackendTrafficPolicy's.
        if let Some(budget) = p.retry_budget_config().ok().flatten() {
            b.retry_budget = Some(Box::new(budget));
        }
    }
    rule.backends.push(b);
}

fn convert_grpc(cx: &Context<'_>, view: &RouteView<'_>, route: &GrpcRoute) -> Converted {
    let mut conv = new_converted();
    let rules = route.spec.rules.as_deref().unwrap_or(&[]);
    for (i, r) in rules.iter().enumerate() {
        let field = format!("spec.rules[{i}]");
        let mut work = RuleWork {
            cx,
            view_kind: view.kind,
            ns: view.ns,
            grpc: true,
            wanted: Vec::new(),
            services: Vec::new(),
            unresolved: Vec::new(),
            problems: Vec::new(),
        };
        let mut rule = Rule::default();
        rule.name = r.name.clone();
        for (j, m) in r.matches.iter().flatten().enumerate() {
            let mut out = Match::default();
            if let Some(method) = &m.method {
                let regex = matches!(
                    method.r#type,
                    Some(GrpcRouteRulesMatchesMethodType::RegularExpression)
                );
                match grpc_path(method.service.as_deref(), method.method.as_deref(), regex) {
                    Ok(p) => out.path = p,
                    Err(e) => work
                        .problems
                        .push((format!("{field}.matches[{j}].method"), e)),
                }
            }
            out.headers = (m.headers.iter().flatten())
                .map(|h| HeaderMatch {
                    name: h.name.clone(),
                    value: match h.r#type {
                        Some(gateway_api::grpcroutes::GrpcRouteRulesMatchesHeadersType::RegularExpression) => {
                            StringMatch::Regex(h.value.clone())
                        }
                        _ => StringMatch::Exact(h.value.clone()),
                    },
                })
                .collect();
            rule.matches.push(out);
        }
        let mut filters = Vec::new();
        for (j, f) in r.filters.iter().flatten().enumerate() {
            let ffield = format!("{field}.filters[{j}]");
            match as_http_filter(f) {
                Ok(f) => filters.extend(work.filter(&f, &ffield)),
                Err(e) => work.problems.push((ffield, e)),
            }
        }
        rule.filters = filters.into_boxed_slice();
        for (j, b) in r.backend_refs.iter().flatten().enumerate() {
            let spec = RefSpec {
                group: b.group.as_deref(),
                kind: b.kind.as_deref(),
                name: &b.name,
                namespace: b.namespace.as_deref(),
                port: b.port,
            };
            let bfield = format!("{field}.backendRefs[{j}]");
            backend_ref(
                &mut work,
                &mut rule,
                &spec,
                b.weight,
                b.filters.as_deref(),
                &bfield,
            );
        }
        finish_rule(&mut conv, view, rule, work);
    }
    conv.all_dropped = !rules.is_empty() && conv.dropped.len() == rules.len();
    conv
}

/// The core path match for a GRPCRoute method match.
fn grpc_path(
    service: Option<&str>,
    method: Option<&str>,
    regex: bool,
) -> Result<Option<PathMatch>, String> {
    let service = service.filter(|s| !s.is_empty());
    let method = method.filter(|s| !s.is_empty());
    Ok(match (service, method, regex) {
        (None, None, _) => None,
        (Some(s), Some(m), false) => Some(PathMatch::Exact(format!("/{s}/{m}"))),
        (Some(s), None, false) => Some(PathMatch::Prefix(format!("/{s}"))),
        (None, Some(m), false) => Some(PathMatch::Regex(format!("/[^/]+/{}", regex::escape(m)))),
        (s, m, true) => Some(PathMatch::Regex(format!(
            "/(?:{})/(?:{})",
            s.unwrap_or("[^/]+"),
            m.unwrap_or("[^/]+")
        ))),
    })
}
