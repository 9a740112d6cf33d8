//! Serving TLS, TCP and UDP ports: their stream listeners and routes (TLSRoute, TCPRoute,
//! UDPRoute) compiled into a [`StreamTable`] per port and served by core's stream data
//! plane ([`gatekit_core::stream`]).
//!
//! Per reload ([`Streams::apply`], after the HTTP ports were handled):
//!
//! - every TLS/TCP/UDP port gets a new table: its listeners (by hostname; TLS ones
//!   passing TLS through or terminating it with the port's certificates), their routes,
//!   each backend name looked up in the upstream registry (the balancer's pick honours
//!   health, algorithm and outlier detection; a connect's outcome is reported to it). A
//!   bound port's router swaps the table (open connections keep the old one) and its
//!   certificate store the new certificates;
//! - a new port is bound; a port that changed protocol is rebound (the old socket's
//!   connections drain); a table that does not build (a bad hostname) keeps the last
//!   good one and is reported.
//!
//! [`Streams::release`] (before the HTTP ports are handled) closes the stream ports no
//! longer served as streams — gone, or now HTTP — so the HTTP loop can bind them; a TCP
//! port's connections drain (closed at the drain deadline), a UDP port's flows end.
//!
//! Terminated TLS offers no ALPN (the backend speaks whatever the client and it agree
//! on over the plaintext); the connect timeout is the Service's (`connection.connectTimeout`
//! of its policy) or core's
//! [`DEFAULT_CONNECT_TIMEOUT`](gatekit_core::stream::DEFAULT_CONNECT_TIMEOUT); the
//! idle timeouts are the listener's (a ClientTrafficPolicy's `timeout.tcp.idleTimeout`,
//! TLS and TCP only) or core's defaults (1 h TCP, 60 s UDP); a route's
//! `max_connections` is enforced by core; a port's `connectionLimit` is its server's
//! own [`ConnectionLimit`](gatekit_core::server::ConnectionLimit) (a change rebinds the
//! port, as PROXY protocol does).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use gatekit_core::retry::TriedEndpoints;
use gatekit_core::stream::{
    ListenerMode, StreamBackend, StreamEndpoint, StreamListener, StreamRouter, StreamTable,
    StreamUpstream,
};
use gatekit_core::tls::{CertStore, ServerTls, TlsAcceptor};
use gatekit_core::{ConfigError, ConnectionInfo, ErrorKind};
use gatekit_k8s::Translation;
use gatekit_k8s::translate::{PortListeners, Protocol, TlsMode};
use gatekit_lb::{Picked, Upstream};

use super::upstreams::Upstreams;
use crate::Gateway;
use crate::metrics::StreamPortMetrics;

/// Whether `protocol`'s ports are served as streams (not HTTP).
pub(crate) fn is_stream(protocol: Protocol) -> bool {
    matches!(protocol, Protocol::Tls | Protocol::Tcp | Protocol::Udp)
}

/// The served stream ports, by number and transport (UDP or not): one number may be
/// a TCP port and a UDP port (DNS on 53/TCP and 53/UDP).
#[derive(Default)]
pub(crate) struct Streams {
    ports: BTreeMap<(u16, bool), StreamPort>,
}

struct StreamPort {
    protocol: Protocol,
    router: StreamRouter,
    /// The router's observer: its routes' metric handles are set with each table.
    metrics: Arc<StreamPortMetrics>,
    /// The certificates of terminating listeners, and the acceptor using them.
    tls: Option<(Arc<CertStore>, TlsAcceptor)>,
    /// PROXY protocol read first (the listeners' ClientTrafficPolicies); a change rebinds.
    options: crate::PortOptions,
    local: Option<SocketAddr>,
}

impl Streams {
    /// The bound address of every served stream port.
    pub(crate) fn bound(&self) -> impl Iterator<Item = (u16, SocketAddr)> + '_ {
        self.ports
            .iter()
            .filter_map(|((p, _), port)| Some((*p, port.local?)))
    }

    /// Closes the stream ports `translation` no longer serves as streams (gone, or
    /// another protocol now), before HTTP ports are bound.
    pub(crate) async fn release(&mut self, gateway: &mut Gateway, translation: &Translation) {
        let keep = |port: u16, protocol: Protocol| {
            translation
                .port_over(port, protocol.is_udp())
                .is_some_and(|p| is_stream(p.protocol()) && p.protocol() == protocol)
        };
        let gone: Vec<((u16, bool), Protocol)> = self
            .ports
            .iter()
            .filter(|((p, _), served)| !keep(*p, served.protocol))
            .map(|(key, served)| (*key, served.protocol))
            .collect();
        for (key, protocol) in gone {
            if let Some(served) = self.ports.remove(&key)
                && served.local.is_some()
            {
                close(gateway, key.0, protocol).await;
            }
        }
    }

    /// Serves every TLS/TCP/UDP port of `translation` (see the [module docs](self)).
    /// Problems go to `errors`, ports that could not be bound also to `bind_errors`.
    pub(crate) async fn apply(
        &mut self,
        gateway: &mut Gateway,
        translation: &Translation,
        upstreams: &Upstreams,
        certs: &mut super::certs::Certs,
        errors: &mut Vec<ConfigError>,
        bind_errors: &mut Vec<(u16, String)>,
    ) {
        if gateway.is_embedded() {
            return;
        }
        let handshake_timeout = gateway.listeners().settings().tls_handshake_timeout;
        let mut served_routes = BTreeSet::new();
        for port in translation.listeners() {
            if !is_stream(port.protocol()) {
                continue;
            }
            let number = port.port();
            let key = (number, port.protocol().is_udp());
            for route in port.stream_routes() {
                served_routes.insert(route.id.to_string());
            }
            // Certificates of terminating listeners: one store per port, replaced on reload.
            let terminates = port
                .listeners()
                .iter()
                .any(|l| l.tls_mode() == Some(TlsMode::Terminate));
            // Last good pairs and expiry as on HTTPS ports (certs.rs); the listeners' TLS
            // settings (client certificates, versions, ...) by SNI, without ALPN.
            let port_tls = terminates.then(|| {
                let mut tls = certs.port(port, errors);
                tls.settings = tls.settings.map(|s| s.clone().alpn(Some(Vec::new())));
                tls
            });
            let existing = self.ports.get(&key);
            let tls = match (port_tls, existing.and_then(|p| p.tls.clone())) {
                (None, _) => None,
                (Some(tls), Some((store, acceptor))) => {
                    if let Err(error) = acceptor.server_tls().replace(&tls.settings) {
                        errors.push(ConfigError::new(
                            format!("listeners[port={number}].tls"),
                            format!("{error} (the previous TLS settings keep serving)"),
                        ));
                    }
                    store.replace(tls.certs);
                    Some((store, acceptor))
                }
                (Some(tls), None) => {
                    let store = Arc::new(CertStore::new(tls.certs));
                    match ServerTls::new(store.clone(), &tls.settings) {
                        Ok(configs) => {
                            let acceptor = TlsAcceptor::with_server_tls(Arc::new(configs))
                                .with_handshake_timeout(handshake_timeout);
                            Some((store, acceptor))
                        }
                        Err(error) => {
                            errors.push(ConfigError::new(
                                format!("listeners[port={number}].tls"),
                                error.to_string(),
                            ));
                            None
                        }
                    }
                }
            };
            let table = match build_table(port, tls.as_ref().map(|(_, a)| a), upstreams) {
                Ok(table) => table,
                Err(error) => {
                    errors.push(error.within(&format!("listeners[port={number}]")));
                    match existing {
                        // The last good table keeps serving.
                        Some(_) => continue,
                        None => StreamTable::empty(),
                    }
                }
            };
            // UDP has no connection to start with a header.
            let options = match port.protocol() {
                Protocol::Udp => {
                    if port
                        .listeners()
                        .iter()
                        .any(|l| l.connection_limit().is_some())
                    {
                        errors.push(ConfigError::new(
                            format!("listeners[port={number}].connectionLimit"),
                            "a UDP port has no connections to limit (gatekit bounds its flows by its own default): not applied",
                        ));
                    }
                    if port.listeners().iter().any(|l| l.proxy_protocol()) {
                        errors.push(ConfigError::new(
                            format!("listeners[port={number}].proxyProtocol"),
                            "a UDP port reads no PROXY protocol header (gatekit reads it on TCP connections): not applied",
                        ));
                    }
                    crate::PortOptions::default()
                }
                _ => crate::PortOptions::new(
                    super::proxy_protocol(port, gateway, errors),
                    Default::default(),
                )
                .with_max_connections(super::connection_limit(port, errors)),
            };
            match self.ports.get_mut(&key) {
                Some(served) if served.local.is_some() && served.options == options => {
                    served.metrics.set_routes(&table_routes(&table));
                    served.router.store(table);
                    served.tls = tls;
                }
                _ => {
                    if let Some(served) = self.ports.remove(&key)
                        && served.local.is_some()
                    {
                        // Read PROXY protocol or not: a new socket (old connections drain).
                        close(gateway, number, served.protocol).await;
                    }
                    let protocol_label = match port.protocol() {
                        Protocol::Udp => "udp",
                        Protocol::Tcp => "tcp",
                        _ => "tls",
                    };
                    let metrics =
                        StreamPortMetrics::new(gateway.metrics().clone(), number, protocol_label);
                    metrics.set_routes(&table_routes(&table));
                    let router = StreamRouter::new(table)
                        .client_hello_timeout(handshake_timeout)
                        .observer(metrics.clone());
                    let listeners = gateway.listeners_mut();
                    let bound = match port.protocol() {
                        Protocol::Udp => listeners.add_udp(number, router.clone()).await,
                        _ => {
                            listeners
                                .add_streams_with(number, options.clone(), router.clone())
                                .await
                        }
                    };
                    let local = match bound {
                        Ok(local) => Some(local),
                        Err(error) => {
                            tracing::error!(port = number, %error, "cannot listen");
                            errors.push(ConfigError::new(
                                format!("listeners[port={number}]"),
                                error.to_string(),
                            ));
                            bind_errors.push((number, error.to_string()));
                            None
                        }
                    };
                    self.ports.insert(
                        key,
                        StreamPort {
                            protocol: port.protocol(),
                            router,
                            metrics,
                            tls,
                            options,
                            local,
                        },
                    );
                }
            }
        }
        gateway.metrics().retain_stream_routes(&served_routes);
    }
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("ports", &self.ports.keys().collect::<Vec<_>>())
            .finish()
    }
}

async fn close(gateway: &mut Gateway, port: u16, protocol: Protocol) {
    let listeners = gateway.listeners_mut();
    match protocol {
        Protocol::Udp => {
            listeners.remove_udp(port).await;
        }
        _ => {
            listeners.remove(port).await;
        }
    }
}

/// The ids of every route of `table` (a route on several listeners more than once).
fn table_routes(table: &StreamTable) -> Vec<gatekit_core::route::RouteId> {
    table
        .routes()
        .flat_map(|(_, routes)| routes.into_iter().cloned())
        .collect()
}

/// The table of one stream port.
fn build_table(
    port: &PortListeners,
    acceptor: Option<&TlsAcceptor>,
    upstreams: &Upstreams,
) -> Result<StreamTable, ConfigError> {
    let mut listeners = Vec::with_capacity(port.listeners().len());
    for listener in port.listeners() {
        let mode = match (port.protocol(), listener.tls_mode()) {
            (Protocol::Udp, _) => ListenerMode::Udp,
            (Protocol::Tcp, _) => ListenerMode::Tcp,
            (_, Some(TlsMode::Terminate)) => match acceptor {
                Some(acceptor) => ListenerMode::Terminate(acceptor.clone()),
                // No usable certificate (reported with the certificates): nothing to
                // terminate with, so the listener takes no connection.
                None => continue,
            },
            _ => ListenerMode::Passthrough,
        };
        let hostname = match port.protocol() {
            Protocol::Tls => listener.hostname(),
            _ => None,
        };
        // A ClientTrafficPolicy's `timeout.tcp.idleTimeout` (TLS and TCP listeners, as
        // in Envoy Gateway; UDP keeps its default).
        let idle_timeout = match port.protocol() {
            Protocol::Udp => None,
            _ => listener.idle_timeout(),
        };
        listeners.push(
            StreamListener::new(mode)
                .hostname(hostname)
                .idle_timeout(idle_timeout)
                .routes(port.listener_stream_routes(listener).iter().cloned()),
        );
    }
    StreamTable::build(listeners, |name| {
        let upstream = upstreams.upstream(name)?;
        let spec = upstreams.spec(name);
        // An Envoy Gateway BackendTrafficPolicy's `proxyProtocol`: a header with the
        // client's address (PROXY-derived on a port reading one) before any byte.
        let proxy_protocol = spec.as_ref().and_then(|s| s.proxy_protocol());
        let mut backend =
            StreamBackend::new(Arc::new(Balanced(upstream))).proxy_protocol(proxy_protocol);
        // The Service's connect timeout (BackendPolicy `connection.connectTimeout`, or a
        // BackendTrafficPolicy's `timeout.tcp.connectTimeout`), validated when loaded.
        if let Some(t) = spec
            .as_ref()
            .and_then(|s| s.policy())
            .and_then(|p| p.connection.as_ref())
            .and_then(|c| c.connect_timeout().ok().flatten())
        {
            backend = backend.connect_timeout(t);
        }
        Some(backend)
    })
}

/// An upstream of the registry as a stream backend: each connection attempt is a pick
/// (on a request carrying the connection's facts, for source-IP hashing, and the
/// endpoints already tried), held while the connection is open (least-request counts
/// it). The balancer learns the connect's outcome: its latency when it is made, a
/// connect failure as an HTTP request's; the connection's life is not a latency.
struct Balanced<S>(Upstream<S>);

impl<S: Send + Sync + 'static> StreamUpstream for Balanced<S> {
    fn pick(&self, info: &ConnectionInfo, tried: &[SocketAddr]) -> Option<Box<dyn StreamEndpoint>> {
        let mut req = http::Request::new(());
        req.extensions_mut().insert(info.clone());
        if !tried.is_empty() {
            let record = TriedEndpoints::new();
            for addr in tried {
                record.record(*addr);
            }
            req.extensions_mut().insert(record);
        }
        let picked = self.0.pick(&req).ok()?;
        Some(Box::new(BalancedEndpoint(picked)))
    }
}

struct BalancedEndpoint<S>(Picked<S>);

impl<S: Send + Sync + 'static> StreamEndpoint for BalancedEndpoint<S> {
    fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    fn connected(&mut self) {
        // A success for outlier detection, with the connect latency for the estimate.
        self.0.report(Ok(http::StatusCode::OK));
    }

    fn connect_failed(self: Box<Self>, _: &io::Error) {
        // What outlier detection counts as a connect failure of an HTTP request (a
        // connect timeout included, as on the HTTP path).
        self.0.finish(Err(ErrorKind::Connect));
    }

    fn closed(self: Box<Self>, _: Option<&io::Error>) {
        // Released from in flight; the outcome was the connect (an error later in the
        // stream is the client's or the backend's protocol, not unreachability).
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use gatekit_core::{Change, Endpoint};
    use gatekit_lb::{Algorithm, EndpointHealth, Outcome, OutcomeObserver, UpstreamConfig};

    use super::*;

    #[derive(Default)]
    struct Outcomes(Mutex<Vec<Outcome>>);

    impl OutcomeObserver for Outcomes {
        fn on_outcome(&self, _: &Endpoint, _: &EndpointHealth, outcome: Outcome) {
            self.0.lock().unwrap().push(outcome);
        }
    }

    #[tokio::test]
    async fn a_stream_connection_tells_the_balancer_its_connect_not_its_life() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Outcomes::default());
        let config = UpstreamConfig::new(Algorithm::LeastRequest).with_observer(seen.clone());
        let upstream = Upstream::new(config, |_: &Endpoint| ());
        upstream.apply(Change::Replace(vec![Endpoint::new(addr)]));
        let backend = StreamBackend::new(Arc::new(Balanced(upstream.clone())));
        let info = ConnectionInfo::new("127.0.0.1:40000".parse().unwrap(), addr, false);

        let (tcp, endpoint) = backend.connect(&info).await.unwrap();
        // Told at connect, while the connection is open and counted in flight.
        {
            let outcomes = seen.0.lock().unwrap();
            assert_eq!(outcomes.len(), 1, "{outcomes:?}");
            assert_eq!(outcomes[0].status_code(), Some(http::StatusCode::OK));
        }
        assert_eq!(upstream.in_flight(addr), Some(1));
        // The connection lives on; its end tells nothing more and releases it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        endpoint.closed(None);
        drop(tcp);
        assert_eq!(upstream.in_flight(addr), Some(0));
        let outcomes = seen.0.lock().unwrap();
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert!(
            outcomes[0].latency() < Duration::from_millis(200),
            "{outcomes:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_stream_connect_is_a_connect_failure_for_the_balancer() {
        // A port nothing listens on.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let seen = Arc::new(Outcomes::default());
        let config = UpstreamConfig::new(Algorithm::LeastRequest).with_observer(seen.clone());
        let upstream = Upstream::new(config, |_: &Endpoint| ());
        upstream.apply(Change::Replace(vec![Endpoint::new(addr)]));
        let backend = StreamBackend::new(Arc::new(Balanced(upstream.clone()))).attempts(1);
        let info = ConnectionInfo::new("127.0.0.1:40000".parse().unwrap(), addr, false);
        assert!(backend.connect(&info).await.is_err());
        let outcomes = seen.0.lock().unwrap();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].error_kind(), Some(ErrorKind::Connect));
        assert_eq!(upstream.in_flight(addr), Some(0));
    }
}
