//! Reading the cookies a request carries.

use http::HeaderMap;
use http::header::COOKIE;

/// Every `name=value` pair of the request's `Cookie` headers, in order (RFC 6265
/// §5.4: pairs separated by `;`, surrounding whitespace trimmed). Pairs without `=` and
/// headers that are not visible ASCII are skipped.
pub fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_of_every_cookie_header_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "a=1; b=2;noeq; c=".parse().unwrap());
        headers.append(COOKIE, " d=4".parse().unwrap());
        let pairs: Vec<_> = request_cookies(&headers).collect();
        assert_eq!(pairs, [("a", "1"), ("b", "2"), ("c", ""), ("d", "4")]);
    }
}
