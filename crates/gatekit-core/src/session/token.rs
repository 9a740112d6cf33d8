//! The session token: what it holds and its text form.

use std::net::SocketAddr;

use crate::fnv::{FNV1A_OFFSET, fnv1a};

/// The token format's version digit, its first character.
const VERSION: u8 = b'1';
/// Bytes after the version: key 8, backend 2, issued 4, last seen 4, checksum 4.
const LEN: usize = 22;
/// "No backendRef index" (backend-level sessions).
const NO_BACKEND: u16 = u16::MAX;

/// [`fnv1a`] from the offset basis: fixed, so every replica (and every build) computes
/// the same keys and checksums.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    fnv1a(FNV1A_OFFSET, bytes)
}

/// The key a session token names an endpoint by: a 64-bit hash of its address (IP
/// octets and port), never 0. The same on every replica; the token carries no address.
pub fn endpoint_key(addr: SocketAddr) -> u64 {
    let h = match addr.ip() {
        std::net::IpAddr::V4(ip) => fnv(&ip.octets()),
        std::net::IpAddr::V6(ip) => fnv(&ip.octets()),
    };
    fnv1a(h, &addr.port().to_be_bytes()).max(1)
}

/// A decoded session token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) endpoint: u64,
    pub(crate) backend: Option<usize>,
    /// When the session began, Unix seconds.
    pub(crate) issued: u32,
    /// The last request the token was refreshed for, Unix seconds.
    pub(crate) seen: u32,
}

impl Token {
    /// The token's text, its checksum keyed by `salt` (the session's scope and name).
    pub(crate) fn encode(&self, salt: u64) -> String {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(&self.endpoint.to_be_bytes());
        let backend = self
            .backend
            .and_then(|i| u16::try_from(i).ok())
            .unwrap_or(NO_BACKEND);
        b[8..10].copy_from_slice(&backend.to_be_bytes());
        b[10..14].copy_from_slice(&self.issued.to_be_bytes());
        b[14..18].copy_from_slice(&self.seen.to_be_bytes());
        let sum = fnv1a(salt, &b[..18]) as u32;
        b[18..].copy_from_slice(&sum.to_be_bytes());
        let mut out = String::with_capacity(1 + 2 * LEN);
        out.push(char::from(VERSION));
        for byte in b {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        out
    }

    /// Decodes `text`; `None` when it is not a token of this version with a checksum
    /// keyed by `salt`.
    pub(crate) fn decode(text: &[u8], salt: u64) -> Option<Self> {
        let (&version, hex) = text.split_first()?;
        if version != VERSION || hex.len() != 2 * LEN {
            return None;
        }
        let mut b = [0u8; LEN];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            b[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        let be32 = |r: std::ops::Range<usize>| -> Option<u32> {
            Some(u32::from_be_bytes(b.get(r)?.try_into().ok()?))
        };
        if fnv1a(salt, &b[..18]) as u32 != be32(18..22)? {
            return None;
        }
        let endpoint = u64::from_be_bytes(b[..8].try_into().ok()?);
        let backend = u16::from_be_bytes([b[8], b[9]]);
        Some(Self {
            endpoint,
            backend: (backend != NO_BACKEND).then_some(usize::from(backend)),
            issued: be32(10..14)?,
            seen: be32(14..18)?,
        })
    }
}

/// The checksum key of a session: its scope and its cookie or header name.
pub(crate) fn salt(scope: &str, name: &str) -> u64 {
    fnv1a(fnv1a(fnv(scope.as_bytes()), b"\0"), name.as_bytes())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}
