//! [`SessionPersistence`]: what a session layer is configured with.

use std::time::Duration;

use crate::ConfigError;

/// Whether a session cookie is kept by the browser past the browser session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieLifetime {
    /// No `Max-Age`: the browser drops it when its session ends (the default).
    Session,
    /// `Max-Age` from the absolute timeout: the browser keeps it until then.
    Permanent,
}

/// Where the session token travels.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionMode {
    /// A cookie, set with `Set-Cookie`.
    Cookie {
        /// Session or permanent cookie.
        lifetime: CookieLifetime,
        /// The cookie's `Path` attribute (`/` by default, as GEP-1619 says).
        path: String,
    },
    /// A header: the gateway returns it on responses, the client sends it back.
    Header,
}

/// Session persistence settings (Gateway API `SessionPersistence`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPersistence {
    name: Option<String>,
    mode: SessionMode,
    absolute_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
}

/// The header name used when a header-based session has no name.
pub(crate) const DEFAULT_HEADER: &str = "x-gatekit-session";

impl SessionPersistence {
    /// Cookie-based persistence with a session cookie on path `/`.
    pub fn cookie(name: Option<String>) -> Self {
        Self {
            name,
            mode: SessionMode::Cookie {
                lifetime: CookieLifetime::Session,
                path: "/".to_owned(),
            },
            absolute_timeout: None,
            idle_timeout: None,
        }
    }

    /// Header-based persistence.
    pub fn header(name: Option<String>) -> Self {
        Self {
            name,
            mode: SessionMode::Header,
            absolute_timeout: None,
            idle_timeout: None,
        }
    }

    /// The cookie's lifetime type (no effect on a header-based session).
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: CookieLifetime) -> Self {
        if let SessionMode::Cookie { lifetime: l, .. } = &mut self.mode {
            *l = lifetime;
        }
        self
    }

    /// The cookie's `Path` attribute (no effect on a header-based session).
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        if let SessionMode::Cookie { path: p, .. } = &mut self.mode {
            *p = path.into();
        }
        self
    }

    /// The session ends this long after it began.
    #[must_use]
    pub fn with_absolute_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// The session ends after this long without a request.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The configured cookie or header name (`sessionName`), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Cookie or header.
    pub fn mode(&self) -> &SessionMode {
        &self.mode
    }

    /// The absolute timeout.
    pub fn absolute_timeout(&self) -> Option<Duration> {
        self.absolute_timeout
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The cookie or header name used for a session of `scope` (a route rule or a
    /// backend): the configured name, or one derived from the scope (the same on every
    /// replica) for cookies and `x-gatekit-session` for headers.
    pub fn effective_name(&self, scope: &str) -> String {
        match (&self.name, &self.mode) {
            (Some(n), _) => n.clone(),
            (None, SessionMode::Cookie { .. }) => {
                format!(
                    "gatekit-session-{:08x}",
                    super::token::fnv(scope.as_bytes()) as u32
                )
            }
            (None, SessionMode::Header) => DEFAULT_HEADER.to_owned(),
        }
    }

    /// Checks the settings: a name that is a valid cookie name (RFC 6265 token) or
    /// header name, a cookie path of visible ASCII without `;`, and an absolute timeout
    /// for a permanent cookie. Field paths are those of Gateway API `SessionPersistence`.
    ///
    /// # Errors
    ///
    /// The first problem, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.name {
            let ok = match self.mode {
                SessionMode::Cookie { .. } => is_token(name),
                SessionMode::Header => http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
            };
            if !ok {
                let what = match self.mode {
                    SessionMode::Cookie { .. } => "a cookie name (an RFC 6265 token)",
                    SessionMode::Header => "a header name",
                };
                return Err(ConfigError::new(
                    "sessionName",
                    format!("{name:?} is not {what}"),
                ));
            }
        }
        if let SessionMode::Cookie { lifetime, path } = &self.mode {
            if !path.starts_with('/')
                || !path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';')
            {
                return Err(ConfigError::new(
                    "cookie.path",
                    format!("{path:?} must start with / and hold visible ASCII other than ;"),
                ));
            }
            if *lifetime == CookieLifetime::Permanent && self.absolute_timeout.is_none() {
                return Err(ConfigError::new(
                    "absoluteTimeout",
                    "must be set when the cookie's lifetimeType is Permanent",
                ));
            }
        }
        for (field, t) in [
            ("absoluteTimeout", self.absolute_timeout),
            ("idleTimeout", self.idle_timeout),
        ] {
            if t.is_some_and(|t| t.as_secs() == 0) {
                return Err(ConfigError::new(field, "must be at least one second"));
            }
        }
        Ok(())
    }
}

/// An RFC 7230 token (what RFC 6265 allows as a cookie name).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
