//! Gateways and their listeners, and the ListenerSets that add listeners to them
//! (GEP-1713): selection by class, attachment (`spec.allowedListeners`), validation,
//! certificates, conflicts, and the per-port grouping the data plane binds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gatekit_core::ConfigError;
use gatekit_core::chunked::Chunked;

use super::backend::{Context, created_of, name_of, ns_of};
use super::frontend::{self, Frontend};
use super::{Certificate, ListenerSpec, PortListeners, Protocol, TlsMode, TranslateOptions};
use crate::manifest::ResourceSet;
use crate::status::{Condition, ListenerStatus, ResourceRef, ResourceStatus, reason};
use crate::types::{
    GATEWAY_GROUP, Gateway, GatewayAllowedListenersNamespacesFrom, GatewayListeners,
    GatewayListenersAllowedRoutesNamespacesFrom, GatewayListenersTlsMode, ListenerSet,
    TLS_SECRET_TYPE,
};

/// Route kinds gatekit serves on listeners of `protocol`: HTTPRoute and GRPCRoute on
/// HTTP and HTTPS, TLSRoute on TLS (either mode), TCPRoute on TCP, UDPRoute on UDP.
fn route_kinds(protocol: Protocol) -> &'static [&'static str] {
    match protocol {
        Protocol::Http | Protocol::Https => &["HTTPRoute", "GRPCRoute"],
        Protocol::Tls => &["TLSRoute"],
        Protocol::Tcp => &["TCPRoute"],
        Protocol::Udp => &["UDPRoute"],
    }
}

/// The protocol of a listener, if gatekit serves it.
fn protocol_of(l: &GatewayListeners) -> Option<Protocol> {
    match l.protocol.as_str() {
        "HTTP" => Some(Protocol::Http),
        "HTTPS" => Some(Protocol::Https),
        "TLS" => Some(Protocol::Tls),
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

/// Whether a listener's `tls.mode` is `Passthrough` (unset is `Terminate`).
fn is_passthrough(l: &GatewayListeners) -> bool {
    matches!(
        l.tls.as_ref().and_then(|t| t.mode.as_ref()),
        Some(GatewayListenersTlsMode::Passthrough)
    )
}

/// The hostname a listener is told apart by: its own on HTTP, HTTPS and TLS (lowercase),
/// none on TCP and UDP (the spec ignores it there: only the port tells them apart).
fn hostname_of(l: &GatewayListeners, protocol: Protocol) -> Option<String> {
    if matches!(protocol, Protocol::Tcp | Protocol::Udp) {
        return None;
    }
    l.hostname
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase)
}

/// [`Allowed::Selector`] from a namespace selector (`matchLabels`, `matchExpressions`)
/// of any of the Gateway API's generated selector types, which share field names.
macro_rules! selector {
    ($selector:expr) => {{
        let sel = $selector.as_ref();
        Allowed::Selector {
            labels: sel.and_then(|s| s.match_labels.as_ref()),
            expressions: sel
                .and_then(|s| s.match_expressions.as_ref())
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e.key.as_str(),
                        e.operator.as_str(),
                        e.values.as_deref().unwrap_or(&[]),
                    )
                })
                .collect(),
        }
    }};
}

/// Which namespaces may attach routes to a listener (or ListenerSets to a Gateway).
pub(crate) enum Allowed<'a> {
    None,
    Same,
    All,
    Selector {
        labels: Option<&'a BTreeMap<String, String>>,
        expressions: Vec<(&'a str, &'a str, &'a [String])>,
    },
}

impl Allowed<'_> {
    /// Whether an object in `ns` is allowed by an owner in `home_ns`.
    fn allows(&self, cx: &Context<'_>, home_ns: &str, ns: &str) -> bool {
        match self {
            Allowed::None => false,
            Allowed::Same => ns == home_ns,
            Allowed::All => true,
            Allowed::Selector {
                labels,
                expressions,
            } => {
                let ns_labels = cx.namespace_labels(ns);
                labels.is_none_or(|l| l.iter().all(|(k, v)| ns_labels.get(k) == Some(v)))
                    && expressions.iter().all(|(key, op, values)| {
                        let v = ns_labels.get(*key);
                        match *op {
                            "In" => v.is_some_and(|v| values.contains(v)),
                            "NotIn" => v.is_none_or(|v| !values.contains(v)),
                            "Exists" => v.is_some(),
                            "DoesNotExist" => v.is_none(),
                            _ => false,
                        }
                    })
            }
        }
    }
}

/// The resource that declares a listener: its Gateway, or a ListenerSet (GEP-1713).
#[derive(Clone, Copy)]
pub(crate) struct Owner<'a> {
    /// `Gateway` or `ListenerSet`.
    pub(crate) kind: &'static str,
    pub(crate) ns: &'a str,
    pub(crate) name: &'a str,
}

/// A listener of a served Gateway (its own or one of its ListenerSets'), programmed or
/// not.
pub(crate) struct Listener<'a> {
    /// The Gateway it is served on.
    pub(crate) gateway_ns: &'a str,
    pub(crate) gateway_name: &'a str,
    /// The resource that declares it; routes attach to it through this one.
    pub(crate) owner: Owner<'a>,
    pub(crate) status_index: usize,
    pub(crate) listener_index: usize,
    pub(crate) name: &'a str,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    /// `Some` on TLS listeners only.
    pub(crate) tls_mode: Option<TlsMode>,
    pub(crate) hostname: Option<String>,
    pub(crate) kinds: Vec<&'static str>,
    pub(crate) allowed: Allowed<'a>,
    certificates: Vec<Certificate>,
    /// The Gateway's `spec.tls.frontend` validation for this listener (HTTPS only).
    pub(crate) client_validation: Option<gatekit_core::tls::ClientValidation>,
    /// TLS settings from a ClientTrafficPolicy and the frontend validation (`None`:
    /// gatekit's defaults, with `client_validation`).
    pub(crate) tls_settings: Option<std::sync::Arc<gatekit_core::tls::ListenerTls>>,
    /// PROXY protocol required (a ClientTrafficPolicy).
    pub(crate) proxy_protocol: bool,
    /// Idle timeout of its stream connections (a ClientTrafficPolicy's
    /// `timeout.tcp.idleTimeout`).
    pub(crate) idle_timeout: Option<std::time::Duration>,
    /// Most connections open on its port (a ClientTrafficPolicy's `connectionLimit`).
    pub(crate) connection_limit: Option<usize>,
    /// How its requests' clients are found (a ClientTrafficPolicy's
    /// `clientIPDetection`); `None`: the peer.
    pub(crate) client_ip: Option<std::sync::Arc<gatekit_core::client_ip::ClientIpDetection>>,
    pub(crate) programmed: bool,
}

impl Listener<'_> {
    /// Whether routes from `route_ns` may attach (`Same` is the namespace of the
    /// resource that declares the listener).
    pub(crate) fn allows_namespace(&self, cx: &Context<'_>, route_ns: &str) -> bool {
        self.allowed.allows(cx, self.owner.ns, route_ns)
    }
}

/// Sets `Accepted` on GatewayClasses handled by gatekit's controller, and on the
/// accepted one the supported features (from [`features::FEATURES`](crate::features)).
pub(crate) fn gateway_classes(
    resources: &ResourceSet,
    options: &TranslateOptions,
    statuses: &mut Vec<ResourceStatus>,
) {
    for class in &resources.gateway_classes {
        if class.spec.controller_name != options.controller_name {
            continue;
        }
        let name = name_of(&class.metadata);
        let generation = class.metadata.generation;
        let mut status =
            ResourceStatus::new(ResourceRef::new("GatewayClass", None, name), generation);
        let c = if name == options.gateway_class_name {
            status.set_supported_features(crate::features::supported_names());
            Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "", generation)
        } else {
            Condition::new(
                reason::ACCEPTED,
                false,
                reason::UNSUPPORTED,
                format!(
                    "this gatekit serves GatewayClass {:?} only",
                    options.gateway_class_name
                ),
                generation,
            )
        };
        status.push_condition(c);
        statuses.push(status);
    }
}

/// Per port and transport (UDP or not): the protocol and hostnames of the listeners
/// accepted so far.
type Taken = HashMap<(u16, bool), (Protocol, Vec<Option<String>>)>;

/// Each ListenerSet's listeners, index-aligned with `resources.listener_sets`, read as
/// Gateway listeners (GEP-1713: a ListenerSet's entry is a copy of the Gateway's
/// listener; the generated types are distinct, the schema is the same).
pub(crate) fn listener_set_entries(resources: &ResourceSet) -> Vec<Vec<GatewayListeners>> {
    resources
        .listener_sets
        .iter()
        .map(|set| {
            set.spec
                .listeners
                .iter()
                .filter_map(|l| {
                    serde_json::to_value(l)
                        .and_then(serde_json::from_value)
                        .ok()
                })
                .collect()
        })
        .collect()
}

/// The Gateway (namespace, name) a ListenerSet's `parentRef` names, if it names one.
fn parent_of(set: &ListenerSet) -> Option<(&str, &str)> {
    let p = &set.spec.parent_ref;
    let group = p.group.as_deref().unwrap_or(GATEWAY_GROUP);
    let kind = p.kind.as_deref().unwrap_or("Gateway");
    (group == GATEWAY_GROUP && kind == "Gateway").then(|| {
        (
            p.namespace.as_deref().unwrap_or(ns_of(&set.metadata)),
            p.name.as_str(),
        )
    })
}

/// Which namespaces' ListenerSets a Gateway allows (`spec.allowedListeners`; none by
/// default).
fn allowed_listeners(gw: &Gateway) -> Allowed<'_> {
    let Some(n) = gw
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    else {
        return Allowed::None;
    };
    match n.from {
        None | Some(GatewayAllowedListenersNamespacesFrom::None) => Allowed::None,
        Some(GatewayAllowedListenersNamespacesFrom::Same) => Allowed::Same,
        Some(GatewayAllowedListenersNamespacesFrom::All) => Allowed::All,
        Some(GatewayAllowedListenersNamespacesFrom::Selector) => selector!(n.selector),
    }
}

/// Validates the listeners of every served Gateway and of the ListenerSets attached to
/// it, sets Gateway, ListenerSet and listener conditions (all but `attachedRoutes`),
/// and returns the listeners and the problems found.
///
/// Precedence on a shared port (GEP-1713): older Gateways first; within a Gateway, its
/// own listeners, then its ListenerSets oldest first, then by namespace/name. A
/// listener that conflicts with one of higher precedence loses; listeners of one
/// resource that conflict with each other all lose.
pub(crate) fn listeners<'a>(
    cx: &Context<'a>,
    options: &TranslateOptions,
    set_entries: &'a [Vec<GatewayListeners>],
    statuses: &mut Vec<ResourceStatus>,
) -> (Vec<Listener<'a>>, Vec<ConfigError>) {
    let mut gateways: Vec<_> = cx
        .resources
        .gateways
        .iter()
        .filter(|g| g.spec.gateway_class_name == options.gateway_class_name)
        .collect();
    gateways.sort_by_key(|g| {
        (
            created_of(&g.metadata),
            ns_of(&g.metadata),
            name_of(&g.metadata),
        )
    });
    let mut sets: Vec<(&'a ListenerSet, &'a [GatewayListeners])> = cx
        .resources
        .listener_sets
        .iter()
        .zip(set_entries.iter().map(Vec::as_slice))
        .collect();
    sets.sort_by_key(|(s, _)| {
        (
            created_of(&s.metadata),
            ns_of(&s.metadata),
            name_of(&s.metadata),
        )
    });
    let mut merge = Merge::default();
    for gw in gateways {
        let gw_ns = ns_of(&gw.metadata);
        let gw_name = name_of(&gw.metadata);
        let gw_index = statuses.len();
        let accepted = gateway(cx, options, gw, &mut merge, statuses);
        let allowed = allowed_listeners(gw);
        let mut attached = 0;
        for (set, entries) in sets
            .iter()
            .filter(|(s, _)| parent_of(s) == Some((gw_ns, gw_name)))
        {
            let ls_ns = ns_of(&set.metadata);
            let ls_name = name_of(&set.metadata);
            let generation = set.metadata.generation;
            let mut status = ResourceStatus::new(
                ResourceRef::new("ListenerSet", Some(ls_ns), ls_name),
                generation,
            );
            let refused = if !allowed.allows(cx, gw_ns, ls_ns) {
                Some((
                    reason::NOT_ALLOWED,
                    reason::NOT_ALLOWED,
                    format!(
                        "Gateway {gw_ns}/{gw_name} does not allow ListenerSets from namespace {ls_ns} (spec.allowedListeners)"
                    ),
                ))
            } else if !accepted {
                Some((
                    reason::PARENT_NOT_ACCEPTED,
                    reason::PARENT_NOT_PROGRAMMED,
                    format!("Gateway {gw_ns}/{gw_name} is not accepted"),
                ))
            } else {
                None
            };
            if let Some((accepted_reason, programmed_reason, message)) = refused {
                merge.errors.push(ConfigError::new(
                    "spec.parentRef",
                    format!("ListenerSet {ls_ns}/{ls_name}: {message}"),
                ));
                status.push_condition(Condition::new(
                    reason::ACCEPTED,
                    false,
                    accepted_reason,
                    message.clone(),
                    generation,
                ));
                status.push_condition(Condition::new(
                    reason::PROGRAMMED,
                    false,
                    programmed_reason,
                    message,
                    generation,
                ));
                statuses.push(status);
                continue;
            }
            let owner = Owner {
                kind: "ListenerSet",
                ns: ls_ns,
                name: ls_name,
            };
            let declaring = Declaring {
                gateway: (gw_ns, gw_name),
                owner,
                entries,
                generation,
                held: false,
            };
            let summary = declared(cx, &mut merge, declaring, &mut status, statuses.len());
            if summary.is_true() {
                attached += 1;
            }
            status.push_condition(summary.accepted);
            status.push_condition(summary.programmed);
            statuses.push(status);
        }
        statuses[gw_index].set_attached_listener_sets(attached);
    }
    // ListenerSets whose parent Gateway does not exist (those of another class's
    // Gateways are another controller's).
    for (set, _) in &sets {
        let Some((gw_ns, gw_name)) = parent_of(set) else {
            continue;
        };
        let exists = cx
            .resources
            .gateways
            .iter()
            .any(|g| ns_of(&g.metadata) == gw_ns && name_of(&g.metadata) == gw_name);
        if exists {
            continue;
        }
        let ls_ns = ns_of(&set.metadata);
        let ls_name = name_of(&set.metadata);
        let generation = set.metadata.generation;
        let message = format!("Gateway {gw_ns}/{gw_name} not found");
        merge.errors.push(ConfigError::new(
            "spec.parentRef",
            format!("ListenerSet {ls_ns}/{ls_name}: {message}"),
        ));
        let mut status = ResourceStatus::new(
            ResourceRef::new("ListenerSet", Some(ls_ns), ls_name),
            generation,
        );
        status.push_condition(Condition::new(
            reason::ACCEPTED,
            false,
            reason::PARENT_NOT_ACCEPTED,
            message.clone(),
            generation,
        ));
        status.push_condition(Condition::new(
            reason::PROGRAMMED,
            false,
            reason::PARENT_NOT_PROGRAMMED,
            message,
            generation,
        ));
        statuses.push(status);
    }
    (merge.out, merge.errors)
}

/// What the listener passes accumulate: the ports taken so far, every listener, the
/// problems found.
#[derive(Default)]
struct Merge<'a> {
    ports: Taken,
    out: Vec<Listener<'a>>,
    errors: Vec<ConfigError>,
}

/// One resource's listeners, about to be merged into its Gateway's.
struct Declaring<'a> {
    /// The Gateway (namespace, name) they are served on.
    gateway: (&'a str, &'a str),
    owner: Owner<'a>,
    entries: &'a [GatewayListeners],
    generation: Option<i64>,
    /// A Gateway that is not accepted for another reason: its listeners are not
    /// programmed and take no port.
    held: bool,
}

/// One served Gateway: its listeners and its status. Returns whether it is accepted.
fn gateway<'a>(
    cx: &Context<'a>,
    options: &TranslateOptions,
    gw: &'a Gateway,
    merge: &mut Merge<'a>,
    statuses: &mut Vec<ResourceStatus>,
) -> bool {
    let ns = ns_of(&gw.metadata);
    let name = name_of(&gw.metadata);
    let generation = gw.metadata.generation;
    let mut status = ResourceStatus::new(ResourceRef::new("Gateway", Some(ns), name), generation);
    // spec.addresses: refused unless the gateway Service can honour it (then each
    // request is checked against its addresses, after translation).
    let refused = super::address::refused_request(options, gw);
    let address_rejected = refused.is_some();
    if let Some(message) = &refused {
        merge.errors.push(ConfigError::new(
            "spec.addresses",
            format!("Gateway {ns}/{name}: {message}"),
        ));
    }
    let owner = Owner {
        kind: "Gateway",
        ns,
        name,
    };
    let declaring = Declaring {
        gateway: (ns, name),
        owner,
        entries: &gw.spec.listeners,
        generation,
        held: address_rejected,
    };
    let accepted = declared(cx, merge, declaring, &mut status, statuses.len());
    if let Some(message) = refused {
        status.push_condition(Condition::new(
            reason::ACCEPTED,
            false,
            reason::UNSUPPORTED_ADDRESS,
            message,
            generation,
        ));
        status.push_condition(Condition::new(
            reason::PROGRAMMED,
            false,
            reason::ADDRESS_NOT_ASSIGNED,
            "no requested address is assigned",
            generation,
        ));
    } else {
        let programmed = accepted.programmed.clone();
        status.push_condition(accepted.accepted);
        status.push_condition(programmed);
    }
    if let Some(c) = cx.gateway_client_condition(gw, generation) {
        status.push_condition(c);
    }
    if frontend::insecure_fallback(gw) {
        status.push_condition(Condition::new(
            frontend::INSECURE_FRONTEND_VALIDATION_MODE,
            true,
            frontend::CONFIGURATION_CHANGED,
            "spec.tls.frontend uses AllowInsecureFallback: clients without a valid certificate are served",
            generation,
        ));
    }
    let ok = !address_rejected
        && status
            .condition(reason::ACCEPTED)
            .is_some_and(Condition::is_true);
    statuses.push(status);
    ok
}

/// The `Accepted` and `Programmed` conditions a resource's listeners add up to.
struct Summary {
    accepted: Condition,
    programmed: Condition,
}

impl Summary {
    fn is_true(&self) -> bool {
        self.accepted.is_true()
    }
}

/// The listeners one resource (a Gateway, or a ListenerSet attached to it) declares:
/// validated, checked for conflicts within the resource and against the ports taken
/// (listeners of higher precedence), their statuses pushed to `status` (the resource's
/// status, at `status_index` once pushed), and the accepted ones taking their port.
fn declared<'a>(
    cx: &Context<'a>,
    merge: &mut Merge<'a>,
    declaring: Declaring<'a>,
    status: &mut ResourceStatus,
    status_index: usize,
) -> Summary {
    let Declaring {
        gateway,
        owner,
        entries,
        generation,
        held,
    } = declaring;
    let Merge { ports, out, errors } = merge;
    let is_set = owner.kind == "ListenerSet";
    let (by, what) = if is_set {
        ("the Gateway or an older ListenerSet", "ListenerSet")
    } else {
        ("an older Gateway", "Gateway")
    };
    let names: Vec<&str> = entries.iter().map(|l| l.name.as_str()).collect();
    let keys: Vec<_> = entries.iter().map(distinct_key).collect();
    let mut programmed_count = 0;
    let mut invalid = Vec::new();
    let mut accepted_keys = Vec::new();
    for (i, l) in entries.iter().enumerate() {
        let field = format!("spec.listeners[{i}]");
        let conflict = conflict_within(i, &keys, &names)
            .or_else(|| keys[i].as_ref().and_then(|k| conflict_across(k, ports, by)));
        let (mut listener, mut lstatus) =
            listener(cx, gateway, owner, l, generation, conflict.clone());
        listener.status_index = status_index;
        listener.listener_index = i;
        if held && listener.programmed {
            listener.programmed = false;
            lstatus.replace_condition(Condition::new(
                reason::PROGRAMMED,
                false,
                reason::INVALID,
                "the Gateway is not accepted (UnsupportedAddress)",
                generation,
            ));
        }
        let lost = conflict.filter(|_| {
            lstatus
                .condition(reason::CONFLICTED)
                .is_some_and(Condition::is_true)
        });
        match (&keys[i], lost) {
            // A ListenerSet's listener that lost a conflict is not accepted (the
            // conformance tests ask Accepted and Programmed to name the conflict).
            (_, Some((r, m))) if is_set => {
                lstatus.replace_condition(Condition::new(
                    reason::ACCEPTED,
                    false,
                    r,
                    m.clone(),
                    generation,
                ));
                lstatus.replace_condition(Condition::new(
                    reason::PROGRAMMED,
                    false,
                    r,
                    m,
                    generation,
                ));
            }
            (Some(k), None) => accepted_keys.push(k.clone()),
            _ => {}
        }
        for c in lstatus.conditions() {
            let bad = match c.type_() {
                reason::CONFLICTED => c.is_true(),
                reason::PROGRAMMED => false,
                _ => !c.is_true(),
            };
            if bad {
                errors.push(ConfigError::new(
                    field.clone(),
                    format!(
                        "{what} {}/{} listener {}: {c}",
                        owner.ns, owner.name, l.name
                    ),
                ));
            }
        }
        if listener.programmed {
            programmed_count += 1;
        } else if !held {
            invalid.push(format!("{} ({})", l.name, why_invalid(&lstatus)));
        }
        status.listeners_mut().push(lstatus);
        out.push(listener);
    }
    if !held {
        // Listeners of lower precedence conflict with these.
        for (port, protocol, hostname) in accepted_keys {
            let entry = ports
                .entry((port, protocol.is_udp()))
                .or_insert_with(|| (protocol, Vec::new()));
            entry.1.push(hostname);
        }
    }
    let total = entries.len();
    let invalid_list = invalid.join(", ");
    let accepted = if programmed_count == total {
        Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "", generation)
    } else if programmed_count > 0 {
        Condition::new(
            reason::ACCEPTED,
            true,
            reason::LISTENERS_NOT_VALID,
            format!(
                "{} of {total} listeners are not valid: {invalid_list}",
                total - programmed_count
            ),
            generation,
        )
    } else {
        Condition::new(
            reason::ACCEPTED,
            false,
            reason::LISTENERS_NOT_VALID,
            format!("no listener is valid: {invalid_list}"),
            generation,
        )
    };
    let programmed = if programmed_count > 0 {
        Condition::new(reason::PROGRAMMED, true, reason::PROGRAMMED, "", generation)
    } else if is_set {
        Condition::new(
            reason::PROGRAMMED,
            false,
            reason::LISTENERS_NOT_VALID,
            "no listener is programmed",
            generation,
        )
    } else {
        Condition::new(
            reason::PROGRAMMED,
            false,
            reason::INVALID,
            "no listener is programmed",
            generation,
        )
    };
    Summary {
        accepted,
        programmed,
    }
}

/// The fields that make an accepted listener distinct (port, protocol, hostname), or
/// `None` if the listener is not accepted (port or protocol unusable).
fn distinct_key(l: &GatewayListeners) -> Option<(u16, Protocol, Option<String>)> {
    let port = u16::try_from(l.port).ok().filter(|p| *p != 0)?;
    let protocol = protocol_of(l)?;
    if protocol == Protocol::Https && is_passthrough(l) {
        return None;
    }
    Some((port, protocol, hostname_of(l, protocol)))
}

/// Whether listener `i` of a Gateway is indistinct from another of its listeners. The
/// spec: no conflicting listener is picked as the winner, every one is `Conflicted`.
/// A protocol conflict is reported before a hostname conflict. Listeners on one port
/// number over different transports (UDP and a TCP-based protocol) are compatible.
fn conflict_within(
    i: usize,
    keys: &[Option<(u16, Protocol, Option<String>)>],
    names: &[&str],
) -> Option<(&'static str, String)> {
    let (port, protocol, hostname) = keys.get(i)?.as_ref()?;
    let others = || {
        keys.iter()
            .enumerate()
            .filter(move |(j, _)| *j != i)
            .filter_map(|(j, k)| k.as_ref().map(|k| (j, k)))
            .filter(|(_, k)| k.0 == *port && k.1.is_udp() == protocol.is_udp())
    };
    if let Some((j, _)) = others().find(|(_, k)| k.1 != *protocol) {
        return Some((
            reason::PROTOCOL_CONFLICT,
            format!(
                "listener {} also uses port {port}, with another protocol",
                names.get(j).unwrap_or(&"?")
            ),
        ));
    }
    others().find(|(_, k)| k.2 == *hostname).map(|(j, _)| {
        (
            reason::HOSTNAME_CONFLICT,
            format!(
                "listener {} also uses port {port} and hostname {}",
                names.get(j).unwrap_or(&"?"),
                hostname.as_deref().unwrap_or("(none)")
            ),
        )
    })
}

/// Whether a listener conflicts with an accepted listener of higher precedence, `by`
/// (served Gateways share the data plane's ports, so the older one keeps the port; a
/// Gateway's own listeners and older ListenerSets come before a ListenerSet). The
/// message names no other resource: it may belong to another team.
fn conflict_across(
    (port, protocol, hostname): &(u16, Protocol, Option<String>),
    ports: &Taken,
    by: &str,
) -> Option<(&'static str, String)> {
    match ports.get(&(*port, protocol.is_udp())) {
        Some((p, _)) if p != protocol => Some((
            reason::PROTOCOL_CONFLICT,
            format!("port {port} is already used with another protocol by {by}"),
        )),
        Some((_, hosts)) if hosts.contains(hostname) => Some((
            reason::HOSTNAME_CONFLICT,
            format!(
                "a listener of {by} on port {port} already has hostname {}",
                hostname.as_deref().unwrap_or("(none)")
            ),
        )),
        _ => None,
    }
}

/// The reason of the first condition that keeps a listener from being programmed.
fn why_invalid(status: &ListenerStatus) -> &str {
    status
        .conditions()
        .iter()
        .find(|c| match c.type_() {
            reason::CONFLICTED => c.is_true(),
            reason::PROGRAMMED => false,
            _ => !c.is_true(),
        })
        .map_or(reason::INVALID, Condition::reason)
}

fn listener<'a>(
    cx: &Context<'_>,
    (gw_ns, gw_name): (&'a str, &'a str),
    owner: Owner<'a>,
    l: &'a GatewayListeners,
    generation: Option<i64>,
    conflict: Option<(&'static str, String)>,
) -> (Listener<'a>, ListenerStatus) {
    let cond = |t, ok: bool, r, m: String| Condition::new(t, ok, r, m, generation);

    // Accepted: port and protocol.
    let port = u16::try_from(l.port).ok().filter(|p| *p != 0);
    let protocol = protocol_of(l);
    let passthrough = is_passthrough(l);
    let mut accepted = match (port, protocol) {
        (None, _) => cond(
            reason::ACCEPTED,
            false,
            reason::PORT_UNAVAILABLE,
            format!("port {} is not usable", l.port),
        ),
        (_, None) => cond(
            reason::ACCEPTED,
            false,
            reason::UNSUPPORTED_PROTOCOL,
            format!(
                "protocol {} is not supported (HTTP, HTTPS, TLS, TCP, UDP)",
                l.protocol
            ),
        ),
        (_, Some(Protocol::Https)) if passthrough => cond(
            reason::ACCEPTED,
            false,
            reason::UNSUPPORTED_PROTOCOL,
            "TLS mode Passthrough is not supported on HTTPS listeners".to_owned(),
        ),
        _ => cond(reason::ACCEPTED, true, reason::ACCEPTED, String::new()),
    };
    let protocol = protocol.unwrap_or(Protocol::Http);
    let port = port.unwrap_or(0);
    let tls_mode = (protocol == Protocol::Tls).then_some(if passthrough {
        TlsMode::Passthrough
    } else {
        TlsMode::Terminate
    });
    // HTTPS, and TLS terminated at the gateway, need certificates.
    let needs_certificates = protocol == Protocol::Https || tls_mode == Some(TlsMode::Terminate);
    let supported = route_kinds(protocol);

    // Route kinds.
    let mut refs_problem: Option<(&'static str, String)> = None;
    let kinds: Vec<&'static str> = match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
        // A protocol gatekit does not serve supports no route kind.
        _ if !accepted.is_true() => Vec::new(),
        None => supported.to_vec(),
        Some(kinds) => {
            let mut valid = Vec::new();
            for k in kinds {
                let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
                match supported.iter().find(|r| **r == k.kind) {
                    Some(r) if group == GATEWAY_GROUP => {
                        if !valid.contains(r) {
                            valid.push(*r);
                        }
                    }
                    _ => {
                        refs_problem.get_or_insert((
                            reason::INVALID_ROUTE_KINDS,
                            format!("route kind {group}/{} is not supported", k.kind),
                        ));
                    }
                }
            }
            valid
        }
    };

    // Certificates.
    let mut certificates = Vec::new();
    if needs_certificates && accepted.is_true() {
        let refs = l
            .tls
            .as_ref()
            .and_then(|t| t.certificate_refs.as_deref())
            .unwrap_or(&[]);
        if refs.is_empty() {
            refs_problem.get_or_insert((
                reason::INVALID_CERTIFICATE_REF,
                format!(
                    "an {} listener that terminates TLS needs tls.certificateRefs",
                    l.protocol
                ),
            ));
        }
        for r in refs {
            match certificate(cx, owner, r) {
                Ok(c) => {
                    if let Some(p) = c.problem() {
                        refs_problem.get_or_insert((reason::INVALID_CERTIFICATE_REF, p.to_owned()));
                    }
                    certificates.push(c);
                }
                Err(p) => {
                    refs_problem.get_or_insert(p);
                }
            }
        }
    }
    // Client certificates: the Gateway's spec.tls.frontend (see frontend.rs).
    let mut client_validation = None;
    if protocol == Protocol::Https
        && accepted.is_true()
        && let Some(gw) = frontend::gateway(cx, gw_ns, gw_name)
    {
        match super::frontend::gateway_validation(cx, gw, port) {
            Frontend::None => {}
            Frontend::Valid {
                validation,
                problem,
            } => {
                if let Some(p) = problem {
                    refs_problem.get_or_insert(p);
                }
                client_validation = Some(validation);
            }
            Frontend::NoneValid { problem } => {
                accepted = cond(
                    reason::ACCEPTED,
                    false,
                    frontend::NO_VALID_CA_CERTIFICATE,
                    problem.1.clone(),
                );
                refs_problem.get_or_insert(problem);
            }
        }
    }
    let resolved = match &refs_problem {
        None => cond(
            reason::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            String::new(),
        ),
        Some((r, m)) => cond(reason::RESOLVED_REFS, false, r, m.clone()),
    };

    // Conflicts: computed by the caller, among the accepted listeners of this Gateway
    // and of older Gateways on the same port.
    let hostname = hostname_of(l, protocol);
    let conflicted = match conflict {
        Some((r, m)) if accepted.is_true() => cond(reason::CONFLICTED, true, r, m),
        _ => cond(
            reason::CONFLICTED,
            false,
            reason::NO_CONFLICTS,
            String::new(),
        ),
    };

    let programmed = accepted.is_true()
        && !conflicted.is_true()
        && !kinds.is_empty()
        && (!needs_certificates || !certificates.is_empty());
    let usable_cert = !needs_certificates || certificates.iter().any(|c| c.problem().is_none());
    let programmed_c = if programmed && !usable_cert {
        cond(
            reason::PROGRAMMED,
            false,
            reason::INVALID,
            "no certificate can be served; the last good one, if any, keeps serving".to_owned(),
        )
    } else if programmed {
        cond(reason::PROGRAMMED, true, reason::PROGRAMMED, String::new())
    } else {
        cond(
            reason::PROGRAMMED,
            false,
            reason::INVALID,
            "the listener is not valid".to_owned(),
        )
    };

    let allowed = match l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    {
        None => Allowed::Same,
        Some(n) => match n.from {
            None | Some(GatewayListenersAllowedRoutesNamespacesFrom::Same) => Allowed::Same,
            Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => Allowed::All,
            Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => selector!(n.selector),
        },
    };

    let mut status = ListenerStatus::new(&l.name, kinds.clone());
    status.set_conditions(vec![accepted, resolved, programmed_c, conflicted]);
    (
        Listener {
            gateway_ns: gw_ns,
            gateway_name: gw_name,
            owner,
            status_index: 0,
            listener_index: 0,
            name: &l.name,
            port,
            protocol,
            tls_mode,
            hostname,
            kinds,
            allowed,
            certificates,
            client_validation,
            tls_settings: None,
            proxy_protocol: false,
            idle_timeout: None,
            connection_limit: None,
            client_ip: None,
            programmed,
        },
        status,
    )
}

/// Resolves a certificateRef of a listener declared by `owner` (a ListenerSet's
/// listener reads Secrets of the ListenerSet's namespace, and a grant must name
/// ListenerSets: the Gateway's grants are not inherited, GEP-1713).
fn certificate(
    cx: &Context<'_>,
    owner: Owner<'_>,
    r: &crate::types::GatewayListenersTlsCertificateRefs,
) -> Result<Certificate, (&'static str, String)> {
    tls_secret(
        cx,
        owner.kind,
        owner.ns,
        r.group.as_deref(),
        r.kind.as_deref(),
        r.namespace.as_deref(),
        &r.name,
    )
}

/// Resolves a reference from a `from_kind` object in `from_ns` to a
/// `kubernetes.io/tls` Secret (a listener's certificateRef, a Gateway's backend client
/// certificate): only core Secrets, cross-namespace only with a ReferenceGrant, with
/// PEM `tls.crt` and `tls.key`. The error's reason is `InvalidCertificateRef` or
/// `RefNotPermitted`.
pub(crate) fn tls_secret(
    cx: &Context<'_>,
    from_kind: &str,
    from_ns: &str,
    group: Option<&str>,
    kind: Option<&str>,
    namespace: Option<&str>,
    name: &str,
) -> Result<Certificate, (&'static str, String)> {
    let group = group.unwrap_or("");
    let kind = kind.unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err((
            reason::INVALID_CERTIFICATE_REF,
            format!("certificateRef kind {group}/{kind} is not supported (only Secrets)"),
        ));
    }
    let ns = namespace.unwrap_or(from_ns);
    if ns != from_ns && !cx.grant_allows(from_kind, from_ns, "", "Secret", ns, name) {
        return Err((
            reason::REF_NOT_PERMITTED,
            format!(
                "certificateRef to Secret {ns}/{name} is not permitted by any ReferenceGrant in namespace {ns}"
            ),
        ));
    }
    let Some(secret) = cx.secret(ns, name) else {
        return Err((
            reason::INVALID_CERTIFICATE_REF,
            format!("Secret {ns}/{name} not found"),
        ));
    };
    if let Some(t) = secret.type_.as_deref()
        && t != TLS_SECRET_TYPE
    {
        return Err((
            reason::INVALID_CERTIFICATE_REF,
            format!("Secret {ns}/{name} has type {t}, not {TLS_SECRET_TYPE}"),
        ));
    }
    let get = |key: &str| -> Option<Arc<[u8]>> {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| Arc::from(s.as_bytes()))
            .or_else(|| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| Arc::from(b.0.as_slice()))
            })
    };
    let pem = |key: &str| -> Result<Arc<[u8]>, String> {
        match get(key) {
            Some(v) if v.windows(11).any(|w| w == b"-----BEGIN ") => Ok(v),
            Some(_) => Err(format!("Secret {ns}/{name}: {key} is not PEM")),
            None => Err(format!("Secret {ns}/{name} has no {key}")),
        }
    };
    let secret_ref = ResourceRef::new("Secret", Some(ns), name);
    // The Secret exists: a pair that cannot be served is kept with its problem, so the
    // gateway can go on serving this listener's last good pair from it.
    let (cert_pem, key_pem, problem) = match (pem("tls.crt"), pem("tls.key")) {
        (Ok(c), Ok(k)) => {
            let origin = format!("Secret {ns}/{name}");
            let problem = gatekit_core::tls::load_certified_key_at(&c, &k, &origin, unix_now())
                .err()
                .map(|e| e.to_string());
            (c, k, problem)
        }
        (Err(p), _) | (_, Err(p)) => (Arc::from(&[][..]), Arc::from(&[][..]), Some(p)),
    };
    Ok(Certificate {
        secret: secret_ref,
        cert_pem,
        key_pem,
        problem,
    })
}

/// Seconds since the Unix epoch (certificate validity), from the system clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Groups programmed listeners by port and transport (a number may be a TCP port and a
/// UDP port), each with the routes and stream routes attached to it.
pub(crate) fn finish(
    listeners: Vec<Listener<'_>>,
    mut routes: super::route::ListenerRoutes,
    mut stream_routes: super::stream::ListenerStreamRoutes,
) -> Vec<PortListeners> {
    // By number, then TCP before UDP: one number may be both.
    let mut out: BTreeMap<(u16, bool), PortListeners> = BTreeMap::new();
    for l in listeners.into_iter().filter(|l| l.programmed) {
        let entry = out
            .entry((l.port, l.protocol.is_udp()))
            .or_insert_with(|| PortListeners {
                port: l.port,
                protocol: l.protocol,
                listeners: Vec::new(),
                lists: Vec::new(),
                flat: std::sync::OnceLock::new(),
                stream_routes: Vec::new(),
            });
        let key = (l.status_index, l.listener_index);
        let own = routes.remove(&key).unwrap_or_default();
        let start = entry.lists.iter().map(Chunked::len).sum::<usize>();
        let end = start + own.len();
        entry.lists.push(own);
        let own_streams = stream_routes.remove(&key).unwrap_or_default();
        let stream_start = entry.stream_routes.len();
        entry.stream_routes.extend(own_streams);
        entry.listeners.push(ListenerSpec {
            gateway: ResourceRef::new("Gateway", Some(l.gateway_ns), l.gateway_name),
            listener_set: (l.owner.kind == "ListenerSet")
                .then(|| ResourceRef::new("ListenerSet", Some(l.owner.ns), l.owner.name)),
            name: l.name.to_owned(),
            hostname: l.hostname,
            certificates: l.certificates,
            tls_settings: super::ctp::effective(l.tls_settings, l.client_validation),
            proxy_protocol: l.proxy_protocol,
            idle_timeout: l.idle_timeout,
            connection_limit: l.connection_limit,
            client_ip: l.client_ip,
            tls_mode: l.tls_mode,
            routes: start..end,
            stream_routes: stream_start..entry.stream_routes.len(),
        });
    }
    out.into_values().collect()
}
