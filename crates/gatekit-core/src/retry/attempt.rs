//! What a retrying layer tells the layers below it through request extensions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Which attempt of a request this is: 1 for the first, 2 for the first retry, ...
/// Set by [`Retry`](super::Retry) on every retry, and on the first attempt when it keeps
/// a copy of the request (a policy that retries only requests that never left adds
/// nothing to a first attempt). A request without one is a first attempt. Circuit
/// breakers count attempts above 1 as retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt(pub u32);

impl Attempt {
    /// Whether this attempt is a retry.
    pub fn is_retry(self) -> bool {
        self.0 > 1
    }
}

/// The endpoints earlier attempts of a request went to, shared by all its attempts.
///
/// [`Retry`](super::Retry) puts one handle into every attempt's extensions when it keeps
/// a copy of the request; a balancer (gatekit-lb's `Upstream`)
/// [`record`](Self::record)s the endpoint it picks and avoids the recorded ones while
/// another endpoint is usable, so a retry goes elsewhere. Under a policy that retries
/// only requests that never left, the first attempt carries none: the balancer inserts
/// one, with the endpoint that failed, into a request it hands back in its error.
#[derive(Clone, Debug, Default)]
pub struct TriedEndpoints(Arc<Mutex<Vec<SocketAddr>>>);

impl TriedEndpoints {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that an attempt went to `addr`.
    pub fn record(&self, addr: SocketAddr) {
        if let Ok(mut tried) = self.0.lock()
            && !tried.contains(&addr)
        {
            tried.push(addr);
        }
    }

    /// Whether no attempt was recorded yet (a first attempt).
    pub fn is_empty(&self) -> bool {
        self.0.lock().is_ok_and(|tried| tried.is_empty())
    }

    /// Whether an earlier attempt went to `addr`.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.0.lock().is_ok_and(|tried| tried.contains(&addr))
    }

    /// The endpoints tried so far, in order.
    pub fn to_vec(&self) -> Vec<SocketAddr> {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }
}
