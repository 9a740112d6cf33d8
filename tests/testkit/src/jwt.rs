//! JWT signing for tests: keys of every algorithm gatekit verifies (RSA from committed
//! PEM fixtures, EC and Ed25519 made per test, HMAC secrets), their JWKs, and tokens
//! signed with them. Shared by gatekit-auth's JWT tests and the end-to-end tests.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use serde_json::{Value, json};

/// A 2048-bit RSA private key (PKCS#8 PEM; `ring` cannot generate RSA keys).
pub const RSA_A: &str = include_str!("../fixtures/jwt-rsa-a.pem");
/// Another 2048-bit RSA private key.
pub const RSA_B: &str = include_str!("../fixtures/jwt-rsa-b.pem");

/// Base64url without padding, as JWTs and JWKs use.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER bytes of a PEM document.
pub fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// A signing key with its JWK: RSA (RS*, PS*), EC (ES256 on P-256, ES384 on P-384),
/// Ed25519 (EdDSA) or an HMAC secret (HS*).
#[derive(Debug)]
pub enum Signer {
    /// An RSA key pair.
    Rsa(sig::RsaKeyPair),
    /// An EC key pair and its curve's JWK name.
    Ec(sig::EcdsaKeyPair, &'static str),
    /// An Ed25519 key pair.
    Ed(sig::Ed25519KeyPair),
    /// An HMAC secret.
    Hmac(Vec<u8>),
}

impl Signer {
    /// An RSA key from a PKCS#8 PEM (such as [`RSA_A`]).
    pub fn rsa(pem: &str) -> Self {
        Self::Rsa(sig::RsaKeyPair::from_pkcs8(&pem_der(pem)).unwrap())
    }

    /// A fresh EC key on `curve` (`P-256` or `P-384`).
    pub fn ec(curve: &'static str) -> Self {
        let rng = SystemRandom::new();
        let alg = match curve {
            "P-256" => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            _ => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        };
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Self::Ec(
            sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap(),
            curve,
        )
    }

    /// A fresh Ed25519 key.
    pub fn ed() -> Self {
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Self::Ed(sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    /// The key's public JWK with `kid` (no `alg`).
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            Self::Rsa(k) => {
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": kid, "n": b64(&c.n), "e": b64(&c.e)})
            }
            Self::Ec(k, curve) => {
                let p = k.public_key().as_ref();
                let half = (p.len() - 1) / 2;
                json!({"kty": "EC", "kid": kid, "crv": curve,
                       "x": b64(&p[1..1 + half]), "y": b64(&p[1 + half..])})
            }
            Self::Ed(k) => {
                json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
            Self::Hmac(secret) => json!({"kty": "oct", "kid": kid, "k": b64(secret)}),
        }
    }

    /// The signature of `msg` with `alg`.
    pub fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Rsa(k) => {
                let enc: &'static dyn sig::RsaEncoding = match alg {
                    "RS256" => &sig::RSA_PKCS1_SHA256,
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    _ => &sig::RSA_PSS_SHA512,
                };
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(enc, &rng, msg, &mut out).unwrap();
                out
            }
            Self::Ec(k, _) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Self::Ed(k) => k.sign(msg).as_ref().to_vec(),
            Self::Hmac(secret) => {
                let alg = match alg {
                    "HS256" => ring::hmac::HMAC_SHA256,
                    "HS384" => ring::hmac::HMAC_SHA384,
                    _ => ring::hmac::HMAC_SHA512,
                };
                ring::hmac::sign(&ring::hmac::Key::new(alg, secret), msg)
                    .as_ref()
                    .to_vec()
            }
        }
    }

    /// A JWT of `claims` signed with `alg`, its header naming `kid`.
    pub fn token(&self, alg: &str, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let msg = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.sign(alg, msg.as_bytes());
        format!("{msg}.{}", b64(&signature))
    }
}
