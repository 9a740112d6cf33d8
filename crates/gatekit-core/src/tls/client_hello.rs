//! Reading a TLS ClientHello without consuming it: the SNI name and ALPN protocols a
//! client asks for, so a connection can be routed before (or instead of) terminating TLS.
//!
//! # What is read
//!
//! TLS records (RFC 8446 §5.1) of type `handshake` carrying one `client_hello` message
//! (§4.1.2), possibly split across several records. From its extensions:
//! `server_name` (RFC 6066 §3, the `host_name` entry, lowercased, without a trailing dot)
//! and `application_layer_protocol_negotiation` (RFC 7301). Everything else is skipped
//! after its length is checked.
//!
//! # Bounds
//!
//! The ClientHello message may be at most [`MAX_CLIENT_HELLO`] (16 KiB) long; the bytes
//! buffered are at most that plus the record and handshake headers of the records it
//! spans. A first byte that is not a handshake record is [`ClientHelloError::NotTls`]; a
//! larger hello is [`ClientHelloError::TooLarge`]; anything inconsistent is
//! [`ClientHelloError::Malformed`]. [`peek_client_hello`] reads under a deadline.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::stream::Rewind;

/// The largest ClientHello message accepted (the handshake message, without headers).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// How long [`peek_client_hello`] waits for a whole ClientHello unless told otherwise.
pub const DEFAULT_CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);

const RECORD_HEADER: usize = 5;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;

/// What a ClientHello asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHelloInfo {
    server_name: Option<Box<str>>,
    alpn: Vec<Box<[u8]>>,
}

impl ClientHelloInfo {
    /// The SNI host name, lowercased and without a trailing dot; `None` when the client
    /// sent none.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The ALPN protocols offered, in the client's order (empty without the extension).
    pub fn alpn_protocols(&self) -> impl Iterator<Item = &[u8]> {
        self.alpn.iter().map(|p| &**p)
    }
}

/// Why a connection's first bytes are not a usable ClientHello.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientHelloError {
    /// The first record is not a TLS handshake record.
    #[error("not a TLS handshake (first byte {0:#04x})")]
    NotTls(u8),
    /// The ClientHello is longer than [`MAX_CLIENT_HELLO`].
    #[error("ClientHello of {0} bytes is larger than {MAX_CLIENT_HELLO}")]
    TooLarge(usize),
    /// The bytes are not a well-formed ClientHello.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// The connection ended before a whole ClientHello came.
    #[error("connection closed before a whole ClientHello")]
    Eof,
    /// No whole ClientHello within the deadline.
    #[error("no whole ClientHello within {0:?}")]
    Timeout(Duration),
    /// Reading the connection failed.
    #[error("reading the ClientHello failed")]
    Io(#[source] std::io::Error),
}

/// Parses the ClientHello at the start of `buf` (TLS records as received).
/// `Ok(None)`: the bytes so far are a valid beginning; more are needed.
///
/// # Errors
///
/// See [`ClientHelloError`] (never `Eof`, `Timeout` or `Io`).
pub fn parse_client_hello(buf: &[u8]) -> Result<Option<ClientHelloInfo>, ClientHelloError> {
    // Reassemble the handshake message from the records' fragments.
    let mut message: Vec<u8> = Vec::new();
    let mut rest = buf;
    let mut needed: Option<usize> = None;
    loop {
        if let Some(first) = rest.first()
            && *first != CONTENT_HANDSHAKE
        {
            return Err(if message.is_empty() && rest.len() == buf.len() {
                ClientHelloError::NotTls(*first)
            } else {
                ClientHelloError::Malformed("a record of another type inside the ClientHello")
            });
        }
        if rest.len() < RECORD_HEADER {
            return Ok(None);
        }
        if rest[1] != 3 {
            return Err(ClientHelloError::Malformed("record version is not 3.x"));
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 {
            return Err(ClientHelloError::Malformed("empty handshake record"));
        }
        if len > MAX_CLIENT_HELLO + 4 {
            return Err(ClientHelloError::TooLarge(len));
        }
        let Some(fragment) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            // Still check what the partial fragment says about the message length.
            let partial = &rest[RECORD_HEADER..];
            message.extend_from_slice(partial);
            check_header(&message)?;
            return Ok(None);
        };
        message.extend_from_slice(fragment);
        rest = &rest[RECORD_HEADER + len..];
        if needed.is_none() {
            needed = check_header(&message)?;
        }
        if let Some(total) = needed
            && message.len() >= total
        {
            if message.len() > total {
                // TLS allows another handshake message after it; a client sends none.
                return Err(ClientHelloError::Malformed(
                    "bytes after the ClientHello in its records",
                ));
            }
            return parse_body(&message[4..]).map(Some);
        }
    }
}

/// The whole handshake message's length (header included) once its header is there.
fn check_header(message: &[u8]) -> Result<Option<usize>, ClientHelloError> {
    let Some(&kind) = message.first() else {
        return Ok(None);
    };
    if kind != HANDSHAKE_CLIENT_HELLO {
        return Err(ClientHelloError::Malformed(
            "first handshake message is not a ClientHello",
        ));
    }
    let Some(len) = message.get(1..4) else {
        return Ok(None);
    };
    let len = (usize::from(len[0]) << 16) | (usize::from(len[1]) << 8) | usize::from(len[2]);
    if len > MAX_CLIENT_HELLO {
        return Err(ClientHelloError::TooLarge(len));
    }
    Ok(Some(len + 4))
}

/// A cursor over a byte slice whose reads fail as `Malformed`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ClientHelloError> {
        if self.0.len() < n {
            return Err(ClientHelloError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ClientHelloError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ClientHelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], ClientHelloError> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }

    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], ClientHelloError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }
}

fn parse_body(body: &[u8]) -> Result<ClientHelloInfo, ClientHelloError> {
    let mut r = Reader(body);
    r.take(2, "legacy_version")?;
    r.take(32, "random")?;
    let session_id = r.vec8("legacy_session_id")?;
    if session_id.len() > 32 {
        return Err(ClientHelloError::Malformed("session id longer than 32"));
    }
    let suites = r.vec16("cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(ClientHelloError::Malformed("cipher_suites"));
    }
    if r.vec8("legacy_compression_methods")?.is_empty() {
        return Err(ClientHelloError::Malformed("no compression method"));
    }
    let mut info = ClientHelloInfo::default();
    if r.0.is_empty() {
        // A hello without extensions (TLS 1.2 allows it).
        return Ok(info);
    }
    let mut exts = Reader(r.vec16("extensions")?);
    if !r.0.is_empty() {
        return Err(ClientHelloError::Malformed("bytes after the extensions"));
    }
    let (mut seen_sni, mut seen_alpn) = (false, false);
    while !exts.0.is_empty() {
        let kind = exts.u16("extension type")?;
        let data = exts.vec16("extension data")?;
        match kind {
            EXT_SERVER_NAME => {
                if std::mem::replace(&mut seen_sni, true) {
                    return Err(ClientHelloError::Malformed("two server_name extensions"));
                }
                info.server_name = parse_sni(data)?;
            }
            EXT_ALPN => {
                if std::mem::replace(&mut seen_alpn, true) {
                    return Err(ClientHelloError::Malformed("two ALPN extensions"));
                }
                info.alpn = parse_alpn(data)?;
            }
            _ => {}
        }
    }
    Ok(info)
}

fn parse_sni(data: &[u8]) -> Result<Option<Box<str>>, ClientHelloError> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16("server_name_list")?);
    if !outer.0.is_empty() {
        return Err(ClientHelloError::Malformed("bytes after server_name_list"));
    }
    let mut name = None;
    while !list.0.is_empty() {
        let kind = list.u8("server name type")?;
        let value = list.vec16("server name")?;
        if kind != 0 {
            continue;
        }
        if name.is_some() {
            return Err(ClientHelloError::Malformed("two host_name entries"));
        }
        let value = value.strip_suffix(b".").unwrap_or(value);
        // A DNS name: labels of 1 to 63 letters, digits, '-' or '_', at most 253 in all.
        let valid = !value.is_empty()
            && value.len() <= 253
            && value.split(|&b| b == b'.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            });
        if !valid {
            return Err(ClientHelloError::Malformed("host_name is not a DNS name"));
        }
        let lower = value.to_ascii_lowercase();
        // Checked above: ASCII only.
        let lower = String::from_utf8(lower)
            .map_err(|_| ClientHelloError::Malformed("host_name is not ASCII"))?;
        name = Some(lower.into_boxed_str());
    }
    Ok(name)
}

fn parse_alpn(data: &[u8]) -> Result<Vec<Box<[u8]>>, ClientHelloError> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16("protocol_name_list")?);
    if !outer.0.is_empty() {
        return Err(ClientHelloError::Malformed(
            "bytes after protocol_name_list",
        ));
    }
    let mut protocols = Vec::new();
    while !list.0.is_empty() {
        let p = list.vec8("protocol name")?;
        if p.is_empty() {
            return Err(ClientHelloError::Malformed("empty protocol name"));
        }
        protocols.push(p.into());
    }
    Ok(protocols)
}

/// Whether a record of `buf` ends after byte `before` (the bytes read before the last
/// read): one more record became whole.
fn new_record_complete(buf: &[u8], before: usize) -> bool {
    let mut at = 0;
    while let Some(header) = buf.get(at..at + RECORD_HEADER) {
        let end = at + RECORD_HEADER + usize::from(u16::from_be_bytes([header[3], header[4]]));
        if end > buf.len() {
            return false;
        }
        if end > before {
            return true;
        }
        at = end;
    }
    false
}

/// Reads `io` until a whole ClientHello has come (at most `timeout`) and returns what it
/// asks for with a stream that replays every byte read: the handshake can then be
/// relayed (passthrough) or terminated as if nothing had been read.
///
/// # Errors
///
/// See [`ClientHelloError`]; the connection should then be closed.
pub async fn peek_client_hello<IO>(
    mut io: IO,
    timeout: Duration,
) -> Result<(ClientHelloInfo, Rewind<IO>), ClientHelloError>
where
    IO: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            if buf.len() >= MAX_CLIENT_HELLO + 1024 {
                return Err(ClientHelloError::TooLarge(buf.len()));
            }
            let n = io.read_buf(&mut buf).await.map_err(ClientHelloError::Io)?;
            if n == 0 {
                return Err(ClientHelloError::Eof);
            }
            // After a first parse (which refuses what is not TLS at once), parse again
            // only once another record is whole: a client dribbling bytes costs a header
            // walk per read, not a parse.
            let before = buf.len() - n;
            if before >= RECORD_HEADER && !new_record_complete(&buf, before) {
                continue;
            }
            if let Some(info) = parse_client_hello(&buf)? {
                return Ok(info);
            }
        }
    };
    let info = match tokio::time::timeout(timeout, read).await {
        Ok(result) => result?,
        Err(_) => return Err(ClientHelloError::Timeout(timeout)),
    };
    Ok((info, Rewind::with_prefix(io, buf.freeze())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The bytes a real rustls client sends first.
    fn rustls_hello(sni: Option<&str>, alpn: &[&[u8]]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.enable_sni = sni.is_some();
        let name =
            rustls::pki_types::ServerName::try_from(sni.unwrap_or("ignored.test").to_owned())
                .unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    /// The same handshake message cut into records of at most `size` bytes.
    fn split(hello: &[u8], size: usize) -> Vec<u8> {
        let message = &hello[RECORD_HEADER..];
        let mut out = Vec::new();
        for chunk in message.chunks(size) {
            out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn real_client_hellos_parse() {
        let hello = rustls_hello(Some("API.Example.com"), &[b"h2", b"http/1.1"]);
        let info = parse_client_hello(&hello).unwrap().unwrap();
        assert_eq!(info.server_name(), Some("api.example.com"));
        assert_eq!(
            info.alpn_protocols().collect::<Vec<_>>(),
            [&b"h2"[..], b"http/1.1"]
        );

        let none = parse_client_hello(&rustls_hello(None, &[]))
            .unwrap()
            .unwrap();
        assert_eq!(none.server_name(), None);
        assert_eq!(none.alpn_protocols().count(), 0);

        // Split across records, one byte each or 100 each: the same facts.
        for size in [1, 100] {
            let split = split(&hello, size);
            assert_eq!(parse_client_hello(&split).unwrap().unwrap(), info, "{size}");
        }
    }

    #[test]
    fn truncated_hellos_ask_for_more() {
        let hello = rustls_hello(Some("a.test"), &[b"h2"]);
        for cut in 0..hello.len() {
            assert!(
                parse_client_hello(&hello[..cut]).unwrap().is_none(),
                "{cut}"
            );
        }
        let split = split(&hello, 37);
        for cut in 0..split.len() {
            assert!(
                parse_client_hello(&split[..cut]).unwrap().is_none(),
                "{cut}"
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            Err(ClientHelloError::NotTls(b'G'))
        ));
        // A handshake record whose message is not a ClientHello.
        assert!(matches!(
            parse_client_hello(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Err(ClientHelloError::Malformed(_))
        ));
        // A declared hello larger than 16 KiB.
        assert!(matches!(
            parse_client_hello(&[22, 3, 1, 0, 4, 1, 1, 0, 0]),
            Err(ClientHelloError::TooLarge(_))
        ));
        // A length inside the hello pointing past its end.
        let mut hello = rustls_hello(Some("a.test"), &[]);
        hello[RECORD_HEADER + 4 + 34] = 200; // session id length
        assert!(matches!(
            parse_client_hello(&hello),
            Err(ClientHelloError::Malformed(_))
        ));
        // SNIs that are not DNS names: a space, an empty label (found by the fuzzer).
        let good = rustls_hello(Some("abc.test"), &[]);
        let at = good.windows(8).position(|w| w == b"abc.test").unwrap();
        for (i, byte) in [(0, b' '), (4, b'.')] {
            let mut bad = good.clone();
            bad[at + i] = byte;
            assert!(
                matches!(
                    parse_client_hello(&bad),
                    Err(ClientHelloError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(&bad[at..at + 8])
            );
        }
    }

    #[tokio::test]
    async fn a_peeked_hello_is_replayed_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let hello = split(&rustls_hello(Some("b.test"), &[]), 50);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(&hello).await.unwrap();
        client.write_all(b"after").await.unwrap();
        drop(client);
        let (info, mut io) = peek_client_hello(server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(info.server_name(), Some("b.test"));
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, [hello.as_slice(), b"after"].concat());

        // Dribbled one byte per write, split in records of 7: still found.
        let split7 = split(&rustls_hello(Some("c.test"), &[]), 7);
        let (mut client, server) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            for b in split7 {
                client.write_all(&[b]).await.unwrap();
            }
            client
        });
        let (info, _) = peek_client_hello(server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(info.server_name(), Some("c.test"));
        drop(writer.await.unwrap());

        // Not TLS: refused with the first bytes, without waiting for more.
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(
            peek_client_hello(server, Duration::from_secs(60)).await,
            Err(ClientHelloError::NotTls(b'G'))
        ));
        drop(client);

        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(&hello[..10]).await.unwrap();
        drop(client);
        assert!(matches!(
            peek_client_hello(server, Duration::from_secs(5)).await,
            Err(ClientHelloError::Eof)
        ));
    }
}
