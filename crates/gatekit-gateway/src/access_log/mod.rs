//! The access log: one line per request, JSON or text, with a configurable field set,
//! switched on or off per listener port; and the request id returned to the client.
//!
//! [`AccessLogLayer`] is the outermost layer of a port's service. Per request it:
//!
//! - keeps the client's `X-Request-Id` or sets a new one (32 hex digits, as the proxy
//!   would), so the id the upstream sees, the id in the log line and the `X-Request-Id`
//!   response header the client gets are the same;
//! - when the port's log is on, allocates one entry (an `Arc`) that the
//!   layers below tell what they learn: the balancer each endpoint it picks, the
//!   request and response bodies their bytes
//!   ([`gatekit_core::exchange`]); the response head brings the status, the route and
//!   backend (the metrics handle in its extensions) and the error kind;
//! - writes the line when the response body ends (or is dropped: a client gone before
//!   the end), so `duration_ms` and `bytes_out` cover the whole response. The line is
//!   formatted into one thread-local buffer, field by field, without a `String` per field.
//!
//! The format is documented in `docs/access-log.md`.

mod entry;
mod format;
mod layer;
mod service;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

pub use self::format::{AccessLogField, AccessLogFormat};
pub use self::layer::AccessLogLayer;
pub use self::service::{AccessLog, ResponseFuture};

/// The access log's settings (the binary's `log.accessLog:`): whether it is on, per
/// port too, the line format and the fields written.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct AccessLogSettings {
    /// Whether ports log their requests (default off).
    pub enabled: bool,
    /// Per listener port, overrides `enabled` (`{8080: false}` silences one port).
    pub ports: BTreeMap<u16, bool>,
    /// The line format (default JSON).
    pub format: AccessLogFormat,
    /// The fields written, in this order (empty: every field, in the documented order).
    pub fields: Vec<AccessLogField>,
    /// Where lines go (default standard output; not read from settings files).
    #[serde(skip)]
    pub sink: AccessLogSink,
}

impl AccessLogSettings {
    /// Every port logs, in JSON, every field.
    pub fn on() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    /// Sets whether ports log (unless [`with_port`](Self::with_port) says otherwise).
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Switches the log of one port on or off.
    #[must_use]
    pub fn with_port(mut self, port: u16, enabled: bool) -> Self {
        self.ports.insert(port, enabled);
        self
    }

    /// Sets the line format.
    #[must_use]
    pub fn with_format(mut self, format: AccessLogFormat) -> Self {
        self.format = format;
        self
    }

    /// Sets the fields written, in order (empty: all).
    #[must_use]
    pub fn with_fields(mut self, fields: impl IntoIterator<Item = AccessLogField>) -> Self {
        self.fields = fields.into_iter().collect();
        self
    }

    /// Sets where lines go.
    #[must_use]
    pub fn with_sink(mut self, sink: AccessLogSink) -> Self {
        self.sink = sink;
        self
    }

    /// Whether requests on `port` are logged.
    pub fn enabled_on(&self, port: u16) -> bool {
        self.ports.get(&port).copied().unwrap_or(self.enabled)
    }

    /// The layer of `port`: logging when the settings say so, and always returning
    /// the request id (add the port's byte counters with
    /// [`AccessLogLayer::with_body_bytes`]).
    pub fn layer(&self, port: u16) -> AccessLogLayer {
        if !self.enabled_on(port) {
            return AccessLogLayer::request_id_only();
        }
        let fields: Arc<[AccessLogField]> = if self.fields.is_empty() {
            Arc::from(AccessLogField::ALL)
        } else {
            Arc::from(self.fields.as_slice())
        };
        AccessLogLayer::new(self.format, fields, self.sink.clone())
    }
}

/// Where access log lines go: standard output (the default) or a function (an
/// application's own writer, a test's buffer). Each call gets one whole line, with its
/// newline.
#[derive(Clone)]
pub struct AccessLogSink {
    write: Option<Arc<WriteFn>>,
}

/// A function a sink hands each line to.
type WriteFn = dyn Fn(&str) + Send + Sync;

impl AccessLogSink {
    /// Lines go to standard output, one `write` per line.
    pub fn stdout() -> Self {
        Self { write: None }
    }

    /// Lines go to `write`.
    pub fn from_fn(write: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            write: Some(Arc::new(write)),
        }
    }

    pub(crate) fn write(&self, line: &str) {
        match &self.write {
            Some(write) => write(line),
            None => {
                use std::io::Write as _;
                // A full pipe or closed stdout loses the line, never the request.
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            }
        }
    }
}

impl Default for AccessLogSink {
    fn default() -> Self {
        Self::stdout()
    }
}

impl PartialEq for AccessLogSink {
    fn eq(&self, other: &Self) -> bool {
        match (&self.write, &other.write) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for AccessLogSink {}

impl fmt::Debug for AccessLogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.write.is_some() {
            "AccessLogSink(fn)"
        } else {
            "AccessLogSink(stdout)"
        })
    }
}
