//! [`OidcLayer`]: checks the configuration, derives the cookie keys and starts
//! discovery.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use gatekit_core::ConfigError;
use http::Uri;
use ring::rand::SystemRandom;
use tokio::sync::watch;
use tower_layer::Layer;

use super::config::{OidcConfig, SameSite};
use super::cookie::{self, Attributes, CookieKey};
use super::flow::{RedirectUrl, Shared};
use super::provider::{self, DiscoveryConfig, OidcStatus, TokenClient};
use super::service::Oidc;
use crate::header::digest_of;

/// Requires a browser login at an OpenID Connect provider (see the
/// [module docs](super)).
///
/// Cheap to clone; the clones share the discovery, keys and replay memory, and the
/// background work stops when the last clone (and every service built from it) is
/// dropped.
#[derive(Clone)]
pub struct OidcLayer {
    shared: Arc<Shared>,
}

impl OidcLayer {
    /// Checks `config` and starts discovering the provider in the background (on the
    /// current tokio runtime). Requests get 503 until discovery succeeds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: an issuer that is not an `http(s)` URL, an
    /// empty client ID or secret, a scope with a space, a redirect URL that is neither
    /// a path nor an `http(s)` URL, a logout path that is not a path or is the
    /// callback's, a cookie name or domain that cannot be one, `SameSite=None` without
    /// `Secure` cookies, a zero timeout, or no tokio runtime.
    pub fn new(config: OidcConfig) -> Result<Self, ConfigError> {
        let issuer: Uri = config
            .issuer
            .parse()
            .map_err(|_| ConfigError::new("provider.issuer", "not a URL"))?;
        if !matches!(issuer.scheme_str(), Some("https" | "http"))
            || issuer.host().is_none()
            || issuer.query().is_some()
        {
            return Err(ConfigError::new(
                "provider.issuer",
                "must be an https (or http) URL without a query",
            ));
        }
        if config.client_id.is_empty() {
            return Err(ConfigError::new("clientID", "must not be empty"));
        }
        if config.client_secret.is_empty() {
            return Err(ConfigError::new("clientSecret", "must not be empty"));
        }
        let mut scope = String::from("openid");
        for s in &config.scopes {
            if s.is_empty() || s.contains(char::is_whitespace) {
                return Err(ConfigError::new("scopes", format!("bad scope {s:?}")));
            }
            if s != "openid" {
                scope.push(' ');
                scope.push_str(s);
            }
        }
        let (redirect, callback_path) = if config.redirect_url.starts_with('/') {
            let path = config
                .redirect_url
                .parse::<Uri>()
                .ok()
                .filter(|u| u.query().is_none())
                .ok_or_else(|| ConfigError::new("redirectURL", "not a path"))?;
            (
                RedirectUrl::Path(path.path().to_owned()),
                path.path().to_owned(),
            )
        } else {
            let url = config
                .redirect_url
                .parse::<Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some())
                .ok_or_else(|| ConfigError::new("redirectURL", "not an http(s) URL"))?;
            (
                RedirectUrl::Absolute(config.redirect_url.clone()),
                url.path().to_owned(),
            )
        };
        if !config.logout_path.starts_with('/')
            || config.logout_path.parse::<Uri>().is_err()
            || config.logout_path == callback_path
        {
            return Err(ConfigError::new(
                "logoutPath",
                "must be a path other than the redirect URL's",
            ));
        }
        let session_name = match &config.cookie_name {
            Some(name) => name.clone(),
            None => {
                let d = digest_of(format!("{}\n{}", config.issuer, config.client_id).as_bytes());
                let hex: String = d.as_bytes()[..6]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("gatekit-oidc-{hex}")
            }
        };
        if !cookie::valid_name(&session_name) {
            return Err(ConfigError::new("cookieNames", "not a cookie name"));
        }
        if let Some(domain) = &config.cookie_domain
            && (domain.is_empty()
                || !domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        {
            return Err(ConfigError::new("cookieDomain", "not a domain name"));
        }
        if config.same_site == SameSite::None && !config.secure_cookies {
            return Err(ConfigError::new(
                "cookieConfig.sameSite",
                "SameSite=None needs Secure cookies",
            ));
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be more than zero"));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new("provider", "no tokio runtime to discover it on"))?;
        let token = TokenClient::new(
            config.backend.clone(),
            &config.client_id,
            &config.client_secret,
            config.timeout,
        )
        .ok_or_else(|| ConfigError::new("clientID", "cannot be sent in a header"))?;

        let secret = config.client_secret.as_bytes();
        let state_prefix = format!("{session_name}-state-");
        let discovered = Arc::new(ArcSwapOption::empty());
        let (status, _) = watch::channel(OidcStatus::default());
        let status = Arc::new(status);
        let task = runtime.spawn(provider::discover(
            DiscoveryConfig {
                name: config.name.clone(),
                issuer: config.issuer.clone(),
                client_id: config.client_id.clone(),
                backend: config.backend.clone(),
                authorization: config.authorization_endpoint.clone(),
                token: config.token_endpoint.clone(),
                end_session: config.end_session_endpoint.clone(),
                clock_skew: config.clock_skew,
                backoff: config.discovery_backoff,
                timeout: config.timeout,
            },
            discovered.clone(),
            status.clone(),
        ));
        let shared = Shared {
            name: Arc::from(config.name.as_str()),
            client_id: config.client_id.clone(),
            scope,
            resources: config.resources.clone(),
            redirect,
            callback_path,
            logout_path: config.logout_path.clone(),
            post_logout: config.post_logout_redirect_url.clone(),
            forward_access_token: config.forward_access_token,
            default_token_ttl: config.default_token_ttl.map(|d| d.as_secs()),
            refresh: config.refresh_token,
            default_refresh_ttl: config.default_refresh_token_ttl.as_secs(),
            session_prefix: format!("{session_name}-"),
            session_key: CookieKey::derive(secret, &session_name),
            state_key: CookieKey::derive(secret, &state_prefix),
            state_prefix,
            session_name,
            attrs: Attributes {
                secure: config.secure_cookies,
                domain: config.cookie_domain.clone(),
            },
            same_site: config.same_site.as_str(),
            deny_redirect: config.deny_redirect.clone(),
            pass_through: config.pass_through_auth_header,
            csrf_ttl: config.csrf_token_ttl.as_secs().max(1),
            token,
            rng: SystemRandom::new(),
            used_states: parking_lot::Mutex::new(HashMap::new()),
            discovered,
            status,
            task: Some(task.abort_handle()),
            #[cfg(test)]
            clock_offset: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Discovery and key fetches so far, updated as they happen: wait on it to know
    /// the provider was discovered and its keys fetched.
    pub fn status(&self) -> watch::Receiver<OidcStatus> {
        self.shared.status.subscribe()
    }

    /// The session cookie's name (chunks are `<name>-1`, ...).
    pub fn cookie_name(&self) -> &str {
        &self.shared.session_name
    }

    #[cfg(test)]
    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl<S> Layer<S> for OidcLayer {
    type Service = Oidc<S>;

    fn layer(&self, inner: S) -> Oidc<S> {
        Oidc::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for OidcLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcLayer")
            .field("name", &self.shared.name)
            .field("client_id", &self.shared.client_id)
            .field("cookie", &self.shared.session_name)
            .finish_non_exhaustive()
    }
}
