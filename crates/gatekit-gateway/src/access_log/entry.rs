//! One request's access log entry: filled in by the layers below, written once.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use gatekit_core::exchange::{Direction, ExchangeObserver};
use gatekit_core::{ConnectionInfo, ErrorKind, TlsInfo};
use http::{HeaderValue, Method, Uri, Version};
use tokio::time::Instant;

use super::format::{self, AccessLogField, Value};
use super::layer::Shared;
use crate::RequestMetrics;

thread_local! {
    /// The line buffer: one per thread, reused by every line written on it.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// What is known of a request when it arrives.
pub(super) struct Request {
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) version: Version,
    pub(super) host: Option<HeaderValue>,
    pub(super) request_id: HeaderValue,
    pub(super) traceparent: Option<HeaderValue>,
    pub(super) connection: Option<ConnectionInfo>,
}

/// What the response head tells.
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) series: Option<RequestMetrics>,
    pub(super) error_kind: Option<ErrorKind>,
}

/// One request's entry, shared (in an `Arc`) by the response future, the request and
/// response bodies and the request's extensions.
pub(super) struct Entry {
    shared: Arc<Shared>,
    time: SystemTime,
    start: Instant,
    request: Request,
    head: OnceLock<Head>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    attempts: AtomicU32,
    // Uncontended: attempts of one request are sequential.
    upstream: Mutex<Option<SocketAddr>>,
    written: AtomicBool,
}

impl Entry {
    pub(super) fn new(shared: Arc<Shared>, request: Request) -> Self {
        Self {
            shared,
            time: SystemTime::now(),
            start: Instant::now(),
            request,
            head: OnceLock::new(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            attempts: AtomicU32::new(0),
            upstream: Mutex::new(None),
            written: AtomicBool::new(false),
        }
    }

    /// Records the response head.
    pub(super) fn set_head(&self, head: Head) {
        let _ = self.head.set(head);
    }

    /// Writes the line, once.
    pub(super) fn write(&self) {
        if self.written.swap(true, Ordering::Relaxed) {
            return;
        }
        let elapsed = self.start.elapsed();
        let head = self.head.get();
        let upstream = self.upstream.lock().ok().and_then(|u| *u);
        let conn = self.request.connection.as_ref();
        let tls = conn.and_then(ConnectionInfo::tls);
        let r = &self.request;
        let value = |field| match field {
            AccessLogField::Time => Value::Time(self.time),
            AccessLogField::Host => r
                .uri
                .authority()
                .map(|a| Value::Bytes(a.as_str().as_bytes()))
                .or_else(|| r.host.as_ref().map(|h| Value::Bytes(h.as_bytes())))
                .unwrap_or(Value::Absent),
            AccessLogField::Method => Value::Bytes(r.method.as_str().as_bytes()),
            AccessLogField::Path => Value::Bytes(
                r.uri
                    .path_and_query()
                    .map_or(r.uri.path(), |p| p.as_str())
                    .as_bytes(),
            ),
            AccessLogField::Protocol => Value::Bytes(version(r.version).as_bytes()),
            AccessLogField::Status => Value::Int(head.map_or(0, |h| u64::from(h.status))),
            AccessLogField::DurationMs => Value::Millis(elapsed.as_secs_f64() * 1000.0),
            AccessLogField::BytesIn => Value::Int(self.bytes_in.load(Ordering::Relaxed)),
            AccessLogField::BytesOut => Value::Int(self.bytes_out.load(Ordering::Relaxed)),
            AccessLogField::Route => head
                .and_then(|h| h.series.as_ref())
                .map_or(Value::Absent, |s| Value::Bytes(s.route().as_bytes())),
            AccessLogField::Backend => head
                .and_then(|h| h.series.as_ref())
                .map_or(Value::Absent, |s| Value::Bytes(s.backend().as_bytes())),
            AccessLogField::Upstream => upstream.map_or(Value::Absent, Value::Addr),
            AccessLogField::Attempts => {
                Value::Int(u64::from(self.attempts.load(Ordering::Relaxed)))
            }
            AccessLogField::ErrorKind => head
                .and_then(|h| h.error_kind)
                .map_or(Value::Absent, |k| Value::Bytes(k.as_str().as_bytes())),
            AccessLogField::RequestId => Value::Bytes(r.request_id.as_bytes()),
            AccessLogField::TraceId => r
                .traceparent
                .as_ref()
                .and_then(|t| format::trace_id(t.as_bytes()))
                .map_or(Value::Absent, Value::Bytes),
            AccessLogField::Client => conn.map_or(Value::Absent, |c| Value::Addr(c.remote_addr())),
            AccessLogField::TlsSni => tls
                .and_then(|t| t.server_name())
                .map_or(Value::Absent, |s| Value::Bytes(s.as_bytes())),
            AccessLogField::TlsAlpn => tls
                .and_then(|t| t.alpn_protocol())
                .map_or(Value::Absent, Value::Bytes),
            AccessLogField::TlsVersion => tls
                .and_then(TlsInfo::protocol_version)
                .map_or(Value::Absent, |v| Value::Bytes(v.as_bytes())),
        };
        let shared = &*self.shared;
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut buf) => {
                format::write_line(&mut buf, shared.format, &shared.fields, value);
                shared.sink.write(&buf);
            }
            // Re-entered from the sink (a sink that drops a body): a buffer of its own.
            Err(_) => {
                let mut buf = String::new();
                format::write_line(&mut buf, shared.format, &shared.fields, value);
                shared.sink.write(&buf);
            }
        });
    }
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

impl ExchangeObserver for Entry {
    fn attempt(&self, endpoint: SocketAddr) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut upstream) = self.upstream.lock() {
            *upstream = Some(endpoint);
        }
    }

    fn data(&self, direction: Direction, len: usize) {
        let counter = match direction {
            Direction::Request => &self.bytes_in,
            Direction::Response => &self.bytes_out,
        };
        counter.fetch_add(len as u64, Ordering::Relaxed);
        if let Some(bytes) = &self.shared.bytes {
            bytes.observer().data(direction, len);
        }
    }

    fn end(&self, direction: Direction) {
        if direction == Direction::Response {
            self.write();
        }
    }
}

impl Drop for Entry {
    /// A request whose response never reached its end (no response: the client went
    /// away) is still logged.
    fn drop(&mut self) {
        self.write();
    }
}
