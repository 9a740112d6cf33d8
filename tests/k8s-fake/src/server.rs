//! The server handle: lifecycle (start, stop, resume), client configuration, typed helpers
//! and the fault/control API.
//!
//! One [`FakeApiServer`] is one cluster: one store, one resourceVersion counter, one address.
//! `stop` closes the listener and every connection but keeps the data; `resume` binds the
//! same port again, so clients configured with [`FakeApiServer::url`] reconnect by
//! themselves, as they would to an apiserver that came back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::control::{Control, DelayRule, FailRule, RequestRecord};
use crate::registry::{Registry, ResourceType};
use crate::selector::LabelSelector;
use crate::store::Store;
use crate::tls::{self, TlsMaterial};

/// State shared by the handle, the connections and the watch streams.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) control: Mutex<Control>,
    pub(crate) token: Option<String>,
    /// `host:port`, for discovery's serverAddressByClientCIDRs.
    pub(crate) address: String,
    pub(crate) stalled: watch::Sender<bool>,
    /// Bumped by `drop_watches`: every open watch aborts.
    pub(crate) dropped: watch::Sender<u64>,
    bookmarks_paused: AtomicBool,
    watch_changed: Arc<Notify>,
}

/// Configures and starts a [`FakeApiServer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    token: Option<String>,
    tls: bool,
    bookmark_interval: Duration,
    event_log_capacity: usize,
    extra: Vec<ResourceType>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            token: None,
            tls: false,
            bookmark_interval: Duration::from_secs(1),
            event_log_capacity: 10_000,
            extra: Vec::new(),
        }
    }
}

impl Builder {
    /// Requires `Authorization: Bearer <t>` on every request (401 `Status` otherwise).
    pub fn token(mut self, t: impl Into<String>) -> Self {
        self.token = Some(t.into());
        self
    }

    /// Serves HTTPS with a fresh self-signed CA and a certificate for 127.0.0.1/localhost.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Period of the bookmarks sent to watches that allow them (default 1 s).
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }

    /// How many events the history keeps (default 10,000); older RVs are "too old" (410).
    pub fn event_log_capacity(mut self, n: usize) -> Self {
        self.event_log_capacity = n;
        self
    }

    /// Serves one more resource type (e.g. a custom resource of a test).
    pub fn resource(mut self, ty: ResourceType) -> Self {
        self.extra.push(ty);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    ///
    /// # Panics
    /// If no local port can be bound or TLS material cannot be generated (test support:
    /// a broken host, not an input error).
    pub async fn start(self) -> FakeApiServer {
        let mut registry = Registry::preloaded();
        for ty in self.extra {
            registry.register(ty);
        }
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("gatekit-k8s-fake: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("gatekit-k8s-fake: bound listener has an address");
        let watch_changed = Arc::new(Notify::new());
        let (stalled, _) = watch::channel(false);
        let (dropped, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(
                registry,
                self.event_log_capacity,
                watch_changed.clone(),
            )),
            control: Mutex::new(Control::default()),
            token: self.token.clone(),
            address: addr.to_string(),
            stalled,
            dropped,
            bookmarks_paused: AtomicBool::new(false),
            watch_changed,
        });
        let tls = if self.tls {
            Some(tls::generate().expect("gatekit-k8s-fake: TLS material generation failed"))
        } else {
            None
        };
        let bookmarks = tokio::spawn(bookmark_loop(
            Arc::downgrade(&shared),
            self.bookmark_interval,
        ));
        let inner = Arc::new(Inner {
            shared,
            addr,
            tls,
            token: self.token,
            running: Mutex::new(None),
            bookmarks,
        });
        inner.spawn_accept(listener);
        FakeApiServer { inner }
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn bookmark_loop(shared: std::sync::Weak<Shared>, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !shared.bookmarks_paused.load(Ordering::Relaxed) {
            shared.store.lock().bookmark_all();
        }
    }
}

#[derive(Debug)]
struct Running {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<TlsMaterial>,
    token: Option<String>,
    running: Mutex<Option<Running>>,
    bookmarks: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.bookmarks.abort();
        if let Some(r) = self.running.lock().take() {
            r.task.abort();
        }
    }
}

impl Inner {
    fn spawn_accept(&self, listener: TcpListener) {
        let (tx, rx) = watch::channel(false);
        let acceptor = self
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server.clone()));
        let task = tokio::spawn(accept_loop(listener, self.shared.clone(), acceptor, rx));
        *self.running.lock() = Some(Running { shutdown: tx, task });
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => {
                let Ok((sock, _)) = r else {
                    // Out of descriptors or similar: back off a little instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                conns.spawn(serve_conn(sock, shared.clone(), tls.clone()));
            }
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_conn(
    sock: tokio::net::TcpStream,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let svc = hyper::service::service_fn(move |req| crate::http::handle(shared.clone(), req));
    let http = hyper::server::conn::http1::Builder::new();
    match tls {
        Some(acceptor) => {
            let Ok(stream) = acceptor.accept(sock).await else {
                return;
            };
            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
        }
        None => {
            let _ = http.serve_connection(TokioIo::new(sock), svc).await;
        }
    }
}

/// An in-process Kubernetes API server: one "cluster". Cloning gives another handle to the
/// same server.
#[derive(Debug, Clone)]
pub struct FakeApiServer {
    inner: Arc<Inner>,
}

fn res_of<K: Resource<DynamicType = ()>>(store: &Store) -> usize {
    let (g, v, p) = (K::group(&()), K::version(&()), K::plural(&()));
    store.registry.find(&g, &v, &p).unwrap_or_else(|| {
        panic!("gatekit-k8s-fake: {g}/{v}/{p} is not registered (use Builder::resource)")
    })
}

fn to_json<T: Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).expect("gatekit-k8s-fake: object does not serialise to JSON")
}

fn from_json<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("gatekit-k8s-fake: stored object does not deserialise")
}

impl FakeApiServer {
    /// A builder for a server with non-default settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts a server with default settings (plain HTTP, no token, 1 s bookmarks).
    pub async fn start() -> FakeApiServer {
        Builder::default().start().await
    }

    /// `http://127.0.0.1:PORT` (or `https://` with TLS); the same across stop/resume.
    pub fn url(&self) -> String {
        let scheme = if self.inner.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.inner.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// PEM of the CA that signed the server certificate (TLS servers only).
    pub fn ca_pem(&self) -> Option<String> {
        self.inner.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// DER of the CA that signed the server certificate (TLS servers only).
    pub fn ca_der(&self) -> Option<Vec<u8>> {
        self.inner.tls.as_ref().map(|t| t.ca_der.clone())
    }

    /// A client configuration for this server: URL, CA (if TLS) and token (if any).
    pub fn kube_config(&self) -> kube::Config {
        let url = self
            .url()
            .parse::<http::Uri>()
            .expect("gatekit-k8s-fake: own URL parses");
        let mut config = kube::Config::new(url);
        config.root_cert = self.ca_der().map(|d| vec![d]);
        if let Some(t) = &self.inner.token {
            config.auth_info = serde_json::from_value(serde_json::json!({ "token": t }))
                .expect("gatekit-k8s-fake: AuthInfo with a token deserialises");
        }
        config
    }

    /// The handler as an in-process `tower::Service` (no socket; see [`FakeService`](crate::FakeService)).
    pub fn service(&self) -> crate::FakeService {
        crate::FakeService::new(self.inner.shared.clone())
    }

    /// A kube client over [`service`](Self::service): no socket, no TLS, the token (if any)
    /// sent as a header. Must be called inside a Tokio runtime.
    pub fn in_process_client(&self) -> kube::Client {
        let mut svc = self.service();
        if let Some(t) = &self.inner.token {
            svc = svc.with_bearer(t);
        }
        kube::Client::new(svc, "default")
    }

    /// A kube client for this server (must be called inside a Tokio runtime).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.kube_config())
            .expect("gatekit-k8s-fake: client from own configuration")
    }

    // === typed helpers ===

    /// Creates or replaces an object (status included), bumping the RV and emitting
    /// ADDED/MODIFIED. Namespaced objects without a namespace go to `default`.
    ///
    /// # Panics
    /// If `K` is not registered or the object is invalid (no name, wrong kind).
    pub fn apply<K>(&self, obj: &K) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let mut store = self.inner.shared.store.lock();
        let res = res_of::<K>(&store);
        let v = store
            .put(res, to_json(obj))
            .unwrap_or_else(|e| panic!("gatekit-k8s-fake: apply failed: {e}"));
        from_json(v)
    }

    /// [`apply`](Self::apply) for a JSON object carrying its `apiVersion` and `kind`.
    ///
    /// # Panics
    /// If the type is not registered or the object is invalid.
    pub fn apply_json(&self, obj: Value) -> Value {
        let mut store = self.inner.shared.store.lock();
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let res = store
            .registry
            .find_kind(av, kind)
            .unwrap_or_else(|| panic!("gatekit-k8s-fake: {av} {kind} is not registered"));
        store
            .put(res, obj)
            .unwrap_or_else(|e| panic!("gatekit-k8s-fake: apply_json failed: {e}"))
    }

    /// Deletes an object (honouring finalizers); `false` if it did not exist.
    ///
    /// # Panics
    /// If `K` is not registered.
    pub fn delete<K>(&self, namespace: Option<&str>, name: &str) -> bool
    where
        K: Resource<DynamicType = ()>,
    {
        let mut store = self.inner.shared.store.lock();
        let res = res_of::<K>(&store);
        store
            .delete(res, namespace, name, &Value::Null, false)
            .is_ok()
    }

    /// The stored object, if any.
    ///
    /// # Panics
    /// If `K` is not registered, or the stored JSON does not deserialise as `K` (an object
    /// written through the API in a shape `K` rejects).
    pub fn get<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let store = self.inner.shared.store.lock();
        let res = res_of::<K>(&store);
        store.get(res, namespace, name).ok().map(from_json)
    }

    /// Every stored object of type `K`, sorted by namespace and name.
    ///
    /// # Panics
    /// As [`get`](Self::get).
    pub fn list<K>(&self) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let store = self.inner.shared.store.lock();
        let res = res_of::<K>(&store);
        store.all(res).into_iter().map(from_json).collect()
    }

    /// Merge-patches `.status` of an object (as a controller's status write would).
    /// Does nothing if the object does not exist.
    ///
    /// # Panics
    /// If `K` is not registered.
    pub fn patch_status<K>(&self, namespace: Option<&str>, name: &str, status: Value)
    where
        K: Resource<DynamicType = ()>,
    {
        let mut store = self.inner.shared.store.lock();
        let res = res_of::<K>(&store);
        let patch = serde_json::json!({ "status": status });
        let status_sub = store.registry.get(res).ty.has_status;
        let _ = store.patch(
            res,
            namespace,
            name,
            crate::patch::PatchKind::Merge,
            &patch,
            status_sub,
            false,
        );
    }

    /// Replaces the EndpointSlices of a Service: deletes the slices in `ns` labelled
    /// `kubernetes.io/service-name=<service>` that are not in `slices`, then applies
    /// `slices` (label and namespace are set on each).
    pub fn set_service_endpoints(&self, ns: &str, service: &str, slices: Vec<EndpointSlice>) {
        const LABEL: &str = "kubernetes.io/service-name";
        let mut store = self.inner.shared.store.lock();
        let res = res_of::<EndpointSlice>(&store);
        let sel = LabelSelector::parse(&format!("{LABEL}={service}"))
            .unwrap_or_else(|_| LabelSelector::default());
        let keep: Vec<String> = slices
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        for name in store.keys_matching(res, ns, &sel) {
            if !keep.contains(&name) {
                let _ = store.delete(res, Some(ns), &name, &Value::Null, false);
            }
        }
        for mut s in slices {
            s.metadata.namespace = Some(ns.to_owned());
            s.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(LABEL.to_owned(), service.to_owned());
            if let Err(e) = store.put(res, to_json(&s)) {
                panic!("gatekit-k8s-fake: set_service_endpoints failed: {e}");
            }
        }
    }

    /// The newest resourceVersion handed out.
    pub fn current_rv(&self) -> u64 {
        self.inner.shared.store.lock().current_rv()
    }

    // === faults and control ===

    /// Forgets history up to `rv`: watches and continue tokens from older RVs get 410.
    pub fn compact(&self, rv: u64) {
        self.inner.shared.store.lock().compact(rv);
    }

    /// Forgets all history ([`compact`](Self::compact) at the current RV).
    pub fn compact_all(&self) {
        let mut store = self.inner.shared.store.lock();
        let rv = store.current_rv();
        store.compact(rv);
    }

    /// Sends a bookmark at the current RV to every watch that allows bookmarks.
    pub fn bookmark_now(&self) {
        self.inner.shared.store.lock().bookmark_all();
    }

    /// Pauses (or resumes) the periodic bookmarks.
    pub fn pause_bookmarks(&self, paused: bool) {
        self.inner
            .shared
            .bookmarks_paused
            .store(paused, Ordering::Relaxed);
    }

    /// Aborts every watch connection without the final chunk (a dead connection).
    pub fn drop_watches(&self) {
        self.inner.shared.store.lock().drop_watches(None);
        self.inner.shared.dropped.send_modify(|g| *g += 1);
    }

    /// [`drop_watches`](Self::drop_watches) for the watches on one resource (plural name,
    /// e.g. `endpointslices`) only; returns how many were dropped.
    pub fn drop_watches_for(&self, plural: &str) -> usize {
        let n = self.inner.shared.store.lock().drop_watches(Some(plural));
        self.inner.shared.dropped.send_modify(|g| *g += 1);
        n
    }

    /// Ends every watch stream cleanly (as at `timeoutSeconds`).
    pub fn end_watches(&self) {
        self.inner.shared.store.lock().end_watches();
    }

    /// Makes the next `n` requests whose path matches `path_glob` (and method, if given)
    /// fail with `status` (a `Status` body; `Retry-After` if given).
    pub fn fail_next(
        &self,
        method: Option<http::Method>,
        path_glob: &str,
        n: usize,
        status: u16,
        retry_after: Option<u32>,
    ) {
        self.inner.shared.control.lock().fails.push(FailRule {
            method,
            glob: path_glob.to_owned(),
            remaining: n,
            status,
            retry_after,
        });
    }

    /// Delays every request whose path matches `path_glob` by `d` (zero removes the delay).
    pub fn delay(&self, path_glob: &str, d: Duration) {
        let mut c = self.inner.shared.control.lock();
        c.delays.retain(|r| r.glob != path_glob);
        c.delays.push(DelayRule {
            glob: path_glob.to_owned(),
            delay: d,
        });
    }

    /// Stalls (or releases) every watch: nothing is written while stalled, events queue up.
    pub fn stall_watches(&self, stalled: bool) {
        self.inner.shared.stalled.send_replace(stalled);
    }

    /// "API server down": stops listening and drops every connection; data and RV are kept.
    pub async fn stop(&self) {
        let running = self.inner.running.lock().take();
        if let Some(r) = running {
            let _ = r.shutdown.send(true);
            let _ = r.task.await;
        }
        // Watches whose connections were dropped are unregistered by their guards; abort
        // any left behind (in-process ones) so active_watches() reads 0.
        self.drop_watches();
    }

    /// Listens again on the same address, with the same data and RV counter.
    ///
    /// # Panics
    /// If the port cannot be bound again within a few seconds.
    pub async fn resume(&self) {
        if self.inner.running.lock().is_some() {
            return;
        }
        let mut last = None;
        for _ in 0..200 {
            match bind(self.inner.addr).await {
                Ok(l) => {
                    self.inner.spawn_accept(l);
                    return;
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
        panic!(
            "gatekit-k8s-fake: cannot bind {} again: {last:?}",
            self.inner.addr
        );
    }

    /// [`stop`](Self::stop) then [`resume`](Self::resume).
    pub async fn restart(&self) {
        self.stop().await;
        self.resume().await;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.shared.control.lock().requests.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.inner.shared.control.lock().requests.clear();
    }

    /// Number of open watches on resources with this plural name (e.g. `endpointslices`).
    pub fn active_watches(&self, plural: &str) -> usize {
        self.inner.shared.store.lock().active_watches(plural)
    }

    /// Resolves once at least `n` watches on `plural` are open.
    pub async fn wait_for_watches(&self, plural: &str, n: usize) {
        let notify = self.inner.shared.watch_changed.clone();
        loop {
            let changed = notify.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.active_watches(plural) >= n {
                return;
            }
            changed.await;
        }
    }
}
