//! Policy attachment (GEP-713): what BackendPolicies and TrafficPolicies share, and the
//! TrafficPolicy hierarchy.
//!
//! Both kinds are attached oldest first (`creationTimestamp`, then namespace and name),
//! so an older policy always wins a contested target. Each gets one `Accepted`
//! condition: `True` when it applies to at least one target (the message lists the
//! targets it does not apply to and why), else `False` with reason `TargetNotFound` or
//! `Conflicted` (the message names the older policy that won). The loaders refuse
//! invalid policies; a hand-built [`ResourceSet`](crate::ResourceSet) may still carry
//! one, which is then refused alone (`Accepted=False`, reason `Invalid`, an error per
//! field) and never half applied.
//!
//! # TrafficPolicy
//!
//! A TrafficPolicy targets a Gateway (or one listener, `sectionName`), an HTTPRoute or a
//! GRPCRoute (or one rule, `sectionName` = the rule's `name`). Two policies may target
//! the same object as long as they set different fields (`retry`, `rateLimit`,
//! `limits.maxConcurrentRequests`, `limits.maxRequestBodyBytes`); when they share one,
//! the newer one is not applied to that target at all (`Conflicted`). Each route rule
//! then takes, field by field, the value of the most specific target that sets it:
//! Gateway < listener < route < rule. An HTTPRoute rule's own `retry` beats every
//! policy's. A route attached through listeners whose policies differ becomes one core
//! route per distinct policy on a port, each with its listeners' hostnames.
//!
//! A rate limit is copied into every rule it reaches, so each rule has its own buckets,
//! even when the policy targets a Gateway (Envoy Gateway's default; not one bucket
//! shared by the Gateway's routes).
//!
//! # BackendTrafficPolicy targets and status
//!
//! A BackendTrafficPolicy's targets are the objects its `targetSelectors` select (in
//! its namespace, oldest first), then its `targetRefs` not already among them, each
//! once (Envoy Gateway's order). Its status is Envoy Gateway's: ancestors are Gateways,
//! the targeted one or, for a route target, those the route's `parentRefs` name (with
//! their `sectionName`); a missing target or an unserved kind is reported as itself.
//!
//! # BackendTrafficPolicy upstream settings
//!
//! A BackendTrafficPolicy's `loadBalancer`, `healthCheck` and connection timeouts
//! (`timeout.tcp.connectTimeout`, `timeout.http.connectionIdleTimeout`) apply to the
//! Services its targets reach: the resolved backendRefs of the targeted route (or rule), or of every
//! HTTPRoute and GRPCRoute whose parentRefs name the targeted Gateway (or listener, or
//! the whole Gateway), in the policy's own namespace (the settings apply to every route
//! to the Service, so a policy never changes another namespace's Service; the target's
//! message says so). gatekit balances per Service, not per route as Envoy does, so
//! policies meet on Services: oldest first, a policy setting a field (see
//! `BtpUpstream::FIELDS`) to another value than an older one on the same Service is
//! not applied to that Service at all; the Service appears in its status
//! (`Accepted=False`, `Conflicted`, naming the fields and the older policy). The
//! route/Gateway hierarchy and `mergeType` play no part here. A gatekit BackendPolicy
//! on the Service wins field by field; the status names the fields it took
//! (`Conflicted` at the Service when it took them all). A target whose every Service
//! refused the policy's settings, when the policy sets nothing else, is `Conflicted`.
//! A Gateway target also reaches the Services of the TCPRoutes and TLSRoutes attached
//! to it (their balancer is the same per-Service one).
//!
//! A TCPRoute, TLSRoute or UDPRoute target (the route kinds are one table,
//! `all_routes`) reaches its route's Services the same way; its `circuitBreaker`
//! becomes the route's `max_connections` (see `stream.rs`), with the precedence of an
//! HTTPRoute rule's (`effective_btp`). Fields that only mean something for HTTP
//! requests (`retry`, `rateLimit`, `timeout.http.requestTimeout`,
//! `timeout.http.connectionIdleTimeout`; `proxyProtocol` on a UDPRoute) refuse a policy
//! targeting a stream route (`Unsupported`, naming them).
//!
//! `proxyProtocol` is one of these per-Service settings, written on stream connections
//! only: a policy setting it on an HTTPRoute or GRPCRoute target is refused
//! (`Unsupported`: a pooled HTTP connection serves many clients, one header cannot name
//! them), and on a Gateway target the message names each Service that HTTP routes reach.

use std::collections::{BTreeMap, HashMap};

use gatekit_core::ConfigError;
use gatekit_core::route::Rule;

use super::backend::{Context, MetaView, RefSpec, created_of, name_of, ns_of};
use super::route::{RawParent, raw_parents};
use crate::ResourceSet;
use crate::status::{AncestorRef, AncestorStatus, Condition, ResourceRef, ResourceStatus, reason};
use crate::types::BackendTrafficPolicy;
use crate::types::btp::{BtpTargetRef, BtpUpstream, BtpValues, STREAM_KINDS, served_kind};
use crate::types::traffic::{TargetKind, TrafficTargetRef, TrafficValues};
use crate::types::{GATEWAY_GROUP, ObjectMeta};

/// The entry of `map` for a target (no key is built when the map is empty: most
/// configurations have no policies).
fn by_target<'m, V>(
    map: &'m HashMap<TargetKey, V>,
    kind: &'static str,
    ns: &str,
    name: &str,
    section: Option<&str>,
) -> Option<&'m V> {
    if map.is_empty() {
        return None;
    }
    let key: TargetKey = (
        kind,
        ns.to_owned(),
        name.to_owned(),
        section.map(str::to_owned),
    );
    map.get(&key)
}

/// A route's parentRefs and its rules' backendRefs, whatever the route kind.
struct RouteBackends<'a> {
    kind: &'static str,
    ns: &'a str,
    name: &'a str,
    meta: &'a dyn MetaView,
    /// How its backendRefs resolve.
    resolve: Resolve,
    parents: Vec<ParentView<'a>>,
    /// Each rule's name and backendRefs.
    rules: Vec<(Option<&'a str>, Vec<RefSpec<'a>>)>,
}

/// How a route kind's backendRefs resolve to Service ports.
#[derive(Clone, Copy)]
enum Resolve {
    /// HTTPRoute (`grpc: false`) or GRPCRoute.
    Http { grpc: bool },
    /// TLSRoute or TCPRoute (`udp: false`), UDPRoute.
    Stream { udp: bool },
}

/// The items of an optional list (HTTPRoute and GRPCRoute fields).
fn opt_items<T, L: AsRef<[T]>>(v: &Option<L>) -> &[T] {
    v.as_ref().map_or(&[], AsRef::as_ref)
}

/// The items of a list (stream route fields).
fn items<T>(v: &[T]) -> &[T] {
    v
}

/// [`RouteBackends`] of any route kind (their generated types differ, their fields are
/// named alike; `$list` reads a kind's rule and backendRef lists).
macro_rules! route_backends {
    ($r:expr, $kind:literal, $resolve:expr, $list:ident) => {{
        let r = $r;
        RouteBackends {
            kind: $kind,
            ns: ns_of(&r.metadata),
            name: name_of(&r.metadata),
            meta: &r.metadata,
            resolve: $resolve,
            parents: r
                .spec
                .parent_refs
                .iter()
                .flatten()
                .map(|p| ParentView {
                    group: p.group.as_deref(),
                    kind: p.kind.as_deref(),
                    namespace: p.namespace.as_deref(),
                    name: &p.name,
                    section: p.section_name.as_deref(),
                })
                .collect(),
            rules: $list(&r.spec.rules)
                .iter()
                .map(|rule| {
                    let refs = $list(&rule.backend_refs)
                        .iter()
                        .map(|b| RefSpec {
                            group: b.group.as_deref(),
                            kind: b.kind.as_deref(),
                            name: &b.name,
                            namespace: b.namespace.as_deref(),
                            port: b.port,
                        })
                        .collect();
                    (rule.name.as_deref(), refs)
                })
                .collect(),
        }
    }};
}

/// Every route a BackendTrafficPolicy may target, of every kind: the table of route
/// kinds.
fn all_routes(resources: &ResourceSet) -> impl Iterator<Item = RouteBackends<'_>> {
    let http = Resolve::Http { grpc: false };
    let grpc = Resolve::Http { grpc: true };
    let tcp = Resolve::Stream { udp: false };
    let udp = Resolve::Stream { udp: true };
    let r = resources;
    (r.http_routes
        .iter()
        .map(move |r| route_backends!(r, "HTTPRoute", http, opt_items)))
    .chain(
        r.grpc_routes
            .iter()
            .map(move |r| route_backends!(r, "GRPCRoute", grpc, opt_items)),
    )
    .chain(
        r.tcp_routes
            .iter()
            .map(move |r| route_backends!(r, "TCPRoute", tcp, items)),
    )
    .chain(
        r.tls_routes
            .iter()
            .map(move |r| route_backends!(r, "TLSRoute", tcp, items)),
    )
    .chain(
        r.udp_routes
            .iter()
            .map(move |r| route_backends!(r, "UDPRoute", udp, items)),
    )
}

/// A route's parentRef, whatever the route kind.
struct ParentView<'a> {
    group: Option<&'a str>,
    kind: Option<&'a str>,
    namespace: Option<&'a str>,
    name: &'a str,
    section: Option<&'a str>,
}

/// A TrafficPolicy target: kind, namespace, name, section.
pub(crate) type TargetKey = (&'static str, String, String, Option<String>);

/// What the policies attached to one target set, and which policy set each field.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub(crate) values: TrafficValues,
    owners: BTreeMap<&'static str, String>,
}

/// What BackendTrafficPolicies set on one Service, and which policy set each field.
#[derive(Debug, Default)]
pub(crate) struct ClaimedUpstream {
    pub(crate) values: BtpUpstream,
    owners: BTreeMap<&'static str, String>,
}

/// `items` oldest first (`creationTimestamp`, then namespace, then name).
pub(crate) fn by_age<T>(items: &[T], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<&T> {
    let mut out: Vec<&T> = items.iter().collect();
    out.sort_by_key(|p| {
        let m = meta(p);
        (created_of(m), ns_of(m), name_of(m))
    });
    out
}

/// Where one policy ended up, for its `Accepted` condition and one per target.
#[derive(Debug)]
pub(crate) struct Attachment {
    attached: usize,
    problems: Vec<String>,
    failure: &'static str,
    /// Per target: the reason it is not applied there (`None`: applied) and why.
    targets: Vec<(AncestorRef, Option<&'static str>, String)>,
    /// Fields accepted but ignored, for a `Warning` condition.
    warnings: Vec<String>,
}

/// The condition type saying a policy is applied with fields ignored (Envoy Gateway's
/// `Warning`, status `True`).
pub(crate) const WARNING: &str = "Warning";
/// The reason of a [`WARNING`] condition naming ignored fields.
pub(crate) const IGNORED_FIELDS: &str = "IgnoredFields";

impl Attachment {
    pub(crate) fn new() -> Self {
        Self {
            attached: 0,
            problems: Vec::new(),
            failure: reason::TARGET_NOT_FOUND,
            targets: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The policy is applied with a field ignored: `Warning=True` for the policy and
    /// each target it applies to.
    pub(crate) fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    /// The policy applies to one more target.
    pub(crate) fn attached(&mut self, target: AncestorRef) {
        self.attached += 1;
        self.targets.push((target, None, String::new()));
    }

    /// A target does not exist.
    pub(crate) fn not_found(&mut self, target: AncestorRef, message: String) {
        self.targets
            .push((target, Some(reason::TARGET_NOT_FOUND), message.clone()));
        self.problems.push(message);
    }

    /// The policy applies to one more target, with a remark (empty: none).
    pub(crate) fn attached_with(&mut self, target: AncestorRef, note: String) {
        self.attached += 1;
        if !note.is_empty() {
            self.problems.push(note.clone());
        }
        self.targets.push((target, None, note));
    }

    /// A target does not exist; `ancestors` are where its status goes.
    pub(crate) fn not_found_all(&mut self, ancestors: Vec<AncestorRef>, message: String) {
        for a in ancestors {
            self.targets
                .push((a, Some(reason::TARGET_NOT_FOUND), message.clone()));
        }
        self.problems.push(message);
    }

    /// The policy applies to one more target, reported at `ancestors` (none: the
    /// target still counts), with a remark (empty: none).
    pub(crate) fn attached_with_all(&mut self, ancestors: Vec<AncestorRef>, note: String) {
        self.attached += 1;
        if !note.is_empty() {
            self.problems.push(note.clone());
        }
        for a in ancestors {
            self.targets.push((a, None, note.clone()));
        }
    }

    /// An older policy holds a target reported at `ancestors`.
    pub(crate) fn conflicted_all(&mut self, ancestors: Vec<AncestorRef>, message: String) {
        for a in ancestors {
            self.targets
                .push((a, Some(reason::CONFLICTED_POLICY), message.clone()));
        }
        self.problems.push(message);
        self.failure = reason::CONFLICTED_POLICY;
    }

    /// An older policy holds a target.
    pub(crate) fn conflicted(&mut self, target: AncestorRef, message: String) {
        self.targets
            .push((target, Some(reason::CONFLICTED_POLICY), message.clone()));
        self.problems.push(message);
        self.failure = reason::CONFLICTED_POLICY;
    }

    /// The policy's status: `Accepted`, see the [module docs](self), for the policy and
    /// per target. An ancestor reached twice (a target named twice, two routes under
    /// one Gateway) is reported once: its first failure, else its first success (as
    /// Envoy Gateway, whose errors replace an ancestor's `Accepted`).
    pub(crate) fn status(self, resource: ResourceRef, generation: Option<i64>) -> ResourceStatus {
        let mut status = ResourceStatus::new(resource, generation);
        let message = self.problems.join("; ");
        let warning = (self.attached > 0 && !self.warnings.is_empty()).then(|| {
            Condition::new(
                WARNING,
                true,
                IGNORED_FIELDS,
                self.warnings.join("; "),
                generation,
            )
        });
        status.push_condition(if self.attached > 0 {
            Condition::new(
                reason::ACCEPTED,
                true,
                reason::ACCEPTED,
                message,
                generation,
            )
        } else {
            Condition::new(reason::ACCEPTED, false, self.failure, message, generation)
        });
        let mut seen: Vec<&AncestorRef> = Vec::new();
        for (i, (target, _, _)) in self.targets.iter().enumerate() {
            if seen.contains(&target) {
                continue;
            }
            seen.push(target);
            let same = || self.targets[i..].iter().filter(|(t, _, _)| t == target);
            let (_, failure, message) = same()
                .find(|(_, f, _)| f.is_some())
                .unwrap_or(&self.targets[i]);
            let conditions = match failure {
                None => std::iter::once(Condition::new(
                    reason::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    message.clone(),
                    generation,
                ))
                .chain(warning.clone())
                .collect(),
                Some(r) => vec![Condition::new(
                    reason::ACCEPTED,
                    false,
                    r,
                    message.clone(),
                    generation,
                )],
            };
            status.push_ancestor(AncestorStatus::new(target.clone(), conditions));
        }
        if let Some(w) = warning {
            status.push_condition(w);
        }
        status
    }
}

/// The status of a policy refused for invalid values (see the [module docs](self)), the
/// same `Accepted=False` for the policy and each of its `targets`; each problem also
/// goes to `errors`, naming the policy.
pub(crate) fn invalid(
    resource: ResourceRef,
    generation: Option<i64>,
    targets: Vec<AncestorRef>,
    problems: Vec<ConfigError>,
    errors: &mut Vec<ConfigError>,
) -> ResourceStatus {
    let message = problems
        .iter()
        .map(|e| format!("{}: {}", e.field(), e.reason()))
        .collect::<Vec<_>>()
        .join("; ");
    for e in problems {
        errors.push(ConfigError::new(
            e.field(),
            format!("{resource}: {}", e.reason()),
        ));
    }
    refused(resource, generation, targets, reason::INVALID, message)
}

/// `Accepted=False` with `reason` and `message` for the policy and each of its targets.
pub(crate) fn refused(
    resource: ResourceRef,
    generation: Option<i64>,
    targets: Vec<AncestorRef>,
    failure: &'static str,
    message: String,
) -> ResourceStatus {
    let mut status = ResourceStatus::new(resource, generation);
    let condition = Condition::new(reason::ACCEPTED, false, failure, message, generation);
    let mut seen: Vec<AncestorRef> = Vec::new();
    for t in targets {
        if !seen.contains(&t) {
            status.push_ancestor(AncestorStatus::new(t.clone(), vec![condition.clone()]));
            seen.push(t);
        }
    }
    status.push_condition(condition);
    status
}

/// What each target's sections are: a Gateway's listener names, a route's rule names.
pub(crate) fn sections(resources: &ResourceSet) -> HashMap<(&str, &str, &str), Vec<Option<&str>>> {
    let mut sections: HashMap<(&str, &str, &str), Vec<Option<&str>>> = HashMap::new();
    for g in &resources.gateways {
        sections.insert(
            ("Gateway", ns_of(&g.metadata), name_of(&g.metadata)),
            g.spec
                .listeners
                .iter()
                .map(|l| Some(l.name.as_str()))
                .collect(),
        );
    }
    for r in all_routes(resources) {
        sections.insert(
            (r.kind, r.ns, r.name),
            r.rules.iter().map(|(name, _)| *name).collect(),
        );
    }
    sections
}

/// A TrafficPolicy target as a status ancestor.
fn traffic_ancestor(ns: &str, t: &TrafficTargetRef) -> AncestorRef {
    AncestorRef {
        group: GATEWAY_GROUP,
        kind: t.kind.as_str().to_owned(),
        namespace: ns.to_owned(),
        name: t.name.clone(),
        section_name: t.section_name.clone(),
    }
}

/// A BackendPolicy target (a Service) as a status ancestor.
pub(crate) fn service_ancestor(ns: &str, name: &str) -> AncestorRef {
    AncestorRef {
        group: "",
        kind: "Service".to_owned(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        section_name: None,
    }
}

impl Context<'_> {
    /// Attaches every TrafficPolicy to its targets (oldest first; see the
    /// [module docs](self)).
    pub(crate) fn attach_traffic_policies(&mut self, statuses: &mut Vec<ResourceStatus>) {
        let resources = self.resources;
        if resources.traffic_policies.is_empty() {
            return;
        }
        let sections = sections(resources);
        for p in by_age(&resources.traffic_policies, |p| &p.metadata) {
            let ns = ns_of(&p.metadata);
            let name = name_of(&p.metadata);
            let owner = format!("{ns}/{name}");
            let generation = p.metadata.generation;
            let resource = ResourceRef::new("TrafficPolicy", Some(ns), name);
            let values = match p.spec.values(&owner) {
                Ok(v) => v,
                Err(problems) => {
                    let targets = p
                        .spec
                        .target_refs
                        .iter()
                        .map(|t| traffic_ancestor(ns, t))
                        .collect();
                    statuses.push(invalid(
                        resource,
                        generation,
                        targets,
                        problems,
                        &mut self.errors,
                    ));
                    continue;
                }
            };
            let fields = values.fields();
            let mut attachment = Attachment::new();
            for t in &p.spec.target_refs {
                let kind = t.kind.as_str();
                let section = t.section_name.as_deref();
                let target = match section {
                    Some(s) => format!("{kind} {ns}/{} section {s}", t.name),
                    None => format!("{kind} {ns}/{}", t.name),
                };
                let exists = sections
                    .get(&(kind, ns, t.name.as_str()))
                    .is_some_and(|known| section.is_none_or(|s| known.contains(&Some(s))));
                let ancestor = traffic_ancestor(ns, t);
                if !exists {
                    attachment.not_found(ancestor, format!("{target} not found"));
                    continue;
                }
                let key: TargetKey = (kind, ns.to_owned(), t.name.clone(), t.section_name.clone());
                let claimed = self.traffic.entry(key).or_default();
                let taken: Vec<String> = fields
                    .iter()
                    .filter_map(|f| {
                        claimed
                            .owners
                            .get(f)
                            .filter(|o| **o != owner)
                            .map(|o| format!("{f} (set by the older TrafficPolicy {o})"))
                    })
                    .collect();
                if !taken.is_empty() {
                    attachment.conflicted(
                        ancestor,
                        format!("{target}: not applied, {}", taken.join(", ")),
                    );
                    continue;
                }
                claimed.values.overlay(&values);
                for f in &fields {
                    claimed.owners.insert(f, owner.clone());
                }
                attachment.attached(ancestor);
            }
            statuses.push(attachment.status(resource, generation));
        }
    }

    fn traffic_of(
        &self,
        kind: &'static str,
        ns: &str,
        name: &str,
        section: Option<&str>,
    ) -> Option<&TrafficValues> {
        by_target(&self.traffic, kind, ns, name, section).map(|c| &c.values)
    }

    /// What a Gateway's policies set for one of its listeners: the Gateway-wide values,
    /// overlaid with those targeting `listener` (`None` for a ListenerSet's listener,
    /// which inherits only the Gateway-wide ones: a `sectionName` names the Gateway's own
    /// listeners).
    pub(crate) fn listener_traffic(
        &self,
        gw_ns: &str,
        gw: &str,
        listener: Option<&str>,
    ) -> TrafficValues {
        let kind = TargetKind::Gateway.as_str();
        let mut out = TrafficValues::default();
        for section in std::iter::once(None).chain(listener.map(Some)) {
            if let Some(v) = self.traffic_of(kind, gw_ns, gw, section) {
                out.overlay(v);
            }
            if let Some(b) = self.btp_of(kind, gw_ns, gw, section) {
                out.btp = Some(b.clone());
            }
        }
        out
    }

    fn btp_of(
        &self,
        kind: &'static str,
        ns: &str,
        name: &str,
        section: Option<&str>,
    ) -> Option<&BtpValues> {
        by_target(&self.btp, kind, ns, name, section).map(|(_, v)| v)
    }

    /// The BackendTrafficPolicy values for a route's rule (`rule`: its name) under a
    /// listener whose policies set `parent`: a rule's policy replaces the route's; a
    /// route's replaces the listener's, or merges with it field by field (`mergeType`).
    fn effective_btp(
        &self,
        kind: &'static str,
        ns: &str,
        name: &str,
        rule: Option<&str>,
        parent: Option<BtpValues>,
    ) -> Option<BtpValues> {
        let own = rule
            .and_then(|s| self.btp_of(kind, ns, name, Some(s)))
            .or_else(|| self.btp_of(kind, ns, name, None));
        match (parent, own) {
            (Some(mut parent), Some(own)) if own.merge => {
                parent.overlay(own);
                Some(parent)
            }
            (_, Some(own)) => Some(own.clone()),
            (parent, None) => parent,
        }
    }

    /// The `circuitBreaker.maxConnections` of a stream route (`kind` TLSRoute, TCPRoute
    /// or UDPRoute) served by the listener `section` of Gateway `gw_ns/gw` (`None`: a
    /// ListenerSet's listener): its BackendTrafficPolicy's over the listener's and the
    /// Gateway's, as for an HTTPRoute rule. A policy naming one rule (`sectionName`)
    /// counts for the whole route (its rules are one weighted list); the first named
    /// rule's wins.
    pub(crate) fn stream_max_connections(
        &self,
        (kind, ns, name): (&'static str, &str, &str),
        rules: &[Option<&str>],
        (gw_ns, gw, section): (&str, &str, Option<&str>),
    ) -> Option<u32> {
        let parent = self.listener_traffic(gw_ns, gw, section).btp;
        let rule = rules
            .iter()
            .flatten()
            .copied()
            .find(|r| self.btp_of(kind, ns, name, Some(r)).is_some());
        self.effective_btp(kind, ns, name, rule, parent)?
            .breaker?
            .max_connections
    }

    /// Sets each rule's traffic policy from `parent` (what a listener's policies set),
    /// overlaid with the route's and the rule's; a rule's own retry (HTTPRoute `retry`,
    /// already in the rule) is kept.
    pub(crate) fn apply_traffic(
        &self,
        kind: &'static str,
        ns: &str,
        name: &str,
        parent: &TrafficValues,
        rules: &mut [Rule],
    ) {
        let route = self.traffic_of(kind, ns, name, None);
        for rule in rules {
            let mut v = parent.clone();
            if let Some(r) = route {
                v.overlay(r);
            }
            if let Some(section) = rule.name.as_deref()
                && let Some(r) = self.traffic_of(kind, ns, name, Some(section))
            {
                v.overlay(r);
            }
            let btp = self.effective_btp(kind, ns, name, rule.name.as_deref(), v.btp.take());
            if let Some(b) = btp {
                // The route's own settings and gatekit's TrafficPolicies win.
                if v.retry.is_none() {
                    v.retry = b.retry;
                }
                if v.rate_limits.is_none() {
                    v.rate_limits = b.rate_limits;
                }
                if rule.timeouts.request.is_none() {
                    rule.timeouts.request = b.request_timeout;
                }
                if rule.timeouts.backend_request.is_none() {
                    rule.timeouts.backend_request = b.per_try_timeout;
                }
                if let Some(breaker) = b.breaker {
                    for backend in &mut rule.backends {
                        backend.breaker.get_or_insert_with(|| Box::new(breaker));
                    }
                }
            }
            rule.update_policy(|policy| {
                if policy.retry.is_none() {
                    policy.retry = v.retry;
                }
                policy.rate_limits = v.rate_limits.unwrap_or_default();
                policy.limits.max_concurrent_requests = v.max_concurrent_requests;
                policy.limits.max_request_body = v.max_request_body;
            });
        }
    }
}

/// One target of a BackendTrafficPolicy, from `targetRefs`/`targetRef` or matched by
/// a `targetSelectors` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BtpTarget {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) section: Option<String>,
}

impl BtpTarget {
    fn of_ref(t: &BtpTargetRef) -> Self {
        Self {
            kind: t.kind.clone(),
            name: t.name.clone(),
            section: t.section_name.clone(),
        }
    }

    /// The target itself as a status ancestor.
    fn as_ancestor(&self, ns: &str) -> AncestorRef {
        AncestorRef {
            group: GATEWAY_GROUP,
            kind: self.kind.clone(),
            namespace: ns.to_owned(),
            name: self.name.clone(),
            section_name: self.section.clone(),
        }
    }
}

/// A Gateway (listener with `section`) as a policy ancestor, as Envoy Gateway writes it.
pub(crate) fn gateway_ancestor(ns: &str, name: &str, section: Option<&str>) -> AncestorRef {
    AncestorRef {
        group: GATEWAY_GROUP,
        kind: "Gateway".to_owned(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        section_name: section.map(str::to_owned),
    }
}

impl Context<'_> {
    /// A BackendTrafficPolicy's targets in Envoy Gateway's order: the objects its
    /// `targetSelectors` match (in the policy's namespace, oldest first, each once),
    /// then the `targetRefs` (and `targetRef`) not already among them.
    fn btp_targets(&self, p: &BackendTrafficPolicy) -> Vec<BtpTarget> {
        self.selected_targets(
            ns_of(&p.metadata),
            &p.spec.target_selectors,
            p.spec.targets(),
        )
    }

    /// The targets of a policy in namespace `ns` with `selectors` and `refs` (see
    /// [`btp_targets`](Self::btp_targets)).
    pub(crate) fn selected_targets<'r>(
        &self,
        ns: &str,
        selectors: &[crate::types::btp::BtpTargetSelector],
        refs: impl Iterator<Item = &'r BtpTargetRef>,
    ) -> Vec<BtpTarget> {
        let resources = self.resources;
        let mut found: Vec<(&dyn MetaView, BtpTarget)> = Vec::new();
        let metas = resources
            .gateways
            .iter()
            .map(|g| ("Gateway", &g.metadata as &dyn MetaView))
            .chain(all_routes(resources).map(|r| (r.kind, r.meta)));
        for (kind, meta) in metas {
            if ns_of(meta) != ns || !selectors.iter().any(|s| s.selects(kind, meta.labels_of())) {
                continue;
            }
            let target = BtpTarget {
                kind: kind.to_owned(),
                name: name_of(meta).to_owned(),
                section: None,
            };
            if !found.iter().any(|(_, t)| *t == target) {
                found.push((meta, target));
            }
        }
        found.sort_by(|(a, ta), (b, tb)| {
            (created_of(*a), &ta.kind, &ta.name).cmp(&(created_of(*b), &tb.kind, &tb.name))
        });
        let mut out: Vec<BtpTarget> = found.into_iter().map(|(_, t)| t).collect();
        for t in refs {
            let t = BtpTarget::of_ref(t);
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    /// The status ancestors of a BackendTrafficPolicy target, as Envoy Gateway writes
    /// them: a Gateway (or listener) target is its own ancestor; a route (or rule)
    /// target has the Gateways its `parentRefs` name (kind Gateway, with the
    /// parentRef's `sectionName`), not the route. A route that does not exist, or a
    /// kind gatekit does not serve, is reported as itself (Envoy Gateway writes no
    /// ancestor for a target it cannot find).
    pub(crate) fn btp_ancestors(&self, ns: &str, t: &BtpTarget) -> Vec<AncestorRef> {
        let resources = self.resources;
        let named = |m: &dyn MetaView| ns_of(m) == ns && name_of(m) == t.name;
        let route = all_routes(resources).find(|r| r.kind == t.kind && named(r.meta));
        let parents: Option<Vec<AncestorRef>> = route.map(|r| {
            r.parents
                .iter()
                .filter(|p| p.kind.is_none_or(|k| k == "Gateway"))
                .map(|p| gateway_ancestor(p.namespace.unwrap_or(ns), p.name, p.section))
                .collect()
        });
        let mut out: Vec<AncestorRef> = Vec::new();
        for a in parents.unwrap_or_else(|| vec![t.as_ancestor(ns)]) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }
}

impl Context<'_> {
    /// Attaches every Envoy Gateway BackendTrafficPolicy to its targets (oldest first;
    /// one per target, a newer one is `Conflicted`). A policy using a field gatekit
    /// does not implement is not applied at all (`Accepted=False`, reason
    /// `Unsupported`, naming the fields).
    pub(crate) fn attach_backend_traffic_policies(
        &mut self,
        shared_rate_limits: bool,
        statuses: &mut Vec<ResourceStatus>,
    ) {
        let resources = self.resources;
        if resources.backend_traffic_policies.is_empty() {
            return;
        }
        let sections = sections(resources);
        for p in by_age(&resources.backend_traffic_policies, |p| &p.metadata) {
            let ns = ns_of(&p.metadata);
            let name = name_of(&p.metadata);
            let owner = format!("{ns}/{name}");
            let generation = p.metadata.generation;
            let resource = ResourceRef::new("BackendTrafficPolicy", Some(ns), name);
            let resolved = self.btp_targets(p);
            let targets = || {
                resolved
                    .iter()
                    .flat_map(|t| self.btp_ancestors(ns, t))
                    .collect()
            };
            let read = match p.spec.read(&owner) {
                Ok(r) => r,
                Err(problems) => {
                    statuses.push(invalid(
                        resource,
                        generation,
                        targets(),
                        problems,
                        &mut self.errors,
                    ));
                    continue;
                }
            };
            if !read.unimplemented.is_empty() {
                let message = format!(
                    "not implemented by gatekit: {}",
                    read.unimplemented.join(", ")
                );
                statuses.push(refused(
                    resource,
                    generation,
                    targets(),
                    reason::UNSUPPORTED,
                    message,
                ));
                continue;
            }
            let values = read.values;
            let upstream = read.upstream;
            if upstream.proxy_protocol.is_some()
                && let Some(t) = resolved
                    .iter()
                    .find(|t| matches!(t.kind.as_str(), "HTTPRoute" | "GRPCRoute"))
            {
                // Never silently: HTTP backends get no header (see the module docs).
                let message = format!(
                    "not implemented by gatekit: spec.proxyProtocol for the backends of {} {ns}/{} (gatekit writes PROXY protocol headers to TCPRoute and TLSRoute backends only, reached through a Gateway target; HTTP backends get none)",
                    t.kind, t.name
                );
                statuses.push(refused(
                    resource,
                    generation,
                    targets(),
                    reason::UNSUPPORTED,
                    message,
                ));
                continue;
            }
            // Request-level fields mean nothing to a stream: never silently dropped.
            if let Some(t) = resolved
                .iter()
                .find(|t| STREAM_KINDS.contains(&t.kind.as_str()))
            {
                let mut fields = Vec::new();
                if values.retry.is_some() {
                    fields.push("spec.retry");
                }
                if values.rate_limits.is_some() {
                    fields.push("spec.rateLimit");
                }
                if values.request_timeout.is_some() {
                    fields.push("spec.timeout.http.requestTimeout");
                }
                if upstream.idle_timeout.is_some() {
                    fields.push("spec.timeout.http.connectionIdleTimeout");
                }
                if upstream.proxy_protocol.is_some()
                    && resolved.iter().any(|t| t.kind == "UDPRoute")
                {
                    fields.push("spec.proxyProtocol");
                }
                if !fields.is_empty() {
                    let message = format!(
                        "not implemented by gatekit: {} for {} {ns}/{} (a {} carries no HTTP requests{}); remove it or target the HTTP routes",
                        fields.join(", "),
                        t.kind,
                        t.name,
                        t.kind,
                        if fields.contains(&"spec.proxyProtocol") {
                            ", and a UDP flow no PROXY protocol header"
                        } else {
                            ""
                        }
                    );
                    statuses.push(refused(
                        resource,
                        generation,
                        targets(),
                        reason::UNSUPPORTED,
                        message,
                    ));
                    continue;
                }
            }
            // Services this policy's settings were already offered to (through an
            // earlier target): whether they took any.
            let mut done: HashMap<(String, String), bool> = HashMap::new();
            let mut attachment = Attachment::new();
            if !read.ignored.is_empty() {
                attachment.warn(format!(
                    "ignored (they only tune performance or logging; gatekit has no equivalent): {}",
                    read.ignored.join(", ")
                ));
            }
            if resolved.is_empty() {
                attachment.not_found_all(
                    Vec::new(),
                    "no target (no targetRefs, and the targetSelectors match nothing)".to_owned(),
                );
            }
            for t in &resolved {
                let section = t.section.as_deref();
                let target = match section {
                    Some(s) => format!("{} {ns}/{} section {s}", t.kind, t.name),
                    None => format!("{} {ns}/{}", t.kind, t.name),
                };
                let ancestors = self.btp_ancestors(ns, t);
                // Unserved kinds refused the policy above (`unimplemented`).
                let Some(kind) = served_kind(&t.kind) else {
                    attachment.not_found_all(ancestors, format!("{target} not found"));
                    continue;
                };
                let exists = sections
                    .get(&(kind, ns, t.name.as_str()))
                    .is_some_and(|known| section.is_none_or(|s| known.contains(&Some(s))));
                if !exists {
                    attachment.not_found_all(ancestors, format!("{target} not found"));
                    continue;
                }
                let key: TargetKey = (kind, ns.to_owned(), t.name.clone(), t.section.clone());
                if let Some((older, _)) = self.btp.get(&key).filter(|(o, _)| *o != owner) {
                    let message = format!(
                        "{target}: not applied, the older BackendTrafficPolicy {older} targets it"
                    );
                    attachment.conflicted_all(ancestors, message);
                    continue;
                }
                let mut notes = Vec::new();
                if let Some(c) = self.traffic.get(&key) {
                    for f in values.traffic_fields() {
                        if let Some(o) = c.owners.get(f) {
                            notes.push(format!(
                                "{target}: {f} not applied, the TrafficPolicy {o} sets it"
                            ));
                        }
                    }
                }
                if values.global && !shared_rate_limits {
                    notes.push(format!(
                        "{target}: rateLimit is Global but no Redis configured: limits are per replica"
                    ));
                }
                if !upstream.is_empty() {
                    let mut services = self.target_services(kind, ns, &t.name, section);
                    let streams = self.target_stream_services(kind, ns, &t.name, section);
                    if upstream.proxy_protocol.is_some() && !STREAM_KINDS.contains(&kind) {
                        for (svc_ns, svc) in &services {
                            let both = streams.iter().any(|(n, s)| n == svc_ns && s == svc);
                            notes.push(if both {
                                format!("Service {svc_ns}/{svc}: proxyProtocol is written on TCP/TLS route connections only, HTTP requests to it get no PROXY protocol header")
                            } else {
                                format!("Service {svc_ns}/{svc}: proxyProtocol not applied, only HTTP routes reach it (gatekit writes no PROXY protocol header to HTTP backends)")
                            });
                        }
                    }
                    for s in streams {
                        if !services.contains(&s) {
                            services.push(s);
                        }
                    }
                    let took = self.claim_services(
                        (ns, &owner),
                        &upstream,
                        &services,
                        &mut done,
                        &mut attachment,
                        &mut notes,
                    );
                    if !took && !services.is_empty() && !values.sets_route_fields() {
                        attachment.conflicted_all(
                            ancestors,
                            format!(
                                "{target}: not applied, no Service it reaches takes its {} (see the Services' conditions)",
                                upstream.fields().join(", ")
                            ),
                        );
                        continue;
                    }
                }
                self.btp.insert(key, (owner.clone(), values.clone()));
                attachment.attached_with_all(ancestors, notes.join("; "));
            }
            if values.global {
                self.global_rate_limits
                    .extend(values.rate_limits.iter().flatten().map(|r| r.name.clone()));
            }
            statuses.push(attachment.status(resource, generation));
        }
    }
}

impl Context<'_> {
    /// The Services (namespace, name) a BackendTrafficPolicy target reaches: the
    /// backendRefs of a route of any kind (of one rule with `section`) or of every HTTPRoute and
    /// GRPCRoute whose `parentRefs` name a Gateway (with `section`: that listener, or
    /// the whole Gateway). Only backendRefs that resolve (Service and port exist,
    /// cross-namespace allowed by a ReferenceGrant) count; mirrors do not.
    fn target_services(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
        section: Option<&str>,
    ) -> Vec<(String, String)> {
        let resources = self.resources;
        let mut out: Vec<(String, String)> = Vec::new();
        let names_parent = |route_ns: &str, p: &ParentView<'_>| {
            p.group.unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                && p.kind.unwrap_or("Gateway") == "Gateway"
                && p.namespace.unwrap_or(route_ns) == ns
                && p.name == name
                && (section.is_none() || p.section.is_none() || p.section == section)
        };
        let mut add = |route_kind: &str,
                       route_ns: &str,
                       resolve: Resolve,
                       refs: Vec<RefSpec<'_>>| {
            for r in refs {
                let resolved = match resolve {
                    Resolve::Http { grpc } => self.resolve(route_kind, route_ns, &r, grpc),
                    Resolve::Stream { udp } => self.resolve_stream(route_kind, route_ns, &r, udp),
                };
                if let Ok(w) = resolved {
                    let s = (w.namespace.to_string(), w.service.to_string());
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
        };
        for r in all_routes(resources) {
            let wanted = if kind == "Gateway" {
                // The stream routes under a Gateway: `target_stream_services`.
                matches!(r.resolve, Resolve::Http { .. })
                    && r.parents.iter().any(|p| names_parent(r.ns, p))
            } else {
                kind == r.kind && r.ns == ns && r.name == name
            };
            if !wanted {
                continue;
            }
            let rule_section = if kind == "Gateway" { None } else { section };
            for (rule_name, refs) in r.rules {
                if rule_section.is_some() && rule_name != rule_section {
                    continue;
                }
                add(r.kind, r.ns, r.resolve, refs);
            }
        }
        out
    }

    /// The Services (namespace, name) the TCPRoutes and TLSRoutes whose `parentRefs`
    /// name a targeted Gateway (with `section`: that listener, or the whole Gateway)
    /// send to; none for other target kinds. Only backendRefs that resolve count.
    fn target_stream_services(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
        section: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        if kind != "Gateway" {
            return out;
        }
        let resources = self.resources;
        let names_gateway = |route_ns: &str, p: &RawParent<'_>| {
            p.group.unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                && p.kind.unwrap_or("Gateway") == "Gateway"
                && p.namespace.unwrap_or(route_ns) == ns
                && p.name == name
                && (section.is_none() || p.section.is_none() || p.section == section)
        };
        let mut add = |route_kind: &str, route_ns: &str, refs: Vec<RefSpec<'_>>| {
            for r in refs {
                if let Ok(w) = self.resolve_stream(route_kind, route_ns, &r, false) {
                    let s = (w.namespace.to_string(), w.service.to_string());
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
        };
        macro_rules! stream_refs {
            ($r:expr) => {
                $r.spec
                    .rules
                    .iter()
                    .flat_map(|rule| {
                        rule.backend_refs.iter().map(|b| RefSpec {
                            group: b.group.as_deref(),
                            kind: b.kind.as_deref(),
                            name: &b.name,
                            namespace: b.namespace.as_deref(),
                            port: b.port,
                        })
                    })
                    .collect::<Vec<_>>()
            };
        }
        for r in &resources.tcp_routes {
            let route_ns = ns_of(&r.metadata);
            let parents: Vec<RawParent<'_>> = raw_parents!(r);
            if parents.iter().any(|p| names_gateway(route_ns, p)) {
                add("TCPRoute", route_ns, stream_refs!(r));
            }
        }
        for r in &resources.tls_routes {
            let route_ns = ns_of(&r.metadata);
            let parents: Vec<RawParent<'_>> = raw_parents!(r);
            if parents.iter().any(|p| names_gateway(route_ns, p)) {
                add("TLSRoute", route_ns, stream_refs!(r));
            }
        }
        out
    }

    /// Gives `services` the `loadBalancer`/`healthCheck` settings of the
    /// BackendTrafficPolicy `owner` in namespace `ns` (see the
    /// [module docs](self)): a Service in another namespace is left alone (a note
    /// for the target); a Service where an older policy set one of the same fields to
    /// another value keeps the older's (`Conflicted`, naming the Service and the
    /// winner); fields the Service's gatekit BackendPolicy sets stay the
    /// BackendPolicy's (named in the status). Services in `done` were handled through
    /// an earlier target of the same policy. Whether any Service took any field.
    fn claim_services(
        &mut self,
        (ns, owner): (&str, &str),
        upstream: &BtpUpstream,
        services: &[(String, String)],
        done: &mut HashMap<(String, String), bool>,
        attachment: &mut Attachment,
        notes: &mut Vec<String>,
    ) -> bool {
        let mut took = false;
        for (svc_ns, svc) in services {
            let service = format!("Service {svc_ns}/{svc}");
            let ancestor = service_ancestor(svc_ns, svc);
            let key = (svc_ns.clone(), svc.clone());
            if let Some(t) = done.get(&key) {
                took |= *t;
                continue;
            }
            done.insert(key.clone(), false);
            if svc_ns != ns {
                notes.push(format!(
                    "{service}: {} not applied, the Service is in another namespace (they apply to every route to it; only policies in namespace {svc_ns} may set them)",
                    upstream.fields().join(", ")
                ));
                continue;
            }
            let claimed = self.btp_upstreams.entry(key.clone()).or_default();
            let taken: Vec<String> = upstream
                .differing(&claimed.values)
                .into_iter()
                .filter_map(|f| {
                    claimed
                        .owners
                        .get(f)
                        .filter(|o| o.as_str() != owner)
                        .map(|o| format!("{f} (set by the older BackendTrafficPolicy {o})"))
                })
                .collect();
            if !taken.is_empty() {
                attachment.conflicted(
                    ancestor,
                    format!(
                        "{service}: loadBalancer/healthCheck not applied, {}",
                        taken.join(", ")
                    ),
                );
                continue;
            }
            claimed.values.overlay(upstream);
            for f in upstream.fields() {
                claimed.owners.entry(f).or_insert_with(|| owner.to_owned());
            }
            let (shadowed, bp) = match self.backend_policy_of(svc_ns, svc) {
                Some((bp, spec)) => (upstream.shadowed_by(spec), bp),
                None => (Vec::new(), String::new()),
            };
            if shadowed.is_empty() {
                took = true;
                done.insert(key, true);
                continue;
            }
            let message = format!(
                "{service}: {} not applied, the BackendPolicy {svc_ns}/{bp} sets it",
                shadowed.join(", ")
            );
            if shadowed.len() == upstream.fields().len() {
                attachment.conflicted(ancestor, message);
            } else {
                took = true;
                done.insert(key, true);
                attachment.attached_with(ancestor, message);
            }
        }
        took
    }
}
