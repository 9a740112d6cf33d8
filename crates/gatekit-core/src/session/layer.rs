//! [`SessionLayer`] and the clock it reads.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderName;
use tower_layer::Layer;

use super::config::{CookieLifetime, SessionMode, SessionPersistence};
use super::{Session, token};

/// The wall clock a session layer reads, in Unix seconds: tokens carry wall-clock
/// times so that every replica reads them alike. Injectable for tests.
#[derive(Clone)]
pub struct SessionClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl SessionClock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        }))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The time now, in Unix seconds.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl fmt::Debug for SessionClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionClock")
    }
}

/// Builds [`Session`] services for one session scope (a route rule or a backend).
#[derive(Clone, Debug)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

/// What every request of a session scope shares, built once.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SessionPersistence,
    /// The cookie name (cookie mode).
    pub(crate) cookie: String,
    /// The header name (header mode).
    pub(crate) header: Option<HeaderName>,
    /// `; Path=...; HttpOnly; SameSite=Lax`, what every `Set-Cookie` ends with.
    pub(crate) attributes: String,
    pub(crate) salt: u64,
    pub(crate) clock: SessionClock,
}

impl SessionLayer {
    /// A layer for the sessions of `scope` (it names the default cookie and keys the
    /// token checksum, so two scopes never share sessions). `config` should have passed
    /// [`SessionPersistence::validate`]; a header name that does not parse falls back
    /// to `x-gatekit-session`.
    pub fn new(scope: &str, config: SessionPersistence) -> Self {
        let name = config.effective_name(scope);
        let header = matches!(config.mode(), SessionMode::Header).then(|| {
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .unwrap_or(HeaderName::from_static(super::config::DEFAULT_HEADER))
        });
        let attributes = match config.mode() {
            SessionMode::Cookie { path, .. } => format!("; Path={path}; HttpOnly; SameSite=Lax"),
            SessionMode::Header => String::new(),
        };
        Self {
            shared: Arc::new(Shared {
                salt: token::salt(scope, &name),
                cookie: name,
                header,
                attributes,
                config,
                clock: SessionClock::system(),
            }),
        }
    }

    /// The same layer reading `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(self, clock: SessionClock) -> Self {
        let s = &*self.shared;
        Self {
            shared: Arc::new(Shared {
                config: s.config.clone(),
                cookie: s.cookie.clone(),
                header: s.header.clone(),
                attributes: s.attributes.clone(),
                salt: s.salt,
                clock,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SessionPersistence {
        &self.shared.config
    }
}

impl Shared {
    /// Whether the cookie is permanent (carries `Max-Age`).
    pub(crate) fn permanent(&self) -> bool {
        matches!(
            self.config.mode(),
            SessionMode::Cookie {
                lifetime: CookieLifetime::Permanent,
                ..
            }
        )
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = Session<S>;

    fn layer(&self, inner: S) -> Session<S> {
        Session::from_shared(inner, Arc::clone(&self.shared))
    }
}
