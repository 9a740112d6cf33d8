#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{ClientIpDetection, ClientIpError};
use crate::ratelimit::Cidr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Headers with one `X-Forwarded-For` line per entry of `lines`.
fn xff(lines: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append("x-forwarded-for", HeaderValue::from_str(l).unwrap());
    }
    h
}

fn hops(n: u32, lines: &[&str]) -> Option<IpAddr> {
    ClientIpDetection::xff_trusted_hops(n)
        .resolve(ip("192.0.2.5"), &xff(lines))
        .unwrap()
}

fn cidrs(ranges: &[&str]) -> ClientIpDetection {
    ClientIpDetection::xff_trusted_cidrs(ranges.iter().map(|r| r.parse::<Cidr>().unwrap()))
}

#[test]
fn trusted_hops_count_from_the_right_of_the_received_header() {
    // Envoy's example: use_remote_address, two trusted hops.
    let chain = ["203.0.113.128, 203.0.113.10, 203.0.113.1"];
    assert_eq!(hops(1, &chain), Some(ip("203.0.113.1")));
    assert_eq!(hops(2, &chain), Some(ip("203.0.113.10")));
    assert_eq!(hops(3, &chain), Some(ip("203.0.113.128")));
    assert_eq!(hops(1, &["10.1.2.3"]), Some(ip("10.1.2.3")));
}

#[test]
fn trusted_hops_read_header_lines_as_one_list_in_order() {
    let lines = ["203.0.113.128", "203.0.113.10,203.0.113.1"];
    assert_eq!(hops(2, &lines), Some(ip("203.0.113.10")));
    assert_eq!(hops(3, &lines), Some(ip("203.0.113.128")));
    // An empty line is no entry (gatekit's own appending drops it too).
    assert_eq!(
        hops(2, &["198.51.100.1", " ", "198.51.100.2"]),
        Some(ip("198.51.100.1"))
    );
}

#[test]
fn too_few_entries_or_none_leave_the_peer() {
    assert_eq!(hops(2, &["10.1.2.3"]), None);
    assert_eq!(hops(1, &[]), None);
}

#[test]
fn zero_hops_never_read_the_header() {
    assert_eq!(hops(0, &["10.1.2.3"]), None);
}

#[test]
fn garbage_on_the_way_leaves_the_peer() {
    for chain in [
        "10.1.2.3, garbage",
        "10.1.2.3,,10.0.0.1",
        "10.1.2.3, 10.0.0.1:8080",
        "10.1.2.3, [::1]",
        "10.1.2.3, fe80::1%eth0",
        "10.1.2.3, unknown",
        "10.1.2.3, 10.0.0.",
    ] {
        assert_eq!(hops(2, &[chain]), None, "{chain}");
    }
    // Garbage left of the client is never looked at.
    assert_eq!(hops(1, &["garbage, 10.1.2.3"]), Some(ip("10.1.2.3")));
    // Bytes that are not UTF-8.
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"10.1.2.3\xff").unwrap(),
    );
    let d = ClientIpDetection::xff_trusted_hops(1);
    assert_eq!(d.resolve(ip("192.0.2.5"), &h), Ok(None));
}

#[test]
fn ipv6_entries_and_mapped_addresses() {
    assert_eq!(
        hops(1, &["2001:db8::1, 2001:db8::2"]),
        Some(ip("2001:db8::2"))
    );
    assert_eq!(
        hops(2, &["2001:db8::1 , 10.0.0.1"]),
        Some(ip("2001:db8::1"))
    );
    assert_eq!(hops(1, &["::ffff:10.1.2.3"]), Some(ip("10.1.2.3")));
}

#[test]
fn trusted_cidrs_only_from_a_trusted_peer() {
    let d = cidrs(&["10.0.0.0/8"]);
    let h = xff(&["198.51.100.7, 10.0.0.2"]);
    assert_eq!(d.resolve(ip("10.0.0.1"), &h), Ok(Some(ip("198.51.100.7"))));
    // The same header from a peer outside the ranges is not read.
    assert_eq!(d.resolve(ip("192.0.2.1"), &h), Ok(None));
    // An IPv4-mapped peer is its IPv4 address.
    assert_eq!(
        d.resolve(ip("::ffff:10.0.0.1"), &h),
        Ok(Some(ip("198.51.100.7")))
    );
}

#[test]
fn trusted_cidrs_skip_trusted_entries_and_stop_at_the_first_other() {
    let d = cidrs(&["10.0.0.0/8", "2001:db8::/32"]);
    let peer = ip("10.0.0.1");
    // A client-written entry left of the real client is ignored.
    let h = xff(&["6.6.6.6, 203.0.113.9, 10.0.0.3, 2001:db8::7"]);
    assert_eq!(d.resolve(peer, &h), Ok(Some(ip("203.0.113.9"))));
    // All trusted: the leftmost.
    let h = xff(&["10.9.9.9, 10.0.0.3"]);
    assert_eq!(d.resolve(peer, &h), Ok(Some(ip("10.9.9.9"))));
    // No header: the peer.
    assert_eq!(d.resolve(peer, &HeaderMap::new()), Ok(None));
    // Garbage on the way: the peer.
    let h = xff(&["203.0.113.9, bogus, 10.0.0.3"]);
    assert_eq!(d.resolve(peer, &h), Ok(None));
    // Garbage beyond the client is not looked at.
    let h = xff(&["bogus, 203.0.113.9, 10.0.0.3"]);
    assert_eq!(d.resolve(peer, &h), Ok(Some(ip("203.0.113.9"))));
}

#[test]
fn custom_header_one_valid_address() {
    let name = HeaderName::from_static("x-real-ip");
    let open = ClientIpDetection::custom_header(name.clone(), false);
    let closed = ClientIpDetection::custom_header(name, true);
    let peer = ip("192.0.2.5");
    let mut h = HeaderMap::new();
    h.insert("x-real-ip", HeaderValue::from_static(" 203.0.113.9 "));
    assert_eq!(open.resolve(peer, &h), Ok(Some(ip("203.0.113.9"))));
    assert_eq!(closed.resolve(peer, &h), Ok(Some(ip("203.0.113.9"))));

    let mut twice = h.clone();
    twice.append("x-real-ip", HeaderValue::from_static("10.0.0.1"));
    let mut list = HeaderMap::new();
    list.insert(
        "x-real-ip",
        HeaderValue::from_static("203.0.113.9, 10.0.0.1"),
    );
    for bad in [HeaderMap::new(), twice, list] {
        assert_eq!(open.resolve(peer, &bad), Ok(None), "{bad:?}");
        assert_eq!(
            closed.resolve(peer, &bad),
            Err(ClientIpError(())),
            "{bad:?}"
        );
    }
    // X-Forwarded-For plays no part.
    let h = xff(&["10.1.2.3"]);
    assert_eq!(open.resolve(peer, &h), Ok(None));
}

#[test]
fn a_huge_header_is_walked_without_trouble() {
    let long = vec!["10.0.0.1"; 5000].join(",");
    let h = xff(&[&long]);
    assert_eq!(
        cidrs(&["10.0.0.0/8"]).resolve(ip("10.0.0.1"), &h),
        Ok(Some(ip("10.0.0.1")))
    );
    assert_eq!(hops(4999, &[&long]), Some(ip("10.0.0.1")));
    assert_eq!(hops(5001, &[&long]), None);
}
