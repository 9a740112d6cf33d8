//! Where a credential is read from in a request, shared by the mechanisms that take a
//! bearer-style credential (API keys, JWTs).

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, Uri, header};

/// One place a credential may be carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// A request header. For `Authorization`, the value must start with `Bearer `
    /// (any case), which is removed.
    Header(HeaderName),
    /// A query parameter (percent-decoded; `+` is a space).
    Query(String),
    /// A cookie.
    Cookie(String),
}

impl CredentialSource {
    /// The credential this source finds in a request's head, if any. A header that
    /// repeats or is not visible ASCII gives nothing (ambiguous credentials are not
    /// guessed at).
    pub fn find<'r>(&self, uri: &'r Uri, headers: &'r HeaderMap) -> Option<Cow<'r, str>> {
        match self {
            Self::Header(name) => {
                let mut values = headers.get_all(name).iter();
                let value = values.next()?;
                if values.next().is_some() {
                    return None;
                }
                let value = value.to_str().ok()?;
                if name == header::AUTHORIZATION {
                    let (scheme, rest) = value.split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("bearer")
                        .then(|| Cow::Borrowed(rest.trim_start()))
                        .filter(|v| !v.is_empty())
                } else {
                    (!value.is_empty()).then_some(Cow::Borrowed(value))
                }
            }
            Self::Query(param) => {
                let mut found = None;
                for pair in uri.query()?.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if percent_decode(k).as_deref() == Some(param.as_str()) {
                        if found.is_some() {
                            return None;
                        }
                        found = Some(percent_decode(v)?);
                    }
                }
                found.filter(|v| !v.is_empty()).map(Cow::Owned)
            }
            Self::Cookie(name) => {
                let mut found = None;
                for (k, v) in gatekit_core::cookie::request_cookies(headers) {
                    if k == name {
                        if found.is_some() {
                            return None;
                        }
                        found = Some(v);
                    }
                }
                found.filter(|v| !v.is_empty()).map(Cow::Borrowed)
            }
        }
    }

    /// Removes this source's credential from a request head (before forwarding).
    pub fn strip(&self, uri: &mut Uri, headers: &mut HeaderMap) {
        match self {
            Self::Header(name) => {
                headers.remove(name);
            }
            Self::Query(param) => {
                let Some(query) = uri.query() else { return };
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
                        percent_decode(k).as_deref() != Some(param.as_str())
                    })
                    .collect();
                let path = uri.path();
                let pq = if kept.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}?{}", kept.join("&"))
                };
                let mut parts = uri.clone().into_parts();
                if let Ok(pq) = pq.parse() {
                    parts.path_and_query = Some(pq);
                    if let Ok(new) = Uri::from_parts(parts) {
                        *uri = new;
                    }
                }
            }
            Self::Cookie(name) => {
                let kept: Vec<String> = gatekit_core::cookie::request_cookies(headers)
                    .filter(|(k, _)| k != name)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                headers.remove(header::COOKIE);
                if !kept.is_empty()
                    && let Ok(value) = kept.join("; ").parse()
                {
                    headers.insert(header::COOKIE, value);
                }
            }
        }
    }
}

/// Percent-decodes a query component (`+` is a space); `None` when it is not UTF-8 or
/// an escape is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, headers: &[(&str, &str)]) -> (Uri, HeaderMap) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        (uri.parse().unwrap(), map)
    }

    #[test]
    fn bearer_tokens_come_from_authorization_and_other_headers_as_they_are() {
        let auth = CredentialSource::Header(header::AUTHORIZATION);
        let (u, h) = head("/", &[("authorization", "bearer  abc")]);
        assert_eq!(auth.find(&u, &h).as_deref(), Some("abc"));
        let (u, h) = head("/", &[("authorization", "Basic abc")]);
        assert_eq!(auth.find(&u, &h), None);
        let (u, h) = head(
            "/",
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
        );
        assert_eq!(auth.find(&u, &h), None, "two credentials: neither is taken");
        let key = CredentialSource::Header(HeaderName::from_static("x-api-key"));
        let (u, h) = head("/", &[("x-api-key", "k1")]);
        assert_eq!(key.find(&u, &h).as_deref(), Some("k1"));
    }

    #[test]
    fn query_credentials_are_decoded_and_stripped_without_touching_the_rest() {
        let q = CredentialSource::Query("api_key".into());
        let (mut u, mut h) = head("/p?a=1&api%5Fkey=k%2B1+2&b=2", &[]);
        assert_eq!(q.find(&u, &h).as_deref(), Some("k+1 2"));
        q.strip(&mut u, &mut h);
        assert_eq!(u.to_string(), "/p?a=1&b=2");
        let (mut u, mut h) = head("/p?api_key=x", &[]);
        q.strip(&mut u, &mut h);
        assert_eq!(u.to_string(), "/p");
        let (u, h) = head("/p?api_key=%zz", &[]);
        assert_eq!(q.find(&u, &h), None);
    }

    #[test]
    fn cookie_credentials_are_found_and_stripped() {
        let c = CredentialSource::Cookie("session".into());
        let (mut u, mut h) = head("/", &[("cookie", "a=1; session=tok; b=2")]);
        assert_eq!(c.find(&u, &h).as_deref(), Some("tok"));
        c.strip(&mut u, &mut h);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
    }
}
