//! Signature checks on `ring` for `jsonwebtoken`: a verify-only
//! [`CryptoProvider`](jsonwebtoken::crypto::CryptoProvider).
//!
//! jsonwebtoken 12 ships providers on aws-lc-rs or on the RustCrypto crates; gatekit
//! already carries `ring` (rustls' provider), so this one keeps a single crypto stack in
//! the build. It is installed as jsonwebtoken's process default when the first
//! [`JwtLayer`](super::JwtLayer) is built, unless the application installed another
//! provider first (then that one verifies, which is equally correct).
//!
//! Signing is not offered: the gateway only verifies.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as sig;

/// The provider: verifiers for every algorithm jsonwebtoken knows, no signers.
pub(super) static RING: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::UnsupportedAlgorithm.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::UnsupportedAlgorithm.into()),
        ec_pub_components_from_private_key: |_, _| Err(ErrorKind::UnsupportedAlgorithm.into()),
        ed_pub_components_from_private_key: |_, _| Err(ErrorKind::UnsupportedAlgorithm.into()),
        compute_digest: digest,
    },
};

/// Installs [`RING`] as jsonwebtoken's process default, once; a provider installed
/// before (by the application) stays.
pub(super) fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _already_installed = RING.install_default();
    });
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(ring::digest::digest(alg, data).as_ref().to_vec())
}

/// A verifier for `alg` with `key`; refuses a key of another family (an RSA public key
/// handed to an HMAC algorithm is the classic algorithm-confusion attack).
fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if alg.family() != key.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let check = match alg {
        Algorithm::HS256 => Check::Hmac(ring::hmac::HMAC_SHA256),
        Algorithm::HS384 => Check::Hmac(ring::hmac::HMAC_SHA384),
        Algorithm::HS512 => Check::Hmac(ring::hmac::HMAC_SHA512),
        Algorithm::RS256 => Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Check::Rsa(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Check::Rsa(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Check::Rsa(&sig::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Check::Raw(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Check::Raw(&sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Check::Raw(&sig::ED25519),
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(Box::new(RingVerifier {
        alg: *alg,
        check,
        key: key.clone(),
    }))
}

enum Check {
    Hmac(ring::hmac::Algorithm),
    Rsa(&'static sig::RsaParameters),
    Raw(&'static dyn sig::VerificationAlgorithm),
}

struct RingVerifier {
    alg: Algorithm,
    check: Check,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let ok = match (&self.check, self.key.kind()) {
            (Check::Hmac(alg), DecodingKeyKind::SecretOrDer(secret)) => {
                // Constant-time comparison inside ring.
                ring::hmac::verify(&ring::hmac::Key::new(*alg, secret), msg, signature).is_ok()
            }
            (Check::Rsa(params), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                sig::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, signature)
                    .is_ok()
            }
            (Check::Rsa(params), DecodingKeyKind::SecretOrDer(der)) => {
                sig::UnparsedPublicKey::new(*params, der)
                    .verify(msg, signature)
                    .is_ok()
            }
            (Check::Raw(alg), DecodingKeyKind::SecretOrDer(point)) => {
                sig::UnparsedPublicKey::new(*alg, point)
                    .verify(msg, signature)
                    .is_ok()
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// The curve's name check for EC keys: `ES256` needs P-256, `ES384` needs P-384.
pub(super) fn ec_algorithm(curve: &EllipticCurve) -> Option<Algorithm> {
    match curve {
        EllipticCurve::P256 => Some(Algorithm::ES256),
        EllipticCurve::P384 => Some(Algorithm::ES384),
        _ => None,
    }
}
