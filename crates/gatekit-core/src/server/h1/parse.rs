//! Request heads: what this codec serves itself, and what it leaves to hyper.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use crate::Body;
use crate::http1::{has_token, header_spans};

/// The most header fields in a request head: hyper's fixed default, which the declined
/// heads meet (431 beyond).
pub(crate) const MAX_HEADERS: usize = 100;

/// The largest request head, request line and headers (64 KiB, the server's limit for
/// hyper too): a longer one is declined, and hyper answers it `431`.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// Header fields that make a request hyper's to serve: a body's framing, an upgrade,
/// an expectation.
const DECLINED: [&[u8]; 4] = [
    b"content-length",
    b"transfer-encoding",
    b"upgrade",
    b"expect",
];

/// What the bytes at the start of a connection's buffer are.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per request, moved into the service: boxing would allocate per request"
)]
pub(crate) enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A request without a body that this codec serves; its head has been split off the
    /// buffer.
    Request {
        /// The request, with an empty body.
        request: Request<Body>,
        /// `false` when the client asked to close after it (`Connection: close`).
        keep_alive: bool,
    },
    /// Anything else: a request with a body or framing headers (`Content-Length`,
    /// `Transfer-Encoding`), an upgrade, `CONNECT`, an `Expect`, HTTP/1.0, the HTTP/2
    /// preface, a malformed head or one over the limits. The connection goes to hyper
    /// from these bytes on, and hyper's verdict is the answer (400, 431...). Nothing has
    /// been taken from the buffer.
    Decline,
}

/// Header fields most requests stay within: parsed with arrays this long first (they are
/// initialised for every head), and again with [`MAX_HEADERS`] only for a head with more.
const FEW_HEADERS: usize = 32;

/// More header fields than the arrays had room for.
struct TooMany;

/// Parses the request head at the start of `buf` (see [`Parsed`]).
pub(crate) fn parse(buf: &mut BytesMut) -> Parsed {
    match parse_with::<FEW_HEADERS>(buf) {
        Ok(parsed) => parsed,
        Err(TooMany) => parse_with::<MAX_HEADERS>(buf).unwrap_or(Parsed::Decline),
    }
}

/// [`parse`] with room for `N` header fields.
fn parse_with<const N: usize>(buf: &mut BytesMut) -> Result<Parsed, TooMany> {
    // Header positions as offsets into the buffer, so the head can be split off (frozen)
    // once the parser's borrow ends.
    let mut spans = [(0u32, 0u32, 0u32, 0u32); N];
    let (len, method, target, count) = {
        let mut headers = [httparse::EMPTY_HEADER; N];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(TooMany),
            Ok(httparse::Status::Partial) | Err(_) => return Ok(Parsed::Decline),
        };
        if len > MAX_HEAD || req.version != Some(1) {
            return Ok(Parsed::Decline);
        }
        let (Some(method), Some(path)) = (req.method, req.path) else {
            return Ok(Parsed::Decline);
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Ok(Parsed::Decline);
        };
        if method == Method::CONNECT {
            return Ok(Parsed::Decline);
        }
        let base = buf.as_ptr() as usize;
        let target = (path.as_ptr() as usize - base, path.len());
        // Offsets are below MAX_HEAD (checked above).
        let count = header_spans(base, req.headers, &mut spans);
        (len, method, target, count)
    };
    // Checked on the raw names before anything is taken from the buffer, so a decline
    // leaves it whole.
    let mut keep_alive = true;
    for &(ns, ne, vs, ve) in &spans[..count] {
        let name = &buf[ns as usize..ne as usize];
        if DECLINED.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            return Ok(Parsed::Decline);
        }
        if name.eq_ignore_ascii_case(b"connection")
            && has_token(&buf[vs as usize..ve as usize], b"close")
        {
            keep_alive = false;
        }
    }
    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)) else {
        return Ok(restore(buf, head));
    };
    let mut headers = HeaderMap::with_capacity(count);
    for &(ns, ne, vs, ve) in &spans[..count] {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&head[ns as usize..ne as usize]),
            HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize)),
        ) else {
            return Ok(restore(buf, head));
        };
        headers.append(name, value);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(Parsed::Request {
        request,
        keep_alive,
    })
}

/// Puts a head taken off `buf` back in front of what follows it, and declines.
fn restore(buf: &mut BytesMut, head: Bytes) -> Parsed {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(buf);
    *buf = whole;
    Parsed::Decline
}
