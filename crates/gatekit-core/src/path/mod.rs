//! Request path normalisation before routing: one canonical form for every spelling of a
//! path, so a route that matches `/admin` cannot be bypassed with `/./admin`,
//! `/x/../admin` or `/%61dmin`, and the backend receives the same path that was routed.
//!
//! # The algorithm ([`normalize`])
//!
//! Only the path is touched; the query (after the first `?`) is kept byte for byte. A
//! path that does not start with `/` (`*` of `OPTIONS *`) is left alone.
//!
//! 1. **Percent-decoding of unreserved characters** (RFC 3986 §6.2.2.2): `%41` becomes
//!    `A`, `%2e` becomes `.`; every other escape is kept with upper-case hex digits
//!    (§6.2.2.1), so `%2f` and `%2F` are one spelling. A `%` without two hex digits is
//!    refused ([`PathError::InvalidEscape`]). Decoding happens once: `%252e` becomes
//!    `%252E`, never `.`.
//! 2. **Encoded slashes** `%2F` and backslashes `%5C` follow [`EscapedSlashes`]: kept
//!    encoded (default; they are then part of a segment's name, not separators),
//!    refused with 400, or decoded into separators before step 4.
//! 3. **Backslashes** `\` are separators, as Envoy's `normalize_path` (the Chromium URL
//!    canonicaliser) and Windows servers read them: `\` becomes `/`.
//! 4. **Slash merging** (optional, [`PathPolicy::merge_slashes`]): `//` becomes `/`.
//! 5. **Dot-segment removal** (RFC 3986 §5.2.4): `.` segments go, `..` removes the
//!    previous segment and never climbs above the root (`/../../etc` is `/etc`).
//!
//! With [`PathPolicy::normalize`] off, steps 1, 3 and 5 are skipped (step 2 still
//! applies, so `Reject` keeps refusing encoded slashes).
//!
//! # Cost
//!
//! One pass over the path's bytes decides whether anything can change (a `%`, a `\`, a
//! `.` segment, `//` when merging); the common already-normal path returns
//! `Cow::Borrowed` without allocating. Only a path that changes is rebuilt (one `String`).
//!
//! # Comparison
//!
//! Envoy's `normalize_path` + `merge_slashes` + `path_with_escaped_slashes_action`
//! (`KEEP_UNCHANGED` / `REJECT_REQUEST` / `UNESCAPE_AND_FORWARD`) are
//! [`PathPolicy::normalize`], [`PathPolicy::merge_slashes`] and [`EscapedSlashes`];
//! Envoy's redirect variant is not offered. NGINX merges slashes by default
//! (`merge_slashes on`); gatekit does not, because `//` can be meaningful to a backend.

mod error;
mod future;
mod host;
mod layer;
mod service;

use std::borrow::Cow;

pub use self::error::{HostError, PathError};
pub use self::future::ResponseFuture;
pub use self::host::check_host;
pub use self::layer::NormalizePathLayer;
pub use self::service::NormalizePath;

/// Default longest request target (path and query): 8 KiB, NGINX's
/// `large_client_header_buffers` line size. Longer targets get `414 URI Too Long`.
pub const DEFAULT_MAX_TARGET_LEN: usize = 8 * 1024;

/// What to do with `%2F` (encoded `/`) and `%5C` (encoded `\`) in a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EscapedSlashes {
    /// Keep them encoded (hex upper-cased): they are part of a segment, not separators.
    #[default]
    Keep,
    /// Refuse the request (`400 Bad Request`).
    Reject,
    /// Decode them into separators (`/`) before dot-segment removal.
    Decode,
}

/// How request paths are normalised; see the [module docs](self). `Default`: normalise
/// (dot segments, unreserved escapes, backslashes), keep `%2F`/`%5C`, do not merge
/// slashes, targets up to [`DEFAULT_MAX_TARGET_LEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathPolicy {
    normalize: bool,
    merge_slashes: bool,
    escaped_slashes: EscapedSlashes,
    max_target_len: usize,
}

impl Default for PathPolicy {
    fn default() -> Self {
        Self {
            normalize: true,
            merge_slashes: false,
            escaped_slashes: EscapedSlashes::Keep,
            max_target_len: DEFAULT_MAX_TARGET_LEN,
        }
    }
}

impl PathPolicy {
    /// Whether dot segments are removed, unreserved escapes decoded and backslashes made
    /// separators (default `true`).
    #[must_use]
    pub const fn normalize(mut self, enabled: bool) -> Self {
        self.normalize = enabled;
        self
    }

    /// Whether runs of `/` become one (default `false`).
    #[must_use]
    pub const fn merge_slashes(mut self, enabled: bool) -> Self {
        self.merge_slashes = enabled;
        self
    }

    /// What to do with `%2F` and `%5C` (default [`EscapedSlashes::Keep`]).
    #[must_use]
    pub const fn escaped_slashes(mut self, action: EscapedSlashes) -> Self {
        self.escaped_slashes = action;
        self
    }

    /// Longest request target (path and query, as received) accepted by
    /// [`NormalizePath`]; longer ones get `414 URI Too Long`.
    #[must_use]
    pub const fn with_max_target_len(mut self, len: usize) -> Self {
        self.max_target_len = len;
        self
    }

    /// The longest request target accepted.
    pub const fn max_target_len(&self) -> usize {
        self.max_target_len
    }
}

/// The normal form of `path_and_query` under `policy` (see the [module docs](self)):
/// borrowed when already normal.
///
/// # Errors
///
/// [`PathError::InvalidEscape`] for a malformed `%` escape in the path,
/// [`PathError::EscapedSlash`] for `%2F`/`%5C` under [`EscapedSlashes::Reject`].
pub fn normalize<'a>(
    path_and_query: &'a str,
    policy: &PathPolicy,
) -> Result<Cow<'a, str>, PathError> {
    let (path, query) = match path_and_query.find('?') {
        Some(at) => path_and_query.split_at(at),
        None => (path_and_query, ""),
    };
    if !path.starts_with('/') || !needs_work(path.as_bytes(), policy) {
        return Ok(Cow::Borrowed(path_and_query));
    }
    let decoded = decode(path.as_bytes(), policy)?;
    let Some(decoded) = decoded else {
        // Escapes are all valid and kept as they are, nothing else to do.
        return Ok(Cow::Borrowed(path_and_query));
    };
    let mut out = String::with_capacity(decoded.len() + query.len());
    if policy.normalize {
        remove_dot_segments(&decoded, policy.merge_slashes, &mut out);
    } else if policy.merge_slashes {
        merge(&decoded, &mut out);
    } else {
        out.push_str(&decoded);
    }
    out.push_str(query);
    if out == path_and_query {
        return Ok(Cow::Borrowed(path_and_query));
    }
    Ok(Cow::Owned(out))
}

/// Whether `path` might change: it has an escape, a backslash, a dot segment or (when
/// merging) a double slash.
fn needs_work(path: &[u8], policy: &PathPolicy) -> bool {
    let mut prev = 0u8;
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' => return true,
            b'\\' if policy.normalize => return true,
            b'.' if policy.normalize && prev == b'/' => {
                let next = path.get(i + 1).copied();
                let after = path.get(i + 2).copied();
                if matches!(next, None | Some(b'/'))
                    || (next == Some(b'.') && matches!(after, None | Some(b'/')))
                {
                    return true;
                }
            }
            b'/' if policy.merge_slashes && prev == b'/' => return true,
            _ => {}
        }
        prev = b;
    }
    false
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Steps 1–3: escapes and backslashes. `None` when the path has no change to make at
/// this step and normalisation is off (escapes valid, slashes kept or absent).
fn decode(path: &[u8], policy: &PathPolicy) -> Result<Option<String>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                path.get(i + 1).copied().and_then(hex),
                path.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::InvalidEscape);
            };
            let byte = hi << 4 | lo;
            if byte == b'/' || byte == b'\\' {
                match policy.escaped_slashes {
                    EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                    EscapedSlashes::Decode => out.push(b'/'),
                    EscapedSlashes::Keep => {
                        out.extend_from_slice(&[
                            b'%',
                            HEX_UPPER[usize::from(hi)],
                            HEX_UPPER[usize::from(lo)],
                        ]);
                    }
                }
            } else if policy.normalize && is_unreserved(byte) {
                out.push(byte);
            } else if policy.normalize {
                out.extend_from_slice(&[
                    b'%',
                    HEX_UPPER[usize::from(hi)],
                    HEX_UPPER[usize::from(lo)],
                ]);
            } else {
                out.extend_from_slice(&path[i..i + 3]);
            }
            i += 3;
        } else if b == b'\\' && policy.normalize {
            out.push(b'/');
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if !policy.normalize && !policy.merge_slashes && out == path {
        return Ok(None);
    }
    // Only ASCII bytes were replaced by ASCII bytes and escapes decode to ASCII
    // (unreserved or `/`), so valid UTF-8 in stays valid UTF-8 out; a request path is
    // ASCII anyway (hyper and `http` refuse other bytes).
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| PathError::InvalidEscape)
}

/// Step 4 alone: runs of `/` become one.
fn merge(path: &str, out: &mut String) {
    let mut prev_slash = false;
    for c in path.chars() {
        if c == '/' && prev_slash {
            continue;
        }
        prev_slash = c == '/';
        out.push(c);
    }
}

/// Steps 4 and 5 for an absolute path (starts with `/`): RFC 3986 §5.2.4 on segments.
fn remove_dot_segments(path: &str, merge_slashes: bool, out: &mut String) {
    // Segments after the leading `/`; `trailing` records whether the result ends with
    // `/` (a final `.` or `..` segment, or a final empty segment).
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for segment in path[1..].split('/') {
        trailing = false;
        match segment {
            "." => trailing = true,
            ".." => {
                segments.pop();
                trailing = true;
            }
            "" if merge_slashes => trailing = true,
            _ => segments.push(segment),
        }
    }
    out.push('/');
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment);
    }
    if trailing && !segments.is_empty() && !out.ends_with('/') {
        out.push('/');
    }
}

/// Fuzzing entry point for path normalisation (for the `fuzz/` targets): runs
/// [`normalize`] on `data` (as UTF-8, lossily) under every policy and checks its
/// invariants — the result starts with `/` when the input did, contains no `.`/`..`
/// segment when normalising, is a fixed point (normalising it again changes nothing)
/// and is a valid `http` path. Panics when an invariant breaks.
pub fn path_normalize(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    for escaped in [
        EscapedSlashes::Keep,
        EscapedSlashes::Reject,
        EscapedSlashes::Decode,
    ] {
        for merge_slashes in [false, true] {
            for normal in [true, false] {
                let policy = PathPolicy::default()
                    .normalize(normal)
                    .merge_slashes(merge_slashes)
                    .escaped_slashes(escaped);
                let Ok(out) = normalize(&input, &policy) else {
                    continue;
                };
                if input.starts_with('/') {
                    assert!(out.starts_with('/'), "{input:?} -> {out:?}");
                }
                if normal && input.starts_with('/') {
                    let path = out.split('?').next().unwrap_or_default();
                    assert!(
                        !path.split('/').any(|s| s == "." || s == ".."),
                        "{input:?} -> {out:?} keeps a dot segment"
                    );
                    let again = normalize(&out, &policy);
                    assert_eq!(again.as_deref(), Ok(&*out), "{input:?}: not a fixed point");
                }
                if http::uri::PathAndQuery::try_from(&*input).is_ok() {
                    assert!(
                        http::uri::PathAndQuery::try_from(&*out).is_ok(),
                        "{input:?} -> {out:?} is not a valid path"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
