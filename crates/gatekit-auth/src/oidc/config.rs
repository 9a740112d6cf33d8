//! The OIDC layer's configuration: a plain builder, built in code or by the gateway from
//! Envoy Gateway's `SecurityPolicy.spec.oidc`.

use std::fmt;
use std::time::Duration;

use gatekit_core::Backend;
use gatekit_core::ratelimit::{ClientMatch, ValueMatch};
use http::{HeaderName, Uri};
use zeroize::Zeroizing;

/// The `SameSite` attribute of the session cookie (EG `cookieConfig.sameSite`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SameSite {
    /// `Lax` (the default): sent on top-level navigations from other sites.
    #[default]
    Lax,
    /// `Strict`: never sent from other sites.
    Strict,
    /// `None`: sent everywhere; needs `Secure` cookies.
    None,
}

impl SameSite {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
            Self::None => "None",
        }
    }
}

/// A browser login at an OpenID Connect provider (EG `oidc`): who the client is, where
/// the provider is, and how the session is kept.
///
/// Every request to the provider (discovery, JWKS, token endpoint) goes through the
/// [`Backend`] given to [`new`](Self::new), with the endpoint's URI as target and
/// `Host`; the backend decides how the host is reached (see
/// [`RemoteJwks`](crate::jwt::RemoteJwks)).
#[derive(Clone)]
pub struct OidcConfig {
    pub(super) name: String,
    pub(super) issuer: String,
    pub(super) client_id: String,
    pub(super) client_secret: Zeroizing<String>,
    pub(super) backend: Backend,
    pub(super) authorization_endpoint: Option<Uri>,
    pub(super) token_endpoint: Option<Uri>,
    pub(super) end_session_endpoint: Option<Uri>,
    pub(super) scopes: Vec<String>,
    pub(super) resources: Vec<String>,
    pub(super) redirect_url: String,
    pub(super) logout_path: String,
    pub(super) post_logout_redirect_url: Option<String>,
    pub(super) forward_access_token: bool,
    pub(super) default_token_ttl: Option<Duration>,
    pub(super) refresh_token: bool,
    pub(super) default_refresh_token_ttl: Duration,
    pub(super) cookie_name: Option<String>,
    pub(super) cookie_domain: Option<String>,
    pub(super) same_site: SameSite,
    pub(super) secure_cookies: bool,
    pub(super) deny_redirect: Vec<ClientMatch>,
    pub(super) pass_through_auth_header: bool,
    pub(super) csrf_token_ttl: Duration,
    pub(super) clock_skew: Duration,
    pub(super) discovery_backoff: (Duration, Duration),
    pub(super) timeout: Duration,
}

impl OidcConfig {
    /// A login at the provider `issuer` (EG `provider.issuer`, e.g.
    /// `https://accounts.example.com`) for the client `client_id` with `client_secret`
    /// (EG `clientID`, `clientSecret`), reaching the provider through `backend`.
    ///
    /// Defaults, as Envoy Gateway's: endpoints from the issuer's discovery document,
    /// scope `openid`, redirect URL `/oauth2/callback` on the request's host, logout
    /// path `/logout`, access token not forwarded, refresh on with refresh tokens kept a
    /// week unless they say otherwise, session cookie `SameSite=Lax`, `Secure` and
    /// `HttpOnly`, login state valid 10 minutes, 60 s of clock skew on ID tokens.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        backend: Backend,
    ) -> Self {
        Self {
            name: "oidc".to_owned(),
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: Zeroizing::new(client_secret.into()),
            backend,
            authorization_endpoint: None,
            token_endpoint: None,
            end_session_endpoint: None,
            scopes: Vec::new(),
            resources: Vec::new(),
            redirect_url: "/oauth2/callback".to_owned(),
            logout_path: "/logout".to_owned(),
            post_logout_redirect_url: None,
            forward_access_token: false,
            default_token_ttl: None,
            refresh_token: true,
            default_refresh_token_ttl: Duration::from_secs(7 * 24 * 3600),
            cookie_name: None,
            cookie_domain: None,
            same_site: SameSite::Lax,
            secure_cookies: true,
            deny_redirect: Vec::new(),
            pass_through_auth_header: false,
            csrf_token_ttl: Duration::from_secs(600),
            clock_skew: Duration::from_secs(60),
            discovery_backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            timeout: Duration::from_secs(10),
        }
    }

    /// The name of this login in logs and in
    /// [`VerifiedClaims::provider`](crate::VerifiedClaims) (`oidc` by default).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The authorization endpoint, instead of the discovery document's (EG
    /// `provider.authorizationEndpoint`).
    #[must_use]
    pub fn authorization_endpoint(mut self, uri: Uri) -> Self {
        self.authorization_endpoint = Some(uri);
        self
    }

    /// The token endpoint, instead of the discovery document's (EG
    /// `provider.tokenEndpoint`).
    #[must_use]
    pub fn token_endpoint(mut self, uri: Uri) -> Self {
        self.token_endpoint = Some(uri);
        self
    }

    /// The end-session endpoint the logout path redirects to, instead of the discovery
    /// document's (EG `provider.endSessionEndpoint`).
    #[must_use]
    pub fn end_session_endpoint(mut self, uri: Uri) -> Self {
        self.end_session_endpoint = Some(uri);
        self
    }

    /// Scopes asked for besides `openid`, which is always asked for (EG `scopes`).
    #[must_use]
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// `resource` parameters of the authorization request (RFC 8707; EG `resources`).
    #[must_use]
    pub fn resources(mut self, resources: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.resources = resources.into_iter().map(Into::into).collect();
        self
    }

    /// The redirect URL registered at the provider (EG `redirectURL`): an absolute
    /// `http(s)` URL, or a path (default `/oauth2/callback`) completed with the
    /// request's `Host` and `https` (`http` with [`secure_cookies(false)`]). Requests to
    /// its path are the login callbacks.
    ///
    /// [`secure_cookies(false)`]: Self::secure_cookies
    #[must_use]
    pub fn redirect_url(mut self, url: impl Into<String>) -> Self {
        self.redirect_url = url.into();
        self
    }

    /// The path that logs a user out (EG `logoutPath`, default `/logout`).
    #[must_use]
    pub fn logout_path(mut self, path: impl Into<String>) -> Self {
        self.logout_path = path.into();
        self
    }

    /// Where the provider sends the browser after logging out
    /// (`post_logout_redirect_uri`); not sent by default.
    #[must_use]
    pub fn post_logout_redirect_url(mut self, url: impl Into<String>) -> Self {
        self.post_logout_redirect_url = Some(url.into());
        self
    }

    /// Sends the access token upstream as `Authorization: Bearer` (EG
    /// `forwardAccessToken`; off by default).
    #[must_use]
    pub fn forward_access_token(mut self, on: bool) -> Self {
        self.forward_access_token = on;
        self
    }

    /// How long a session lasts when the token response has no `expires_in` (EG
    /// `defaultTokenTTL`). Without either, the ID token's `exp` is used.
    #[must_use]
    pub fn default_token_ttl(mut self, ttl: Duration) -> Self {
        self.default_token_ttl = Some(ttl);
        self
    }

    /// Renews expired sessions with the refresh token (EG `refreshToken`, on by
    /// default). Off: an expired session means a new login.
    #[must_use]
    pub fn refresh_token(mut self, on: bool) -> Self {
        self.refresh_token = on;
        self
    }

    /// How long a refresh token is used when it is not a JWT with an `exp` (EG
    /// `defaultRefreshTokenTTL`, one week by default).
    #[must_use]
    pub fn default_refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.default_refresh_token_ttl = ttl;
        self
    }

    /// The session cookie's name (EG `cookieNames.idToken`; chunks of a large session
    /// are `<name>-1`, `<name>-2`, ..., login states `<name>-state-<tag>`). Default:
    /// `gatekit-oidc-` and a digest of the issuer and client, the same on every
    /// replica.
    #[must_use]
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = Some(name.into());
        self
    }

    /// The cookies' `Domain` (EG `cookieDomain`); by default the request's host only.
    #[must_use]
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie_domain = Some(domain.into());
        self
    }

    /// The session cookie's `SameSite` (EG `cookieConfig.sameSite`, `Lax` by default).
    /// Login-state cookies are always `Lax`: they must come back from the provider.
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Marks cookies `Secure` (the default). `false` only for plain-HTTP tests and
    /// development: the session cookie then travels in clear.
    #[must_use]
    pub fn secure_cookies(mut self, on: bool) -> Self {
        self.secure_cookies = on;
        self
    }

    /// Requests carrying header `name` with a value matching `value` get 401 instead of
    /// a redirect to the provider (EG `denyRedirect.headers`; AJAX and API clients).
    /// Requests other than `GET` and `HEAD` always do.
    #[must_use]
    pub fn deny_redirect_header(mut self, name: HeaderName, value: ValueMatch) -> Self {
        self.deny_redirect.push(ClientMatch::header(name, value));
        self
    }

    /// Lets a request with a valid `Authorization: Bearer` JWT from this provider (its
    /// JWKS, issuer and this client as audience) through without a session (EG
    /// `passThroughAuthHeader`; off by default). An invalid one gets 401.
    #[must_use]
    pub fn pass_through_auth_header(mut self, on: bool) -> Self {
        self.pass_through_auth_header = on;
        self
    }

    /// How long a login may take, from the redirect to the callback (EG
    /// `csrfTokenTTL`, 10 minutes by default).
    #[must_use]
    pub fn csrf_token_ttl(mut self, ttl: Duration) -> Self {
        self.csrf_token_ttl = ttl;
        self
    }

    /// The clock skew allowed on ID tokens' `exp` and `nbf` (60 s by default).
    #[must_use]
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The first and the longest wait between discovery attempts (1 s doubling up to
    /// 60 s by default).
    #[must_use]
    pub fn discovery_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.discovery_backoff = (first, max);
        self
    }

    /// The time one request to the provider may take (10 s by default).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .field("end_session_endpoint", &self.end_session_endpoint)
            .field("scopes", &self.scopes)
            .field("resources", &self.resources)
            .field("redirect_url", &self.redirect_url)
            .field("logout_path", &self.logout_path)
            .field("forward_access_token", &self.forward_access_token)
            .field("refresh_token", &self.refresh_token)
            .field("cookie_name", &self.cookie_name)
            .field("cookie_domain", &self.cookie_domain)
            .field("same_site", &self.same_site)
            .field("secure_cookies", &self.secure_cookies)
            .field("pass_through_auth_header", &self.pass_through_auth_header)
            .finish_non_exhaustive()
    }
}
