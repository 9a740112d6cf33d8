//! Session persistence (Gateway API GEP-1619): requests of one client session go to
//! the endpoint (and, for a rule, the backendRef) that served the session's first
//! request.
//!
//! # How it works
//!
//! [`Session`] reads the session token from a cookie or a header named by its
//! [`SessionPersistence`]. A token that decodes, belongs to this session scope and has
//! not expired (absolute and idle timeouts) pins the request: a [`Sticky`] request
//! extension names the endpoint (and the backendRef index) the session is bound to.
//! The weighted choice among backendRefs ([`Weighted`](crate::weighted::Weighted)) and the
//! balancer (gatekit-lb's `Upstream`) honour it while that target is usable and record
//! in the same extension what they actually chose; an unusable target (removed,
//! unhealthy, ejected, or already tried by an earlier attempt of a retried request) is
//! balanced as usual. After the response, [`Session`] issues a new token (`Set-Cookie`
//! or the response header) when the session is new or moved, and refreshes it when an
//! idle timeout needs the last-seen time. A missing, malformed, tampered or expired
//! token starts a new session; it is never an error.
//!
//! # The token
//!
//! A version digit and hexadecimal bytes: the endpoint's key ([`endpoint_key`], a
//! 64-bit hash of its address, so the token names no IP address), the backendRef index,
//! the issue and last-seen times (Unix seconds) and a checksum keyed by the session's
//! scope and name. Everything is deterministic, so every replica of a gateway reads
//! every other replica's tokens. The checksum detects corruption and keeps two rules'
//! sessions apart; it is not a secret: a client that forges a token can only choose
//! among endpoints the rule would send it to anyway.
//!
//! # Cookie attributes
//!
//! `Path` (`/` unless configured), `HttpOnly`, `SameSite=Lax` (GEP-1619 suggests
//! `Strict`; `Lax` keeps a session across links from other sites, and the cookie holds
//! no secret), `Secure` when the request came over TLS, and `Max-Age` (what is left of
//! the absolute timeout) only for a permanent cookie. Header mode returns the token in
//! the configured response header on every response.
//!
//! # Placement
//!
//! Rule-level persistence (HTTPRoute `rules[].sessionPersistence`) wraps the weighted
//! choice, so a session sticks to its backendRef (even one of weight 0, as GEP-1619
//! asks) and to its endpoint. Backend-level persistence (an `XBackendTrafficPolicy` on a
//! Service) wraps one backendRef's stack and pins only the endpoint. When a rule has its
//! own, the backend-level one is not used for that rule (the GEP: the route rule's
//! configuration takes precedence).

mod config;
mod future;
mod layer;
mod service;
mod sticky;
mod token;

pub use self::config::{CookieLifetime, SessionMode, SessionPersistence};
pub use self::future::ResponseFuture;
pub use self::layer::{SessionClock, SessionLayer};
pub use self::service::Session;
pub use self::sticky::Sticky;
pub use self::token::endpoint_key;

#[cfg(test)]
mod tests;
