//! [`BasicAuthLayer`], [`BasicAuthPolicy`] and [`BasicAuthStats`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_core::access::AccessPolicy;
use gatekit_core::{Backend, ConfigError};
use http::{HeaderName, HeaderValue};
use tokio::sync::Semaphore;
use tower_layer::Layer;

use super::cache::Cache;
use super::htpasswd::{self, Users};
use super::{BasicAuth, BasicAuthConfig};
use crate::header::challenge;

/// Counters of one layer (all its services), for metrics and tests.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) verifications: AtomicU64,
    pub(super) cache_hits: AtomicU64,
    pub(super) overloaded: AtomicU64,
    pub(super) in_flight: AtomicUsize,
    pub(super) max_in_flight: AtomicUsize,
}

/// A snapshot of a [`BasicAuthLayer`]'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BasicAuthStats {
    /// Slow hash checks (bcrypt, argon2) run.
    pub verifications: u64,
    /// Requests answered from the cache (verified or recently refused).
    pub cache_hits: u64,
    /// Requests refused with 503 for want of a check permit.
    pub overloaded: u64,
    /// The most slow checks that ever ran at once.
    pub max_concurrent_verifications: usize,
}

/// The compiled configuration and the state shared by every service of one layer.
pub(super) struct Shared {
    pub(super) users: Users,
    pub(super) cache: Cache,
    pub(super) permits: Arc<Semaphore>,
    pub(super) max_concurrent: usize,
    pub(super) counters: Arc<Counters>,
    pub(super) forward_username: Option<HeaderName>,
    pub(super) strip_credential: bool,
    pub(super) verification_wait: Duration,
    pub(super) challenge: HeaderValue,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.by_name.len())
            .field("forward_username", &self.forward_username)
            .field("strip_credential", &self.strip_credential)
            .field("permits", &self.permits.available_permits())
            .field("verification_wait", &self.verification_wait)
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

/// Wraps services in [`BasicAuth`] checks. Cloning shares the users, the cache, the
/// check permits and the counters (one `Arc`): every service of one layer, and every
/// rule of one [`BasicAuthPolicy`], draws on the same bound. `Debug` shows counts, never
/// a hash.
#[derive(Clone, Debug)]
pub struct BasicAuthLayer {
    shared: Arc<Shared>,
}

impl BasicAuthLayer {
    /// Parses `config`'s htpasswd text; the text is dropped (and zeroed).
    ///
    /// # Errors
    ///
    /// A realm that cannot be quoted in a header; an htpasswd line that is malformed,
    /// repeats a user, or holds a plain-text password or a refused scheme (the error
    /// names the line number, never its content; see the [module docs](super)); a
    /// user name that cannot be forwarded in a header (when forwarding); no user.
    pub fn new(config: BasicAuthConfig) -> Result<Self, ConfigError> {
        let challenge = challenge("Basic", &config.realm, ", charset=\"UTF-8\"")?;
        let users = htpasswd::parse(&config.htpasswd, config.forward_username.is_some())?;
        let permits = config.max_concurrent_verifications.max(1);
        Ok(Self {
            shared: Arc::new(Shared {
                users,
                cache: Cache::new(
                    config.cache_ttl,
                    config.failure_ttl,
                    config.max_cache_entries,
                ),
                permits: Arc::new(Semaphore::new(permits)),
                max_concurrent: permits,
                counters: Arc::default(),
                forward_username: config.forward_username.clone(),
                strip_credential: config.strip_credential,
                verification_wait: config.verification_wait,
                challenge,
            }),
        })
    }

    /// How many users the htpasswd data has.
    pub fn user_count(&self) -> usize {
        self.shared.users.by_name.len()
    }

    /// The htpasswd lines (1-based) whose hash is the weak `{SHA}` scheme, for a
    /// warning or a status condition.
    pub fn sha1_lines(&self) -> &[usize] {
        &self.shared.users.sha1_lines
    }

    /// How many slow hash checks may run at once (the configured bound).
    pub fn max_concurrent_verifications(&self) -> usize {
        self.shared.max_concurrent
    }

    /// The layer's counters so far.
    pub fn stats(&self) -> BasicAuthStats {
        let c = &self.shared.counters;
        BasicAuthStats {
            verifications: c.verifications.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            overloaded: c.overloaded.load(Ordering::Relaxed),
            max_concurrent_verifications: c.max_in_flight.load(Ordering::Relaxed),
        }
    }
}

impl<S> Layer<S> for BasicAuthLayer {
    type Service = BasicAuth<S>;

    fn layer(&self, inner: S) -> BasicAuth<S> {
        BasicAuth::new(inner, Arc::clone(&self.shared))
    }
}

/// A [`BasicAuthLayer`] as an [`AccessPolicy`] guarding gatekit route rules.
#[derive(Clone, Debug)]
pub struct BasicAuthPolicy {
    layer: BasicAuthLayer,
}

impl BasicAuthPolicy {
    /// The policy checking `layer`'s users.
    pub fn new(layer: BasicAuthLayer) -> Self {
        Self { layer }
    }
}

impl From<BasicAuthLayer> for BasicAuthPolicy {
    fn from(layer: BasicAuthLayer) -> Self {
        Self::new(layer)
    }
}

impl AccessPolicy for BasicAuthPolicy {
    fn layer(&self, inner: Backend) -> Backend {
        Backend::new(self.layer.layer(inner))
    }
}
