//! An in-process Kubernetes API server for tests.
//!
//! [`FakeApiServer`] is a real HTTP/1.1 server on `127.0.0.1` (optionally TLS with a
//! self-signed CA, optionally a required bearer token) that speaks the list/watch protocol
//! the way kube-apiserver does, so kube-rs's `Client`, `watcher` and `reflector` run against
//! it unchanged: paginated lists bound to a snapshot resourceVersion, chunked
//! newline-delimited watch streams with ADDED/MODIFIED/DELETED/BOOKMARK events, an in-stream
//! `ERROR` 410 for expired resourceVersions, label and field selectors with start/stop-matching
//! transitions, create/replace/patch/delete with resourceVersion preconditions and the
//! `/status` subresource.
//!
//! Tests drive it from the side with typed helpers ([`FakeApiServer::apply`],
//! [`FakeApiServer::set_service_endpoints`], ...) and faults ([`FakeApiServer::stop`],
//! [`FakeApiServer::drop_watches`], [`FakeApiServer::compact_all`],
//! [`FakeApiServer::fail_next`], ...), and observe it with [`FakeApiServer::requests`] and
//! [`FakeApiServer::wait_for_watches`].
//!
//! ```no_run
//! # async fn demo() {
//! use gatekit_k8s_fake::FakeApiServer;
//! use k8s_openapi::api::core::v1::Service;
//!
//! let fake = FakeApiServer::start().await;
//! let mut svc = Service::default();
//! svc.metadata.name = Some("web".into());
//! svc.metadata.namespace = Some("default".into());
//! fake.apply(&svc);
//! let api: kube::Api<Service> = kube::Api::namespaced(fake.client(), "default");
//! assert_eq!(api.list(&Default::default()).await.unwrap().items.len(), 1);
//! # }
//! ```
//!
//! # Using it from tests
//!
//! - A kube-runtime `watcher` only makes requests while it is polled: drive it on its own
//!   task (or poll it) before awaiting [`FakeApiServer::wait_for_watches`].
//! - Writes through the helpers behave like API writes (RV bump, event fan-out, generation)
//!   and work while the server is stopped, which is how "changed while disconnected" is
//!   staged: `stop()`, mutate, `compact_all()`, `resume()`.
//! - [`FakeApiServer::drop_watches`] is a dead connection (no final chunk; kube-rs re-watches
//!   from its last RV); [`FakeApiServer::end_watches`] is a clean end (`timeoutSeconds`).
//!   Combine `stall_watches(true)` + writes + `compact_all()` + `drop_watches()` to force the
//!   in-stream 410 and a re-list.
//! - kube's client retries 429/503/504 by itself (`Config::default_retry`, on by default):
//!   [`FakeApiServer::fail_next`] with those codes is absorbed unless `n` exceeds its budget;
//!   use other codes (500) to surface an error, or assert on [`FakeApiServer::requests`].
//!
//! # Not modelled (on purpose)
//!
//! Namespaces need not exist and deleting one does not cascade; no admission, defaulting or
//! schema validation (bodies are stored as given, after the metadata rules); no field
//! ownership (`managedFields`) for server-side apply, which merges; strategic merge replaces
//! lists; watches from an RV newer than the server's fail at once (the apiserver first waits
//! up to 3 s); HTTP/1.1 only (as kube-rs); no aggregated discovery.
//!
//! Module map: `registry` (served types, paths), `store` (objects, RVs, event log, fan-out),
//! `watch` (watch response bodies), `selector`, `patch`, `http` (the handler), `control`
//! (request log, faults), `tls`, `server` (the handle).

mod control;
mod http;
mod patch;
mod registry;
mod selector;
mod server;
mod service;
mod status;
mod store;
mod tls;
mod watch;

pub use control::RequestRecord;
pub use registry::ResourceType;
pub use server::{Builder, FakeApiServer};
pub use service::{FakeService, ResponseBody, ResponseFuture};
