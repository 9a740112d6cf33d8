//! What a rate limit says: plain data, compared by value.

use std::time::Duration;

use http::HeaderName;

use super::ClientMatch;

/// A rate limit: a [`Quota`] per key, where the key is built from the request
/// ([`KeyPart`]s; no parts: one bucket for all traffic through the limiter), for the
/// requests that meet all its [`matches`](Self::matches) (none: every request).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// A name for headers and metrics (`RateLimit-Policy: "name";q=..;w=..`).
    pub name: String,
    /// Which requests the limit applies to: those meeting every condition (none: all).
    /// A request that fails one is not limited by it, whatever its key.
    pub matches: Vec<ClientMatch>,
    /// What a request's key is made of, in order.
    pub key: Vec<KeyPart>,
    /// The quota of each distinct key.
    pub quota: Quota,
    /// What happens to a request that lacks a part of the key (a header it does not
    /// carry).
    pub unkeyed: Unkeyed,
    /// The buckets are shared by every replica (Envoy Gateway's `type: Global`): kept
    /// in the shared store of the [`PolicyState`](crate::route::PolicyState) when it has
    /// one, in this process otherwise.
    pub global: bool,
    /// Every route rule carrying this limit takes from one set of buckets, found by
    /// the limit's [`name`](Self::name) (Envoy Gateway's `shared: true`: one budget
    /// across all the policy's targets); otherwise each rule has its own.
    pub shared: bool,
}

/// A part of a rate-limit key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyPart {
    /// The client's IP address (from [`ConnectionInfo`](crate::ConnectionInfo)).
    ClientIp,
    /// The value of this request header: each distinct value its own bucket (an API key,
    /// a tenant).
    Header(HeaderName),
    /// Who the request was authenticated as: the method and subject of its
    /// [`Identity`](crate::access::Identity) (an API key's consumer, a user), put there
    /// by an access policy outside the limit. A request without one lacks the part.
    Identity,
}

/// Requests allowed per interval, with a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quota {
    /// Requests per `interval`, sustained.
    pub requests: u64,
    /// The interval.
    pub interval: Duration,
    /// Requests that may arrive at once after an idle period (the bucket's size);
    /// at least 1. Default: `requests`.
    pub burst: u64,
}

/// What a limit does with a request that has no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unkeyed {
    /// The limit does not apply to it.
    Skip,
    /// Every such request shares one bucket with this quota (the default limit).
    Shared(Quota),
}

impl Quota {
    /// `requests` per `interval`, with a burst of `requests`.
    pub fn new(requests: u64, interval: Duration) -> Self {
        Self {
            requests,
            interval,
            burst: requests,
        }
    }

    /// Sets the burst (at least 1).
    #[must_use]
    pub fn with_burst(mut self, burst: u64) -> Self {
        self.burst = burst.max(1);
        self
    }
}

impl RateLimitConfig {
    /// A limit called `name` of `quota` per distinct `key`; requests without a key
    /// are not limited by it.
    pub fn new(name: impl Into<String>, key: Vec<KeyPart>, quota: Quota) -> Self {
        Self {
            name: name.into(),
            matches: Vec::new(),
            key,
            quota,
            unkeyed: Unkeyed::Skip,
            global: false,
            shared: false,
        }
    }

    /// Makes every rule carrying this limit share its buckets (see
    /// [`shared`](Self::shared)).
    #[must_use]
    pub fn with_shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// Marks the limit as shared by every replica (see [`global`](Self::global)).
    #[must_use]
    pub fn with_global(mut self, global: bool) -> Self {
        self.global = global;
        self
    }

    /// Applies the limit only to requests that meet every one of `matches` (see
    /// [`matches`](Self::matches)).
    #[must_use]
    pub fn with_matches(mut self, matches: Vec<ClientMatch>) -> Self {
        self.matches = matches;
        self
    }

    /// Sets what happens to requests without a key.
    #[must_use]
    pub fn with_unkeyed(mut self, unkeyed: Unkeyed) -> Self {
        self.unkeyed = unkeyed;
        self
    }
}
