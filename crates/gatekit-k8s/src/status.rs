//! Status conditions, as translation computes them.
//!
//! gatekit keeps its own small model ([`Condition`], [`ResourceStatus`]) rather than
//! Kubernetes' `metav1.Condition`: translation is pure (no clock, so no
//! `lastTransitionTime`), and the same values feed `gatekit validate`, the admin API and,
//! in a cluster, the status writer, which adds timestamps when it converts them.
//!
//! Shapes follow the Gateway API status structs:
//!
//! - Gateway: conditions `Accepted` (`Accepted`, `ListenersNotValid`,
//!   `UnsupportedAddress`), `Programmed` (`Programmed`, `Invalid`, `AddressNotAssigned`);
//!   per listener `Accepted` (`UnsupportedProtocol`, `PortUnavailable`), `ResolvedRefs`
//!   (`InvalidRouteKinds`, `InvalidCertificateRef`, `RefNotPermitted`), `Programmed`
//!   (`Invalid`), `Conflicted` (`ProtocolConflict`, `HostnameConflict`, else
//!   `NoConflicts`), the supported route kinds and the number of attached routes.
//!   A Gateway also counts its accepted ListenerSets (`attachedListenerSets`).
//! - ListenerSet (GEP-1713): conditions `Accepted` (`Accepted`, `NotAllowed`,
//!   `ParentNotAccepted`, `ListenersNotValid`) and `Programmed` (`Programmed`,
//!   `NotAllowed`, `ParentNotProgrammed`, `ListenersNotValid`); listeners as a
//!   Gateway's, except that a listener losing a conflict to one of higher precedence
//!   is also `Accepted=False` and `Programmed=False` with the conflict's reason.
//! - HTTPRoute / GRPCRoute: one [`ParentStatus`] per parentRef gatekit handles, with
//!   `Accepted`, `ResolvedRefs` and, when some rules were dropped, `PartiallyInvalid`.
//! - GatewayClass: `Accepted`. BackendPolicy, TrafficPolicy: `Accepted` (GEP-713
//!   reasons: `Accepted`, `Conflicted`, `TargetNotFound`, `Invalid`) for the policy as a
//!   whole, and the same condition per target ([`AncestorStatus`], the policy status's
//!   `ancestors[]`).

use std::fmt;
use std::sync::Arc;

/// Condition types and reasons, spelled as the Gateway API spells them.
pub mod reason {
    /// Condition type: the resource was accepted.
    pub const ACCEPTED: &str = "Accepted";
    /// Condition type: the resource's references resolved.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Condition type: the resource is programmed in the data plane.
    pub const PROGRAMMED: &str = "Programmed";
    /// Condition type: a listener conflicts with another one.
    pub const CONFLICTED: &str = "Conflicted";
    /// Condition type: part of a route was dropped.
    pub const PARTIALLY_INVALID: &str = "PartiallyInvalid";

    /// Reason: listener or route kinds list an unsupported kind.
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    /// Reason: a certificate reference does not resolve to a usable TLS Secret.
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    /// Reason: a cross-namespace reference has no ReferenceGrant.
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    /// Reason: the listener protocol is not supported.
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    /// Reason: the listener port cannot be used.
    pub const PORT_UNAVAILABLE: &str = "PortUnavailable";
    /// Reason: the resource is invalid.
    pub const INVALID: &str = "Invalid";
    /// Reason: no listener conflicts.
    pub const NO_CONFLICTS: &str = "NoConflicts";
    /// Reason: two listeners on one port share a hostname.
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    /// Reason: two listeners on one port use different protocols.
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    /// Reason (Gateway `Accepted`): a requested `spec.addresses` entry is not supported.
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    /// Reason (Gateway `Programmed`): no requested address was assigned.
    pub const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";
    /// Reason (ListenerSet `Accepted`, `Programmed`): the parent Gateway does not allow
    /// the ListenerSet (`spec.allowedListeners`).
    pub const NOT_ALLOWED: &str = "NotAllowed";
    /// Reason (ListenerSet `Accepted`): the parent Gateway is missing or not accepted.
    pub const PARENT_NOT_ACCEPTED: &str = "ParentNotAccepted";
    /// Reason (ListenerSet `Programmed`): the parent Gateway is missing or not accepted.
    pub const PARENT_NOT_PROGRAMMED: &str = "ParentNotProgrammed";
    /// Reason: some of a Gateway's (or ListenerSet's) listeners are invalid.
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    /// Reason: no listener allows the route (namespace or kind).
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    /// Reason: no listener hostname intersects the route's hostnames.
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    /// Reason: the parentRef matches no Gateway or listener.
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    /// Reason: a field has a value gatekit does not support.
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    /// Reason: a backendRef names a Service (or port) that does not exist.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// Reason: a backendRef names a kind other than Service.
    pub const INVALID_KIND: &str = "InvalidKind";
    /// Reason (policies): another policy already targets the object.
    pub const CONFLICTED_POLICY: &str = "Conflicted";
    /// Reason (GatewayClass): gatekit does not serve this class.
    pub const UNSUPPORTED: &str = "Unsupported";
    /// Reason (policies): the target does not exist.
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
}

/// The status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

impl ConditionStatus {
    /// `"True"`, `"False"` or `"Unknown"`, as Kubernetes spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// One condition: type, status, reason, message and the generation it describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    type_: &'static str,
    status: ConditionStatus,
    reason: &'static str,
    message: String,
    observed_generation: Option<i64>,
}

impl Condition {
    pub(crate) fn new(
        type_: &'static str,
        status: impl Into<ConditionStatus>,
        reason: &'static str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
    ) -> Self {
        Self {
            type_,
            status: status.into(),
            reason,
            message: message.into(),
            observed_generation,
        }
    }

    /// The condition type (`Accepted`, `ResolvedRefs`, ...).
    pub fn type_(&self) -> &str {
        self.type_
    }

    /// The status.
    pub fn status(&self) -> ConditionStatus {
        self.status
    }

    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }

    /// The reason, a CamelCase word from [`reason`].
    pub fn reason(&self) -> &str {
        self.reason
    }

    /// A human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The resource generation this condition was computed from.
    pub fn observed_generation(&self) -> Option<i64> {
        self.observed_generation
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} ({})",
            self.type_,
            self.status.as_str(),
            self.reason
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Route parent status lists, shared between the routes that have equal ones: nearly
/// every accepted route of a Gateway has the same one (that Gateway, `Accepted` and
/// `ResolvedRefs` true, at one generation), so a route's status holds a pointer, not
/// its own list, parent names and conditions (four allocations). Keeps the last few
/// distinct lists it was asked for: a list not kept is still right, only not shared.
#[derive(Default)]
pub(crate) struct SharedParents {
    lists: std::cell::RefCell<Vec<Arc<[ParentStatus]>>>,
}

impl SharedParents {
    /// At most this many lists kept (generations differ from route to route on an API
    /// server).
    const KEEP: usize = 16;

    /// `parents` as a shared list: one equal to it handed out before, or a new one;
    /// `None` for none.
    pub(crate) fn get(&self, mut parents: Vec<ParentStatus>) -> Option<Arc<[ParentStatus]>> {
        if parents.is_empty() {
            return None;
        }
        let mut lists = self.lists.borrow_mut();
        // The last one made first: routes come in namespace and name order, so
        // neighbours most often share one.
        if let Some(found) = lists.iter().rev().find(|l| l[..] == parents[..]) {
            return Some(found.clone());
        }
        for p in &mut parents {
            p.conditions.shrink_to_fit();
        }
        let list: Arc<[ParentStatus]> = Arc::from(parents);
        if lists.len() == Self::KEEP {
            lists.remove(0);
        }
        lists.push(list.clone());
        Some(list)
    }
}

/// Names (route namespaces) shared between the statuses, ids and translator keys of
/// the routes of one translation call: one allocation per namespace, not per route.
#[derive(Default)]
pub(crate) struct SharedNames {
    names: std::cell::RefCell<std::collections::HashSet<Arc<str>>>,
}

impl SharedNames {
    /// `name`, shared.
    pub(crate) fn get(&self, name: &str) -> Arc<str> {
        let mut names = self.names.borrow_mut();
        if let Some(found) = names.get(name) {
            return found.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        names.insert(shared.clone());
        shared
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Replaces the condition of `c`'s type in `conditions`, or adds it.
fn replace(conditions: &mut Vec<Condition>, c: Condition) {
    match conditions.iter_mut().find(|old| old.type_ == c.type_) {
        Some(old) => *old = c,
        None => conditions.push(c),
    }
}

/// Identifies a resource: kind, namespace (for namespaced kinds) and name.
///
/// The names are shared strings: a route's status shares them with its
/// [`RouteId`](gatekit_core::route::RouteId) and the translator's keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceRef {
    kind: &'static str,
    namespace: Option<Arc<str>>,
    name: Arc<str>,
}

impl ResourceRef {
    pub(crate) fn new(kind: &'static str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.map(Arc::from),
            name: Arc::from(name),
        }
    }

    /// A reference made of names already shared elsewhere (no copy).
    pub(crate) fn shared(kind: &'static str, namespace: Option<Arc<str>>, name: Arc<str>) -> Self {
        Self {
            kind,
            namespace,
            name,
        }
    }

    /// The namespace, shared.
    pub(crate) fn namespace_arc(&self) -> Option<&Arc<str>> {
        self.namespace.as_ref()
    }

    /// The name, shared.
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The kind (`Gateway`, `HTTPRoute`, ...).
    pub fn kind(&self) -> &str {
        self.kind
    }

    /// The namespace, for namespaced kinds.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A route's parentRef, as written (with defaults filled in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentRef {
    /// The parent's kind: `Gateway`, or `ListenerSet` (GEP-1713); the group is always
    /// `gateway.networking.k8s.io`.
    pub kind: &'static str,
    /// Parent namespace (defaulted to the route's).
    pub namespace: String,
    /// Parent name.
    pub name: String,
    /// Listener name, if the ref names one.
    pub section_name: Option<String>,
    /// Listener port, if the ref names one.
    pub port: Option<u16>,
}

/// A route's status towards one parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentStatus {
    parent: ParentRef,
    conditions: Vec<Condition>,
}

impl ParentStatus {
    pub(crate) fn new(parent: ParentRef, conditions: Vec<Condition>) -> Self {
        Self { parent, conditions }
    }

    /// The parentRef.
    pub fn parent(&self) -> &ParentRef {
        &self.parent
    }

    /// The conditions (`Accepted`, `ResolvedRefs`, maybe `PartiallyInvalid`).
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The condition of this type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        find(&self.conditions, type_)
    }
}

/// A policy's target, as its `targetRefs` entry names it (GEP-713's ancestor: gatekit
/// reports a policy's status against the object it targets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AncestorRef {
    /// API group (`""` for Services).
    pub group: &'static str,
    /// Kind (`Service`, `Gateway`, `HTTPRoute`, `GRPCRoute`).
    pub kind: String,
    /// Namespace (the policy's).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The listener or rule, if the targetRef names one.
    pub section_name: Option<String>,
}

/// A policy's status at one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AncestorStatus {
    ancestor: AncestorRef,
    conditions: Vec<Condition>,
}

impl AncestorStatus {
    pub(crate) fn new(ancestor: AncestorRef, conditions: Vec<Condition>) -> Self {
        Self {
            ancestor,
            conditions,
        }
    }

    /// The target.
    pub fn ancestor(&self) -> &AncestorRef {
        &self.ancestor
    }

    /// The conditions (`Accepted`).
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The condition of this type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        find(&self.conditions, type_)
    }
}

/// A Gateway's or ListenerSet's listener status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerStatus {
    name: String,
    attached_routes: u32,
    supported_kinds: Vec<&'static str>,
    conditions: Vec<Condition>,
}

impl ListenerStatus {
    pub(crate) fn new(name: &str, supported_kinds: Vec<&'static str>) -> Self {
        Self {
            name: name.to_owned(),
            attached_routes: 0,
            supported_kinds,
            conditions: Vec::new(),
        }
    }

    pub(crate) fn set_conditions(&mut self, conditions: Vec<Condition>) {
        self.conditions = conditions;
    }

    /// Replaces the condition of the same type.
    pub(crate) fn replace_condition(&mut self, c: Condition) {
        replace(&mut self.conditions, c);
    }

    pub(crate) fn add_attached(&mut self) {
        self.attached_routes += 1;
    }

    /// The listener name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many routes are attached (with `Accepted=True`).
    pub fn attached_routes(&self) -> u32 {
        self.attached_routes
    }

    /// Route kinds the listener accepts.
    pub fn supported_kinds(&self) -> &[&'static str] {
        &self.supported_kinds
    }

    /// The conditions (`Accepted`, `ResolvedRefs`, `Programmed`, `Conflicted`).
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The condition of this type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        find(&self.conditions, type_)
    }
}

/// Everything translation says about one resource.
///
/// Kept per route (one per HTTPRoute and GRPCRoute in every translation): what only
/// Gateways, ListenerSets, GatewayClasses and policies have (resource-level
/// conditions among it) is boxed apart (`Rare`), so a route's status holds its name,
/// generation and (shared) parents only.
#[derive(Clone)]
pub struct ResourceStatus {
    resource: ResourceRef,
    generation: Option<i64>,
    /// Shared with other routes' statuses (see [`SharedParents`]); `None` for none.
    parents: Option<Arc<[ParentStatus]>>,
    /// `None` while every part of it is empty.
    rare: Option<Box<Rare>>,
}

/// The parts of a [`ResourceStatus`] routes never have.
#[derive(Clone, Default)]
struct Rare {
    conditions: Vec<Condition>,
    listeners: Vec<ListenerStatus>,
    ancestors: Vec<AncestorStatus>,
    supported_features: Vec<&'static str>,
    attached_listener_sets: Option<u32>,
    addresses: Option<Vec<GatewayAddress>>,
}

/// Compares what the accessors show: no rare part and an empty one are equal.
impl PartialEq for ResourceStatus {
    fn eq(&self, other: &Self) -> bool {
        self.resource == other.resource
            && self.generation == other.generation
            && self.conditions() == other.conditions()
            && self.parents() == other.parents()
            && self.listeners() == other.listeners()
            && self.ancestors() == other.ancestors()
            && self.supported_features() == other.supported_features()
            && self.attached_listener_sets() == other.attached_listener_sets()
            && self.addresses() == other.addresses()
    }
}

impl Eq for ResourceStatus {}

/// Every part, as if none were boxed: equal statuses have the same debug form (debug
/// builds compare an incremental translation with a full one by it).
impl fmt::Debug for ResourceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceStatus")
            .field("resource", &self.resource)
            .field("generation", &self.generation)
            .field("conditions", &self.conditions())
            .field("parents", &self.parents())
            .field("listeners", &self.listeners())
            .field("ancestors", &self.ancestors())
            .field("supported_features", &self.supported_features())
            .field("attached_listener_sets", &self.attached_listener_sets())
            .field("addresses", &self.addresses())
            .finish()
    }
}

/// A Gateway `status.addresses` entry: an address clients can reach it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayAddress {
    type_: &'static str,
    value: String,
}

impl GatewayAddress {
    /// An `IPAddress` entry.
    pub(crate) fn ip(value: impl Into<String>) -> Self {
        Self {
            type_: "IPAddress",
            value: value.into(),
        }
    }

    /// A `Hostname` entry.
    pub(crate) fn hostname(value: impl Into<String>) -> Self {
        Self {
            type_: "Hostname",
            value: value.into(),
        }
    }

    /// The address type, as the Gateway API spells it (`IPAddress`, `Hostname`).
    pub fn type_(&self) -> &'static str {
        self.type_
    }

    /// The address.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl ResourceStatus {
    pub(crate) fn new(resource: ResourceRef, generation: Option<i64>) -> Self {
        Self {
            resource,
            generation,
            parents: None,
            rare: None,
        }
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    pub(crate) fn set_attached_listener_sets(&mut self, n: u32) {
        self.rare_mut().attached_listener_sets = Some(n);
    }

    /// A Gateway's `status.attachedListenerSets`: how many ListenerSets it allows and
    /// accepted (`Accepted=True`). `None` for other kinds.
    pub fn attached_listener_sets(&self) -> Option<u32> {
        self.rare.as_ref()?.attached_listener_sets
    }

    pub(crate) fn set_addresses(&mut self, addresses: Vec<GatewayAddress>) {
        self.rare_mut().addresses = Some(addresses);
    }

    /// A Gateway's `status.addresses` when translation knows them (in a cluster, from
    /// the Service named by [`TranslateOptions::gateway_service`](crate::TranslateOptions::gateway_service));
    /// `None` when it does not (standalone, the gateway reports the addresses it is
    /// bound on).
    pub fn addresses(&self) -> Option<&[GatewayAddress]> {
        self.rare.as_ref()?.addresses.as_deref()
    }

    /// Replaces the resource-level condition of the same type (or adds it).
    pub(crate) fn replace_condition(&mut self, c: Condition) {
        replace(&mut self.rare_mut().conditions, c);
    }

    pub(crate) fn set_supported_features(&mut self, names: Vec<&'static str>) {
        if !names.is_empty() || self.rare.is_some() {
            self.rare_mut().supported_features = names;
        }
    }

    /// A GatewayClass's `status.supportedFeatures` (GEP-2162): the names of the
    /// supported [`features`](crate::features), sorted ascending. Empty for other kinds
    /// and for GatewayClasses gatekit does not accept.
    pub fn supported_features(&self) -> &[&'static str] {
        self.rare
            .as_ref()
            .map_or(&[], |r| r.supported_features.as_slice())
    }

    pub(crate) fn push_condition(&mut self, c: Condition) {
        self.rare_mut().conditions.push(c);
    }

    /// Sets the parents' statuses (see [`SharedParents`]).
    pub(crate) fn set_parents(&mut self, parents: Option<Arc<[ParentStatus]>>) {
        self.parents = parents;
    }

    /// Drops the spare capacity of its conditions: for statuses kept per route.
    pub(crate) fn shrink(&mut self) {
        if let Some(rare) = &mut self.rare {
            rare.conditions.shrink_to_fit();
        }
    }

    pub(crate) fn push_ancestor(&mut self, a: AncestorStatus) {
        self.rare_mut().ancestors.push(a);
    }

    pub(crate) fn listeners_mut(&mut self) -> &mut Vec<ListenerStatus> {
        &mut self.rare_mut().listeners
    }

    /// The resource.
    pub fn resource(&self) -> &ResourceRef {
        &self.resource
    }

    /// `metadata.generation` of the resource, if it had one.
    pub fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// Resource-level conditions (Gateway, ListenerSet, GatewayClass, BackendPolicy).
    pub fn conditions(&self) -> &[Condition] {
        self.rare.as_ref().map_or(&[], |r| r.conditions.as_slice())
    }

    /// The resource-level condition of this type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        find(self.conditions(), type_)
    }

    /// Per-parent statuses (routes).
    pub fn parents(&self) -> &[ParentStatus] {
        self.parents.as_deref().unwrap_or_default()
    }

    /// Per-target statuses (BackendPolicies, TrafficPolicies).
    pub fn ancestors(&self) -> &[AncestorStatus] {
        self.rare.as_ref().map_or(&[], |r| r.ancestors.as_slice())
    }

    /// Per-listener statuses (Gateways, ListenerSets).
    pub fn listeners(&self) -> &[ListenerStatus] {
        self.rare.as_ref().map_or(&[], |r| r.listeners.as_slice())
    }

    /// The status of the listener with this name.
    pub fn listener(&self, name: &str) -> Option<&ListenerStatus> {
        self.listeners().iter().find(|l| l.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal parent lists are handed out as one allocation, different ones apart, an
    /// empty one as none; only the last few are kept.
    #[test]
    fn shared_parents_hand_out_one_list_per_content() {
        let shared = SharedParents::default();
        let list = |generation| {
            vec![ParentStatus::new(
                ParentRef {
                    kind: "Gateway",
                    namespace: "default".to_owned(),
                    name: "gw".to_owned(),
                    section_name: None,
                    port: None,
                },
                vec![
                    Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "", generation),
                    Condition::new(
                        reason::RESOLVED_REFS,
                        true,
                        reason::RESOLVED_REFS,
                        "",
                        generation,
                    ),
                ],
            )]
        };
        let a = shared.get(list(Some(1))).unwrap();
        let b = shared.get(list(Some(1))).unwrap();
        let c = shared.get(list(Some(2))).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(a[..], list(Some(1))[..]);
        assert!(shared.get(Vec::new()).is_none());
        for g in 3..40 {
            shared.get(list(Some(g)));
        }
        assert_eq!(shared.lists.borrow().len(), SharedParents::KEEP);
        let again = shared.get(list(Some(1))).unwrap();
        assert!(!Arc::ptr_eq(&a, &again), "dropped, made again");
        assert_eq!(a, again);

        let mut status = ResourceStatus::new(ResourceRef::new("HTTPRoute", None, "r"), None);
        assert!(status.parents().is_empty());
        status.set_parents(Some(a.clone()));
        assert_eq!(status.parents(), &a[..]);
    }

    /// A route's status keeps no room for what only Gateways and policies have
    /// (resource-level conditions included: eleven words), and an emptied rare part
    /// reads, compares and prints as none.
    #[test]
    fn rare_parts_are_boxed_and_empty_ones_are_none() {
        assert!(
            std::mem::size_of::<ResourceStatus>() <= 88,
            "{}",
            std::mem::size_of::<ResourceStatus>()
        );
        let route = ResourceStatus::new(ResourceRef::new("HTTPRoute", Some("ns"), "r"), None);
        let mut touched = route.clone();
        assert!(touched.listeners_mut().is_empty());
        touched.set_supported_features(Vec::new());
        assert!(touched.rare.is_some() && route.rare.is_none());
        assert_eq!(route, touched);
        assert_eq!(format!("{route:?}"), format!("{touched:?}"));

        let mut gateway = ResourceStatus::new(ResourceRef::new("Gateway", Some("ns"), "g"), None);
        gateway
            .listeners_mut()
            .push(ListenerStatus::new("http", vec!["HTTPRoute"]));
        gateway.set_attached_listener_sets(1);
        assert_eq!(
            gateway.listener("http").map(ListenerStatus::name),
            Some("http")
        );
        assert_eq!(gateway.attached_listener_sets(), Some(1));
        assert_ne!(gateway, route);
    }

    /// Names shared with other structures compare and hash as copied ones.
    #[test]
    fn shared_names_are_equal_to_copied_ones() {
        let ns: Arc<str> = Arc::from("ns");
        let name: Arc<str> = Arc::from("r");
        let shared = ResourceRef::shared("HTTPRoute", Some(ns.clone()), name.clone());
        assert_eq!(shared, ResourceRef::new("HTTPRoute", Some("ns"), "r"));
        assert!(Arc::ptr_eq(shared.name_arc(), &name));
        assert!(Arc::ptr_eq(shared.namespace_arc().unwrap(), &ns));
    }
}
