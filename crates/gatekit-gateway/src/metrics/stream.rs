//! Metrics of TLS, TCP and UDP stream routes: connections (UDP: flows) opened and open,
//! bytes each way, connection duration, refusals and dropped datagrams.
//!
//! A stream port's [`StreamPortMetrics`] is the core [`StreamObserver`] of its router.
//! The series' handles are looked up when the port's routes are set
//! ([`StreamPortMetrics::set_routes`], at each reload) and at its construction (the
//! port's refusal and drop counters): recording a connection finds its route's handles
//! in the port's short list (an atomic load and a comparison of `Arc` pointers) and
//! touches only atomics, with no `String` and no family lock. Bytes are added when a
//! connection ends.
//!
//! A route no longer served leaves `/metrics` once its last connection has ended
//! ([`Metrics::retain_stream_routes`]); served again before that, it keeps its series.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::family::Family;
use arc_swap::ArcSwap;
use gatekit_core::route::RouteId;
use gatekit_core::stream::{Refusal, StreamObserver, StreamStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StreamLabels {
    route: Arc<str>,
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

/// The refusal reasons whose counters a port builds up front.
const REFUSALS: [Refusal; 5] = [
    Refusal::ClientHello,
    Refusal::NoRoute,
    Refusal::InvalidBackend,
    Refusal::NoBackend,
    Refusal::Handshake,
];

/// The stream metric families, and the series of the routes served (shared by the
/// ports a route is served on).
pub(super) struct StreamFamilies {
    opened: Family<StreamLabels, Counter>,
    open: Family<StreamLabels, Gauge>,
    received: Family<StreamLabels, Counter>,
    sent: Family<StreamLabels, Counter>,
    duration: Family<StreamLabels, Histogram, fn() -> Histogram>,
    refused: Family<RefusedLabels, Counter>,
    dropped: Family<PortLabels, Counter>,
    /// Every route's series, by labels; taken at reloads (and by connections of a
    /// route no port serves any more).
    routes: parking_lot::Mutex<HashMap<StreamLabels, Arc<RouteSeries>>>,
}

/// The series of one (route, protocol).
struct RouteSeries {
    labels: StreamLabels,
    opened: Counter,
    open: Gauge,
    received: Counter,
    sent: Counter,
    duration: Histogram,
    /// No longer served: removed from the families when its last connection ends.
    retired: AtomicBool,
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
            routes: parking_lot::Mutex::new(HashMap::new()),
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

    /// The series of `route` over `protocol`, registered if new; served again if it was
    /// retired.
    fn series(&self, route: &RouteId, protocol: &'static str) -> Arc<RouteSeries> {
        let labels = StreamLabels {
            route: Arc::from(route.to_string()),
            protocol,
        };
        let mut routes = self.routes.lock();
        if let Some(series) = routes.get(&labels) {
            series.retired.store(false, Ordering::Relaxed);
            return series.clone();
        }
        let series = Arc::new(RouteSeries {
            opened: self.opened.get_or_create_owned(&labels),
            open: self.open.get_or_create_owned(&labels),
            received: self.received.get_or_create_owned(&labels),
            sent: self.sent.get_or_create_owned(&labels),
            duration: self.duration.get_or_create_owned(&labels),
            retired: AtomicBool::new(false),
            labels: labels.clone(),
        });
        routes.insert(labels, series.clone());
        series
    }

    /// Removes `series` from the families and the served routes, if it is retired and
    /// no connection of it is open. Call with the routes locked.
    fn remove_if_done(
        &self,
        routes: &mut HashMap<StreamLabels, Arc<RouteSeries>>,
        series: &RouteSeries,
    ) {
        if !series.retired.load(Ordering::Relaxed) || series.open.get() > 0 {
            return;
        }
        let labels = &series.labels;
        self.opened.remove(labels);
        self.open.remove(labels);
        self.received.remove(labels);
        self.sent.remove(labels);
        self.duration.remove(labels);
        routes.remove(labels);
    }
}

/// The [`StreamObserver`] of one stream port: records into the process metrics.
pub struct StreamPortMetrics {
    metrics: Metrics,
    port: u16,
    protocol: &'static str,
    /// The handles of the routes the port serves (see [`set_routes`](Self::set_routes)).
    routes: ArcSwap<Vec<(RouteId, Arc<RouteSeries>)>>,
    /// One counter per [`REFUSALS`] entry.
    refused: [Counter; REFUSALS.len()],
    dropped: Counter,
}

impl StreamPortMetrics {
    /// The observer of `port`, whose connections are of `protocol` (`tls`, `tcp` or
    /// `udp`). Set the routes it serves with [`set_routes`](Self::set_routes); a
    /// connection of a route not set is recorded too, after a lookup.
    pub fn new(metrics: Metrics, port: u16, protocol: &'static str) -> Arc<Self> {
        let families = &metrics.inner.streams;
        let refused = REFUSALS.map(|reason| {
            families.refused.get_or_create_owned(&RefusedLabels {
                port,
                reason: reason.as_str(),
            })
        });
        let dropped = families.dropped.get_or_create_owned(&PortLabels { port });
        Arc::new(Self {
            metrics,
            port,
            protocol,
            routes: ArcSwap::from_pointee(Vec::new()),
            refused,
            dropped,
        })
    }

    /// Looks up the series of the routes the port serves now (call it when the port's
    /// table is built), so their connections are recorded without a lookup.
    pub fn set_routes<'a>(&self, routes: impl IntoIterator<Item = &'a RouteId>) {
        let families = self.families();
        let mut handles: Vec<(RouteId, Arc<RouteSeries>)> = Vec::new();
        for route in routes {
            if !handles.iter().any(|(id, _)| id == route) {
                handles.push((route.clone(), families.series(route, self.protocol)));
            }
        }
        self.routes.store(Arc::new(handles));
    }

    /// The series of `route`: the port's handle, else looked up (a route set on no
    /// port, or one removed while its connection was open).
    fn series(&self, route: &RouteId) -> Arc<RouteSeries> {
        let routes = self.routes.load();
        match routes.iter().find(|(id, _)| id == route) {
            Some((_, series)) => series.clone(),
            None => self.families().series_for_closing(route, self.protocol),
        }
    }

    fn families(&self) -> &StreamFamilies {
        &self.metrics.inner.streams
    }
}

impl StreamFamilies {
    /// The series of `route` for a connection event: the registered one (retired or
    /// not), else a new one.
    fn series_for_closing(&self, route: &RouteId, protocol: &'static str) -> Arc<RouteSeries> {
        let labels = StreamLabels {
            route: Arc::from(route.to_string()),
            protocol,
        };
        if let Some(series) = self.routes.lock().get(&labels) {
            return series.clone();
        }
        self.series(route, protocol)
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
        let series = self.series(route);
        series.opened.inc();
        series.open.inc();
    }

    fn closed(&self, route: &RouteId, stats: &StreamStats) {
        let series = self.series(route);
        series.received.inc_by(stats.received);
        series.sent.inc_by(stats.sent);
        series.duration.observe(stats.duration.as_secs_f64());
        if series.open.dec() == 1 && series.retired.load(Ordering::Relaxed) {
            let families = self.families();
            families.remove_if_done(&mut families.routes.lock(), &series);
        }
    }

    fn refused(&self, _: Option<&RouteId>, reason: Refusal) {
        match REFUSALS.iter().position(|r| *r == reason) {
            Some(i) => {
                self.refused[i].inc();
            }
            None => {
                self.families()
                    .refused
                    .get_or_create(&RefusedLabels {
                        port: self.port,
                        reason: reason.as_str(),
                    })
                    .inc();
            }
        }
    }

    fn dropped_datagram(&self, _: Option<&RouteId>) {
        self.dropped.inc();
    }
}

impl Metrics {
    /// Keeps the stream series of the routes in `served` (`namespace/name`, the routes
    /// every stream port serves after a reload); the others leave `/metrics` now, or
    /// when their last open connection ends.
    pub fn retain_stream_routes(&self, served: &BTreeSet<String>) {
        let families = &self.inner.streams;
        let mut routes = families.routes.lock();
        let gone: Vec<Arc<RouteSeries>> = routes
            .values()
            .filter(|s| !served.contains(&*s.labels.route))
            .cloned()
            .collect();
        for series in gone {
            series.retired.store(true, Ordering::Relaxed);
            families.remove_if_done(&mut routes, &series);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(metrics: &Metrics, name: &str, route: &str) -> Option<String> {
        let prefix = format!("gatekit_{name}{{route=\"{route}\",protocol=\"tcp\"}} ");
        metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }

    #[test]
    fn a_route_removed_while_a_connection_is_open_keeps_its_series_until_it_closes() {
        let metrics = Metrics::new();
        let port = StreamPortMetrics::new(metrics.clone(), 7000, "tcp");
        let route = RouteId::new("default", "db");
        port.set_routes([&route]);
        let served = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        metrics.retain_stream_routes(&served(&["default/db"]));

        port.opened(&route);
        // The route goes (a reload) while its connection is open: still exported.
        port.set_routes([]);
        metrics.retain_stream_routes(&served(&[]));
        assert_eq!(
            line(&metrics, "stream_connections_open", "default/db").as_deref(),
            Some("1")
        );
        // And comes back before the connection ends: the same series, counts go on.
        port.set_routes([&route]);
        metrics.retain_stream_routes(&served(&["default/db"]));
        port.opened(&route);
        assert_eq!(
            line(&metrics, "stream_connections_total", "default/db").as_deref(),
            Some("2")
        );
        assert_eq!(
            line(&metrics, "stream_connections_open", "default/db").as_deref(),
            Some("2")
        );
        let mut stats = StreamStats::default();
        stats.received = 10;
        port.closed(&route, &stats);
        port.closed(&route, &stats);
        assert_eq!(
            line(&metrics, "stream_connections_open", "default/db").as_deref(),
            Some("0")
        );
        assert_eq!(
            line(&metrics, "stream_received_bytes_total", "default/db").as_deref(),
            Some("20")
        );

        // Removed with a connection open: it leaves /metrics when that one closes, and
        // the close is not counted into a new series.
        port.opened(&route);
        port.set_routes([]);
        metrics.retain_stream_routes(&served(&[]));
        assert!(line(&metrics, "stream_connections_total", "default/db").is_some());
        port.closed(&route, &stats);
        assert!(
            !metrics.encode().contains("default/db"),
            "{}",
            metrics.encode()
        );
        // Served again: a new series from zero.
        port.set_routes([&route]);
        metrics.retain_stream_routes(&served(&["default/db"]));
        assert_eq!(
            line(&metrics, "stream_connections_open", "default/db").as_deref(),
            Some("0")
        );
        assert_eq!(
            line(&metrics, "stream_connections_total", "default/db").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn refusals_and_drops_are_counted_per_port() {
        let metrics = Metrics::new();
        let port = StreamPortMetrics::new(metrics.clone(), 7001, "tcp");
        port.refused(None, Refusal::NoRoute);
        port.refused(None, Refusal::NoRoute);
        port.dropped_datagram(None);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"gatekit_stream_connections_refused_total{port="7001",reason="no_route"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"gatekit_udp_datagrams_dropped_total{port="7001"} 1"#),
            "{text}"
        );
    }
}
