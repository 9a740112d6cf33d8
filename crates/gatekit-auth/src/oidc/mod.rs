//! OpenID Connect login for browser applications: the authorization-code flow with
//! PKCE, an encrypted session cookie, refresh and logout (Envoy Gateway's
//! `SecurityPolicy.spec.oidc`).
//!
//! # The flow
//!
//! - **Discovery.** From the moment the layer is built, `{issuer}/.well-known/openid-configuration`
//!   is fetched in the background, retried with a doubling backoff until it succeeds;
//!   the document's `issuer` must be the configured one, and configured endpoints
//!   override its own. ID-token keys come from its `jwks_uri` through the
//!   [`jwt`](crate::jwt) module's remote JWKS (cached, refetched on an unknown `kid`).
//!   Until discovery succeeds every request gets 503 `auth-unavailable`.
//! - **No session.** A `GET` or `HEAD` is redirected (302) to the authorization endpoint
//!   with `response_type=code`, the client ID, the redirect URL, `scope` (`openid` and
//!   the configured scopes), a random `state` and `nonce`, an S256 PKCE
//!   `code_challenge` and the `resource`s. The state, nonce, PKCE verifier and the
//!   request's path and query (never a URL of another host) go into an encrypted,
//!   `HttpOnly`, `SameSite=Lax`, short-lived login-state cookie named after that
//!   state. Other methods, and requests matching a
//!   [`deny_redirect_header`](OidcConfig::deny_redirect_header), get 401.
//! - **Callback** (the redirect URL's path). The `state` parameter must open the
//!   login-state cookie of that name and equal its state (constant time), once
//!   (replays within the state's lifetime are refused); the code is exchanged at the
//!   token endpoint with the verifier (`client_secret_basic`); the ID token must carry
//!   a signature by the provider's JWKS, `iss` the issuer, the client in `aud`, a
//!   valid `exp`/`nbf` (with the clock skew) and the login's `nonce`. Then the
//!   session cookie is set and the browser sent back where it started. A bad callback
//!   gets 400 (parameters missing) or 401; the provider unreachable, 503.
//! - **Session.** The session cookie holds the ID, access and refresh tokens and the
//!   expiry, sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the client
//!   secret and the cookie's name: every replica with the same secret reads it; a
//!   tampered, truncated or foreign cookie does not open and means a new login. Over
//!   about 3.8 KB it is split over `<name>`, `<name>-1`, .... It lasts until the tokens
//!   expire (`expires_in`, else [`default_token_ttl`](OidcConfig::default_token_ttl),
//!   else the ID token's `exp`), or the refresh token's expiry when there is one.
//! - **Valid session.** The request passes with an
//!   [`Identity`](gatekit_core::access::Identity) (`oidc`, the `sub` claim) and the ID
//!   token's claims as [`VerifiedClaims`](crate::VerifiedClaims) (for
//!   [`authz`](crate::authz) rules), without the session cookies, and with
//!   `Authorization: Bearer <access token>` when
//!   [`forward_access_token`](OidcConfig::forward_access_token) is on.
//! - **Expired session** with a refresh token: renewed at the token endpoint, the
//!   request passes, and the renewed cookie is set on the response. A failed renewal is
//!   a new login.
//! - **Logout path**: the session cookies are deleted and the browser sent to the
//!   provider's `end_session_endpoint` (with `id_token_hint`, `client_id` and, when
//!   configured, `post_logout_redirect_uri`), or to `/`.
//! - With [`pass_through_auth_header`](OidcConfig::pass_through_auth_header), a request
//!   with `Authorization: Bearer` is checked as a JWT of this provider instead (the
//!   [`jwt`](crate::jwt) check: identity `jwt`).
//!
//! Refusals are [`gatekit_core::Error`]s; redirects are responses made by the layer.
//! A redirect to the provider's login carries [`LoginRedirect`] in its extensions, so
//! that whoever counts decisions can count it as a request without a session.
//! The client secret, tokens, codes, verifiers and cookies never appear in `Debug`
//! output, logs or errors.
//!
//! The callback and logout paths must be routed to a rule this policy guards.
//!
//! # Example: in your own stack
//!
//! ```no_run
//! use gatekit_auth::oidc::{OidcConfig, OidcLayer};
//! use gatekit_core::{Backend, client::Client};
//! use tower::ServiceBuilder;
//!
//! # async fn run(app: Backend) -> Result<(), Box<dyn std::error::Error>> {
//! let idp = Backend::single(&Client::default(), "127.0.0.1:8081".parse()?);
//! let oidc = OidcLayer::new(
//!     OidcConfig::new("http://127.0.0.1:8081", "my-app", "client-secret", idp)
//!         .scopes(["email"])
//!         .redirect_url("https://app.example/oauth2/callback")
//!         .forward_access_token(true),
//! )?;
//! // Refusals are `gatekit_core::Error`s: turn them into responses outside the layer.
//! let svc = ServiceBuilder::new()
//!     .layer(gatekit_core::HandleErrorLayer)
//!     .layer(oidc)
//!     .service(app);
//! # let _ = svc;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use gatekit_core::access::AccessPolicy;
use gatekit_core::{Backend, ConfigError};
use tower_layer::Layer;

mod config;
mod cookie;
mod flow;
mod future;
mod layer;
mod provider;
mod service;
mod session;

#[cfg(test)]
mod tests;

pub use self::config::{OidcConfig, SameSite};
pub use self::future::ResponseFuture;
pub use self::layer::OidcLayer;
pub use self::provider::OidcStatus;
pub use self::service::Oidc;

/// Marks a response that is a redirect to the provider's login (in its extensions):
/// the request had no usable session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginRedirect;

/// An OIDC login guarding gatekit route rules: an [`AccessPolicy`] around an
/// [`OidcLayer`].
#[derive(Clone)]
pub struct OidcPolicy {
    layer: OidcLayer,
}

impl OidcPolicy {
    /// A policy logging users in as `config` says.
    ///
    /// # Errors
    ///
    /// As [`OidcLayer::new`].
    pub fn new(config: OidcConfig) -> Result<Self, ConfigError> {
        OidcLayer::new(config).map(Self::from_layer)
    }

    /// A policy around an existing layer (sharing its discovery and keys).
    pub fn from_layer(layer: OidcLayer) -> Self {
        Self { layer }
    }

    /// The layer, for [`OidcLayer::status`].
    pub fn oidc_layer(&self) -> &OidcLayer {
        &self.layer
    }
}

impl AccessPolicy for OidcPolicy {
    fn layer(&self, inner: Backend) -> Backend {
        Backend::new(Layer::layer(&self.layer, inner))
    }
}

impl fmt::Debug for OidcPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OidcPolicy").field(&self.layer).finish()
    }
}
