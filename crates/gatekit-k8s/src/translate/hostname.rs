//! Hostname intersection between a listener and a route (Gateway API rules).
//!
//! A listener hostname (exact or `*.suffix`) and a route's hostnames intersect as:
//! no listener hostname → the route's hostnames (none means every host); no route
//! hostnames → the listener's; otherwise each route hostname that the listener's
//! pattern matches is kept as is, and a route wildcard that matches the listener's
//! (more specific) hostname yields the listener's. A wildcard matches one or more
//! labels (`*.example.com` matches `a.example.com` and `a.b.example.com`, not
//! `example.com`). Comparison is case-insensitive; results are lowercase.

use crate::types::SmallList;

/// The hosts a route serves through one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hosts {
    /// Every host.
    All,
    /// These hostnames (non-empty, lowercase, deduplicated in order).
    Some(Vec<String>),
}

impl Hosts {
    /// Unions `other` into `self` (used when one route attaches to several listeners
    /// of one port).
    pub(crate) fn merge(&mut self, other: Hosts) {
        match (&mut *self, other) {
            (Hosts::All, _) => {}
            (this, Hosts::All) => *this = Hosts::All,
            (Hosts::Some(a), Hosts::Some(b)) => {
                for h in b {
                    if !a.contains(&h) {
                        a.push(h);
                    }
                }
            }
        }
    }

    /// The hostnames as a stream route spells them (empty: every host).
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Hosts::All => Vec::new(),
            Hosts::Some(v) => v,
        }
    }

    /// The hostnames as the core route model spells them (empty: every host).
    pub(crate) fn into_list(self) -> SmallList<String> {
        match self {
            Hosts::All => SmallList::default(),
            Hosts::Some(v) => v.into(),
        }
    }
}

/// Whether `pattern` (exact or `*.suffix`) matches `host` (exact or wildcard).
fn matches(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => false,
    }
}

/// Intersects a listener hostname with a route's hostnames; `None` when they do not
/// intersect.
pub(crate) fn intersect(listener: Option<&str>, route: &[String]) -> Option<Hosts> {
    let listener = listener
        .filter(|l| !l.is_empty())
        .map(str::to_ascii_lowercase);
    let route: Vec<String> = route.iter().map(|h| h.to_ascii_lowercase()).collect();
    match listener {
        None if route.is_empty() => Some(Hosts::All),
        None => Some(Hosts::Some(dedup(route))),
        Some(l) if route.is_empty() => Some(Hosts::Some(vec![l])),
        Some(l) => {
            let mut out = Vec::new();
            for h in route {
                if matches(&l, &h) {
                    out.push(h);
                } else if matches(&h, &l) {
                    out.push(l.clone());
                }
            }
            let out = dedup(out);
            (!out.is_empty()).then_some(Hosts::Some(out))
        }
    }
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for h in v {
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn intersections() {
        assert_eq!(intersect(None, &[]), Some(Hosts::All));
        assert_eq!(
            intersect(None, &s(&["A.com"])),
            Some(Hosts::Some(s(&["a.com"])))
        );
        assert_eq!(
            intersect(Some("x.com"), &[]),
            Some(Hosts::Some(s(&["x.com"])))
        );
        assert_eq!(
            intersect(Some("x.com"), &s(&["x.com", "y.com"])),
            Some(Hosts::Some(s(&["x.com"])))
        );
        assert_eq!(
            intersect(
                Some("*.example.com"),
                &s(&["a.example.com", "a.b.example.com", "example.com"])
            ),
            Some(Hosts::Some(s(&["a.example.com", "a.b.example.com"])))
        );
        assert_eq!(
            intersect(Some("foo.example.com"), &s(&["*.example.com"])),
            Some(Hosts::Some(s(&["foo.example.com"])))
        );
        assert_eq!(
            intersect(Some("*.example.com"), &s(&["*.foo.example.com"])),
            Some(Hosts::Some(s(&["*.foo.example.com"])))
        );
        assert_eq!(
            intersect(Some("*.foo.example.com"), &s(&["*.example.com"])),
            Some(Hosts::Some(s(&["*.foo.example.com"])))
        );
        assert_eq!(intersect(Some("x.com"), &s(&["y.com"])), None);
        assert_eq!(intersect(Some("*.example.com"), &s(&["example.com"])), None);
    }

    #[test]
    fn merge_unions_and_all_absorbs() {
        let mut h = Hosts::Some(s(&["a.com"]));
        h.merge(Hosts::Some(s(&["b.com", "a.com"])));
        assert_eq!(h, Hosts::Some(s(&["a.com", "b.com"])));
        h.merge(Hosts::All);
        assert_eq!(h, Hosts::All);
        assert!(h.into_list().is_empty());
    }
}
