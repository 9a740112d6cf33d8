//! [`KeyDigest`]: the form in which API keys are held and looked up.

use std::fmt;

use ring::digest;

/// The SHA-256 digest of a secret key (an API key, a credential header value).
///
/// API keys are turned into digests as soon as they are read (from a Kubernetes
/// Secret by the translation, from a user's code by `gatekit-auth`'s `ApiKeyConfig`)
/// and looked up by digest: a request's key is hashed once and found in a map, so no
/// key is compared byte by byte and none needs to stay in memory. A digest is not the
/// key, but a short key can be found again from its digest by trying candidates, so
/// `Debug` shows neither.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of `key`.
    pub fn of(key: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, key);
        let mut out = [0; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// A digest computed elsewhere (a SHA-256 of the key, stored instead of the key).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest's 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `other` is the same digest, compared in time independent of where
    /// they differ (every byte, no early exit), for secrets compared one to one.
    pub fn ct_eq(&self, other: &Self) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(diff) == 0
    }

    /// Whether this is the digest of the empty key (never a valid key).
    pub fn is_empty_key(&self) -> bool {
        *self == Self::of(b"")
    }
}

/// Redacted: the digest is never shown.
impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::KeyDigest;

    #[test]
    fn is_sha256_and_never_shown() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let abc = KeyDigest::of(b"abc");
        assert_eq!(abc.as_bytes()[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(abc.as_bytes()[28..], [0xf2, 0x00, 0x15, 0xad]);
        assert_eq!(KeyDigest::from_bytes(*abc.as_bytes()), abc);
        assert_ne!(KeyDigest::of(b"abd"), abc);
        assert_eq!(format!("{abc:?}"), "KeyDigest(..)");
        assert!(KeyDigest::of(b"").is_empty_key());
        assert!(!abc.is_empty_key());
        assert!(abc.ct_eq(&KeyDigest::of(b"abc")));
        assert!(!abc.ct_eq(&KeyDigest::of(b"abd")));
    }
}
