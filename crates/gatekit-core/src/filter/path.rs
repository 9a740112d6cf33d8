//! Path modifiers shared by `RequestRedirect` and `URLRewrite` (Gateway API
//! `HTTPPathModifier`).
//!
//! - `ReplaceFullPath` replaces the whole path; the query string is kept.
//! - `ReplacePrefixMatch` replaces the part of the path the rule's `PathPrefix` match
//!   matched. The spec's table is implemented by one rule: with the matched prefix and
//!   the replacement both stripped of a trailing `/`, the result is
//!   `replacement + (path after the prefix)`, or `/` when that is empty. The matcher only
//!   matches on whole segments, so the rest of the path is empty or starts with `/`, and
//!   a trailing `/` in the request survives (`/foo/` with `/foo` → `/xyz` gives `/xyz/`).
//!
//! Both are validated when the chain is compiled (they must start with `/`, or be empty
//! for `ReplacePrefixMatch`, and contain no `?` or `#`); per request the new path is
//! written into a caller-supplied buffer, with no parsing.

use crate::error::ConfigError;
use crate::route::PathModifier;

/// A compiled path modifier.
#[derive(Clone, Debug)]
pub(super) enum PathOp {
    /// The whole new path.
    Full(Box<str>),
    /// The prefix replacement, stripped of its trailing `/` (`/` becomes empty).
    Prefix(Box<str>),
}

impl PathOp {
    /// Validates and compiles a path modifier. Errors name `path.replaceFullPath` or
    /// `path.replacePrefixMatch`.
    pub(super) fn compile(modifier: &PathModifier) -> Result<Self, ConfigError> {
        match modifier {
            PathModifier::ReplaceFullPath(p) => {
                check_path(p, false)
                    .map_err(|reason| ConfigError::new("path.replaceFullPath", reason))?;
                Ok(Self::Full(p.as_str().into()))
            }
            PathModifier::ReplacePrefixMatch(p) => {
                check_path(p, true)
                    .map_err(|reason| ConfigError::new("path.replacePrefixMatch", reason))?;
                Ok(Self::Prefix(p.trim_end_matches('/').into()))
            }
        }
    }

    /// An upper bound of the new path's length, for sizing buffers.
    pub(super) fn len_hint(&self, path: &str) -> usize {
        match self {
            Self::Full(p) => p.len(),
            Self::Prefix(r) => r.len() + path.len() + 1,
        }
    }

    /// Writes the new path for a request whose path is `path` into `out`.
    ///
    /// `matched_prefix` is the rule's prefix match; for `ReplacePrefixMatch` without one
    /// (the route table only allows `ReplacePrefixMatch` with a prefix match) or a path
    /// that does not start with it on a segment boundary, the path is left unchanged.
    pub(super) fn push(&self, out: &mut String, path: &str, matched_prefix: Option<&str>) {
        match self {
            Self::Full(p) => out.push_str(p),
            Self::Prefix(replacement) => match matched_prefix {
                Some(prefix) => push_replaced_prefix(out, path, prefix, replacement),
                None => out.push_str(path),
            },
        }
    }
}

/// Writes `path` with its leading `prefix` (a whole-segment prefix, trailing `/`
/// ignored) replaced by `replacement` (already stripped of its trailing `/`).
pub(super) fn push_replaced_prefix(out: &mut String, path: &str, prefix: &str, replacement: &str) {
    let prefix = prefix.trim_end_matches('/');
    let on_boundary =
        path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'));
    if !on_boundary {
        out.push_str(path);
        return;
    }
    let rest = &path[prefix.len()..];
    out.push_str(replacement);
    out.push_str(rest);
    if replacement.is_empty() && rest.is_empty() {
        out.push('/');
    }
}

fn check_path(p: &str, may_be_empty: bool) -> Result<(), &'static str> {
    if p.is_empty() && may_be_empty {
        return Ok(());
    }
    if !p.starts_with('/') {
        return Err("must start with '/'");
    }
    if p.contains(['?', '#']) {
        return Err("must not contain '?' or '#'");
    }
    if http::uri::PathAndQuery::try_from(p).is_err() {
        return Err("is not a valid URI path");
    }
    Ok(())
}
