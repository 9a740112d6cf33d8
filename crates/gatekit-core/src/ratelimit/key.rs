//! A request's rate-limit key: its [`KeyPart`]s hashed one after the other into 64 bits,
//! without allocating.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use http::Request;

use super::KeyPart;
use crate::ConnectionInfo;
use crate::access::Identity;

/// The bucket a request goes to in one [`RateLimiter`](super::RateLimiter), built by
/// [`RateLimiter::key`](super::RateLimiter::key) or
/// [`RateLimiter::key_from_bytes`](super::RateLimiter::key_from_bytes).
///
/// A key is meaningful only to the limiter that built it: each limiter hashes with its
/// own random seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(pub(super) KeyRepr);

impl Key {
    /// Whether this is the shared default bucket of requests that lack a part of the key
    /// ([`Unkeyed::Shared`](super::Unkeyed::Shared)).
    pub fn is_unkeyed(&self) -> bool {
        matches!(self.0, KeyRepr::Unkeyed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum KeyRepr {
    /// A distinct key: the keyed hash of its parts.
    Hashed(u64),
    /// The limiter has no key parts: all its traffic shares one bucket.
    All,
    /// The request lacks a part and the limiter puts such requests in its shared default
    /// bucket ([`Unkeyed::Shared`](super::Unkeyed::Shared)).
    Unkeyed,
}

/// Hashes `req`'s key `parts` with `hasher`. `None` when the request lacks a part: no
/// [`ConnectionInfo`] for [`KeyPart::ClientIp`], no such header for
/// [`KeyPart::Header`], no [`Identity`] for [`KeyPart::Identity`].
///
/// The encoding is prefix-free (a tag per part, each header value length-prefixed, an
/// end mark after a header's values), so distinct part values never hash as one input.
/// IPv4-mapped IPv6 addresses count as their IPv4 address. A header that repeats
/// contributes all its values, in order; an empty value is a value.
pub(super) fn hash_parts<B>(
    parts: &[KeyPart],
    hasher: &RandomState,
    req: &Request<B>,
) -> Option<u64> {
    let mut h = hasher.build_hasher();
    for part in parts {
        match part {
            KeyPart::ClientIp => {
                let info = req.extensions().get::<ConnectionInfo>()?;
                h.write_u8(0);
                info.remote_addr().ip().to_canonical().hash(&mut h);
            }
            KeyPart::Header(name) => {
                let mut values = req.headers().get_all(name).iter().peekable();
                values.peek()?;
                h.write_u8(1);
                for value in values {
                    h.write_u8(2);
                    value.as_bytes().hash(&mut h);
                }
                h.write_u8(3);
            }
            KeyPart::Identity => {
                let id = req.extensions().get::<Identity>()?;
                h.write_u8(5);
                id.method().hash(&mut h);
                id.subject().hash(&mut h);
            }
        }
    }
    Some(h.finish())
}

/// Writes `req`'s key `parts` into `out` with the framing of [`hash_parts`] (tag per
/// part, each header value length-prefixed, an end mark after a header's values), for
/// keys shared between processes. The caller has checked that every part is present.
pub(super) fn encode_parts<B>(parts: &[KeyPart], req: &Request<B>, out: &mut Vec<u8>) {
    for part in parts {
        match part {
            KeyPart::ClientIp => {
                out.push(0);
                if let Some(info) = req.extensions().get::<ConnectionInfo>() {
                    match info.remote_addr().ip().to_canonical() {
                        std::net::IpAddr::V4(ip) => {
                            out.push(4);
                            out.extend_from_slice(&ip.octets());
                        }
                        std::net::IpAddr::V6(ip) => {
                            out.push(6);
                            out.extend_from_slice(&ip.octets());
                        }
                    }
                }
            }
            KeyPart::Header(name) => {
                out.push(1);
                for value in req.headers().get_all(name) {
                    out.push(2);
                    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(value.as_bytes());
                }
                out.push(3);
            }
            KeyPart::Identity => {
                out.push(5);
                if let Some(id) = req.extensions().get::<Identity>() {
                    for s in [id.method(), id.subject()] {
                        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                        out.extend_from_slice(&len.to_be_bytes());
                        out.extend_from_slice(s.as_bytes());
                    }
                }
            }
        }
    }
}

/// Hashes caller-supplied key bytes (not a request's parts) with `hasher`.
pub(super) fn hash_bytes(hasher: &RandomState, bytes: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write_u8(4);
    bytes.hash(&mut h);
    h.finish()
}

/// A [`Hasher`] for keys that are already keyed 64-bit hashes: it passes them through.
/// The maps of a limiter use it, so a request's key is hashed once, with the limiter's
/// random seed (no HashDoS: a client cannot choose which bucket of the table its key
/// lands in).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Maps of `u64` keys only call `write_u64`; fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http::HeaderName;

    use super::*;

    fn req(ip: Option<&str>, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let mut r = b.body(()).unwrap();
        if let Some(ip) = ip {
            let remote: SocketAddr = format!("{ip}:1234").parse().unwrap();
            let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
            r.extensions_mut()
                .insert(ConnectionInfo::new(remote, local, false));
        }
        r
    }

    #[test]
    fn parts_combine_and_missing_parts_give_no_key() {
        let s = RandomState::new();
        let ip = [KeyPart::ClientIp];
        let both = [
            KeyPart::ClientIp,
            KeyPart::Header(HeaderName::from_static("x-key")),
        ];
        let k = |parts: &[KeyPart], r: &Request<()>| hash_parts(parts, &s, r);
        let a = req(Some("10.0.0.1"), &[("x-key", "a")]);
        let b = req(Some("10.0.0.1"), &[("x-key", "b")]);
        let other_ip = req(Some("10.0.0.2"), &[("x-key", "a")]);
        assert_eq!(k(&ip, &a), k(&ip, &b));
        assert_ne!(k(&both, &a), k(&both, &b));
        assert_ne!(k(&both, &a), k(&both, &other_ip));
        assert_eq!(k(&ip, &req(None, &[])), None);
        assert_eq!(k(&both, &req(Some("10.0.0.1"), &[])), None);
        // The port is not part of the client's address key.
        let mut c = req(None, &[("x-key", "a")]);
        c.extensions_mut().insert(ConnectionInfo::new(
            "10.0.0.1:999".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            false,
        ));
        assert_eq!(k(&both, &a), k(&both, &c));
        // An IPv4-mapped IPv6 client is its IPv4 address.
        assert_eq!(k(&ip, &a), k(&ip, &req(Some("[::ffff:10.0.0.1]"), &[])));
    }

    #[test]
    fn identity_parts_key_by_method_and_subject() {
        let s = RandomState::new();
        let id = [KeyPart::Identity];
        let with = |method, subject| {
            let mut r = req(Some("10.0.0.1"), &[]);
            r.extensions_mut().insert(Identity::new(method, subject));
            r
        };
        let k = |r: &Request<()>| hash_parts(&id, &s, r);
        let enc = |r: &Request<()>| {
            let mut out = Vec::new();
            encode_parts(&id, r, &mut out);
            out
        };
        let alice = with("api-key", "alice");
        assert_eq!(k(&alice), k(&with("api-key", "alice")));
        assert_eq!(enc(&alice), enc(&with("api-key", "alice")));
        assert_ne!(k(&alice), k(&with("api-key", "bob")));
        assert_ne!(
            k(&alice),
            k(&with("basic", "alice")),
            "the method is part of it"
        );
        assert_ne!(enc(&alice), enc(&with("basic", "alice")));
        assert_ne!(enc(&with("a", "bc")), enc(&with("ab", "c")), "framed");
        assert_eq!(k(&req(Some("10.0.0.1"), &[])), None, "no identity: no key");
    }

    #[test]
    fn repeated_header_values_are_framed() {
        let s = RandomState::new();
        let h = [KeyPart::Header(HeaderName::from_static("x-key"))];
        let one = req(None, &[("x-key", "ab")]);
        let two = req(None, &[("x-key", "a"), ("x-key", "b")]);
        assert_ne!(hash_parts(&h, &s, &one), hash_parts(&h, &s, &two));
        assert!(hash_parts(&h, &s, &req(None, &[("x-key", "")])).is_some());
        let enc = |r: &Request<()>| {
            let mut out = Vec::new();
            encode_parts(&h, r, &mut out);
            out
        };
        assert_ne!(enc(&one), enc(&two));
        assert_eq!(enc(&one), enc(&req(None, &[("x-key", "ab")])));
    }
}
