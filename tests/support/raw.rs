//! Raw clients for hostile-input tests: bytes written as they are on a TCP (or TLS)
//! stream, HTTP/2 frames built by hand, and the process's resident memory.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What a raw exchange got back.
#[derive(Debug)]
pub struct RawReply {
    /// Everything read, lossily as text.
    pub text: String,
    /// Whether the peer closed the connection (EOF or reset) before the deadline.
    pub closed: bool,
    /// When the close was seen, measured from the end of the write.
    pub closed_after: Option<Duration>,
}

impl RawReply {
    /// The status code of each HTTP/1 response head in the reply, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.text
            .split("\r\n")
            .filter(|l| l.starts_with("HTTP/1."))
            .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
            .collect()
    }

    /// The first status code.
    pub fn status(&self) -> Option<u16> {
        self.statuses().first().copied()
    }
}

/// Reads from `io` until EOF (or a reset) or `within` has passed.
pub async fn read_until_close<IO: AsyncRead + Unpin>(io: &mut IO, within: Duration) -> RawReply {
    let start = Instant::now();
    let deadline = start + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut closed = false;
    loop {
        match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    RawReply {
        text: String::from_utf8_lossy(&buf).into_owned(),
        closed,
        closed_after: closed.then(|| start.elapsed()),
    }
}

/// Connects, writes `bytes`, and reads until the server closes or `within` passes.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> RawReply {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // A server may answer and close before everything is written; that is fine.
    let _ = tcp.write_all(bytes).await;
    read_until_close(&mut tcp, within).await
}

/// Reads one HTTP/1 response head and a `content-length` body (no chunked bodies):
/// enough for the echo backend's and the gateway's small responses on a kept-alive
/// connection. Returns (status, head text, body).
pub async fn read_response<IO: AsyncRead + Unpin>(io: &mut IO) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut byte))
            .await
            .expect("response head within 5 s")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut body))
        .await
        .expect("body within 5 s")
        .unwrap();
    (status, head, body)
}

/// The resident set size of this process in KiB (Linux `/proc/self/status`).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// === HTTP/2 frames ===

/// The client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub mod frame {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
}

/// One HTTP/2 frame as bytes.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 24);
    let mut out = Vec::with_capacity(9 + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK string literal (no Huffman); lengths up to 2^21.
pub fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix and the given first-byte flags.
pub fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name.
pub fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_string(out, name);
    hpack_string(out, value);
}

/// A header block for `method path` on `authority` (scheme http), static-table
/// indexed pseudo-headers and literal `:path`/`:authority`.
pub fn hpack_request(method_post: bool, path: &str, authority: &str) -> Vec<u8> {
    let mut out = vec![if method_post { 0x83 } else { 0x82 }, 0x86];
    // :path, literal without indexing, indexed name 4.
    out.push(0x04);
    hpack_string(&mut out, path.as_bytes());
    // :authority, literal without indexing, indexed name 1.
    out.push(0x01);
    hpack_string(&mut out, authority.as_bytes());
    out
}

/// What a raw HTTP/2 client saw from the server.
#[derive(Debug, Default)]
pub struct H2Seen {
    /// Frames received, by type.
    pub frames: std::collections::HashMap<u8, usize>,
    /// The GOAWAY error code, if one came.
    pub goaway: Option<u32>,
    /// RST_STREAM error codes received.
    pub resets: Vec<u32>,
    /// `:status` values of HEADERS frames whose first byte was a static-table status
    /// index (0x88 = 200 ... 0x8e = 500), as codes.
    pub statuses: Vec<u16>,
    /// Whether the connection was closed.
    pub closed: bool,
    /// The first HEADERS frame's header block.
    pub first_headers: Option<Vec<u8>>,
    /// Whether the ACK of the [`FINAL_PING`] came.
    pub final_pong: bool,
}

/// The payload of the PING a flood ends with: its ACK tells the reader that every frame
/// before it was processed.
pub const FINAL_PING: [u8; 8] = *b"lastping";

/// Reads frames from `io` until the connection closes, `within` passes, the ACK of a
/// [`FINAL_PING`] comes, or (when `stop_on_goaway`) a GOAWAY or (when `stop_on_headers`)
/// a HEADERS frame comes.
pub async fn h2_read<IO: AsyncRead + Unpin>(
    io: &mut IO,
    within: Duration,
    stop_on_goaway: bool,
    stop_on_headers: bool,
) -> H2Seen {
    let deadline = Instant::now() + within;
    let mut seen = H2Seen::default();
    let mut head = [0u8; 9];
    loop {
        match tokio::time::timeout_at(deadline, io.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                seen.closed = true;
                return seen;
            }
            Err(_) => return seen,
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let kind = head[3];
        let mut payload = vec![0u8; len];
        match tokio::time::timeout_at(deadline, io.read_exact(&mut payload)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                seen.closed = true;
                return seen;
            }
            Err(_) => return seen,
        }
        *seen.frames.entry(kind).or_default() += 1;
        match kind {
            frame::GOAWAY if len >= 8 => {
                seen.goaway = Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
                if stop_on_goaway {
                    return seen;
                }
            }
            frame::RST_STREAM if len >= 4 => {
                seen.resets.push(u32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]));
            }
            frame::HEADERS => {
                if seen.first_headers.is_none() {
                    seen.first_headers = Some(payload.clone());
                }
                if let Some(status) = hpack_status(&payload) {
                    seen.statuses.push(status);
                }
                if stop_on_headers {
                    return seen;
                }
            }
            frame::PING if head[4] & flag::ACK != 0 && payload == FINAL_PING => {
                seen.final_pong = true;
                return seen;
            }
            _ => {}
        }
    }
}

/// The `:status` of a header block when it comes first, as h2 encodes it: a static
/// table index (200, 204, 206, 304, 400, 404, 500) or a literal with name index 8, its
/// value plain or Huffman-coded (digits only).
pub fn hpack_status(block: &[u8]) -> Option<u16> {
    let first = *block.first()?;
    if (0x88..=0x8e).contains(&first) {
        return Some([200, 204, 206, 304, 400, 404, 500][usize::from(first - 0x88)]);
    }
    let literal =
        (first & 0xc0 == 0x40 && first & 0x3f == 8) || (first & 0xe0 == 0 && first & 0x0f == 8);
    if !literal {
        return None;
    }
    let len = usize::from(block.get(1)? & 0x7f);
    let value = block.get(2..2 + len)?;
    let text = if block[1] & 0x80 == 0 {
        String::from_utf8(value.to_vec()).ok()?
    } else {
        // RFC 7541 Appendix B: '0'-'2' are 5-bit codes 0-2, '3'-'9' 6-bit codes 0x19-0x1f.
        let bits: Vec<u8> = value
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
            .collect();
        let mut at = 0;
        let mut out = String::new();
        while out.len() < 3 && at + 5 <= bits.len() {
            let five = bits[at..at + 5].iter().fold(0u8, |v, b| v << 1 | b);
            if five <= 2 {
                out.push(char::from(b'0' + five));
                at += 5;
            } else {
                let six = five << 1 | *bits.get(at + 5)?;
                if !(0x19..=0x1f).contains(&six) {
                    return None;
                }
                out.push(char::from(b'3' + six - 0x19));
                at += 6;
            }
        }
        out
    };
    text.parse().ok()
}

/// A raw HTTP/2 (prior knowledge) connection: the preface and an empty SETTINGS sent.
pub async fn h2_connect(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(H2_PREFACE).await.unwrap();
    tcp.write_all(&h2_frame(frame::SETTINGS, 0, 0, &[]))
        .await
        .unwrap();
    tcp
}

/// Writes `bytes`, ignoring a failure (the server may have closed on us, which is what
/// some tests wait for). Returns whether the write went through.
pub async fn write_lossy<IO: AsyncWrite + Unpin>(io: &mut IO, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), io.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Floods a fresh HTTP/2 connection: `setup` once, then `frame` `count` times (written
/// in batches while a reader takes the server's frames), then a [`FINAL_PING`].
/// Returns what the server sent (until GOAWAY, close, the final PING's ACK or 10 s) and
/// how many flood frames were written before the server stopped taking them.
pub async fn h2_flood(
    addr: SocketAddr,
    setup: &[u8],
    frame: &[u8],
    count: usize,
) -> (H2Seen, usize) {
    let tcp = h2_connect(addr).await;
    let (mut rd, mut wr) = tcp.into_split();
    let reader =
        tokio::spawn(async move { h2_read(&mut rd, Duration::from_secs(10), true, false).await });
    let mut written = 0;
    if write_lossy(&mut wr, setup).await {
        const BATCH: usize = 500;
        let batch: Vec<u8> = frame.repeat(BATCH);
        while written < count {
            if !write_lossy(&mut wr, &batch).await {
                break;
            }
            written += BATCH;
        }
        write_lossy(&mut wr, &h2_frame(frame::PING, 0, 0, &FINAL_PING)).await;
    }
    let seen = reader.await.unwrap();
    (seen, written)
}

/// `GET path` on a fresh HTTP/2 connection: the response's status, if one came.
pub async fn h2_get(addr: SocketAddr, path: &str, authority: &str) -> Option<u16> {
    let mut tcp = h2_connect(addr).await;
    let headers = h2_frame(
        frame::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &hpack_request(false, path, authority),
    );
    if !write_lossy(&mut tcp, &headers).await {
        return None;
    }
    let seen = h2_read(&mut tcp, Duration::from_secs(5), true, true).await;
    seen.statuses.first().copied()
}
