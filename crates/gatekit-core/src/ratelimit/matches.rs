//! [`ClientMatch`]: the conditions a request must meet for a rate limit to apply to it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use ipnet::{IpNet, Ipv4Net};

use crate::{ConfigError, ConnectionInfo};

/// A condition on a request: a limit with [`matches`](super::RateLimitConfig::matches)
/// applies only to requests that meet every one of them (see the
/// [module docs](super#which-requests-matches)).
///
/// A match only selects requests; it does not split them into buckets. All the requests
/// a limit selects share its buckets as its [`KeyPart`](super::KeyPart)s say (no parts:
/// one bucket), so "each client of 10.0.0.0/8 its own bucket" is
/// `[ClientMatch::source_cidr(..)]` with the key `[KeyPart::ClientIp]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientMatch {
    /// A request header's value.
    Header {
        /// The header.
        name: HeaderName,
        /// What its value must be. A request without the header does not match.
        value: ValueMatch,
        /// Negates the match: it holds when the header is absent or its value does
        /// not match (Envoy's `expect_match: false`).
        invert: bool,
    },
    /// The client's address (from [`ConnectionInfo`]) lies in this range. A request
    /// without `ConnectionInfo` does not match.
    SourceCidr(Cidr),
}

/// How a header's value is compared.
///
/// A header that appears several times is compared as its values joined with `,`, in
/// order, as Envoy does (that costs an allocation only for a regular expression
/// over a repeated header).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueMatch {
    /// The value is exactly these bytes (case-sensitive).
    Exact(HeaderValue),
    /// The whole value matches the regular expression.
    Regex(ValueRegex),
}

/// A compiled regular expression that must match a whole value (compiled as
/// `^(?:pattern)$`, as RE2's full match). Compared by its pattern.
#[derive(Clone)]
pub struct ValueRegex {
    pattern: Box<str>,
    regex: regex::bytes::Regex,
}

/// An IPv4 or IPv6 address range (`10.0.0.0/8`, `2001:db8::/32`).
///
/// Host bits after the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`), and a range
/// within the IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) is the IPv4 range, since
/// clients are compared by their canonical address (an IPv4-mapped IPv6 client is its
/// IPv4 address).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

// === impl ClientMatch ===

impl ClientMatch {
    /// Header `name` with a value matching `value`.
    pub fn header(name: HeaderName, value: ValueMatch) -> Self {
        Self::Header {
            name,
            value,
            invert: false,
        }
    }

    /// The client's address lies in `cidr`.
    pub fn source_cidr(cidr: Cidr) -> Self {
        Self::SourceCidr(cidr)
    }

    /// Negates a header match (see [`ClientMatch::Header::invert`]); a no-op on other
    /// matches.
    #[must_use]
    pub fn with_invert(mut self, on: bool) -> Self {
        if let Self::Header { invert, .. } = &mut self {
            *invert = on;
        }
        self
    }

    /// Whether `req` meets the condition. Allocates nothing except for a regular
    /// expression over a repeated header.
    pub fn matches<B>(&self, req: &Request<B>) -> bool {
        match self {
            Self::Header {
                name,
                value,
                invert,
            } => value.matches_header(req.headers(), name) != *invert,
            Self::SourceCidr(cidr) => req
                .extensions()
                .get::<ConnectionInfo>()
                .is_some_and(|info| cidr.contains(info.remote_addr().ip())),
        }
    }
}

// === impl ValueMatch ===

impl ValueMatch {
    /// Whether the value of `name` in `headers` (its values joined with `,`) matches;
    /// `false` when there is none.
    fn matches_header(&self, headers: &HeaderMap, name: &HeaderName) -> bool {
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        let Some(second) = values.next() else {
            return self.matches_bytes(first.as_bytes());
        };
        let all = [first, second].into_iter().chain(values);
        match self {
            Self::Exact(expected) => {
                // The joined value, compared piece by piece without building it.
                let mut rest = expected.as_bytes();
                for (i, v) in all.enumerate() {
                    if i > 0 {
                        let Some(r) = rest.strip_prefix(b",") else {
                            return false;
                        };
                        rest = r;
                    }
                    let Some(r) = rest.strip_prefix(v.as_bytes()) else {
                        return false;
                    };
                    rest = r;
                }
                rest.is_empty()
            }
            Self::Regex(re) => {
                let mut joined = Vec::new();
                for (i, v) in all.enumerate() {
                    if i > 0 {
                        joined.push(b',');
                    }
                    joined.extend_from_slice(v.as_bytes());
                }
                re.is_match(&joined)
            }
        }
    }

    /// Whether one value matches.
    pub fn matches_bytes(&self, value: &[u8]) -> bool {
        match self {
            Self::Exact(expected) => expected.as_bytes() == value,
            Self::Regex(re) => re.is_match(value),
        }
    }
}

// === impl ValueRegex ===

impl ValueRegex {
    /// Compiles `pattern` (RE2-like syntax: no look-around, no back-references) to match
    /// whole values.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with an empty field path (the caller adds where the pattern
    /// was, with [`ConfigError::within`]) when the pattern is not a valid regular
    /// expression or compiles too large.
    pub fn new(pattern: &str) -> Result<Self, ConfigError> {
        let regex = regex::bytes::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            ConfigError::new("", format!("invalid regular expression {pattern:?}: {e}"))
        })?;
        Ok(Self {
            pattern: pattern.into(),
            regex,
        })
    }

    /// The pattern as written (not anchored).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &[u8]) -> bool {
        self.regex.is_match(value)
    }
}

impl PartialEq for ValueRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for ValueRegex {}

impl fmt::Debug for ValueRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueRegex").field(&self.pattern).finish()
    }
}

// === impl Cidr ===

impl Cidr {
    /// The range of addresses sharing the first `prefix_len` bits of `addr`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with an empty field path when `prefix_len` is longer than the
    /// address (32 bits for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, ConfigError> {
        let net = IpNet::new(addr, prefix_len).map_err(|_| {
            ConfigError::new(
                "",
                format!("prefix length {prefix_len} is too long for {addr}"),
            )
        })?;
        Ok(Self::canonical(net))
    }

    fn canonical(net: IpNet) -> Self {
        let net = net.trunc();
        if let IpNet::V6(v6) = net
            && let Some(v4) = v6.addr().to_ipv4_mapped()
            && v6.prefix_len() >= 96
            && let Ok(v4) = Ipv4Net::new(v4, v6.prefix_len() - 96)
        {
            return Self(IpNet::V4(v4));
        }
        Self(net)
    }

    /// Whether `ip` lies in the range (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }

    /// The range's first address.
    pub fn addr(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }
}

impl FromStr for Cidr {
    type Err = ConfigError;

    /// Parses `address/prefix-length` (`192.168.0.0/16`, `2001:db8::/32`).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let net = s.parse::<IpNet>().map_err(|_| {
            ConfigError::new(
                "",
                format!("{s:?} is not a CIDR (an IPv4 or IPv6 address, `/`, a prefix length)"),
            )
        })?;
        Ok(Self::canonical(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({})", self.0)
    }
}
