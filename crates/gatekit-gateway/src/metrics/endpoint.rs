//! `gatekit_endpoint_healthy`: the gauges set through
//! [`Metrics::endpoint_health`](super::Metrics::endpoint_health), and the endpoints of
//! the gateway's upstreams, read from their health at each scrape.
//!
//! The gateway's upstreams are not given a gauge each: a gauge per endpoint (its
//! family's map slot and the gauge, ~120 bytes in two allocations) set at every
//! endpoint update and health event cost more than reading the health of every
//! endpoint when `/metrics` is asked for.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

use super::family::Family;
use super::{AddrLabel, EndpointLabels};

/// Endpoints whose health is read at each scrape.
pub(crate) trait EndpointHealthSource: Send + Sync {
    /// Calls `each` with every endpoint's upstream, address and health (1 healthy: not
    /// marked unhealthy by an active check and not ejected) now.
    fn for_each_endpoint(&self, each: &mut dyn FnMut(&Arc<str>, SocketAddr, bool));

    /// Whether there is no endpoint.
    fn has_no_endpoint(&self) -> bool;
}

/// The `gatekit_endpoint_healthy` family: gauges set by hand, then the endpoints of
/// the source, if one is set and alive.
#[derive(Clone, Default)]
pub(super) struct EndpointHealth {
    set: Family<EndpointLabels, Gauge>,
    /// Weak: the source (the upstream registry) holds the metrics.
    source: Arc<RwLock<Option<Weak<dyn EndpointHealthSource>>>>,
}

impl EndpointHealth {
    /// The gauges set by hand.
    pub(super) fn gauges(&self) -> &Family<EndpointLabels, Gauge> {
        &self.set
    }

    /// Reads the endpoints of `source` at each scrape from now on (instead of the
    /// source set before).
    pub(super) fn set_source(&self, source: Weak<dyn EndpointHealthSource>) {
        *self.source.write() = Some(source);
    }

    fn source(&self) -> Option<Arc<dyn EndpointHealthSource>> {
        self.source.read().as_ref().and_then(Weak::upgrade)
    }
}

impl fmt::Debug for EndpointHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointHealth")
            .field("set", &self.set)
            .field("source", &self.source().is_some())
            .finish()
    }
}

impl EncodeMetric for EndpointHealth {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        self.set.encode_series(&mut encoder)?;
        let Some(source) = self.source() else {
            return Ok(());
        };
        let mut result = Ok(());
        source.for_each_endpoint(&mut |upstream, addr, healthy| {
            if result.is_ok() {
                let labels = EndpointLabels {
                    upstream: Arc::clone(upstream),
                    endpoint: AddrLabel(addr),
                };
                result = encoder
                    .encode_family(&labels)
                    .and_then(|series| ConstGauge::new(i64::from(healthy)).encode(series));
            }
        });
        result
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }

    /// Left out of the exposition without any series, as a family is.
    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.source().is_none_or(|s| s.has_no_endpoint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;

    struct Fixed(Vec<(Arc<str>, SocketAddr, bool)>);

    impl EndpointHealthSource for Fixed {
        fn for_each_endpoint(&self, each: &mut dyn FnMut(&Arc<str>, SocketAddr, bool)) {
            for (upstream, addr, healthy) in &self.0 {
                each(upstream, *addr, *healthy);
            }
        }

        fn has_no_endpoint(&self) -> bool {
            self.0.is_empty()
        }
    }

    #[test]
    fn the_sources_endpoints_are_read_at_each_scrape_next_to_the_gauges_set() {
        let metrics = Metrics::new();
        assert!(!metrics.encode().contains("gatekit_endpoint_healthy"));
        let empty: Arc<dyn EndpointHealthSource> = Arc::new(Fixed(Vec::new()));
        metrics.set_endpoint_health_source(Arc::downgrade(&empty));
        assert!(
            !metrics.encode().contains("gatekit_endpoint_healthy"),
            "no series: the family is left out"
        );
        let web: Arc<str> = Arc::from("default/web:80");
        let source: Arc<dyn EndpointHealthSource> = Arc::new(Fixed(vec![
            (web.clone(), "10.0.0.1:80".parse().unwrap(), true),
            (web, "10.0.0.2:80".parse().unwrap(), false),
        ]));
        metrics.set_endpoint_health_source(Arc::downgrade(&source));
        metrics
            .endpoint_health("by-hand", "10.0.0.9:80".parse().unwrap())
            .set(1);
        let text = metrics.encode();
        for line in [
            r#"gatekit_endpoint_healthy{upstream="default/web:80",endpoint="10.0.0.1:80"} 1"#,
            r#"gatekit_endpoint_healthy{upstream="default/web:80",endpoint="10.0.0.2:80"} 0"#,
            r#"gatekit_endpoint_healthy{upstream="by-hand",endpoint="10.0.0.9:80"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE gatekit_endpoint_healthy gauge")
                .count(),
            1
        );
        // The source gone (the registry dropped): only the gauges set by hand.
        drop(source);
        let text = metrics.encode();
        assert!(!text.contains("default/web:80"), "{text}");
        assert!(text.contains(r#"upstream="by-hand""#));
    }
}
