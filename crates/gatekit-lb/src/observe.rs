//! The hook through which the request path reports each request's outcome to whoever
//! watches endpoints (outlier detection, latency estimates, metrics).

use std::time::Duration;

use gatekit_core::{Endpoint, ErrorKind};
use http::StatusCode;

use crate::EndpointHealth;

/// Receives the outcome of every request sent to an endpoint.
///
/// Called on the request path, once per response (or failure): implementations must be
/// cheap, lock-free in the common case and must not block.
pub trait OutcomeObserver: Send + Sync {
    /// `ep` answered (or failed) a request with `outcome`; `health` is its shared state.
    fn on_outcome(&self, ep: &Endpoint, health: &EndpointHealth, outcome: Outcome);
}

/// What one request to an endpoint came to: a response status or an error, and how long
/// it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    result: Result<StatusCode, ErrorKind>,
    latency: Duration,
}

impl Outcome {
    /// The endpoint answered with `status` after `latency`.
    pub const fn status(status: StatusCode, latency: Duration) -> Self {
        Self {
            result: Ok(status),
            latency,
        }
    }

    /// The request failed with an error of `kind` after `latency`.
    pub const fn error(kind: ErrorKind, latency: Duration) -> Self {
        Self {
            result: Err(kind),
            latency,
        }
    }

    /// The response status, if the endpoint answered.
    pub const fn status_code(&self) -> Option<StatusCode> {
        match self.result {
            Ok(s) => Some(s),
            Err(_) => None,
        }
    }

    /// The error kind, if the request failed.
    pub const fn error_kind(&self) -> Option<ErrorKind> {
        match self.result {
            Ok(_) => None,
            Err(k) => Some(k),
        }
    }

    /// How long the request took.
    pub const fn latency(&self) -> Duration {
        self.latency
    }
}
