//! `client_hello` and `proxy_header`: the two parsers a stream connection meets before
//! anything else, fed arbitrary bytes.

use crate::server::{ProxyHeader, ProxyVersion, encode_proxy_header, parse_proxy_header};
use crate::tls::{ClientHelloError, MAX_CLIENT_HELLO, parse_client_hello};

/// The `client_hello` target. Checks, without panicking on any input: a parsed hello's
/// SNI is a non-empty lowercase DNS-like name without a trailing dot; bytes appended after
/// a complete hello change nothing; a hello that asks for more stays within the bound;
/// refusals are of the parser's kinds only.
pub fn client_hello(data: &[u8]) {
    match parse_client_hello(data) {
        Ok(Some(info)) => {
            if let Some(name) = info.server_name() {
                assert!(!name.is_empty() && !name.ends_with('.'), "{name:?}");
                assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{name:?}");
            }
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\x17\x03\x03\x00\x01x");
            let again = parse_client_hello(&longer);
            assert!(matches!(again, Ok(Some(ref i)) if *i == info), "{again:?}");
        }
        Ok(None) => assert!(data.len() <= 6 * (MAX_CLIENT_HELLO + 9), "{}", data.len()),
        Err(
            ClientHelloError::NotTls(_)
            | ClientHelloError::TooLarge(_)
            | ClientHelloError::Malformed(_),
        ) => {}
        Err(other) => panic!("parser returned a reader's error: {other}"),
    }
}

/// The `proxy_header` target. Checks, without panicking on any input: a parsed header's
/// length is within the input and the bound; the header alone parses the same; its
/// addresses re-encoded in v1 and v2 parse back to themselves.
pub fn proxy_header(data: &[u8]) {
    let Ok(Some((header, len))) = parse_proxy_header(data) else {
        return;
    };
    assert!(len <= data.len() && len <= 16 + crate::server::proxy_protocol::MAX_V2_PAYLOAD);
    let alone = parse_proxy_header(&data[..len]);
    assert!(matches!(alone, Ok(Some((h, n))) if h == header && n == len));
    if let ProxyHeader::Proxied {
        source,
        destination,
    } = header
    {
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            let bytes = encode_proxy_header(version, source, destination);
            let back = parse_proxy_header(&bytes);
            assert!(
                matches!(back, Ok(Some((h, n))) if h == header && n == bytes.len()),
                "{version:?}: {back:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_targets_accept_their_seeds() {
        client_hello(b"");
        client_hello(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00");
        proxy_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nrest");
        proxy_header(b"PROXY UNKNOWN\r\n");
        let v2 = encode_proxy_header(
            ProxyVersion::V2,
            "[::1]:1".parse().unwrap(),
            "[::2]:2".parse().unwrap(),
        );
        proxy_header(&v2);
        // The committed seeds are what they say.
        let hello = include_bytes!("../../../../fuzz/corpus/client_hello/seed-split");
        let info = parse_client_hello(hello).unwrap().unwrap();
        assert_eq!(info.server_name(), Some("a.example.com"));
        client_hello(hello);
        let v2 = include_bytes!("../../../../fuzz/corpus/proxy_header/seed-v2");
        assert!(parse_proxy_header(v2).unwrap().is_some());
    }
}
