//! Session persistence (GEP-1619) and retry constraints (GEP-3388) from
//! `XBackendTrafficPolicy`, and session persistence inline in HTTPRoute rules.
//!
//! Both places carry a `SessionPersistence`, read in either of two shapes:
//!
//! - Gateway API v1.7: `type` (`Cookie`, the default, or `Header`), `absoluteTimeout`,
//!   `cookie` (`name`, generated when omitted; `path`, `/` when omitted;
//!   `lifetimeType`, `Session` by default or `Permanent`, which needs
//!   `absoluteTimeout`) only with type `Cookie`, and `header` (`name`, required) only
//!   with type `Header`.
//! - v1.5/v1.6: `sessionName` (the cookie or header name), `type`, `absoluteTimeout`,
//!   `idleTimeout` and `cookieConfig.lifetimeType` (only with type `Cookie`).
//!
//! `idleTimeout` (gone in v1.7) is read with either. `sessionName` or `cookieConfig`
//! next to `cookie` or `header` (the shapes mixed), a `cookie`/`header` that contradicts
//! `type`, and unknown keys are errors naming the field. v1.7 requires `cookie` for
//! type `Cookie` (after defaulting); gatekit reads a `sessionPersistence` with neither
//! `cookie` nor `header` as the v1.6 shape instead, where that is valid.
//!
//! The policy's type is gatekit's ([`crate::types::xbtp`]). The rule's is the
//! `gateway-api` crate's, which has only the v1.6 shape: [`inline_v17_sessions`]
//! rewrites a rule's v1.7 fields into it on the raw document, before typing.
//!
//! Both become a core [`SessionPersistence`]: the rule's (sessions stick to a
//! backendRef and an endpoint) or each backendRef's to a targeted Service (sessions
//! stick to an endpoint). A rule with its own ignores its Services' (the GEP: the route
//! rule takes precedence).
//!
//! An `XBackendTrafficPolicy` targets Services in its namespace; the oldest policy wins
//! a Service, later ones are `Conflicted` there. `retryConstraint` becomes the retry
//! budget of every backendRef to the Service (as a gatekit `BackendPolicy`'s
//! `retryBudget`, which wins when both set one; the status says so). A policy with an
//! invalid field is refused whole (`Accepted=False`, `Invalid`, an error per field); a
//! route whose rule has an invalid v1.7 `sessionPersistence` is a load error.

use std::time::Duration;

use gatekit_core::ConfigError;
use gatekit_core::retry::RetryBudgetConfig;
use gatekit_core::session::{CookieLifetime, SessionPersistence};

use super::backend::{Context, name_of, ns_of};
use super::policy::{Attachment, by_age, invalid, service_ancestor};
use crate::duration;
use crate::status::{ResourceRef, ResourceStatus};
use crate::types::policy::{RetryBudget, RetryRate};
use crate::types::xbtp::{LifetimeType, SessionPersistence as XSessionPersistence, SessionType};
use crate::types::{XBackendTrafficPolicy, XBackendTrafficPolicySpec};

/// What an `XBackendTrafficPolicy` gives a Service it is attached to.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceSettings {
    /// The policy's `namespace/name`.
    pub(crate) owner: String,
    pub(crate) session: Option<SessionPersistence>,
    pub(crate) retry_budget: Option<RetryBudgetConfig>,
}

/// The fields of a Gateway API `SessionPersistence`, whichever shape or generated type
/// holds them.
pub(crate) struct SessionFields<'a> {
    pub(crate) name: Option<&'a str>,
    /// Where the name came from (`sessionName`, `cookie.name` or `header.name`).
    pub(crate) name_field: &'static str,
    pub(crate) header: bool,
    pub(crate) permanent: bool,
    /// The cookie's `Path` (v1.7 `cookie.path`); `/` when `None`.
    pub(crate) path: Option<&'a str>,
    pub(crate) absolute_timeout: Option<&'a str>,
    pub(crate) idle_timeout: Option<&'a str>,
}

/// A `SessionPersistence` at `field` as core settings, or every problem with its path.
pub(crate) fn session(
    f: &SessionFields<'_>,
    field: &str,
) -> Result<SessionPersistence, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut timeout = |name: &str, v: Option<&str>| -> Option<Duration> {
        match v.map(duration::parse)? {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push((format!("{field}.{name}"), e.to_string()));
                None
            }
        }
    };
    let absolute = timeout("absoluteTimeout", f.absolute_timeout);
    let idle = timeout("idleTimeout", f.idle_timeout);
    let name = f.name.map(str::to_owned);
    let config = if f.header {
        SessionPersistence::header(name)
    } else {
        let cookie = SessionPersistence::cookie(name).with_lifetime(if f.permanent {
            CookieLifetime::Permanent
        } else {
            CookieLifetime::Session
        });
        match f.path {
            Some(path) => cookie.with_path(path),
            None => cookie,
        }
    }
    .with_absolute_timeout(absolute)
    .with_idle_timeout(idle);
    // A bad duration is reported once, not again as "missing".
    if problems.is_empty()
        && let Err(e) = config.validate()
    {
        // The core names the v1.6 field; the name may have come from elsewhere.
        let at = match e.field() {
            "sessionName" => f.name_field,
            other => other,
        };
        problems.push((format!("{field}.{at}"), e.reason().to_owned()));
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// The `SessionPersistence` of an HTTPRoute rule (`field` is `spec.rules[i]`).
pub(crate) fn route_rule_session(
    s: &gateway_api::experimental::httproutes::HttpRouteRulesSessionPersistence,
    field: &str,
) -> Result<SessionPersistence, Vec<(String, String)>> {
    use gateway_api::experimental::httproutes::{
        HttpRouteRulesSessionPersistenceCookieConfigLifetimeType as Lifetime,
        HttpRouteRulesSessionPersistenceType as Type,
    };
    let f = SessionFields {
        name: s.session_name.as_deref(),
        name_field: "sessionName",
        header: matches!(s.r#type, Some(Type::Header)),
        permanent: s
            .cookie_config
            .as_ref()
            .is_some_and(|c| matches!(c.lifetime_type, Some(Lifetime::Permanent))),
        path: None,
        absolute_timeout: s.absolute_timeout.as_deref(),
        idle_timeout: s.idle_timeout.as_deref(),
    };
    session(&f, &format!("{field}.sessionPersistence"))
}

/// Rewrites the Gateway API v1.7 `sessionPersistence` of each rule of an HTTPRoute
/// document (`cookie`, `header`) into the v1.5/v1.6 fields the rule type gatekit reads
/// (the `gateway-api` crate's) has: `sessionName`, `cookieConfig.lifetimeType`. Run on
/// the raw document before it is typed, by the manifest loader and the cluster watcher
/// alike ([`Check::prepare`](crate::types::Check::prepare)). The checks are those of an
/// `XBackendTrafficPolicy` ([`x_session_fields`]); a `cookie.path` other than `/` has
/// no place in the rule type and is refused (an `XBackendTrafficPolicy` takes it).
pub(crate) fn inline_v17_sessions(route: &mut serde_json::Value) -> Vec<ConfigError> {
    use serde_json::{Value, json};
    let mut errors = Vec::new();
    let Some(rules) = route
        .pointer_mut("/spec/rules")
        .and_then(Value::as_array_mut)
    else {
        return errors;
    };
    for (i, rule) in rules.iter_mut().enumerate() {
        let Some(raw) = rule.get_mut("sessionPersistence") else {
            continue;
        };
        let Some(obj) = raw.as_object() else {
            continue;
        };
        if !(obj.contains_key("cookie") || obj.contains_key("header")) {
            continue;
        }
        let at = format!("spec.rules[{i}].sessionPersistence");
        let s: XSessionPersistence = match serde_path_to_error::deserialize(&*raw) {
            Ok(s) => s,
            Err(e) => {
                errors.push(ConfigError::new(
                    format!("{at}.{}", e.path()),
                    e.into_inner().to_string(),
                ));
                continue;
            }
        };
        let f = match x_session_fields(&s, &at) {
            Ok(f) => f,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        if let Some(path) = f.path.filter(|p| *p != "/") {
            errors.push(ConfigError::new(
                format!("{at}.cookie.path"),
                format!(
                    "{path:?}: only \"/\" inline in an HTTPRoute rule (the rule type gatekit \
                     reads has no cookie path); set it in an XBackendTrafficPolicy"
                ),
            ));
            continue;
        }
        // Checked here, so errors name the v1.7 fields (`cookie.name`, ...).
        if let Err(p) = session(&f, &at) {
            errors.extend(p.into_iter().map(|(f, r)| ConfigError::new(f, r)));
            continue;
        }
        let mut out = serde_json::Map::new();
        for key in ["type", "absoluteTimeout", "idleTimeout"] {
            if let Some(v) = obj.get(key) {
                out.insert(key.to_owned(), v.clone());
            }
        }
        if let Some(name) = f.name {
            out.insert("sessionName".to_owned(), json!(name));
        }
        if f.permanent {
            out.insert(
                "cookieConfig".to_owned(),
                json!({ "lifetimeType": "Permanent" }),
            );
        }
        *raw = Value::Object(out);
    }
    errors
}

/// The keys of `other` as unknown-field errors under `at`.
fn unknown(
    at: &str,
    other: &std::collections::BTreeMap<String, serde_json::Value>,
    errors: &mut Vec<ConfigError>,
) {
    for k in other.keys() {
        errors.push(ConfigError::new(
            format!("{at}.{k}"),
            "unknown field (not read by gatekit)",
        ));
    }
}

/// A `sessionPersistence` at `at` (either shape) as
/// [`SessionFields`], or every problem with its field path: unknown keys, the v1.7 and
/// v1.6 shapes mixed, `cookie` or `header` that contradict `type`.
pub(crate) fn x_session_fields<'a>(
    s: &'a XSessionPersistence,
    at: &str,
) -> Result<SessionFields<'a>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    unknown(at, &s.other, &mut errors);
    if let Some(c) = &s.cookie {
        unknown(&format!("{at}.cookie"), &c.other, &mut errors);
    }
    if let Some(h) = &s.header {
        unknown(&format!("{at}.header"), &h.other, &mut errors);
    }
    if let Some(c) = &s.cookie_config {
        unknown(&format!("{at}.cookieConfig"), &c.other, &mut errors);
    }
    let header = s.r#type == Some(SessionType::Header);
    let v17 = match (&s.cookie, &s.header) {
        (Some(_), _) => Some("cookie"),
        (None, Some(_)) => Some("header"),
        (None, None) => None,
    };
    if s.cookie.is_some() && header {
        errors.push(ConfigError::new(
            format!("{at}.cookie"),
            "only allowed with type Cookie (type is Header)",
        ));
    }
    if s.header.is_some() && !header {
        errors.push(ConfigError::new(
            format!("{at}.header"),
            "only allowed with type Header (type is Cookie, the default)",
        ));
    }
    if s.cookie_config.is_some() && header {
        errors.push(ConfigError::new(
            format!("{at}.cookieConfig"),
            "only allowed with type Cookie (type is Header)",
        ));
    }
    if let Some(v17) = v17 {
        if s.session_name.is_some() {
            errors.push(ConfigError::new(
                format!("{at}.sessionName"),
                format!(
                    "the Gateway API v1.6 field cannot be combined with {v17} (v1.7); set \
                     {v17}.name instead"
                ),
            ));
        }
        if s.cookie_config.is_some() {
            errors.push(ConfigError::new(
                format!("{at}.cookieConfig"),
                format!(
                    "the Gateway API v1.6 field cannot be combined with {v17} (v1.7); set \
                     cookie.lifetimeType instead"
                ),
            ));
        }
    }
    if let Some(h) = &s.header
        && h.name.is_none()
    {
        errors.push(ConfigError::new(format!("{at}.header.name"), "required"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (name, name_field) = match (&s.cookie, &s.header) {
        (Some(c), _) => (c.name.as_deref(), "cookie.name"),
        (None, Some(h)) => (h.name.as_deref(), "header.name"),
        (None, None) => (s.session_name.as_deref(), "sessionName"),
    };
    let lifetime = s
        .cookie
        .as_ref()
        .and_then(|c| c.lifetime_type)
        .or_else(|| s.cookie_config.as_ref().and_then(|c| c.lifetime_type));
    Ok(SessionFields {
        name,
        name_field,
        header,
        permanent: lifetime == Some(LifetimeType::Permanent),
        path: s.cookie.as_ref().and_then(|c| c.path.as_deref()),
        absolute_timeout: s.absolute_timeout.as_deref(),
        idle_timeout: s.idle_timeout.as_deref(),
    })
}

/// What an `XBackendTrafficPolicy` sets, or every problem with its field path.
pub(crate) fn policy_settings(
    spec: &XBackendTrafficPolicySpec,
) -> Result<(Option<SessionPersistence>, Option<RetryBudgetConfig>), Vec<ConfigError>> {
    let mut errors = Vec::new();
    unknown("spec", &spec.other, &mut errors);
    let session = spec.session_persistence.as_ref().and_then(|s| {
        let f = x_session_fields(s, "spec.sessionPersistence")
            .map_err(|e| errors.extend(e))
            .ok()?;
        session(&f, "spec.sessionPersistence")
            .map_err(|p| {
                errors.extend(p.into_iter().map(|(f, r)| ConfigError::new(f, r)));
            })
            .ok()
    });
    let budget = spec.retry_constraint.as_ref().and_then(|c| {
        let count = |field: &str, v: Option<i64>, errors: &mut Vec<ConfigError>| {
            v.and_then(|v| {
                u32::try_from(v)
                    .map_err(|_| {
                        errors.push(ConfigError::new(field, format!("{v} is out of range")))
                    })
                    .ok()
            })
        };
        let budget = RetryBudget {
            percent: c.budget.as_ref().and_then(|b| {
                count(
                    "spec.retryConstraint.budget.percent",
                    b.percent,
                    &mut errors,
                )
            }),
            interval: c.budget.as_ref().and_then(|b| b.interval.clone()),
            min_retry_rate: c.min_retry_rate.as_ref().map(|r| RetryRate {
                count: count(
                    "spec.retryConstraint.minRetryRate.count",
                    r.count,
                    &mut errors,
                )
                .unwrap_or(10),
                interval: r.interval.clone().unwrap_or_else(|| "1s".to_owned()),
            }),
        };
        budget
            .config(
                "spec.retryConstraint.budget",
                "spec.retryConstraint.minRetryRate",
            )
            .map_err(|e| errors.extend(e))
            .ok()
    });
    if errors.is_empty() {
        Ok((session, budget))
    } else {
        Err(errors)
    }
}

impl Context<'_> {
    /// Attaches each `XBackendTrafficPolicy` to its target Services (oldest first; see
    /// the [module docs](self)).
    pub(crate) fn attach_x_backend_traffic_policies(&mut self, statuses: &mut Vec<ResourceStatus>) {
        let resources = self.resources;
        for p in by_age(&resources.x_backend_traffic_policies, |p| &p.metadata) {
            statuses.push(self.attach_x_policy(p));
        }
    }

    fn attach_x_policy(&mut self, p: &XBackendTrafficPolicy) -> ResourceStatus {
        let ns = ns_of(&p.metadata);
        let name = name_of(&p.metadata);
        let generation = p.metadata.generation;
        let resource = ResourceRef::new("XBackendTrafficPolicy", Some(ns), name);
        let ancestors = || {
            p.spec
                .target_refs
                .iter()
                .map(|t| service_ancestor(ns, &t.name))
                .collect()
        };
        let (session, retry_budget) = match policy_settings(&p.spec) {
            Ok(s) => s,
            Err(problems) => {
                return invalid(
                    resource,
                    generation,
                    ancestors(),
                    problems,
                    &mut self.errors,
                );
            }
        };
        let mut attachment = Attachment::new();
        for (k, t) in p.spec.target_refs.iter().enumerate() {
            let mut ancestor = service_ancestor(ns, &t.name);
            if !(t.group.is_empty() && t.kind == "Service") {
                ancestor.kind.clone_from(&t.kind);
                attachment.not_found(
                    ancestor,
                    format!(
                        "spec.targetRefs[{k}]: only Services (group \"\", kind Service) are \
                         supported, not {}/{}",
                        t.group, t.kind
                    ),
                );
                continue;
            }
            if !self.has_service(ns, &t.name) {
                attachment.not_found(ancestor, format!("Service {ns}/{} not found", t.name));
                continue;
            }
            let key = (ns.to_owned(), t.name.clone());
            if let Some(older) = self.x_policies.get(&key)
                && older.owner != name
            {
                attachment.conflicted(
                    ancestor,
                    format!(
                        "Service {ns}/{} already has the older XBackendTrafficPolicy {ns}/{}",
                        t.name, older.owner
                    ),
                );
                continue;
            }
            let note = match (&retry_budget, self.backend_policy(ns, &t.name)) {
                (Some(_), Some(bp)) if bp.retry_budget.is_some() => format!(
                    "Service {ns}/{}: retryConstraint not applied, its BackendPolicy's \
                     retryBudget wins",
                    t.name
                ),
                _ => String::new(),
            };
            self.x_policies.insert(
                key,
                ServiceSettings {
                    owner: name.to_owned(),
                    session: session.clone(),
                    retry_budget,
                },
            );
            attachment.attached_with(ancestor, note);
        }
        attachment.status(resource, generation)
    }
}
