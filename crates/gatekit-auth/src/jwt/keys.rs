//! A JWKS parsed into verification keys, once per fetch (never per request).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::crypto::ec_algorithm;

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const HMAC_ALGORITHMS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// One verification key with the algorithms it may verify and the checks that go
/// with it (the provider's issuer, audiences, clock skew).
pub(super) struct Key {
    pub(super) kid: Option<String>,
    pub(super) decoding: DecodingKey,
    /// The algorithms this key verifies: from the JWK's `alg`, else from its key type.
    /// A token's header `alg` must be one of them (never trusted on its own).
    pub(super) validation: Validation,
}

impl Key {
    pub(super) fn accepts(&self, alg: Algorithm) -> bool {
        self.validation.algorithms.contains(&alg)
    }
}

/// The keys of one provider.
#[derive(Default)]
pub(super) struct KeySet {
    pub(super) keys: Vec<Key>,
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot verify signatures here (encryption
    /// keys, unknown types or curves, HMAC keys when `allow_hmac` is off, malformed
    /// ones) are skipped; a document that is not a JWKS, or leaves no key, is an error.
    pub(super) fn parse(json: &[u8], base: &Validation, allow_hmac: bool) -> Result<Self, String> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let total = set.keys.len();
        let mut keys = Vec::with_capacity(total);
        for jwk in &set.keys {
            if matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            ) {
                continue;
            }
            let by_type: Vec<Algorithm> = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
                AlgorithmParameters::EllipticCurve(p) => {
                    ec_algorithm(&p.curve).into_iter().collect()
                }
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    vec![Algorithm::EdDSA]
                }
                AlgorithmParameters::OctetKey(_) if allow_hmac => HMAC_ALGORITHMS.to_vec(),
                _ => Vec::new(),
            };
            let algorithms = match jwk.common.key_algorithm {
                Some(declared) => match Algorithm::try_from(declared) {
                    // The JWK's `alg` narrows what its key type allows; it never widens it.
                    Ok(alg) if by_type.contains(&alg) => vec![alg],
                    _ => Vec::new(),
                },
                None => by_type,
            };
            if algorithms.is_empty() {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                tracing::debug!(kid = ?jwk.common.key_id, "JWKS key skipped: malformed");
                continue;
            };
            let mut validation = base.clone();
            validation.algorithms = algorithms;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                decoding,
                validation,
            });
        }
        if keys.is_empty() {
            return Err(format!(
                "no usable signature verification key among {total} keys"
            ));
        }
        Ok(Self { keys })
    }

    /// The keys that may verify a token with header `kid` and `alg`: the keys with that
    /// `kid` when the token names one, else every key that accepts `alg`.
    pub(super) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            k.accepts(alg)
                && match kid {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }

    /// Whether some key carries `kid`.
    pub(super) fn knows(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}
