//! HTTP basic auth (RFC 7617) against htpasswd data, with the slow hash kept from
//! becoming a denial-of-service lever.
//!
//! A [`BasicAuthConfig`] holds htpasswd text (`user:hash` lines), a realm, and the
//! settings below. [`BasicAuthLayer::new`] parses it once. Accepted hashes: bcrypt
//! (`$2a$`, `$2b$`, `$2y$`, what `htpasswd -B` makes; cost at most 16), argon2 in PHC
//! form (`$argon2id$`, `$argon2i$`, `$argon2d$`; memory at most 256 MiB) and `{SHA}`
//! (unsalted SHA-1, the only scheme Envoy's basic auth filter and so Envoy Gateway's
//! `basicAuth` accept; kept so their users' Secrets work, but weak: fast to brute-force
//! offline, so prefer bcrypt. [`BasicAuthLayer::sha1_lines`] lists the lines using it,
//! for a warning). Plain-text passwords, crypt, MD5 (`$apr1$`, `$1$`) and SHA-crypt are
//! refused at configuration time, with an error naming the line number, never its
//! content.
//!
//! A request passes when its one `Authorization: Basic <base64(user:password)>` header
//! names a user whose hash the password matches. It then carries
//! `Identity::new("basic", user)` in its extensions and, when configured, the user name
//! in a header to the backend (a client-sent header of that name is always removed
//! first). Every refusal is [`ErrorKind::Unauthenticated`](gatekit_core::ErrorKind)
//! (401) with `WWW-Authenticate: Basic realm="<realm>", charset="UTF-8"`, the same
//! whatever was wrong.
//!
//! # Slow hashes, bounded
//!
//! A bcrypt or argon2 check takes tens of milliseconds of CPU by design; a client
//! sending wrong passwords as fast as it can would otherwise buy that much gateway CPU
//! per request. So:
//!
//! - **Verified credentials are cached**, keyed by the SHA-256 digest of the whole
//!   `Authorization` value (so the cache holds no password), for
//!   [`cache_ttl`](BasicAuthConfig::cache_ttl) (default 5 minutes), at most
//!   [`max_cache_entries`](BasicAuthConfig::max_cache_entries) of them (default 10,000;
//!   a full cache takes no new entry until entries expire). A user's second request
//!   costs one SHA-256 and a map lookup. The cache belongs to the layer: a new
//!   configuration (a changed Secret) builds a new layer and starts empty, so a removed
//!   user or changed password takes effect at once.
//! - **Refusals after a slow check are cached** too, in a separate map of the same
//!   bound, for [`failure_ttl`](BasicAuthConfig::failure_ttl) (default 30 seconds): the
//!   same wrong password repeated costs one check per period. A separate map, so
//!   distinct wrong passwords cannot evict valid users. Unknown users and `{SHA}`
//!   checks cost no hash and are not cached.
//! - **Concurrent slow checks are bounded** by a semaphore of
//!   [`max_concurrent_verifications`](BasicAuthConfig::max_concurrent_verifications)
//!   permits (default: half the available cores, at least one), and each check runs on
//!   tokio's blocking pool (`spawn_blocking`), never on the threads serving
//!   connections. A request waits for a permit at most
//!   [`verification_wait`](BasicAuthConfig::verification_wait) (default 500 ms), then is
//!   refused with [`ErrorKind::Overloaded`](gatekit_core::ErrorKind::Overloaded) (503
//!   `overloaded`, `Retry-After: 1`). 503 rather than 401: the credential was not
//!   judged, and a 401 would tell a valid user their password is wrong (and make a
//!   browser prompt again). A request whose client goes away still finishes the check
//!   it started, holding its permit: the bound is on CPU actually spent.
//!
//! Under a flood of wrong passwords, at most that many cores hash; users whose
//! credentials are cached are served as usual; a valid user not yet cached competes
//! for a permit with the flood (and may get a 503 to retry). A check of a known user
//! takes longer than a refusal of an unknown one: user names are not treated as
//! secret. Concurrent first requests with the same new credential each run a check.
//!
//! # Example
//!
//! ```
//! use gatekit_auth::basic::{BasicAuthConfig, BasicAuthLayer};
//! use gatekit_core::access::Identity;
//! use gatekit_core::{Body, BoxError, HandleErrorLayer};
//! use http::{HeaderName, Request, Response};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), gatekit_core::ConfigError> {
//! // alice's password is `secret` (bcrypt, cost 5: `htpasswd -nbB -C 5 alice secret`)
//! let htpasswd = "alice:$2y$05$X0DyXUrnbAzjcEDraEvjGO6VMHHnEyGkAelpnKKOpFcasToc7a4hi\n";
//! let basic = BasicAuthLayer::new(
//!     BasicAuthConfig::new("staff", htpasswd)
//!         .forward_username(HeaderName::from_static("x-user")),
//! )?;
//! let app = ServiceBuilder::new()
//!     .layer(HandleErrorLayer::new())
//!     .layer(basic)
//!     .service_fn(|req: Request<Body>| async move {
//!         let who = req.extensions().get::<Identity>().map(|i| i.subject().to_owned());
//!         Ok::<_, BoxError>(Response::new(Body::from(who.unwrap_or_default())))
//!     });
//! // Serve `app` with hyper-util's `TowerToHyperService` on a tokio runtime (checks
//! // run on its blocking pool), or use it in axum.
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod cache;
mod future;
mod htpasswd;
mod layer;
mod service;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use http::HeaderName;
use zeroize::Zeroizing;

pub use self::future::ResponseFuture;
pub use self::layer::{BasicAuthLayer, BasicAuthPolicy, BasicAuthStats};
pub use self::service::BasicAuth;

/// Default time a verified credential stays cached: 5 minutes.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default time a credential refused after a slow check stays cached: 30 seconds.
pub const DEFAULT_FAILURE_TTL: Duration = Duration::from_secs(30);
/// Default bound of each cache map: 10,000 entries.
pub const DEFAULT_MAX_CACHE_ENTRIES: usize = 10_000;
/// Default longest wait for a verification permit: 500 ms.
pub const DEFAULT_VERIFICATION_WAIT: Duration = Duration::from_millis(500);

/// What a basic auth check accepts and how it bounds its work. Consumed by
/// [`BasicAuthLayer::new`]; the htpasswd text held here is zeroed when it is dropped.
/// `Debug` shows no hash.
#[derive(Clone)]
pub struct BasicAuthConfig {
    pub(crate) realm: String,
    pub(crate) htpasswd: Zeroizing<String>,
    pub(crate) forward_username: Option<HeaderName>,
    pub(crate) strip_credential: bool,
    pub(crate) cache_ttl: Duration,
    pub(crate) failure_ttl: Duration,
    pub(crate) max_cache_entries: usize,
    pub(crate) max_concurrent_verifications: usize,
    pub(crate) verification_wait: Duration,
}

impl BasicAuthConfig {
    /// Users from `htpasswd` text, challenged in `realm`, with the default bounds.
    pub fn new(realm: impl Into<String>, htpasswd: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            htpasswd: Zeroizing::new(htpasswd.into()),
            forward_username: None,
            strip_credential: false,
            cache_ttl: DEFAULT_CACHE_TTL,
            failure_ttl: DEFAULT_FAILURE_TTL,
            max_cache_entries: DEFAULT_MAX_CACHE_ENTRIES,
            max_concurrent_verifications: default_concurrency(),
            verification_wait: DEFAULT_VERIFICATION_WAIT,
        }
    }

    /// Sends the user name to the backend in `header` (Envoy Gateway's
    /// `forwardUsernameHeader`). A client-sent header of that name is always removed.
    #[must_use]
    pub fn forward_username(mut self, header: HeaderName) -> Self {
        self.forward_username = Some(header);
        self
    }

    /// Whether the `Authorization` header is removed before the request goes on
    /// (default `false`: the backend sees it, as with Envoy).
    #[must_use]
    pub fn strip_credential(mut self, strip: bool) -> Self {
        self.strip_credential = strip;
        self
    }

    /// How long a verified credential stays cached ([`DEFAULT_CACHE_TTL`]); zero
    /// disables the cache.
    #[must_use]
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How long a credential refused after a slow check stays cached
    /// ([`DEFAULT_FAILURE_TTL`]); zero disables it.
    #[must_use]
    pub fn failure_ttl(mut self, ttl: Duration) -> Self {
        self.failure_ttl = ttl;
        self
    }

    /// The bound of each cache map ([`DEFAULT_MAX_CACHE_ENTRIES`]).
    #[must_use]
    pub fn max_cache_entries(mut self, entries: usize) -> Self {
        self.max_cache_entries = entries;
        self
    }

    /// How many slow hash checks may run at once (default: half the available cores,
    /// at least 1; 0 counts as 1).
    #[must_use]
    pub fn max_concurrent_verifications(mut self, n: usize) -> Self {
        self.max_concurrent_verifications = n.max(1);
        self
    }

    /// The longest a request waits for a check permit before a 503
    /// ([`DEFAULT_VERIFICATION_WAIT`]).
    #[must_use]
    pub fn verification_wait(mut self, wait: Duration) -> Self {
        self.verification_wait = wait;
        self
    }
}

/// Half the available cores, at least one: the other half keeps serving.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

impl fmt::Debug for BasicAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuthConfig")
            .field("realm", &self.realm)
            .field("htpasswd", &"<redacted>")
            .field("forward_username", &self.forward_username)
            .field("strip_credential", &self.strip_credential)
            .field("cache_ttl", &self.cache_ttl)
            .field("failure_ttl", &self.failure_ttl)
            .field("max_cache_entries", &self.max_cache_entries)
            .field(
                "max_concurrent_verifications",
                &self.max_concurrent_verifications,
            )
            .field("verification_wait", &self.verification_wait)
            .finish()
    }
}
