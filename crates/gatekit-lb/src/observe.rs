//! The hook through which an [`Upstream`](crate::Upstream) reports each request's outcome,
//! for passive outlier detection (and metrics).
//!
//! The upstream calls [`OutcomeObserver::on_outcome`] once per request that got a
//! response head or failed, on the task that polled the response future, right after the
//! endpoint's in-flight count was decremented. Requests whose future was dropped before
//! completing (cancelled) are not reported. The call is on the request path: keep it to
//! a few atomic operations.

use std::time::Duration;

use gatekit_core::{Endpoint, ErrorKind};
use http::StatusCode;

use crate::EndpointHealth;

/// Told of the outcome of every request an [`Upstream`](crate::Upstream) sends.
///
/// Set with [`UpstreamConfig::with_observer`](crate::UpstreamConfig::with_observer).
pub trait OutcomeObserver: Send + Sync + 'static {
    /// `ep` (the endpoint as last updated) answered — or failed — with `outcome`;
    /// `health` is its shared health state, which the observer may eject.
    fn on_outcome(&self, ep: &Endpoint, health: &EndpointHealth, outcome: Outcome);
}

/// What became of one request: a response status or an error kind, and the latency to
/// the response head (or the failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    result: Result<StatusCode, ErrorKind>,
    latency: Duration,
}

impl Outcome {
    /// The endpoint answered with `status`.
    pub const fn status(status: StatusCode, latency: Duration) -> Self {
        Self {
            result: Ok(status),
            latency,
        }
    }

    /// The request failed with an error of `kind` (classified with
    /// [`gatekit_core::classify`]).
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

    /// The error kind, if the request failed without a response.
    pub const fn error_kind(&self) -> Option<ErrorKind> {
        match self.result {
            Ok(_) => None,
            Err(k) => Some(k),
        }
    }

    /// Time from sending the request to the response head or the failure.
    pub const fn latency(&self) -> Duration {
        self.latency
    }

    /// A 5xx response or any failure without a response.
    pub fn is_server_error(&self) -> bool {
        match self.result {
            Ok(s) => s.is_server_error(),
            Err(_) => true,
        }
    }

    /// A gateway error, as Envoy's outlier detection counts them: 502, 503, 504, or a
    /// connect failure, timeout or protocol error/reset.
    pub fn is_gateway_error(&self) -> bool {
        match self.result {
            Ok(s) => matches!(s.as_u16(), 502..=504),
            Err(k) => matches!(
                k,
                ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::UpstreamProtocol
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_classes() {
        let d = Duration::from_millis(3);
        let ok = Outcome::status(StatusCode::OK, d);
        assert!(!ok.is_server_error() && !ok.is_gateway_error());
        assert_eq!(ok.status_code(), Some(StatusCode::OK));
        assert_eq!(ok.latency(), d);
        let e500 = Outcome::status(StatusCode::INTERNAL_SERVER_ERROR, d);
        assert!(e500.is_server_error() && !e500.is_gateway_error());
        let e503 = Outcome::status(StatusCode::SERVICE_UNAVAILABLE, d);
        assert!(e503.is_gateway_error());
        let connect = Outcome::error(ErrorKind::Connect, d);
        assert!(connect.is_gateway_error() && connect.is_server_error());
        assert_eq!(connect.error_kind(), Some(ErrorKind::Connect));
    }
}
