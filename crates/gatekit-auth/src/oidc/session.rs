//! What the encrypted cookies hold: a login in progress ([`LoginState`]) and a logged-in
//! session ([`Session`]).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A login in progress, in the state cookie until the callback.
#[derive(Serialize, Deserialize)]
pub(super) struct LoginState {
    /// The `state` parameter sent to the provider.
    pub(super) state: String,
    /// The `nonce` the ID token must carry.
    pub(super) nonce: String,
    /// The PKCE code verifier.
    pub(super) verifier: String,
    /// Where the browser goes after the login: a path and query on this host.
    pub(super) url: String,
    /// Unix seconds after which the login is refused.
    pub(super) exp: u64,
}

impl fmt::Debug for LoginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginState")
            .field("url", &self.url)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// A logged-in session, in the session cookie.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Session {
    /// The ID token (verified at login or refresh).
    pub(super) id: String,
    /// The access token.
    pub(super) at: String,
    /// The refresh token, when the provider gave one and refresh is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rt: Option<String>,
    /// Unix seconds when the tokens expire.
    pub(super) exp: u64,
    /// Unix seconds when the refresh token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rexp: Option<u64>,
}

impl Session {
    /// The ID token's claims. The token was verified before the session was sealed,
    /// and the seal is authenticated: no signature check per request.
    pub(super) fn claims(&self) -> Option<Map<String, Value>> {
        payload(&self.id)
    }

    /// Unix seconds until which the cookie is worth keeping: the refresh token's
    /// expiry when there is one, else the tokens'.
    pub(super) fn cookie_until(&self) -> u64 {
        match (self.rt.as_ref(), self.rexp) {
            (Some(_), Some(rexp)) => rexp.max(self.exp),
            _ => self.exp,
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("exp", &self.exp)
            .field("refreshable", &self.rt.is_some())
            .finish_non_exhaustive()
    }
}

/// The payload of a JWT, not verified.
pub(super) fn payload(jwt: &str) -> Option<Map<String, Value>> {
    let mut parts = jwt.split('.');
    let _header = parts.next()?;
    let body = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    serde_json::from_slice(&body).ok()
}
