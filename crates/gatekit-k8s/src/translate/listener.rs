//! Gateways and their listeners: selection by class, validation, certificates,
//! conflicts, and the per-port grouping the data plane binds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gatekit_core::ConfigError;

use super::backend::{Context, created_of, name_of, ns_of};
use super::{Certificate, ListenerSpec, PortListeners, Protocol, TranslateOptions};
use crate::manifest::ResourceSet;
use crate::status::{Condition, ListenerStatus, ResourceRef, ResourceStatus, reason};
use crate::types::{
    GATEWAY_GROUP, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom,
    GatewayListenersTlsMode, TLS_SECRET_TYPE,
};

/// Route kinds gatekit serves on HTTP and HTTPS listeners.
const ROUTE_KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

/// Which namespaces may attach routes to a listener.
pub(crate) enum Allowed<'a> {
    Same,
    All,
    Selector {
        labels: Option<&'a BTreeMap<String, String>>,
        expressions: Vec<(&'a str, &'a str, &'a [String])>,
    },
}

/// A listener of a served Gateway, programmed or not.
pub(crate) struct Listener<'a> {
    pub(crate) gateway_ns: &'a str,
    pub(crate) gateway_name: &'a str,
    pub(crate) status_index: usize,
    pub(crate) listener_index: usize,
    pub(crate) name: &'a str,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    pub(crate) hostname: Option<String>,
    pub(crate) kinds: Vec<&'static str>,
    pub(crate) allowed: Allowed<'a>,
    certificates: Vec<Certificate>,
    pub(crate) programmed: bool,
}

impl Listener<'_> {
    /// Whether routes from `route_ns` may attach.
    pub(crate) fn allows_namespace(&self, cx: &Context<'_>, route_ns: &str) -> bool {
        match &self.allowed {
            Allowed::Same => route_ns == self.gateway_ns,
            Allowed::All => true,
            Allowed::Selector {
                labels,
                expressions,
            } => {
                let ns_labels = cx.namespace_labels(route_ns);
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

/// Validates the listeners of every served Gateway, sets Gateway and listener
/// conditions (all but `attachedRoutes`), and returns the listeners and the problems
/// found.
pub(crate) fn listeners<'a>(
    cx: &Context<'a>,
    options: &TranslateOptions,
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
    let mut out = Vec::new();
    // Per port: the protocol and hostnames of the listeners accepted so far.
    let mut ports: HashMap<u16, (Protocol, Vec<Option<String>>)> = HashMap::new();
    let mut errors = Vec::new();
    for gw in gateways {
        let ns = ns_of(&gw.metadata);
        let name = name_of(&gw.metadata);
        let generation = gw.metadata.generation;
        let status_index = statuses.len();
        let mut status =
            ResourceStatus::new(ResourceRef::new("Gateway", Some(ns), name), generation);
        // spec.addresses: refused unless the gateway Service can honour it (then each
        // request is checked against its addresses, after translation).
        let refused = super::address::refused_request(options, gw);
        let address_rejected = refused.is_some();
        if let Some(message) = &refused {
            errors.push(ConfigError::new(
                "spec.addresses",
                format!("Gateway {ns}/{name}: {message}"),
            ));
        }
        let names: Vec<&str> = gw.spec.listeners.iter().map(|l| l.name.as_str()).collect();
        let keys: Vec<_> = gw.spec.listeners.iter().map(distinct_key).collect();
        let mut programmed_count = 0;
        let mut invalid = Vec::new();
        let mut accepted_keys = Vec::new();
        for (i, l) in gw.spec.listeners.iter().enumerate() {
            let field = format!("spec.listeners[{i}]");
            let conflict = conflict_within(i, &keys, &names)
                .or_else(|| keys[i].as_ref().and_then(|k| conflict_across(k, &ports)));
            let (listener, mut lstatus) = listener(cx, ns, name, l, generation, conflict);
            let mut listener = listener;
            listener.status_index = status_index;
            listener.listener_index = i;
            if address_rejected && listener.programmed {
                listener.programmed = false;
                lstatus.replace_condition(Condition::new(
                    reason::PROGRAMMED,
                    false,
                    reason::INVALID,
                    "the Gateway is not accepted (UnsupportedAddress)",
                    generation,
                ));
            }
            if let Some(k) = &keys[i]
                && lstatus
                    .condition(reason::CONFLICTED)
                    .is_some_and(|c| !c.is_true())
            {
                accepted_keys.push(k.clone());
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
                        format!("Gateway {ns}/{name} listener {}: {c}", l.name),
                    ));
                }
            }
            if listener.programmed {
                programmed_count += 1;
            } else if !address_rejected {
                invalid.push(format!("{} ({})", l.name, why_invalid(&lstatus)));
            }
            status.listeners_mut().push(lstatus);
            out.push(listener);
        }
        if !address_rejected {
            // Later Gateways conflict with these listeners (the oldest Gateway wins).
            for (port, protocol, hostname) in accepted_keys {
                let entry = ports.entry(port).or_insert_with(|| (protocol, Vec::new()));
                entry.1.push(hostname);
            }
        }
        let total = gw.spec.listeners.len();
        let invalid_list = invalid.join(", ");
        let accepted = if let Some(message) = &refused {
            Condition::new(
                reason::ACCEPTED,
                false,
                reason::UNSUPPORTED_ADDRESS,
                message.clone(),
                generation,
            )
        } else if programmed_count == total {
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
        status.push_condition(accepted);
        status.push_condition(if address_rejected {
            Condition::new(
                reason::PROGRAMMED,
                false,
                reason::ADDRESS_NOT_ASSIGNED,
                "no requested address is assigned",
                generation,
            )
        } else if programmed_count > 0 {
            Condition::new(reason::PROGRAMMED, true, reason::PROGRAMMED, "", generation)
        } else {
            Condition::new(
                reason::PROGRAMMED,
                false,
                reason::INVALID,
                "no listener is programmed",
                generation,
            )
        });
        statuses.push(status);
    }
    (out, errors)
}

/// The fields that make an accepted listener distinct (port, protocol, hostname), or
/// `None` if the listener is not accepted (port or protocol unusable).
fn distinct_key(l: &GatewayListeners) -> Option<(u16, Protocol, Option<String>)> {
    let port = u16::try_from(l.port).ok().filter(|p| *p != 0)?;
    let protocol = match l.protocol.as_str() {
        "HTTP" => Protocol::Http,
        "HTTPS" => Protocol::Https,
        _ => return None,
    };
    let passthrough = matches!(
        l.tls.as_ref().and_then(|t| t.mode.as_ref()),
        Some(GatewayListenersTlsMode::Passthrough)
    );
    if protocol == Protocol::Https && passthrough {
        return None;
    }
    let hostname = l
        .hostname
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase);
    Some((port, protocol, hostname))
}

/// Whether listener `i` of a Gateway is indistinct from another of its listeners. The
/// spec: no conflicting listener is picked as the winner, every one is `Conflicted`.
/// A protocol conflict is reported before a hostname conflict.
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
            .filter(|(_, k)| k.0 == *port)
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

/// Whether a listener conflicts with an accepted listener of an older Gateway (served
/// Gateways share the data plane's ports, so the older one keeps the port).
fn conflict_across(
    (port, protocol, hostname): &(u16, Protocol, Option<String>),
    ports: &HashMap<u16, (Protocol, Vec<Option<String>>)>,
) -> Option<(&'static str, String)> {
    match ports.get(port) {
        Some((p, _)) if p != protocol => Some((
            reason::PROTOCOL_CONFLICT,
            format!("port {port} is already used with another protocol by an older Gateway"),
        )),
        Some((_, hosts)) if hosts.contains(hostname) => Some((
            reason::HOSTNAME_CONFLICT,
            format!(
                "a listener of an older Gateway on port {port} already has hostname {}",
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
    cx: &Context<'a>,
    gw_ns: &'a str,
    gw_name: &'a str,
    l: &'a GatewayListeners,
    generation: Option<i64>,
    conflict: Option<(&'static str, String)>,
) -> (Listener<'a>, ListenerStatus) {
    let cond = |t, ok: bool, r, m: String| Condition::new(t, ok, r, m, generation);

    // Accepted: port and protocol.
    let port = u16::try_from(l.port).ok().filter(|p| *p != 0);
    let protocol = match l.protocol.as_str() {
        "HTTP" => Some(Protocol::Http),
        "HTTPS" => Some(Protocol::Https),
        _ => None,
    };
    let passthrough = matches!(
        l.tls.as_ref().and_then(|t| t.mode.as_ref()),
        Some(GatewayListenersTlsMode::Passthrough)
    );
    let accepted = match (port, protocol) {
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
            format!("protocol {} is not supported (HTTP, HTTPS)", l.protocol),
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

    // Route kinds.
    let mut refs_problem: Option<(&'static str, String)> = None;
    let kinds: Vec<&'static str> = match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
        // A protocol gatekit does not serve supports no route kind.
        _ if !accepted.is_true() => Vec::new(),
        None => ROUTE_KINDS.to_vec(),
        Some(kinds) => {
            let mut valid = Vec::new();
            for k in kinds {
                let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
                match ROUTE_KINDS.iter().find(|r| **r == k.kind) {
                    Some(r) if group == GATEWAY_GROUP => valid.push(*r),
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
    if protocol == Protocol::Https && accepted.is_true() {
        let refs = l
            .tls
            .as_ref()
            .and_then(|t| t.certificate_refs.as_deref())
            .unwrap_or(&[]);
        if refs.is_empty() {
            refs_problem.get_or_insert((
                reason::INVALID_CERTIFICATE_REF,
                "an HTTPS listener needs tls.certificateRefs".to_owned(),
            ));
        }
        for r in refs {
            match certificate(cx, gw_ns, r) {
                Ok(c) => certificates.push(c),
                Err(p) => {
                    refs_problem.get_or_insert(p);
                }
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
    let hostname = l
        .hostname
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase);
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
        && (protocol == Protocol::Http || !certificates.is_empty());
    let programmed_c = if programmed {
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
            Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => {
                let sel = n.selector.as_ref();
                Allowed::Selector {
                    labels: sel.and_then(|s| s.match_labels.as_ref()),
                    expressions: sel
                        .and_then(|s| s.match_expressions.as_ref())
                        .map(|e| {
                            e.iter()
                                .map(|e| {
                                    (
                                        e.key.as_str(),
                                        e.operator.as_str(),
                                        e.values.as_deref().unwrap_or(&[]),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            }
        },
    };

    let mut status = ListenerStatus::new(&l.name, kinds.clone());
    status.set_conditions(vec![accepted, resolved, programmed_c, conflicted]);
    (
        Listener {
            gateway_ns: gw_ns,
            gateway_name: gw_name,
            status_index: 0,
            listener_index: 0,
            name: &l.name,
            port,
            protocol,
            hostname,
            kinds,
            allowed,
            certificates,
            programmed,
        },
        status,
    )
}

fn certificate(
    cx: &Context<'_>,
    gw_ns: &str,
    r: &crate::types::GatewayListenersTlsCertificateRefs,
) -> Result<Certificate, (&'static str, String)> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err((
            reason::INVALID_CERTIFICATE_REF,
            format!("certificateRef kind {group}/{kind} is not supported (only Secrets)"),
        ));
    }
    let ns = r.namespace.as_deref().unwrap_or(gw_ns);
    if ns != gw_ns && !cx.grant_allows("Gateway", gw_ns, "", "Secret", ns, &r.name) {
        return Err((
            reason::REF_NOT_PERMITTED,
            format!(
                "certificateRef to Secret {ns}/{} is not permitted by any ReferenceGrant in namespace {ns}",
                r.name
            ),
        ));
    }
    let Some(secret) = cx.secret(ns, &r.name) else {
        return Err((
            reason::INVALID_CERTIFICATE_REF,
            format!("Secret {ns}/{} not found", r.name),
        ));
    };
    if let Some(t) = secret.type_.as_deref()
        && t != TLS_SECRET_TYPE
    {
        return Err((
            reason::INVALID_CERTIFICATE_REF,
            format!("Secret {ns}/{} has type {t}, not {TLS_SECRET_TYPE}", r.name),
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
    let pem = |key: &str| -> Result<Arc<[u8]>, (&'static str, String)> {
        match get(key) {
            Some(v) if v.windows(11).any(|w| w == b"-----BEGIN ") => Ok(v),
            Some(_) => Err((
                reason::INVALID_CERTIFICATE_REF,
                format!("Secret {ns}/{}: {key} is not PEM", r.name),
            )),
            None => Err((
                reason::INVALID_CERTIFICATE_REF,
                format!("Secret {ns}/{} has no {key}", r.name),
            )),
        }
    };
    Ok(Certificate {
        secret: ResourceRef::new("Secret", Some(ns), &r.name),
        cert_pem: pem("tls.crt")?,
        key_pem: pem("tls.key")?,
    })
}

/// Groups programmed listeners by port, each with the routes attached to it.
pub(crate) fn finish(
    listeners: Vec<Listener<'_>>,
    mut routes: super::route::ListenerRoutes,
) -> Vec<PortListeners> {
    let mut out: BTreeMap<u16, PortListeners> = BTreeMap::new();
    for l in listeners.into_iter().filter(|l| l.programmed) {
        let entry = out.entry(l.port).or_insert_with(|| PortListeners {
            port: l.port,
            protocol: l.protocol,
            listeners: Vec::new(),
            routes: Vec::new(),
        });
        let own = routes
            .remove(&(l.status_index, l.listener_index))
            .unwrap_or_default();
        let start = entry.routes.len();
        entry.routes.extend(own);
        entry.listeners.push(ListenerSpec {
            gateway: ResourceRef::new("Gateway", Some(l.gateway_ns), l.gateway_name),
            name: l.name.to_owned(),
            hostname: l.hostname,
            certificates: l.certificates,
            routes: start..entry.routes.len(),
        });
    }
    out.into_values().collect()
}
