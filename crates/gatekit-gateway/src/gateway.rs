//! The handles a [`Wiring`](crate::Wiring) serves through: [`Gateway`].

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use gatekit_core::route::PolicyState;

use crate::listener::{ListenerSettings, Listeners};
use crate::{ConfigDump, GatewayOptions, Metrics, Readiness};

/// What a served configuration is written to: the listeners (one per Gateway port), the
/// metrics registry, the readiness the first served snapshot marks, and the `/config`
/// and `/fleet` documents. Whoever runs the gateway owns it, lends it to
/// [`Wiring`](crate::Wiring) and, at the end, closes the listeners
/// ([`listeners_mut`](Self::listeners_mut), [`Listeners::close`]) and drains them
/// ([`into_listeners`](Self::into_listeners), [`Listeners::drain`]). The `gatekit`
/// binary's admin server reads [`readiness`](Self::readiness),
/// [`metrics`](Self::metrics) and the dumps.
///
/// A gateway built with [`Gateway::embedded`] binds no port: its routers are handed to
/// the application's own server with [`Wiring::service`](crate::Wiring::service).
#[derive(Debug)]
pub struct Gateway {
    options: GatewayOptions,
    metrics: Metrics,
    readiness: Readiness,
    config: ConfigDump,
    fleet: ConfigDump,
    listeners: Listeners,
    embedded: bool,
    policy_state: Arc<PolicyState>,
    /// The tracer of request traces, when the options turn them on.
    #[cfg(feature = "otel")]
    traces: Option<crate::trace::Traces>,
}

impl Gateway {
    /// A gateway whose listeners bind on `bind` (the ports come from the manifests).
    pub fn new(options: GatewayOptions, bind: IpAddr) -> Self {
        Self::build(options, bind, false)
    }

    /// A gateway that binds no port: each port's router is served by the application
    /// ([`Wiring::service`](crate::Wiring::service)); TLS, connection limits and
    /// header deadlines are the application server's.
    pub fn embedded(options: GatewayOptions) -> Self {
        Self::build(options, IpAddr::V4(Ipv4Addr::LOCALHOST), true)
    }

    fn build(options: GatewayOptions, bind: IpAddr, embedded: bool) -> Self {
        let policy_state = Arc::new(policy_state(&options));
        let metrics = Metrics::with_policy_state(policy_state.clone());
        let listeners = Listeners::new(
            ListenerSettings::from_settings(&options, bind),
            metrics.clone(),
        );
        #[cfg(feature = "otel")]
        let traces = traces(&options);
        #[cfg(not(feature = "otel"))]
        if options.tracing.is_some() {
            tracing::error!(
                "tracing is configured but gatekit-gateway was built without its `otel` feature; no traces are exported"
            );
        }
        Self {
            #[cfg(feature = "otel")]
            traces,
            options,
            metrics,
            readiness: Readiness::new(),
            config: ConfigDump::new(),
            fleet: ConfigDump::new(),
            listeners,
            embedded,
            policy_state,
        }
    }

    /// The state of the traffic policies of the served route tables (rate limiter
    /// buckets, breaker counts, retry budgets), kept across reloads; its counters are in
    /// [`metrics`](Self::metrics).
    pub fn policy_state(&self) -> &Arc<PolicyState> {
        &self.policy_state
    }

    /// The options the gateway runs with.
    pub fn options(&self) -> &GatewayOptions {
        &self.options
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The readiness handle: [`Phase::Ready`](crate::Phase::Ready) once the first
    /// snapshot serves.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// What `/config` serves: the served snapshot, each resource's conditions, the
    /// upstreams' health and the last reload error.
    pub fn config_dump(&self) -> &ConfigDump {
        &self.config
    }

    /// What `/fleet` serves (the fleet's replicas, when serving from Kubernetes).
    pub fn fleet_dump(&self) -> &ConfigDump {
        &self.fleet
    }

    /// The listeners.
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// The listeners, to add, remove, close or drain them.
    pub fn listeners_mut(&mut self) -> &mut Listeners {
        &mut self.listeners
    }

    /// The listeners, to [drain](Listeners::drain) them at the end.
    pub fn into_listeners(self) -> Listeners {
        self.listeners
    }

    /// Exports the request spans ended so far (see [`TraceSettings`](crate::TraceSettings));
    /// returns once the collector answered or the export timed out. Without traces, at
    /// once. Spans are otherwise exported in batches every few seconds.
    pub async fn flush_traces(&self) {
        #[cfg(feature = "otel")]
        if let Some(traces) = &self.traces {
            traces.flush().await;
        }
    }

    /// Exports the spans left and stops the trace exporter; call it at shutdown, after
    /// the listeners drained.
    pub async fn shutdown_traces(&self) {
        #[cfg(feature = "otel")]
        if let Some(traces) = &self.traces {
            traces.shutdown().await;
        }
    }

    /// The request traces' tracer and exporter, when the options turn traces on (and
    /// the exporter could be built); a clone outlives the gateway, to flush at the end.
    #[cfg(feature = "otel")]
    pub fn traces(&self) -> Option<&crate::trace::Traces> {
        self.traces.as_ref()
    }

    /// Whether the gateway binds no port ([`Gateway::embedded`]).
    pub fn is_embedded(&self) -> bool {
        self.embedded
    }
}

/// The tracer of the options' `tracing`, if any (an exporter that cannot be built is
/// logged, and the gateway serves without traces).
#[cfg(feature = "otel")]
fn traces(options: &GatewayOptions) -> Option<crate::trace::Traces> {
    let settings = options.tracing.as_ref()?;
    match crate::trace::Traces::new(settings) {
        Ok(traces) => {
            tracing::info!(endpoint = %settings.endpoint, ratio = settings.sampling_ratio, "request traces are exported over OTLP");
            Some(traces)
        }
        Err(error) => {
            tracing::error!(endpoint = %settings.endpoint, %error, "cannot export request traces; serving without them");
            None
        }
    }
}

/// The policy state, with the Redis of the options as the store of global rate limits.
fn policy_state(options: &GatewayOptions) -> PolicyState {
    let state = PolicyState::new();
    let Some(redis) = &options.redis else {
        return state;
    };
    #[cfg(feature = "redis")]
    {
        use gatekit_redis::{Failover, Fallback, RedisStore};
        match RedisStore::open_pool(&redis.url, redis.connections) {
            Ok(store) => {
                let store = store.with_failover(Failover {
                    timeout: redis.timeout,
                    fallback: match redis.fallback {
                        crate::RedisFallback::Local => Fallback::Local,
                        crate::RedisFallback::FailOpen => Fallback::FailOpen,
                    },
                    probe_interval: redis.probe_interval,
                });
                tracing::info!(redis = %gatekit_redis::redact(&redis.url), fallback = ?redis.fallback, "global rate limits are kept in Redis");
                state.with_shared_limits(Arc::new(store))
            }
            Err(error) => {
                tracing::error!(redis = %gatekit_redis::redact(&redis.url), %error, "cannot use Redis for global rate limits; they run per replica");
                state
            }
        }
    }
    #[cfg(not(feature = "redis"))]
    {
        tracing::error!(
            "redis is configured but gatekit-gateway was built without its `redis` feature; global rate limits run per replica"
        );
        state
    }
}
