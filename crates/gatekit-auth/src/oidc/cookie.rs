//! Encrypted cookies: AES-256-GCM with a key derived by HKDF-SHA256 from the client
//! secret and the cookie's name, so every replica given the same secret reads what
//! another wrote, and a value moved to another cookie name does not open.
//!
//! A value is `base64url(nonce ‖ ciphertext ‖ tag)` with a fresh random 96-bit nonce
//! per value; the cookie's name is the associated data. Values longer than
//! [`CHUNK`] bytes are split over `name`, `name-1`, ...: the first holds
//! `c<count>.<part>`, which no unsplit value (base64url has no `.`) looks like.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// The longest cookie value written in one piece (browsers keep at least 4096 bytes
/// per cookie, name and attributes included).
pub(super) const CHUNK: usize = 3800;

/// The most chunks one value may take (browsers keep at least 50 cookies per domain).
pub(super) const MAX_CHUNKS: usize = 12;

const SALT: &[u8] = b"gatekit-oidc-cookie-v1";

/// The sealing key of one cookie name (or family of names).
pub(super) struct CookieKey {
    key: LessSafeKey,
}

impl CookieKey {
    /// The key for cookies `name` derived from `secret`.
    pub(super) fn derive(secret: &[u8], name: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        let info = [name.as_bytes()];
        // `expand` fails only for an output longer than 255 hash lengths; 32 bytes
        // never are.
        let key = match prk.expand(&info, &AES_256_GCM) {
            Ok(okm) => UnboundKey::from(okm),
            Err(_) => unreachable!("HKDF-SHA256 expands to 32 bytes"),
        };
        Self {
            key: LessSafeKey::new(key),
        }
    }

    /// `plain` sealed for cookie `name`, as a cookie value. `None` only if the system
    /// random source fails.
    pub(super) fn seal(&self, rng: &SystemRandom, name: &str, plain: &[u8]) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).ok()?;
        let mut buf = Vec::with_capacity(NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
        buf.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut body,
            )
            .ok()?;
        buf.extend_from_slice(&body);
        Some(URL_SAFE_NO_PAD.encode(buf))
    }

    /// The plaintext of cookie value `value` of cookie `name`; `None` when it is not
    /// one of ours (bad encoding, another key or name, tampered).
    pub(super) fn open(&self, name: &str, value: &str) -> Option<Vec<u8>> {
        let mut raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&raw[..NONCE_LEN]).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut raw[NONCE_LEN..])
            .ok()?;
        Some(plain.to_vec())
    }
}

/// The first value of cookie `name` in a request.
pub(super) fn find<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    gatekit_core::cookie::request_cookies(headers)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Reassembles a value written by [`split`] from a request's cookies.
pub(super) fn join(headers: &HeaderMap, name: &str) -> Option<String> {
    let first = find(headers, name)?;
    let Some(rest) = first.strip_prefix('c') else {
        return Some(first.to_owned());
    };
    let Some((count, part)) = rest.split_once('.') else {
        return Some(first.to_owned());
    };
    let count: usize = count.parse().ok()?;
    if !(2..=MAX_CHUNKS).contains(&count) {
        return None;
    }
    let mut out = String::with_capacity(count * CHUNK);
    out.push_str(part);
    for i in 1..count {
        out.push_str(find(headers, &chunk_name(name, i))?);
    }
    Some(out)
}

/// `value` as `(name, value)` cookies; `None` when it needs more than [`MAX_CHUNKS`].
pub(super) fn split(name: &str, value: &str) -> Option<Vec<(String, String)>> {
    if value.len() <= CHUNK {
        return Some(vec![(name.to_owned(), value.to_owned())]);
    }
    // base64url is ASCII: any byte offset is a char boundary.
    let parts: Vec<&str> = value
        .as_bytes()
        .chunks(CHUNK)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    if parts.len() > MAX_CHUNKS {
        return None;
    }
    Some(
        parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    (name.to_owned(), format!("c{}.{part}", parts.len()))
                } else {
                    (chunk_name(name, i), (*part).to_owned())
                }
            })
            .collect(),
    )
}

/// The name of chunk `i` (from 1) of cookie `name`.
pub(super) fn chunk_name(name: &str, i: usize) -> String {
    format!("{name}-{i}")
}

/// The chunk indexes (from 1) of cookie `name` a request carries.
pub(super) fn chunks_present(headers: &HeaderMap, name: &str) -> Vec<usize> {
    let prefix = format!("{name}-");
    let mut found: Vec<usize> = gatekit_core::cookie::request_cookies(headers)
        .filter_map(|(k, _)| k.strip_prefix(prefix.as_str())?.parse().ok())
        .filter(|i| *i >= 1)
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// Attributes every cookie of a login shares.
#[derive(Clone, Debug)]
pub(super) struct Attributes {
    pub(super) secure: bool,
    pub(super) domain: Option<String>,
}

/// A `Set-Cookie` value: `name=value` for `max_age` seconds (0 deletes it).
pub(super) fn set_cookie(
    attrs: &Attributes,
    same_site: &str,
    name: &str,
    value: &str,
    max_age: u64,
) -> Option<HeaderValue> {
    let mut s =
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}");
    if attrs.secure {
        s.push_str("; Secure");
    }
    if let Some(domain) = &attrs.domain {
        s.push_str("; Domain=");
        s.push_str(domain);
    }
    let mut v = HeaderValue::try_from(s).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Whether `name` can be a cookie name (an RFC 6265 token).
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Random bytes as base64url (state, nonce, PKCE verifier: 32 bytes each).
pub(super) fn random_token(rng: &SystemRandom) -> Option<String> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether two strings are equal, in time independent of where they differ (their
/// SHA-256 digests are compared, every byte, without an early exit).
pub(super) fn ct_eq(a: &str, b: &str) -> bool {
    crate::header::digest_of(a.as_bytes()).ct_eq(&crate::header::digest_of(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_name() {
        let rng = SystemRandom::new();
        let k = CookieKey::derive(b"secret", "s");
        let v = k.seal(&rng, "s", b"hello").unwrap();
        assert_eq!(k.open("s", &v).unwrap(), b"hello");
        assert!(k.open("t", &v).is_none(), "another name");
        assert!(
            CookieKey::derive(b"other", "s").open("s", &v).is_none(),
            "another secret"
        );
        let mut bad = v.into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(k.open("s", std::str::from_utf8(&bad).unwrap()).is_none());
        assert!(k.open("s", "").is_none());
        assert!(k.open("s", "!!").is_none());
    }

    #[test]
    fn long_values_split_and_join() {
        let value: String = "a".repeat(CHUNK * 2 + 10);
        let parts = split("n", &value).unwrap();
        assert_eq!(parts.len(), 3);
        let cookie = parts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, cookie.parse().unwrap());
        assert_eq!(join(&h, "n").unwrap(), value);
        assert_eq!(chunks_present(&h, "n"), [1, 2]);
        assert!(split("n", &"a".repeat(CHUNK * (MAX_CHUNKS + 1))).is_none());
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, "n=c3.aaa; n-1=b".parse().unwrap());
        assert_eq!(join(&h, "n"), None, "a missing chunk");
    }
}
