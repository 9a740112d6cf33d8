//! Header handling around a backend call: what a proxy must remove and add.
//!
//! [`prepare_request`] runs on a request before it goes to a backend,
//! [`prepare_response`] on the backend's response before it goes back to the client.
//! Both run on every request, so they are written to do one pass over the header names
//! and to allocate only for the values they add.
//!
//! # Hop-by-hop headers (RFC 9110 §7.6.1)
//!
//! Removed in both directions: `Connection` and every header it names, `Keep-Alive`,
//! `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE` (except the
//! value `trailers`, which gRPC needs end to end), `Trailer`, `Transfer-Encoding` and
//! `Upgrade`. An upgrade request (`Connection: upgrade` + `Upgrade`) keeps
//! `Connection: upgrade` and `Upgrade`, and a `101 Switching Protocols` response keeps
//! its headers, so WebSocket works through the proxy. `Connection` cannot remove `Host`.
//!
//! # Forwarding headers
//!
//! gatekit is the edge: it states facts about the client connection rather than
//! trusting what the client claims, as Envoy does with `use_remote_address`.
//! - `X-Forwarded-For`: the client IP is appended to the existing values
//!   (comma-separated, one header), so the upstream sees the whole chain with the
//!   address gatekit saw last.
//! - `X-Forwarded-Proto`: overwritten with `https` when the client connection was
//!   TLS-terminated by gatekit, else the request URI's scheme, else `http`. A client
//!   cannot claim `https` on a cleartext connection.
//! - `X-Forwarded-Host`: overwritten with the request's `Host` (or URI authority for
//!   HTTP/2 clients), for the same reason.
//! - `X-Request-Id`: kept when present, else a random 128-bit id in hex (from
//!   `fastrand`, formatted on the stack).
//! - `X-Forwarded-Client-Cert`: removed, then set from the client certificate the
//!   listener verified, unless the listener's policy says otherwise (see [`xfcc`]).
//!
//! `Host` is preserved, except that an absolute-form target's (or HTTP/2 `:authority`'s)
//! authority replaces a disagreeing `Host` (RFC 9112 §3.2.2): the upstream sees the host
//! the request was routed by.
//!
//! # As a layer
//!
//! [`ProxyHeadersLayer`] applies both functions around a service ([`ProxyHeaders`]); a
//! rule's stack in the route table has one (see [`Router`](crate::Router)).

mod future;
mod layer;
mod service;
pub mod xfcc;

pub use self::future::ResponseFuture;
pub use self::layer::ProxyHeadersLayer;
pub use self::service::ProxyHeaders;
pub use self::xfcc::{CertDetails, ForwardClientCert, ForwardClientCertMode};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::{Body, ConnectionInfo};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Prepares a request for a backend: removes hop-by-hop headers, sets
/// `X-Forwarded-For`/`-Proto`/`-Host` and `X-Request-Id` (see the [module docs](self)).
///
/// `conn` describes the client connection; without it, `X-Forwarded-For` is left as it
/// is and the protocol comes from the URI.
pub fn prepare_request(req: &mut Request<Body>, conn: Option<&ConnectionInfo>) {
    let upgrade = crate::client::is_upgrade_request(req);
    let tls = conn.is_some_and(ConnectionInfo::is_tls)
        || req.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
    // RFC 9112 §3.2.2: a proxy receiving an absolute-form target ignores the received
    // `Host` and replaces it with the target's authority (which is also what routed the
    // request). HTTP/2's `:authority` wins over a `host` header the same way.
    let authority = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    let host = match authority {
        Some(authority) => {
            if req.headers().contains_key(header::HOST) {
                req.headers_mut().insert(header::HOST, authority.clone());
            }
            Some(authority)
        }
        None => req.headers().get(header::HOST).cloned(),
    };
    let headers = req.headers_mut();
    remove_hop_by_hop(headers, upgrade);
    if let Some(conn) = conn {
        append_forwarded_for(headers, conn.peer_addr().ip());
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if let header::Entry::Vacant(slot) = headers.entry(&X_REQUEST_ID) {
        slot.insert(new_request_id());
    }
    xfcc::apply(headers, conn);
}

/// Prepares a backend's response for the client: removes hop-by-hop headers, except on
/// a `101 Switching Protocols` response, whose `Connection`/`Upgrade` complete the
/// upgrade.
pub fn prepare_response(rsp: &mut Response<Body>) {
    if rsp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    remove_hop_by_hop(rsp.headers_mut(), false);
}

/// Which hop-by-hop headers a message carries, found in one pass over the names.
#[derive(Default)]
struct Found {
    connection: bool,
    te: bool,
    any_other: bool,
}

fn is_other_hop_by_hop(name: &HeaderName) -> bool {
    name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHORIZATION
        || name == header::PROXY_AUTHENTICATE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let mut found = Found::default();
    for name in headers.keys() {
        if name == header::CONNECTION {
            found.connection = true;
        } else if name == header::TE {
            found.te = true;
        } else if is_other_hop_by_hop(name) {
            found.any_other = true;
        }
    }
    if found.connection {
        remove_connection_named(headers, upgrade);
    }
    if found.te {
        let trailers_only = headers
            .get_all(header::TE)
            .iter()
            .all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"trailers"));
        if trailers_only {
            if headers.get_all(header::TE).iter().nth(1).is_some() {
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
        } else {
            // `TE: trailers, gzip`: keep only the end-to-end meaning of `trailers`.
            let keep_trailers = headers.get_all(header::TE).iter().any(|v| {
                v.as_bytes()
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
            });
            headers.remove(header::TE);
            if keep_trailers {
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
    }
    if found.any_other {
        headers.remove(header::TRAILER);
        headers.remove(header::TRANSFER_ENCODING);
        headers.remove(header::PROXY_AUTHORIZATION);
        headers.remove(header::PROXY_AUTHENTICATE);
        headers.remove(&KEEP_ALIVE);
        headers.remove(&PROXY_CONNECTION);
        if !upgrade {
            headers.remove(header::UPGRADE);
        }
    }
}

/// Removes `Connection` and the headers it names. On an upgrade request, `upgrade` is
/// kept as the only `Connection` token.
fn remove_connection_named(headers: &mut HeaderMap, upgrade: bool) {
    // Usually one value; several are rare and may allocate.
    let mut values = headers.get_all(header::CONNECTION).iter();
    let (first, more) = (values.next().cloned(), values.next().is_some());
    let rest: Vec<HeaderValue> = if more {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .skip(1)
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    headers.remove(header::CONNECTION);
    for value in first.iter().chain(rest.iter()) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive")
                || token.eq_ignore_ascii_case(b"upgrade")
                || token.eq_ignore_ascii_case(b"te")
            {
                // `keep-alive` is removed anyway; `close` names no header; `Upgrade`
                // and `TE` are handled with the others (an HTTP/1.1 client must name
                // `TE` in `Connection` when it sends `TE: trailers`, which is kept).
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token)
                && name != header::HOST
            {
                headers.remove(name);
            }
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, ip: std::net::IpAddr) {
    let mut buf = [0u8; 64];
    let ip = format_ip(ip, &mut buf);
    let mut existing = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    if existing.peek().is_none() {
        if let Ok(value) = HeaderValue::from_bytes(ip) {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
        return;
    }
    let mut joined = Vec::with_capacity(64);
    for value in existing {
        let value = value.as_bytes().trim_ascii();
        if value.is_empty() {
            continue;
        }
        joined.extend_from_slice(value);
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(ip);
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
}

/// Formats an IP address into `buf` without allocating (IPv4-mapped IPv6 addresses are
/// shown as IPv4). IPv4, the common case, is formatted by hand: `fmt` costs more than
/// the rest of the header work.
fn format_ip(ip: std::net::IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    use std::io::Write;
    let ip = ip.to_canonical();
    if let std::net::IpAddr::V4(v4) = ip {
        let mut len = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            if octet >= 100 {
                buf[len] = b'0' + octet / 100;
                len += 1;
            }
            if octet >= 10 {
                buf[len] = b'0' + (octet / 10) % 10;
                len += 1;
            }
            buf[len] = b'0' + octet % 10;
            len += 1;
        }
        return &buf[..len];
    }
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // 64 bytes hold the longest IPv6 text form (45 bytes): the write cannot fail.
    let _ = write!(cursor, "{ip}");
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    &buf[..len]
}

/// A random 128-bit request id as 32 lowercase hex digits, as [`prepare_request`]
/// gives a request without `X-Request-Id`.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for b in buf.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn conn(tls: bool) -> ConnectionInfo {
        let remote: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
        ConnectionInfo::new(remote, local, tls)
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut req = Request::get("/")
            .header("host", "example.com")
            .header("connection", "keep-alive, X-Secret, host")
            .header("keep-alive", "timeout=5")
            .header("x-secret", "1")
            .header("proxy-authorization", "Basic abc")
            .header("te", "trailers, gzip")
            .header("connection", "TE")
            .header("upgrade", "h2c")
            .header("x-end-to-end", "kept")
            .body(Body::empty())
            .unwrap();
        prepare_request(&mut req, Some(&conn(false)));
        let h = req.headers();
        for gone in [
            "connection",
            "keep-alive",
            "x-secret",
            "proxy-authorization",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["host"], "example.com");
        assert_eq!(h["x-end-to-end"], "kept");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-request-id"].len(), 32);
    }

    #[test]
    fn x_forwarded_for_gets_the_peer_not_the_client_found_behind_it() {
        let info = conn(false).with_client_ip("203.0.113.9".parse().unwrap());
        let mut req = Request::get("/")
            .header("host", "example.com")
            .header("x-forwarded-for", "203.0.113.9")
            .body(Body::empty())
            .unwrap();
        prepare_request(&mut req, Some(&info));
        assert_eq!(req.headers()["x-forwarded-for"], "203.0.113.9, 10.1.2.3");
    }

    #[test]
    fn an_absolute_form_authority_replaces_a_disagreeing_host() {
        let mut req = Request::get("http://app.example/x")
            .header("host", "evil.example")
            .body(Body::empty())
            .unwrap();
        prepare_request(&mut req, None);
        assert_eq!(req.headers()["host"], "app.example");
        assert_eq!(req.headers()["x-forwarded-host"], "app.example");
        // HTTP/2 style: an authority and no host header; none is added.
        let mut req = Request::get("http://app.example/x")
            .body(Body::empty())
            .unwrap();
        prepare_request(&mut req, None);
        assert!(!req.headers().contains_key("host"));
        assert_eq!(req.headers()["x-forwarded-host"], "app.example");
    }

    #[test]
    fn forwarded_for_is_appended_and_proto_overwritten() {
        let mut req = Request::get("/")
            .header("x-forwarded-for", "1.1.1.1")
            .header("x-forwarded-for", "2.2.2.2")
            .header("x-forwarded-proto", "http")
            .header("x-request-id", "abc")
            .body(Body::empty())
            .unwrap();
        prepare_request(&mut req, Some(&conn(true)));
        let h = req.headers();
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.1.2.3");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-request-id"], "abc");
    }

    #[test]
    fn upgrade_requests_keep_connection_upgrade() {
        let mut req = Request::get("/ws")
            .header("connection", "Upgrade, x-hop")
            .header("upgrade", "websocket")
            .header("x-hop", "1")
            .body(Body::empty())
            .unwrap();
        prepare_request(&mut req, None);
        let h = req.headers();
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!h.contains_key("x-hop"));
    }

    #[test]
    fn responses_lose_hop_by_hop_headers_except_101() {
        let mut rsp = Response::builder()
            .header("connection", "close")
            .header("transfer-encoding", "chunked")
            .header("content-type", "text/plain")
            .body(Body::empty())
            .unwrap();
        prepare_response(&mut rsp);
        assert!(!rsp.headers().contains_key("connection"));
        assert!(!rsp.headers().contains_key("transfer-encoding"));
        assert!(rsp.headers().contains_key("content-type"));

        let mut rsp = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Body::empty())
            .unwrap();
        prepare_response(&mut rsp);
        assert_eq!(rsp.headers()["upgrade"], "websocket");
    }

    #[test]
    fn request_ids_are_distinct_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn ipv6_and_mapped_addresses_format() {
        let mut buf = [0u8; 64];
        let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(format_ip(v6, &mut buf), b"2001:db8::1");
        let mapped: std::net::IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(format_ip(mapped, &mut buf), b"10.0.0.1");
        for ip in ["0.0.0.0", "255.255.255.255", "10.100.9.99", "1.20.199.250"] {
            let parsed: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(format_ip(parsed, &mut buf), ip.as_bytes());
        }
    }
}
