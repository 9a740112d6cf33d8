//! Response heads, body framing, and the `Date` header.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::response::Parts;
use http::{HeaderMap, StatusCode};

use crate::http1::has_token;

/// How a response body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all (a `HEAD` request, `204`, `304`): the body is not polled.
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`, trailers included.
    Chunked,
}

/// What [`head`] decided for a response.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) framing: Framing,
    /// The connection closes after this response.
    pub(crate) close: bool,
    /// Trailer fields the response announced (`Trailer`), sent if the body has them.
    pub(crate) trailers: bool,
}

/// Encodes the response head `parts` into `buf`: status line, the headers (framing
/// headers replaced by this codec's own), `Date` when missing, `Connection: close` when
/// `close`. `exact` is the body's exact length if known; `head_request` for `HEAD`.
/// A `1xx` response cannot be sent on a request without an upgrade: it is replaced by
/// `500` (as hyper does), and the connection closes.
pub(crate) fn head(
    parts: &Parts,
    exact: Option<u64>,
    head_request: bool,
    mut close: bool,
    buf: &mut Vec<u8>,
) -> Encoded {
    let status = parts.status;
    if status.is_informational() {
        buf.extend_from_slice(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n");
        push_date(buf);
        buf.extend_from_slice(b"connection: close\r\n\r\n");
        return Encoded {
            framing: Framing::None,
            close: true,
            trailers: false,
        };
    }
    if status == StatusCode::OK {
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        buf.extend_from_slice(b"HTTP/1.1 ");
        buf.extend_from_slice(status.as_str().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    let headers = &parts.headers;
    let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    // The length a HEAD or 304 response announces is the one it was given.
    let announced = content_length(headers);
    let mut has_date = false;
    let mut trailers = false;
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        if name == CONNECTION && has_token(value.as_bytes(), b"close") {
            close = true;
        }
        has_date |= name == DATE;
        trailers |= name == TRAILER;
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    let framing = if head_request || bodiless {
        let length = if status == StatusCode::NO_CONTENT {
            None
        } else {
            announced.or(exact.filter(|&n| n > 0))
        };
        if let Some(n) = length {
            push_length(buf, n);
        }
        Framing::None
    } else if let Some(n) = exact.or(announced) {
        push_length(buf, n);
        Framing::Length(n)
    } else {
        buf.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if !has_date {
        push_date(buf);
    }
    if close
        && !headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"close"))
    {
        buf.extend_from_slice(b"connection: close\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    Encoded {
        framing,
        close,
        trailers: trailers && framing == Framing::Chunked,
    }
}

/// The response's `Content-Length`, when it has exactly one valid value.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let digits = first.as_bytes();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn push_length(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(b"content-length: ");
    push_decimal(buf, n);
    buf.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Appends `n` in lower-case hexadecimal (a chunk size).
pub(crate) fn push_hex(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// The `Date` header line for the current second, formatted once per second per thread.
fn push_date(buf: &mut Vec<u8>) {
    thread_local! {
        static DATE_LINE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_LINE.with_borrow_mut(|(at, line)| {
        if *at != second {
            line.clear();
            line.extend_from_slice(b"date: ");
            line.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            line.extend_from_slice(b"\r\n");
            *at = second;
        }
        buf.extend_from_slice(line);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Response;

    fn encode(rsp: Response<()>, exact: Option<u64>, head_request: bool) -> (String, Encoded) {
        let (parts, ()) = rsp.into_parts();
        let mut buf = Vec::new();
        let encoded = head(&parts, exact, head_request, false, &mut buf);
        (String::from_utf8_lossy(&buf).into_owned(), encoded)
    }

    #[test]
    fn framing_follows_the_body_and_the_request() {
        let (text, e) = encode(Response::new(()), Some(5), false);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(e.framing, Framing::Length(5));

        let (text, e) = encode(Response::new(()), None, false);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert_eq!(e.framing, Framing::Chunked);

        // A HEAD response keeps the length it announces, and has no body.
        let rsp = Response::builder()
            .header("content-length", "42")
            .body(())
            .unwrap_or_default();
        let (text, e) = encode(rsp, Some(0), true);
        assert!(text.contains("content-length: 42\r\n"), "{text}");
        assert_eq!(e.framing, Framing::None);

        let rsp = Response::builder()
            .status(204)
            .header("content-length", "0")
            .body(())
            .unwrap_or_default();
        let (text, e) = encode(rsp, Some(0), false);
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
        assert!(!text.contains("content-length"), "{text}");
        assert_eq!(e.framing, Framing::None);
    }

    #[test]
    fn the_body_length_wins_over_a_stale_header_and_framing_headers_are_ours() {
        let rsp = Response::builder()
            .header("content-length", "3")
            .header("transfer-encoding", "gzip")
            .header("date", "Mon, 07 Dec 2026 00:00:00 GMT")
            .header("connection", "close")
            .body(())
            .unwrap_or_default();
        let (text, e) = encode(rsp, Some(7), false);
        assert!(text.contains("content-length: 7\r\n"), "{text}");
        assert!(!text.contains("content-length: 3"), "{text}");
        assert!(!text.contains("gzip"), "{text}");
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert_eq!(text.matches("connection: close").count(), 1, "{text}");
        assert!(e.close);
    }

    #[test]
    fn informational_responses_become_500() {
        let rsp = Response::builder().status(103).body(()).unwrap_or_default();
        let (text, e) = encode(rsp, None, false);
        assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
        assert!(e.close);
    }

    #[test]
    fn numbers() {
        let mut buf = Vec::new();
        push_decimal(&mut buf, 0);
        buf.push(b' ');
        push_decimal(&mut buf, 18_446_744_073_709_551_615);
        buf.push(b' ');
        push_hex(&mut buf, 0);
        buf.push(b' ');
        push_hex(&mut buf, 0xfa3);
        assert_eq!(buf, b"0 18446744073709551615 0 fa3");
    }
}
