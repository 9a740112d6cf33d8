//! The rules: what an authorization check is configured with, and how a request is
//! matched against it.

use std::sync::Arc;

use gatekit_core::ConnectionInfo;
use gatekit_core::ratelimit::Cidr;
use http::{HeaderName, HeaderValue, Method, Request};
use serde_json::Value;

use crate::VerifiedClaims;

/// What a rule (or the default) does with a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    /// The request goes on.
    Allow,
    /// The request is refused with 403 `forbidden`.
    #[default]
    Deny,
}

/// An ordered list of rules and the action taken when none matches.
#[derive(Clone, Debug, Default)]
pub struct AuthzConfig {
    rules: Vec<AuthzRule>,
    default_action: Action,
}

impl AuthzConfig {
    /// No rules, `default_action` for every request.
    pub fn new(default_action: Action) -> Self {
        Self {
            rules: Vec::new(),
            default_action,
        }
    }

    /// An IP allow list: clients in one of `cidrs` pass, every other request is denied.
    pub fn allow_cidrs(cidrs: impl IntoIterator<Item = Cidr>) -> Self {
        Self::new(Action::Deny).with_rule(AuthzRule::new(
            Action::Allow,
            Principal::default().with_client_cidrs(cidrs),
        ))
    }

    /// An IP deny list: clients in one of `cidrs` are denied, every other request
    /// passes (including one whose client address is unknown).
    pub fn deny_cidrs(cidrs: impl IntoIterator<Item = Cidr>) -> Self {
        Self::new(Action::Allow).with_rule(AuthzRule::new(
            Action::Deny,
            Principal::default().with_client_cidrs(cidrs),
        ))
    }

    /// Appends a rule, tried after those already added.
    #[must_use]
    pub fn with_rule(mut self, rule: AuthzRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[AuthzRule] {
        &self.rules
    }

    /// The action when no rule matches.
    pub fn default_action(&self) -> Action {
        self.default_action
    }

    /// The action for `req`, and the index of the rule that decided it (`None`: the
    /// default action).
    pub fn decide<B>(&self, req: &Request<B>) -> (Action, Option<usize>) {
        self.rules
            .iter()
            .position(|rule| rule.matches(req))
            .map_or((self.default_action, None), |i| {
                (self.rules[i].action, Some(i))
            })
    }
}

/// One rule: an action, a principal and optionally the methods it applies to.
#[derive(Clone, Debug)]
pub struct AuthzRule {
    name: Option<Arc<str>>,
    action: Action,
    methods: Vec<Method>,
    principal: Principal,
}

impl AuthzRule {
    /// A rule taking `action` for requests whose client is `principal`, whatever their
    /// method.
    pub fn new(action: Action, principal: Principal) -> Self {
        Self {
            name: None,
            action,
            methods: Vec::new(),
            principal,
        }
    }

    /// Names the rule (for logs).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Limits the rule to requests with one of `methods` (Envoy Gateway's
    /// `operation.methods`); without any, it applies to every method.
    #[must_use]
    pub fn with_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods.extend(methods);
        self
    }

    /// The rule's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What the rule does with a request it matches.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Whether the rule applies to `req`.
    pub fn matches<B>(&self, req: &Request<B>) -> bool {
        (self.methods.is_empty() || self.methods.contains(req.method()))
            && self.principal.matches(req)
    }
}

/// Who a request comes from. Every part that is set must match; an empty principal
/// matches every request.
#[derive(Clone, Debug, Default)]
pub struct Principal {
    client_cidrs: Vec<Cidr>,
    jwt: Option<JwtPrincipal>,
    headers: Vec<HeaderMatch>,
}

impl Principal {
    /// Adds client address ranges: the client must lie in one of them.
    #[must_use]
    pub fn with_client_cidrs(mut self, cidrs: impl IntoIterator<Item = Cidr>) -> Self {
        self.client_cidrs.extend(cidrs);
        self
    }

    /// Requires verified JWT claims matching `jwt`.
    #[must_use]
    pub fn with_jwt(mut self, jwt: JwtPrincipal) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// Adds a header condition: every header condition must hold.
    #[must_use]
    pub fn with_header(mut self, header: HeaderMatch) -> Self {
        self.headers.push(header);
        self
    }

    /// Whether `req` comes from this principal.
    pub fn matches<B>(&self, req: &Request<B>) -> bool {
        if !self.client_cidrs.is_empty() {
            let Some(info) = req.extensions().get::<ConnectionInfo>() else {
                return false;
            };
            let ip = info.remote_addr().ip();
            if !self.client_cidrs.iter().any(|cidr| cidr.contains(ip)) {
                return false;
            }
        }
        if let Some(jwt) = &self.jwt {
            let Some(claims) = req.extensions().get::<VerifiedClaims>() else {
                return false;
            };
            if !jwt.matches(claims) {
                return false;
            }
        }
        self.headers.iter().all(|h| h.matches(req.headers()))
    }
}

/// Conditions on a request's verified JWT claims ([`VerifiedClaims`]): all of them
/// must hold.
#[derive(Clone, Debug, Default)]
pub struct JwtPrincipal {
    provider: Option<Arc<str>>,
    claims: Vec<ClaimMatch>,
    scopes: Vec<String>,
}

impl JwtPrincipal {
    /// Requires the token to have been verified by the provider called `provider`.
    #[must_use]
    pub fn with_provider(mut self, provider: impl Into<Arc<str>>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Adds a claim condition.
    #[must_use]
    pub fn with_claim(mut self, claim: ClaimMatch) -> Self {
        self.claims.push(claim);
        self
    }

    /// Adds a scope the token must grant.
    #[must_use]
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Whether `verified` meets every condition.
    pub fn matches(&self, verified: &VerifiedClaims) -> bool {
        if let Some(provider) = &self.provider
            && **provider != *verified.provider
        {
            return false;
        }
        self.claims.iter().all(|c| c.matches(&verified.claims))
            && self
                .scopes
                .iter()
                .all(|scope| has_scope(&verified.claims, scope))
    }
}

/// Whether `claims` grant `scope`: in `scope` (space-delimited, RFC 8693 / RFC 6749)
/// or in `scp` (an array of strings, as some providers issue).
fn has_scope(claims: &serde_json::Map<String, Value>, scope: &str) -> bool {
    let in_value = |v: &Value| match v {
        Value::String(s) => s.split(' ').any(|s| s == scope),
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(scope)),
        _ => false,
    };
    claims.get("scope").is_some_and(in_value) || claims.get("scp").is_some_and(in_value)
}

/// The JSON type a claim condition expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClaimValueType {
    /// A string equal to one of the values.
    #[default]
    String,
    /// An array of strings, one of which equals one of the values.
    StringArray,
}

/// A condition on one claim: its value is one of `values`.
#[derive(Clone, Debug)]
pub struct ClaimMatch {
    path: Vec<String>,
    value_type: ClaimValueType,
    values: Vec<String>,
}

impl ClaimMatch {
    /// The claim `name` (a dot-separated path into nested objects:
    /// `organization.department`) is a string equal to one of `values`.
    pub fn new(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            path: name.split('.').map(str::to_owned).collect(),
            value_type: ClaimValueType::String,
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// Sets the type the claim must have.
    #[must_use]
    pub fn with_value_type(mut self, value_type: ClaimValueType) -> Self {
        self.value_type = value_type;
        self
    }

    /// Whether `claims` meet the condition.
    pub fn matches(&self, claims: &serde_json::Map<String, Value>) -> bool {
        let mut path = self.path.iter();
        let Some(first) = path.next() else {
            return false;
        };
        let mut value = claims.get(first.as_str());
        for key in path {
            value = value.and_then(|v| v.get(key.as_str()));
        }
        let one_of = |s: &str| self.values.iter().any(|v| v == s);
        match (self.value_type, value) {
            (ClaimValueType::String, Some(Value::String(s))) => one_of(s),
            (ClaimValueType::StringArray, Some(Value::Array(items))) => {
                items.iter().filter_map(Value::as_str).any(one_of)
            }
            _ => false,
        }
    }
}

/// A condition on one request header: one of its values equals one of `values`
/// (exactly, byte for byte).
#[derive(Clone, Debug)]
pub struct HeaderMatch {
    name: HeaderName,
    values: Vec<HeaderValue>,
}

impl HeaderMatch {
    /// Header `name` with one of `values`.
    pub fn new(name: HeaderName, values: impl IntoIterator<Item = HeaderValue>) -> Self {
        Self {
            name,
            values: values.into_iter().collect(),
        }
    }

    /// Whether `headers` meet the condition.
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get_all(&self.name)
            .iter()
            .any(|v| self.values.contains(v))
    }
}
