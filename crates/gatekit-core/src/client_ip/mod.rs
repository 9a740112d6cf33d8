//! The real client address behind trusted proxies: how a listener finds the client of a
//! request when a load balancer or CDN in front of it connects instead (Envoy's
//! "original IP detection", Envoy Gateway's ClientTrafficPolicy `clientIPDetection`).
//!
//! A [`ClientIpDetection`] is given to a listener with
//! [`ServerConfig::client_ip`](crate::server::ServerConfig::client_ip). The server
//! resolves each request once, before the service sees it, and puts the result in the
//! request's [`ConnectionInfo`](crate::ConnectionInfo):
//! [`remote_addr`](crate::ConnectionInfo::remote_addr) is the client (what access
//! rules, rate limits keyed by client address, IP-hash balancing and the access log
//! read), [`peer_addr`](crate::ConnectionInfo::peer_addr) the connection's peer (the
//! socket's, or a trusted PROXY protocol header's source), which is what gatekit appends
//! to `X-Forwarded-For` for the backend. Without a detection both are the peer.
//!
//! # Sources
//!
//! - [`xff_trusted_hops(n)`](ClientIpDetection::xff_trusted_hops): the `n`th address
//!   from the right of the `X-Forwarded-For` the request arrived with (its header lines
//!   joined in order), before gatekit appends the peer — Envoy's `xff_num_trusted_hops`
//!   with `use_remote_address: true`, which is what Envoy Gateway configures. With one
//!   trusted proxy in front (`n = 1`) the client is the last address that proxy
//!   appended. The peer is not checked: the operator says `n` proxies are always in
//!   front.
//! - [`xff_trusted_cidrs(ranges)`](ClientIpDetection::xff_trusted_cidrs): only when the
//!   peer lies in one of `ranges`, the addresses of `X-Forwarded-For` are walked from the
//!   right, skipping those in `ranges`; the first one outside them is the client, and
//!   when every one is trusted, the leftmost (Envoy's `xff` original IP detection with
//!   `xff_trusted_cidrs`). From any other peer the header is not read.
//! - [`custom_header(name, fail_closed)`](ClientIpDetection::custom_header): the one
//!   address in header `name` (Envoy's `custom_header` original IP detection), set by a
//!   proxy in front that overwrites what clients send.
//!
//! In every case an entry that is not an IP address (garbage, an empty entry, a port, a
//! header value that is not visible ASCII), or too few entries, means the client cannot
//! be found: the peer stays the client, so a malformed header never lets a client choose
//! its address. With a custom header and `fail_closed`, such a request is refused with
//! `403` (`x-gatekit-error: forbidden`, empty body) before any route sees it, as Envoy
//! Gateway does; a header given twice counts as malformed. An IPv4-mapped IPv6 address is
//! taken as its IPv4 address.
//!
//! # Cost
//!
//! Nothing when no detection is configured. When one is, one walk over the
//! `X-Forwarded-For` entries from the right (stopping at the client; no allocation) or
//! one header lookup per request, and a copy of the connection's info with the
//! client's address in it.

mod xff;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use crate::ratelimit::Cidr;

/// How a listener finds a request's client behind the proxies in front of it (see the
/// [module docs](self)). Built with one of the constructors; cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIpDetection {
    source: Source,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    TrustedHops(u32),
    TrustedCidrs(Arc<[Cidr]>),
    CustomHeader { name: HeaderName, fail_closed: bool },
}

/// Why a request's client could not be found under a fail-closed detection: the request
/// is refused (`403`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the client address header is missing or malformed")]
pub struct ClientIpError(());

impl ClientIpDetection {
    /// The `hops`th address from the right of the received `X-Forwarded-For` (`1`: the
    /// address the one trusted proxy in front appended). `0` reads no header: the peer
    /// is the client.
    pub fn xff_trusted_hops(hops: u32) -> Self {
        Self {
            source: Source::TrustedHops(hops),
        }
    }

    /// From a peer in one of `ranges`, the rightmost `X-Forwarded-For` address outside
    /// them (the leftmost when all are inside); from any other peer, the peer.
    pub fn xff_trusted_cidrs(ranges: impl IntoIterator<Item = Cidr>) -> Self {
        Self {
            source: Source::TrustedCidrs(ranges.into_iter().collect()),
        }
    }

    /// The address in header `name`; without a valid one, the peer, or a `403` refusal
    /// when `fail_closed`.
    pub fn custom_header(name: HeaderName, fail_closed: bool) -> Self {
        Self {
            source: Source::CustomHeader { name, fail_closed },
        }
    }

    /// The client of a request with `headers` that came from `peer`: `Ok(Some(ip))` when
    /// the proxies in front named it, `Ok(None)` when the peer is the client.
    ///
    /// # Errors
    ///
    /// [`ClientIpError`] when a fail-closed custom header is missing or malformed: the
    /// request must be refused.
    pub fn resolve(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<Option<IpAddr>, ClientIpError> {
        match &self.source {
            Source::TrustedHops(0) => Ok(None),
            Source::TrustedHops(hops) => Ok(xff::nth_from_right(headers, *hops)),
            Source::TrustedCidrs(ranges) => {
                let trusted = |ip: IpAddr| ranges.iter().any(|r| r.contains(ip));
                if !trusted(peer) {
                    return Ok(None);
                }
                Ok(xff::first_untrusted(headers, trusted))
            }
            Source::CustomHeader { name, fail_closed } => match single_address(headers, name) {
                Some(ip) => Ok(Some(ip)),
                None if *fail_closed => Err(ClientIpError(())),
                None => Ok(None),
            },
        }
    }
}

/// `xForwardedFor numTrustedHops=1`, `xForwardedFor trustedCIDRs=10.0.0.0/8,...`,
/// `customHeader x-real-ip failClosed`: Envoy Gateway's words, for `/config` and logs.
impl std::fmt::Display for ClientIpDetection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::TrustedHops(n) => write!(f, "xForwardedFor numTrustedHops={n}"),
            Source::TrustedCidrs(ranges) => {
                f.write_str("xForwardedFor trustedCIDRs=")?;
                for (i, r) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
            Source::CustomHeader { name, fail_closed } => {
                write!(f, "customHeader {name}")?;
                if *fail_closed {
                    f.write_str(" failClosed")?;
                }
                Ok(())
            }
        }
    }
}

/// The address in the one `name` header of `headers`; `None` when there is none, more
/// than one, or it is not an IP address.
fn single_address(headers: &HeaderMap, name: &HeaderName) -> Option<IpAddr> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    xff::parse_ip(value.as_bytes())
}

#[cfg(test)]
mod tests;
