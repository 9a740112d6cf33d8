//! [`UdpRelay`]: UDP datagrams relayed per client flow.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::backend::StreamEndpoint;
use super::observer::StreamStats;
use super::relay::Activity;
use super::router::StreamRouter;
use crate::ConnectionInfo;
use crate::route::RouteId;

/// Default bound on a UDP listener's open flows.
pub const DEFAULT_MAX_UDP_FLOWS: usize = 16_384;

/// How long a datagram may wait for its flow's upstream socket to take it.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// The largest datagram relayed (the UDP maximum).
const MAX_DATAGRAM: usize = 64 * 1024;

/// A UDP listening socket relaying datagrams per client flow (see the
/// [module docs](super#udp)), configured with setters, then [served](Self::serve).
pub struct UdpRelay {
    socket: UdpSocket,
    local: SocketAddr,
    max_flows: usize,
}

impl UdpRelay {
    /// Binds a UDP socket on `addr`.
    ///
    /// # Errors
    ///
    /// The I/O error of binding.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket,
            local,
            max_flows: DEFAULT_MAX_UDP_FLOWS,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// At most `max` open flows (default [`DEFAULT_MAX_UDP_FLOWS`]); datagrams of new
    /// clients beyond it are dropped and counted.
    #[must_use]
    pub fn max_flows(mut self, max: usize) -> Self {
        self.max_flows = max;
        self
    }

    /// Starts relaying on a task of its own, routing each new flow with `router`'s table
    /// current at the flow's first datagram.
    pub fn serve(self, router: StreamRouter) -> UdpHandle {
        let (stop, stopped) = oneshot::channel();
        let shared = Arc::new(Shared {
            flows: parking_lot::Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
        });
        let local = self.local;
        let task = tokio::spawn(run(self, router, shared.clone(), stopped));
        UdpHandle {
            local,
            shared,
            stop,
            task,
        }
    }
}

impl fmt::Debug for UdpRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpRelay")
            .field("local", &self.local)
            .field("max_flows", &self.max_flows)
            .finish()
    }
}

/// A relay started by [`UdpRelay::serve`]; dropping it stops the relay as
/// [`stop`](Self::stop) does.
pub struct UdpHandle {
    local: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl UdpHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Open flows now.
    pub fn flows(&self) -> usize {
        self.shared.flows.lock().len()
    }

    /// Datagrams dropped since the start (over the flow bound, no route or backend, or
    /// an upstream socket that could not take them).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Stops relaying: the socket is closed and every flow ends.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, local = %self.local, "UDP relay failed");
        }
    }
}

impl fmt::Debug for UdpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpHandle")
            .field("local", &self.local)
            .field("flows", &self.flows())
            .field("dropped", &self.dropped())
            .finish()
    }
}

struct Shared {
    flows: parking_lot::Mutex<HashMap<SocketAddr, Flow>>,
    dropped: AtomicU64,
}

#[derive(Clone)]
struct Flow {
    upstream: Arc<UdpSocket>,
    activity: Arc<Activity>,
}

async fn run(
    relay: UdpRelay,
    router: StreamRouter,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let socket = Arc::new(relay.socket);
    let local = relay.local;
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let drop_one = |route: Option<&RouteId>| {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = router.observer_ref() {
            observer.dropped_datagram(route);
        }
    };
    loop {
        while tasks.try_join_next().is_some() {}
        let (n, client) = tokio::select! {
            biased;
            _ = &mut stopped => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    // ICMP errors of earlier sends surface here on some systems.
                    tracing::debug!(%error, %local, "UDP receive failed");
                    continue;
                }
            },
        };
        let datagram = &buf[..n];
        let existing = shared.flows.lock().get(&client).cloned();
        let flow = match existing {
            Some(flow) => flow,
            None => {
                if shared.flows.lock().len() >= relay.max_flows {
                    drop_one(None);
                    continue;
                }
                let table = router.load();
                let Some(selected) = table.select(None) else {
                    drop_one(None);
                    continue;
                };
                let route = selected.route.clone();
                if !selected.allows(client.ip()) {
                    if let Some(observer) = router.observer_ref() {
                        observer.refused(Some(&route), super::observer::Refusal::Denied);
                    }
                    drop_one(Some(&route));
                    continue;
                }
                let Some(slot) = selected.acquire() else {
                    if let Some(observer) = router.observer_ref() {
                        observer.refused(Some(&route), super::observer::Refusal::Limit);
                    }
                    drop_one(Some(&route));
                    continue;
                };
                let info = ConnectionInfo::new(client, local, false);
                let Some(endpoint) = selected.backend.and_then(|b| b.pick_endpoint(&info)) else {
                    drop_one(Some(&route));
                    continue;
                };
                let upstream = match connect_udp(endpoint.addr()).await {
                    Ok(upstream) => Arc::new(upstream),
                    Err(error) => {
                        tracing::debug!(%error, addr = %endpoint.addr(), "UDP upstream socket failed");
                        endpoint.connect_failed(&error);
                        drop_one(Some(&route));
                        continue;
                    }
                };
                let flow = Flow {
                    upstream,
                    activity: Activity::new(),
                };
                shared.flows.lock().insert(client, flow.clone());
                if let Some(observer) = router.observer_ref() {
                    observer.opened(&route);
                }
                tasks.spawn(replies(
                    FlowEnd {
                        client,
                        route,
                        endpoint: Some(endpoint),
                        shared: shared.clone(),
                        router: router.clone(),
                        activity: flow.activity.clone(),
                        _slot: slot,
                    },
                    flow.clone(),
                    socket.clone(),
                    selected.idle_timeout,
                ));
                flow
            }
        };
        // A socket whose buffer is full (or whose readiness is not yet known, as for a
        // new one) gets a short wait, so one busy flow cannot stall the others for long.
        let sent = match flow.upstream.try_send(datagram) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(SEND_WAIT, flow.upstream.send(datagram)).await {
                    Ok(sent) => sent,
                    Err(_) => Err(e),
                }
            }
            sent => sent,
        };
        match sent {
            Ok(_) => flow.activity.count_received(n),
            Err(error) => {
                tracing::debug!(%error, %client, "UDP datagram to upstream dropped");
                drop_one(None);
            }
        }
    }
    // Flows end with the relay.
    tasks.shutdown().await;
}

thread_local! {
    /// The buffer replies are read into and sent from, one per runtime thread: a flow
    /// holds no buffer of its own while it waits (16,384 flows with a 64 KiB buffer each
    /// would hold 1 GiB).
    static REPLY_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; MAX_DATAGRAM].into_boxed_slice());
}

/// Relays the upstream's replies of one flow to its client until it is idle. A reply
/// the listening socket cannot take at once (its send buffer full) is dropped, as a
/// congested network would.
async fn replies(end: FlowEnd, flow: Flow, socket: Arc<UdpSocket>, idle: std::time::Duration) {
    loop {
        let deadline = flow.activity.idle_deadline(idle);
        tokio::select! {
            ready = flow.upstream.readable() => {
                if let Err(error) = ready {
                    tracing::debug!(%error, "UDP upstream not readable");
                    continue;
                }
                // Every reply that is ready, read and sent without an await in between.
                loop {
                    let relayed = REPLY_BUF.with_borrow_mut(|buf| {
                        let n = flow.upstream.try_recv(buf)?;
                        Ok::<_, io::Error>((n, socket.try_send_to(&buf[..n], end.client)))
                    });
                    match relayed {
                        Ok((n, sent)) => {
                            flow.activity.count_sent(n);
                            if let Err(error) = sent {
                                tracing::debug!(%error, client = %end.client, "UDP reply dropped");
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // An ICMP error from the endpoint (port unreachable): the flow goes
                        // on until idle, as the client may retry.
                        Err(error) => {
                            tracing::debug!(%error, "UDP upstream receive failed");
                            break;
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if flow.activity.idle_deadline(idle) <= tokio::time::Instant::now() {
                    return;
                }
            }
        }
    }
}

/// A flow's end, when its task returns or is aborted: out of the map, reported.
struct FlowEnd {
    client: SocketAddr,
    route: RouteId,
    endpoint: Option<Box<dyn StreamEndpoint>>,
    shared: Arc<Shared>,
    router: StreamRouter,
    activity: Arc<Activity>,
    /// Its place under the route's `max_connections`.
    _slot: crate::limit::concurrency::Slot,
}

impl Drop for FlowEnd {
    fn drop(&mut self) {
        self.shared.flows.lock().remove(&self.client);
        if let Some(endpoint) = self.endpoint.take() {
            endpoint.closed(None);
        }
        if let Some(observer) = self.router.observer_ref() {
            let stats = StreamStats {
                received: self.activity.received(),
                sent: self.activity.sent(),
                duration: self.activity.elapsed(),
            };
            observer.closed(&self.route, &stats);
        }
    }
}

async fn connect_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(addr).await?;
    Ok(socket)
}
