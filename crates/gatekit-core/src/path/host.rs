//! The `Host` of a request: exactly one, and well formed (RFC 9112 §3.2, RFC 9113 §8.3.1).
//!
//! Routing chooses a route by host name. A request that carries two `Host` lines lets a
//! client have the gateway route on one name while something behind it acts on the
//! other, a bypass of host-based routing (and of host-scoped policy). So, before
//! routing:
//!
//! - more than one `Host` field: refused, whatever the version;
//! - an HTTP/1.1 request with no `Host`: refused (RFC 9112 §3.2 says MUST answer 400);
//!   HTTP/1.0 may omit it, and HTTP/2 carries the authority in `:authority`;
//! - a `Host` that is not `uri-host [ ":" port ]` (RFC 9110 §7.2): refused; the empty
//!   value RFC 9112 allows for a target without authority is accepted;
//! - HTTP/2 with both `:authority` and a `host` naming another authority: refused
//!   (RFC 9113 §8.3.1).
//!
//! An HTTP/1.1 absolute-form target whose authority disagrees with `Host` is not refused:
//! RFC 9112 §3.2.2 says the target's authority wins, and it is what routes the request
//! and what the upstream receives (see [`proxy`](crate::proxy)).

use http::{HeaderValue, Request, Version, header};

use super::HostError;

/// Checks the `Host` of `req` before routing (RFC 9112 §3.2, RFC 9113 §8.3.1): more
/// than one `Host` field is refused whatever the version (two names let a client route
/// on one while the backend acts on the other); an HTTP/1.1 request without one is
/// refused; a value that is not `uri-host [":" port]` (empty is allowed) is refused; an
/// HTTP/2 `host` naming another authority than `:authority` is refused. An HTTP/1.1
/// absolute-form target's authority wins over a disagreeing `Host` (RFC 9112 §3.2.2)
/// and is not refused.
///
/// # Errors
///
/// [`HostError`] says which rule the request broke; each is answered `400 Bad Request`.
pub fn check_host<B>(req: &Request<B>) -> Result<(), HostError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Duplicate);
    }
    let Some(host) = host else {
        return if req.version() == Version::HTTP_11 {
            Err(HostError::Missing)
        } else {
            Ok(())
        };
    };
    if !valid_host(host.as_bytes()) {
        return Err(HostError::Invalid);
    }
    if req.version() == Version::HTTP_2
        && let Some(authority) = req.uri().authority()
        && !same_authority(authority.as_str(), host)
    {
        return Err(HostError::Conflicting);
    }
    Ok(())
}

fn same_authority(authority: &str, host: &HeaderValue) -> bool {
    authority.as_bytes().eq_ignore_ascii_case(host.as_bytes())
}

/// `uri-host [ ":" port ]`, or empty. `uri-host` is an IP literal in brackets (IPv6 or
/// IPvFuture characters, checked loosely) or a reg-name: unreserved, sub-delims and
/// percent-escapes. No userinfo, no path, no whitespace.
fn valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host, port) = if value[0] == b'[' {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'))
        {
            return false;
        }
        (&value[..=end], &value[end + 1..])
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        }
    };
    if host.first() != Some(&b'[') && !reg_name(host) {
        return false;
    }
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

fn reg_name(host: &[u8]) -> bool {
    if host.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            let hex = host.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        let sub_delim = matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        );
        if !unreserved && !sub_delim {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn one_valid_host_passes() {
        for host in [
            "app.example",
            "app.example:8080",
            "127.0.0.1:80",
            "[::1]:443",
            "[::1]",
            "xn--bcher-kva.example",
            "a%41b.example",
            "",
            "app.example:",
        ] {
            assert_eq!(
                check_host(&req(Version::HTTP_11, "/", &[host])),
                Ok(()),
                "{host:?}"
            );
        }
    }

    #[test]
    fn two_hosts_are_refused_even_when_equal() {
        for v in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
            assert_eq!(
                check_host(&req(v, "/", &["a.example", "a.example"])),
                Err(HostError::Duplicate)
            );
        }
        assert_eq!(
            check_host(&req(Version::HTTP_11, "/", &["a.example", "b.example"])),
            Err(HostError::Duplicate)
        );
    }

    #[test]
    fn a_missing_host_is_refused_on_http_1_1_only() {
        assert_eq!(
            check_host(&req(Version::HTTP_11, "/", &[])),
            Err(HostError::Missing)
        );
        assert_eq!(check_host(&req(Version::HTTP_10, "/", &[])), Ok(()));
        assert_eq!(
            check_host(&req(Version::HTTP_2, "https://a.example/", &[])),
            Ok(())
        );
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for host in [
            "user@app.example",
            "app.example/path",
            "app.example:80:81",
            "app.example:http",
            "app.example:123456",
            "a b.example",
            "a%4.example",
            "[::1",
            "[]",
            "[::1]x",
            "[::g]",
            ":80",
            "app.example?x",
            "app.example#x",
        ] {
            assert_eq!(
                check_host(&req(Version::HTTP_11, "/", &[host])),
                Err(HostError::Invalid),
                "{host:?}"
            );
        }
    }

    #[test]
    fn http2_authority_and_host_must_agree() {
        let r = req(Version::HTTP_2, "https://a.example/", &["b.example"]);
        assert_eq!(check_host(&r), Err(HostError::Conflicting));
        let r = req(Version::HTTP_2, "https://a.example/", &["A.example"]);
        assert_eq!(check_host(&r), Ok(()));
        // HTTP/1.1 absolute form: the target's authority wins (RFC 9112 §3.2.2).
        let r = req(Version::HTTP_11, "http://a.example/", &["b.example"]);
        assert_eq!(check_host(&r), Ok(()));
    }
}
