//! The check itself: find the token, pick the providers, verify, decorate the request.

use std::borrow::Cow;
use std::sync::Arc;

use gatekit_core::{Error, ErrorKind};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::claims;
use super::jwks::{JwksFetches, KeyStore};
use crate::VerifiedClaims;
use crate::credential::CredentialSource;

/// A provider as the request path sees it.
pub(super) struct Provider {
    pub(super) name: Arc<str>,
    pub(super) issuer: Option<String>,
    pub(super) store: Arc<KeyStore>,
    pub(super) claim_to_headers: Vec<(HeaderName, String)>,
    pub(super) extract_from: Vec<CredentialSource>,
    pub(super) forward: bool,
}

/// Everything a layer's services share.
pub(super) struct Shared {
    pub(super) providers: Vec<Provider>,
    pub(super) optional: bool,
    /// Every claim header of every provider: removed from each request first.
    pub(super) claim_headers: Vec<HeaderName>,
    /// Whether to read the token's `iss` to choose among providers.
    pub(super) by_issuer: bool,
    pub(super) challenge: HeaderValue,
    pub(super) challenge_invalid: HeaderValue,
    pub(super) events: Arc<watch::Sender<JwksFetches>>,
    pub(super) tasks: Vec<AbortHandle>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the providers made of a request.
enum Outcome {
    Verified {
        provider: usize,
        source: usize,
        claims: Map<String, Value>,
    },
    Missing,
    Invalid,
    /// No provider verified the token and one that might have has no keys yet.
    Unavailable,
}

/// What one provider made of one token.
pub(crate) enum TokenCheck {
    /// Verified: the token's payload.
    Valid(Map<String, Value>),
    /// Refused; `refreshing` when the token named an unknown `kid` and an early JWKS
    /// fetch was asked for (a retry after it may succeed).
    Invalid { refreshing: bool },
    /// The provider has no keys yet (a remote JWKS never fetched).
    Unavailable,
}

impl Provider {
    /// Verifies `token` with this provider's keys and claim checks.
    pub(super) fn verify_token(&self, token: &str) -> TokenCheck {
        let keys = self.store.keys();
        let Some(keys) = keys.as_ref() else {
            return TokenCheck::Unavailable;
        };
        // The header's `alg` only selects among the algorithms a key allows; `none`
        // and unknown algorithms fail to parse here.
        let Ok(head) = jsonwebtoken::decode_header(token.as_bytes()) else {
            return TokenCheck::Invalid { refreshing: false };
        };
        let kid = head.kid.as_deref();
        for key in keys.candidates(kid, head.alg) {
            match jsonwebtoken::decode::<Map<String, Value>>(
                token.as_bytes(),
                &key.decoding,
                &key.validation,
            ) {
                Ok(data) => return TokenCheck::Valid(data.claims),
                Err(e) => {
                    tracing::debug!(provider = %self.name, reason = ?e.kind(), "JWT refused");
                }
            }
        }
        let refreshing = match kid {
            Some(kid) if !keys.knows(kid) => self.store.request_refresh(),
            _ => false,
        };
        TokenCheck::Invalid { refreshing }
    }
}

/// Only the `iss` of an unverified payload, to route the token to its provider.
#[derive(serde::Deserialize)]
struct IssuerOnly {
    #[serde(default)]
    iss: Option<String>,
}

impl Shared {
    /// Checks a request; on success adds claim headers, [`VerifiedClaims`] and the
    /// [`Identity`](gatekit_core::access::Identity), and removes the token when the provider does not forward it.
    pub(super) fn check<B>(&self, req: &mut Request<B>) -> Result<(), Error> {
        for name in &self.claim_headers {
            req.headers_mut().remove(name);
        }
        let outcome = self.verify(req.uri(), req.headers());
        let (provider, source, claims) = match outcome {
            Outcome::Verified {
                provider,
                source,
                claims,
            } => (provider, source, claims),
            Outcome::Missing if self.optional => return Ok(()),
            Outcome::Missing => {
                return Err(Error::new(ErrorKind::Unauthenticated)
                    .with_header(header::WWW_AUTHENTICATE, self.challenge.clone()));
            }
            Outcome::Invalid => {
                return Err(Error::new(ErrorKind::Unauthenticated)
                    .with_header(header::WWW_AUTHENTICATE, self.challenge_invalid.clone()));
            }
            Outcome::Unavailable => return Err(Error::new(ErrorKind::AuthUnavailable)),
        };
        let p = &self.providers[provider];
        for (name, path) in &p.claim_to_headers {
            let value = claims::claim(&claims, path)
                .and_then(claims::header_text)
                .and_then(|text| HeaderValue::try_from(text).ok());
            if let Some(value) = value {
                req.headers_mut().append(name.clone(), value);
            }
        }
        if !p.forward {
            let mut uri = req.uri().clone();
            p.extract_from[source].strip(&mut uri, req.headers_mut());
            *req.uri_mut() = uri;
        }
        VerifiedClaims::establish(req, "jwt", p.name.clone(), claims);
        Ok(())
    }

    fn verify(&self, uri: &Uri, headers: &HeaderMap) -> Outcome {
        let mut saw_token = false;
        let mut unavailable = false;
        // The last token's `iss`, so that providers reading the same place peek once.
        let mut peeked: Option<(Cow<'_, str>, Option<String>)> = None;
        for (i, p) in self.providers.iter().enumerate() {
            let Some((source, token)) = p
                .extract_from
                .iter()
                .enumerate()
                .find_map(|(s, src)| src.find(uri, headers).map(|t| (s, t)))
            else {
                continue;
            };
            saw_token = true;
            if self.by_issuer {
                let same = peeked.as_ref().is_some_and(|(t, _)| *t == token);
                if !same {
                    let iss = jsonwebtoken::dangerous::insecure_decode_claims::<IssuerOnly>(
                        token.as_bytes(),
                    )
                    .ok()
                    .and_then(|c| c.iss);
                    peeked = Some((token.clone(), iss));
                }
                let token_iss = peeked.as_ref().and_then(|(_, iss)| iss.as_deref());
                if p.issuer.is_some() && p.issuer.as_deref() != token_iss {
                    continue;
                }
            }
            match p.verify_token(&token) {
                TokenCheck::Valid(claims) => {
                    return Outcome::Verified {
                        provider: i,
                        source,
                        claims,
                    };
                }
                TokenCheck::Unavailable => unavailable = true,
                TokenCheck::Invalid { .. } => {}
            }
        }
        if unavailable {
            Outcome::Unavailable
        } else if saw_token {
            Outcome::Invalid
        } else {
            Outcome::Missing
        }
    }
}
