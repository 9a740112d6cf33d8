//! Method, header and query conditions of one match, compiled, and checked per request
//! without allocating.
//!
//! - Header names compare case-insensitively (they are [`HeaderName`]s). When a header
//!   appears more than once, only its *first* value is matched, as the Gateway API
//!   recommends for repeated query parameters; a value that is not UTF-8 matches no regex.
//! - Query parameters: the query is split on `&`, each pair on its first `=` (a pair
//!   without `=` has the empty value). Names compare case-sensitively and only the *first*
//!   pair with the name counts. Names and values are percent-decoded (`%41` is `A`; a `%`
//!   not followed by two hex digits stays as is; `+` is *not* a space, as in RFC 3986
//!   rather than HTML forms). Decoding is lazy: an exact comparison walks the decoded bytes
//!   against the expected ones, and a regex sees the raw value when it holds no `%`, or a
//!   copy decoded into a stack buffer of [`MAX_DECODED`] bytes (a longer escaped value, or
//!   one that does not decode to UTF-8, matches no regex).

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

use super::model::{HeaderMatch, QueryMatch, StringMatch};
use super::path::anchored;
use crate::error::ConfigError;

/// For a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`),
/// the method it announces; `None` for every other request (one comparison for them).
///
/// A browser sends a preflight before the request it announces, with the method in
/// `Access-Control-Request-Method`; a rule with a CORS filter and a method match must
/// answer the preflight of the method it matches (a rule `method: PUT` answers the
/// preflight of a `PUT`), or the browser never sends the request.
#[inline]
pub(crate) fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(http::header::ORIGIN) {
        return None;
    }
    let announced = headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(announced.as_bytes()).ok()
}

/// The longest percent-escaped query value a regex is matched against.
pub(crate) const MAX_DECODED: usize = 1024;

/// A compiled value condition.
#[derive(Clone, Debug)]
pub(crate) enum ValueCond {
    /// Equal to this.
    Exact(Box<str>),
    /// The whole value matches (anchored).
    Regex(Regex),
}

impl ValueCond {
    /// Compiles a value condition; errors name the field `value`.
    fn compile(m: &StringMatch) -> Result<Self, ConfigError> {
        match m {
            StringMatch::Exact(v) => Ok(Self::Exact(v.as_str().into())),
            StringMatch::Regex(r) => Ok(Self::Regex(anchored(r, "value")?)),
        }
    }
}

/// Everything of a match except its path.
#[derive(Clone, Debug, Default)]
pub(crate) struct Conditions {
    method: Option<Method>,
    /// The rule has a CORS filter: a CORS preflight meets the method condition with the
    /// method it announces (see [`preflight_method`]).
    preflight_as_announced: bool,
    headers: Box<[(HeaderName, ValueCond)]>,
    query: Box<[(Box<str>, ValueCond)]>,
}

impl Conditions {
    /// Compiles the conditions; field paths are relative to the match.
    pub(crate) fn compile(
        method: Option<&Method>,
        headers: &[HeaderMatch],
        query: &[QueryMatch],
    ) -> Result<Self, ConfigError> {
        let mut hs: Vec<(HeaderName, ValueCond)> = Vec::with_capacity(headers.len());
        for (i, h) in headers.iter().enumerate() {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                ConfigError::new(
                    format!("headers[{i}].name"),
                    format!("invalid header name `{}`", h.name),
                )
            })?;
            if let Some(first) = hs.iter().position(|(n, _)| *n == name) {
                return Err(ConfigError::new(
                    format!("headers[{i}].name"),
                    format!("header `{name}` is already matched by headers[{first}]"),
                ));
            }
            let value =
                ValueCond::compile(&h.value).map_err(|e| e.within(&format!("headers[{i}]")))?;
            hs.push((name, value));
        }
        let mut qs: Vec<(Box<str>, ValueCond)> = Vec::with_capacity(query.len());
        for (i, q) in query.iter().enumerate() {
            let field = || format!("queryParams[{i}].name");
            if q.name.is_empty() {
                return Err(ConfigError::new(field(), "query parameter name is empty"));
            }
            if let Some(first) = qs.iter().position(|(n, _)| **n == *q.name) {
                return Err(ConfigError::new(
                    field(),
                    format!(
                        "query parameter `{}` is already matched by queryParams[{first}]",
                        q.name
                    ),
                ));
            }
            let value =
                ValueCond::compile(&q.value).map_err(|e| e.within(&format!("queryParams[{i}]")))?;
            qs.push((q.name.as_str().into(), value));
        }
        Ok(Self {
            method: method.cloned(),
            preflight_as_announced: false,
            headers: hs.into(),
            query: qs.into(),
        })
    }

    /// Makes a CORS preflight meet the method condition with the method it announces
    /// (for the matches of a rule with a CORS filter).
    pub(crate) fn with_preflight_as_announced(mut self, yes: bool) -> Self {
        self.preflight_as_announced = yes;
        self
    }

    /// The method the method condition compares: the announced one for a preflight
    /// (`announced`, from [`preflight_method`]) when the rule has a CORS filter, else
    /// the request's.
    #[inline]
    pub(crate) fn method_for<'a>(
        &self,
        method: &'a Method,
        announced: Option<&'a Method>,
    ) -> &'a Method {
        match announced {
            Some(m) if self.preflight_as_announced => m,
            _ => method,
        }
    }

    /// Whether a method condition is present (precedence step 3).
    pub(crate) fn has_method(&self) -> bool {
        self.method.is_some()
    }

    /// The number of header conditions (precedence step 4).
    pub(crate) fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// The number of query conditions (precedence step 5).
    pub(crate) fn query_count(&self) -> usize {
        self.query.len()
    }

    /// Whether the request meets every condition.
    #[inline]
    pub(crate) fn matches(
        &self,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> bool {
        if let Some(m) = &self.method
            && m != method
        {
            return false;
        }
        for (name, cond) in self.headers.iter() {
            let Some(value) = headers.get(name) else {
                return false;
            };
            let ok = match cond {
                ValueCond::Exact(v) => value.as_bytes() == v.as_bytes(),
                ValueCond::Regex(re) => std::str::from_utf8(value.as_bytes())
                    .map(|s| re.is_match(s))
                    .unwrap_or(false),
            };
            if !ok {
                return false;
            }
        }
        if !self.query.is_empty() {
            let query = query.unwrap_or("");
            for (name, cond) in self.query.iter() {
                let Some(raw) = first_param(query, name) else {
                    return false;
                };
                if !value_matches(raw, cond) {
                    return false;
                }
            }
        }
        true
    }
}

/// The raw (still escaped) value of the first parameter whose decoded name is `name`.
pub(crate) fn first_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (!n.is_empty() && decoded_eq(n, name)).then_some(v)
    })
}

fn value_matches(raw: &str, cond: &ValueCond) -> bool {
    match cond {
        ValueCond::Exact(v) => decoded_eq(raw, v),
        ValueCond::Regex(re) => {
            if !raw.contains('%') {
                return re.is_match(raw);
            }
            let mut buf = [0u8; MAX_DECODED];
            let mut len = 0;
            for b in Decoded::new(raw) {
                let Some(slot) = buf.get_mut(len) else {
                    return false;
                };
                *slot = b;
                len += 1;
            }
            std::str::from_utf8(&buf[..len])
                .map(|s| re.is_match(s))
                .unwrap_or(false)
        }
    }
}

/// Whether percent-decoding `raw` gives exactly `expected`.
fn decoded_eq(raw: &str, expected: &str) -> bool {
    if !raw.contains('%') {
        return raw == expected;
    }
    Decoded::new(raw).eq(expected.bytes())
}

/// The bytes of a percent-decoded string.
#[derive(Debug)]
struct Decoded<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoded<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            bytes: s.as_bytes(),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        if first == b'%'
            && let [h, l, tail @ ..] = rest
            && let (Some(h), Some(l)) = (hex(*h), hex(*l))
        {
            self.bytes = tail;
            return Some(h << 4 | l);
        }
        self.bytes = rest;
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(v: &str) -> StringMatch {
        StringMatch::Exact(v.into())
    }

    #[test]
    fn percent_decoding_is_lazy_and_lenient() {
        let d: Vec<u8> = Decoded::new("a%41%2f%zz%4").collect();
        assert_eq!(d, b"aA/%zz%4");
        assert!(decoded_eq("a%20b", "a b"));
        assert!(decoded_eq("a+b", "a+b"));
        assert!(!decoded_eq("a%20b", "a%20b"));
    }

    #[test]
    fn first_query_param_wins_and_names_are_case_sensitive() {
        let q = "a=1&A=2&a=3&flag&b%31=x&=empty";
        assert_eq!(first_param(q, "a"), Some("1"));
        assert_eq!(first_param(q, "A"), Some("2"));
        assert_eq!(first_param(q, "flag"), Some(""));
        assert_eq!(first_param(q, "b1"), Some("x"));
        assert_eq!(first_param(q, "c"), None);
        assert_eq!(first_param(q, ""), None);
    }

    #[test]
    fn query_regex_sees_the_decoded_value() {
        let c = Conditions::compile(
            None,
            &[],
            &[QueryMatch {
                name: "q".into(),
                value: StringMatch::Regex("a b+".into()),
            }],
        )
        .unwrap();
        let h = HeaderMap::new();
        assert!(c.matches(&Method::GET, Some("q=a%20bb"), &h));
        assert!(!c.matches(&Method::GET, Some("q=a+bb"), &h));
        assert!(!c.matches(&Method::GET, Some("q=a%20bbx"), &h), "anchored");
        let long = format!("q=a%20{}", "b".repeat(MAX_DECODED));
        assert!(
            !c.matches(&Method::GET, Some(&long), &h),
            "too long to decode"
        );
        assert!(!c.matches(&Method::GET, None, &h));
    }

    #[test]
    fn headers_match_the_first_value_case_insensitively_by_name() {
        let c = Conditions::compile(
            None,
            &[HeaderMatch {
                name: "X-Env".into(),
                value: exact("canary"),
            }],
            &[],
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.append("x-env", "canary".parse().unwrap());
        h.append("x-env", "prod".parse().unwrap());
        assert!(c.matches(&Method::GET, None, &h));
        let mut h2 = HeaderMap::new();
        h2.append("x-env", "prod".parse().unwrap());
        h2.append("x-env", "canary".parse().unwrap());
        assert!(
            !c.matches(&Method::GET, None, &h2),
            "only the first value counts"
        );
        let mut h3 = HeaderMap::new();
        h3.append("x-env", "Canary".parse().unwrap());
        assert!(
            !c.matches(&Method::GET, None, &h3),
            "values are case-sensitive"
        );
    }

    #[test]
    fn invalid_conditions_name_the_field() {
        let hm = |n: &str, v: StringMatch| HeaderMatch {
            name: n.into(),
            value: v,
        };
        let e = Conditions::compile(None, &[hm("bad name", exact("x"))], &[]).unwrap_err();
        assert_eq!(e.field(), "headers[0].name");
        let e = Conditions::compile(None, &[hm("a", exact("x")), hm("A", exact("y"))], &[])
            .unwrap_err();
        assert_eq!(e.field(), "headers[1].name");
        let e =
            Conditions::compile(None, &[hm("a", StringMatch::Regex("[".into()))], &[]).unwrap_err();
        assert_eq!(e.field(), "headers[0].value");
        let qm = |n: &str| QueryMatch {
            name: n.into(),
            value: exact("1"),
        };
        let e = Conditions::compile(None, &[], &[qm("")]).unwrap_err();
        assert_eq!(e.field(), "queryParams[0].name");
        let e = Conditions::compile(None, &[], &[qm("a"), qm("a")]).unwrap_err();
        assert_eq!(e.field(), "queryParams[1].name");
        assert!(Conditions::compile(None, &[], &[qm("a"), qm("A")]).is_ok());
    }
}
