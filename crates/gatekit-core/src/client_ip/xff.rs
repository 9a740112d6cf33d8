//! Walking `X-Forwarded-For` from the right: the entries of every header line, the last
//! line's last entry first, without allocating.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::HeaderName;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The entries of `headers`' `X-Forwarded-For`, rightmost first, each parsed (`None` for
/// one that is not an IP address). Empty header lines are skipped, as gatekit's own
/// appending skips them.
fn entries_from_right(headers: &HeaderMap) -> impl Iterator<Item = Option<IpAddr>> + '_ {
    headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|v| !v.is_empty())
        .flat_map(|v| v.rsplit(|b| *b == b','))
        .map(parse_ip)
}

/// The `n`th entry from the right (`n` ≥ 1); `None` when there are fewer than `n`
/// entries or one of the `n` rightmost is not an IP address.
pub(super) fn nth_from_right(headers: &HeaderMap, n: u32) -> Option<IpAddr> {
    let mut seen = 0u32;
    for entry in entries_from_right(headers) {
        let ip = entry?;
        seen += 1;
        if seen == n {
            return Some(ip);
        }
    }
    None
}

/// The rightmost entry that is not `trusted`, else the leftmost; `None` without
/// entries, or when an entry walked over is not an IP address.
pub(super) fn first_untrusted(
    headers: &HeaderMap,
    trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let mut last = None;
    for entry in entries_from_right(headers) {
        let ip = entry?;
        if !trusted(ip) {
            return Some(ip);
        }
        last = Some(ip);
    }
    last
}

/// One address, with optional surrounding whitespace (an IPv4-mapped IPv6 address as
/// its IPv4 one); `None` for anything else (a port, a zone, garbage, an empty entry).
pub(super) fn parse_ip(bytes: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(bytes.trim_ascii()).ok()?;
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}
