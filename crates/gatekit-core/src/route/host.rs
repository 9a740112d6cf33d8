//! Hostnames: validating a route's hostnames and finding a request's host.
//!
//! A route hostname is an RFC 1123 name (lowercase letters, digits, `-`, labels of at most
//! 63 characters, at most 253 in all), optionally prefixed by one wildcard label `*.`. IP
//! addresses are not hostnames. Uppercase is accepted and folded to lowercase.
//!
//! A wildcard `*.example.com` matches a host that ends in `.example.com` with at least one
//! non-empty label before it (`a.example.com`, `a.b.example.com`, not `example.com`).
//!
//! The request host comes from the URI authority when the request has one (HTTP/2
//! `:authority`, absolute-form HTTP/1.1 targets), else from the `Host` header. Its port is
//! dropped and it is compared case-insensitively. A host longer than 253 bytes cannot be a
//! DNS name, and a `Host` header that is not visible ASCII is treated as absent: such
//! requests match only routes without hostnames.

use http::{HeaderMap, Uri};

use crate::error::ConfigError;

/// The longest DNS name.
pub(crate) const MAX_HOST: usize = 253;

/// A validated, lowercased route hostname.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum HostPattern {
    /// Matches exactly this host.
    Exact(Box<str>),
    /// `*.suffix`: holds `suffix` (without the `*.`).
    Wildcard(Box<str>),
}

impl HostPattern {
    /// Validates and lowercases `hostname`.
    pub(crate) fn parse(hostname: &str) -> Result<Self, ConfigError> {
        let lower = hostname.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        validate_dns_name(name).map_err(|reason| ConfigError::new("", reason))?;
        if !wildcard && name.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(ConfigError::new(
                "",
                "IP addresses are not allowed as hostnames",
            ));
        }
        let name: Box<str> = name.into();
        Ok(if wildcard {
            Self::Wildcard(name)
        } else {
            Self::Exact(name)
        })
    }
}

fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("hostname is empty".into());
    }
    if name.len() > MAX_HOST {
        return Err(format!("hostname is longer than {MAX_HOST} characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("hostname has an empty label".into());
        }
        if label.len() > 63 {
            return Err(format!("label `{label}` is longer than 63 characters"));
        }
        if label.contains('*') {
            return Err("a wildcard is allowed only as a whole leading `*.` label".into());
        }
        let ok = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(format!(
                "label `{label}` may hold only letters, digits and `-` (RFC 1123)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` must not start or end with `-`"));
        }
    }
    Ok(())
}

/// The request's host without port, as received (not yet lowercased).
pub(crate) fn raw_request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    if let Some(host) = uri.host() {
        return Some(host);
    }
    let value = headers.get(http::header::HOST)?.to_str().ok()?;
    Some(strip_port(value))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: keep the brackets, drop what follows `]`.
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.find(':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// Lowercases `host` into `buf` when it has uppercase letters; `None` when it is longer
/// than a DNS name can be.
pub(crate) fn lowercase<'b>(host: &'b str, buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    if host.len() > MAX_HOST {
        return None;
    }
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(host);
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    // Lowercasing ASCII letters keeps valid UTF-8 valid.
    std::str::from_utf8(out).ok()
}

/// The suffixes of `host` a wildcard could be keyed by, longest first: for
/// `a.b.example.com`, `b.example.com`, `example.com`, `com`.
pub(crate) fn wildcard_suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.bytes()
        .enumerate()
        .filter(|&(i, b)| b == b'.' && i > 0)
        .map(move |(i, _)| &host[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_and_wildcard_hostnames() {
        assert_eq!(
            HostPattern::parse("API.Example.com").unwrap(),
            HostPattern::Exact("api.example.com".into())
        );
        assert_eq!(
            HostPattern::parse("*.example.com").unwrap(),
            HostPattern::Wildcard("example.com".into())
        );
    }

    #[test]
    fn rejects_bad_hostnames() {
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "*a.example.com",
            "**.example.com",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "10.0.0.1",
            "a.com:80",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(HostPattern::parse(&"a".repeat(64)).is_err());
        // Numeric labels are fine when the whole name is not an IPv4 address.
        assert!(HostPattern::parse("123").is_ok());
        assert!(HostPattern::parse("1.2.3.example.com").is_ok());
    }

    #[test]
    fn request_host_prefers_authority_and_strips_port() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::HOST,
            "Header.example.com:8080".parse().unwrap(),
        );
        let uri: Uri = "http://uri.example.com:81/x".parse().unwrap();
        assert_eq!(raw_request_host(&uri, &headers), Some("uri.example.com"));
        let uri: Uri = "/x".parse().unwrap();
        assert_eq!(raw_request_host(&uri, &headers), Some("Header.example.com"));
        headers.insert(http::header::HOST, "[::1]:8080".parse().unwrap());
        assert_eq!(raw_request_host(&uri, &headers), Some("[::1]"));
        assert_eq!(raw_request_host(&uri, &HeaderMap::new()), None);
    }

    #[test]
    fn lowercases_without_allocating_and_bounds_length() {
        let mut buf = [0u8; MAX_HOST];
        assert_eq!(lowercase("A.Example.COM", &mut buf), Some("a.example.com"));
        let long = "a".repeat(MAX_HOST + 1);
        assert_eq!(lowercase(&long, &mut buf), None);
    }

    #[test]
    fn wildcard_suffixes_need_a_leading_label() {
        let s: Vec<_> = wildcard_suffixes("a.b.example.com").collect();
        assert_eq!(s, ["b.example.com", "example.com", "com"]);
        let s: Vec<_> = wildcard_suffixes(".example.com").collect();
        assert_eq!(s, ["com"]);
    }
}
