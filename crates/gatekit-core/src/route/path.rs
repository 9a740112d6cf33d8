//! Path conditions: validation, anchored regexes, and the whole-segment prefix walk.
//!
//! Paths are matched as received (`Uri::path`, no query, no normalization). A `PathPrefix`
//! value is stored without its trailing `/` (`/foo/` and `/foo` are the same prefix, of
//! length 4; `/` becomes the empty prefix, which matches every path), and a prefix `p`
//! matches a path `P` when `P == p` or `P` starts with `p` followed by `/`.
//!
//! The prefixes that can match `P` are therefore `P` itself, every `P[..i]` where `P[i]` is
//! `/`, and the empty prefix. [`prefix_candidates`] yields exactly those, longest first, so
//! the table finds the longest matching prefix with one hash lookup per path segment.

use std::sync::Arc;

use regex::Regex;

use super::model::PathMatch;
use crate::error::ConfigError;

/// A validated path condition.
#[derive(Clone, Debug)]
pub(crate) enum PathCond {
    /// The whole path equals this (shared with the bucket's path index, its key).
    Exact(Arc<str>),
    /// Whole-segment prefix, stored without trailing `/` (shared as `Exact`).
    Prefix(Arc<str>),
    /// The whole path matches (anchored).
    /// Boxed: rare, and inline it would double the size of every path condition.
    Regex(Box<Regex>),
    /// No path condition: every path, ranked after every path condition (a GRPCRoute
    /// match without a method).
    Any,
}

impl PathCond {
    /// Validates a path match; field paths are relative to the match (`path.value`).
    pub(crate) fn compile(path: Option<&PathMatch>) -> Result<Self, ConfigError> {
        let field = "path.value";
        match path {
            None => Ok(Self::Any),
            Some(PathMatch::Exact(v)) => {
                require_slash(v, field)?;
                Ok(Self::Exact(v.as_str().into()))
            }
            Some(PathMatch::Prefix(v)) => {
                require_slash(v, field)?;
                Ok(Self::Prefix(normalize_prefix(v).into()))
            }
            Some(PathMatch::Regex(v)) => Ok(Self::Regex(Box::new(anchored(v, field)?))),
        }
    }
}

fn require_slash(v: &str, field: &str) -> Result<(), ConfigError> {
    if v.starts_with('/') {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("path `{v}` must start with `/`"),
        ))
    }
}

/// A prefix value without its trailing `/`s (`/` becomes ``).
pub(crate) fn normalize_prefix(v: &str) -> &str {
    v.trim_end_matches('/')
}

/// Compiles `pattern` so that it must match the whole input: `^(?:pattern)$`.
pub(crate) fn anchored(pattern: &str, field: &str) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| ConfigError::new(field, format!("invalid regular expression: {e}")))
}

/// Whether the normalized prefix `prefix` matches `path` on whole segments.
#[cfg(test)]
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Every normalized prefix that matches `path`, longest first, no longer than `max_len`.
pub(crate) fn prefix_candidates(path: &str, max_len: usize) -> PrefixCandidates<'_> {
    PrefixCandidates {
        path,
        max_len,
        next: Some(path.len()),
        root_done: false,
    }
}

/// The iterator of [`prefix_candidates`].
#[derive(Debug)]
pub(crate) struct PrefixCandidates<'a> {
    path: &'a str,
    max_len: usize,
    /// The end of the next candidate: `path.len()` first, then each `/` position.
    next: Option<usize>,
    root_done: bool,
}

impl<'a> Iterator for PrefixCandidates<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.path.as_bytes();
        while let Some(end) = self.next {
            // Find the candidate after this one: the last `/` before `end`.
            self.next = bytes[..end].iter().rposition(|&b| b == b'/');
            // `end` is path.len() or the index of a `/`; both are char boundaries.
            if end <= self.max_len {
                if end == 0 {
                    self.root_done = true;
                }
                return Some(&self.path[..end]);
            }
        }
        if !self.root_done {
            self.root_done = true;
            return Some("");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(path: &str) -> Vec<&str> {
        prefix_candidates(path, usize::MAX).collect()
    }

    #[test]
    fn prefix_candidates_are_whole_segments_longest_first() {
        assert_eq!(cands("/foo/bar"), ["/foo/bar", "/foo", ""]);
        assert_eq!(cands("/foo/"), ["/foo/", "/foo", ""]);
        assert_eq!(cands("/"), ["/", ""]);
        assert_eq!(cands("*"), ["*", ""]);
        assert_eq!(cands("/a//b"), ["/a//b", "/a/", "/a", ""]);
        let bounded: Vec<_> = prefix_candidates("/foo/bar/baz", 4).collect();
        assert_eq!(bounded, ["/foo", ""]);
    }

    #[test]
    fn prefix_match_is_on_whole_segments() {
        let p = normalize_prefix("/foo/");
        assert!(prefix_matches(p, "/foo"));
        assert!(prefix_matches(p, "/foo/"));
        assert!(prefix_matches(p, "/foo/bar"));
        assert!(!prefix_matches(p, "/foobar"));
        assert!(prefix_matches(normalize_prefix("/"), "/anything"));
    }

    #[test]
    fn candidates_agree_with_the_predicate() {
        for path in ["/a/b/c", "/a//", "/", "/ab/a", "x/y"] {
            for prefix in ["", "/a", "/a/b", "/ab", "/a/", "x", "/a/b/c"] {
                let walked = cands(path).contains(&prefix);
                assert_eq!(walked, prefix_matches(prefix, path), "{prefix:?} {path:?}");
            }
        }
    }

    #[test]
    fn paths_must_start_with_a_slash_and_regexes_compile() {
        let e = PathCond::compile(Some(&PathMatch::Exact("foo".into()))).unwrap_err();
        assert_eq!(e.field(), "path.value");
        let e = PathCond::compile(Some(&PathMatch::Regex("(".into()))).unwrap_err();
        assert_eq!(e.field(), "path.value");
        let PathCond::Regex(re) =
            PathCond::compile(Some(&PathMatch::Regex("/a|/b".into()))).unwrap()
        else {
            panic!("not a regex")
        };
        assert!(re.is_match("/b"));
        assert!(
            !re.is_match("/a/b"),
            "must be anchored around the alternation"
        );
    }
}
