//! Request keys for the hash algorithms, and the hash function (FNV-1a with a final
//! avalanche), computed without allocating.

use std::net::{IpAddr, SocketAddr};

use gatekit_core::ConnectionInfo;
use gatekit_core::cookie::request_cookies;
use http::Request;

use crate::HashKey;

pub use gatekit_core::fnv::{FNV1A_OFFSET, fnv1a};

/// FNV-1a over `bytes` from `seed`, finished with murmur3's 64-bit mixer so that nearby
/// inputs spread over the whole range.
#[inline]
pub(crate) fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    mix(fnv1a(FNV1A_OFFSET ^ seed, bytes))
}

/// murmur3's fmix64.
#[inline]
pub(crate) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(0, &v4.octets()),
        IpAddr::V6(v6) => hash_bytes(0, &v6.octets()),
    }
}

/// The hash of an endpoint address, with `seed` to derive independent hashes.
pub(crate) fn hash_addr(seed: u64, addr: SocketAddr) -> u64 {
    let mut buf = [0u8; 18];
    let len = match addr.ip() {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            buf[..16].copy_from_slice(&v6.octets());
            16
        }
    };
    buf[len..len + 2].copy_from_slice(&addr.port().to_be_bytes());
    hash_bytes(seed, &buf[..len + 2])
}

/// The request's key hash, or `None` when the request does not carry the key.
pub(crate) fn request_hash<B>(key: &HashKey, req: &Request<B>) -> Option<u64> {
    match key {
        HashKey::SourceIp => req
            .extensions()
            .get::<ConnectionInfo>()
            .map(|c| hash_ip(c.remote_addr().ip())),
        HashKey::Header(name) => req.headers().get(name).map(|v| hash_bytes(0, v.as_bytes())),
        HashKey::Cookie(name) => request_cookies(req.headers())
            .find(|(k, _)| *k == &**name)
            .map(|(_, v)| hash_bytes(0, v.as_bytes())),
        HashKey::Query(name) => req
            .uri()
            .query()?
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| *k == &**name)
            .map(|(_, v)| hash_bytes(0, v.as_bytes())),
    }
}

/// A fraction in [0, 1) derived from a key hash, independent of the table position;
/// slow start admits a key to a ramping endpoint when it is below the ramp factor, so
/// the set of admitted keys only grows as the factor does.
#[inline]
pub(crate) fn key_fraction(hash: u64) -> f64 {
    (mix(hash ^ 0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;
    use std::sync::Arc;

    fn req(uri: &str) -> http::request::Builder {
        Request::get(uri)
    }

    #[test]
    fn keys_come_from_where_configured() {
        let conn = ConnectionInfo::new(
            "10.0.0.7:5555".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            false,
        );
        let mut r = req("/p?a=1&user=bob&z")
            .header("x-user", "bob")
            .header("cookie", "theme=dark; sid=bob")
            .body(())
            .unwrap();
        r.extensions_mut().insert(conn);
        let bob = hash_bytes(0, b"bob");
        assert_eq!(
            request_hash(&HashKey::Header(HeaderName::from_static("x-user")), &r),
            Some(bob)
        );
        assert_eq!(
            request_hash(&HashKey::Cookie(Arc::from("sid")), &r),
            Some(bob)
        );
        assert_eq!(
            request_hash(&HashKey::Query(Arc::from("user")), &r),
            Some(bob)
        );
        assert_eq!(request_hash(&HashKey::Query(Arc::from("nope")), &r), None);
        assert_eq!(request_hash(&HashKey::Cookie(Arc::from("nope")), &r), None);
        // Same IP, another port: same key.
        let other = ConnectionInfo::new(
            "10.0.0.7:6666".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            false,
        );
        let mut r2 = req("/").body(()).unwrap();
        r2.extensions_mut().insert(other);
        assert_eq!(
            request_hash(&HashKey::SourceIp, &r),
            request_hash(&HashKey::SourceIp, &r2)
        );
        assert_eq!(
            request_hash(&HashKey::SourceIp, &req("/").body(()).unwrap()),
            None
        );
    }
}
