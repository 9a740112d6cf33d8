//! The [`Upstream`]: an endpoint set fed by changes, and the balancing service over it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures_util::{FutureExt, Stream, StreamExt};
use gatekit_core::client::{Client, EndpointClient, Transport};
use gatekit_core::retry::TriedEndpoints;
use gatekit_core::session::Sticky;
use gatekit_core::{BoxError, Change, Endpoint, EndpointState, Error, ErrorKind};
use http::{Request, Response};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;
use tower_service::Service;

use crate::balance::{self, PickCtx, hash};
use crate::clock;
use crate::config::UpstreamConfig;
use crate::entry::{Entry, Tracking};
use crate::future::ResponseFuture;
use crate::observe::Outcome;
use crate::snapshot::{Member, Mode, Snapshot};
use crate::{EndpointHealth, SharedHealth};

/// Makes the service that talks to one endpoint (for gatekit, core's `EndpointClient`).
///
/// Implemented for closures `Fn(&Endpoint) -> S`. Called once per address when it joins
/// the set; an update of an endpoint already in the set keeps its service.
pub trait NewEndpoint: Send + Sync + 'static {
    /// The per-endpoint service.
    type Service;

    /// Makes the service for `endpoint`.
    fn new_endpoint(&self, endpoint: &Endpoint) -> Self::Service;
}

impl<F, S> NewEndpoint for F
where
    F: Fn(&Endpoint) -> S + Send + Sync + 'static,
{
    type Service = S;

    fn new_endpoint(&self, endpoint: &Endpoint) -> S {
        self(endpoint)
    }
}

/// A balanced set of endpoints, and the tower service that sends each request to one.
///
/// Cloning is one atomic increment: every clone shares the set, its per-endpoint state
/// and its update side. Feed it with [`apply`](Self::apply) /
/// [`apply_all`](Self::apply_all), or hand a stream of changes to
/// [`drive`](Self::drive) (or a `tower::discover::Discover` to
/// [`drive_discover`](Self::drive_discover)).
///
/// # Readiness
///
/// One `Upstream` is shared by every connection, so it is always ready:
/// [`poll_ready`](Service::poll_ready) returns `Ready(Ok(()))` at once. `call` picks an
/// endpoint; when no endpoint is usable the response future fails at once with
/// [`ErrorKind::NoHealthyEndpoint`] (503, retry-safe, the request handed back in it:
/// see [`Error::with_unsent_request`]) instead of waiting for one. The picked
/// endpoint's service is then driven to readiness inside the response future (gatekit's
/// endpoint clients are always ready, so this costs nothing; other services apply their
/// own backpressure there, counted as in flight on that endpoint).
///
/// # In-flight accounting
///
/// A pick increments the endpoint's in-flight count; it is decremented when the
/// response head arrives, the request fails, or the response future is dropped. Streaming
/// response bodies are not counted (counting them would box every body).
pub struct Upstream<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    config: UpstreamConfig,
    /// Shared when made with [`Upstream::with_factory`] (upstreams with the same client
    /// settings need one factory between them).
    new_endpoint: Arc<dyn NewEndpoint<Service = S>>,
    snapshot: ArcSwap<Snapshot<S>>,
    /// Serialises updates. The set an update starts from is the current snapshot's
    /// members (every effective update publishes one, so they are the latest): no
    /// second list of them is kept (40 bytes and an allocation per endpoint).
    update: Mutex<()>,
    /// Made at the first [`Upstream::subscribe`] (most upstreams have no follower: a
    /// watch channel is ~350 bytes).
    generation: OnceLock<watch::Sender<u64>>,
    cursor: AtomicUsize,
    /// Only with bounded load or peak-EWMA.
    tracking: Option<Arc<Tracking>>,
}

impl<S> Clone for Upstream<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// A handle to an [`Upstream`] that does not keep it alive: for the tasks that follow
/// it (a health checker's, an outlier detector's). A strong handle in such a task keeps
/// the upstream — and, through the upstream's observer, the follower itself — alive
/// after every other handle is gone.
pub struct WeakUpstream<S> {
    shared: std::sync::Weak<Shared<S>>,
}

impl<S> WeakUpstream<S> {
    /// The upstream, if any strong handle to it is left.
    pub fn upgrade(&self) -> Option<Upstream<S>> {
        self.shared.upgrade().map(|shared| Upstream { shared })
    }
}

impl<S> Clone for WeakUpstream<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for WeakUpstream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakUpstream")
            .field("alive", &(self.shared.strong_count() > 0))
            .finish()
    }
}

impl<S> fmt::Debug for Upstream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.shared.snapshot.load();
        f.debug_struct("Upstream")
            .field("algorithm", &self.shared.config.algorithm)
            .field("generation", &snap.generation)
            .field("endpoints", &snap.members.len())
            .finish_non_exhaustive()
    }
}

// === impl Upstream ===

impl Upstream<EndpointClient> {
    /// An empty upstream balancing by `config` whose endpoints are reached through
    /// gatekit-core's pooled `client`, speaking `transport` (for example
    /// [`Transport::http1`], or TLS with [`Transport::with_tls`]). The same as
    /// [`new`](Self::new) with a closure calling [`Client::endpoint`].
    pub fn with_client(config: UpstreamConfig, client: &Client, transport: Transport) -> Self {
        let client = client.clone();
        Self::new(config, move |ep: &Endpoint| {
            client.endpoint(ep.addr(), transport.clone())
        })
    }
}

impl<S: Send + Sync + 'static> Upstream<S> {
    /// An empty upstream balancing by `config`, making each endpoint's service with
    /// `new_endpoint`.
    pub fn new<N>(config: UpstreamConfig, new_endpoint: N) -> Self
    where
        N: NewEndpoint<Service = S>,
    {
        Self::with_factory(config, Arc::new(new_endpoint))
    }

    /// An empty upstream balancing by `config`, making each endpoint's service with
    /// `new_endpoint`, which other upstreams may share (one allocation for all the
    /// upstreams that make their endpoints' services alike, instead of one each).
    pub fn with_factory(
        config: UpstreamConfig,
        new_endpoint: Arc<dyn NewEndpoint<Service = S>>,
    ) -> Self {
        let tracking = Tracking::for_config(&config);
        let snapshot = Snapshot::build(0, &[], &config, Instant::now(), None);
        Self {
            shared: Arc::new(Shared {
                config,
                new_endpoint,
                snapshot: ArcSwap::from_pointee(snapshot),
                update: Mutex::new(()),
                generation: OnceLock::new(),
                cursor: AtomicUsize::new(0),
                tracking,
            }),
        }
    }

    /// Replaces the endpoint set with `endpoints` (addresses or [`Endpoint`]s): a
    /// builder-style [`apply`](Self::apply) of [`Change::Replace`], for a fixed set.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use gatekit_core::client::{Client, Transport};
    /// use gatekit_lb::{Algorithm, Upstream, UpstreamConfig};
    ///
    /// let upstream = Upstream::with_client(
    ///     UpstreamConfig::new(Algorithm::RoundRobin),
    ///     &Client::default(),
    ///     Transport::http1(),
    /// )
    /// .with_endpoints([
    ///     "127.0.0.1:8001".parse::<std::net::SocketAddr>().unwrap(),
    ///     "127.0.0.1:8002".parse::<std::net::SocketAddr>().unwrap(),
    /// ]);
    /// assert_eq!(upstream.endpoints().len(), 2);
    /// # }
    /// ```
    #[must_use]
    pub fn with_endpoints<E: Into<Endpoint>>(self, endpoints: impl IntoIterator<Item = E>) -> Self {
        self.apply(Change::Replace(
            endpoints.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &UpstreamConfig {
        &self.shared.config
    }

    /// Applies one change. See [`apply_all`](Self::apply_all).
    pub fn apply(&self, change: Change) {
        self.apply_all([change]);
    }

    /// Applies changes as one update: the new set is built (derived tables included) and
    /// swapped in once, without blocking picks. Endpoints keep their state (in-flight
    /// count, latency estimate, health, service) by address; a removed endpoint's
    /// requests in flight complete. An update that changes nothing swaps nothing.
    ///
    /// Updates are serialised by a lock that picks never take.
    pub fn apply_all(&self, changes: impl IntoIterator<Item = Change>) {
        let _update = self.shared.update.lock();
        let mut set = self.members();
        let now = Instant::now();
        let ramp = self.shared.config.slow_start().is_some()
            && set
                .iter()
                .any(|(_, m)| m.endpoint().state() == EndpointState::Ready);
        let mut changed = false;
        for change in changes {
            match change {
                Change::Insert(ep) => changed |= self.insert(&mut set, ep, None, ramp, now),
                Change::Remove(addr) => {
                    if let Ok(i) = set.binary_search_by_key(&addr, |(a, _)| *a) {
                        set.remove(i);
                        changed = true;
                    }
                }
                Change::Replace(eps) => changed |= self.replace(&mut set, eps, ramp, now),
                _ => {}
            }
        }
        if changed {
            self.publish(&set, now);
        }
    }

    /// Adds (or updates) `endpoint` with a ready-made service instead of one from the
    /// factory. An endpoint already in the set gets the new service (and fresh in-flight
    /// and latency state); its health is kept (copied into the endpoint's new state: a
    /// checker or detector following the upstream moves to it with the set's change).
    pub fn insert_with_service(&self, endpoint: Endpoint, service: S) {
        let _update = self.shared.update.lock();
        let mut set = self.members();
        let now = Instant::now();
        let ramp = self.shared.config.slow_start().is_some() && !set.is_empty();
        self.insert(&mut set, endpoint, Some(service), ramp, now);
        self.publish(&set, now);
    }

    /// The members of the current snapshot, sorted by address, to update (under the
    /// update lock).
    fn members(&self) -> Vec<(SocketAddr, Member<S>)> {
        self.shared
            .snapshot
            .load()
            .members
            .iter()
            .map(|entry| {
                (
                    entry.addr,
                    Member {
                        entry: Arc::clone(entry),
                    },
                )
            })
            .collect()
    }

    fn insert(
        &self,
        set: &mut Vec<(SocketAddr, Member<S>)>,
        ep: Endpoint,
        svc: Option<S>,
        ramp: bool,
        now: Instant,
    ) -> bool {
        let addr = ep.addr();
        match set.binary_search_by_key(&addr, |(a, _)| *a) {
            Ok(i) => self.update(&mut set[i].1, ep, svc, ramp, now),
            Err(i) => {
                set.insert(i, (addr, self.create(ep, svc, ramp, now)));
                true
            }
        }
    }

    /// Replaces the set by `eps` (the last of duplicate addresses wins), carrying each
    /// kept endpoint's state. One merge of the sorted input with the old set, instead
    /// of a removal and an insertion by key per endpoint.
    fn replace(
        &self,
        set: &mut Vec<(SocketAddr, Member<S>)>,
        mut eps: Vec<Endpoint>,
        ramp: bool,
        now: Instant,
    ) -> bool {
        // Stable: duplicates stay in input order. Linear on already sorted input.
        eps.sort_by_key(Endpoint::addr);
        let mut changed = false;
        let mut old = std::mem::take(set).into_iter().peekable();
        let mut merged: Vec<(SocketAddr, Member<S>)> = Vec::with_capacity(eps.len());
        for ep in eps {
            let addr = ep.addr();
            if let Some((last, m)) = merged.last_mut()
                && *last == addr
            {
                changed |= self.update(m, ep, None, ramp, now);
                continue;
            }
            // Old members before `addr` are not in the new set.
            while old.next_if(|(a, _)| *a < addr).is_some() {
                changed = true;
            }
            match old.next_if(|(a, _)| *a == addr) {
                Some((_, mut m)) => {
                    changed |= self.update(&mut m, ep, None, ramp, now);
                    merged.push((addr, m));
                }
                None => {
                    merged.push((addr, self.create(ep, None, ramp, now)));
                    changed = true;
                }
            }
        }
        changed |= old.next().is_some();
        // Sorted and unique: the new set as it is.
        *set = merged;
        changed
    }

    /// Updates the member in place to `ep` (with a new service if `svc` is given);
    /// whether anything changed.
    fn update(
        &self,
        m: &mut Member<S>,
        ep: Endpoint,
        svc: Option<S>,
        ramp: bool,
        now: Instant,
    ) -> bool {
        if let Some(svc) = svc {
            // A new entry: its health copied (the checker and detector, told the new
            // set, write to the new one from then on).
            let entry = self.entry(ep, svc);
            entry.health.copy_from(&m.entry.health);
            m.entry = Arc::new(entry);
            return true;
        }
        let old_state = {
            let old = m.endpoint();
            if old == ep {
                return false;
            }
            old.state()
        };
        let became_ready = old_state != EndpointState::Ready && ep.state() == EndpointState::Ready;
        if ramp && became_ready {
            m.entry.start_ramp(clock::nanos(now));
        }
        m.entry.set_endpoint(ep);
        true
    }

    /// A new member for `ep`, its service from `svc` or the factory.
    fn create(&self, ep: Endpoint, svc: Option<S>, ramp: bool, now: Instant) -> Member<S> {
        let svc = match svc {
            Some(svc) => svc,
            None => self.shared.new_endpoint.new_endpoint(&ep),
        };
        let ready = ep.state() == EndpointState::Ready;
        let entry = self.entry(ep, svc);
        if ramp && ready {
            entry.start_ramp(clock::nanos(now));
        }
        Member {
            entry: Arc::new(entry),
        }
    }

    fn entry(&self, ep: Endpoint, svc: S) -> Entry<S> {
        Entry::new(
            ep,
            svc,
            self.shared.config.observer.clone(),
            self.shared.tracking.clone(),
        )
    }

    fn publish(&self, set: &[(SocketAddr, Member<S>)], now: Instant) {
        let prev = self.shared.snapshot.load();
        let snap = Snapshot::build(
            prev.generation + 1,
            set,
            &self.shared.config,
            now,
            Some(&prev),
        );
        let generation = snap.generation;
        drop(prev);
        self.shared.snapshot.store(Arc::new(snap));
        // Under the update lock: a `subscribe` making the channel now reads the new
        // generation once the lock is free.
        if let Some(tx) = self.shared.generation.get() {
            tx.send_replace(generation);
        }
    }

    /// Applies every change `changes` yields until it ends. Changes that are ready
    /// together are applied as one update (up to 1,024 at a time).
    pub async fn drive<St>(&self, changes: St)
    where
        St: Stream<Item = Change>,
    {
        let mut changes = std::pin::pin!(changes);
        while let Some(first) = changes.next().await {
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match changes.next().now_or_never() {
                    Some(Some(c)) => batch.push(c),
                    _ => break,
                }
            }
            self.apply_all(batch);
        }
    }

    /// Follows a `tower::discover::Discover` stream until it ends: `Insert(key, svc)`
    /// adds or replaces the endpoint `to_endpoint(&key)` with `svc`; `Remove(key)`
    /// removes it.
    ///
    /// # Errors
    ///
    /// The first error the stream yields; changes before it stay applied.
    pub async fn drive_discover<D, F>(&self, discover: D, to_endpoint: F) -> Result<(), D::Error>
    where
        D: tower::discover::Discover<Service = S>,
        F: Fn(&D::Key) -> Endpoint,
    {
        use tower::discover::Change as D;
        let mut discover = std::pin::pin!(discover);
        while let Some(change) =
            futures_util::future::poll_fn(|cx| discover.as_mut().poll_discover(cx)).await
        {
            match change? {
                D::Insert(key, svc) => self.insert_with_service(to_endpoint(&key), svc),
                D::Remove(key) => self.apply(Change::Remove(to_endpoint(&key).addr())),
            }
        }
        Ok(())
    }

    /// Every endpoint in the set (NotReady ones included) with its shared health, in
    /// address order: what an active health checker checks.
    pub fn endpoints(&self) -> Vec<(Endpoint, SharedHealth)> {
        self.shared
            .snapshot
            .load()
            .members
            .iter()
            .map(|e| (e.endpoint(), shared_health(e)))
            .collect()
    }

    /// The shared health of the endpoint at `addr`, if it is in the set.
    pub fn health_of(&self, addr: SocketAddr) -> Option<SharedHealth> {
        let snap = self.shared.snapshot.load();
        snap.member(addr).map(shared_health)
    }

    /// Requests in flight to the endpoint at `addr`, if it is in the set.
    pub fn in_flight(&self, addr: SocketAddr) -> Option<usize> {
        let snap = self.shared.snapshot.load();
        snap.member(addr).map(|e| e.in_flight())
    }

    /// Requests in flight over the endpoints in the set (requests still running on
    /// removed endpoints are not included). O(endpoints).
    pub fn total_in_flight(&self) -> usize {
        self.shared
            .snapshot
            .load()
            .members
            .iter()
            .map(|e| e.in_flight())
            .sum()
    }

    /// The generation of the endpoint set: 0 when empty-new, +1 per effective update.
    pub fn generation(&self) -> u64 {
        self.shared.snapshot.load().generation
    }

    /// A receiver of the set's generation, changed after each effective update (the new
    /// set is visible to [`endpoints`](Self::endpoints) by then). A health checker
    /// follows the set with it; the receiver closes when the upstream is dropped.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared
            .generation
            .get_or_init(|| {
                // The update lock orders this read with `publish`.
                let _update = self.shared.update.lock();
                watch::Sender::new(self.generation())
            })
            .subscribe()
    }

    /// A handle that does not keep the upstream alive (see [`WeakUpstream`]).
    pub fn downgrade(&self) -> WeakUpstream<S> {
        WeakUpstream {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Recomputes aggregate health now (panic mode, locality shares, recoveries for slow
    /// start) instead of at the next refresh period. Health checkers may call it after
    /// changing an endpoint's health; individual picks see health changes at once anyway.
    pub fn refresh_health(&self) {
        let now = Instant::now();
        self.shared
            .snapshot
            .load()
            .refresh(now, clock::nanos(now), &self.shared.config);
    }

    /// Picks an endpoint for `req` and counts a request in flight on it until the
    /// returned [`Picked`] is dropped (or [`finish`](Picked::finish)ed).
    ///
    /// # Retries
    ///
    /// When `req` carries [`TriedEndpoints`] (gatekit-core's retry layer puts them in
    /// every attempt), the endpoints in it are skipped as if unavailable while another
    /// usable endpoint exists — each algorithm skips as it skips an unhealthy endpoint
    /// (see the [crate docs](crate#retries)) — and the picked endpoint is
    /// [`record`](TriedEndpoints::record)ed in it, so the next attempt avoids it too. If
    /// every usable endpoint was tried already, the pick is made as if nothing had been
    /// tried: a retry to the same endpoint is better than none. Without the extension
    /// the pick costs one extension lookup more.
    ///
    /// The picked endpoint is told to the request's
    /// [`Observed`](gatekit_core::exchange::Observed) observer, if it has one (the
    /// access log's upstream endpoint and attempt count).
    ///
    /// # Sessions
    ///
    /// When `req` carries a [`Sticky`] pinned to an endpoint of the set that is usable
    /// (see `pick_pinned`), that endpoint is picked whatever the algorithm; otherwise
    /// the algorithm picks. The picked endpoint's key is reported in the extension, so
    /// the session layer can issue or move the session.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoHealthyEndpoint`] when no endpoint is usable.
    pub fn pick<B>(&self, req: &Request<B>) -> Result<Picked<S>, Error> {
        let config = &self.shared.config;
        let key = match config.algorithm {
            crate::Algorithm::IpHash => hash::request_hash(&crate::HashKey::SourceIp, req),
            crate::Algorithm::ConsistentHash => hash::request_hash(config.hash_key(), req),
            _ => None,
        };
        let tried = req.extensions().get::<TriedEndpoints>();
        let sticky = req.extensions().get::<Sticky>();
        let pinned = sticky
            .and_then(Sticky::pinned_endpoint)
            .and_then(|key| self.pick_pinned(key, tried));
        let picked = match pinned {
            Some(picked) => picked,
            None => self.pick_with(key, tried)?,
        };
        if let Some(tried) = tried {
            tried.record(picked.addr());
        }
        gatekit_core::exchange::Observed::attempt(req, picked.addr());
        if let Some(sticky) = sticky {
            sticky.set_served_endpoint(picked.entry.session_key);
        }
        Ok(picked)
    }

    /// The endpoint a session is pinned to (by its key), if it is still in the set,
    /// serving (ready or terminating), available (healthy, not ejected) and not tried
    /// by an earlier attempt of this request; counted like any pick. Whatever the
    /// algorithm: persistence comes before balancing (GEP-1619).
    fn pick_pinned(&self, key: u64, tried: Option<&TriedEndpoints>) -> Option<Picked<S>> {
        let snap = self.shared.snapshot.load();
        let entry = snap.member_by_session_key(key)?;
        let now = Instant::now();
        let usable = entry.state() != EndpointState::NotReady
            && entry.health.is_available(now)
            && tried.is_none_or(|t| !t.contains(entry.addr));
        if !usable {
            return None;
        }
        entry.acquire();
        Some(Picked {
            entry: entry.clone(),
            start: now,
            done: false,
            reported: false,
        })
    }

    /// Picks by the key `hash`, avoiding the `tried` endpoints while any other is usable.
    fn pick_with(
        &self,
        hash: Option<u64>,
        tried: Option<&TriedEndpoints>,
    ) -> Result<Picked<S>, Error> {
        // An empty list is a first attempt: picked as any request.
        let tried = tried.filter(|t| !t.is_empty());
        let shared = &*self.shared;
        let snap = shared.snapshot.load();
        let now = Instant::now();
        let now_ns = clock::nanos(now);
        snap.maybe_refresh(now, now_ns, &shared.config);
        let mode = snap.mode();
        let mut ctx = PickCtx {
            now,
            now_ns,
            ignore_health: mode == Mode::Panic,
            hash,
            cursor: &shared.cursor,
            config: &shared.config,
            avoid: tried,
        };
        let mut found = tried.and_then(|_| find(&snap, mode, &ctx));
        if found.is_none() {
            // No retry, or every usable endpoint was tried: pick among all of them.
            ctx.avoid = None;
            found = find(&snap, mode, &ctx);
        }
        match found {
            Some(entry) => {
                entry.acquire();
                Ok(Picked {
                    entry: entry.clone(),
                    start: now,
                    done: false,
                    reported: false,
                })
            }
            None => Err(Error::new(ErrorKind::NoHealthyEndpoint)),
        }
    }
}

/// The health of `entry`, shared (its entry's `Arc`).
fn shared_health<S: Send + Sync + 'static>(entry: &Arc<Entry<S>>) -> SharedHealth {
    SharedHealth::of(Arc::clone(entry) as Arc<dyn crate::health_state::HoldsHealth>)
}

/// The endpoint `ctx` picks from `snap` in `mode` (panic mode: `ctx` ignores health).
///
/// A pick that avoids tried endpoints stays among the ready endpoints in normal mode:
/// retrying on a ready endpoint beats moving to a terminating one, which is only meant
/// to take traffic when no ready endpoint is available.
#[inline]
fn find<'s, S>(snap: &'s Snapshot<S>, mode: Mode, ctx: &PickCtx<'_>) -> Option<&'s Arc<Entry<S>>> {
    let any_level = || snap.levels().iter().find_map(|p| balance::pick(p, ctx));
    match mode {
        Mode::Normal => {
            let found = snap
                .levels()
                .get(snap.pick_level())
                .and_then(|p| balance::pick(p, ctx))
                // The view is a little stale: try every level, then the fallback.
                .or_else(any_level);
            match ctx.avoid {
                Some(_) => found,
                None => found.or_else(|| snap.fallback().and_then(|p| balance::pick(p, ctx))),
            }
        }
        Mode::Panic => snap.all_ready().and_then(|p| balance::pick(p, ctx)),
        Mode::Fallback => snap
            .fallback()
            .and_then(|p| balance::pick(p, ctx))
            .or_else(any_level),
    }
}

impl<S, B, RB> Service<Request<B>> for Upstream<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.pick(&req) {
            Ok(picked) => ResponseFuture::new(picked, req),
            Err(e) => ResponseFuture::failed(e, req),
        }
    }
}

// === impl Picked ===

/// An endpoint picked for one request (or connection), counted in flight until dropped.
pub struct Picked<S> {
    entry: Arc<Entry<S>>,
    start: Instant,
    done: bool,
    /// The outcome was told already ([`report`](Picked::report)).
    reported: bool,
}

impl<S> fmt::Debug for Picked<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picked")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

impl<S> Picked<S> {
    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.entry.addr
    }

    /// The endpoint as last updated.
    pub fn endpoint(&self) -> Endpoint {
        self.entry.endpoint()
    }

    /// The endpoint's service.
    pub fn service(&self) -> &S {
        &self.entry.svc
    }

    /// The endpoint's health.
    pub fn health(&self) -> &EndpointHealth {
        &self.entry.health
    }

    /// When the pick was made.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Ends the request with `result`: releases the in-flight count, feeds the latency
    /// estimate and tells the outcome observer (unless [`report`](Self::report) told
    /// them already: then it only releases).
    pub fn finish(mut self, result: Result<http::StatusCode, ErrorKind>) {
        let now = Instant::now();
        self.entry.release();
        self.done = true;
        self.observe(now, result);
    }

    /// Tells the outcome now, with the time since the pick as its latency (the latency
    /// estimate and the outcome observer hear of it), and keeps the endpoint counted
    /// in flight until this is dropped or [`finish`](Self::finish)ed. For a long-lived
    /// connection: its connect is the outcome, its life is load (least-request counts
    /// it) but not latency. A second report, or a later `finish`, tells nothing more.
    pub fn report(&mut self, result: Result<http::StatusCode, ErrorKind>) {
        self.observe(Instant::now(), result);
    }

    fn observe(&mut self, now: Instant, result: Result<http::StatusCode, ErrorKind>) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        let latency = now.saturating_duration_since(self.start);
        if let Some(decay) = self.entry.tracking.as_ref().and_then(|t| t.ewma_decay_ns) {
            self.entry
                .observe_rtt(clock::nanos(now), latency.as_nanos() as f64, decay);
        }
        if let Some(obs) = &self.entry.observer {
            let outcome = match result {
                Ok(status) => Outcome::status(status, latency),
                Err(kind) => Outcome::error(kind, latency),
            };
            obs.on_outcome(&self.entry.endpoint(), &self.entry.health, outcome);
        }
    }
}

impl<S> Drop for Picked<S> {
    fn drop(&mut self) {
        if !self.done {
            self.entry.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;
    use crate::balance::Table;
    use crate::balance::maglev::Lookup;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 1, 0, i as u8 + 1], 8080))
    }

    fn eps(n: usize) -> Vec<Endpoint> {
        (0..n).map(|i| Endpoint::new(addr(i))).collect()
    }

    fn table(up: &Upstream<()>) -> Table {
        up.shared.snapshot.load().levels()[0].table.clone()
    }

    /// Whether two tables share their storage.
    fn shared(a: &Table, b: &Table) -> bool {
        match (a, b) {
            (Table::Maglev(Lookup::Small(a)), Table::Maglev(Lookup::Small(b))) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn slots(t: &Table) -> Vec<usize> {
        match t {
            Table::Maglev(l) => (0..l.len()).map(|i| l.get(i)).collect(),
            _ => panic!("not a Maglev table"),
        }
    }

    #[test]
    fn an_unchanged_pool_keeps_its_table_and_a_changed_one_is_rebuilt() {
        let config = UpstreamConfig::new(Algorithm::ConsistentHash);
        let up = Upstream::new(config.clone(), |_: &Endpoint| ());
        up.apply(Change::Replace(eps(20)));
        let t0 = table(&up);
        let picks: Vec<_> = (0..200u64)
            .map(|k| up.pick_with(Some(hash::mix(k)), None).unwrap().addr())
            .collect();
        // A not-ready endpoint joins: a new generation, the same ready pool and table.
        up.apply(Change::Insert(
            Endpoint::new(addr(50)).with_state(EndpointState::NotReady),
        ));
        assert_eq!(up.generation(), 2);
        assert!(shared(&t0, &table(&up)));
        let again: Vec<_> = (0..200u64)
            .map(|k| up.pick_with(Some(hash::mix(k)), None).unwrap().addr())
            .collect();
        assert_eq!(picks, again);
        // A weight changes: rebuilt, exactly as a fresh upstream builds it.
        let mut weighted = eps(20);
        weighted[3] = weighted[3].clone().with_weight(4);
        up.apply(Change::Replace(weighted.clone()));
        let t1 = table(&up);
        assert!(!shared(&t0, &t1));
        assert_ne!(slots(&t0), slots(&t1));
        let fresh = Upstream::new(config, |_: &Endpoint| ());
        fresh.apply(Change::Replace(weighted));
        assert_eq!(slots(&t1), slots(&table(&fresh)));
    }

    /// What an upstream of one endpoint holds, in gatekit's gateway (endpoint clients):
    /// three allocations (shared state, snapshot, entry; the endpoint's description is
    /// in its entry, the snapshot's member and pool inline), and their sizes, which
    /// each fit a malloc size class a step below what they took before.
    #[test]
    fn an_upstream_of_one_endpoint_is_three_small_allocations() {
        use gatekit_core::client::EndpointClient;
        use std::mem::size_of;
        assert!(size_of::<Shared<EndpointClient>>() <= 104);
        assert!(size_of::<Snapshot<EndpointClient>>() <= 120);
        assert!(size_of::<Entry<EndpointClient>>() <= 152);
        assert!(size_of::<UpstreamConfig>() <= 40);
        let up = Upstream::new(UpstreamConfig::default(), |_: &Endpoint| ());
        up.apply(Change::Replace(eps(1)));
        let snap = up.shared.snapshot.load();
        assert!(matches!(snap.members, crate::snapshot::Members::One(_)));
        assert!(matches!(
            snap.levels()[0].slots,
            gatekit_core::small_list::SmallList::One(_)
        ));
        assert!(snap.fallback().is_none());
    }

    #[test]
    fn an_endpoint_description_reads_back_as_it_was_set() {
        let up = Upstream::new(UpstreamConfig::default(), |_: &Endpoint| ());
        let plain = Endpoint::new(addr(0)).with_weight(7);
        let labelled = Endpoint::new(addr(0))
            .with_weight(3)
            .with_state(EndpointState::Terminating)
            .with_zone("z")
            .with_hostname("h");
        for ep in [
            plain.clone(),
            labelled.clone(),
            plain.clone().with_state(EndpointState::NotReady),
            labelled,
            plain,
        ] {
            up.apply(Change::Replace(vec![ep.clone()]));
            let (seen, _) = up.endpoints().pop().unwrap();
            assert_eq!(seen, ep);
            let snap = up.shared.snapshot.load();
            let entry = snap.member(addr(0)).unwrap();
            assert_eq!(entry.state(), ep.state());
            assert_eq!(entry.endpoint(), ep);
        }
        assert_eq!(up.generation(), 5, "each description is a change");
        up.apply(Change::Insert(Endpoint::new(addr(0)).with_weight(7)));
        assert_eq!(up.generation(), 5, "the same description is none");
    }

    #[test]
    fn a_late_subscriber_reads_the_current_generation_and_sees_later_ones() {
        let up = Upstream::new(
            UpstreamConfig::new(Algorithm::RoundRobin),
            |_: &Endpoint| (),
        );
        up.apply(Change::Replace(eps(2)));
        assert!(
            up.shared.generation.get().is_none(),
            "no channel before a subscriber"
        );
        let mut rx = up.subscribe();
        assert_eq!(*rx.borrow_and_update(), 1);
        up.apply(Change::Remove(addr(0)));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 2);
        assert_eq!(up.endpoints().len(), 1);
        // The set stays sorted and keyed by address.
        up.apply(Change::Insert(Endpoint::new(addr(0))));
        up.apply(Change::Insert(Endpoint::new(addr(0))));
        let addrs: Vec<_> = up.endpoints().iter().map(|(e, _)| e.addr()).collect();
        assert_eq!(addrs, [addr(0), addr(1)]);
        assert_eq!(*rx.borrow(), 3, "a repeated insert changes nothing");
    }

    /// Records every outcome's latency.
    #[derive(Default)]
    struct Latencies(Mutex<Vec<std::time::Duration>>);

    impl crate::OutcomeObserver for Latencies {
        fn on_outcome(&self, _: &Endpoint, _: &EndpointHealth, outcome: Outcome) {
            self.0.lock().push(outcome.latency());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reported_pick_tells_its_outcome_once_and_stays_in_flight_until_dropped() {
        use std::time::Duration;
        let seen = Arc::new(Latencies::default());
        let config = UpstreamConfig::new(Algorithm::PeakEwma).with_observer(seen.clone());
        let up = Upstream::new(config, |_: &Endpoint| ());
        up.apply(Change::Replace(eps(1)));
        let mut picked = up.pick(&Request::new(())).unwrap();
        tokio::time::advance(Duration::from_millis(2)).await;
        // Connected: that is the outcome; the connection then lives for an hour.
        picked.report(Ok(http::StatusCode::OK));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(up.in_flight(addr(0)), Some(1));
        picked.finish(Ok(http::StatusCode::OK));
        assert_eq!(up.in_flight(addr(0)), Some(0));
        assert_eq!(*seen.0.lock(), [Duration::from_millis(2)]);
        // The latency estimate is the connect's, not the hour's.
        let snap = up.shared.snapshot.load();
        let entry = snap.member(addr(0)).unwrap();
        let decay = entry.tracking.as_ref().unwrap().ewma_decay_ns.unwrap();
        let estimate = entry.ewma(clock::nanos(Instant::now()), decay);
        assert!(estimate < 3e6, "{estimate} ns");
    }
}
