//! What a circuit breaker says: plain data, compared by value.

/// Envoy's circuit-breaker thresholds for one backendRef of one rule. `None`: no limit.
///
/// Over a request threshold the request fails fast with 503 `circuit-open` and an
/// `x-gatekit-breaker` header naming the breaker. The connection thresholds apply to
/// the upstream's connection pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// Most connections open to the upstream's endpoints together.
    pub max_connections: Option<u32>,
    /// Most requests waiting for a parallel-request slot. `None` here means no queue:
    /// over `max_parallel_requests` a request fails at once (see the
    /// [module docs](super)).
    pub max_pending_requests: Option<u32>,
    /// Most requests in flight at once.
    pub max_parallel_requests: Option<u32>,
    /// Most retries in flight at once.
    pub max_parallel_retries: Option<u32>,
    /// Requests sent over one connection before it is closed (`Some(0)`: no limit, as
    /// Envoy reads 0).
    pub max_requests_per_connection: Option<u32>,
}
