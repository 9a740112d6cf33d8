//! What the layers of a request's way tell an observer about it: which endpoints its
//! attempts went to, and how many body bytes went each way.
//!
//! An outer layer (gatekit-gateway's access log) puts an [`Observed`] handle into the
//! request's extensions and attaches it to the request and response [`Body`]s
//! ([`Body::observed`]); the balancer calls [`ExchangeObserver::attempt`] for each
//! endpoint it picks, and the bodies call [`ExchangeObserver::data`] per data frame and
//! [`ExchangeObserver::end`] once, at their end or when dropped. Nothing is allocated
//! per call; a request without the extension costs one extension lookup per pick.
//!
//! [`Body`]: crate::Body
//! [`Body::observed`]: crate::Body::observed

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Which way a body flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The client's request body.
    Request,
    /// The response body sent to the client.
    Response,
}

/// Told about one request by the layers that learn something about it. Every method
/// has an empty default; implementations keep atomics (they are called on the hot path,
/// possibly from several tasks).
pub trait ExchangeObserver: Send + Sync + 'static {
    /// An attempt of the request was sent to `endpoint` (once per pick, retries included).
    fn attempt(&self, endpoint: SocketAddr) {
        let _ = endpoint;
    }

    /// A data frame of `len` bytes went through a body flowing `direction`.
    fn data(&self, direction: Direction, len: usize) {
        let _ = (direction, len);
    }

    /// The body flowing `direction` ended (or was dropped before its end).
    fn end(&self, direction: Direction) {
        let _ = direction;
    }
}

/// The request extension carrying an [`ExchangeObserver`]. Cloning is one atomic
/// increment.
#[derive(Clone)]
pub struct Observed(Arc<dyn ExchangeObserver>);

impl Observed {
    /// Wraps `observer`.
    pub fn new(observer: Arc<dyn ExchangeObserver>) -> Self {
        Self(observer)
    }

    /// The observer.
    pub fn observer(&self) -> &dyn ExchangeObserver {
        &*self.0
    }

    /// Tells the observer of `req`, if it has one, that an attempt went to `endpoint`.
    pub fn attempt<B>(req: &http::Request<B>, endpoint: SocketAddr) {
        if let Some(observed) = req.extensions().get::<Self>() {
            observed.0.attempt(endpoint);
        }
    }
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}
