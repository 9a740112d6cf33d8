//! The incremental translator: [`translate`](super::translate)'s result, recomputed
//! only where a change reaches.
//!
//! A translation is a *frame* (GatewayClasses, policies, listeners: passes 1 and 2 and
//! the Gateway addresses), one [`RoutePiece`] per route (its per-listener `Arc<Route>`s,
//! status, errors, the listeners it counts in `attachedRoutes`, the upstreams it
//! uses) and the upstreams, put together by [`assemble`]. The pure `translate` builds
//! all of them every time; a [`Translator`] keeps the pieces and the upstreams between
//! calls and, told which objects changed, rebuilds only the pieces of the routes that
//! changed or whose referenced Services changed, and only the upstreams whose Service,
//! EndpointSlices or users changed. Everything else keeps its `Arc` (identity is the
//! contract with the apply stage). Any change that could reach the frame translates
//! everything again.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use gatekit_core::ConfigError;
use gatekit_core::chunked::Chunked;
use gatekit_core::route::{FastMap, Route, shrink_if_sparse};

use super::backend::{Context, PolicyMaps, name_of, ns_of};
use super::listener::{self, Listener};
use super::route::{self, ListenerKey, RoutePiece};
use super::small_set::SmallSet;
use super::stream::{self, StreamPiece};
use super::{Changes, Statuses, TranslateOptions, Translation, UpstreamSpec, address};
use crate::manifest::ResourceSet;
use crate::status::{ResourceRef, ResourceStatus};
use crate::types::{CompactEndpointSlice, Object, name_hash};

/// Passes 1 (GatewayClasses, policies): their statuses, in order. The errors stay in
/// `cx.errors`, the attachments in `cx`.
fn policy_pass(cx: &mut Context<'_>, options: &TranslateOptions) -> Vec<ResourceStatus> {
    let mut statuses = Vec::new();
    listener::gateway_classes(cx.resources, options, &mut statuses);
    cx.attach_policies(&mut statuses);
    cx.attach_backend_tls_policies(&options.gateway_class_name, &mut statuses);
    cx.attach_x_backend_traffic_policies(&mut statuses);
    cx.attach_traffic_policies(&mut statuses);
    cx.attach_backend_traffic_policies(options.shared_rate_limits, &mut statuses);
    cx.attach_access_policies(&mut statuses);
    statuses
}

/// Pass 2: the listeners, the statuses of Gateways and ListenerSets (indexed by the
/// listeners' `status_index`), the problems found. Cheap (it reads Gateways,
/// ListenerSets, Secrets), so every call runs it against its own resources.
struct ListenerPass<'a> {
    listeners: Vec<Listener<'a>>,
    statuses: Vec<ResourceStatus>,
    errors: Vec<ConfigError>,
}

fn listener_pass<'a>(
    cx: &Context<'a>,
    options: &TranslateOptions,
    set_entries: &'a [Vec<crate::types::GatewayListeners>],
) -> ListenerPass<'a> {
    let mut statuses = Vec::new();
    let (mut listeners, mut errors) = listener::listeners(cx, options, set_entries, &mut statuses);
    super::ctp::attach(cx, &mut listeners, &mut statuses, &mut errors);
    ListenerPass {
        listeners,
        statuses,
        errors,
    }
}

/// One upstream: the Service port, who uses it, what was built from it.
struct UpstreamState {
    /// Shared with the routes' uses.
    namespace: Arc<str>,
    service: Arc<str>,
    port: u16,
    /// The Secret of the client certificate its TLS presents (see `backend_tls.rs`).
    client: Option<Box<(String, String)>>,
    /// Uses by attached routes (a route may use it more than once).
    users: u32,
    /// Uses by GRPCRoutes (h2c when the port declares no `appProtocol`).
    grpc_users: u32,
    /// What it was built with: `grpc_users > 0` then.
    built_grpc: bool,
    /// Uses by stream routes (TLSRoute, TCPRoute, UDPRoute): its `appProtocol` does
    /// not matter to them.
    stream_users: u32,
    /// What it was built with: `stream_users == users` then.
    built_stream_only: bool,
    /// A UDP Service port.
    udp: bool,
    /// `None` when the Service or port was gone (never, after `resolve`).
    spec: Option<Arc<UpstreamSpec>>,
    /// Problems with its endpoints: reported before the errors of the first route
    /// that uses it.
    errors: Box<[ConfigError]>,
}

impl UpstreamState {
    fn build(&mut self, cx: &Context<'_>, slices: &[&CompactEndpointSlice]) {
        self.built_grpc = self.grpc_users > 0;
        self.built_stream_only = self.stream_only();
        match cx.upstream(
            &self.namespace,
            &self.service,
            self.port,
            self.built_grpc,
            self.built_stream_only,
            self.udp,
            self.client.as_deref(),
            slices,
        ) {
            Some((spec, errors)) => {
                self.spec = Some(Arc::new(spec));
                self.errors = errors.into_boxed_slice();
            }
            None => {
                self.spec = None;
                self.errors = Box::default();
            }
        }
    }
}

impl UpstreamState {
    /// Whether only stream routes use it.
    fn stream_only(&self) -> bool {
        self.users > 0 && self.stream_users == self.users
    }
}

/// Counts the uses of `pieces` and `stream_pieces` into fresh upstream states (nothing
/// built yet).
fn count_uses<'p>(
    pieces: impl Iterator<Item = &'p RoutePiece>,
    stream_pieces: &[StreamPiece],
) -> BTreeMap<Arc<str>, UpstreamState> {
    let mut out: BTreeMap<Arc<str>, UpstreamState> = BTreeMap::new();
    for piece in pieces {
        add_uses(&mut out, &piece.uses, &mut |_| {});
    }
    for piece in stream_pieces {
        add_uses(&mut out, &piece.uses, &mut |_| {});
    }
    out
}

/// Adds a piece's uses; `touched` hears each upstream name.
fn add_uses(
    states: &mut BTreeMap<Arc<str>, UpstreamState>,
    uses: &[route::Use],
    touched: &mut dyn FnMut(&str),
) {
    for u in uses {
        let state = match states.get_mut(&u.name) {
            Some(s) => s,
            None => states.entry(u.name.clone()).or_insert(UpstreamState {
                namespace: u.wanted.namespace.clone(),
                service: u.wanted.service.clone(),
                port: u.wanted.port,
                client: u.wanted.client.clone(),
                users: 0,
                grpc_users: 0,
                built_grpc: false,
                stream_users: 0,
                built_stream_only: false,
                udp: u.wanted.udp,
                spec: None,
                errors: Box::default(),
            }),
        };
        state.users += 1;
        state.grpc_users += u32::from(u.wanted.grpc);
        state.stream_users += u32::from(u.wanted.stream);
        touched(&u.name);
    }
}

/// Takes away a piece's uses; `touched` hears each upstream name.
fn remove_uses(
    states: &mut BTreeMap<Arc<str>, UpstreamState>,
    uses: &[route::Use],
    touched: &mut dyn FnMut(&str),
) {
    for u in uses {
        if let Some(state) = states.get_mut(&u.name) {
            state.users = state.users.saturating_sub(1);
            state.grpc_users = state.grpc_users.saturating_sub(u32::from(u.wanted.grpc));
            state.stream_users = state
                .stream_users
                .saturating_sub(u32::from(u.wanted.stream));
        }
        touched(&u.name);
    }
}

/// What the route pieces contribute to a translation, in route order: each
/// listener's routes, the `attachedRoutes` counts, the route statuses, and which pieces
/// have errors or access policies of their own. A full translation makes it from every
/// piece; an incremental one takes a changed piece out and puts its new version in,
/// at the cost of the change: the lists are [`Chunked`], so the translation shares
/// every chunk no changed route is in with the previous one.
#[derive(Default)]
struct Assembled {
    lists: BTreeMap<ListenerKey, Chunked<Arc<Route>>>,
    counts: BTreeMap<ListenerKey, u32>,
    statuses: Chunked<Arc<ResourceStatus>>,
    with_errors: BTreeSet<RouteKey>,
    with_access: BTreeSet<RouteKey>,
}

/// The route key a route's id stands for: GRPCRoute ids are `grpc:<name>` (see
/// `route::route_id`). Unambiguous while no HTTPRoute's name starts with `grpc:` (the
/// [`Translator`] translates everything then).
fn route_order(route: &Route) -> (u8, &str, &str) {
    let id = &route.id;
    match id.name().strip_prefix("grpc:") {
        Some(name) => (1, id.namespace(), name),
        None => (0, id.namespace(), id.name()),
    }
}

/// The route key a route status is for.
fn status_order(status: &ResourceStatus) -> (u8, &str, &str) {
    let r = status.resource();
    let kind = u8::from(r.kind() == "GRPCRoute");
    (kind, r.namespace().unwrap_or_default(), r.name())
}

fn key_ref(key: &RouteKey) -> (u8, &str, &str) {
    (key.0, &key.1, &key.2)
}

impl Assembled {
    /// From every piece, in route order.
    fn of<'p>(pieces: impl Iterator<Item = &'p RoutePiece>) -> Self {
        let mut lists: BTreeMap<ListenerKey, Vec<Arc<Route>>> = BTreeMap::new();
        let mut counts: BTreeMap<ListenerKey, u32> = BTreeMap::new();
        let mut statuses = Vec::new();
        let mut with_errors = BTreeSet::new();
        let mut with_access = BTreeSet::new();
        for piece in pieces {
            for (listener, route) in &piece.routes {
                lists.entry(*listener).or_default().push(route.clone());
            }
            for listener in piece.counted() {
                *counts.entry(*listener).or_default() += 1;
            }
            statuses.push(piece.status.clone());
            if !piece.errors().is_empty() {
                with_errors.insert(piece.key());
            }
            if !piece.access().is_empty() {
                with_access.insert(piece.key());
            }
        }
        Self {
            lists: lists
                .into_iter()
                .map(|(l, routes)| (l, routes.into_iter().collect()))
                .collect(),
            counts,
            statuses: statuses.into_iter().collect(),
            with_errors,
            with_access,
        }
    }

    /// Takes `piece` (of the route `key`) out.
    fn remove(&mut self, key: &RouteKey, piece: &RoutePiece) {
        let at = key_ref(key);
        for (listener, _) in &piece.routes {
            if let Some(list) = self.lists.get_mut(listener) {
                list.remove_sorted(|r| route_order(r).cmp(&at));
                if list.is_empty() {
                    self.lists.remove(listener);
                }
            }
        }
        for listener in piece.counted() {
            if let Some(n) = self.counts.get_mut(listener) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(listener);
                }
            }
        }
        self.statuses.remove_sorted(|s| status_order(s).cmp(&at));
        self.with_errors.remove(key);
        self.with_access.remove(key);
    }

    /// Puts `piece` (of the route `key`) in.
    fn add(&mut self, key: &RouteKey, piece: &RoutePiece) {
        let at = key_ref(key);
        for (listener, route) in &piece.routes {
            self.lists
                .entry(*listener)
                .or_default()
                .insert_sorted(|r| route_order(r).cmp(&at), route.clone());
        }
        for listener in piece.counted() {
            *self.counts.entry(*listener).or_default() += 1;
        }
        self.statuses
            .insert_sorted(|s| status_order(s).cmp(&at), piece.status.clone());
        if !piece.errors().is_empty() {
            self.with_errors.insert(key.clone());
        }
        if !piece.access().is_empty() {
            self.with_access.insert(key.clone());
        }
    }
}

/// Puts a translation together from its frame, its route pieces (assembled in
/// `parts`; `walk`: in route order, at least the pieces with errors or access
/// policies, and every piece while an upstream has errors: the first piece using one
/// reports them) and its upstreams.
#[allow(clippy::too_many_arguments)]
fn assemble<'p>(
    resources: &ResourceSet,
    options: &TranslateOptions,
    prefix_statuses: &[Arc<ResourceStatus>],
    prefix_errors: &[ConfigError],
    pass: ListenerPass<'_>,
    parts: &Assembled,
    walk: impl Iterator<Item = &'p RoutePiece>,
    stream_pieces: &[StreamPiece],
    upstreams: Arc<BTreeMap<String, Arc<UpstreamSpec>>>,
    upstream_errors: &HashMap<&str, &[ConfigError]>,
    global_rate_limits: BTreeSet<String>,
    access: Arc<BTreeMap<String, super::AccessEntry>>,
) -> Translation {
    let ListenerPass {
        listeners,
        statuses: mut listener_statuses,
        errors: listener_errors,
    } = pass;
    let mut errors = Vec::with_capacity(prefix_errors.len() + listener_errors.len());
    errors.extend_from_slice(prefix_errors);
    errors.extend(listener_errors);
    let mut access = access;
    let mut counts = parts.counts.clone();
    let mut reported: HashSet<&str> = HashSet::new();
    for piece in walk {
        if !piece.access().is_empty() {
            let map = Arc::make_mut(&mut access);
            for (name, entry) in piece.access() {
                map.insert(name.clone(), entry.clone());
            }
        }
        if !upstream_errors.is_empty() {
            for u in &piece.uses {
                if let Some(e) = upstream_errors.get(&*u.name)
                    && reported.insert(&*u.name)
                {
                    errors.extend_from_slice(e);
                }
            }
        }
        errors.extend_from_slice(piece.errors());
    }
    let mut stream_statuses = Vec::with_capacity(stream_pieces.len());
    for piece in stream_pieces {
        for listener in &piece.counted {
            *counts.entry(*listener).or_default() += 1;
        }
        if !upstream_errors.is_empty() {
            for u in &piece.uses {
                if let Some(e) = upstream_errors.get(&*u.name)
                    && reported.insert(&*u.name)
                {
                    errors.extend_from_slice(e);
                }
            }
        }
        errors.extend_from_slice(&piece.errors);
        stream_statuses.push(piece.status.clone());
    }
    for ((status, listener), n) in counts {
        if let Some(l) = listener_statuses
            .get_mut(status)
            .and_then(|s| s.listeners_mut().get_mut(listener))
        {
            for _ in 0..n {
                l.add_attached();
            }
        }
    }
    address::gateway_addresses(resources, options, &mut listener_statuses);
    let mut head = Vec::with_capacity(prefix_statuses.len() + listener_statuses.len());
    head.extend_from_slice(prefix_statuses);
    head.extend(listener_statuses.into_iter().map(Arc::new));
    Translation {
        listeners: listener::finish(
            listeners,
            parts.lists.clone(),
            stream::by_listener(stream_pieces.iter()),
        ),
        upstreams,
        statuses: Statuses::new(head, parts.statuses.clone(), stream_statuses),
        errors,
        global_rate_limits,
        access,
        changes: None,
    }
}

/// The upstream errors of `states`, by name, for [`assemble`].
fn errors_of(states: &BTreeMap<Arc<str>, UpstreamState>) -> HashMap<&str, &[ConfigError]> {
    states
        .iter()
        .filter(|(_, s)| !s.errors.is_empty())
        .map(|(n, s)| (&**n, &s.errors[..]))
        .collect()
}

/// The names of the upstreams of `states` whose endpoints have problems.
fn erroring(states: &BTreeMap<Arc<str>, UpstreamState>) -> BTreeSet<String> {
    errors_of(states).into_keys().map(str::to_owned).collect()
}

/// Everything a full translation computes, before assembly.
struct Full {
    prefix_statuses: Vec<Arc<ResourceStatus>>,
    prefix_errors: Vec<ConfigError>,
    policy: PolicyMaps,
    global_rate_limits: BTreeSet<String>,
    access: Arc<BTreeMap<String, super::AccessEntry>>,
    pieces: Vec<RoutePiece>,
    stream_pieces: Vec<StreamPiece>,
    upstreams: BTreeMap<Arc<str>, UpstreamState>,
}

/// Runs every pass; `finish` gets the pieces and the listener pass to assemble with.
fn full<R>(
    resources: &ResourceSet,
    options: &TranslateOptions,
    finish: impl FnOnce(Full, ListenerPass<'_>) -> R,
) -> R {
    let mut cx = Context::new(resources, &options.global_namespaces);
    let prefix: Vec<Arc<ResourceStatus>> = policy_pass(&mut cx, options)
        .into_iter()
        .map(Arc::new)
        .collect();
    let set_entries = listener::listener_set_entries(resources);
    let pass = listener_pass(&cx, options, &set_entries);
    let pieces = route::attach_routes(&cx, &pass.listeners, &pass.statuses);
    let stream_pieces = stream::attach_stream_routes(&cx, &pass.listeners, &pass.statuses);
    let mut upstreams = count_uses(pieces.iter(), &stream_pieces);
    add_uses(&mut upstreams, &cx.access.uses, &mut |_| {});
    let access = cx.access.entries.clone();
    for state in upstreams.values_mut() {
        let slices = cx.slices_of(&state.namespace, &state.service).to_vec();
        state.build(&cx, &slices);
    }
    let full = Full {
        prefix_statuses: prefix,
        prefix_errors: std::mem::take(&mut cx.errors),
        policy: cx.take_policy_maps(),
        global_rate_limits: std::mem::take(&mut cx.global_rate_limits),
        access,
        pieces,
        stream_pieces,
        upstreams,
    };
    finish(full, pass)
}

/// The upstream specs of `states`, by name.
fn spec_map(states: &BTreeMap<Arc<str>, UpstreamState>) -> BTreeMap<String, Arc<UpstreamSpec>> {
    states
        .iter()
        .filter_map(|(n, s)| Some((n.to_string(), s.spec.clone()?)))
        .collect()
}

/// [`translate`](super::translate): everything, from scratch.
pub(crate) fn translate_full(resources: &ResourceSet, options: &TranslateOptions) -> Translation {
    full(resources, options, |f, pass| {
        let upstreams = Arc::new(spec_map(&f.upstreams));
        let parts = Assembled::of(f.pieces.iter());
        assemble_full(resources, options, &f, pass, &parts, upstreams)
    })
}

/// The translation of a [`full`] pass, with `parts` (its pieces assembled) and
/// `upstreams` (its upstreams' specs).
fn assemble_full(
    resources: &ResourceSet,
    options: &TranslateOptions,
    f: &Full,
    pass: ListenerPass<'_>,
    parts: &Assembled,
    upstreams: Arc<BTreeMap<String, Arc<UpstreamSpec>>>,
) -> Translation {
    assemble(
        resources,
        options,
        &f.prefix_statuses,
        &f.prefix_errors,
        pass,
        parts,
        f.pieces.iter(),
        &f.stream_pieces,
        upstreams,
        &errors_of(&f.upstreams),
        f.global_rate_limits.clone(),
        f.access.clone(),
    )
}

impl ResourceRef {
    /// Names an object of a kind a [`ResourceSet`] holds (as manifests spell it:
    /// `HTTPRoute`, `Service`, `EndpointSlice`, ...), for example to tell a
    /// [`Translator`] what changed; `None` for any other kind.
    pub fn of_kind(kind: &str, namespace: Option<&str>, name: &str) -> Option<Self> {
        macro_rules! known {
            ($field:ident, $kind:literal) => {
                if kind == $kind {
                    return Some(Self::new($kind, namespace, name));
                }
            };
        }
        crate::for_each_resource_kind!(known);
        None
    }
}

/// Route sort key: 0 for HTTPRoutes, 1 for GRPCRoutes; namespace; name (the names
/// the route's status and id share).
type RouteKey = (u8, Arc<str>, Arc<str>);
/// A namespaced object: (namespace, name), its names shared with the routes' uses
/// and statuses (an index entry costs no allocation of its own).
type Named = (Arc<str>, Arc<str>);

/// A route key as compared: a [`RouteKey`], or the names of a route's status (see
/// [`Keyed`] and [`RouteRef`], which are ordered by it without keeping a key).
trait KeyView {
    fn view(&self) -> (u8, &str, &str);
}

impl KeyView for RouteKey {
    fn view(&self) -> (u8, &str, &str) {
        key_ref(self)
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for dyn KeyView + '_ {}

impl PartialOrd for dyn KeyView + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn KeyView + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.view().cmp(&other.view())
    }
}

/// Ordered by [`KeyView`], found by any key view (a [`RouteKey`] as
/// `&dyn KeyView`).
macro_rules! ordered_by_key {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.view() == other.view()
            }
        }

        impl Eq for $t {}

        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $t {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.view().cmp(&other.view())
            }
        }

        impl<'a> Borrow<dyn KeyView + 'a> for $t {
            fn borrow(&self) -> &(dyn KeyView + 'a) {
                self
            }
        }
    };
}

/// A route's piece as the translator keeps it: in a set ordered by the route's key,
/// read from the piece's status (the names are not kept a second time as a map key).
struct Keyed(RoutePiece);

impl KeyView for Keyed {
    fn view(&self) -> (u8, &str, &str) {
        status_order(&self.0.status)
    }
}

ordered_by_key!(Keyed);

/// A route as the Service index names it: its status (one pointer, shared with its
/// piece and the translation), ordered by the route's key.
#[derive(Clone)]
struct RouteRef(Arc<ResourceStatus>);

impl RouteRef {
    /// The route's key (see [`RoutePiece::key`]).
    fn key(&self) -> RouteKey {
        let r = self.0.resource();
        (
            u8::from(r.kind() == "GRPCRoute"),
            r.namespace_arc().cloned().unwrap_or_else(|| Arc::from("")),
            r.name_arc().clone(),
        )
    }
}

impl KeyView for RouteRef {
    fn view(&self) -> (u8, &str, &str) {
        status_order(&self.0)
    }
}

ordered_by_key!(RouteRef);

/// Service -> the routes naming it.
type ServiceIndex = FastMap<Named, SmallSet<RouteRef>>;

/// Adds `route` to the routes naming `svc`.
fn index(services: &mut ServiceIndex, svc: (&Arc<str>, &Arc<str>), route: RouteRef) {
    let key = (svc.0.clone(), svc.1.clone());
    services.entry(key).or_default().insert(route);
}

/// Takes `route` out of the routes naming `svc`; a Service left with none goes.
fn unindex(services: &mut ServiceIndex, svc: (&Arc<str>, &Arc<str>), route: &RouteKey) {
    let key = (svc.0.clone(), svc.1.clone());
    if let Some(routes) = services.get_mut(&key) {
        routes.remove(route as &dyn KeyView);
        if routes.is_empty() {
            services.remove(&key);
        }
    }
}

/// The upstreams built from Service `svc`, by name: their names start with
/// `"<namespace>/<service>:"` (see [`backend_name`](super::backend_name) and the UDP and
/// client-certificate forms), and their entries name the Service.
fn upstreams_of<'u>(
    upstreams: &'u BTreeMap<Arc<str>, UpstreamState>,
    svc: &Named,
) -> impl Iterator<Item = &'u Arc<str>> {
    let prefix = format!("{}/{}:", svc.0, svc.1);
    upstreams
        .range::<str, _>((
            std::ops::Bound::Included(prefix.as_str()),
            std::ops::Bound::Unbounded,
        ))
        .take_while(move |(name, _)| name.starts_with(prefix.as_str()))
        .filter(|(_, u)| u.namespace == svc.0 && u.service == svc.1)
        .map(|(name, _)| name)
}

/// What a [`Translator`] keeps between calls.
struct State {
    prefix_statuses: Vec<Arc<ResourceStatus>>,
    prefix_errors: Vec<ConfigError>,
    policy: PolicyMaps,
    global_rate_limits: BTreeSet<String>,
    /// Routes and Services a policy targets (kind, namespace, name): their change
    /// can change a policy's status or attachment, so it translates everything.
    policy_targets: HashSet<(String, String, String)>,
    /// A BackendTrafficPolicy exists: its targets follow routes (selectors, the
    /// Services a Gateway's routes reach), so any route or Service change translates
    /// everything.
    any_btp: bool,
    /// A BackendTLSPolicy or a Gateway client certificate exists: its ancestors follow
    /// routes, and the upstream names of routes follow their Gateways' certificates,
    /// so any route or Service change translates everything.
    any_btls: bool,
    /// A SecurityPolicy or SecurityOverride exists: its targets follow routes
    /// (selectors, rule names) and its backendRefs are upstreams, so any route or
    /// Service change translates everything.
    any_access: bool,
    /// The route pieces, in route order.
    pieces: BTreeSet<Keyed>,
    /// What `pieces` contribute, kept up to date with them.
    parts: Assembled,
    /// The stream routes' pieces: part of the frame (see `stream.rs`), kept as they
    /// are by every incremental call.
    stream_pieces: Vec<StreamPiece>,
    /// The Services stream routes name: their change translates everything.
    stream_services: HashSet<Named>,
    /// Service -> the routes naming it. (Its upstreams are found by name in
    /// `upstreams`, see [`upstreams_of`]; its slices by their label in the resources.)
    services: ServiceIndex,
    /// EndpointSlice -> its Service (the `kubernetes.io/service-name` label): the
    /// Service to build again when the slice goes or changes Service.
    slice_service: FastMap<Named, Arc<str>>,
    upstreams: BTreeMap<Arc<str>, UpstreamState>,
    /// The names of the upstreams whose endpoints have problems.
    erroring: BTreeSet<String>,
    /// The specs of `upstreams`, as the last translation has them.
    specs: Arc<BTreeMap<String, Arc<UpstreamSpec>>>,
    /// The map of the translation before, reused for the next one once that
    /// translation is dropped (double buffering: no copy of every name per change).
    spare: Option<Arc<BTreeMap<String, Arc<UpstreamSpec>>>>,
    /// The upstream names `spare` is behind on.
    spare_lag: BTreeSet<String>,
}

/// Stateful, incremental [`translate`](super::translate).
///
/// Each call's result equals `translate(resources, options)`; routes and upstreams
/// that the change did not reach are the same `Arc`s as in the previous result. A
/// change of any kind other than HTTPRoute, GRPCRoute, Service and EndpointSlice, of a
/// route or Service a policy targets, of the gateway's own Service, or any route or
/// Service change while an Envoy Gateway BackendTrafficPolicy, a BackendTLSPolicy or a
/// Gateway backend client certificate exists, translates everything (as does
/// `changed: None`).
pub struct Translator {
    options: TranslateOptions,
    state: Option<State>,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translator")
            .field("options", &self.options)
            .field("routes", &self.state.as_ref().map(|s| s.pieces.len()))
            .finish_non_exhaustive()
    }
}

impl Translator {
    /// A translator with no previous translation: its first call translates
    /// everything.
    pub fn new(options: TranslateOptions) -> Self {
        Self {
            options,
            state: None,
        }
    }

    /// The options it translates with.
    pub fn options(&self) -> &TranslateOptions {
        &self.options
    }

    /// Translates `resources`. `changed` names every object (kind as in manifests,
    /// namespace, name) added, removed or modified since the previous call's
    /// resources; `None` means unknown (everything is translated again).
    ///
    /// Returns an `Arc` because the result is shared as it is (the apply stage, the
    /// status writer, `/config`): building a `Translation` out of kept parts costs
    /// pointer copies, cloning one would cost much more.
    pub fn translate(
        &mut self,
        resources: &ResourceSet,
        changed: Option<&BTreeSet<ResourceRef>>,
    ) -> Arc<Translation> {
        if let Some(changed) = changed
            && let Some(t) = self.incremental(resources, changed)
        {
            return t;
        }
        self.full(resources)
    }

    fn full(&mut self, resources: &ResourceSet) -> Arc<Translation> {
        let options = &self.options;
        let (translation, state) = full(resources, options, |f, pass| {
            let specs = Arc::new(spec_map(&f.upstreams));
            let parts = Assembled::of(f.pieces.iter());
            let translation = assemble_full(resources, options, &f, pass, &parts, specs.clone());
            (translation, State::new(resources, options, f, specs, parts))
        });
        self.state = state;
        Arc::new(translation)
    }

    /// The translation after `changed`, or `None` when it needs a full one.
    fn incremental(
        &mut self,
        resources: &ResourceSet,
        changed: &BTreeSet<ResourceRef>,
    ) -> Option<Arc<Translation>> {
        let options = &self.options;
        let state = self.state.as_mut()?;
        let mut routes: BTreeSet<RouteKey> = BTreeSet::new();
        let mut services: Vec<Named> = Vec::new();
        let mut slices: Vec<Named> = Vec::new();
        for r in changed {
            let ns = r
                .namespace_arc()
                .cloned()
                .unwrap_or_else(|| Arc::from("default"));
            let named: Named = (ns, r.name_arc().clone());
            match r.kind() {
                "HTTPRoute" | "GRPCRoute" | "Service"
                    if state.any_btp || state.any_btls || state.any_access =>
                {
                    return None;
                }
                "HTTPRoute" | "GRPCRoute" | "Service"
                    if state.policy_targets.contains(&(
                        r.kind().to_owned(),
                        named.0.to_string(),
                        named.1.to_string(),
                    )) =>
                {
                    return None;
                }
                "Service"
                    if options
                        .gateway_service
                        .as_ref()
                        .is_some_and(|(n, s)| (&**n, &**s) == (&*named.0, &*named.1)) =>
                {
                    return None;
                }
                // Stream routes are part of the frame (see `stream.rs`).
                "Service" if state.stream_services.contains(&named) => return None,
                // Its routes' ids would read as a GRPCRoute's (see `route_order`).
                "HTTPRoute" if named.1.starts_with("grpc:") => return None,
                "HTTPRoute" => {
                    routes.insert((0, named.0, named.1));
                }
                "GRPCRoute" => {
                    routes.insert((1, named.0, named.1));
                }
                "Service" => services.push(named),
                "EndpointSlice" => slices.push(named),
                _ => return None,
            }
        }

        // The Services whose upstreams are built again: changed ones, and those whose
        // EndpointSlices changed (before and after the change).
        let mut rebuilt: BTreeSet<Named> = services.iter().cloned().collect();
        let found = find_named(&resources.endpoint_slices, &slices);
        for (key, slice) in slices.into_iter().zip(found) {
            if let Some(old) = state.slice_service.remove(&key) {
                rebuilt.insert((key.0.clone(), old));
            }
            if let Some((_, slice)) = slice
                && let Some(label) = slice.service()
            {
                let svc: Named = (key.0.clone(), Arc::from(label));
                // (The names the index already has, when it has the Service; the
                // slice's own name.)
                let svc = match state.services.get_key_value(&svc) {
                    Some((shared, _)) => shared.clone(),
                    None => svc,
                };
                let key = (svc.0.clone(), slice.name_arc().clone());
                state.slice_service.insert(key, svc.1.clone());
                rebuilt.insert(svc);
            }
        }
        // Routes to convert again: changed ones, and those naming a changed Service.
        for s in &services {
            if let Some(naming) = state.services.get(s) {
                routes.extend(naming.iter().map(RouteRef::key));
            }
        }

        let mut cx = Context::partial(resources, &options.global_namespaces);
        cx.restore_policy_maps(std::mem::take(&mut state.policy));
        let set_entries = listener::listener_set_entries(resources);
        let pass = listener_pass(&cx, options, &set_entries);

        let named = |kind: u8| -> (Vec<RouteKey>, Vec<Named>) {
            routes
                .iter()
                .filter(|k| k.0 == kind)
                .map(|k| (k.clone(), (k.1.clone(), k.2.clone())))
                .unzip()
        };
        let (http_keys, http) = named(0);
        let (grpc_keys, grpc) = named(1);
        let http_found = find_named(&resources.http_routes, &http);
        let grpc_found = find_named(&resources.grpc_routes, &grpc);
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut touch = |name: &str| {
            if !touched.contains(name) {
                touched.insert(name.to_owned());
            }
        };
        let new_pieces = http_keys
            .into_iter()
            .zip(http_found)
            .map(|(key, r)| {
                let piece =
                    r.map(|(_, r)| route::http_piece(&cx, &pass.listeners, &pass.statuses, r));
                (key, piece)
            })
            .chain(grpc_keys.into_iter().zip(grpc_found).map(|(key, r)| {
                let piece =
                    r.map(|(_, r)| route::grpc_piece(&cx, &pass.listeners, &pass.statuses, r));
                (key, piece)
            }));
        // What this call changes, for the apply stage: the routes of the pieces built
        // again and the listeners they were or are on.
        let mut changes = Changes::default();
        let mut touched_listeners: BTreeSet<ListenerKey> = BTreeSet::new();
        for (key, piece) in new_pieces {
            changes
                .route_ids
                .insert(route::route_id(key.0, &key.1, &key.2));
            if let Some(p) = &piece {
                touched_listeners.extend(p.routes.iter().map(|(l, _)| *l));
                changes
                    .routes
                    .extend(p.routes.iter().map(|(_, r)| r.clone()));
            }
            if let Some(Keyed(old)) = state.pieces.take(&key as &dyn KeyView) {
                state.parts.remove(&key, &old);
                touched_listeners.extend(old.routes.iter().map(|(l, _)| *l));
                remove_uses(&mut state.upstreams, &old.uses, &mut touch);
                for s in old.services() {
                    unindex(&mut state.services, s, &key);
                }
            }
            if let Some(piece) = piece {
                // (The same key, in the names the piece's status and id share.)
                let key = piece.key();
                state.parts.add(&key, &piece);
                add_uses(&mut state.upstreams, &piece.uses, &mut touch);
                for s in piece.services() {
                    index(&mut state.services, s, RouteRef(piece.status.clone()));
                }
                state.pieces.insert(Keyed(piece));
            }
        }
        changes.ports = pass
            .listeners
            .iter()
            .filter(|l| touched_listeners.contains(&(l.status_index, l.listener_index)))
            .map(|l| l.port)
            .collect();
        for s in &rebuilt {
            touched.extend(upstreams_of(&state.upstreams, s).map(|n| n.to_string()));
        }

        // Upstreams: drop the unused, build the new and those whose Service, slices or
        // protocol changed.
        let mut build: Vec<(Arc<str>, Named)> = Vec::new();
        let mut specs_changed = false;
        for name in &touched {
            let Some((shared, u)) = state.upstreams.get_key_value(name.as_str()) else {
                continue;
            };
            let svc: Named = (u.namespace.clone(), u.service.clone());
            if u.users == 0 {
                if u.spec.is_some() {
                    specs_changed = true;
                    changes.upstreams.insert(name.clone());
                }
                state.upstreams.remove(name.as_str());
                state.erroring.remove(name);
                continue;
            }
            let fresh = u.spec.is_none() && u.errors.is_empty() && !u.built_grpc;
            if fresh
                || rebuilt.contains(&svc)
                || u.built_grpc != (u.grpc_users > 0)
                || u.built_stream_only != u.stream_only()
            {
                build.push((shared.clone(), svc));
            }
        }
        if !build.is_empty() {
            // Each Service's slices (by their label), in resource order as the full
            // index has them; two upstreams of one Service need them once.
            let wanted: BTreeSet<(&str, &str)> =
                build.iter().map(|(_, svc)| (&*svc.0, &*svc.1)).collect();
            let wanted: Vec<(&str, &str)> = wanted.into_iter().collect();
            let by_service = slices_of(&resources.endpoint_slices, &wanted);
            for (name, svc) in &build {
                let Some(u) = state.upstreams.get_mut(&**name) else {
                    continue;
                };
                let slices = wanted
                    .binary_search(&(&*svc.0, &*svc.1))
                    .map_or(&[][..], |i| &by_service[i][..]);
                let before = u.spec.is_some();
                u.build(&cx, slices);
                let name = name.to_string();
                if before || u.spec.is_some() {
                    changes.upstreams.insert(name.clone());
                }
                if u.errors.is_empty() {
                    state.erroring.remove(&name);
                } else {
                    state.erroring.insert(name);
                }
                specs_changed = true;
            }
        }
        if specs_changed {
            // The map of the translation before the last, when nobody holds it any
            // more, brought up to date (its own lag and this change); else a copy of
            // the last one (every name cloned).
            let mut next = match state.spare.take() {
                Some(mut spare) if Arc::strong_count(&spare) == 1 => {
                    let lag = std::mem::take(&mut state.spare_lag);
                    sync_specs(&mut spare, &state.upstreams, lag.iter().chain(&touched));
                    spare
                }
                _ => {
                    let mut copy = Arc::new(BTreeMap::clone(&state.specs));
                    sync_specs(&mut copy, &state.upstreams, touched.iter());
                    copy
                }
            };
            std::mem::swap(&mut next, &mut state.specs);
            // A spare much larger than the current map (many upstreams just went) is
            // dropped rather than kept up to date: its memory goes back, and the next
            // change copies the smaller map.
            if next.len() > 2 * state.specs.len() + 64 {
                state.spare = None;
                state.spare_lag = BTreeSet::new();
            } else {
                state.spare = Some(next);
                state.spare_lag = touched;
            }
        }

        // After many routes went (all of them deleted), the indexes' tables would
        // keep their size.
        shrink_if_sparse(&mut state.services);
        shrink_if_sparse(&mut state.slice_service);

        let access = cx.access.entries.clone();
        state.policy = cx.take_policy_maps();
        let mut translation = assemble(
            resources,
            options,
            &state.prefix_statuses,
            &state.prefix_errors,
            pass,
            &state.parts,
            walk(state),
            &state.stream_pieces,
            state.specs.clone(),
            &state
                .erroring
                .iter()
                .filter_map(|n| Some((n.as_str(), &state.upstreams.get(n.as_str())?.errors[..])))
                .collect(),
            state.global_rate_limits.clone(),
            access,
        );
        translation.changes = Some(Arc::new(changes));
        Some(Arc::new(translation))
    }
}

/// The pieces [`assemble`] must look at, in route order: every piece while an
/// upstream has errors (the first piece using it reports them), else those with errors
/// or access policies of their own.
fn walk(state: &State) -> Box<dyn Iterator<Item = &RoutePiece> + '_> {
    if !state.erroring.is_empty() {
        return Box::new(state.pieces.iter().map(|k| &k.0));
    }
    let keys = state.parts.with_errors.union(&state.parts.with_access);
    Box::new(keys.filter_map(|k| Some(&state.pieces.get(k as &dyn KeyView)?.0)))
}

/// Makes `specs` say what `upstreams` say for `names`. `specs` must be unshared.
fn sync_specs<'n>(
    specs: &mut Arc<BTreeMap<String, Arc<UpstreamSpec>>>,
    upstreams: &BTreeMap<Arc<str>, UpstreamState>,
    names: impl Iterator<Item = &'n String>,
) {
    let Some(specs) = Arc::get_mut(specs) else {
        return;
    };
    for name in names {
        match upstreams.get(name.as_str()).and_then(|u| u.spec.clone()) {
            Some(spec) => match specs.get_mut(name) {
                Some(s) => *s = spec,
                None => {
                    specs.insert(name.clone(), spec);
                }
            },
            None => {
                specs.remove(name);
            }
        }
    }
}

impl State {
    /// The state after a full translation, or `None` when the resources cannot be
    /// followed incrementally (two routes of one kind with the same name).
    fn new(
        resources: &ResourceSet,
        options: &TranslateOptions,
        f: Full,
        specs: Arc<BTreeMap<String, Arc<UpstreamSpec>>>,
        parts: Assembled,
    ) -> Option<Self> {
        let _ = options;
        // Their routes' ids would read as GRPCRoutes' (see `route_order`).
        if resources
            .http_routes
            .iter()
            .any(|r| name_of(&r.metadata).starts_with("grpc:"))
        {
            return None;
        }
        let mut policy_targets = HashSet::new();
        for p in &resources.backend_policies {
            let ns = ns_of(&p.metadata);
            for t in &p.spec.target_refs {
                policy_targets.insert(("Service".to_owned(), ns.to_owned(), t.name.clone()));
            }
        }
        for p in &resources.x_backend_traffic_policies {
            let ns = ns_of(&p.metadata);
            for t in &p.spec.target_refs {
                policy_targets.insert(("Service".to_owned(), ns.to_owned(), t.name.clone()));
            }
        }
        for p in &resources.traffic_policies {
            let ns = ns_of(&p.metadata);
            for t in &p.spec.target_refs {
                policy_targets.insert((t.kind.as_str().to_owned(), ns.to_owned(), t.name.clone()));
            }
        }
        let stream_services: HashSet<Named> = f
            .stream_pieces
            .iter()
            .flat_map(|p| p.services.iter())
            .map(|(ns, name)| (Arc::from(ns.as_str()), Arc::from(name.as_str())))
            .collect();
        let mut services = ServiceIndex::default();
        let mut keyed: Vec<Keyed> = f.pieces.into_iter().map(Keyed).collect();
        // (In key order already; collected, the set's nodes are full.)
        keyed.sort();
        if keyed.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        for Keyed(piece) in &keyed {
            for s in piece.services() {
                index(&mut services, s, RouteRef(piece.status.clone()));
            }
        }
        // (Ordered by the names of their statuses, which nothing changes.)
        #[allow(clippy::mutable_key_type)]
        let pieces: BTreeSet<Keyed> = keyed.into_iter().collect();
        // The slices' namespaces and Services with the names the index has (shared),
        // else new ones.
        let mut shared_ns: HashMap<&str, Arc<str>> = HashMap::new();
        let mut shared_svc: HashMap<(&str, &str), Arc<str>> = HashMap::new();
        for (ns, name) in services.keys() {
            shared_ns.entry(ns).or_insert_with(|| ns.clone());
            shared_svc.insert((ns, name), name.clone());
        }
        let mut slice_service = FastMap::default();
        for s in &resources.endpoint_slices {
            let Some(svc) = s.service() else {
                continue;
            };
            let ns = s.namespace().unwrap_or("default");
            let svc = shared_svc
                .get(&(ns, svc))
                .cloned()
                .unwrap_or_else(|| Arc::from(svc));
            let ns = shared_ns.entry(ns).or_insert_with(|| Arc::from(ns)).clone();
            if slice_service
                .insert((ns, s.name_arc().clone()), svc)
                .is_some()
            {
                return None;
            }
        }
        drop((shared_ns, shared_svc));
        Some(Self {
            erroring: erroring(&f.upstreams),
            prefix_statuses: f.prefix_statuses,
            prefix_errors: f.prefix_errors,
            policy: f.policy,
            global_rate_limits: f.global_rate_limits,
            policy_targets,
            any_btp: !resources.backend_traffic_policies.is_empty(),
            any_access: !resources.security_policies.is_empty()
                || !resources.security_overrides.is_empty(),
            any_btls: !resources.backend_tls_policies.is_empty()
                || resources.gateways.iter().any(|g| {
                    g.spec
                        .tls
                        .as_ref()
                        .and_then(|t| t.backend.as_ref())
                        .is_some_and(|b| b.client_certificate_ref.is_some())
                }),
            pieces,
            parts,
            stream_pieces: f.stream_pieces,
            stream_services,
            services,
            slice_service,
            // Built by inserts in name order, its nodes are half full: collected
            // again, they are full.
            upstreams: f.upstreams.into_iter().collect(),
            specs,
            spare: None,
            spare_lag: BTreeSet::new(),
        })
    }
}

/// The EndpointSlices of each Service of `wanted` (namespace, name; sorted), by
/// their `kubernetes.io/service-name` label, in resource order, index-aligned with
/// `wanted`: one pass, comparing each slice's inline hash of its Service (see
/// [`find_named`]).
fn slices_of<'a>(
    slices: &'a [CompactEndpointSlice],
    wanted: &[(&str, &str)],
) -> Vec<Vec<&'a CompactEndpointSlice>> {
    let mut out = vec![Vec::new(); wanted.len()];
    if wanted.is_empty() {
        return out;
    }
    let hashes = Hashes::of(wanted.iter().map(|(ns, n)| (*ns, *n)));
    for slice in slices {
        if !hashes.may_hold(slice.service_hash()) {
            continue;
        }
        let Some(svc) = slice.service() else {
            continue;
        };
        let key = (slice.namespace().unwrap_or("default"), svc);
        if let Ok(i) = wanted.binary_search(&key) {
            out[i].push(slice);
        }
    }
    out
}

/// The objects of `items` named in `wanted` (namespace, name), with their positions,
/// index-aligned with `wanted`: one pass. An object keeping the hash of its names
/// inline ([`Object::name_hash`]: HTTPRoutes) is passed over on that hash alone: at
/// 10,000 routes, reading every route's name (a pointer each) cost 0.5 ms of a change.
/// Others are compared by name (cheap next to hashing every object).
fn find_named<'a, T: Object>(items: &'a [T], wanted: &[Named]) -> Vec<Option<(usize, &'a T)>> {
    let mut out = vec![None; wanted.len()];
    if wanted.is_empty() {
        return out;
    }
    let hashes = Hashes::of(wanted.iter().map(|(ns, n)| (&**ns, &**n)));
    let candidates = items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.name_hash().is_none_or(|h| hashes.may_hold(h)));
    if wanted.len() <= 16 {
        for (p, item) in candidates {
            let name = item.name().as_bytes();
            for (i, (ns, n)) in wanted.iter().enumerate() {
                // The last byte first: names of thousands of objects often differ
                // there only, and a byte compare is cheaper than a memcmp call. The
                // namespace only for a name that matched.
                let n = n.as_bytes();
                if n.last() == name.last()
                    && n == name
                    && **ns == *item.namespace().unwrap_or("default")
                {
                    out[i] = Some((p, item));
                }
            }
        }
    } else {
        let index: HashMap<(&str, &str), usize> = wanted
            .iter()
            .enumerate()
            .map(|(i, (ns, n))| ((&**ns, &**n), i))
            .collect();
        for (p, item) in candidates {
            let key = (item.namespace().unwrap_or("default"), item.name());
            if let Some(i) = index.get(&key) {
                out[*i] = Some((p, item));
            }
        }
    }
    out
}

/// The [`name_hash`]es of the names a scan looks for, sorted: a test of one is a
/// binary search in a few cache lines.
struct Hashes(Vec<u32>);

impl Hashes {
    fn of<'n>(names: impl Iterator<Item = (&'n str, &'n str)>) -> Self {
        let mut hashes: Vec<u32> = names.map(|(ns, n)| name_hash(ns, n)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        Self(hashes)
    }

    /// Whether an object with this hash may be one of the names (else it is not).
    fn may_hold(&self, hash: u32) -> bool {
        match &self.0[..] {
            [one] => *one == hash,
            all => all.binary_search(&hash).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests;
