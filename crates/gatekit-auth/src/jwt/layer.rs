//! [`JwtLayer`]: builds the providers' key stores and starts remote JWKS fetching.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use gatekit_core::ConfigError;
use jsonwebtoken::{Algorithm, Validation};
use tokio::sync::watch;
use tower_layer::Layer;

use super::config::{JwksSource, JwtConfig, JwtProvider};
use super::jwks::{self, JwksFetches, KeyStore};
use super::keys::KeySet;
use super::service::Jwt;
use super::verify::{Provider, Shared};

/// Requires a valid JWT on every request (see the [module docs](super)).
///
/// Cheap to clone; the clones share key stores and background fetches, which stop
/// when the last clone (and every service built from it) is dropped.
#[derive(Clone)]
pub struct JwtLayer {
    shared: Arc<Shared>,
}

impl JwtLayer {
    /// Checks `config`, parses local JWKS documents and starts fetching remote ones in
    /// the background (on the current tokio runtime).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field (`providers[1].localJWKS`, ...): no provider,
    /// two providers with one name, a provider without a token source, a local JWKS
    /// that is not one or holds no usable key, a realm that cannot be quoted, a remote
    /// JWKS with a zero cache duration or timeout, or without a tokio runtime to fetch
    /// it on.
    pub fn new(config: JwtConfig) -> Result<Self, ConfigError> {
        super::crypto::install();
        if config.providers.is_empty() {
            return Err(ConfigError::new(
                "providers",
                "at least one provider is needed",
            ));
        }
        let challenge = crate::header::challenge("Bearer", &config.realm, "")?;
        let challenge_invalid =
            crate::header::challenge("Bearer", &config.realm, ", error=\"invalid_token\"")?;

        let (events, _) = watch::channel(JwksFetches::default());
        let events = Arc::new(events);
        let mut names = HashSet::new();
        let mut providers = Vec::with_capacity(config.providers.len());
        let mut tasks = Vec::new();
        let mut claim_headers = Vec::new();
        for (i, p) in config.providers.into_iter().enumerate() {
            let at = |field: &str| format!("providers[{i}].{field}");
            if !names.insert(p.name.clone()) {
                return Err(ConfigError::new(
                    at("name"),
                    format!("duplicate provider name {:?}", p.name),
                ));
            }
            if p.extract_from.is_empty() {
                return Err(ConfigError::new(
                    at("extractFrom"),
                    "no place to read the token from",
                ));
            }
            let name: Arc<str> = Arc::from(p.name.as_str());
            let base = base_validation(&p);
            let store = match &p.keys {
                JwksSource::Local(text) => {
                    let keys = KeySet::parse(text.as_bytes(), &base, p.allow_hmac)
                        .map_err(|reason| ConfigError::new(at("localJWKS"), reason))?;
                    Arc::new(KeyStore::local(keys))
                }
                JwksSource::Remote(remote) => {
                    if remote.cache_duration.is_zero() || remote.timeout.is_zero() {
                        return Err(ConfigError::new(
                            at("remoteJWKS"),
                            "cacheDuration and timeout must be more than zero",
                        ));
                    }
                    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                        ConfigError::new(at("remoteJWKS"), "no tokio runtime to fetch it on")
                    })?;
                    let store = Arc::new(KeyStore::remote(remote.min_refresh_interval));
                    let task = runtime.spawn(jwks::run(
                        name.clone(),
                        store.clone(),
                        remote.clone(),
                        base,
                        p.allow_hmac,
                        events.clone(),
                    ));
                    tasks.push(task.abort_handle());
                    store
                }
            };
            for (header, _) in &p.claim_to_headers {
                if !claim_headers.contains(header) {
                    claim_headers.push(header.clone());
                }
            }
            providers.push(Provider {
                name,
                issuer: p.issuer,
                store,
                claim_to_headers: p.claim_to_headers,
                extract_from: p.extract_from,
                forward: p.forward,
            });
        }
        let by_issuer = providers.len() > 1 && providers.iter().any(|p| p.issuer.is_some());
        Ok(Self {
            shared: Arc::new(Shared {
                providers,
                optional: config.optional,
                claim_headers,
                by_issuer,
                challenge,
                challenge_invalid,
                events,
                tasks,
            }),
        })
    }

    /// Finished remote JWKS fetches so far, updated after each one (the new keys are in
    /// use by then): wait on it to know keys arrived, or that a fetch failed.
    pub fn fetches(&self) -> watch::Receiver<JwksFetches> {
        self.shared.events.subscribe()
    }

    /// The check of [`Jwt`], for another mechanism that accepts a JWT in its place
    /// (OIDC's pass-through of `Authorization: Bearer`).
    pub(crate) fn check<B>(&self, req: &mut http::Request<B>) -> Result<(), gatekit_core::Error> {
        self.shared.check(req)
    }

    /// Verifies one token with the first provider (OIDC's ID tokens).
    pub(crate) fn verify_token(&self, token: &str) -> super::TokenCheck {
        match self.shared.providers.first() {
            Some(p) => p.verify_token(token),
            None => super::TokenCheck::Invalid { refreshing: false },
        }
    }

    #[cfg(test)]
    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// The claim checks of one provider; each key adds the algorithms it allows.
fn base_validation(p: &JwtProvider) -> Validation {
    let mut v = Validation::new(Algorithm::RS256);
    v.algorithms.clear();
    v.leeway = p.clock_skew.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = &p.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if p.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&p.audiences);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

impl<S> Layer<S> for JwtLayer {
    type Service = Jwt<S>;

    fn layer(&self, inner: S) -> Jwt<S> {
        Jwt::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for JwtLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.shared.providers.iter().map(|p| &*p.name).collect();
        f.debug_struct("JwtLayer")
            .field("providers", &names)
            .field("optional", &self.shared.optional)
            .finish_non_exhaustive()
    }
}
