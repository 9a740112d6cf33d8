//! Test-side control: the request log and injected faults (failures, delays).
//!
//! Rules match the request path (no query) with a small glob: `*` matches any run of
//! characters (including `/`), `?` one character. Failure rules are consumed first-come:
//! the first rule whose method and glob match and that has failures left answers the request.

use std::time::Duration;

use http::Method;

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestRecord {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Decoded query pairs in order, empty pairs (kube-rs's leading `?&`) skipped.
    pub query: Vec<(String, String)>,
}

impl RequestRecord {
    /// The value of a query parameter, if present.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this was a watch request (`watch=true|1`).
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }

    /// Whether this was a LIST (a GET on a collection that is not a watch). `plural` is the
    /// last path segment expected, e.g. `services`.
    pub fn is_list_of(&self, plural: &str) -> bool {
        self.method == Method::GET && !self.is_watch() && self.path.ends_with(&format!("/{plural}"))
    }
}

#[derive(Debug)]
pub(crate) struct FailRule {
    pub(crate) method: Option<Method>,
    pub(crate) glob: String,
    pub(crate) remaining: usize,
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct DelayRule {
    pub(crate) glob: String,
    pub(crate) delay: Duration,
}

/// Fault rules and the request log.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) fails: Vec<FailRule>,
    pub(crate) delays: Vec<DelayRule>,
}

impl Control {
    /// Takes one failure for this request, if a rule matches: `(status, retry_after)`.
    pub(crate) fn take_failure(
        &mut self,
        method: &Method,
        path: &str,
    ) -> Option<(u16, Option<u32>)> {
        let rule = self.fails.iter_mut().find(|r| {
            r.remaining > 0
                && r.method.as_ref().is_none_or(|m| m == method)
                && glob_match(&r.glob, path)
        })?;
        rule.remaining -= 1;
        let out = (rule.status, rule.retry_after);
        self.fails.retain(|r| r.remaining > 0);
        Some(out)
    }

    /// The delay configured for this path (the last matching rule wins).
    pub(crate) fn delay_for(&self, path: &str) -> Option<Duration> {
        self.delays
            .iter()
            .rev()
            .find(|d| glob_match(&d.glob, path))
            .map(|d| d.delay)
            .filter(|d| !d.is_zero())
    }
}

/// Glob match: `*` any run of characters, `?` one character, everything else literal.
pub(crate) fn glob_match(glob: &str, s: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut gi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if gi < g.len() && g[gi] == '*' {
            star = Some(gi);
            mark = ti;
            gi += 1;
        } else if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if let Some(s) = star {
            gi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while gi < g.len() && g[gi] == '*' {
        gi += 1;
    }
    gi == g.len()
}

/// Decodes a query string (`+` is a space, `%XX` escapes), skipping empty pairs.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "/api/v1/services"));
        assert!(glob_match("*", "*x"), "a literal star in the path");
        assert!(glob_match("/api/v1/*", "/api/v1/namespaces/a/services"));
        assert!(glob_match("*/services", "/api/v1/services"));
        assert!(glob_match("/api/v?/services", "/api/v1/services"));
        assert!(!glob_match("*/services", "/api/v1/services/x"));
        assert!(glob_match(
            "*leases*",
            "/apis/coordination.k8s.io/v1/namespaces/a/leases/l"
        ));
    }

    #[test]
    fn queries() {
        let q = parse_query("&labelSelector=a%3Db%2Cc+in+%28x%29&limit=5&bad=%G1&end=%4");
        assert_eq!(q[0], ("labelSelector".into(), "a=b,c in (x)".into()));
        assert_eq!(q[1], ("limit".into(), "5".into()));
        assert_eq!(q[2].1, "%G1");
        assert_eq!(q[3].1, "%4");
    }

    proptest::proptest! {
        #[test]
        fn query_and_glob_never_panic(q in ".{0,40}", g in "[a-z*?/]{0,10}", p in "[a-z/]{0,16}") {
            let _ = parse_query(&q);
            let _ = glob_match(&g, &p);
        }

        #[test]
        fn star_matches_everything(p in ".{0,30}") {
            proptest::prop_assert!(glob_match("*", &p));
            proptest::prop_assert!(glob_match(&p.replace(['*', '?'], "x"), &p.replace(['*', '?'], "x")));
        }
    }
}
