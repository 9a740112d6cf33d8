//! The PROXY protocol (HAProxy's, versions 1 and 2): a header a load balancer in front of
//! gatekit puts at the start of a connection to say whom it came from, and the same
//! header gatekit writes to a backend that wants to know.
//!
//! # Reading (opt-in, per listener)
//!
//! [`ServerConfig::proxy_protocol`](super::ServerConfig::proxy_protocol) with a
//! [`ProxyProtocol`]: from a source address inside one of its trusted ranges the header
//! is read before anything else (TLS, HTTP, a stream route) and its source address
//! becomes the connection's peer ([`peer_addr`](crate::ConnectionInfo::peer_addr), and
//! [`remote_addr`](crate::ConnectionInfo::remote_addr) unless a
//! [client address detection](crate::client_ip) finds the client behind it). It is
//! required unless [`optional`](ProxyProtocol::optional); a `LOCAL` (v2) or `UNKNOWN`
//! (v1) header keeps the socket's address. From any other source nothing is read as a
//! header: the bytes go to the connection as they are, so an untrusted client cannot
//! claim another address.
//!
//! The read is bounded (v1: 107 bytes; v2: 16 bytes plus at most
//! [`MAX_V2_PAYLOAD`] of addresses and TLVs, which are skipped) and has a deadline
//! ([`ProxyProtocol::timeout`], 5 s by default). A malformed header, a missing required
//! one, a slow one: the connection is closed.
//!
//! # Writing
//!
//! [`encode`] builds a v1 or v2 header for a backend connection (TCP over IPv4 or IPv6);
//! stream backends write one when configured
//! ([`StreamBackend::proxy_protocol`](crate::stream::StreamBackend::proxy_protocol)).
//!
//! Reference: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::stream::Rewind;

/// The v2 signature: the first 12 bytes of every v2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included.
const V1_MAX: usize = 107;
/// The largest v2 address-and-TLV block read (a larger one closes the connection).
pub const MAX_V2_PAYLOAD: usize = 2048;
/// Default deadline for the header.
pub const DEFAULT_PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);

/// A PROXY protocol version, for [`encode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyVersion {
    /// The text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
}

/// What a header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// A proxied connection from `source` to `destination`.
    Proxied {
        /// The original client.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// No address to take (v2 `LOCAL`, v1 `UNKNOWN`, or a v2 family other than TCP/UDP
    /// over IP): the socket's addresses stay.
    Local,
}

impl ProxyHeader {
    /// The original client's address, if the header gave one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Self::Proxied { source, .. } => Some(*source),
            Self::Local => None,
        }
    }
}

/// Why a connection's PROXY protocol header was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyProtocolError {
    /// The bytes are not a well-formed header.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// A trusted source sent no header where one is required.
    #[error("PROXY protocol header required from a trusted source")]
    Missing,
    /// The connection ended before a whole header.
    #[error("connection closed before a whole PROXY protocol header")]
    Eof,
    /// No whole header within the deadline.
    #[error("no whole PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// Reading the connection failed.
    #[error("reading the PROXY protocol header failed")]
    Io(#[source] std::io::Error),
}

/// Reading PROXY protocol headers on a listener: from which sources, whether required,
/// within what time. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct ProxyProtocol {
    trusted: Vec<IpNet>,
    optional: bool,
    timeout: Duration,
}

impl ProxyProtocol {
    /// Headers read from sources in `trusted` (IPv4-mapped IPv6 sources are compared as
    /// IPv4), required, within [`DEFAULT_PROXY_PROTOCOL_TIMEOUT`]. An empty list trusts
    /// nobody; `0.0.0.0/0` and `::/0` trust everybody.
    pub fn new(trusted: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            trusted: trusted.into_iter().collect(),
            optional: false,
            timeout: DEFAULT_PROXY_PROTOCOL_TIMEOUT,
        }
    }

    /// Whether a trusted source may also connect without a header (default `false`).
    /// Telling the two apart needs the first bytes: a client that waits for the server to
    /// speak first times out.
    #[must_use]
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    /// How long a trusted source may take to send its header.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether headers are read from `source`.
    pub fn trusts(&self, source: IpAddr) -> bool {
        let source = source.to_canonical();
        self.trusted.iter().any(|net| net.contains(&source))
    }

    /// Reads the header from `io` if `source` is trusted. Returns the header (if one was
    /// read) and the stream, replaying any byte read past the header (or every byte, for
    /// an optional header that was not there).
    ///
    /// # Errors
    ///
    /// See [`ProxyProtocolError`]; close the connection.
    pub async fn read<IO>(
        &self,
        io: IO,
        source: IpAddr,
    ) -> Result<(Option<ProxyHeader>, Rewind<IO>), ProxyProtocolError>
    where
        IO: AsyncRead + Unpin,
    {
        if !self.trusts(source) {
            return Ok((None, Rewind::new(io)));
        }
        match tokio::time::timeout(self.timeout, read_header(io, self.optional)).await {
            Ok(result) => result,
            Err(_) => Err(ProxyProtocolError::Timeout(self.timeout)),
        }
    }
}

async fn read_header<IO>(
    mut io: IO,
    optional: bool,
) -> Result<(Option<ProxyHeader>, Rewind<IO>), ProxyProtocolError>
where
    IO: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(256);
    loop {
        match parse(&buf) {
            Ok(Some((header, len))) => {
                let rest = buf.split_off(len).freeze();
                return Ok((Some(header), Rewind::with_prefix(io, rest)));
            }
            Ok(None) => {}
            Err(ProxyProtocolError::Missing) if optional => {
                return Ok((None, Rewind::with_prefix(io, buf.freeze())));
            }
            Err(error) => return Err(error),
        }
        // Bytes read past the header are replayed; `parse` bounds how many are read.
        buf.reserve(512);
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(ProxyProtocolError::Io)?;
        if n == 0 {
            if optional && !looks_like_header(&buf) {
                return Ok((None, Rewind::with_prefix(io, buf.freeze())));
            }
            return Err(ProxyProtocolError::Eof);
        }
    }
}

fn looks_like_header(buf: &[u8]) -> bool {
    let n = buf.len();
    V1_PREFIX.starts_with(&buf[..n.min(V1_PREFIX.len())])
        || V2_SIGNATURE.starts_with(&buf[..n.min(V2_SIGNATURE.len())])
}

/// Parses the header at the start of `buf`: `Ok(Some((header, length)))`, or `Ok(None)`
/// when the bytes so far are a valid beginning and more are needed.
///
/// # Errors
///
/// [`ProxyProtocolError::Missing`] when `buf` does not start like a header,
/// [`ProxyProtocolError::Malformed`] when it starts like one but is not.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    if !looks_like_header(buf) {
        return Err(ProxyProtocolError::Missing);
    }
    if buf.starts_with(V1_PREFIX) {
        return parse_v1(buf);
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    parse_v2(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    let malformed = ProxyProtocolError::Malformed;
    let Some(end) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(malformed("v1 header longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    if end == 0 || buf[end - 1] != b'\r' {
        return Err(malformed("v1 header does not end in CRLF"));
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end - 1])
        .map_err(|_| malformed("v1 header is not ASCII"))?;
    let mut parts = line.split(' ');
    let header = match parts.next() {
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut next = || {
                parts
                    .next()
                    .ok_or(malformed("v1 header has too few fields"))
            };
            let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
            if parts.next().is_some() {
                return Err(malformed("v1 header has too many fields"));
            }
            let ip = |s: &str| -> Result<IpAddr, ProxyProtocolError> {
                let ip = if family == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| malformed("v1 address does not match its family"))
            };
            let port = |s: &str| -> Result<u16, ProxyProtocolError> {
                if s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
                    return Err(malformed("v1 port"));
                }
                s.parse().map_err(|_| malformed("v1 port"))
            };
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            }
        }
        _ => return Err(malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Some((header, end + 1)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    let malformed = ProxyProtocolError::Malformed;
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(malformed("v2 version is not 2"));
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_V2_PAYLOAD {
        return Err(malformed("v2 header longer than gatekit reads"));
    }
    let Some(payload) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    let header = match ver_cmd & 0x0f {
        0 => ProxyHeader::Local,
        1 => match buf[13] >> 4 {
            // AF_INET: 4 + 4 + 2 + 2 bytes.
            1 => {
                let a = payload
                    .get(..12)
                    .ok_or(malformed("v2 IPv4 addresses cut short"))?;
                let ip = |o: usize| IpAddr::from([a[o], a[o + 1], a[o + 2], a[o + 3]]);
                ProxyHeader::Proxied {
                    source: SocketAddr::new(ip(0), u16::from_be_bytes([a[8], a[9]])),
                    destination: SocketAddr::new(ip(4), u16::from_be_bytes([a[10], a[11]])),
                }
            }
            // AF_INET6: 16 + 16 + 2 + 2 bytes.
            2 => {
                let a = payload
                    .get(..36)
                    .ok_or(malformed("v2 IPv6 addresses cut short"))?;
                let ip = |o: usize| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&a[o..o + 16]);
                    IpAddr::from(b)
                };
                ProxyHeader::Proxied {
                    source: SocketAddr::new(ip(0), u16::from_be_bytes([a[32], a[33]])),
                    destination: SocketAddr::new(ip(16), u16::from_be_bytes([a[34], a[35]])),
                }
            }
            // AF_UNSPEC, AF_UNIX: nothing gatekit can use as an address.
            0 | 3 => ProxyHeader::Local,
            _ => return Err(malformed("v2 address family")),
        },
        _ => return Err(malformed("v2 command is neither LOCAL nor PROXY")),
    };
    Ok(Some((header, 16 + len)))
}

/// A header saying a TCP connection came from `source` to `destination`. With addresses
/// of different families, both are written as IPv6 (IPv4-mapped).
pub fn encode(version: ProxyVersion, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (src, dst) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(to_v6(s)), IpAddr::V6(to_v6(d))),
    };
    match version {
        ProxyVersion::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {src} {dst} {} {}\r\n",
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11); // AF_INET, STREAM
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21); // AF_INET6, STREAM
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&to_v6(s).octets());
                    out.extend_from_slice(&to_v6(d).octets());
                }
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
            out
        }
    }
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn encoded_headers_parse_back() {
        for (src, dst) in [
            ("192.0.2.1:5000", "198.51.100.2:443"),
            ("[2001:db8::1]:5000", "[2001:db8::2]:443"),
        ] {
            for v in [ProxyVersion::V1, ProxyVersion::V2] {
                let mut bytes = encode(v, addr(src), addr(dst));
                let len = bytes.len();
                bytes.extend_from_slice(b"GET /");
                let (header, n) = parse(&bytes).unwrap().unwrap();
                assert_eq!(n, len, "{v:?}");
                assert_eq!(
                    header,
                    ProxyHeader::Proxied {
                        source: addr(src),
                        destination: addr(dst)
                    }
                );
                // Every proper prefix asks for more.
                for cut in 0..len {
                    assert!(parse(&bytes[..cut]).unwrap().is_none(), "{v:?} at {cut}");
                }
            }
        }
    }

    #[test]
    fn malformed_and_foreign_bytes_are_refused() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyProtocolError::Missing)
        ));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyProtocolError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(
            parse(&long),
            Err(ProxyProtocolError::Malformed(_))
        ));
        let mut v2 = encode(ProxyVersion::V2, addr("1.2.3.4:1"), addr("5.6.7.8:2"));
        v2[12] = 0x31;
        assert!(matches!(parse(&v2), Err(ProxyProtocolError::Malformed(_))));
        v2[12] = 0x21;
        v2[14..16].copy_from_slice(&4u16.to_be_bytes());
        assert!(matches!(parse(&v2), Err(ProxyProtocolError::Malformed(_))));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap(),
            (ProxyHeader::Local, 15)
        );
    }

    #[tokio::test]
    async fn reads_only_from_trusted_sources_and_replays_the_rest() {
        let pp = ProxyProtocol::new(["10.0.0.0/8".parse().unwrap()]);
        let header = encode(
            ProxyVersion::V2,
            addr("192.0.2.9:4000"),
            addr("10.1.1.1:80"),
        );

        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(&header).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        drop(client);
        let (got, mut rest) = pp.read(server, "10.2.3.4".parse().unwrap()).await.unwrap();
        assert_eq!(got.unwrap().source(), Some(addr("192.0.2.9:4000")));
        let mut s = Vec::new();
        rest.read_to_end(&mut s).await.unwrap();
        assert_eq!(s, b"hello");

        // Untrusted: nothing is read as a header.
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(&header).await.unwrap();
        drop(client);
        let (got, mut rest) = pp.read(server, "192.0.2.1".parse().unwrap()).await.unwrap();
        assert!(got.is_none());
        let mut s = Vec::new();
        rest.read_to_end(&mut s).await.unwrap();
        assert_eq!(s, header);

        // Trusted, required, absent: refused. Optional: the bytes are kept.
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = pp
            .read(server, "10.0.0.1".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyProtocolError::Missing), "{err}");
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        drop(client);
        let (got, mut rest) = pp
            .clone()
            .optional(true)
            .read(server, "10.0.0.1".parse().unwrap())
            .await
            .unwrap();
        assert!(got.is_none());
        let mut s = Vec::new();
        rest.read_to_end(&mut s).await.unwrap();
        assert_eq!(s, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_header_times_out() {
        let pp = ProxyProtocol::new(["0.0.0.0/0".parse().unwrap()]).timeout(Duration::from_secs(1));
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"PROXY TCP4 ").await.unwrap();
        let err = pp
            .read(server, "10.0.0.1".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyProtocolError::Timeout(_)), "{err}");
    }
}
