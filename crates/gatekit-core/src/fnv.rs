//! FNV-1a, 64 bits: the workspace's one hand-written byte hash.
//!
//! The balancers' request keys, session tokens' endpoint keys and checksums, and the
//! fleet's configuration hashes use it. The result depends only on the bytes (the same
//! on every build, version, platform and replica), so it may be compared across
//! processes; it is not a defence against chosen inputs.

/// The FNV-1a 64-bit offset basis: the state a new [`fnv1a`] hash starts from.
pub const FNV1A_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into `state` (start from [`FNV1A_OFFSET`]; chain calls to hash several
/// parts).
#[inline]
pub fn fnv1a(mut state: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        state ^= u64::from(*b);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    state
}
