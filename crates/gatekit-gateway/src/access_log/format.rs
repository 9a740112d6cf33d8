//! The line formats and fields of the access log, written into one buffer.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// How an access log line is written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AccessLogFormat {
    /// One JSON object per line; absent values are `null`.
    #[default]
    Json,
    /// `key=value` pairs separated by spaces (logfmt); values with spaces, quotes or `=`
    /// quoted; absent values are `-`.
    Text,
}

/// A field of the access log line (its key is the serde name, in snake case).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessLogField {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    Time,
    /// The request's authority (HTTP/2 `:authority`, absolute-form target) or `Host`.
    Host,
    /// The request method.
    Method,
    /// The path and query as received.
    Path,
    /// The HTTP version (`HTTP/1.1`, `HTTP/2.0`).
    Protocol,
    /// The response status (0: no response was sent, the client went away).
    Status,
    /// Milliseconds from the request's arrival to the response's last byte.
    DurationMs,
    /// Request body bytes read from the client.
    BytesIn,
    /// Response body bytes sent to the client.
    BytesOut,
    /// The matched route (`namespace/name`, or the listener's unmatched series).
    Route,
    /// The backend the rule chose (`(none)` when the rule answered itself).
    Backend,
    /// The endpoint the last attempt went to.
    Upstream,
    /// Endpoints picked for the request (retries included; 0: none reached).
    Attempts,
    /// The error kind of a response gatekit made (`x-gatekit-error`), else absent.
    ErrorKind,
    /// The `X-Request-Id` (the client's, or the one gatekit set).
    RequestId,
    /// The trace id of the request's W3C `traceparent`, when it has a valid one.
    TraceId,
    /// The client's address (after trusted proxies, when the port is told how).
    Client,
    /// The TLS server name (SNI) the client sent.
    TlsSni,
    /// The application protocol agreed on by TLS ALPN (`h2`, `http/1.1`).
    TlsAlpn,
    /// The TLS version negotiated (`TLSv1.3`, `TLSv1.2`).
    TlsVersion,
}

impl AccessLogField {
    /// Every field, in the default order.
    pub const ALL: &'static [Self] = &[
        Self::Time,
        Self::Host,
        Self::Method,
        Self::Path,
        Self::Protocol,
        Self::Status,
        Self::DurationMs,
        Self::BytesIn,
        Self::BytesOut,
        Self::Route,
        Self::Backend,
        Self::Upstream,
        Self::Attempts,
        Self::ErrorKind,
        Self::RequestId,
        Self::TraceId,
        Self::Client,
        Self::TlsSni,
        Self::TlsAlpn,
        Self::TlsVersion,
    ];

    /// The field's key in a line.
    pub const fn key(self) -> &'static str {
        match self {
            Self::Time => "time",
            Self::Host => "host",
            Self::Method => "method",
            Self::Path => "path",
            Self::Protocol => "protocol",
            Self::Status => "status",
            Self::DurationMs => "duration_ms",
            Self::BytesIn => "bytes_in",
            Self::BytesOut => "bytes_out",
            Self::Route => "route",
            Self::Backend => "backend",
            Self::Upstream => "upstream",
            Self::Attempts => "attempts",
            Self::ErrorKind => "error_kind",
            Self::RequestId => "request_id",
            Self::TraceId => "trace_id",
            Self::Client => "client",
            Self::TlsSni => "tls_sni",
            Self::TlsAlpn => "tls_alpn",
            Self::TlsVersion => "tls_version",
        }
    }
}

/// One field's value, borrowed from the entry.
pub(super) enum Value<'a> {
    Absent,
    Bytes(&'a [u8]),
    Int(u64),
    Millis(f64),
    Addr(SocketAddr),
    Time(SystemTime),
}

/// Writes a line of `fields` into `buf` (cleared first), ending with a newline.
pub(super) fn write_line<'a>(
    buf: &mut String,
    format: AccessLogFormat,
    fields: &[AccessLogField],
    mut value: impl FnMut(AccessLogField) -> Value<'a>,
) {
    buf.clear();
    if format == AccessLogFormat::Json {
        buf.push('{');
    }
    for (i, &field) in fields.iter().enumerate() {
        let v = value(field);
        match format {
            AccessLogFormat::Json => {
                if i > 0 {
                    buf.push(',');
                }
                buf.push('"');
                buf.push_str(field.key());
                buf.push_str("\":");
                write_json(buf, &v);
            }
            AccessLogFormat::Text => {
                if i > 0 {
                    buf.push(' ');
                }
                buf.push_str(field.key());
                buf.push('=');
                write_text(buf, &v);
            }
        }
    }
    if format == AccessLogFormat::Json {
        buf.push('}');
    }
    buf.push('\n');
}

fn write_json(buf: &mut String, v: &Value<'_>) {
    // Writing to a String cannot fail.
    match v {
        Value::Absent => buf.push_str("null"),
        Value::Bytes(b) => {
            buf.push('"');
            escape(buf, b, true);
            buf.push('"');
        }
        Value::Int(n) => {
            let _ = write!(buf, "{n}");
        }
        Value::Millis(ms) => {
            let _ = write!(buf, "{ms:.3}");
        }
        Value::Addr(a) => {
            let _ = write!(buf, "\"{a}\"");
        }
        Value::Time(t) => {
            buf.push('"');
            write_time(buf, *t);
            buf.push('"');
        }
    }
}

fn write_text(buf: &mut String, v: &Value<'_>) {
    match v {
        Value::Absent => buf.push('-'),
        Value::Bytes(b) => {
            let quote = b.is_empty()
                || b.iter()
                    .any(|&c| c <= b' ' || c == b'"' || c == b'=' || c >= 0x7f);
            if quote {
                buf.push('"');
                escape(buf, b, false);
                buf.push('"');
            } else {
                escape(buf, b, false);
            }
        }
        Value::Int(n) => {
            let _ = write!(buf, "{n}");
        }
        Value::Millis(ms) => {
            let _ = write!(buf, "{ms:.3}");
        }
        Value::Addr(a) => {
            let _ = write!(buf, "{a}");
        }
        Value::Time(t) => write_time(buf, *t),
    }
}

/// Escapes `"` and `\`, and writes control and non-ASCII bytes as `\u00XX` (JSON) or
/// `\xXX` (text): header bytes are not always UTF-8.
fn escape(buf: &mut String, bytes: &[u8], json: bool) {
    for &c in bytes {
        match c {
            b'"' => buf.push_str("\\\""),
            b'\\' => buf.push_str("\\\\"),
            0x20..=0x7e => buf.push(char::from(c)),
            _ if json => {
                let _ = write!(buf, "\\u{c:04x}");
            }
            _ => {
                let _ = write!(buf, "\\x{c:02x}");
            }
        }
    }
}

/// RFC 3339 UTC with milliseconds (`2024-05-01T12:00:00.123Z`).
fn write_time(buf: &mut String, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        buf,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    );
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if valid and
/// not all zeros.
pub(super) fn trace_id(traceparent: &[u8]) -> Option<&[u8]> {
    if traceparent.len() < 55 || traceparent[2] != b'-' || traceparent[35] != b'-' {
        return None;
    }
    let id = &traceparent[3..35];
    let hex = id
        .iter()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    (hex && id.iter().any(|&c| c != b'0')).then_some(id)
}
