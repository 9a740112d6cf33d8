//! Access policies: Envoy Gateway `SecurityPolicy` and gatekit `SecurityOverride`
//! attachment, precedence and translation into named [`AccessSpec`]s (see
//! [`crate::types::security`] for the fields read).
//!
//! # Names
//!
//! Each mechanism of a policy becomes one access policy named
//! `<Kind>/<namespace>/<name>/<mechanism>` (`SecurityPolicy/apps/web/jwt`), the
//! mechanism being `extAuth`, `apiKeyAuth`, `basicAuth`, `oidc`, `jwt` or
//! `authorization`.
//! A route rule lists the names that guard it in
//! [`RulePolicy::access`](gatekit_core::route::RulePolicy::access), outermost first:
//!
//! 1. the SecurityOverrides whose targets cover the rule's listener (the Gateway, or
//!    that listener), oldest first;
//! 2. the rule's SecurityPolicy.
//!
//! Within one policy the order is Envoy Gateway's HTTP filter order: `extAuth`,
//! `apiKeyAuth`, `basicAuth`, `oidc` (its OAuth2 filter runs before JWT
//! authentication), `jwt`, then `authorization` (which reads what the others
//! established). `oidc` is read in `oidc.rs` (defaults and refusals there).
//!
//! # Precedence (SecurityPolicy)
//!
//! For a rule, the most specific SecurityPolicy applies, whole: one naming the rule
//! (`sectionName` = the rule's name) over one naming its route, over one naming the
//! listener, over one naming the Gateway. Of two naming the same target, the older
//! applies and the newer is `Conflicted` there. Overrides (GEP-713) are not part of
//! that choice: every SecurityOverride covering the rule's listener applies in
//! addition, and a route's own policy can only add checks. A SecurityPolicy whose
//! targets an override also covers is `Accepted`, its message naming the override.
//!
//! # Failing closed
//!
//! A policy that cannot be used is still listed on the rules it applies to, and no
//! spec is emitted under its names: those rules answer 500 `invalid-auth-policy`
//! instead of serving without the checks the policy asked for. That holds for a field
//! gatekit does not implement (`oidc.forwardIDToken`, a SecurityOverride's `cors`, ...:
//! `Accepted=False`, `Unsupported`, listed under the single name
//! `<Kind>/<namespace>/<name>`) and for a reference that does not resolve (a missing
//! Secret, ConfigMap or Service: `Accepted=False`, `Invalid`, naming it; one in
//! another namespace that no ReferenceGrant permits: `RefNotPermitted`, naming the
//! field).
//!
//! # Other namespaces
//!
//! A Secret (`apiKeyAuth.credentialRefs`, `basicAuth.users`) or Service (`extAuth`,
//! `remoteJWKS` `backendRefs`) in another namespace is used where a ReferenceGrant in
//! that namespace permits it, as for a route's backendRef (the same check,
//! `Context::grant_allows`): `from` `gateway.envoyproxy.io`/`SecurityPolicy` (or
//! `gatekit.io`/`SecurityOverride`) in the policy's namespace, `to` the core
//! `Secret` or `Service` (by name or all).
//!
//! # CORS
//!
//! A SecurityPolicy's `cors` goes with its checks: the rules the policy applies to
//! (the most specific one, as above) get it as their CORS filter, first in their
//! filter list, so it is the HTTPRoute `CORS` filter's machinery (gatekit-core's
//! `filter/cors.rs`) that answers preflights, adds the headers to responses and to the
//! gateway's own errors (a 401 included), and lets preflights pass the rule's access
//! policies unchecked (`gatekit_core::access`). A rule with its own HTTPRoute `CORS`
//! filter keeps it (the rule-level filter wins, as in Envoy Gateway) and the policy's
//! `Accepted` message names those rules. A policy may hold only `cors`; a `cors` that
//! cannot be used refuses the policy (`Invalid`, naming `spec.cors.<field>`) and its
//! rules, like any other problem.
//!
//! # Secrets: what a spec holds, and in what form
//!
//! Specs live as long as the translation and the gateway's registry keep them (to
//! compare on reload), so they hold no secret a check does not need:
//!
//! - `apiKeyAuth`: the [`KeyDigest`] (SHA-256) of each key, made from the Secret's
//!   own bytes as it is read; no copy of a key is made, and none is held. Equal
//!   digests compare equal, so an unchanged Secret keeps the built policy.
//! - `basicAuth`: the `.htpasswd` text, copied from the Secret into a string zeroed
//!   when the spec is dropped. It holds password hashes; a line with anything else
//!   (a plain-text password) is refused when the gateway builds the policy (its rules
//!   answer 500), but the text stays in the spec until the Secret is fixed.
//! - `jwt` `localJWKS`: the JWKS text, from the policy itself or a ConfigMap (public
//!   keys, not secret, and shown by `Debug`). An HMAC (`oct`) key in it would be a
//!   secret in a place that is not one; gatekit-auth never verifies with it (HMAC is
//!   off unless enabled, which the translation never does), but the text is held as
//!   written.
//! - `extAuth`, `authorization`: no secret (Service names, header names, ranges,
//!   claims).
//!
//! The Secret objects themselves stay in the provider's store (watched by name) or in
//! the loaded manifests, as the API server sent them: the translation reads them in
//! place and does not change that store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gatekit_core::ConfigError;
use gatekit_core::access::KeyDigest;
use gatekit_core::route::{CorsPolicy, Filter, Rule};
use zeroize::Zeroizing;

use super::backend::{Context, RefSpec, name_of, ns_of};
use super::policy::{Attachment, BtpTarget, by_age, gateway_ancestor, refused};
use super::route::Use;
use crate::status::{AncestorRef, ResourceRef, ResourceStatus, reason};
use crate::types::security::{AccessBackendRef, AccessMechanisms, Cors, SecretRef};
use crate::types::{GATEWAY_GROUP, ObjectMeta, Secret};

// In its own file, a child module so it reads policies with this module's helpers.
#[path = "oidc.rs"]
pub(super) mod oidc;
use oidc::OidcSpec;
// Checks on stream routes (TCPRoute, TLSRoute, stream listeners).
#[path = "stream_access.rs"]
mod stream_access;

// === specs ===

/// One access check, as data: what the gateway builds an
/// [`AccessPolicy`](gatekit_core::access::AccessPolicy) from.
///
/// Deliberately exhaustive: a new mechanism must break the build of every mapping
/// from specs to layers, never fall into a catch-all arm.
#[derive(Clone, Debug, PartialEq)]
pub enum AccessSpec {
    /// API keys (`apiKeyAuth`).
    ApiKey(ApiKeySpec),
    /// HTTP basic authentication (`basicAuth`).
    Basic(BasicSpec),
    /// JSON Web Tokens (`jwt`).
    Jwt(JwtSpec),
    /// External authorization (`extAuth`).
    ExtAuth(ExtAuthSpec),
    /// OpenID Connect login (`oidc`; boxed: by far the largest spec).
    Oidc(Box<OidcSpec>),
    /// Allow/deny rules (`authorization`).
    Authz(AuthzSpec),
}

impl AccessSpec {
    /// The mechanism's field name: `apiKeyAuth`, `basicAuth`, `jwt`, `extAuth`, `oidc`,
    /// `authorization`.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Self::ApiKey(_) => "apiKeyAuth",
            Self::Basic(_) => "basicAuth",
            Self::Jwt(_) => "jwt",
            Self::ExtAuth(_) => "extAuth",
            Self::Oidc(_) => "oidc",
            Self::Authz(_) => "authorization",
        }
    }

    /// How many consumers (API keys), users (basic auth), providers (JWT, OIDC),
    /// upstreams (external authorization) or rules (authorization) it holds.
    pub fn count(&self) -> usize {
        match self {
            Self::ApiKey(s) => s.consumers.len(),
            Self::Basic(s) => s.users(),
            Self::Jwt(s) => s.providers.len(),
            Self::ExtAuth(_) => 1,
            Self::Oidc(_) => 1,
            Self::Authz(s) => s.rules.len(),
        }
    }
}

/// Where a credential is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialFrom {
    /// A request header, with the prefix before the credential (`Bearer `; empty:
    /// none).
    Header {
        /// The header name.
        name: String,
        /// What precedes the credential.
        prefix: String,
    },
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
}

/// API keys from Secrets.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct ApiKeySpec {
    /// Consumers (client ids) with their keys, sorted by client id.
    pub consumers: Vec<ApiKeyConsumer>,
    /// Where keys are read from, in order.
    pub sources: Vec<CredentialFrom>,
    /// A request header the client id is written to.
    pub forward_header: Option<String>,
    /// Remove the key from the request before it is forwarded.
    pub sanitize: bool,
}

/// One API key consumer.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiKeyConsumer {
    /// The client id (the Secret's data key): the request's identity.
    pub client_id: String,
    /// The digests of its keys (several while one is rotated: each Secret naming the
    /// client adds one), made as the Secret was read: the keys themselves are not
    /// held.
    pub keys: Vec<KeyDigest>,
}

/// Names and counts only.
impl fmt::Debug for ApiKeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySpec")
            .field("consumers", &self.consumers)
            .field("sources", &self.sources)
            .field("forward_header", &self.forward_header)
            .field("sanitize", &self.sanitize)
            .finish()
    }
}

/// The client id and a key count: no digest.
impl fmt::Debug for ApiKeyConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConsumer")
            .field("client_id", &self.client_id)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// HTTP basic authentication against htpasswd lines.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BasicSpec {
    /// The `.htpasswd` text (`user:hash` lines), zeroed when dropped. Password
    /// hashes, not passwords: a line holding anything else (a plain-text password)
    /// is refused when the gateway builds the policy, and the rules naming it answer
    /// 500 until the Secret is fixed.
    pub htpasswd: Zeroizing<String>,
    /// The realm of the `WWW-Authenticate` challenge.
    pub realm: String,
    /// A request header the user name is written to.
    pub forward_header: Option<String>,
}

impl BasicSpec {
    /// The number of `user:hash` lines.
    pub fn users(&self) -> usize {
        self.htpasswd
            .lines()
            .filter(|l| l.contains(':') && !l.trim_start().starts_with('#'))
            .count()
    }
}

/// No password hash in debug output.
impl fmt::Debug for BasicSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicSpec")
            .field("users", &self.users())
            .field("realm", &self.realm)
            .field("forward_header", &self.forward_header)
            .finish()
    }
}

/// JSON Web Tokens.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JwtSpec {
    /// A request without a token passes (a bad token never does).
    pub optional: bool,
    /// The providers; a token any of them verifies passes.
    pub providers: Vec<JwtProviderSpec>,
}

/// One JWT provider.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JwtProviderSpec {
    /// Its name (authorization rules name it).
    pub name: String,
    /// The required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values (empty: unchecked).
    pub audiences: Vec<String>,
    /// Where its keys come from.
    pub keys: JwksSource,
    /// Claims copied to request headers: (header, claim).
    pub claim_to_headers: Vec<(String, String)>,
    /// Where tokens are read from (empty: `Authorization: Bearer`).
    pub sources: Vec<CredentialFrom>,
}

/// A JWT provider's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS document (public keys).
    Local(String),
    /// Fetched from `uri`.
    Remote {
        /// The JWKS URL.
        uri: String,
        /// How long fetched keys are kept.
        cache_duration: Option<Duration>,
        /// The upstream to fetch through (a backendRef), instead of `uri`'s host.
        upstream: Option<String>,
    },
}

/// External authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtAuthSpec {
    /// HTTP or gRPC.
    pub mode: ExtAuthMode,
    /// The upstream of the authorization service (a name in
    /// [`Translation::upstreams`](super::Translation::upstreams)).
    pub upstream: String,
    /// Client request headers sent to the service (empty: the mode's default).
    pub headers_to_ext_auth: Vec<String>,
    /// Let requests through when the service cannot be reached.
    pub fail_open: bool,
    /// The most request body bytes sent (`None`: no body).
    pub max_request_bytes: Option<u32>,
    /// How long to wait for the service.
    pub timeout: Option<Duration>,
}

/// The protocol spoken to an external authorization service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtAuthMode {
    /// A plain HTTP request; 2xx allows.
    Http {
        /// The path prefix of check requests.
        path: Option<String>,
        /// Response headers copied onto the request to the backend.
        headers_to_backend: Vec<String>,
    },
    /// Envoy's `envoy.service.auth.v3.Authorization/Check`.
    Grpc,
}

/// Allow/deny rules.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthzSpec {
    /// What happens when no rule matches.
    pub default_allow: bool,
    /// The rules; the first match decides.
    pub rules: Vec<AuthzRuleSpec>,
}

/// One authorization rule: every condition set must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthzRuleSpec {
    /// Its name (or `rules[i]`).
    pub name: String,
    /// Allow (or deny) on a match.
    pub allow: bool,
    /// Client address ranges (any of them).
    pub client_cidrs: Vec<String>,
    /// The JWT provider that must have verified the token.
    pub jwt_provider: Option<String>,
    /// Scopes the token must carry (all).
    pub scopes: Vec<String>,
    /// Claims: (name, accepted values).
    pub claims: Vec<(String, Vec<String>)>,
    /// Headers: (name, accepted values).
    pub headers: Vec<(String, Vec<String>)>,
}

/// One named access policy of a [`Translation`](super::Translation): where it comes
/// from, where it applies, and its spec (`None` when it could not be resolved: the
/// rules listing it refuse every request).
#[derive(Clone, Debug, PartialEq)]
pub struct AccessEntry {
    source: ResourceRef,
    mechanism: &'static str,
    targets: Vec<String>,
    spec: Option<Arc<AccessSpec>>,
    problem: Option<String>,
}

impl AccessEntry {
    pub(crate) fn new(
        source: ResourceRef,
        mechanism: &'static str,
        targets: Vec<String>,
        spec: Option<Arc<AccessSpec>>,
        problem: Option<String>,
    ) -> Self {
        Self {
            source,
            mechanism,
            targets,
            spec,
            problem,
        }
    }

    /// The SecurityPolicy, SecurityOverride or HTTPRoute (`ExternalAuth` filter) it
    /// comes from.
    pub fn source(&self) -> &ResourceRef {
        &self.source
    }

    /// The mechanism (`jwt`, ...), or `""` for a policy refused whole.
    pub fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    /// The targets it applies to (`Gateway ns/name`, `HTTPRoute ns/name section s`).
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// The spec; `None` when it could not be resolved.
    pub fn spec(&self) -> Option<&Arc<AccessSpec>> {
        self.spec.as_ref()
    }

    /// Why there is no spec.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }
}

// === attachment ===

/// A target: (kind, namespace, name, section).
type Key = (&'static str, String, String, Option<String>);

/// A Gateway target: (namespace, Gateway, listener).
type GatewayKey = (String, String, Option<String>);

/// What the access pass leaves for routes to read.
#[derive(Default)]
pub(crate) struct AccessMaps {
    /// Every access policy by name.
    pub(crate) entries: Arc<BTreeMap<String, AccessEntry>>,
    /// SecurityOverrides by Gateway target (namespace, Gateway, listener): their age
    /// rank and names.
    overrides: HashMap<GatewayKey, Vec<(usize, Vec<String>)>>,
    /// SecurityPolicies by target: the owner (`namespace/name`) and what it applies.
    policies: HashMap<Key, (String, Applied)>,
    /// The upstreams external authorization and JWKS backendRefs use.
    pub(crate) uses: Arc<Vec<Use>>,
}

/// What a listener contributes to its rules' access lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListenerAccess {
    overrides: Vec<String>,
    policy: Option<Applied>,
}

/// What one SecurityPolicy gives the rules it covers: the names of its checks and its
/// `cors`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Applied {
    names: Vec<String>,
    cors: Option<Arc<CorsPolicy>>,
}

/// A mechanism's name within a policy.
fn entry_name(kind: &str, ns: &str, name: &str, mechanism: &str) -> String {
    if mechanism.is_empty() {
        format!("{kind}/{ns}/{name}")
    } else {
        format!("{kind}/{ns}/{name}/{mechanism}")
    }
}

/// The mechanisms set, in Envoy Gateway's filter order.
fn mechanisms(m: &AccessMechanisms) -> Vec<&'static str> {
    let mut out = Vec::new();
    if m.ext_auth.is_some() {
        out.push("extAuth");
    }
    if m.api_key_auth.is_some() {
        out.push("apiKeyAuth");
    }
    if m.basic_auth.is_some() {
        out.push("basicAuth");
    }
    if m.oidc.is_some() {
        out.push("oidc");
    }
    if m.jwt.is_some() {
        out.push("jwt");
    }
    if m.authorization.is_some() {
        out.push("authorization");
    }
    out
}

/// The fields gatekit does not implement, by path (`oidc`, `jwt.providers[0].recomputeRoute`).
fn unimplemented(m: &AccessMechanisms) -> Vec<String> {
    let mut out: Vec<String> = m.other.keys().cloned().collect();
    out.extend(m.oidc.iter().flat_map(oidc::unimplemented));
    if let Some(a) = &m.api_key_auth {
        out.extend(a.other.keys().map(|k| format!("apiKeyAuth.{k}")));
    }
    if let Some(b) = &m.basic_auth {
        out.extend(b.other.keys().map(|k| format!("basicAuth.{k}")));
    }
    if let Some(j) = &m.jwt {
        out.extend(j.other.keys().map(|k| format!("jwt.{k}")));
        for (i, p) in j.providers.iter().enumerate() {
            out.extend(p.other.keys().map(|k| format!("jwt.providers[{i}].{k}")));
            if let Some(r) = &p.remote_jwks {
                out.extend(
                    r.other
                        .keys()
                        .map(|k| format!("jwt.providers[{i}].remoteJWKS.{k}")),
                );
            }
        }
    }
    if let Some(e) = &m.ext_auth {
        out.extend(e.other.keys().map(|k| format!("extAuth.{k}")));
        if let Some(h) = &e.http {
            out.extend(h.other.keys().map(|k| format!("extAuth.http.{k}")));
        }
        if let Some(g) = &e.grpc {
            out.extend(g.other.keys().map(|k| format!("extAuth.grpc.{k}")));
        }
    }
    if let Some(a) = &m.authorization {
        out.extend(a.other.keys().map(|k| format!("authorization.{k}")));
        for (i, r) in a.rules.iter().enumerate() {
            out.extend(
                r.other
                    .keys()
                    .map(|k| format!("authorization.rules[{i}].{k}")),
            );
            out.extend(
                r.principal
                    .other
                    .keys()
                    .map(|k| format!("authorization.rules[{i}].principal.{k}")),
            );
        }
    }
    out
}

/// Each entry of `secret` as text, borrowed from the Secret (`stringData` over
/// `data`): no copy of a secret value is made here.
fn secret_entries<'s>(
    secret: &'s Secret,
    field: &str,
) -> Result<Vec<(&'s str, &'s str)>, ConfigError> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (k, v) in secret.data.iter().flatten() {
        let Ok(text) = std::str::from_utf8(&v.0) else {
            return Err(ConfigError::new(
                field,
                format!(
                    "Secret {}/{}: data {k:?} is not UTF-8",
                    ns_of(&secret.metadata),
                    name_of(&secret.metadata)
                ),
            ));
        };
        out.push((k, text));
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.retain(|(o, _)| o != k);
        out.push((k, v));
    }
    Ok(out)
}

/// One policy read: its names (in order) and the specs that resolved.
struct Read {
    /// `SecurityPolicy` or `SecurityOverride` (for ReferenceGrants).
    kind: &'static str,
    names: Vec<(String, &'static str)>,
    specs: BTreeMap<String, AccessSpec>,
    problems: Vec<ConfigError>,
    /// A reference to another namespace no ReferenceGrant permits is among the
    /// problems: the status says `RefNotPermitted` rather than `Invalid`.
    not_permitted: bool,
    /// Why the whole policy is refused (fields not implemented).
    unsupported: Option<String>,
    uses: Vec<Use>,
}

impl Context<'_> {
    /// Reads a policy's mechanisms (`kind` `SecurityPolicy` or `SecurityOverride`);
    /// `cors`: the policy also sets `cors`, so it may have no mechanism.
    fn read_access(
        &self,
        kind: &'static str,
        ns: &str,
        name: &str,
        m: &AccessMechanisms,
        cors: bool,
    ) -> Read {
        let mut read = Read {
            kind,
            names: Vec::new(),
            specs: BTreeMap::new(),
            problems: Vec::new(),
            not_permitted: false,
            unsupported: None,
            uses: Vec::new(),
        };
        let missing = unimplemented(m);
        let found = mechanisms(m);
        if !missing.is_empty() || (found.is_empty() && !cors) {
            read.names.push((entry_name(kind, ns, name, ""), ""));
            read.unsupported = Some(if missing.is_empty() {
                "no access mechanism set".to_owned()
            } else {
                format!("not implemented by gatekit: {}", missing.join(", "))
            });
            return read;
        }
        for mech in found {
            let full = entry_name(kind, ns, name, mech);
            let spec = match mech {
                "extAuth" => self.read_ext_auth(ns, m, &mut read),
                "apiKeyAuth" => self.read_api_key(ns, m, &mut read),
                "basicAuth" => self.read_basic(ns, m, &mut read),
                "jwt" => self.read_jwt(ns, m, &mut read),
                "oidc" => self.read_oidc(kind, ns, name, m, &mut read),
                _ => read_authz(m, &mut read.problems),
            };
            if let Some(spec) = spec {
                read.specs.insert(full.clone(), spec);
            }
            read.names.push((full, mech));
        }
        read
    }

    /// The Secret `r` names, checked: kind Secret in the core group, for a policy in
    /// `home`; a Secret in another namespace only where a ReferenceGrant there permits
    /// it (a refusal sets `read.not_permitted`); present.
    fn access_secret(
        &self,
        home: &str,
        r: &SecretRef,
        field: &str,
        read: &mut Read,
    ) -> Result<&Secret, ConfigError> {
        let kind = r.kind.as_deref().unwrap_or("Secret");
        let group = r.group.as_deref().unwrap_or("");
        if kind != "Secret" || !group.is_empty() {
            return Err(ConfigError::new(
                field,
                format!("{group}/{kind} {}: only Secrets (core group)", r.name),
            ));
        }
        let ns = r
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(home);
        if ns != home && !self.grant_allows(read.kind, home, "", "Secret", ns, &r.name) {
            read.not_permitted = true;
            return Err(ConfigError::new(
                field,
                format!(
                    "Secret {ns}/{} is not permitted by any ReferenceGrant in namespace {ns} (from {} {home})",
                    r.name, read.kind
                ),
            ));
        }
        self.secret(ns, &r.name)
            .ok_or_else(|| ConfigError::new(field, format!("Secret {ns}/{} not found", r.name)))
    }

    fn read_api_key(&self, ns: &str, m: &AccessMechanisms, read: &mut Read) -> Option<AccessSpec> {
        let a = m.api_key_auth.as_ref()?;
        let before = read.problems.len();
        let mut consumers: BTreeMap<String, Vec<KeyDigest>> = BTreeMap::new();
        if a.credential_refs.is_empty() {
            read.problems.push(ConfigError::new(
                "spec.apiKeyAuth.credentialRefs",
                "no Secret named",
            ));
        }
        for (i, r) in a.credential_refs.iter().enumerate() {
            let field = format!("spec.apiKeyAuth.credentialRefs[{i}]");
            let entries = self
                .access_secret(ns, r, &field, read)
                .and_then(|secret| secret_entries(secret, &field));
            match entries {
                Ok(pairs) => {
                    // Each key becomes its digest here, from the Secret's own bytes:
                    // no copy of a key is made.
                    for (client, key) in pairs {
                        if key.is_empty() {
                            continue;
                        }
                        let digest = KeyDigest::of(key.as_bytes());
                        let keys = consumers.entry(client.to_owned()).or_default();
                        if !keys.contains(&digest) {
                            keys.push(digest);
                        }
                    }
                }
                Err(e) => read.problems.push(e),
            }
        }
        let mut sources = Vec::new();
        for e in &a.extract_from {
            sources.extend(e.headers.iter().map(|h| CredentialFrom::Header {
                name: h.clone(),
                prefix: String::new(),
            }));
            sources.extend(e.params.iter().cloned().map(CredentialFrom::Query));
            sources.extend(e.cookies.iter().cloned().map(CredentialFrom::Cookie));
        }
        if sources.is_empty() {
            read.problems.push(ConfigError::new(
                "spec.apiKeyAuth.extractFrom",
                "no header, param or cookie to read keys from",
            ));
        }
        (read.problems.len() == before).then(|| {
            AccessSpec::ApiKey(ApiKeySpec {
                consumers: consumers
                    .into_iter()
                    .map(|(client_id, keys)| ApiKeyConsumer { client_id, keys })
                    .collect(),
                sources,
                forward_header: a.forward_client_id_header.clone(),
                sanitize: a.sanitize.unwrap_or(false),
            })
        })
    }

    fn read_basic(&self, ns: &str, m: &AccessMechanisms, read: &mut Read) -> Option<AccessSpec> {
        let b = m.basic_auth.as_ref()?;
        let field = "spec.basicAuth.users";
        let pairs = match self
            .access_secret(ns, &b.users, field, read)
            .and_then(|secret| secret_entries(secret, field))
        {
            Ok(p) => p,
            Err(e) => {
                read.problems.push(e);
                return None;
            }
        };
        let Some((_, htpasswd)) = pairs.into_iter().find(|(k, _)| *k == ".htpasswd") else {
            let secret_ns = b
                .users
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(ns);
            read.problems.push(ConfigError::new(
                field,
                format!("Secret {secret_ns}/{} has no .htpasswd", b.users.name),
            ));
            return None;
        };
        Some(AccessSpec::Basic(BasicSpec {
            htpasswd: Zeroizing::new(htpasswd.to_owned()),
            realm: "gatekit".to_owned(),
            forward_header: b.forward_username_header.clone(),
        }))
    }

    fn read_jwt(&self, ns: &str, m: &AccessMechanisms, read: &mut Read) -> Option<AccessSpec> {
        let j = m.jwt.as_ref()?;
        let before = read.problems.len();
        if j.providers.is_empty() {
            read.problems
                .push(ConfigError::new("spec.jwt.providers", "no provider"));
        }
        let mut providers = Vec::new();
        for (i, p) in j.providers.iter().enumerate() {
            let field = format!("spec.jwt.providers[{i}]");
            let keys = match (&p.remote_jwks, &p.local_jwks) {
                (Some(r), None) => {
                    let cache_duration =
                        match r.cache_duration.as_deref().map(crate::duration::parse) {
                            Some(Ok(d)) => Some(d),
                            Some(Err(e)) => {
                                read.problems.push(ConfigError::new(
                                    format!("{field}.remoteJWKS.cacheDuration"),
                                    e.to_string(),
                                ));
                                None
                            }
                            None => None,
                        };
                    if !(r.uri.starts_with("https://") || r.uri.starts_with("http://")) {
                        read.problems.push(ConfigError::new(
                            format!("{field}.remoteJWKS.uri"),
                            format!("{:?} is not an http(s) URL", r.uri),
                        ));
                    }
                    let upstream = self
                        .access_backend(
                            ns,
                            &r.backend_refs,
                            None,
                            &format!("{field}.remoteJWKS.backendRefs"),
                            false,
                            read,
                        )
                        .unwrap_or_default();
                    JwksSource::Remote {
                        uri: r.uri.clone(),
                        cache_duration,
                        upstream,
                    }
                }
                (None, Some(l)) => match l.kind.as_deref().unwrap_or("Inline") {
                    "Inline" => match &l.inline {
                        Some(text) => JwksSource::Local(text.clone()),
                        None => {
                            read.problems.push(ConfigError::new(
                                format!("{field}.localJWKS.inline"),
                                "type Inline without inline",
                            ));
                            continue;
                        }
                    },
                    "ValueRef" => match l.value_ref.as_ref().map(|v| self.jwks_config_map(ns, v)) {
                        Some(Ok(text)) => JwksSource::Local(text),
                        Some(Err(why)) => {
                            read.problems
                                .push(ConfigError::new(format!("{field}.localJWKS.valueRef"), why));
                            continue;
                        }
                        None => {
                            read.problems.push(ConfigError::new(
                                format!("{field}.localJWKS.valueRef"),
                                "type ValueRef without valueRef",
                            ));
                            continue;
                        }
                    },
                    other => {
                        read.problems.push(ConfigError::new(
                            format!("{field}.localJWKS.type"),
                            format!("{other:?} is not Inline or ValueRef"),
                        ));
                        continue;
                    }
                },
                _ => {
                    read.problems.push(ConfigError::new(
                        field.clone(),
                        "exactly one of remoteJWKS and localJWKS must be set",
                    ));
                    continue;
                }
            };
            let mut sources = Vec::new();
            if let Some(e) = &p.extract_from {
                sources.extend(e.headers.iter().map(|h| CredentialFrom::Header {
                    name: h.name.clone(),
                    prefix: h.value_prefix.clone().unwrap_or_default(),
                }));
                sources.extend(e.cookies.iter().cloned().map(CredentialFrom::Cookie));
                sources.extend(e.params.iter().cloned().map(CredentialFrom::Query));
            }
            providers.push(JwtProviderSpec {
                name: p.name.clone(),
                issuer: p.issuer.clone().filter(|s| !s.is_empty()),
                audiences: p.audiences.clone(),
                keys,
                claim_to_headers: p
                    .claim_to_headers
                    .iter()
                    .map(|c| (c.header.clone(), c.claim.clone()))
                    .collect(),
                sources,
            });
        }
        (read.problems.len() == before).then(|| {
            AccessSpec::Jwt(JwtSpec {
                optional: j.optional.unwrap_or(false),
                providers,
            })
        })
    }

    /// The JWKS in ConfigMap `ns/name`: its `jwks` key, else its first value.
    fn jwks_config_map(
        &self,
        ns: &str,
        r: &crate::types::security::LocalObjectRef,
    ) -> Result<String, String> {
        if r.kind != "ConfigMap" {
            return Err(format!("{} {}: only ConfigMaps", r.kind, r.name));
        }
        let cm = self
            .resources
            .config_maps
            .iter()
            .find(|c| ns_of(&c.metadata) == ns && name_of(&c.metadata) == r.name)
            .ok_or_else(|| format!("ConfigMap {ns}/{} not found", r.name))?;
        let data = cm.data.as_ref();
        data.and_then(|d| d.get("jwks").or_else(|| d.values().next()))
            .cloned()
            .ok_or_else(|| format!("ConfigMap {ns}/{} has no data", r.name))
    }

    /// The upstream of an access mechanism's backendRefs (one at most; `None` when
    /// none is given), resolved like a route's backendRef from namespace `ns` (like a
    /// GRPCRoute's when `grpc`: h2c unless the port says otherwise): a Service in
    /// another namespace only where a ReferenceGrant there permits it.
    fn access_backend(
        &self,
        ns: &str,
        refs: &[AccessBackendRef],
        single: Option<&AccessBackendRef>,
        field: &str,
        grpc: bool,
        read: &mut Read,
    ) -> Result<Option<String>, ()> {
        let all: Vec<&AccessBackendRef> = refs.iter().chain(single).collect();
        let Some(r) = all.first() else {
            return Ok(None);
        };
        if all.len() > 1 {
            read.problems.push(ConfigError::new(
                field,
                "gatekit sends to one backendRef; more are not implemented",
            ));
            return Err(());
        }
        let spec = RefSpec {
            group: r.group.as_deref(),
            kind: r.kind.as_deref(),
            name: &r.name,
            namespace: r.namespace.as_deref().filter(|n| !n.is_empty()),
            port: r.port,
        };
        match self.resolve(read.kind, ns, &spec, grpc) {
            Ok(w) => {
                let name = w.upstream_name();
                read.uses.push(Use {
                    name: Arc::from(name.as_str()),
                    wanted: w,
                });
                Ok(Some(name))
            }
            Err(u) => {
                if u.reason == reason::REF_NOT_PERMITTED {
                    read.not_permitted = true;
                }
                read.problems.push(ConfigError::new(field, u.message));
                Err(())
            }
        }
    }

    fn read_ext_auth(&self, ns: &str, m: &AccessMechanisms, read: &mut Read) -> Option<AccessSpec> {
        let e = m.ext_auth.as_ref()?;
        let before = read.problems.len();
        let (mode, upstream) = match (&e.http, &e.grpc) {
            (Some(h), None) => (
                ExtAuthMode::Http {
                    path: h.path.clone(),
                    headers_to_backend: h.headers_to_backend.clone(),
                },
                self.access_backend(
                    ns,
                    &h.backend_refs,
                    h.backend_ref.as_ref(),
                    "spec.extAuth.http.backendRefs",
                    false,
                    read,
                ),
            ),
            (None, Some(g)) => (
                ExtAuthMode::Grpc,
                self.access_backend(
                    ns,
                    &g.backend_refs,
                    g.backend_ref.as_ref(),
                    "spec.extAuth.grpc.backendRefs",
                    true,
                    read,
                ),
            ),
            _ => {
                read.problems.push(ConfigError::new(
                    "spec.extAuth",
                    "exactly one of http and grpc must be set",
                ));
                return None;
            }
        };
        let upstream = match upstream {
            Ok(Some(u)) => Some(u),
            Ok(None) => {
                read.problems.push(ConfigError::new(
                    "spec.extAuth",
                    "no backendRefs: the authorization service is not named",
                ));
                None
            }
            Err(()) => None,
        };
        let timeout = match e.timeout.as_deref().map(crate::duration::parse) {
            Some(Ok(d)) => Some(d),
            Some(Err(err)) => {
                read.problems
                    .push(ConfigError::new("spec.extAuth.timeout", err.to_string()));
                None
            }
            None => None,
        };
        let upstream = upstream?;
        (read.problems.len() == before).then(|| {
            AccessSpec::ExtAuth(ExtAuthSpec {
                mode,
                upstream,
                headers_to_ext_auth: e.headers_to_ext_auth.clone(),
                fail_open: e.fail_open.unwrap_or(false),
                max_request_bytes: e.body_to_ext_auth.as_ref().map(|b| b.max_request_bytes),
                timeout,
            })
        })
    }
}

/// `Allow` or `Deny`.
fn action(value: &str, field: String, problems: &mut Vec<ConfigError>) -> bool {
    match value {
        "Allow" => true,
        "Deny" => false,
        other => {
            problems.push(ConfigError::new(
                field,
                format!("{other:?} is not Allow or Deny"),
            ));
            false
        }
    }
}

/// Whether `s` is an address range (`10.0.0.0/8`, `2001:db8::/32`).
fn is_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    match (addr.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(l)) => l <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(l)) => l <= 128,
        _ => false,
    }
}

fn read_authz(m: &AccessMechanisms, problems: &mut Vec<ConfigError>) -> Option<AccessSpec> {
    let a = m.authorization.as_ref()?;
    let before = problems.len();
    let default_allow = action(
        a.default_action.as_deref().unwrap_or("Deny"),
        "spec.authorization.defaultAction".to_owned(),
        problems,
    );
    let providers: Vec<&str> = m
        .jwt
        .iter()
        .flat_map(|j| j.providers.iter().map(|p| p.name.as_str()))
        .collect();
    let mut rules = Vec::new();
    for (i, r) in a.rules.iter().enumerate() {
        let field = format!("spec.authorization.rules[{i}]");
        let allow = action(&r.action, format!("{field}.action"), problems);
        for (j, c) in r.principal.client_cidrs.iter().enumerate() {
            if !is_cidr(c) {
                problems.push(ConfigError::new(
                    format!("{field}.principal.clientCIDRs[{j}]"),
                    format!("{c:?} is not an address range"),
                ));
            }
        }
        let jwt = r.principal.jwt.as_ref();
        if let Some(j) = jwt
            && !providers.contains(&j.provider.as_str())
        {
            problems.push(ConfigError::new(
                format!("{field}.principal.jwt.provider"),
                format!("{:?} is not a provider of this policy's jwt", j.provider),
            ));
        }
        if r.principal.client_cidrs.is_empty() && jwt.is_none() && r.principal.headers.is_empty() {
            problems.push(ConfigError::new(
                format!("{field}.principal"),
                "empty: set clientCIDRs, jwt or headers",
            ));
        }
        rules.push(AuthzRuleSpec {
            name: r.name.clone().unwrap_or_else(|| format!("rules[{i}]")),
            allow,
            client_cidrs: r.principal.client_cidrs.clone(),
            jwt_provider: jwt.map(|j| j.provider.clone()),
            scopes: jwt.map(|j| j.scopes.clone()).unwrap_or_default(),
            claims: jwt
                .iter()
                .flat_map(|j| j.claims.iter().map(|c| (c.name.clone(), c.values.clone())))
                .collect(),
            headers: r
                .principal
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.values.clone()))
                .collect(),
        });
    }
    (problems.len() == before).then_some(AccessSpec::Authz(AuthzSpec {
        default_allow,
        rules,
    }))
}

/// A SecurityPolicy's `cors` as the CORS policy of the rules it covers, checked as
/// an HTTPRoute's CORS filter is (problems name `spec.cors.<field>`).
fn read_cors(c: &Cors, problems: &mut Vec<ConfigError>) -> Option<Arc<CorsPolicy>> {
    let before = problems.len();
    if c.allow_origins.is_empty() {
        problems.push(ConfigError::new(
            "spec.cors.allowOrigins",
            "no origin: at least one is required",
        ));
    }
    let mut p = CorsPolicy::default();
    p.allow_origins = c.allow_origins.clone();
    p.allow_methods = c.allow_methods.clone();
    p.allow_headers = c.allow_headers.clone();
    p.expose_headers = c.expose_headers.clone();
    p.allow_credentials = c.allow_credentials.unwrap_or(false);
    p.max_age = match c.max_age.as_deref().map(crate::duration::parse) {
        None => None,
        Some(Ok(d)) => match u32::try_from(d.as_secs()) {
            Ok(secs) => Some(secs),
            Err(_) => {
                problems.push(ConfigError::new("spec.cors.maxAge", "too long"));
                None
            }
        },
        Some(Err(e)) => {
            problems.push(ConfigError::new("spec.cors.maxAge", e.to_string()));
            None
        }
    };
    if let Err(e) = super::route::cors_filter(p.clone()) {
        problems.push(ConfigError::new(
            format!("spec.cors.{}", e.field()),
            e.reason(),
        ));
    }
    (problems.len() == before).then(|| Arc::new(p))
}

/// The rules (`rules[i]`, or by name) of HTTPRoute `ns/name` (only rule `section`, if
/// set) that have a CORS filter of their own.
fn rules_with_cors(
    resources: &crate::ResourceSet,
    ns: &str,
    name: &str,
    section: Option<&str>,
) -> Vec<String> {
    use gateway_api::experimental::httproutes::HttpRouteRulesFiltersType as FilterType;
    let Some(route) = resources
        .http_routes
        .iter()
        .find(|r| ns_of(&r.metadata) == ns && name_of(&r.metadata) == name)
    else {
        return Vec::new();
    };
    route
        .spec
        .rules
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, r)| section.is_none_or(|s| r.name.as_deref() == Some(s)))
        .filter(|(_, r)| {
            r.filters
                .iter()
                .flatten()
                .any(|f| f.r#type == FilterType::Cors)
        })
        .map(|(i, r)| match &r.name {
            Some(n) => format!("rule {n}"),
            None => format!("rules[{i}]"),
        })
        .collect()
}

/// A target as a status string.
fn target_text(kind: &str, ns: &str, name: &str, section: Option<&str>) -> String {
    match section {
        Some(s) => format!("{kind} {ns}/{name} section {s}"),
        None => format!("{kind} {ns}/{name}"),
    }
}

impl Context<'_> {
    /// Attaches every SecurityOverride, then every SecurityPolicy (oldest first; see
    /// the [module docs](self)), and pushes their statuses.
    pub(crate) fn attach_access_policies(&mut self, statuses: &mut Vec<ResourceStatus>) {
        let resources = self.resources;
        if resources.security_policies.is_empty() && resources.security_overrides.is_empty() {
            return;
        }
        let mut entries: BTreeMap<String, AccessEntry> = BTreeMap::new();
        let mut uses: Vec<Use> = Vec::new();
        let mut maps = AccessMaps::default();
        // Overrides by Gateway (namespace, name): their `namespace/name`, for the
        // statuses of SecurityPolicies under them.
        let mut override_names: HashMap<(String, String), Vec<String>> = HashMap::new();
        let sections = gateway_sections(resources);
        for (rank, o) in by_age(&resources.security_overrides, |o| &o.metadata)
            .into_iter()
            .enumerate()
        {
            let ns = ns_of(&o.metadata);
            let name = name_of(&o.metadata);
            let resource = ResourceRef::new("SecurityOverride", Some(ns), name);
            let read = self.read_access("SecurityOverride", ns, name, &o.spec.access, false);
            let mut attachment = Attachment::new();
            let mut targets = Vec::new();
            let mut ancestors = Vec::new();
            if o.spec.target_refs.is_empty() {
                attachment.not_found_all(Vec::new(), "no targetRefs".to_owned());
            }
            for t in &o.spec.target_refs {
                let section = t.section_name.as_deref();
                let ancestor = gateway_ancestor(ns, &t.name, section);
                let text = target_text(&t.kind, ns, &t.name, section);
                ancestors.push(ancestor.clone());
                if t.group.as_deref().unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP
                    || t.kind != "Gateway"
                {
                    attachment.not_found(
                        ancestor,
                        format!("{text}: a SecurityOverride targets Gateways only"),
                    );
                    continue;
                }
                let exists = sections
                    .get(&(ns, t.name.as_str()))
                    .is_some_and(|known| section.is_none_or(|s| known.contains(&s)));
                if !exists {
                    attachment.not_found(ancestor, format!("{text} not found"));
                    continue;
                }
                maps.overrides
                    .entry((ns.to_owned(), t.name.clone(), t.section_name.clone()))
                    .or_default()
                    .push((rank, read.names.iter().map(|(n, _)| n.clone()).collect()));
                let owners = override_names
                    .entry((ns.to_owned(), t.name.clone()))
                    .or_default();
                let owner = format!("{ns}/{name}");
                if !owners.contains(&owner) {
                    owners.push(owner);
                }
                targets.push(text);
                attachment.attached(ancestor);
            }
            let status = self.access_status(
                resource.clone(),
                o.metadata.generation,
                &read,
                ancestors,
                attachment,
            );
            statuses.push(status);
            add_entries(&mut entries, &resource, &targets, read, &mut uses);
        }
        let route_sections = super::policy::sections(resources);
        for p in by_age(&resources.security_policies, |p| &p.metadata) {
            let ns = ns_of(&p.metadata);
            let name = name_of(&p.metadata);
            let owner = format!("{ns}/{name}");
            let resource = ResourceRef::new("SecurityPolicy", Some(ns), name);
            let cors_spec = p.spec.cors.as_ref();
            let mut read = self.read_access(
                "SecurityPolicy",
                ns,
                name,
                &p.spec.access,
                cors_spec.is_some(),
            );
            let selector_fields: Vec<String> = p
                .spec
                .target_selectors
                .iter()
                .enumerate()
                .flat_map(|(i, t)| {
                    t.other
                        .keys()
                        .map(move |k| format!("targetSelectors[{i}].{k}"))
                })
                .chain(
                    cors_spec
                        .into_iter()
                        .flat_map(|c| c.other.keys().map(|k| format!("cors.{k}"))),
                )
                .collect();
            if !selector_fields.is_empty() && read.unsupported.is_none() {
                read.unsupported = Some(format!(
                    "not implemented by gatekit: {}",
                    selector_fields.join(", ")
                ));
                read.specs.clear();
                read.names = vec![(entry_name("SecurityPolicy", ns, name, ""), "")];
            }
            let cors = match cors_spec {
                Some(c) if read.unsupported.is_none() => read_cors(c, &mut read.problems),
                _ => None,
            };
            if read.names.is_empty() && !read.problems.is_empty() {
                // A `cors`-only policy that cannot be used still guards its rules.
                read.names
                    .push((entry_name("SecurityPolicy", ns, name, ""), ""));
            }
            let resolved =
                self.policy_targets(&p.metadata, &p.spec.target_selectors, p.spec.targets());
            // On a TCPRoute or TLSRoute: `authorization` by `clientCIDRs` only.
            let stream_fields =
                stream_access::stream_unsupported(&p.spec.access, cors_spec.is_some());
            if let Some(t) = resolved
                .iter()
                .find(|t| stream_access::STREAM_TARGETS.contains(&t.kind.as_str()))
                && !stream_fields.is_empty()
                && read.unsupported.is_none()
            {
                read.unsupported = Some(format!(
                    "not implemented by gatekit on {} {ns}/{}: {} (a stream connection is checked by authorization rules with clientCIDRs only)",
                    t.kind,
                    t.name,
                    stream_fields.join(", ")
                ));
                read.specs.clear();
                read.names = vec![(entry_name("SecurityPolicy", ns, name, ""), "")];
            }
            let usable = read.unsupported.is_none() && read.problems.is_empty();
            let cors = cors.filter(|_| usable);
            let mut attachment = Attachment::new();
            let mut targets = Vec::new();
            let mut all_ancestors = Vec::new();
            if resolved.is_empty() {
                attachment.not_found_all(
                    Vec::new(),
                    "no target (no targetRefs, and the targetSelectors match nothing)".to_owned(),
                );
            }
            let names: Vec<String> = read.names.iter().map(|(n, _)| n.clone()).collect();
            for t in &resolved {
                let ancestors = self.btp_ancestors(ns, t);
                all_ancestors.extend(ancestors.iter().cloned());
                let text = target_text(&t.kind, ns, &t.name, t.section.as_deref());
                let Some(kind) = ["Gateway", "HTTPRoute", "GRPCRoute"]
                    .into_iter()
                    .chain(stream_access::STREAM_TARGETS)
                    .find(|k| *k == t.kind)
                else {
                    let why = if t.kind == "UDPRoute" {
                        "Envoy Gateway's SecurityPolicy does not target UDPRoutes (a Gateway or UDP listener target checks its flows)"
                    } else {
                        "not a Gateway, HTTPRoute, GRPCRoute, TCPRoute or TLSRoute"
                    };
                    attachment.not_found_all(ancestors, format!("{text}: {why}"));
                    continue;
                };
                let exists = route_sections
                    .get(&(kind, ns, t.name.as_str()))
                    .is_some_and(|known| {
                        t.section
                            .as_deref()
                            .is_none_or(|s| known.contains(&Some(s)))
                    });
                if !exists {
                    attachment.not_found_all(ancestors, format!("{text} not found"));
                    continue;
                }
                let key: Key = (kind, ns.to_owned(), t.name.clone(), t.section.clone());
                if let Some((older, _)) = maps.policies.get(&key).filter(|(o, _)| *o != owner) {
                    attachment.conflicted_all(
                        ancestors,
                        format!("{text}: not applied, the older SecurityPolicy {older} targets it"),
                    );
                    continue;
                }
                maps.policies.insert(
                    key,
                    (
                        owner.clone(),
                        Applied {
                            names: names.clone(),
                            cors: cors.clone(),
                        },
                    ),
                );
                let gateways: Vec<(String, String)> = ancestors
                    .iter()
                    .filter(|a| a.kind == "Gateway")
                    .map(|a| (a.namespace.clone(), a.name.clone()))
                    .collect();
                let mut over: Vec<String> = Vec::new();
                for g in &gateways {
                    for o in override_names.get(g).into_iter().flatten() {
                        if !over.contains(o) {
                            over.push(o.clone());
                        }
                    }
                }
                let mut notes = Vec::new();
                if !over.is_empty() {
                    notes.push(format!(
                        "{text}: the SecurityOverride {} also applies (GEP-713 override: its checks run first and this policy cannot remove them)",
                        over.join(", ")
                    ));
                }
                // A Gateway's `cors` is no check: its streams are not refused for it.
                let checks = stream_access::stream_unsupported(&p.spec.access, false);
                if kind == "Gateway"
                    && !checks.is_empty()
                    && stream_access::has_stream_listener(
                        resources,
                        ns,
                        &t.name,
                        t.section.as_deref(),
                    )
                {
                    notes.push(format!(
                        "{text}: the connections of its TCP, TLS and UDP listeners' routes are refused, as {} cannot be checked on a stream connection (target the HTTP listeners by sectionName to leave them out)",
                        checks.join(", ")
                    ));
                }
                if cors.is_some() && kind == "HTTPRoute" {
                    let own = rules_with_cors(resources, ns, &t.name, t.section.as_deref());
                    if !own.is_empty() {
                        notes.push(format!(
                            "{text}: the HTTPRoute's own CORS filter on {} applies there instead of this policy's cors (the rule-level filter wins, as in Envoy Gateway)",
                            own.join(", ")
                        ));
                    }
                }
                let note = notes.join("; ");
                targets.push(text);
                attachment.attached_with_all(ancestors, note);
            }
            let status = self.access_status(
                resource.clone(),
                p.metadata.generation,
                &read,
                all_ancestors,
                attachment,
            );
            statuses.push(status);
            add_entries(&mut entries, &resource, &targets, read, &mut uses);
        }
        maps.entries = Arc::new(entries);
        maps.uses = Arc::new(uses);
        self.access = maps;
    }

    /// A policy's status: its attachment's, or `Accepted=False` for every target when
    /// it cannot be used (the problems also go to the translation's errors).
    fn access_status(
        &mut self,
        resource: ResourceRef,
        generation: Option<i64>,
        read: &Read,
        ancestors: Vec<AncestorRef>,
        attachment: Attachment,
    ) -> ResourceStatus {
        if let Some(why) = &read.unsupported {
            self.errors.push(ConfigError::new(
                "spec",
                format!("{resource}: {why}; the rules it applies to refuse every request"),
            ));
            return refused(
                resource,
                generation,
                ancestors,
                reason::UNSUPPORTED,
                why.clone(),
            );
        }
        if !read.problems.is_empty() {
            let message = read
                .problems
                .iter()
                .map(|e| format!("{}: {}", e.field(), e.reason()))
                .collect::<Vec<_>>()
                .join("; ");
            for e in &read.problems {
                self.errors.push(ConfigError::new(
                    e.field(),
                    format!("{resource}: {}", e.reason()),
                ));
            }
            let failure = if read.not_permitted {
                reason::REF_NOT_PERMITTED
            } else {
                reason::INVALID
            };
            return refused(
                resource,
                generation,
                ancestors,
                failure,
                format!("{message}; the rules it applies to refuse every request"),
            );
        }
        attachment.status(resource, generation)
    }

    /// What a listener's SecurityOverrides and SecurityPolicies give its rules
    /// (`listener` `None` for a ListenerSet's listener: Gateway-wide ones only).
    pub(crate) fn listener_access(
        &self,
        gw_ns: &str,
        gw: &str,
        listener: Option<&str>,
    ) -> ListenerAccess {
        let maps = &self.access;
        if maps.overrides.is_empty() && maps.policies.is_empty() {
            return ListenerAccess::default();
        }
        let mut ranked: Vec<&(usize, Vec<String>)> = Vec::new();
        for section in std::iter::once(None).chain(listener.map(Some)) {
            let key = (gw_ns.to_owned(), gw.to_owned(), section.map(str::to_owned));
            ranked.extend(maps.overrides.get(&key).into_iter().flatten());
        }
        ranked.sort_by_key(|(rank, _)| *rank);
        let mut overrides: Vec<String> = Vec::new();
        for (_, names) in ranked {
            for n in names {
                if !overrides.contains(n) {
                    overrides.push(n.clone());
                }
            }
        }
        let policy_of = |section: Option<&str>| {
            maps.policies
                .get(&(
                    "Gateway",
                    gw_ns.to_owned(),
                    gw.to_owned(),
                    section.map(str::to_owned),
                ))
                .map(|(_, a)| a.clone())
        };
        let policy = listener
            .and_then(|l| policy_of(Some(l)))
            .or_else(|| policy_of(None));
        ListenerAccess { overrides, policy }
    }

    /// Sets each rule's access list: `parent`'s overrides, then the most specific
    /// SecurityPolicy (rule, route, then `parent`'s); that policy's `cors` becomes the
    /// rule's CORS filter, first in its list, unless the rule has its own.
    pub(crate) fn apply_access(
        &self,
        kind: &'static str,
        ns: &str,
        name: &str,
        parent: &ListenerAccess,
        rules: &mut [Rule],
    ) {
        let maps = &self.access;
        if maps.overrides.is_empty() && maps.policies.is_empty() {
            // The rules' own (ExternalAuth filters) stay as they are.
            return;
        }
        let of = |section: Option<&str>| {
            maps.policies
                .get(&(
                    kind,
                    ns.to_owned(),
                    name.to_owned(),
                    section.map(str::to_owned),
                ))
                .map(|(_, n)| n)
        };
        let route = of(None);
        for rule in rules {
            let own = rule.name.as_deref().and_then(|s| of(Some(s)));
            let policy = own.or(route).or(parent.policy.as_ref());
            if let Some(cors) = policy.and_then(|p| p.cors.as_ref())
                && !rule.filters.iter().any(|f| matches!(f, Filter::Cors(_)))
            {
                rule.filters = std::iter::once(Filter::Cors(CorsPolicy::clone(cors)))
                    .chain(std::mem::take(&mut rule.filters))
                    .collect();
            }
            // The rule's own (ExternalAuth filters) come last.
            let mut access = parent.overrides.clone();
            let names = policy.map(|p| p.names.as_slice()).unwrap_or_default();
            for n in names.iter().chain(&rule.policy.access) {
                if !access.contains(n) {
                    access.push(n.clone());
                }
            }
            rule.update_policy(|p| p.access = access);
        }
    }
}

/// See [`Translation::refuse_access_policies`](super::Translation::refuse_access_policies).
pub(crate) fn refuse_built<'e>(
    entries: &BTreeMap<String, AccessEntry>,
    statuses: &mut [Arc<ResourceStatus>],
    failures: impl IntoIterator<Item = (&'e str, &'e ConfigError)>,
) {
    // The problems of each policy, in the order given.
    let mut by_source: Vec<(&ResourceRef, Vec<String>)> = Vec::new();
    for (name, error) in failures {
        let Some(entry) = entries.get(name) else {
            continue;
        };
        let source = entry.source();
        if !matches!(source.kind(), "SecurityPolicy" | "SecurityOverride") {
            continue;
        }
        let problem = format!("{}: {}", error.field(), error.reason());
        match by_source.iter_mut().find(|(s, _)| *s == source) {
            Some((_, problems)) => problems.push(problem),
            None => by_source.push((source, vec![problem])),
        }
    }
    for (source, problems) in by_source {
        let Some(status) = statuses.iter_mut().find(|s| s.resource() == source) else {
            continue;
        };
        let ancestors = status
            .ancestors()
            .iter()
            .map(|a| a.ancestor().clone())
            .collect();
        *status = Arc::new(refused(
            source.clone(),
            status.generation(),
            ancestors,
            reason::INVALID,
            format!(
                "{}; the rules it applies to refuse every request",
                problems.join("; ")
            ),
        ));
    }
}

/// Adds a policy's entries (a spec for each name that resolved).
fn add_entries(
    entries: &mut BTreeMap<String, AccessEntry>,
    source: &ResourceRef,
    targets: &[String],
    read: Read,
    uses: &mut Vec<Use>,
) {
    let Read {
        names,
        mut specs,
        problems,
        unsupported,
        uses: own_uses,
        ..
    } = read;
    let problem = unsupported.or_else(|| {
        (!problems.is_empty()).then(|| {
            problems
                .iter()
                .map(|e| format!("{}: {}", e.field(), e.reason()))
                .collect::<Vec<_>>()
                .join("; ")
        })
    });
    // A policy with a problem emits no spec at all: every rule it guards refuses.
    let usable = problem.is_none();
    if usable {
        uses.extend(own_uses);
    }
    for (name, mechanism) in names {
        let spec = if usable {
            specs.remove(&name).map(Arc::new)
        } else {
            None
        };
        entries.insert(
            name,
            AccessEntry {
                source: source.clone(),
                mechanism,
                targets: targets.to_vec(),
                problem: if spec.is_none() {
                    problem.clone()
                } else {
                    None
                },
                spec,
            },
        );
    }
}

/// Each Gateway's listener names, by (namespace, name).
fn gateway_sections(resources: &crate::ResourceSet) -> HashMap<(&str, &str), Vec<&str>> {
    resources
        .gateways
        .iter()
        .map(|g| {
            (
                (ns_of(&g.metadata), name_of(&g.metadata)),
                g.spec.listeners.iter().map(|l| l.name.as_str()).collect(),
            )
        })
        .collect()
}

impl Context<'_> {
    /// The targets of a policy with `targetSelectors` and `targetRefs`, in Envoy
    /// Gateway's order (see `policy.rs`).
    fn policy_targets<'r>(
        &self,
        meta: &ObjectMeta,
        selectors: &[crate::types::btp::BtpTargetSelector],
        refs: impl Iterator<Item = &'r crate::types::btp::BtpTargetRef>,
    ) -> Vec<BtpTarget> {
        self.selected_targets(ns_of(meta), selectors, refs)
    }
}
