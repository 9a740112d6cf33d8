//! Access control resources: Envoy Gateway's `SecurityPolicy`
//! (`gateway.envoyproxy.io/v1alpha1`) and gatekit's `SecurityOverride`
//! (`gatekit.io/v1alpha1`).
//!
//! Both carry the same mechanisms ([`AccessMechanisms`], flattened into each spec):
//!
//! - `apiKeyAuth`: `credentialRefs` (Secrets: each data key is a client id, its value
//!   the key), `extractFrom` (`headers`, `params`, `cookies`), `forwardClientIDHeader`,
//!   `sanitize`;
//! - `basicAuth`: `users` (a Secret with `.htpasswd`), `forwardUsernameHeader`;
//! - `jwt`: `optional` and `providers` (`name`, `issuer`, `audiences`, `remoteJWKS`
//!   {`uri`, `cacheDuration`, `backendRefs`}, `localJWKS` {`type`, `inline`,
//!   `valueRef` (a ConfigMap)}, `claimToHeaders`, `extractFrom`);
//! - `extAuth`: `http` {`backendRefs`, `path`, `headersToBackend`} or `grpc`
//!   {`backendRefs`}, `headersToExtAuth`, `failOpen`, `bodyToExtAuth`
//!   {`maxRequestBytes`}, `timeout`;
//! - `oidc`: `provider` {`issuer`, `authorizationEndpoint`, `tokenEndpoint`,
//!   `endSessionEndpoint`, `backendRefs`, `backendRef`}, `clientID` or `clientIDRef`,
//!   `clientSecret`, `scopes`, `resources`, `redirectURL`, `logoutPath`,
//!   `forwardAccessToken`, `defaultTokenTTL`, `refreshToken`, `defaultRefreshTokenTTL`,
//!   `csrfTokenTTL`, `cookieNames` {`accessToken`, `idToken`}, `cookieDomain`,
//!   `cookieConfig` {`sameSite`}, `denyRedirect` {`headers`}, `passThroughAuthHeader`,
//!   `disableTokenEncryption` (Envoy Gateway v1.5, and v1.6's `csrfTokenTTL` and
//!   `disableTokenEncryption`);
//! - `authorization`: `defaultAction` and `rules` (`name`, `action`, `principal`
//!   {`clientCIDRs`, `jwt` {`provider`, `scopes`, `claims`}, `headers`}).
//!
//! A `SecurityPolicy` also carries `cors` ([`Cors`]: `allowOrigins`, `allowMethods`,
//! `allowHeaders`, `exposeHeaders`, `maxAge`, `allowCredentials`), applied to the rules
//! it covers as their CORS filter (a `SecurityOverride` has no `cors`).
//!
//! Every other field, at every level (`operation`, backend settings,
//! `recomputeRoute`, ...), lands in an `other` map, and the translation refuses the
//! policy naming it: nothing is silently ignored. A refused policy still guards the
//! rules it targets (they answer 500 `invalid-auth-policy`), never leaving them open.
//!
//! A `SecurityPolicy` targets Gateways (or a listener, `sectionName`), HTTPRoutes and
//! GRPCRoutes (or a rule, `sectionName`), by `targetRefs` or `targetSelectors`; a
//! `SecurityOverride` targets Gateways and listeners only, and applies to every rule
//! under them in addition to the rule's own SecurityPolicy (GEP-713 overrides).
//!
//! gatekit does not install the SecurityPolicy CRD (Envoy Gateway's defines it); it
//! generates and ships the SecurityOverride one (`deploy/crds`).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::btp::{BtpTargetRef, BtpTargetSelector};

/// A field gatekit does not read: kept, so the translation can name it.
type Other = BTreeMap<String, serde_json::Value>;

/// The spec of an Envoy Gateway `SecurityPolicy` (the fields gatekit reads).
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.envoyproxy.io",
    version = "v1alpha1",
    kind = "SecurityPolicy",
    plural = "securitypolicies",
    status = "crate::types::PolicyStatus",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    doc = "Envoy Gateway's SecurityPolicy, as gatekit reads it."
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPolicySpec {
    /// Gateways, listeners, routes or route rules, in the policy's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<BtpTargetRef>,
    /// The older, single target (deprecated in Envoy Gateway, still read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<BtpTargetRef>,
    /// Targets by label, in the policy's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_selectors: Vec<BtpTargetSelector>,
    /// Cross-origin resource sharing on the rules the policy covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// The mechanisms.
    #[serde(flatten)]
    pub access: AccessMechanisms,
}

/// `cors` (Envoy Gateway's `CORS`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Allowed origins: `*`, or `<scheme>://<host>[:<port>]` whose host may be `*` or
    /// start with `*.`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    /// Methods a cross-origin request may use (`*`: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Request headers a cross-origin request may send (`*`: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers the browser shows the page (`*`: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// How long a preflight answer may be cached (a duration, `10s`, `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Whether credentialed requests are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

impl SecurityPolicySpec {
    /// `targetRefs`, then `targetRef`.
    pub fn targets(&self) -> impl Iterator<Item = &BtpTargetRef> {
        self.target_refs.iter().chain(self.target_ref.iter())
    }
}

/// The spec of a gatekit `SecurityOverride`: access mechanisms a platform team puts on
/// every route rule under a Gateway (or listener), which no route's own policy can
/// remove (GEP-713 overrides).
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gatekit.io",
    version = "v1alpha1",
    kind = "SecurityOverride",
    plural = "securityoverrides",
    shortname = "gkso",
    status = "crate::types::PolicyStatus",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    doc = "A gatekit SecurityOverride: access checks every route rule under a Gateway or listener must pass, whatever the routes' own policies say."
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityOverrideSpec {
    /// Gateways (or listeners, with `sectionName`) in the override's namespace.
    #[serde(default)]
    pub target_refs: Vec<OverrideTargetRef>,
    /// The mechanisms.
    #[serde(flatten)]
    pub access: AccessMechanisms,
}

/// A `SecurityOverride` target: a Gateway or one of its listeners.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OverrideTargetRef {
    /// `gateway.networking.k8s.io` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Gateway`.
    pub kind: String,
    /// The Gateway's name, in the override's namespace.
    pub name: String,
    /// A listener name: only the rules attached through that listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// The access mechanisms of a policy. Each one set becomes one named check on the
/// rules the policy applies to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessMechanisms {
    /// API keys from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_auth: Option<ApiKeyAuth>,
    /// HTTP basic authentication against an htpasswd Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// JSON Web Tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
    /// External authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_auth: Option<ExtAuth>,
    /// OpenID Connect login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Oidc>,
    /// Allow/deny rules on client address, JWT claims and headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// Every other field (a SecurityOverride's `cors`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// A reference to a Secret (Envoy Gateway's `SecretObjectReference`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Secret` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The Secret's name.
    pub name: String,
    /// Its namespace (default: the policy's; another needs a ReferenceGrant there
    /// from the policy's kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `apiKeyAuth`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyAuth {
    /// Secrets whose data keys are client ids and values their API keys.
    #[serde(default)]
    pub credential_refs: Vec<SecretRef>,
    /// Where keys are read from (the first place holding one wins).
    #[serde(default)]
    pub extract_from: Vec<KeySources>,
    /// A request header the client id is written to.
    #[serde(
        default,
        rename = "forwardClientIDHeader",
        skip_serializing_if = "Option::is_none"
    )]
    pub forward_client_id_header: Option<String>,
    /// Remove the key from the request before it reaches the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitize: Option<bool>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// One `extractFrom` entry of `apiKeyAuth`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeySources {
    /// Header names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Query parameter names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Cookie names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
}

/// `basicAuth`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// A Secret holding `.htpasswd`.
    pub users: SecretRef,
    /// A request header the user name is written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_username_header: Option<String>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `jwt`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Jwt {
    /// A request without a token passes (one with a bad token never does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// The providers; a token verified by any of them passes.
    #[serde(default)]
    pub providers: Vec<JwtProvider>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `jwt.providers[]`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JwtProvider {
    /// Unique within the policy; named by authorization rules.
    pub name: String,
    /// The required `iss` (unchecked when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted `aud` values (unchecked when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Keys fetched from a URL.
    #[serde(
        default,
        rename = "remoteJWKS",
        skip_serializing_if = "Option::is_none"
    )]
    pub remote_jwks: Option<RemoteJwks>,
    /// Keys given inline or in a ConfigMap.
    #[serde(default, rename = "localJWKS", skip_serializing_if = "Option::is_none")]
    pub local_jwks: Option<LocalJwks>,
    /// Claims copied to request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// Where the token is read from (default: `Authorization: Bearer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract_from: Option<JwtExtractFrom>,
    /// Every other field (`recomputeRoute`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `remoteJWKS`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteJwks {
    /// The JWKS URL.
    pub uri: String,
    /// How long fetched keys are kept (a Gateway API duration, `300s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_duration: Option<String>,
    /// Services to fetch from instead of the URL's host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<AccessBackendRef>,
    /// Every other field (`backendSettings`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `localJWKS`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalJwks {
    /// `Inline` (the default) or `ValueRef`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The JWKS document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// A ConfigMap in the policy's namespace: its `jwks` key, else its first value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_ref: Option<LocalObjectRef>,
}

/// A reference to an object in the policy's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `ConfigMap`.
    pub kind: String,
    /// The name.
    pub name: String,
}

/// `claimToHeaders[]`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// The request header.
    pub header: String,
    /// The claim (nested with dots).
    pub claim: String,
}

/// A JWT provider's `extractFrom`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtExtractFrom {
    /// Headers, with the prefix before the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<JwtHeader>,
    /// Cookie names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
    /// Query parameter names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
}

/// A header a token is read from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtHeader {
    /// The header name.
    pub name: String,
    /// What precedes the token (`Bearer `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_prefix: Option<String>,
}

/// A backendRef of an access mechanism (a Service port).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessBackendRef {
    /// `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Service` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The Service's name.
    pub name: String,
    /// Its namespace (default: the policy's; another needs a ReferenceGrant there
    /// from the policy's kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Weight (gatekit sends to the first backendRef only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// `extAuth`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuth {
    /// An HTTP authorization service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpExtAuth>,
    /// An Envoy `ext_authz` gRPC service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcExtAuth>,
    /// Client request headers sent to the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_ext_auth: Vec<String>,
    /// Let requests through when the service cannot be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
    /// Request body forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_to_ext_auth: Option<BodyToExtAuth>,
    /// How long to wait for the service (a Gateway API duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Every other field (`recomputeRoute`, `contextExtensions`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `extAuth.http`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpExtAuth {
    /// The service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<AccessBackendRef>,
    /// The single-backend form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<AccessBackendRef>,
    /// The path prefix of check requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Response headers of the service copied onto the request to the backend.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_backend: Vec<String>,
    /// Every other field (`backendSettings`, `host`, `port`, `tls`, ...): refused.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `extAuth.grpc`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrpcExtAuth {
    /// The service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<AccessBackendRef>,
    /// The single-backend form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<AccessBackendRef>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `extAuth.bodyToExtAuth`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BodyToExtAuth {
    /// The most body bytes sent.
    pub max_request_bytes: u32,
}

/// `oidc`: OpenID Connect login (Envoy Gateway's `OIDC`). The required fields are
/// optional here so that a policy missing one is refused naming it, not dropped.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Oidc {
    /// The OpenID provider.
    #[serde(default)]
    pub provider: OidcProvider,
    /// The client id (exactly one of `clientID` and `clientIDRef`).
    #[serde(default, rename = "clientID", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A Secret holding the client id under `client-id`.
    #[serde(
        default,
        rename = "clientIDRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_id_ref: Option<SecretRef>,
    /// A Secret holding the client secret under `client-secret` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    /// Names of the access and ID token cookies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_names: Option<OidcCookieNames>,
    /// Cookie attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<OidcCookieConfig>,
    /// The domain the token cookies are set on (default: the request's host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<String>,
    /// Scopes requested (`openid` is always added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Resource indicators requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The callback URL the provider redirects to.
    #[serde(
        default,
        rename = "redirectURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub redirect_url: Option<String>,
    /// Requests that get 401 instead of a redirect to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_redirect: Option<OidcDenyRedirect>,
    /// The path that logs a user out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout_path: Option<String>,
    /// Send the access token to the backend as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_access_token: Option<bool>,
    /// Token lifetime when the provider gives no `expires_in` (a Gateway API duration).
    #[serde(
        default,
        rename = "defaultTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_token_ttl: Option<String>,
    /// Refresh tokens when they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<bool>,
    /// Refresh token lifetime when it carries no `exp`.
    #[serde(
        default,
        rename = "defaultRefreshTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_refresh_token_ttl: Option<String>,
    /// How long the login's state (CSRF) token is valid.
    #[serde(
        default,
        rename = "csrfTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub csrf_token_ttl: Option<String>,
    /// Store tokens in cookies unencrypted (only `false` is implemented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_token_encryption: Option<bool>,
    /// Let a request carrying a token the policy's `jwt` reads skip the login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_through_auth_header: Option<bool>,
    /// Every other field (`forwardIDToken`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `oidc.provider`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OidcProvider {
    /// The issuer identifier (required).
    #[serde(default)]
    pub issuer: String,
    /// The authorization endpoint (default: discovered from the issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// The token endpoint (default: discovered from the issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The end session (logout) endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
    /// A Service to reach the provider through instead of the endpoints' host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<AccessBackendRef>,
    /// The single-backend form (refused, as Envoy Gateway's CRD does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<AccessBackendRef>,
    /// Every other field (`backendSettings`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `oidc.cookieNames`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OidcCookieNames {
    /// The access token cookie's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The ID token cookie's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// `oidc.cookieConfig`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OidcCookieConfig {
    /// `Lax`, `Strict` or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
}

/// `oidc.denyRedirect`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OidcDenyRedirect {
    /// Header conditions (any of them).
    #[serde(default)]
    pub headers: Vec<OidcDenyRedirectHeader>,
}

/// `oidc.denyRedirect.headers[]`: a header and how its value is matched (Envoy
/// Gateway's `StringMatch`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OidcDenyRedirectHeader {
    /// The header name.
    pub name: String,
    /// `Exact` (the default), `Prefix`, `Suffix` or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The value matched.
    #[serde(default)]
    pub value: String,
}

/// `authorization`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// `Allow` or `Deny` (the default) when no rule matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<String>,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<AuthorizationRule>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `authorization.rules[]`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationRule {
    /// The rule's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Allow` or `Deny`.
    pub action: String,
    /// Who the rule matches.
    #[serde(default)]
    pub principal: Principal,
    /// Every other field (`operation`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// A rule's `principal`: every part set must match.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// Client address ranges.
    #[serde(default, rename = "clientCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub client_cidrs: Vec<String>,
    /// JWT claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtPrincipal>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderPrincipal>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: Other,
}

/// `principal.jwt`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtPrincipal {
    /// The JWT provider that verified the token.
    pub provider: String,
    /// Scopes the token must carry (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Claims the token must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<JwtClaim>,
}

/// A claim condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtClaim {
    /// The claim (nested with dots).
    pub name: String,
    /// `String` (the default) or `StringArray`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// Accepted values (any of them).
    #[serde(default)]
    pub values: Vec<String>,
}

/// A header condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderPrincipal {
    /// The header name.
    pub name: String,
    /// Accepted values (any of them).
    #[serde(default)]
    pub values: Vec<String>,
}

/// The SecurityOverride CRD as YAML (committed under `deploy/crds`).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = SecurityOverride::crd();
    let body = serde_norway::to_string(&crd).unwrap_or_else(|e| format!("# error: {e}\n"));
    format!(
        "# Generated from gatekit_k8s::types::security::SecurityOverrideSpec; do not edit.\n\
         # Regenerate: GATEKIT_BLESS=1 cargo test -p gatekit-k8s --test crd\n{body}"
    )
}
