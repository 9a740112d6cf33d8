//! A policy's `oidc` (OpenID Connect login, Envoy Gateway's `OIDC`) read into an
//! [`OidcSpec`]: references resolved, values checked, Envoy Gateway's defaults filled
//! in. The gateway builds the login layer from the spec; nothing here talks to the
//! provider (no discovery at translation time: endpoints not given are `None`, to be
//! discovered from `<issuer>/.well-known/openid-configuration` by the layer).
//!
//! Defaults (Envoy Gateway's): scopes always include `openid` (appended when missing);
//! `redirectURL` derives scheme and authority from the request, path
//! `/oauth2/callback` (Envoy Gateway's `%REQ(x-forwarded-proto)%://%REQ(:authority)%/oauth2/callback`);
//! `logoutPath` `/logout`; `forwardAccessToken` `false`; `refreshToken` `false` (Envoy
//! Gateway v1.5; v1.6's CRD defaults it to `true`, so the API server then writes `true`
//! into the object); `defaultTokenTTL` none (the provider must send `expires_in`);
//! `defaultRefreshTokenTTL` one week; `csrfTokenTTL` 10 minutes; `passThroughAuthHeader`
//! `false`; cookies `AccessToken-<suffix>` and `IdToken-<suffix>` unless `cookieNames`
//! says otherwise, `<suffix>` being the FNV-1a digest of the policy's
//! `<Kind>/<namespace>/<name>` in hex (Envoy Gateway digests the object's UID; a name
//! is stable across re-creation and across gatekit replicas reading manifests).
//!
//! Refused by name: `disableTokenEncryption: true` (`Unsupported`: gatekit always
//! encrypts its session cookie), `provider.backendSettings` and any field Envoy Gateway
//! v1.6 does not have (`Unsupported`); a missing or empty `issuer`, `clientSecret`, its
//! Secret or its `client-secret` key, a `redirectURL` or endpoint that is not an
//! absolute http(s) URL, `provider.backendRef` (Envoy Gateway's CRD refuses it too),
//! `passThroughAuthHeader` without a `jwt` provider reading a header (`Invalid`).

use std::fmt;
use std::time::Duration;

use gatekit_core::ConfigError;
use http::uri::{Authority, PathAndQuery};
use zeroize::Zeroizing;

use super::{AccessSpec, Read, secret_entries};
use crate::translate::backend::Context;
use crate::types::security::{AccessMechanisms, Oidc, SecretRef};

/// The key of the client secret in its Secret (Envoy Gateway's `OIDCClientSecretKey`).
const CLIENT_SECRET_KEY: &str = "client-secret";

/// The key of the client id in the `clientIDRef` Secret.
const CLIENT_ID_KEY: &str = "client-id";

/// Envoy Gateway's callback path when `redirectURL` is not set.
const DEFAULT_REDIRECT_PATH: &str = "/oauth2/callback";

/// Envoy Gateway's `%REQ(...)%` placeholders for the request's scheme and authority.
const REQ_SCHEME: &str = "%REQ(x-forwarded-proto)%";
const REQ_AUTHORITY: &str = "%REQ(:authority)%";

/// OpenID Connect login (`oidc`): the authorization-code flow against one provider.
///
/// No secret in its `Debug` output (the client secret is never printed).
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct OidcSpec {
    /// `provider.issuer`: the issuer identifier (also the discovery base).
    pub issuer: String,
    /// `provider.authorizationEndpoint` (`None`: discovered from the issuer).
    pub authorization_endpoint: Option<String>,
    /// `provider.tokenEndpoint` (`None`: discovered from the issuer).
    pub token_endpoint: Option<String>,
    /// `provider.endSessionEndpoint` (`None`: discovered, if the provider has one).
    pub end_session_endpoint: Option<String>,
    /// `provider.backendRefs`: the upstream the provider is reached through (a name in
    /// [`Translation::upstreams`](crate::translate::Translation::upstreams)); `None`:
    /// the endpoints' own hosts, resolved by DNS.
    pub upstream: Option<String>,
    /// `clientID`, or the `client-id` key of `clientIDRef`'s Secret.
    pub client_id: String,
    /// The `client-secret` key of `clientSecret`'s Secret.
    pub client_secret: ClientSecret,
    /// `scopes`, with `openid` appended when missing.
    pub scopes: Vec<String>,
    /// `resources`: resource indicators sent with the authorization request.
    pub resources: Vec<String>,
    /// `redirectURL`: where the provider sends the browser back.
    pub redirect: OidcRedirect,
    /// `logoutPath` (default `/logout`).
    pub logout_path: String,
    /// `forwardAccessToken`: the access token goes to the backend as
    /// `Authorization: Bearer` (default `false`).
    pub forward_access_token: bool,
    /// `defaultTokenTTL`: token lifetime when the provider gives no `expires_in`
    /// (`None`: such a token response fails the login).
    pub default_token_ttl: Option<Duration>,
    /// `refreshToken`: refresh expired tokens with the refresh token (default `false`).
    pub refresh_token: bool,
    /// `defaultRefreshTokenTTL`: refresh token lifetime when it has no `exp` (default
    /// one week).
    pub default_refresh_token_ttl: Duration,
    /// `csrfTokenTTL`: how long a started login (its state) stays valid (default 10
    /// minutes).
    pub csrf_token_ttl: Duration,
    /// The suffix of the cookies this policy sets: the FNV-1a digest of the policy's
    /// `<Kind>/<namespace>/<name>`, in hex, so that two policies' cookies never collide.
    pub cookie_suffix: String,
    /// `cookieNames.accessToken` (default `AccessToken-<suffix>`).
    pub access_token_cookie: String,
    /// `cookieNames.idToken` (default `IdToken-<suffix>`).
    pub id_token_cookie: String,
    /// `cookieDomain`: the domain the cookies are set on (`None`: the request's host
    /// only).
    pub cookie_domain: Option<String>,
    /// `cookieConfig.sameSite` (`None`: no attribute).
    pub same_site: Option<SameSite>,
    /// `denyRedirect.headers`: a request matching any of them gets 401 instead of a
    /// redirect to the provider.
    pub deny_redirect: Vec<OidcHeaderMatch>,
    /// `passThroughAuthHeader`: a request carrying a header the policy's `jwt` reads a
    /// token from skips the login (the `jwt` check then verifies it).
    pub pass_through_auth_header: bool,
}

/// No secret in debug output: the client secret is left out.
impl fmt::Debug for OidcSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcSpec")
            .field("issuer", &self.issuer)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .field("end_session_endpoint", &self.end_session_endpoint)
            .field("upstream", &self.upstream)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("resources", &self.resources)
            .field("redirect", &self.redirect)
            .field("logout_path", &self.logout_path)
            .field("forward_access_token", &self.forward_access_token)
            .field("default_token_ttl", &self.default_token_ttl)
            .field("refresh_token", &self.refresh_token)
            .field("default_refresh_token_ttl", &self.default_refresh_token_ttl)
            .field("csrf_token_ttl", &self.csrf_token_ttl)
            .field("cookie_suffix", &self.cookie_suffix)
            .field("access_token_cookie", &self.access_token_cookie)
            .field("id_token_cookie", &self.id_token_cookie)
            .field("cookie_domain", &self.cookie_domain)
            .field("same_site", &self.same_site)
            .field("deny_redirect", &self.deny_redirect)
            .field("pass_through_auth_header", &self.pass_through_auth_header)
            .finish_non_exhaustive()
    }
}

/// An OIDC client secret: wiped from memory when dropped, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(Zeroizing<String>);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The secret, for the token request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Redacted.
impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// The callback URL: each part literal, or taken from the request when `None`
/// (Envoy Gateway's `%REQ(x-forwarded-proto)%` and `%REQ(:authority)%`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OidcRedirect {
    /// `http` or `https`; `None`: the request's scheme (`https` when it came over a
    /// TLS listener).
    pub scheme: Option<String>,
    /// `host[:port]`; `None`: the request's authority (`Host`).
    pub authority: Option<String>,
    /// The path (and query, if the URL has one); requests to its path are the
    /// callback.
    pub path_and_query: String,
}

impl OidcRedirect {
    /// The callback path (without the query).
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The URL for a request that came with `scheme` and `authority`.
    pub fn url(&self, scheme: &str, authority: &str) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_deref().unwrap_or(scheme),
            self.authority.as_deref().unwrap_or(authority),
            self.path_and_query
        )
    }
}

/// A cookie's `SameSite` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// `Lax`.
    Lax,
    /// `Strict`.
    Strict,
    /// `None` (the cookie must be `Secure`).
    None,
}

/// A header condition of `denyRedirect`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OidcHeaderMatch {
    /// The header name.
    pub name: String,
    /// How its value is matched.
    pub value: OidcStringMatch,
}

/// Envoy Gateway's `StringMatch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OidcStringMatch {
    /// The whole value equals this.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The value ends with this.
    Suffix(String),
    /// The whole value matches this regular expression (checked to compile).
    Regex(String),
}

/// The `oidc` fields gatekit does not implement, by path (`oidc.forwardIDToken`).
pub(super) fn unimplemented(o: &Oidc) -> Vec<String> {
    let mut out: Vec<String> = o.other.keys().map(|k| format!("oidc.{k}")).collect();
    out.extend(
        o.provider
            .other
            .keys()
            .map(|k| format!("oidc.provider.{k}")),
    );
    if o.disable_token_encryption == Some(true) {
        out.push("oidc.disableTokenEncryption (gatekit always encrypts its cookies)".to_owned());
    }
    out
}

/// The FNV-1a 32-bit digest of `s` in hex (Envoy Gateway's cookie suffix digest).
fn digest32(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:x}")
}

/// Checks that `value` is an absolute `http`/`https` URL without a fragment.
fn http_url(value: &str, field: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::new(field, format!("{value:?} is not an absolute http(s) URL"));
    let uri: http::Uri = value.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) || value.contains('#') {
        return Err(bad());
    }
    Ok(())
}

/// Reads `redirectURL` (see [`OidcRedirect`]): `http`, `https` or
/// `%REQ(x-forwarded-proto)%`, `://`, an authority or `%REQ(:authority)%`, then a path
/// other than `/`.
fn redirect(value: &str, field: &str) -> Result<OidcRedirect, ConfigError> {
    let bad = |why: &str| ConfigError::new(field, format!("{value:?}: {why}"));
    let (scheme, rest) = value
        .split_once("://")
        .ok_or_else(|| bad("not an absolute URL"))?;
    let scheme = match scheme {
        "http" | "https" => Some(scheme.to_owned()),
        REQ_SCHEME => None,
        _ => {
            return Err(bad(
                "the scheme is not http, https or %REQ(x-forwarded-proto)%",
            ));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) if i > 0 => rest.split_at(i),
        _ => return Err(bad("no host, or no path")),
    };
    let authority = if authority == REQ_AUTHORITY {
        None
    } else {
        let ok = authority
            .parse::<Authority>()
            .is_ok_and(|a| !a.host().is_empty())
            && !authority.contains('@');
        if !ok {
            return Err(bad(
                "the host is not a host[:port] or %REQ(:authority)% (no other %REQ()% is implemented)",
            ));
        }
        Some(authority.to_owned())
    };
    if path.parse::<PathAndQuery>().is_err() || path.contains('#') || path.contains("%REQ(") {
        return Err(bad("the path is not a valid URL path"));
    }
    if path == "/" || path.starts_with("/?") {
        return Err(bad("the callback path cannot be /"));
    }
    Ok(OidcRedirect {
        scheme,
        authority,
        path_and_query: path.to_owned(),
    })
}

/// Whether `s` is a valid cookie domain (Envoy Gateway's pattern: lower-case DNS labels).
fn is_cookie_domain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b.first() != Some(&b'-')
                && b.last() != Some(&b'-')
        })
}

/// Whether `s` is a valid cookie name: an RFC 7230 token, which is what a header name
/// is.
fn is_cookie_name(s: &str) -> bool {
    http::HeaderName::from_bytes(s.as_bytes()).is_ok()
}

/// A duration field: `None` when unset, a problem when it does not parse.
fn duration(value: Option<&str>, field: &str, read: &mut Read) -> Option<Duration> {
    match crate::duration::parse(value?) {
        Ok(d) => Some(d),
        Err(e) => {
            read.problems.push(ConfigError::new(field, e.to_string()));
            None
        }
    }
}

/// Whether `m`'s `jwt` has a provider that reads tokens from a header (the default
/// `Authorization: Bearer` included): what `passThroughAuthHeader` needs.
fn jwt_reads_a_header(m: &AccessMechanisms) -> bool {
    m.jwt.iter().flat_map(|j| &j.providers).any(|p| {
        p.extract_from
            .as_ref()
            .is_none_or(|e| !e.headers.is_empty())
    })
}

impl Context<'_> {
    /// One key of Secret `r` (in `ns`), non-empty, copied out of the Secret into memory
    /// that is zeroed when dropped.
    fn secret_key(
        &self,
        ns: &str,
        r: &SecretRef,
        key: &str,
        field: &str,
        read: &mut Read,
    ) -> Result<Zeroizing<String>, ConfigError> {
        let secret = self.access_secret(ns, r, field, read)?;
        secret_entries(secret, field)?
            .into_iter()
            .find(|(k, v)| *k == key && !v.is_empty())
            .map(|(_, v)| Zeroizing::new(v.to_owned()))
            .ok_or_else(|| {
                ConfigError::new(
                    field,
                    format!("Secret {ns}/{} has no (or an empty) {key:?} key", r.name),
                )
            })
    }

    /// Reads `m.oidc` of the policy `kind` `ns/name` (see the [module docs](self)).
    pub(super) fn read_oidc(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
        m: &AccessMechanisms,
        read: &mut Read,
    ) -> Option<AccessSpec> {
        let o = m.oidc.as_ref()?;
        let before = read.problems.len();
        let p = &o.provider;
        if p.issuer.is_empty() {
            read.problems.push(ConfigError::new(
                "spec.oidc.provider.issuer",
                "required: the provider's issuer URL",
            ));
        } else if let Err(e) = http_url(&p.issuer, "spec.oidc.provider.issuer") {
            read.problems.push(e);
        }
        let endpoints = [
            ("authorizationEndpoint", &p.authorization_endpoint),
            ("tokenEndpoint", &p.token_endpoint),
            ("endSessionEndpoint", &p.end_session_endpoint),
        ];
        for (field, value) in endpoints {
            if let Some(v) = value
                && let Err(e) = http_url(v, &format!("spec.oidc.provider.{field}"))
            {
                read.problems.push(e);
            }
        }
        if p.backend_ref.is_some() {
            read.problems.push(ConfigError::new(
                "spec.oidc.provider.backendRef",
                "not supported (as in Envoy Gateway): use backendRefs",
            ));
        }
        let upstream = self
            .access_backend(
                ns,
                &p.backend_refs,
                None,
                "spec.oidc.provider.backendRefs",
                false,
                read,
            )
            .unwrap_or_default();

        let client_id = match (&o.client_id, &o.client_id_ref) {
            (Some(id), None) if !id.is_empty() => Some(id.clone()),
            (None, Some(r)) => {
                match self.secret_key(ns, r, CLIENT_ID_KEY, "spec.oidc.clientIDRef", read) {
                    Ok(v) => Some(v.to_string()),
                    Err(e) => {
                        read.problems.push(e);
                        None
                    }
                }
            }
            _ => {
                read.problems.push(ConfigError::new(
                    "spec.oidc.clientID",
                    "exactly one of clientID (non-empty) and clientIDRef must be set",
                ));
                None
            }
        };
        let client_secret = match &o.client_secret {
            Some(r) => {
                match self.secret_key(ns, r, CLIENT_SECRET_KEY, "spec.oidc.clientSecret", read) {
                    Ok(v) => Some(ClientSecret(v)),
                    Err(e) => {
                        read.problems.push(e);
                        None
                    }
                }
            }
            None => {
                read.problems.push(ConfigError::new(
                    "spec.oidc.clientSecret",
                    "required: a Secret with the client secret under \"client-secret\"",
                ));
                None
            }
        };

        let mut scopes = o.scopes.clone();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.push("openid".to_owned());
        }
        let redirect = match o.redirect_url.as_deref() {
            Some(url) => match redirect(url, "spec.oidc.redirectURL") {
                Ok(r) => Some(r),
                Err(e) => {
                    read.problems.push(e);
                    None
                }
            },
            None => Some(OidcRedirect {
                scheme: None,
                authority: None,
                path_and_query: DEFAULT_REDIRECT_PATH.to_owned(),
            }),
        };
        let logout_path = o
            .logout_path
            .clone()
            .unwrap_or_else(|| "/logout".to_owned());
        if !logout_path.starts_with('/') || logout_path.parse::<PathAndQuery>().is_err() {
            read.problems.push(ConfigError::new(
                "spec.oidc.logoutPath",
                format!("{logout_path:?} is not a path"),
            ));
        } else if redirect.as_ref().is_some_and(|r| r.path() == logout_path) {
            read.problems.push(ConfigError::new(
                "spec.oidc.logoutPath",
                format!("{logout_path:?} is also the redirectURL's path"),
            ));
        }

        let default_token_ttl = duration(
            o.default_token_ttl.as_deref(),
            "spec.oidc.defaultTokenTTL",
            read,
        )
        .filter(|d| !d.is_zero());
        let default_refresh_token_ttl = duration(
            o.default_refresh_token_ttl.as_deref(),
            "spec.oidc.defaultRefreshTokenTTL",
            read,
        )
        .unwrap_or(Duration::from_secs(7 * 24 * 3600));
        let csrf_token_ttl = duration(o.csrf_token_ttl.as_deref(), "spec.oidc.csrfTokenTTL", read)
            .unwrap_or(Duration::from_secs(600));
        if csrf_token_ttl.is_zero() {
            read.problems
                .push(ConfigError::new("spec.oidc.csrfTokenTTL", "must not be 0"));
        }

        let cookie_suffix = digest32(&format!("{kind}/{ns}/{name}"));
        let names = o.cookie_names.clone().unwrap_or_default();
        let mut cookie = |given: Option<String>, field: &str, default: String| match given {
            Some(n) if is_cookie_name(&n) => n,
            Some(n) => {
                read.problems.push(ConfigError::new(
                    field,
                    format!("{n:?} is not a cookie name (an RFC 6265 token)"),
                ));
                n
            }
            None => default,
        };
        let access_token_cookie = cookie(
            names.access_token,
            "spec.oidc.cookieNames.accessToken",
            format!("AccessToken-{cookie_suffix}"),
        );
        let id_token_cookie = cookie(
            names.id_token,
            "spec.oidc.cookieNames.idToken",
            format!("IdToken-{cookie_suffix}"),
        );
        if let Some(d) = &o.cookie_domain
            && !is_cookie_domain(d)
        {
            read.problems.push(ConfigError::new(
                "spec.oidc.cookieDomain",
                format!("{d:?} is not a lower-case domain name"),
            ));
        }
        let same_site = match o
            .cookie_config
            .as_ref()
            .and_then(|c| c.same_site.as_deref())
        {
            None => None,
            Some("Lax") => Some(SameSite::Lax),
            Some("Strict") => Some(SameSite::Strict),
            Some("None") => Some(SameSite::None),
            Some(other) => {
                read.problems.push(ConfigError::new(
                    "spec.oidc.cookieConfig.sameSite",
                    format!("{other:?} is not Lax, Strict or None"),
                ));
                None
            }
        };

        let mut deny_redirect = Vec::new();
        for (i, h) in o.deny_redirect.iter().flat_map(|d| &d.headers).enumerate() {
            let field = format!("spec.oidc.denyRedirect.headers[{i}]");
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                read.problems.push(ConfigError::new(
                    format!("{field}.name"),
                    format!("{:?} is not a header name", h.name),
                ));
            }
            if h.value.is_empty() {
                read.problems
                    .push(ConfigError::new(format!("{field}.value"), "empty"));
            }
            let value = h.value.clone();
            let value = match h.kind.as_deref().unwrap_or("Exact") {
                "Exact" => OidcStringMatch::Exact(value),
                "Prefix" => OidcStringMatch::Prefix(value),
                "Suffix" => OidcStringMatch::Suffix(value),
                "RegularExpression" => {
                    if let Err(e) = regex::Regex::new(&value) {
                        read.problems.push(ConfigError::new(
                            format!("{field}.value"),
                            format!("not a regular expression: {e}"),
                        ));
                    }
                    OidcStringMatch::Regex(value)
                }
                other => {
                    read.problems.push(ConfigError::new(
                        format!("{field}.type"),
                        format!("{other:?} is not Exact, Prefix, Suffix or RegularExpression"),
                    ));
                    continue;
                }
            };
            deny_redirect.push(OidcHeaderMatch {
                name: h.name.clone(),
                value,
            });
        }

        let pass_through_auth_header = o.pass_through_auth_header.unwrap_or(false);
        if pass_through_auth_header && !jwt_reads_a_header(m) {
            read.problems.push(ConfigError::new(
                "spec.oidc.passThroughAuthHeader",
                "needs a jwt provider in the same policy that reads tokens from a header",
            ));
        }

        if read.problems.len() != before {
            return None;
        }
        Some(AccessSpec::Oidc(Box::new(OidcSpec {
            issuer: p.issuer.clone(),
            authorization_endpoint: p.authorization_endpoint.clone(),
            token_endpoint: p.token_endpoint.clone(),
            end_session_endpoint: p.end_session_endpoint.clone(),
            upstream,
            client_id: client_id?,
            client_secret: client_secret?,
            scopes,
            resources: o.resources.clone(),
            redirect: redirect?,
            logout_path,
            forward_access_token: o.forward_access_token.unwrap_or(false),
            default_token_ttl,
            refresh_token: o.refresh_token.unwrap_or(false),
            default_refresh_token_ttl,
            csrf_token_ttl,
            cookie_suffix,
            access_token_cookie,
            id_token_cookie,
            cookie_domain: o.cookie_domain.clone(),
            same_site,
            deny_redirect,
            pass_through_auth_header,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_urls_literal_and_from_the_request() {
        let r = redirect("https://app.test:8443/cb?x=1", "f").unwrap();
        assert_eq!(r.scheme.as_deref(), Some("https"));
        assert_eq!(r.authority.as_deref(), Some("app.test:8443"));
        assert_eq!(r.path(), "/cb");
        let r = redirect(
            "%REQ(x-forwarded-proto)%://%REQ(:authority)%/oauth2/callback",
            "f",
        )
        .unwrap();
        assert_eq!((r.scheme, r.authority), (None, None));
        let r = redirect("https://%REQ(:authority)%/cb", "f").unwrap();
        assert_eq!(r.url("http", "a.test"), "https://a.test/cb");
        for bad in [
            "/cb",
            "ftp://a.test/cb",
            "https://a.test",
            "https://a.test/",
            "https:///cb",
            "https://%REQ(host)%/cb",
            "https://user@a.test/cb",
            "https://a.test/c b",
        ] {
            assert!(redirect(bad, "f").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cookie_suffix_is_envoy_gateways_fnv1a_digest() {
        // FNV-1a 32 of "" and "a" (reference values).
        assert_eq!(digest32(""), "811c9dc5");
        assert_eq!(digest32("a"), "e40c292c");
    }

    #[test]
    fn cookie_domains_and_names() {
        assert!(is_cookie_domain("example.com") && is_cookie_domain("a-b.c1"));
        for bad in ["", "Example.com", ".a", "a..b", "-a.b", "a_b"] {
            assert!(!is_cookie_domain(bad), "{bad}");
        }
        assert!(is_cookie_name("My-Token_1") && !is_cookie_name("a b") && !is_cookie_name("a;"));
    }

    #[test]
    fn the_client_secret_is_never_printed() {
        let s = ClientSecret::new("hunter2");
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
