//! Request traces: OpenTelemetry spans built on the hot path, exported over OTLP.
//!
//! Three kinds of span per request, all children of the client's `traceparent` when it
//! sent one (W3C Trace Context, `tracestate` kept):
//!
//! - a **server** span from the request entering the router to its response head
//!   ([`TracedRouter`], just inside the request metrics): method, path, status, route and
//!   backend, error status for a 5xx;
//! - a **routing** span (internal) over the router's synchronous call: listener and
//!   route match and the dispatch to the rule's stack; its route attributes are the ones
//!   the response carries;
//! - a **client** span per upstream attempt (`TracedBackend`, below the retry, timeout
//!   and breaker layers, so each retry is its own span with its `gatekit.attempt`
//!   number); the attempt span is what the upstream request's `traceparent` names.
//!
//! # Cost
//!
//! Off (no [`TraceSettings`]) a request pays one branch (the
//! [`TracedRouter`] has no tracer and calls the router); backends are not wrapped at
//! all, and no trace header is read or written; the client's own
//! `traceparent` passes upstream untouched, as any other header. Built without the
//! `otel` feature the types are not there at all. On, a request costs three span
//! objects (the SDK's, one allocation each plus their attributes), two header parses
//! and one header write per attempt; the batch exporter runs on its own thread.
//!
//! # Why the OpenTelemetry API directly
//!
//! `tracing-opentelemetry` would turn `tracing` spans into OpenTelemetry ones: every
//! request would then build a `tracing` span (registry slot, extensions map, field
//! visitor) and an OpenTelemetry span behind it, and need a subscriber layer the binary
//! installs. The spans here have a fixed shape and are built where the data is, so the
//! SDK's `Tracer` is called directly: one span object per span, no subscriber.
//!
//! # Export
//!
//! OTLP/HTTP with protobuf bodies (`opentelemetry-otlp`'s `http-proto`), sent by a small
//! client over gatekit's own hyper (`export.rs`): no `reqwest`, no `tonic` channel, no
//! second TLS stack. The SDK's batch processor exports from its own thread; the client
//! runs each export on the gateway's tokio runtime.

mod attempt;
mod export;
mod server;

use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

pub(crate) use self::attempt::TracedBackend;
pub(crate) use self::export::endpoint_uri;
pub use self::server::{ResponseFuture, TracedRouter};
use crate::TraceSettings;

/// The tracer every span of a gateway is built with, its exporter and the W3C
/// propagator ([`Gateway::traces`](crate::Gateway::traces)). Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Traces {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

/// A span's parent, in the request's extensions for the layers below: the server span
/// (set by [`TracedRouter`], read by [`TracedBackend`]).
#[derive(Clone, Debug)]
struct Parent(opentelemetry::Context);

impl Traces {
    /// The tracer for `settings`, exporting from the current tokio runtime.
    ///
    /// # Errors
    ///
    /// Why the exporter cannot be built (bad endpoint, no tokio runtime).
    pub(crate) fn new(settings: &TraceSettings) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "traces need a tokio runtime to export from".to_owned())?;
        let endpoint = endpoint_uri(&settings.endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.to_string())
            .with_timeout(settings.export_timeout)
            .with_http_client(export::ExportClient::new(runtime, settings.export_timeout))
            .build()
            .map_err(|e| e.to_string())?;
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sampling_ratio,
        )));
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("gatekit");
        Ok(Self {
            inner: Arc::new(Inner {
                provider,
                tracer,
                propagator: TraceContextPropagator::new(),
            }),
        })
    }

    fn tracer(&self) -> &SdkTracer {
        &self.inner.tracer
    }

    fn propagator(&self) -> &TraceContextPropagator {
        &self.inner.propagator
    }

    /// Exports every ended span now; returns when the collector answered (or the export
    /// timed out). Runs on a blocking thread: the SDK's flush blocks.
    pub async fn flush(&self) {
        let inner = self.inner.clone();
        let flushed = tokio::task::spawn_blocking(move || inner.provider.force_flush()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "exporting traces failed");
        }
    }

    /// Exports what is left and stops the exporter.
    pub async fn shutdown(&self) {
        let inner = self.inner.clone();
        let done = tokio::task::spawn_blocking(move || inner.provider.shutdown()).await;
        if let Ok(Err(error)) = done {
            tracing::warn!(%error, "stopping the trace exporter failed");
        }
    }
}
