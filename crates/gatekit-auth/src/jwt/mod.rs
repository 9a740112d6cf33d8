//! JWT bearer tokens verified with keys from a local or remote JWKS.
//!
//! # What is checked
//!
//! A request's token is read from the provider's sources (`Authorization: Bearer` by
//! default; a header, cookie or query parameter — see [`CredentialSource`]). It must
//! carry a valid signature by one of the provider's keys, an `exp` in the future, an
//! `nbf` (when present) in the past, both with the provider's clock skew (60 s by
//! default), the provider's `iss` (when set) and one of its audiences in `aud` (when
//! set).
//!
//! Algorithms: RS256/384/512, PS256/384/512, ES256 (P-256), ES384 (P-384), EdDSA
//! (Ed25519), and HS256/384/512 only with [`JwtProvider::allow_hmac`]. The algorithms a
//! key verifies come from its JWK (its `alg`, else its key type and curve); the token
//! header's `alg` only chooses among those, so an `HS256` token "signed" with an RSA
//! public key is refused, as is `alg: none`.
//!
//! With several providers a token is accepted when one verifies it; the token's
//! (unverified) `iss` sends it only to the providers with that issuer (and those
//! without one), so a token never triggers another issuer's key refresh.
//!
//! # Outcomes
//!
//! - Verified: the claims named in [`JwtProvider::claim_to_header`] go into request
//!   headers (the client's own copies of those headers are removed from every request
//!   first), [`VerifiedClaims`](crate::VerifiedClaims) and an
//!   [`Identity`](gatekit_core::access::Identity) (`jwt`, the `sub` claim) go into the
//!   request's extensions, and the token is removed unless the provider forwards it.
//! - No token: 401 with `WWW-Authenticate: Bearer realm="..."`, or through
//!   unauthenticated with [`JwtConfig::optional`].
//! - A token that does not verify: 401 with `Bearer realm="...",
//!   error="invalid_token"` (RFC 6750), nothing said about which check failed.
//! - A remote JWKS never fetched yet (or never fetched successfully): 503
//!   `auth-unavailable`, since the token may well be good.
//!
//! # Keys
//!
//! A local JWKS is parsed when the layer is built. A remote one ([`RemoteJwks`]) is
//! fetched in the background from the moment the layer is built, every
//! `cache_duration` (5 minutes by default), and early when a token names an unknown
//! `kid` — at most once per `min_refresh_interval` (10 s) per provider, however many
//! such tokens arrive. The token that asked is refused; tokens after the fetch use
//! the new keys. A failed fetch keeps the last good keys and is logged. Keys are
//! parsed once per fetch; a request reads them without a lock. Fetching stops when the
//! layer and its services are dropped (a configuration change builds a new layer).
//!
//! Signatures are checked with `ring` (see `crypto.rs`): jsonwebtoken's
//! parsing and claim validation, gatekit's one crypto library.
//!
//! # Example: in your own stack
//!
//! ```no_run
//! use gatekit_auth::jwt::{JwksSource, JwtConfig, JwtLayer, JwtProvider, RemoteJwks};
//! use gatekit_core::{Backend, client::Client};
//! use tower::ServiceBuilder;
//!
//! # async fn run(app: Backend) -> Result<(), Box<dyn std::error::Error>> {
//! let jwks_host = Backend::single(&Client::default(), "127.0.0.1:8081".parse()?);
//! let provider = JwtProvider::new(
//!     "example",
//!     JwksSource::Remote(RemoteJwks::new(
//!         "http://127.0.0.1:8081/.well-known/jwks.json".parse()?,
//!         jwks_host,
//!     )),
//! )
//! .issuer("https://issuer.example")
//! .audiences(["api"])
//! .claim_to_header(http::HeaderName::from_static("x-user"), "sub");
//! let jwt = JwtLayer::new(JwtConfig::new([provider]))?;
//! // Refusals are `gatekit_core::Error`s: turn them into responses outside the layer.
//! let svc = ServiceBuilder::new()
//!     .layer(gatekit_core::HandleErrorLayer)
//!     .layer(jwt)
//!     .service(app);
//! # let _ = svc;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use gatekit_core::access::AccessPolicy;
use gatekit_core::{Backend, ConfigError};
use tower_layer::Layer;

pub mod claims;
mod config;
mod crypto;
mod jwks;
mod keys;
mod layer;
mod service;
mod verify;

#[cfg(test)]
mod tests;

pub(crate) use self::jwks::fetch as fetch_document;
pub(crate) use self::verify::TokenCheck;

pub use self::config::{JwksSource, JwtConfig, JwtProvider, RemoteJwks};
pub use self::jwks::JwksFetches;
pub use self::layer::JwtLayer;
pub use self::service::Jwt;
pub use crate::credential::CredentialSource;
pub use crate::future::ResponseFuture;

/// A JWT check guarding gatekit route rules: an [`AccessPolicy`] around a
/// [`JwtLayer`].
#[derive(Clone)]
pub struct JwtPolicy {
    layer: JwtLayer,
}

impl JwtPolicy {
    /// A policy checking tokens as `config` says.
    ///
    /// # Errors
    ///
    /// As [`JwtLayer::new`].
    pub fn new(config: JwtConfig) -> Result<Self, ConfigError> {
        JwtLayer::new(config).map(Self::from_layer)
    }

    /// A policy around an existing layer (sharing its keys and fetches).
    pub fn from_layer(layer: JwtLayer) -> Self {
        Self { layer }
    }

    /// The layer, for [`JwtLayer::fetches`].
    pub fn jwt_layer(&self) -> &JwtLayer {
        &self.layer
    }
}

impl AccessPolicy for JwtPolicy {
    fn layer(&self, inner: Backend) -> Backend {
        Backend::new(Layer::layer(&self.layer, inner))
    }
}

impl fmt::Debug for JwtPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JwtPolicy").field(&self.layer).finish()
    }
}
