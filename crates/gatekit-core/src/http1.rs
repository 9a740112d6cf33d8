//! Pieces the HTTP/1.1 codecs share: the client's (`client/h1.rs`) and the server's
//! (`server/h1`).

/// Where a head's header fields are, as offsets into the buffer the head was parsed
/// from: name start, name end, value start, value end.
pub(crate) type Span = (u32, u32, u32, u32);

/// Records in `spans` where each of `headers` (parsed by `httparse` from the buffer
/// starting at address `base`) lies; returns how many it recorded. The offsets fit in
/// `u32`: both codecs refuse heads over 64 KiB before they get here.
pub(crate) fn header_spans(
    base: usize,
    headers: &[httparse::Header<'_>],
    spans: &mut [Span],
) -> usize {
    let mut count = 0;
    for (span, h) in spans.iter_mut().zip(headers) {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        *span = (
            name as u32,
            (name + h.name.len()) as u32,
            value as u32,
            (value + h.value.len()) as u32,
        );
        count += 1;
    }
    count
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}
