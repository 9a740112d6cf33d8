//! [`AccessLogLayer`].

use std::fmt;
use std::sync::Arc;

use gatekit_core::exchange::Observed;
use tower_layer::Layer;

use super::{AccessLog, AccessLogField, AccessLogFormat, AccessLogSink};

/// What every entry of one port shares: the format, fields and sink.
pub(super) struct Shared {
    pub(super) format: AccessLogFormat,
    pub(super) fields: Arc<[AccessLogField]>,
    pub(super) sink: AccessLogSink,
    /// The port's body byte counters, told by each entry.
    pub(super) bytes: Option<Observed>,
}

/// Returns the request id to the client and, when built with a format, logs each
/// request (see the [module docs](super)). Build one per port with
/// [`AccessLogSettings::layer`](super::AccessLogSettings::layer).
#[derive(Clone)]
pub struct AccessLogLayer {
    shared: Option<Arc<Shared>>,
    /// The port's body byte counters (when not logging: the bodies' observer).
    bytes: Option<Observed>,
}

impl AccessLogLayer {
    /// Logs each request in `format` with `fields`, to `sink`.
    pub fn new(
        format: AccessLogFormat,
        fields: impl Into<Arc<[AccessLogField]>>,
        sink: AccessLogSink,
    ) -> Self {
        Self {
            shared: Some(Arc::new(Shared {
                format,
                fields: fields.into(),
                sink,
                bytes: None,
            })),
            bytes: None,
        }
    }

    /// Also counts the request and response body bytes into `bytes` (the port's
    /// `gatekit_request_body_bytes_total` / `gatekit_response_body_bytes_total`).
    #[must_use]
    pub fn with_body_bytes(mut self, bytes: crate::BodyBytes) -> Self {
        let observed = Observed::new(Arc::new(bytes));
        if let Some(shared) = &self.shared {
            self.shared = Some(Arc::new(Shared {
                format: shared.format,
                fields: shared.fields.clone(),
                sink: shared.sink.clone(),
                bytes: Some(observed.clone()),
            }));
        }
        self.bytes = Some(observed);
        self
    }

    /// Logs nothing; only sets and returns `X-Request-Id`.
    pub fn request_id_only() -> Self {
        Self {
            shared: None,
            bytes: None,
        }
    }

    /// Whether requests are logged.
    pub fn logs(&self) -> bool {
        self.shared.is_some()
    }
}

impl fmt::Debug for AccessLogLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AccessLogLayer");
        if let Some(shared) = &self.shared {
            d.field("format", &shared.format)
                .field("fields", &shared.fields);
        }
        d.finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog::new(inner, self.shared.clone(), self.bytes.clone())
    }
}
