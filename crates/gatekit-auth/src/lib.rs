//! gatekit-auth: authentication and authorization at the gateway, as tower layers.
//!
//! Each mechanism is a module with a plain configuration type, a tower `Layer` usable in
//! any hyper or axum server, and an [`AccessPolicy`](gatekit_core::access::AccessPolicy)
//! that plugs it into a gatekit route rule (see [`gatekit_core::access`]):
//!
//! - [`apikey`]: API keys per consumer, held and looked up as digests;
//! - [`basic`]: HTTP basic auth from htpasswd data (bcrypt), with a bounded cache of
//!   verified credentials and bounded concurrent hash verifications;
//! - [`jwt`]: JSON Web Tokens verified with keys from a local or remote JWKS;
//! - [`extauth`]: an external authorization service, over HTTP or Envoy's
//!   `envoy.service.auth.v3.Authorization` gRPC protocol;
//! - [`oidc`]: a browser login at an OpenID Connect provider (authorization code with
//!   PKCE, encrypted session cookie, refresh, logout);
//! - [`authz`]: allow and deny rules on the client address, JWT claims and headers.
//!
//! Refusals are [`gatekit_core::Error`]s (401 with a challenge, 403, 503), which
//! [`gatekit_core::error_response`] turns into responses: in a server of your own, put
//! gatekit's error handling outside these layers. A request that passes carries its
//! [`Identity`](gatekit_core::access::Identity) in its extensions (and, after a JWT
//! check, its [`VerifiedClaims`]).
//!
//! Secrets (keys, passwords, tokens) never appear in `Debug` output, logs or metrics.

pub mod apikey;
pub mod authz;
pub mod basic;
pub mod credential;
pub mod extauth;
mod future;
mod header;
pub mod jwt;
pub mod oidc;

use std::sync::Arc;

/// The claims of a verified JWT, put into the request's extensions by the [`jwt`]
/// and [`oidc`] layers, read by the [`authz`] rules.
#[derive(Clone, Debug)]
pub struct VerifiedClaims {
    /// The name of the provider whose key verified the token.
    pub provider: Arc<str>,
    /// The token's payload: a JSON object.
    pub claims: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl VerifiedClaims {
    /// Marks `req` as authenticated by `method` with a token `provider` verified: its
    /// [`Identity`](gatekit_core::access::Identity) (the `sub` claim, empty when
    /// absent) and these claims go into the request's extensions.
    pub(crate) fn establish<B>(
        req: &mut http::Request<B>,
        method: &'static str,
        provider: Arc<str>,
        claims: serde_json::Map<String, serde_json::Value>,
    ) {
        let subject = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ext = req.extensions_mut();
        ext.insert(gatekit_core::access::Identity::new(method, subject));
        ext.insert(Self {
            provider,
            claims: Arc::new(claims),
        });
    }
}
