//! The gateway's registry of access policies: each named [`AccessSpec`] of a
//! translation ([`Translation::access_policies`]) built once into an
//! [`AccessPolicy`], kept across reloads while its spec is unchanged (a JWKS fetcher
//! or a verified-credential cache survives unrelated changes), and counted per
//! outcome in `gatekit_access_decisions_total{policy, outcome}`.
//!
//! [`build`] maps a spec to gatekit-auth's layers: one exhaustive `match`, so a new
//! mechanism does not compile until it is mapped. A spec gatekit-auth refuses (its
//! [`ConfigError`], the field prefixed with `spec.<mechanism>`) leaves the policy
//! absent from the registry: the rules naming it answer 500 `invalid-auth-policy`
//! (never unguarded), [`AccessRegistry::update`] returns the error naming the
//! resource and field for the reload's log and `/config`, and
//! [`AccessRegistry::refuse_unbuilt`] puts it into the SecurityPolicy's (or
//! SecurityOverride's) published status: `Accepted=False`, `Invalid`, naming the field.
//!
//! External authorization services and remote JWKS named by backendRefs are reached
//! through [`Upstreams`] (their pools, balancing, health checks and BackendTLSPolicy);
//! a policy is rebuilt when its upstream is. A remote JWKS URI without backendRefs
//! gets a backend of its own that resolves the URI's host by DNS (`mod dns`).
//!
//! A rebuilt policy reaches the rules through their tables: a change of an access
//! spec comes from a change of a SecurityPolicy, SecurityOverride, Secret, ConfigMap
//! or Service, each of which translates everything, so every route is compiled again
//! against the registry as it is after [`AccessRegistry::update`].
//!
//! # Secrets
//!
//! A built policy keeps the spec it was built from, to compare on reload. An API key
//! spec holds SHA-256 digests, never keys (`api_key` hands them to gatekit-auth as
//! digests; see `gatekit_k8s::translate`'s access module for what each spec holds), so
//! the registry holds no key; comparing digests is what keeps a policy whose keys did
//! not change. `Debug` of the registry shows a count only.
//!
//! # Counting
//!
//! Each built policy is wrapped: the rule's inner stack is entered through a marker
//! that counts `allowed` and wraps the errors that come back from inside (so that an
//! outer policy does not count an inner policy's refusal as its own); an error of the
//! policy itself is counted by its [`ErrorKind`]. A policy that refuses with a
//! response rather than an error (an external authorization service's denial, marked
//! [`Denied`]) is counted by the response's status: 401 `unauthenticated`, any other
//! `forbidden`; an OIDC login's redirect to its provider (marked [`LoginRedirect`]) is
//! `unauthenticated` (the request had no session; the callback and logout redirects
//! are not counted, and the request after a login is `allowed`). The marker entrance
//! tags such a response coming from inside, so only the policy that refused counts it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use gatekit_auth::apikey::{ApiKeyConfig, ApiKeyLayer, ApiKeyPolicy};
use gatekit_auth::authz::{
    Action, AuthzConfig, AuthzPolicy, AuthzRule, ClaimMatch, HeaderMatch, JwtPrincipal, Principal,
};
use gatekit_auth::basic::{BasicAuthConfig, BasicAuthLayer, BasicAuthPolicy};
use gatekit_auth::credential::CredentialSource;
#[cfg(feature = "grpc")]
use gatekit_auth::extauth::GrpcService;
use gatekit_auth::extauth::{BodyToExtAuth, Denied, ExtAuthConfig, ExtAuthPolicy, HttpService};
use gatekit_auth::jwt::{JwksSource, JwtConfig, JwtPolicy, RemoteJwks};
use gatekit_auth::oidc::{LoginRedirect, OidcConfig, OidcLayer, OidcPolicy, SameSite};
use gatekit_core::access::AccessPolicy;
use gatekit_core::ratelimit::{Cidr, ValueMatch, ValueRegex};
use gatekit_core::{Backend, Body, BoxError, ConfigError, Error, ErrorKind};
use gatekit_k8s::Translation;
use gatekit_k8s::translate::{
    AccessEntry, AccessSpec, ApiKeySpec, AuthzSpec, BasicSpec, CredentialFrom, ExtAuthMode,
    ExtAuthSpec, JwksSource as AccessJwks, JwtSpec, OidcSpec, OidcStringMatch,
    SameSite as AccessSameSite,
};
use http::{HeaderName, HeaderValue, Request, Response, Uri, header};
use tower_service::Service;

use super::labels::Labelled;
use super::upstreams::Upstreams;
use crate::{AccessMetrics, AccessOutcome, Metrics};

/// One built policy: the spec it was built from and the result.
struct Built {
    spec: Arc<AccessSpec>,
    policy: Result<Made, ConfigError>,
}

/// A policy built, and the basic auth layer inside it (for its hash-check counters in
/// `/config`).
struct Made {
    policy: Arc<dyn AccessPolicy>,
    basic: Option<BasicAuthLayer>,
}

/// Access policies by name, kept across reloads.
#[derive(Default)]
pub(crate) struct AccessRegistry {
    built: HashMap<String, Built>,
}

impl fmt::Debug for AccessRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessRegistry")
            .field("policies", &self.built.len())
            .finish()
    }
}

impl AccessRegistry {
    /// Brings the registry in line with `entries`: a policy whose spec is unchanged
    /// (and whose upstream is not in `stale`) is kept, the others are built again,
    /// those no longer named are dropped (with their metric series). Returns a problem
    /// per policy that cannot be built.
    pub(crate) fn update(
        &mut self,
        entries: &BTreeMap<String, AccessEntry>,
        upstreams: &Upstreams,
        stale: &BTreeSet<String>,
        metrics: &Metrics,
    ) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        self.built.retain(|name, _| {
            let keep = entries.get(name).is_some_and(|e| e.spec().is_some());
            if !keep {
                metrics.forget_access_metrics(name);
            }
            keep
        });
        for (name, entry) in entries {
            let Some(spec) = entry.spec() else {
                continue;
            };
            let fresh = self.built.get(name).is_some_and(|b| {
                (Arc::ptr_eq(&b.spec, spec) || b.spec == *spec)
                    && upstreams_of(spec).iter().all(|u| !stale.contains(*u))
            });
            if !fresh {
                let policy = build(spec, upstreams).map(|m| Made {
                    policy: Arc::new(Counted {
                        policy: m.policy,
                        metrics: metrics.access_metrics(name),
                    }),
                    basic: m.basic,
                });
                self.built.insert(
                    name.clone(),
                    Built {
                        spec: Arc::clone(spec),
                        policy,
                    },
                );
            }
            if let Some(Built {
                policy: Err(why), ..
            }) = self.built.get(name)
            {
                errors.push(ConfigError::new(
                    format!("accessPolicies[{name}]"),
                    format!(
                        "{} {}: {}: {}; the rules naming it refuse every request",
                        entry.source().kind(),
                        entry.source().name(),
                        why.field(),
                        why.reason()
                    ),
                ));
            }
        }
        errors
    }

    /// `translation` with the statuses of the policies that could not be built set to
    /// `Accepted=False`, `Invalid`, naming the field
    /// ([`Translation::refuse_access_policies`]): what the reload publishes (`/config`,
    /// the status writer), so that a policy gatekit-auth refuses never shows as
    /// accepted. The same `Arc` when every policy was built.
    pub(crate) fn refuse_unbuilt(&self, translation: Arc<Translation>) -> Arc<Translation> {
        let mut failures = self
            .built
            .iter()
            .filter_map(|(name, b)| Some((name.as_str(), b.policy.as_ref().err()?)))
            .peekable();
        if failures.peek().is_none() {
            return translation;
        }
        let mut translation = Arc::unwrap_or_clone(translation);
        translation.refuse_access_policies(failures);
        Arc::new(translation)
    }

    /// The policy called `name`, if it was built.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn AccessPolicy>> {
        self.built
            .get(name)?
            .policy
            .as_ref()
            .ok()
            .map(|m| Arc::clone(&m.policy))
    }

    /// Whether the policy called `name` was built.
    pub(crate) fn is_built(&self, name: &str) -> bool {
        self.built.get(name).is_some_and(|b| b.policy.is_ok())
    }
}

/// The upstreams a spec sends to (it is rebuilt with them).
fn upstreams_of(spec: &AccessSpec) -> Vec<&str> {
    match spec {
        AccessSpec::ExtAuth(e) => vec![e.upstream.as_str()],
        AccessSpec::Jwt(j) => j
            .providers
            .iter()
            .filter_map(|p| match &p.keys {
                AccessJwks::Remote {
                    upstream: Some(u), ..
                } => Some(u.as_str()),
                _ => None,
            })
            .collect(),
        AccessSpec::Oidc(o) => o.upstream.iter().map(String::as_str).collect(),
        AccessSpec::ApiKey(_) | AccessSpec::Basic(_) | AccessSpec::Authz(_) => Vec::new(),
    }
}

/// The realm of the challenges of the mechanisms built here.
const REALM: &str = "gatekit";

/// Builds the policy of `spec`: the one place a spec meets gatekit-auth. A
/// configuration error names the SecurityPolicy field (`spec.jwt.providers[0].localJWKS`).
fn build(spec: &AccessSpec, upstreams: &Upstreams) -> Result<Made, ConfigError> {
    let field = format!("spec.{}", spec.mechanism());
    let made = |policy: Arc<dyn AccessPolicy>| Made {
        policy,
        basic: None,
    };
    let built = match spec {
        AccessSpec::ApiKey(s) => api_key(s).map(|p| made(Arc::new(p))),
        AccessSpec::Basic(s) => basic(s).map(|layer| Made {
            policy: Arc::new(BasicAuthPolicy::new(layer.clone())),
            basic: Some(layer),
        }),
        AccessSpec::Jwt(s) => jwt(s, upstreams).map(|p| made(Arc::new(p))),
        AccessSpec::ExtAuth(s) => ext_auth(s, upstreams).map(|p| made(Arc::new(p))),
        AccessSpec::Authz(s) => authz(s).map(|p| made(Arc::new(p))),
        AccessSpec::Oidc(s) => oidc(s, upstreams).map(|p| made(Arc::new(p))),
    };
    built.map_err(|e| e.within(&field))
}

/// A header name from a spec.
fn header_name(value: &str, field: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::try_from(value)
        .map_err(|_| ConfigError::new(field, format!("{value:?} is not a valid header name")))
}

/// Where a credential is read from. A header with a value prefix is read only as
/// `Authorization: Bearer` (the one prefix gatekit-auth strips); any other prefix is
/// refused rather than ignored.
fn credential_source(from: &CredentialFrom, field: &str) -> Result<CredentialSource, ConfigError> {
    Ok(match from {
        CredentialFrom::Header { name, prefix } => {
            let name = header_name(name, field)?;
            let bearer = prefix.trim().eq_ignore_ascii_case("bearer");
            if prefix.is_empty() || (bearer && name == header::AUTHORIZATION) {
                CredentialSource::Header(name)
            } else {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "valuePrefix {prefix:?} on header {name}: only `Bearer ` on Authorization is implemented"
                    ),
                ));
            }
        }
        CredentialFrom::Query(p) => CredentialSource::Query(p.clone()),
        CredentialFrom::Cookie(c) => CredentialSource::Cookie(c.clone()),
    })
}

/// The spec holds the digests of the keys (the translation made them from the
/// Secrets), and so does the layer: no key is held here.
fn api_key(s: &ApiKeySpec) -> Result<ApiKeyPolicy, ConfigError> {
    let mut config = ApiKeyConfig::new(REALM).strip_credential(s.sanitize);
    for c in &s.consumers {
        config = config.with_consumer_digests(c.client_id.as_str(), c.keys.iter().copied());
    }
    for from in &s.sources {
        config = config.with_source(credential_source(from, "extractFrom")?);
    }
    if let Some(h) = &s.forward_header {
        config = config.forward_consumer(header_name(h, "forwardClientIDHeader")?);
    }
    ApiKeyLayer::new(config).map(ApiKeyPolicy::new)
}

fn basic(s: &BasicSpec) -> Result<BasicAuthLayer, ConfigError> {
    let mut config = BasicAuthConfig::new(s.realm.as_str(), s.htpasswd.as_str());
    if let Some(h) = &s.forward_header {
        config = config.forward_username(header_name(h, "forwardUsernameHeader")?);
    }
    BasicAuthLayer::new(config).map_err(|e| e.within("users"))
}

fn jwt(s: &JwtSpec, upstreams: &Upstreams) -> Result<JwtPolicy, ConfigError> {
    let mut providers = Vec::with_capacity(s.providers.len());
    for (i, p) in s.providers.iter().enumerate() {
        let at = |f: &str| format!("providers[{i}].{f}");
        let keys = match &p.keys {
            AccessJwks::Local(text) => JwksSource::Local(text.clone()),
            AccessJwks::Remote {
                uri,
                cache_duration,
                upstream,
            } => {
                let field = at("remoteJWKS.uri");
                let parsed: Uri = uri
                    .parse()
                    .map_err(|_| ConfigError::new(&field, format!("{uri:?} is not a URL")))?;
                let backend = match upstream {
                    Some(name) => upstream_backend(upstreams, name, &at("remoteJWKS.backendRefs"))?,
                    None => dns::backend(upstreams.client(), &parsed, &field)?,
                };
                let mut remote = RemoteJwks::new(parsed, backend);
                if let Some(d) = cache_duration {
                    remote = remote.cache_duration(*d);
                }
                JwksSource::Remote(remote)
            }
        };
        let mut provider = gatekit_auth::jwt::JwtProvider::new(p.name.as_str(), keys)
            .audiences(p.audiences.iter().map(String::as_str));
        if let Some(iss) = &p.issuer {
            provider = provider.issuer(iss.as_str());
        }
        for (j, (h, claim)) in p.claim_to_headers.iter().enumerate() {
            provider = provider.claim_to_header(
                header_name(h, &at(&format!("claimToHeaders[{j}].header")))?,
                claim.as_str(),
            );
        }
        if !p.sources.is_empty() {
            let sources = p
                .sources
                .iter()
                .map(|f| credential_source(f, &at("extractFrom")))
                .collect::<Result<Vec<_>, _>>()?;
            provider = provider.extract_from(sources);
        }
        providers.push(provider);
    }
    JwtPolicy::new(JwtConfig::new(providers).optional(s.optional).realm(REALM))
}

/// An OIDC login. The provider is reached through its backendRefs' upstream, or else
/// through a backend that resolves each request's own host (discovery, token and JWKS
/// endpoints may be on different hosts). The session cookie is named after
/// `cookieNames.idToken`; cookies are `Secure` unless the redirect URL is explicitly
/// `http://`. A `sameSite` left unset is `Lax`.
fn oidc(s: &OidcSpec, upstreams: &Upstreams) -> Result<OidcPolicy, ConfigError> {
    let backend = match &s.upstream {
        Some(name) => upstream_backend(upstreams, name, "provider.backendRefs")?,
        None => dns::any_host(upstreams.client(), "provider.issuer")?,
    };
    let uri = |value: &str, field: &str| {
        value
            .parse::<Uri>()
            .map_err(|_| ConfigError::new(field, format!("{value:?} is not a URL")))
    };
    let redirect = match (&s.redirect.scheme, &s.redirect.authority) {
        (Some(scheme), Some(authority)) => {
            format!("{scheme}://{authority}{}", s.redirect.path_and_query)
        }
        (None, None) => s.redirect.path_and_query.clone(),
        _ => {
            return Err(ConfigError::new(
                "redirectURL",
                "a scheme or host taken from the request with the other part fixed is not implemented",
            ));
        }
    };
    let mut config = OidcConfig::new(
        s.issuer.as_str(),
        s.client_id.as_str(),
        s.client_secret.expose(),
        backend,
    )
    .scopes(s.scopes.iter().map(String::as_str))
    .resources(s.resources.iter().map(String::as_str))
    .redirect_url(redirect)
    .secure_cookies(s.redirect.scheme.as_deref() != Some("http"))
    .logout_path(s.logout_path.as_str())
    .forward_access_token(s.forward_access_token)
    .refresh_token(s.refresh_token)
    .default_refresh_token_ttl(s.default_refresh_token_ttl)
    .csrf_token_ttl(s.csrf_token_ttl)
    .cookie_name(s.id_token_cookie.as_str())
    .pass_through_auth_header(s.pass_through_auth_header)
    .same_site(match s.same_site {
        None | Some(AccessSameSite::Lax) => SameSite::Lax,
        Some(AccessSameSite::Strict) => SameSite::Strict,
        Some(AccessSameSite::None) => SameSite::None,
    });
    if let Some(e) = &s.authorization_endpoint {
        config = config.authorization_endpoint(uri(e, "provider.authorizationEndpoint")?);
    }
    if let Some(e) = &s.token_endpoint {
        config = config.token_endpoint(uri(e, "provider.tokenEndpoint")?);
    }
    if let Some(e) = &s.end_session_endpoint {
        config = config.end_session_endpoint(uri(e, "provider.endSessionEndpoint")?);
    }
    if let Some(ttl) = s.default_token_ttl {
        config = config.default_token_ttl(ttl);
    }
    if let Some(d) = &s.cookie_domain {
        config = config.cookie_domain(d.as_str());
    }
    for (i, m) in s.deny_redirect.iter().enumerate() {
        let field = format!("denyRedirect.headers[{i}]");
        let value = match &m.value {
            OidcStringMatch::Exact(v) => {
                ValueMatch::Exact(HeaderValue::try_from(v.as_str()).map_err(|_| {
                    ConfigError::new(&field, format!("{v:?} is not a valid header value"))
                })?)
            }
            OidcStringMatch::Prefix(v) => regex_match(&format!("{}.*", regex::escape(v)), &field)?,
            OidcStringMatch::Suffix(v) => regex_match(&format!(".*{}", regex::escape(v)), &field)?,
            OidcStringMatch::Regex(v) => regex_match(v, &field)?,
        };
        config = config.deny_redirect_header(header_name(&m.name, &field)?, value);
    }
    OidcLayer::new(config).map(OidcPolicy::from_layer)
}

/// A whole-value regular expression match.
fn regex_match(pattern: &str, field: &str) -> Result<ValueMatch, ConfigError> {
    ValueRegex::new(pattern)
        .map(ValueMatch::Regex)
        .map_err(|e| e.within(field))
}

/// The balanced upstream called `name`, as a backend.
fn upstream_backend(
    upstreams: &Upstreams,
    name: &str,
    field: &str,
) -> Result<Backend, ConfigError> {
    let upstream = upstreams
        .upstream(name)
        .ok_or_else(|| ConfigError::new(field, format!("upstream {name} is not served")))?;
    Ok(Backend::new(Labelled::new(upstream, None)))
}

fn ext_auth(s: &ExtAuthSpec, upstreams: &Upstreams) -> Result<ExtAuthPolicy, ConfigError> {
    let backend = upstream_backend(upstreams, &s.upstream, "backendRefs")?;
    let mut config = match &s.mode {
        ExtAuthMode::Http {
            path,
            headers_to_backend,
        } => {
            let mut service = HttpService::new();
            if let Some(p) = path {
                service = service.with_path_prefix(p.as_str());
            }
            let names = headers_to_backend
                .iter()
                .map(|h| header_name(h, "http.headersToBackend"))
                .collect::<Result<Vec<_>, _>>()?;
            ExtAuthConfig::http(backend, service.with_headers_to_backend(names))
        }
        ExtAuthMode::Grpc => grpc_config(backend, &s.upstream)?,
    };
    let names = s
        .headers_to_ext_auth
        .iter()
        .map(|h| header_name(h, "headersToExtAuth"))
        .collect::<Result<Vec<_>, _>>()?;
    config = config
        .with_headers_to_ext_auth(names)
        .with_fail_open(s.fail_open);
    if let Some(max) = s.max_request_bytes {
        config = config.with_body(BodyToExtAuth::new(
            usize::try_from(max).unwrap_or(usize::MAX),
        ));
    }
    if let Some(t) = s.timeout {
        config = config.with_timeout(t);
    }
    Ok(ExtAuthPolicy::new(config))
}

/// Envoy's ext_authz gRPC protocol to `upstream` (`ns/service:port`), whose calls
/// carry `:authority` `service.ns:port`.
#[cfg(feature = "grpc")]
fn grpc_config(backend: Backend, upstream: &str) -> Result<ExtAuthConfig, ConfigError> {
    let authority = match upstream.split_once('/') {
        Some((ns, rest)) => match rest.split_once(':') {
            Some((service, port)) => format!("{service}.{ns}:{port}"),
            None => format!("{rest}.{ns}"),
        },
        None => upstream.to_owned(),
    };
    let service = GrpcService::new(&authority).map_err(|e| e.within("grpc"))?;
    Ok(ExtAuthConfig::grpc(backend, service))
}

/// Without the `grpc` feature, a gRPC authorization service is refused.
#[cfg(not(feature = "grpc"))]
fn grpc_config(_: Backend, _: &str) -> Result<ExtAuthConfig, ConfigError> {
    Err(ConfigError::new(
        "grpc",
        "this gatekit is built without the grpc feature (Envoy's ext_authz gRPC protocol)",
    ))
}

fn authz(s: &AuthzSpec) -> Result<AuthzPolicy, ConfigError> {
    let action = |allow: bool| if allow { Action::Allow } else { Action::Deny };
    let mut config = AuthzConfig::new(action(s.default_allow));
    for (i, r) in s.rules.iter().enumerate() {
        let at = |f: &str| format!("rules[{i}].principal.{f}");
        let mut principal = Principal::default();
        let cidrs = r
            .client_cidrs
            .iter()
            .map(|c| {
                c.parse::<Cidr>().map_err(|_| {
                    ConfigError::new(at("clientCIDRs"), format!("{c:?} is not an address range"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !cidrs.is_empty() {
            principal = principal.with_client_cidrs(cidrs);
        }
        if r.jwt_provider.is_some() || !r.scopes.is_empty() || !r.claims.is_empty() {
            let mut jwt = JwtPrincipal::default();
            if let Some(p) = &r.jwt_provider {
                jwt = jwt.with_provider(p.as_str());
            }
            for scope in &r.scopes {
                jwt = jwt.with_scope(scope.as_str());
            }
            for (name, values) in &r.claims {
                jwt = jwt.with_claim(ClaimMatch::new(name, values.iter().map(String::as_str)));
            }
            principal = principal.with_jwt(jwt);
        }
        for (name, values) in &r.headers {
            let header = header_name(name, &at("headers"))?;
            let values = values
                .iter()
                .map(|v| {
                    HeaderValue::try_from(v.as_str()).map_err(|_| {
                        ConfigError::new(
                            at("headers"),
                            format!("{v:?} is not a valid header value"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            principal = principal.with_header(HeaderMatch::new(header, values));
        }
        config =
            config.with_rule(AuthzRule::new(action(r.allow), principal).with_name(r.name.as_str()));
    }
    Ok(AuthzPolicy::new(config))
}

/// Backends to hosts outside the cluster (a remote JWKS `uri` or an OIDC provider
/// without backendRefs): the host resolved by DNS on each request (these requests are
/// minutes or logins apart), each address tried in turn, over TLS verified against the
/// system's CA certificates for `https`. A request body (an OIDC token request) is
/// read whole first, up to 64 KiB, so that it can be sent again to the next address.
mod dns {
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use gatekit_core::client::{Client, TlsSettings, Transport};
    use gatekit_core::{Backend, Body, BoxError, ConfigError, Error, ErrorKind};
    use http::{Request, Response, Uri};
    use http_body_util::{BodyExt, Limited};
    use tower_service::Service;

    /// The most body bytes a request through these backends may carry.
    const MAX_BODY: usize = 64 * 1024;

    /// The backend of `uri`'s host and port (80 or 443 by default), whatever the
    /// requests' own URIs say.
    pub(super) fn backend(client: &Client, uri: &Uri, field: &str) -> Result<Backend, ConfigError> {
        let target = Target::of(uri).map_err(|why| ConfigError::new(field, why))?;
        Ok(Backend::new(Resolving {
            client: client.clone(),
            fixed: Some(target),
        }))
    }

    /// A backend that sends each request to its own URI's host and port.
    pub(super) fn any_host(client: &Client, field: &str) -> Result<Backend, ConfigError> {
        // Fails early where the system has no CA certificates, as `backend` does.
        TlsSettings::system_roots().map_err(|e| e.within(field))?;
        Ok(Backend::new(Resolving {
            client: client.clone(),
            fixed: None,
        }))
    }

    /// Where requests go: a host, a port and how to speak to it.
    #[derive(Clone, Debug)]
    struct Target {
        host: String,
        port: u16,
        transport: Transport,
    }

    impl Target {
        fn of(uri: &Uri) -> Result<Self, String> {
            let host = uri
                .host()
                .ok_or("no host")?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => return Err("not an http(s) URL".to_owned()),
            };
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let transport = if https {
                let tls = TlsSettings::system_roots()
                    .and_then(|t| t.server_name(&host))
                    .map_err(|e| e.to_string())?;
                Transport::http1().with_tls(tls)
            } else {
                Transport::http1()
            };
            Ok(Self {
                host,
                port,
                transport,
            })
        }
    }

    /// Resolves the host (its own, or each request's), then sends to each address in
    /// turn until one answers.
    #[derive(Clone, Debug)]
    struct Resolving {
        client: Client,
        fixed: Option<Target>,
    }

    impl Service<Request<Body>> for Resolving {
        type Response = Response<Body>;
        type Error = BoxError;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Response<Body>, BoxError>> + Send>,
        >;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<Body>) -> Self::Future {
            let this = self.clone();
            Box::pin(async move {
                let connect = || Box::new(Error::new(ErrorKind::Connect)) as BoxError;
                let target = match this.fixed {
                    Some(t) => t,
                    None => Target::of(req.uri()).map_err(|_| connect())?,
                };
                let (parts, body) = req.into_parts();
                let body: Bytes = Limited::new(body, MAX_BODY)
                    .collect()
                    .await
                    .map_err(|_| connect())?
                    .to_bytes();
                let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
                    .await
                    .map_err(|_| connect())?
                    .collect();
                // A host with an AAAA record may be unreachable over IPv6 from a pod:
                // each address is tried in turn.
                let mut last = None;
                for addr in addrs {
                    let mut req = Request::new(Body::full(body.clone()));
                    *req.method_mut() = parts.method.clone();
                    *req.uri_mut() = parts.uri.clone();
                    *req.headers_mut() = parts.headers.clone();
                    let backend =
                        Backend::single_with(&this.client, addr, target.transport.clone());
                    match backend.send(req).await {
                        Ok(rsp) => return Ok(rsp),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(connect))
            })
        }
    }
}

/// `/config`'s `accessPolicies`, kept from a reload and rendered when asked for: each
/// policy's name, source, mechanism, targets, size (consumers, users, providers or
/// rules), whether it is served, and why not; for basic auth, its slow hash checks read
/// at that moment (`hashChecks`: run, answered from the cache, refused for want of a
/// permit, the most at once and the bound). Never a key, password hash, token or
/// secret: only names and counts.
#[derive(Default)]
pub(crate) struct AccessDump {
    entries: Vec<serde_json::Value>,
    /// The basic auth layers by their entry's index.
    basic: Vec<(usize, BasicAuthLayer)>,
}

impl AccessDump {
    /// The JSON array.
    pub(crate) fn render(&self) -> String {
        let mut entries = self.entries.clone();
        for (i, layer) in &self.basic {
            if let Some(map) = entries.get_mut(*i).and_then(|e| e.as_object_mut()) {
                let stats = layer.stats();
                map.insert(
                    "hashChecks".to_owned(),
                    serde_json::json!({
                        "run": stats.verifications,
                        "cacheHits": stats.cache_hits,
                        "overloaded": stats.overloaded,
                        "peakConcurrent": stats.max_concurrent_verifications,
                        "maxConcurrent": layer.max_concurrent_verifications(),
                    }),
                );
            }
        }
        serde_json::to_string(&entries).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// The [`AccessDump`] of `entries` as `registry` built them.
pub(crate) fn dump(
    entries: &BTreeMap<String, AccessEntry>,
    registry: &AccessRegistry,
) -> AccessDump {
    let mut basic = Vec::new();
    let list: Vec<serde_json::Value> = entries
        .iter()
        .enumerate()
        .map(|(i, (name, e))| {
            let (count_name, count) = match e.spec().map(|s| &**s) {
                Some(AccessSpec::ApiKey(s)) => ("consumers", s.consumers.len()),
                Some(AccessSpec::Basic(s)) => ("users", s.users()),
                Some(AccessSpec::Jwt(s)) => ("providers", s.providers.len()),
                Some(AccessSpec::ExtAuth(_)) => ("upstreams", 1),
                Some(AccessSpec::Oidc(_)) => ("providers", 1),
                Some(AccessSpec::Authz(s)) => ("rules", s.rules.len()),
                None => ("count", 0),
            };
            let source = e.source();
            let mut v = serde_json::json!({
                "name": name,
                "source": format!(
                    "{} {}/{}",
                    source.kind(),
                    source.namespace().unwrap_or_default(),
                    source.name()
                ),
                "mechanism": e.mechanism(),
                "attachedTo": e.targets(),
                "served": registry.is_built(name),
            });
            if let Some(map) = v.as_object_mut() {
                if e.spec().is_some() {
                    map.insert(count_name.to_owned(), count.into());
                }
                if let Some(AccessSpec::ExtAuth(x)) = e.spec().map(|s| &**s) {
                    map.insert("upstream".to_owned(), x.upstream.clone().into());
                }
                let made = registry
                    .built
                    .get(name)
                    .and_then(|b| b.policy.as_ref().ok());
                if let Some(layer) = made.and_then(|m| m.basic.as_ref()) {
                    basic.push((i, layer.clone()));
                }
                let problem = e.problem().map(str::to_owned).or_else(|| {
                    registry
                        .built
                        .get(name)
                        .and_then(|b| b.policy.as_ref().err())
                        .map(|e| format!("{}: {}", e.field(), e.reason()))
                });
                if let Some(p) = problem {
                    map.insert("problem".to_owned(), p.into());
                }
            }
            v
        })
        .collect();
    AccessDump {
        entries: list,
        basic,
    }
}

// === counting ===

/// A built policy, counted per outcome.
struct Counted {
    policy: Arc<dyn AccessPolicy>,
    metrics: AccessMetrics,
}

impl fmt::Debug for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counted")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl AccessPolicy for Counted {
    fn layer(&self, inner: Backend) -> Backend {
        let passed = Backend::new(Passed {
            inner,
            metrics: self.metrics.clone(),
        });
        Backend::new(Count {
            guarded: self.policy.layer(passed),
            metrics: self.metrics.clone(),
        })
    }
}

/// What a rule's inner stack answered, wrapped so that the policies outside it do not
/// take it for their own refusal. The cause chain is intact: error responses find the
/// inner error through it.
#[derive(Debug)]
struct FromInside(BoxError);

impl fmt::Display for FromInside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for FromInside {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Marks a [`Denied`] or [`LoginRedirect`] response that came from inside a policy's
/// inner stack (another policy's refusal), so the policies outside do not count it as
/// theirs.
#[derive(Clone, Copy, Debug)]
struct DeniedInside;

/// The entrance to the inner stack: counts `allowed`, marks inner errors and denials.
#[derive(Clone, Debug)]
struct Passed {
    inner: Backend,
    metrics: AccessMetrics,
}

impl Service<Request<Body>> for Passed {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = futures::MapErr<BackendFuture>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.metrics.record(AccessOutcome::Allowed);
        futures::MapErr::new(self.inner.send(req))
    }
}

/// The policy's own errors counted by kind.
#[derive(Clone, Debug)]
struct Count {
    guarded: Backend,
    metrics: AccessMetrics,
}

impl Service<Request<Body>> for Count {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = futures::CountErr<BackendFuture>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        futures::CountErr::new(self.guarded.send(req), self.metrics.clone())
    }
}

/// The response future of a [`Backend`].
type BackendFuture = <Backend as Service<Request<Body>>>::Future;

/// Whether a response is a refusal made as a response: an authorization service's
/// denial or an OIDC login redirect.
fn refusal(rsp: &Response<Body>) -> bool {
    let ext = rsp.extensions();
    ext.get::<Denied>().is_some() || ext.get::<LoginRedirect>().is_some()
}

/// The outcome of a policy's own refusal response: one carrying [`Denied`] or
/// [`LoginRedirect`] that did not come from inside.
fn denial(rsp: &Response<Body>) -> Option<AccessOutcome> {
    let ext = rsp.extensions();
    if !refusal(rsp) || ext.get::<DeniedInside>().is_some() {
        return None;
    }
    if ext.get::<LoginRedirect>().is_some() {
        return Some(AccessOutcome::Unauthenticated);
    }
    Some(if rsp.status() == http::StatusCode::UNAUTHORIZED {
        AccessOutcome::Unauthenticated
    } else {
        AccessOutcome::Forbidden
    })
}

/// The outcome of a policy's own error.
fn outcome(err: &BoxError) -> Option<AccessOutcome> {
    if err.is::<FromInside>() {
        return None;
    }
    let kind = Error::find(&**err).map(Error::kind)?;
    Some(match kind {
        ErrorKind::Unauthenticated => AccessOutcome::Unauthenticated,
        ErrorKind::Forbidden => AccessOutcome::Forbidden,
        ErrorKind::AuthUnavailable => AccessOutcome::Unavailable,
        ErrorKind::InvalidAuth => AccessOutcome::Invalid,
        _ => return None,
    })
}

/// The response futures of the counting services.
mod futures {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use gatekit_core::{Body, BoxError};
    use http::Response;

    use super::{DeniedInside, FromInside, denial, outcome, refusal};
    use crate::AccessMetrics;

    pin_project_lite::pin_project! {
        /// The inner stack's answer, its error marked [`FromInside`], a denial
        /// [`DeniedInside`].
        pub(super) struct MapErr<F> {
            #[pin]
            inner: F,
        }
    }

    impl<F> MapErr<F> {
        pub(super) fn new(inner: F) -> Self {
            Self { inner }
        }
    }

    impl<F: Future<Output = Result<Response<Body>, BoxError>>> Future for MapErr<F> {
        type Output = Result<Response<Body>, BoxError>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.project().inner.poll(cx).map(|out| match out {
                Ok(mut rsp) => {
                    if refusal(&rsp) {
                        rsp.extensions_mut().insert(DeniedInside);
                    }
                    Ok(rsp)
                }
                Err(e) => Err(Box::new(FromInside(e)) as BoxError),
            })
        }
    }

    pin_project_lite::pin_project! {
        /// The guarded stack's answer; the policy's own error or denial counted.
        pub(super) struct CountErr<F> {
            #[pin]
            inner: F,
            metrics: AccessMetrics,
        }
    }

    impl<F> CountErr<F> {
        pub(super) fn new(inner: F, metrics: AccessMetrics) -> Self {
            Self { inner, metrics }
        }
    }

    impl<F: Future<Output = Result<Response<Body>, BoxError>>> Future for CountErr<F> {
        type Output = Result<Response<Body>, BoxError>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            let out = std::task::ready!(this.inner.poll(cx));
            let own = match &out {
                Ok(rsp) => denial(rsp),
                Err(e) => outcome(e),
            };
            if let Some(o) = own {
                this.metrics.record(o);
            }
            Poll::Ready(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy refusing every request with `kind`, or letting all through.
    #[derive(Debug)]
    struct Fixed(Option<ErrorKind>);

    impl AccessPolicy for Fixed {
        fn layer(&self, inner: Backend) -> Backend {
            match self.0 {
                None => inner,
                Some(kind) => Backend::new(tower::service_fn(move |_: Request<Body>| {
                    std::future::ready(Err::<Response<Body>, BoxError>(Box::new(Error::new(kind))))
                })),
            }
        }
    }

    /// A policy answering every request itself with `status`, marked [`Denied`] (as an
    /// external authorization service's denial is).
    #[derive(Debug)]
    struct DeniesWith(http::StatusCode);

    impl AccessPolicy for DeniesWith {
        fn layer(&self, _inner: Backend) -> Backend {
            let status = self.0;
            Backend::new(tower::service_fn(move |_: Request<Body>| {
                let mut rsp = Response::new(Body::from("no"));
                *rsp.status_mut() = status;
                rsp.extensions_mut().insert(Denied);
                std::future::ready(Ok::<_, BoxError>(rsp))
            }))
        }
    }

    /// A policy redirecting every request to a login, marked [`LoginRedirect`] (as an
    /// OIDC login's redirect is).
    #[derive(Debug)]
    struct RedirectsToLogin;

    impl AccessPolicy for RedirectsToLogin {
        fn layer(&self, _inner: Backend) -> Backend {
            Backend::new(tower::service_fn(move |_: Request<Body>| {
                let mut rsp = Response::new(Body::empty());
                *rsp.status_mut() = http::StatusCode::FOUND;
                rsp.extensions_mut().insert(LoginRedirect);
                std::future::ready(Ok::<_, BoxError>(rsp))
            }))
        }
    }

    fn ok_backend() -> Backend {
        Backend::new(tower::service_fn(|_: Request<Body>| {
            std::future::ready(Ok::<_, BoxError>(Response::new(Body::empty())))
        }))
    }

    fn count(metrics: &Metrics, policy: &str, outcome: &str) -> u64 {
        let text = metrics.encode();
        let prefix =
            format!("gatekit_access_decisions_total{{policy=\"{policy}\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    #[tokio::test]
    async fn each_policy_counts_its_own_decision_only() {
        let metrics = Metrics::new();
        let outer = Counted {
            policy: Arc::new(Fixed(None)),
            metrics: metrics.access_metrics("outer"),
        };
        let inner = Counted {
            policy: Arc::new(Fixed(Some(ErrorKind::Forbidden))),
            metrics: metrics.access_metrics("inner"),
        };
        let stack = outer.layer(inner.layer(ok_backend()));
        let err = stack.send(Request::new(Body::empty())).await.unwrap_err();
        // The refusal still reads as the inner policy's error.
        assert_eq!(
            Error::find(&*err).map(Error::kind),
            Some(ErrorKind::Forbidden)
        );
        assert_eq!(count(&metrics, "outer", "allowed"), 1);
        assert_eq!(count(&metrics, "outer", "forbidden"), 0);
        assert_eq!(count(&metrics, "inner", "forbidden"), 1);
        assert_eq!(count(&metrics, "inner", "allowed"), 0);

        let open = Counted {
            policy: Arc::new(Fixed(None)),
            metrics: metrics.access_metrics("open"),
        };
        let refusing = Counted {
            policy: Arc::new(Fixed(Some(ErrorKind::Unauthenticated))),
            metrics: metrics.access_metrics("refusing"),
        };
        let stack = refusing.layer(open.layer(ok_backend()));
        assert!(stack.send(Request::new(Body::empty())).await.is_err());
        assert_eq!(count(&metrics, "refusing", "unauthenticated"), 1);
        assert_eq!(count(&metrics, "open", "allowed"), 0);
    }

    /// A Gateway, route `shop` (plus route `blog` when `blog`), and a SecurityPolicy
    /// on `shop` with API keys from Secret `keys` holding `alice`'s `key`.
    fn key_docs(key: &str, blog: bool) -> String {
        let mut out = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
             metadata: {{ name: gw, namespace: apps }}\n\
             spec:\n  gatewayClassName: gatekit\n  \
             listeners: [{{ name: web, port: 80, protocol: HTTP }}]\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{ name: app, namespace: apps }}\n\
             spec: {{ ports: [{{ port: 8080 }}] }}\n\
             ---\napiVersion: v1\nkind: Secret\nmetadata: {{ name: keys, namespace: apps }}\n\
             stringData: {{ alice: \"{key}\" }}\n\
             ---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\n\
             metadata: {{ name: shop, namespace: apps }}\n\
             spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: shop }}]\n  \
             apiKeyAuth:\n    credentialRefs: [{{ name: keys }}]\n    \
             extractFrom: [{{ headers: [x-api-key] }}]\n"
        );
        let routes: &[&str] = if blog { &["shop", "blog"] } else { &["shop"] };
        for name in routes {
            out.push_str(&format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
                 metadata: {{ name: {name}, namespace: apps }}\n\
                 spec:\n  parentRefs: [{{ name: gw }}]\n  hostnames: [{name}.test]\n  \
                 rules:\n  - backendRefs: [{{ name: app, port: 8080 }}]\n"
            ));
        }
        out
    }

    fn key_entries(key: &str, blog: bool) -> BTreeMap<String, AccessEntry> {
        let docs = key_docs(key, blog);
        let (set, _) =
            gatekit_k8s::ResourceSet::from_documents([("t.yaml", docs.as_str())]).unwrap();
        let t = gatekit_k8s::translate(&set, &gatekit_k8s::TranslateOptions::default());
        assert!(t.errors().is_empty(), "{:?}", t.errors());
        t.access_policies().clone()
    }

    /// The status of a request carrying `key` through `policy`.
    async fn status_with(policy: &Arc<dyn AccessPolicy>, key: &str) -> Option<ErrorKind> {
        let req = Request::get("/")
            .header("x-api-key", key)
            .body(Body::empty())
            .unwrap();
        match policy.layer(ok_backend()).send(req).await {
            Ok(_) => None,
            Err(e) => Error::find(&*e).map(Error::kind),
        }
    }

    const SHOP_KEYS: &str = "SecurityPolicy/apps/shop/apiKeyAuth";

    /// The registry compares digests on reload: the same keys after an unrelated change
    /// keep the built policy (the same `Arc`), a rotated key rebuilds it; the registry,
    /// its entries and its `/config` dump never show a key.
    #[tokio::test]
    async fn api_key_policies_survive_unrelated_changes_and_are_rebuilt_on_rotation() {
        let metrics = Metrics::new();
        let client =
            gatekit_core::client::Client::new(gatekit_core::client::ClientConfig::default());
        let upstreams = Upstreams::new(client, metrics.clone());
        let mut registry = AccessRegistry::default();
        let stale = BTreeSet::new();

        let first = key_entries("key-old", false);
        assert!(
            registry
                .update(&first, &upstreams, &stale, &metrics)
                .is_empty()
        );
        let built = registry.get(SHOP_KEYS).unwrap();
        assert_eq!(status_with(&built, "key-old").await, None);

        // An unrelated change (a new route): a new translation, equal digests, the
        // same policy.
        let unrelated = key_entries("key-old", true);
        assert!(!Arc::ptr_eq(
            unrelated[SHOP_KEYS].spec().unwrap(),
            first[SHOP_KEYS].spec().unwrap()
        ));
        assert!(
            registry
                .update(&unrelated, &upstreams, &stale, &metrics)
                .is_empty()
        );
        assert!(Arc::ptr_eq(&registry.get(SHOP_KEYS).unwrap(), &built));

        // The key rotates: rebuilt; the new key passes, the old one is refused.
        let rotated = key_entries("key-new", true);
        assert!(
            registry
                .update(&rotated, &upstreams, &stale, &metrics)
                .is_empty()
        );
        let rebuilt = registry.get(SHOP_KEYS).unwrap();
        assert!(!Arc::ptr_eq(&rebuilt, &built));
        assert_eq!(status_with(&rebuilt, "key-new").await, None);
        assert_eq!(
            status_with(&rebuilt, "key-old").await,
            Some(ErrorKind::Unauthenticated)
        );

        for shown in [
            format!("{registry:?}"),
            format!("{:?}", registry.get(SHOP_KEYS)),
            format!("{rotated:?}"),
            dump(&rotated, &registry).render(),
        ] {
            assert!(
                !shown.contains("key-new") && !shown.contains("key-old"),
                "{shown}"
            );
        }
    }

    #[tokio::test]
    async fn a_denial_answered_with_a_response_is_counted_by_the_policy_that_denied() {
        let metrics = Metrics::new();
        let outer = Counted {
            policy: Arc::new(Fixed(None)),
            metrics: metrics.access_metrics("outer"),
        };
        let forbids = Counted {
            policy: Arc::new(DeniesWith(http::StatusCode::FORBIDDEN)),
            metrics: metrics.access_metrics("forbids"),
        };
        let stack = outer.layer(forbids.layer(ok_backend()));
        let rsp = stack.send(Request::new(Body::empty())).await.unwrap();
        assert_eq!(rsp.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(count(&metrics, "forbids", "forbidden"), 1);
        assert_eq!(count(&metrics, "outer", "allowed"), 1);
        assert_eq!(
            count(&metrics, "outer", "forbidden"),
            0,
            "the inner denial counted as the outer policy's"
        );

        let challenges = Counted {
            policy: Arc::new(DeniesWith(http::StatusCode::UNAUTHORIZED)),
            metrics: metrics.access_metrics("challenges"),
        };
        let stack = challenges.layer(ok_backend());
        let rsp = stack.send(Request::new(Body::empty())).await.unwrap();
        assert_eq!(rsp.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(count(&metrics, "challenges", "unauthenticated"), 1);

        // The upstream's own 403 (no Denied marker) is no decision of anyone's.
        let passes = Counted {
            policy: Arc::new(Fixed(None)),
            metrics: metrics.access_metrics("passes"),
        };
        let upstream_403 = Backend::new(tower::service_fn(|_: Request<Body>| {
            let mut rsp = Response::new(Body::empty());
            *rsp.status_mut() = http::StatusCode::FORBIDDEN;
            std::future::ready(Ok::<_, BoxError>(rsp))
        }));
        let stack = passes.layer(upstream_403);
        stack.send(Request::new(Body::empty())).await.unwrap();
        assert_eq!(count(&metrics, "passes", "allowed"), 1);
        assert_eq!(count(&metrics, "passes", "forbidden"), 0);
    }

    #[tokio::test]
    async fn a_login_redirect_is_counted_unauthenticated_by_its_own_policy() {
        let metrics = Metrics::new();
        let outer = Counted {
            policy: Arc::new(Fixed(None)),
            metrics: metrics.access_metrics("outer"),
        };
        let login = Counted {
            policy: Arc::new(RedirectsToLogin),
            metrics: metrics.access_metrics("login"),
        };
        let stack = outer.layer(login.layer(ok_backend()));
        let rsp = stack.send(Request::new(Body::empty())).await.unwrap();
        assert_eq!(rsp.status(), http::StatusCode::FOUND);
        assert_eq!(count(&metrics, "login", "unauthenticated"), 1);
        assert_eq!(count(&metrics, "login", "allowed"), 0);
        assert_eq!(count(&metrics, "outer", "allowed"), 1);
        assert_eq!(count(&metrics, "outer", "unauthenticated"), 0);
    }
}
