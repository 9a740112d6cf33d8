//! SecurityPolicy (and SecurityOverride) checks on stream routes: TCPRoute, TLSRoute
//! and the TCP, TLS and UDP listeners a Gateway target covers.
//!
//! Envoy Gateway accepts a SecurityPolicy targeting a TCPRoute (and applies a Gateway
//! or listener target's `authorization` to the TCP listeners under it), with
//! `authorization` rules whose principals are `clientCIDRs` only: it refuses every
//! other mechanism (`jwt`, `apiKeyAuth`, `basicAuth`, `extAuth`, `oidc`, `cors`) and
//! JWT or header principals there. gatekit does the same, and:
//!
//! - a TLSRoute target is accepted like a TCPRoute one (the stream model is one;
//!   Envoy Gateway's CRD lists TCPRoute only);
//! - a UDPRoute target is refused by name (Envoy Gateway does not accept one); a
//!   Gateway or listener target covering a UDP listener checks its flows;
//! - a policy reaching a stream route through a Gateway or listener target with a
//!   check that cannot be made on a connection (`jwt`, a header principal, ...) is not
//!   ignored there, as Envoy Gateway would: that route's connections are all refused
//!   (the policy's `Accepted` message names the fields), so no stream is served
//!   without the checks a policy asked for. The same holds for a SecurityOverride
//!   and for a policy that cannot be used at all.
//!
//! Each policy becomes one [`StreamAccess`] (its rules' ranges, first match decides,
//! else `defaultAction`, `Deny` unless set) on the route, overrides first; every one
//! must allow. The precedence is the HTTP rules': a policy naming the route (or one of
//! its rules: it counts for the whole route, whose rules are one weighted list) over
//! the listener's over the Gateway's.

use std::sync::Arc;

use gatekit_core::ratelimit::Cidr;
use gatekit_core::stream::StreamAccess;

use super::{AccessEntry, AccessSpec, Context};
use crate::types::security::AccessMechanisms;

/// The route kinds a SecurityPolicy may target for client-address checks.
pub(super) const STREAM_TARGETS: [&str; 2] = ["TCPRoute", "TLSRoute"];

/// The fields of a policy that cannot be checked on a stream connection, as
/// `spec.<path>` (empty: the policy is `authorization` with `clientCIDRs` only, or
/// nothing).
pub(super) fn stream_unsupported(m: &AccessMechanisms, cors: bool) -> Vec<String> {
    let mut out = Vec::new();
    let set = [
        ("extAuth", m.ext_auth.is_some()),
        ("apiKeyAuth", m.api_key_auth.is_some()),
        ("basicAuth", m.basic_auth.is_some()),
        ("oidc", m.oidc.is_some()),
        ("jwt", m.jwt.is_some()),
        ("cors", cors),
    ];
    out.extend(
        set.iter()
            .filter(|(_, on)| *on)
            .map(|(f, _)| format!("spec.{f}")),
    );
    for (i, r) in m
        .authorization
        .iter()
        .flat_map(|a| a.rules.iter().enumerate())
    {
        if r.principal.jwt.is_some() {
            out.push(format!("spec.authorization.rules[{i}].principal.jwt"));
        }
        if !r.principal.headers.is_empty() {
            out.push(format!("spec.authorization.rules[{i}].principal.headers"));
        }
    }
    out
}

/// The check entry `name` makes on a stream: its `authorization` rules' ranges, or
/// (anything else, a spec that did not resolve, a name not found) a check denying
/// every client.
fn stream_check(name: &str, entry: Option<&AccessEntry>) -> StreamAccess {
    let Some(AccessSpec::Authz(spec)) = entry.and_then(|e| e.spec()).map(|s| &**s) else {
        return StreamAccess::deny_all(name);
    };
    let mut check = StreamAccess::new(name, spec.default_allow);
    for rule in &spec.rules {
        if rule.jwt_provider.is_some() || !rule.headers.is_empty() {
            return StreamAccess::deny_all(name);
        }
        let mut cidrs = Vec::with_capacity(rule.client_cidrs.len());
        for c in &rule.client_cidrs {
            // Checked when the policy was read; fail closed all the same.
            let Ok(cidr) = c.parse::<Cidr>() else {
                return StreamAccess::deny_all(name);
            };
            cidrs.push(cidr);
        }
        check = if rule.allow {
            check.allow(cidrs)
        } else {
            check.deny(cidrs)
        };
    }
    check
}

impl Context<'_> {
    /// The client-address checks of stream route `kind` `ns/name` (whose rules are
    /// named `rules`) served by the listener `section` of Gateway `gw_ns/gw` (`None`:
    /// a ListenerSet's listener): the listener's SecurityOverrides, then the most
    /// specific SecurityPolicy. Empty when none applies.
    pub(crate) fn stream_access(
        &self,
        (kind, ns, name): (&'static str, &str, &str),
        rules: &[Option<&str>],
        (gw_ns, gw, section): (&str, &str, Option<&str>),
    ) -> Vec<Arc<StreamAccess>> {
        let maps = &self.access;
        if maps.overrides.is_empty() && maps.policies.is_empty() {
            return Vec::new();
        }
        let parent = self.listener_access(gw_ns, gw, section);
        let of = |section: Option<&str>| {
            maps.policies
                .get(&(
                    kind,
                    ns.to_owned(),
                    name.to_owned(),
                    section.map(str::to_owned),
                ))
                .map(|(_, applied)| applied)
        };
        let own = rules
            .iter()
            .flatten()
            .find_map(|r| of(Some(r)))
            .or_else(|| of(None));
        let policy = own.or(parent.policy.as_ref());
        let names = policy.map(|p| p.names.as_slice()).unwrap_or_default();
        let mut out: Vec<Arc<StreamAccess>> = Vec::new();
        for n in parent.overrides.iter().chain(names) {
            if out.iter().all(|c| c.name() != n) {
                out.push(Arc::new(stream_check(n, maps.entries.get(n))));
            }
        }
        out
    }
}

/// Whether Gateway `ns/gw` (only listener `section`, if set) has a TCP, TLS or UDP
/// listener.
pub(super) fn has_stream_listener(
    resources: &crate::ResourceSet,
    ns: &str,
    gw: &str,
    section: Option<&str>,
) -> bool {
    resources
        .gateways
        .iter()
        .filter(|g| super::ns_of(&g.metadata) == ns && super::name_of(&g.metadata) == gw)
        .flat_map(|g| &g.spec.listeners)
        .filter(|l| section.is_none_or(|s| l.name == s))
        .any(|l| matches!(l.protocol.as_str(), "TCP" | "TLS" | "UDP"))
}
