//! Gateway listeners: a port → [`gatekit_core::server`] listener map, with the
//! process's connection metrics (see [`Listeners`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::Body;
use gatekit_core::BoxError;
use gatekit_core::path::PathPolicy;
pub use gatekit_core::server::DrainOutcome;
use gatekit_core::server::{
    ConnectionLimit, ConnectionObserver, Drain, Http1Codec, PerClientLimit, Server, ServerConfig,
    ServerHandle,
};
use gatekit_core::stream::{StreamRouter, UdpHandle, UdpRelay};
use gatekit_core::tls::{CertStore, ServerTls, TlsAcceptor, TlsError};
use http::{Request, Response};
use prometheus_client::metrics::gauge::Gauge;
use tower_service::Service;

use crate::Metrics;
use crate::settings::Settings;

/// Why a listener could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    #[non_exhaustive]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A listener already serves this port.
    #[error("port {0} already has a listener")]
    PortInUse(u16),
    /// The TLS settings could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// How the listeners bind and limit connections.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ListenerSettings {
    /// The address every listener binds on (the port comes from each listener).
    pub bind: IpAddr,
    /// Open connections across all listeners; beyond it new ones are closed at once.
    pub max_connections: usize,
    /// How long a client may take to send a complete HTTP/1 request head.
    pub header_read_timeout: Duration,
    /// How long a client may take to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Open connections from one client IP address across all listeners (`None`: no
    /// per-client limit).
    pub max_connections_per_client: Option<usize>,
    /// How request paths are checked and normalised before the listener's service
    /// sees them (414 for long targets, 400 for refused paths).
    pub path_policy: PathPolicy,
    /// How long the open connections of a removed listener may take to finish.
    pub drain_timeout: Duration,
    /// Whose PROXY protocol headers are read on ports that ask for them (see
    /// [`Limits::proxy_protocol_trusted_sources`](crate::Limits::proxy_protocol_trusted_sources)).
    pub proxy_protocol_trusted_sources: Vec<ipnet::IpNet>,
    /// Which HTTP/1.1 server connections start with.
    pub http1_codec: Http1Codec,
}

impl ListenerSettings {
    /// The limits of `settings`, binding on `bind`.
    pub fn from_settings(settings: &Settings, bind: IpAddr) -> Self {
        Self {
            bind,
            max_connections: settings.limits.max_connections,
            header_read_timeout: settings.limits.header_read_timeout,
            tls_handshake_timeout: settings.limits.tls_handshake_timeout,
            max_connections_per_client: settings.limits.max_connections_per_client,
            path_policy: settings.paths.policy(),
            drain_timeout: settings
                .drain_timeout
                .unwrap_or(crate::settings::DEFAULT_DRAIN_TIMEOUT),
            proxy_protocol_trusted_sources: settings.limits.proxy_protocol_trusted_sources.clone(),
            http1_codec: settings.http1_codec.codec(),
        }
    }
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self::from_settings(&Settings::default(), IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
}

/// What one port's connections get besides its transport (see [`Listeners::add_with`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortOptions {
    /// Read a PROXY protocol header first, from the settings' trusted sources.
    pub proxy_protocol: bool,
    /// What happens to `x-forwarded-client-cert` on connections without TLS (on TLS
    /// ones the handshake's listener settings decide).
    pub forward_client_cert: gatekit_core::proxy::ForwardClientCertMode,
    /// Most connections open on the port at once (Envoy Gateway's `connectionLimit`),
    /// besides the settings' limit shared by every port; `None`: no bound of its own.
    pub max_connections: Option<usize>,
    /// How each request's client is found behind trusted proxies (Envoy Gateway's
    /// `clientIPDetection`); `None`: the connection's peer. HTTP and HTTPS ports only.
    pub client_ip: Option<Arc<gatekit_core::client_ip::ClientIpDetection>>,
}

impl PortOptions {
    /// Options reading PROXY protocol headers when `proxy_protocol`, handling
    /// `x-forwarded-client-cert` on cleartext connections as `forward_client_cert` says.
    pub fn new(
        proxy_protocol: bool,
        forward_client_cert: gatekit_core::proxy::ForwardClientCertMode,
    ) -> Self {
        Self {
            proxy_protocol,
            forward_client_cert,
            max_connections: None,
            client_ip: None,
        }
    }

    /// Finds each request's client as `detection` says (`None`: the peer).
    #[must_use]
    pub fn with_client_ip(
        mut self,
        detection: Option<Arc<gatekit_core::client_ip::ClientIpDetection>>,
    ) -> Self {
        self.client_ip = detection;
        self
    }

    /// At most `max` connections open on the port at once (`None`: no bound of its own).
    #[must_use]
    pub fn with_max_connections(mut self, max: Option<usize>) -> Self {
        self.max_connections = max;
        self
    }
}

/// Plain HTTP or TLS-terminated HTTPS.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Transport {
    /// HTTP/1.1 and HTTP/2 (prior knowledge) in the clear.
    Plain,
    /// TLS with certificates chosen by SNI from the store; ALPN `h2` and `http/1.1`.
    /// Replace the store's set to rotate certificates.
    Tls(Arc<CertStore>),
    /// TLS with settings (client certificates, versions, ciphers, ALPN, ...) and
    /// certificates chosen by SNI (see [`ServerTls`]); replace them there.
    TlsBySni(Arc<ServerTls>),
}

/// The gateway's listening sockets: one [`gatekit_core::server::Server`] per port, plain
/// or TLS, sharing one [`ConnectionLimit`], each with its own [`Drain`] group, with each port's
/// open connections in `gatekit_active_connections` and refusals at the limit in
/// `gatekit_connections_rejected_total`. Everything a connection goes through (limit,
/// TLS by SNI, HTTP/1.1 and HTTP/2, header deadline, path policy, draining) is core's;
/// see [`gatekit_core::server`].
///
/// The service passed to [`add`](Self::add) is cloned per connection and per request, so
/// it should be an `Arc` inside. To change routing without rebinding, pass a service that
/// reads its configuration from an `ArcSwap` (as gatekit-core's router does); sockets,
/// limits and connections are untouched by a reload.
pub struct Listeners {
    settings: ListenerSettings,
    config: ServerConfig,
    metrics: Metrics,
    limit: ConnectionLimit,
    per_client: Option<PerClientLimit>,
    /// Each port with its own drain group: a port removed while the gateway serves
    /// drains its connections on its own.
    bound: HashMap<u16, (ServerHandle, Drain)>,
    /// UDP relays by port (a UDP port may share its number with a TCP one).
    udp: HashMap<u16, UdpHandle>,
    /// The drain groups of removed ports whose connections may still be open (a
    /// shutdown drains them too).
    removed: Vec<Drain>,
}

impl Listeners {
    /// No listeners yet; connections will be recorded in `metrics`.
    pub fn new(settings: ListenerSettings, metrics: Metrics) -> Self {
        let config = ServerConfig::default()
            .header_read_timeout(settings.header_read_timeout)
            .http1_codec(settings.http1_codec)
            .path_policy(Some(settings.path_policy));
        Self {
            limit: ConnectionLimit::new(settings.max_connections),
            per_client: settings.max_connections_per_client.map(PerClientLimit::new),
            settings,
            config,
            metrics,
            bound: HashMap::new(),
            udp: HashMap::new(),
            removed: Vec::new(),
        }
    }

    /// Binds `port` on the configured address and starts accepting, serving each
    /// connection with a clone of `service`, behind the settings' path policy (its
    /// refusals have an empty `B::default()` body). Port 0 picks a free port. Returns the
    /// bound address; the listener is known by its port from then on.
    ///
    /// # Errors
    ///
    /// [`ListenError::Bind`] if the socket cannot be bound, [`ListenError::PortInUse`] if
    /// this set already listens there, [`ListenError::Tls`] if the TLS settings cannot be
    /// built.
    pub async fn add<S, B>(
        &mut self,
        port: u16,
        transport: Transport,
        service: S,
    ) -> Result<SocketAddr, ListenError>
    where
        S: Service<Request<Body>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Default + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.add_with(port, transport, PortOptions::default(), service)
            .await
    }

    /// [`add`](Self::add) with per-port `options`: a PROXY protocol header read first
    /// (from the settings' trusted sources only; required from them), what happens to
    /// `x-forwarded-client-cert` on connections without TLS.
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub async fn add_with<S, B>(
        &mut self,
        port: u16,
        transport: Transport,
        options: PortOptions,
        service: S,
    ) -> Result<SocketAddr, ListenError>
    where
        S: Service<Request<Body>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Default + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if port != 0 && self.bound.contains_key(&port) {
            return Err(ListenError::PortInUse(port));
        }
        let tls = match &transport {
            Transport::Plain => None,
            Transport::Tls(store) => {
                let config = gatekit_core::tls::server_config(store.clone())?;
                Some(
                    TlsAcceptor::new(Arc::new(config))
                        .with_handshake_timeout(self.settings.tls_handshake_timeout),
                )
            }
            Transport::TlsBySni(configs) => Some(
                TlsAcceptor::with_server_tls(configs.clone())
                    .with_handshake_timeout(self.settings.tls_handshake_timeout),
            ),
        };
        let (mut server, drain) = self.bind(port, options).await?;
        if let Some(tls) = tls {
            server = server.tls(tls);
        }
        let handle = server.serve(service);
        let local = handle.local_addr();
        tracing::info!(%local, tls = handle.is_tls(), "listening");
        self.bound.insert(local.port(), (handle, drain));
        Ok(local)
    }

    /// Binds `port` for TLS (passthrough or terminated, by SNI) and TCP streams routed
    /// by `router`, with the same connection limits, metrics and per-port drain group
    /// as HTTP listeners (a drain closes stream connections at its deadline). Returns
    /// the bound address.
    ///
    /// # Errors
    ///
    /// [`ListenError::Bind`] or [`ListenError::PortInUse`], as [`add`](Self::add).
    pub async fn add_streams(
        &mut self,
        port: u16,
        router: StreamRouter,
    ) -> Result<SocketAddr, ListenError> {
        self.add_streams_with(port, PortOptions::default(), router)
            .await
    }

    /// [`add_streams`](Self::add_streams) with per-port `options`: a PROXY protocol
    /// header read first, as on HTTP ports (its source address is the connection's
    /// client: the balancer's source-IP hash and a backend's PROXY header see it).
    /// `forward_client_cert` plays no part in a stream.
    ///
    /// # Errors
    ///
    /// As [`add_streams`](Self::add_streams).
    pub async fn add_streams_with(
        &mut self,
        port: u16,
        options: PortOptions,
        router: StreamRouter,
    ) -> Result<SocketAddr, ListenError> {
        if port != 0 && self.bound.contains_key(&port) {
            return Err(ListenError::PortInUse(port));
        }
        let (server, drain) = self.bind(port, options).await?;
        let handle = server.serve_streams(router);
        let local = handle.local_addr();
        tracing::info!(%local, "listening for streams");
        self.bound.insert(local.port(), (handle, drain));
        Ok(local)
    }

    /// Binds UDP `port` and relays its datagrams per client flow as `router` routes
    /// them (see [`UdpRelay`]). Returns the bound address.
    ///
    /// # Errors
    ///
    /// [`ListenError::Bind`], or [`ListenError::PortInUse`] if a UDP relay already
    /// serves the port.
    pub async fn add_udp(
        &mut self,
        port: u16,
        router: StreamRouter,
    ) -> Result<SocketAddr, ListenError> {
        if port != 0 && self.udp.contains_key(&port) {
            return Err(ListenError::PortInUse(port));
        }
        let addr = SocketAddr::new(self.settings.bind, port);
        let relay = UdpRelay::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        let local = relay.local_addr();
        let handle = relay.serve(router);
        tracing::info!(%local, "listening for UDP");
        self.udp.insert(local.port(), handle);
        Ok(local)
    }

    /// Stops the UDP relay on `port`: its socket closes and its flows end at once (UDP
    /// has no connection to finish). Returns whether there was one.
    pub async fn remove_udp(&mut self, port: u16) -> bool {
        match self.udp.remove(&port) {
            Some(handle) => {
                handle.stop().await;
                true
            }
            None => false,
        }
    }

    /// A TCP server bound on `port` with the limits, metrics and a drain group of its own,
    /// with the per-port `options`.
    async fn bind(
        &mut self,
        port: u16,
        options: PortOptions,
    ) -> Result<(Server, Drain), ListenError> {
        let addr = SocketAddr::new(self.settings.bind, port);
        let server = Server::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        let local = server.local_addr();
        let observer = PortMetrics {
            gauge: self.metrics.connection_gauge(local.port()),
            metrics: self.metrics.clone(),
        };
        let drain = Drain::new();
        let config = self
            .config
            .clone()
            .proxy_protocol(options.proxy_protocol.then(|| {
                gatekit_core::server::ProxyProtocol::new(
                    self.settings.proxy_protocol_trusted_sources.iter().copied(),
                )
            }))
            .forward_client_cert(options.forward_client_cert)
            .client_ip(options.client_ip.as_deref().cloned());
        let mut server = server
            .config(config)
            .limit(self.limit.clone())
            .drain(&drain)
            .observer(Arc::new(observer));
        if let Some(per_client) = &self.per_client {
            server = server.per_client_limit(per_client.clone());
        }
        if let Some(max) = options.max_connections {
            server = server.port_limit(ConnectionLimit::new(max));
        }
        Ok((server, drain))
    }

    /// Stops accepting on `port` and closes its socket; its open connections are drained
    /// in the background, as at shutdown: asked to finish (HTTP/1: after the in-flight
    /// response; HTTP/2: GOAWAY, open streams complete), and closed — upgraded
    /// connections (WebSockets) included — when the settings' `drain_timeout` has
    /// passed. Returns whether such a listener existed.
    pub async fn remove(&mut self, port: u16) -> bool {
        let Some((handle, drain)) = self.bound.remove(&port) else {
            return false;
        };
        let local = handle.local_addr();
        handle.stop().await;
        tracing::info!(%local, connections = drain.active_connections(), "stopped listening; draining its connections");
        self.removed.retain(|d: &Drain| d.active_connections() > 0);
        self.removed.push(drain.clone());
        let timeout = self.settings.drain_timeout;
        tokio::spawn(async move {
            let outcome = drain.drain(timeout).await;
            tracing::info!(%local, ?outcome, "connections of a removed listener drained");
        });
        true
    }

    /// The bound address of each listener, with whether it terminates TLS.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, bool)> {
        let mut addrs: Vec<_> = self
            .bound
            .values()
            .map(|(h, _)| (h.local_addr(), h.is_tls()))
            .collect();
        addrs.sort();
        addrs
    }

    /// How the listeners bind and limit connections.
    pub fn settings(&self) -> &ListenerSettings {
        &self.settings
    }

    /// Open client connections across all listeners.
    pub fn active_connections(&self) -> usize {
        self.limit.active()
    }

    /// Stops every listener and closes its socket; open connections go on.
    pub async fn close(&mut self) {
        let ports: Vec<u16> = self.bound.keys().copied().collect();
        for port in ports {
            self.remove(port).await;
        }
        let udp: Vec<u16> = self.udp.keys().copied().collect();
        for port in udp {
            self.remove_udp(port).await;
        }
    }

    /// Stops every listener ([`close`](Self::close)), lets open connections (those of
    /// removed listeners still draining too) finish gracefully for up to `timeout`, then
    /// drops the rest (see [`Drain::drain`]).
    pub async fn drain(mut self, timeout: Duration) -> DrainOutcome {
        let mut groups: Vec<Drain> = self.bound.values().map(|(_, d)| d.clone()).collect();
        groups.append(&mut self.removed);
        self.close().await;
        let mut drains = tokio::task::JoinSet::new();
        for group in groups {
            drains.spawn(async move { group.drain(timeout).await });
        }
        let outcomes: Vec<DrainOutcome> = drains.join_all().await;
        let dropped: usize = outcomes
            .iter()
            .map(|o| match o {
                DrainOutcome::TimedOut { dropped } => *dropped,
                _ => 0,
            })
            .sum();
        if outcomes.iter().all(|o| *o == DrainOutcome::Complete) {
            DrainOutcome::Complete
        } else {
            DrainOutcome::TimedOut { dropped }
        }
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("settings", &self.settings)
            .field("listening", &self.local_addrs())
            .field("active_connections", &self.active_connections())
            .finish_non_exhaustive()
    }
}

/// One port's connections in the process metrics.
struct PortMetrics {
    gauge: Gauge,
    metrics: Metrics,
}

impl ConnectionObserver for PortMetrics {
    fn opened(&self) {
        self.gauge.inc();
    }

    fn closed(&self) {
        self.gauge.dec();
    }

    fn rejected(&self) {
        self.metrics.record_rejected_connection();
    }
}
