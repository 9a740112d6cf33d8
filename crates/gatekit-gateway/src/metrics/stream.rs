//! Metrics of TLS, TCP and UDP stream routes: connections (UDP: flows) opened and open,
//! bytes each way, connection duration, refusals and dropped datagrams.
//!
//! A stream port's [`StreamPortMetrics`] is the core [`StreamObserver`] of its router.
//! Each event looks its label set up in the family (a hash and a read lock): once per
//! connection or flow, never per byte. Bytes are added when a connection ends.

use std::sync::Arc;

use gatekit_core::route::RouteId;
use gatekit_core::stream::{Refusal, StreamObserver, StreamStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StreamLabels {
    route: String,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RefusedLabels {
    port: u16,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PortLabels {
    port: u16,
}

/// Connection durations in seconds: 10 ms to about 12 hours, times four.
fn connection_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.01, 4.0, 16,
    ))
}

/// The stream metric families.
pub(super) struct StreamFamilies {
    opened: Family<StreamLabels, Counter>,
    open: Family<StreamLabels, Gauge>,
    received: Family<StreamLabels, Counter>,
    sent: Family<StreamLabels, Counter>,
    duration: Family<StreamLabels, Histogram, fn() -> Histogram>,
    refused: Family<RefusedLabels, Counter>,
    dropped: Family<PortLabels, Counter>,
}

impl StreamFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let families = Self {
            opened: Family::default(),
            open: Family::default(),
            received: Family::default(),
            sent: Family::default(),
            duration: Family::new_with_constructor(connection_histogram),
            refused: Family::default(),
            dropped: Family::default(),
        };
        registry.register(
            "stream_connections",
            "Stream connections (UDP: flows) relayed, by route and protocol (tls, tcp, udp)",
            families.opened.clone(),
        );
        registry.register(
            "stream_connections_open",
            "Stream connections (UDP: flows) open now, by route and protocol",
            families.open.clone(),
        );
        registry.register_with_unit(
            "stream_received",
            "Bytes received from clients by ended stream connections, by route",
            Unit::Bytes,
            families.received.clone(),
        );
        registry.register_with_unit(
            "stream_sent",
            "Bytes sent to clients by ended stream connections, by route",
            Unit::Bytes,
            families.sent.clone(),
        );
        registry.register_with_unit(
            "stream_connection_duration",
            "How long stream connections (UDP: flows) were open, by route",
            Unit::Seconds,
            families.duration.clone(),
        );
        registry.register(
            "stream_connections_refused",
            "Stream connections closed before relaying, by port and reason (client_hello, no_route, invalid_backend, no_backend, handshake)",
            families.refused.clone(),
        );
        registry.register(
            "udp_datagrams_dropped",
            "UDP datagrams dropped (flow bound reached, no route or backend), by port",
            families.dropped.clone(),
        );
        families
    }

    /// Drops the series of `route` (a route no longer served).
    pub(super) fn forget(&self, route: &str) {
        for protocol in ["tls", "tcp", "udp"] {
            let labels = StreamLabels {
                route: route.to_owned(),
                protocol,
            };
            self.opened.remove(&labels);
            self.open.remove(&labels);
            self.received.remove(&labels);
            self.sent.remove(&labels);
            self.duration.remove(&labels);
        }
    }
}

/// The [`StreamObserver`] of one stream port: records into the process metrics.
#[derive(Clone)]
pub struct StreamPortMetrics {
    metrics: Metrics,
    port: u16,
    protocol: &'static str,
}

impl StreamPortMetrics {
    /// The observer of `port`, whose connections are of `protocol` (`tls`, `tcp` or
    /// `udp`).
    pub fn new(metrics: Metrics, port: u16, protocol: &'static str) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            port,
            protocol,
        })
    }

    fn labels(&self, route: &RouteId) -> StreamLabels {
        StreamLabels {
            route: route.to_string(),
            protocol: self.protocol,
        }
    }

    fn families(&self) -> &StreamFamilies {
        &self.metrics.inner.streams
    }
}

impl std::fmt::Debug for StreamPortMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPortMetrics")
            .field("port", &self.port)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl StreamObserver for StreamPortMetrics {
    fn opened(&self, route: &RouteId) {
        let labels = self.labels(route);
        let f = self.families();
        f.opened.get_or_create(&labels).inc();
        f.open.get_or_create(&labels).inc();
    }

    fn closed(&self, route: &RouteId, stats: &StreamStats) {
        let labels = self.labels(route);
        let f = self.families();
        f.open.get_or_create(&labels).dec();
        f.received.get_or_create(&labels).inc_by(stats.received);
        f.sent.get_or_create(&labels).inc_by(stats.sent);
        f.duration
            .get_or_create(&labels)
            .observe(stats.duration.as_secs_f64());
    }

    fn refused(&self, _: Option<&RouteId>, reason: Refusal) {
        self.families()
            .refused
            .get_or_create(&RefusedLabels {
                port: self.port,
                reason: reason.as_str(),
            })
            .inc();
    }

    fn dropped_datagram(&self, _: Option<&RouteId>) {
        self.families()
            .dropped
            .get_or_create(&PortLabels { port: self.port })
            .inc();
    }
}

impl Metrics {
    /// Drops the stream series of `route` (call it when a reload removes the route).
    pub fn forget_stream_route(&self, route: &str) {
        self.inner.streams.forget(route);
    }
}
