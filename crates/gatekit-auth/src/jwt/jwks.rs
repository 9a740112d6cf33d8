//! A provider's keys and, for a remote JWKS, the background task that keeps them fresh.
//!
//! The task fetches at once when the layer is built, then every `cache_duration`,
//! and early when a request asks (a token with an unknown `kid`), at most once per
//! `min_refresh_interval`. A failed fetch keeps the last good keys (stale while error)
//! and is retried after `min_refresh_interval` (at least one second). Keys are parsed
//! once per fetch and swapped in whole; requests read them without a lock. The task
//! ends when the layer that started it is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use gatekit_core::Body;
use http::{Request, header};
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::Validation;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::config::RemoteJwks;
use super::keys::KeySet;

/// Counts of finished JWKS fetches across a layer's remote providers, published
/// through [`JwtLayer::fetches`](super::JwtLayer::fetches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JwksFetches {
    succeeded: u64,
    failed: u64,
}

impl JwksFetches {
    /// Fetches that brought a usable JWKS (its keys now verify tokens).
    pub fn succeeded(&self) -> u64 {
        self.succeeded
    }

    /// Fetches that failed (unreachable, non-2xx, timed out, not a usable JWKS); the
    /// keys from before stay in use.
    pub fn failed(&self) -> u64 {
        self.failed
    }
}

/// One provider's current keys.
pub(super) struct KeyStore {
    keys: ArcSwapOption<KeySet>,
    /// Set for a remote JWKS: wakes its task early.
    refresh: Option<Refresh>,
}

struct Refresh {
    notify: Notify,
    min_interval: Duration,
    last: parking_lot::Mutex<Option<Instant>>,
    requested: AtomicU64,
}

impl KeyStore {
    pub(super) fn local(keys: KeySet) -> Self {
        Self {
            keys: ArcSwapOption::from_pointee(keys),
            refresh: None,
        }
    }

    pub(super) fn remote(min_interval: Duration) -> Self {
        Self {
            keys: ArcSwapOption::empty(),
            refresh: Some(Refresh {
                notify: Notify::new(),
                min_interval,
                last: parking_lot::Mutex::new(None),
                requested: AtomicU64::new(0),
            }),
        }
    }

    /// The keys, or `None` while a remote JWKS was never fetched.
    pub(super) fn keys(&self) -> arc_swap::Guard<Option<Arc<KeySet>>> {
        self.keys.load()
    }

    /// Asks the background task for an early fetch (a token named an unknown `kid`),
    /// unless one was asked for less than `min_refresh_interval` ago. Local keys: no-op.
    /// Returns whether a fetch was asked for.
    pub(super) fn request_refresh(&self) -> bool {
        let Some(refresh) = &self.refresh else {
            return false;
        };
        let now = Instant::now();
        {
            let mut last = refresh.last.lock();
            if last.is_some_and(|t| now.duration_since(t) < refresh.min_interval) {
                return false;
            }
            *last = Some(now);
        }
        refresh.requested.fetch_add(1, Ordering::Relaxed);
        refresh.notify.notify_one();
        true
    }

    /// Early fetches asked for so far (tests).
    #[cfg(test)]
    pub(super) fn refreshes_requested(&self) -> u64 {
        self.refresh
            .as_ref()
            .map_or(0, |r| r.requested.load(Ordering::Relaxed))
    }
}

/// Fetches `remote` into `store` until aborted.
pub(super) async fn run(
    provider: Arc<str>,
    store: Arc<KeyStore>,
    remote: RemoteJwks,
    base: Validation,
    allow_hmac: bool,
    events: Arc<watch::Sender<JwksFetches>>,
) {
    let retry = remote.min_refresh_interval.max(Duration::from_secs(1));
    loop {
        let result = fetch(&remote)
            .await
            .and_then(|body| KeySet::parse(&body, &base, allow_hmac));
        let wait = match result {
            Ok(keys) => {
                tracing::debug!(%provider, keys = keys.keys.len(), "JWKS fetched");
                store.keys.store(Some(Arc::new(keys)));
                events.send_modify(|e| e.succeeded += 1);
                remote.cache_duration
            }
            Err(reason) => {
                let stale = store.keys.load().is_some();
                tracing::warn!(
                    %provider,
                    uri = %remote.uri,
                    %reason,
                    keeping_previous_keys = stale,
                    "JWKS fetch failed"
                );
                events.send_modify(|e| e.failed += 1);
                retry.min(remote.cache_duration)
            }
        };
        let Some(refresh) = &store.refresh else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = refresh.notify.notified() => {}
        }
    }
}

/// One GET of the JWKS document (or of another JSON document at `remote.uri`, with the
/// same timeout and size bound: the OIDC discovery document).
pub(crate) async fn fetch(remote: &RemoteJwks) -> Result<bytes::Bytes, String> {
    let mut req = Request::get(remote.uri.clone()).header(header::ACCEPT, "application/json");
    if let Some(authority) = remote.uri.authority() {
        req = req.header(header::HOST, authority.as_str());
    }
    let req = req
        .body(Body::empty())
        .map_err(|e| format!("bad request: {e}"))?;
    let exchange = async {
        let resp = remote
            .backend
            .send(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        Limited::new(resp.into_body(), remote.max_size)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("reading the body: {e}"))
    };
    tokio::time::timeout(remote.timeout, exchange)
        .await
        .map_err(|_| format!("timed out after {:?}", remote.timeout))?
}
