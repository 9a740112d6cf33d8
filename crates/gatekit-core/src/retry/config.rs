//! What a [`RetryPolicy`] and a [`RetryBudgetConfig`] say: plain data, compared by value.

use std::time::Duration;

use http::StatusCode;

/// When and how a rule retries a request (Gateway API HTTPRoute `retry`, or a policy).
///
/// A request is retried only when a policy applies to it; with none, nothing is
/// retried. Retries stay inside the rule's `timeouts.request` (the outer
/// [`Timeout`](crate::timeout::Timeout) drops the whole exchange at its deadline).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (Gateway API `attempts`). 0: never retried.
    pub attempts: u32,
    /// What makes an attempt worth retrying.
    pub on: RetryOn,
    /// The wait before each retry.
    pub backoff: Backoff,
    /// Largest request body kept for replay. A body that grows past it is sent once and
    /// never retried (never a truncated retry). Default 64 KiB.
    pub max_replay_body: usize,
    /// Longest `Retry-After` honoured on a retriable 429/503: a longer one ends the
    /// exchange with that response. Default 10 s.
    pub max_retry_after: Duration,
}

/// The classes of failed attempts a policy retries (Envoy's `retry_on`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryOn {
    /// Errors that [`Error::is_retry_safe`](crate::Error::is_retry_safe) marks: the
    /// request never reached the backend (connect refused or timed out, no healthy
    /// endpoint, a stream refused before processing). Retried whatever the method.
    pub unsent: bool,
    /// Connect failures (`connect-failure`).
    pub connect_failure: bool,
    /// Resets and protocol errors: the connection broke before a response head
    /// (`reset`).
    pub reset: bool,
    /// Per-attempt timeouts (`timeouts.backendRequest` expired).
    pub timeout: bool,
    /// Any 5xx response, and every failure above (`5xx`).
    pub server_error: bool,
    /// 502, 503 and 504 responses, and every failure above (`gateway-error`).
    pub gateway_error: bool,
    /// These response statuses (`retriable-status-codes`; Gateway API `codes`).
    pub statuses: Vec<StatusCode>,
    /// These gRPC status codes, read from `grpc-status` in a response head (a
    /// trailers-only response): 14 unavailable, 8 resource-exhausted, 4
    /// deadline-exceeded, 1 cancelled, 13 internal.
    pub grpc: Vec<u32>,
}

/// Exponential backoff with jitter: retry `n` (from 1) waits a random time in
/// `[base, min(max, base × 2^(n-1))]`, never less than `base` (the Gateway API's
/// `backoff` is a minimum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The least wait before a retry. Default 25 ms (Envoy's).
    pub base: Duration,
    /// The most. Default 10 × base.
    pub max: Duration,
}

/// A retry budget (GEP-3388, linkerd's budgets): retries may add at most `percent` of
/// the requests seen over `interval`, but at least `min_retries_per_second` are always
/// allowed. Shared by every rule that sends to the same backend.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryBudgetConfig {
    /// Retries as a share of recent requests, in percent. Default 20.
    pub percent: f64,
    /// The window "recent" covers. Default 10 s.
    pub interval: Duration,
    /// Retries per second allowed whatever the share. Default 10 per second.
    pub min_retries_per_second: u32,
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// A policy of `attempts` retries on `on`, with the default backoff and bounds.
    pub fn new(attempts: u32, on: RetryOn) -> Self {
        Self {
            attempts,
            on,
            backoff: Backoff::default(),
            max_replay_body: 64 * 1024,
            max_retry_after: Duration::from_secs(10),
        }
    }

    /// gatekit's default with no policy written: one retry, only of requests that never
    /// reached a backend ([`RetryOn::unsent`]), whatever the method, sent at once (no
    /// backoff).
    ///
    /// No backoff because the failure cost the backend nothing (a refused or timed-out
    /// connect, no healthy endpoint): there is no load to back off from, and the retry
    /// goes to another endpoint (a balancer avoids the one that failed, see
    /// [`TriedEndpoints`](super::TriedEndpoints)), as Envoy's connect-failure retries
    /// pick another host. A policy written by hand keeps its own backoff.
    ///
    /// It needs no copy of the request ([`RetryOn::needs_copy`] is false): the layer
    /// costs a first attempt almost nothing.
    pub fn unsent_once() -> Self {
        Self::new(
            1,
            RetryOn {
                unsent: true,
                ..RetryOn::default()
            },
        )
        .with_backoff(Backoff::new(Duration::ZERO))
    }

    /// Sets the backoff.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the replay buffer bound.
    #[must_use]
    pub fn with_max_replay_body(mut self, bytes: usize) -> Self {
        self.max_replay_body = bytes;
        self
    }
}

// === impl RetryOn ===

impl RetryOn {
    /// Whether a retry under these classes may need the request after some of it was
    /// sent, or after a response: any class but [`unsent`](Self::unsent) and
    /// [`connect_failure`](Self::connect_failure). Then the retry layer keeps a copy of
    /// every request (its head, and its body as it streams); otherwise it keeps nothing
    /// and retries the requests that errors hand back (see the
    /// [module docs](super#requests-that-never-left-no-copy)).
    ///
    /// A class added to `RetryOn` needs a copy unless it names only failures before any
    /// byte of the request was sent.
    pub fn needs_copy(&self) -> bool {
        let Self {
            unsent: _,
            connect_failure: _,
            reset,
            timeout,
            server_error,
            gateway_error,
            statuses,
            grpc,
        } = self;
        *reset
            || *timeout
            || *server_error
            || *gateway_error
            || !statuses.is_empty()
            || !grpc.is_empty()
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(25))
    }
}

impl Backoff {
    /// A backoff starting at `base`, capped at 10 × `base`.
    pub fn new(base: Duration) -> Self {
        Self {
            base,
            max: base.saturating_mul(10),
        }
    }

    /// Sets the cap (at least `base`).
    #[must_use]
    pub fn with_max(mut self, max: Duration) -> Self {
        self.max = max.max(self.base);
        self
    }
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            percent: 20.0,
            interval: Duration::from_secs(10),
            min_retries_per_second: 10,
        }
    }
}
