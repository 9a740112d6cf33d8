//! What a tripped threshold says: the [`Threshold`] and the one function that builds the
//! error, shared by the request thresholds here and the connection cap of the upstream
//! client.

use std::fmt;

use http::{HeaderName, HeaderValue};

use crate::{Error, ErrorKind};

/// The response header naming the circuit breaker (or connection cap) that refused a
/// request.
pub const BREAKER_HEADER: HeaderName = HeaderName::from_static("x-gatekit-breaker");

/// The response header naming the threshold that refused a request
/// ([`Threshold::as_str`]).
pub const THRESHOLD_HEADER: HeaderName = HeaderName::from_static("x-gatekit-breaker-threshold");

/// One of Envoy's circuit-breaker thresholds, as named in the
/// [`THRESHOLD_HEADER`] of a refused request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Threshold {
    /// Open connections to the upstream's endpoints (Envoy `max_connections`), enforced
    /// by the upstream client's [`ConnectionCap`](crate::client::ConnectionCap).
    MaxConnections,
    /// Requests waiting for a parallel-request slot (Envoy `max_pending_requests`).
    MaxPendingRequests,
    /// Requests in flight (Envoy `max_requests`).
    MaxParallelRequests,
    /// Retries in flight (Envoy `max_retries`).
    MaxParallelRetries,
}

impl Threshold {
    /// Every threshold, in a fixed order.
    pub const ALL: [Threshold; 4] = [
        Threshold::MaxConnections,
        Threshold::MaxPendingRequests,
        Threshold::MaxParallelRequests,
        Threshold::MaxParallelRetries,
    ];

    /// The header value and metrics label: `max-connections`, `max-pending-requests`,
    /// `max-parallel-requests` or `max-parallel-retries`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max-connections",
            Self::MaxPendingRequests => "max-pending-requests",
            Self::MaxParallelRequests => "max-parallel-requests",
            Self::MaxParallelRetries => "max-parallel-retries",
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of a request refused by `threshold` of the breaker (or cap) whose name is
/// `name` (see [`header_value`]): [`ErrorKind::CircuitOpen`] (503) with both headers.
///
/// Not retry-safe, although nothing was sent: a retry would meet the same threshold
/// (the breaker guards one backendRef, the cap one upstream), and retrying into a
/// tripped breaker is what breakers exist to stop.
pub(crate) fn open_error(name: &HeaderValue, threshold: Threshold) -> Error {
    Error::new(ErrorKind::CircuitOpen)
        .retry_safe(false)
        .with_header(BREAKER_HEADER, name.clone())
        .with_header(
            THRESHOLD_HEADER,
            HeaderValue::from_static(threshold.as_str()),
        )
}

/// `name` as a header value, built once: bytes a header value cannot carry (controls,
/// non-ASCII) become `_`.
pub(crate) fn header_value(name: &str) -> HeaderValue {
    HeaderValue::from_str(name).unwrap_or_else(|_| {
        let clean: String = name
            .chars()
            .map(|c| {
                if c == ' ' || c.is_ascii_graphic() {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("_"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_carries_both_headers_and_is_not_retried() {
        let err = open_error(
            &header_value("default/web/0/0"),
            Threshold::MaxPendingRequests,
        );
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
        assert!(!err.is_retry_safe());
        let rsp = crate::error_response(&err);
        assert_eq!(rsp.status(), 503);
        assert_eq!(rsp.headers()["x-gatekit-error"], "circuit-open");
        assert_eq!(rsp.headers()[BREAKER_HEADER], "default/web/0/0");
        assert_eq!(rsp.headers()[THRESHOLD_HEADER], "max-pending-requests");
    }

    #[test]
    fn names_become_valid_header_values() {
        assert_eq!(header_value("a b/c"), "a b/c");
        assert_eq!(header_value("bad\nname\u{e9}"), "bad_name_");
    }
}
