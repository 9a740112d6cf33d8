//! Configuration of passive outlier detection.

use std::time::Duration;

/// When outlier detection ejects an endpoint and for how long.
///
/// ```
/// use std::time::Duration;
/// use gatekit_lb::outlier::OutlierConfig;
///
/// let config = OutlierConfig::default()
///     .consecutive_5xx(None) // only gateway errors eject
///     .base_ejection_time(Duration::from_secs(10));
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OutlierConfig {
    /// Consecutive 5xx outcomes (any 5xx status, connect failures, timeouts, resets) that
    /// eject an endpoint; `None` disables this detector. Default `Some(5)`.
    pub consecutive_5xx: Option<u32>,
    /// Consecutive gateway errors (502/503/504 statuses, connect failures, timeouts,
    /// resets) that eject an endpoint; `None` disables this detector. Default `Some(5)`.
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive connect failures (refused, unreachable, TLS handshake failed, connect
    /// timed out: outcomes of kind [`ErrorKind::Connect`]) that eject an endpoint;
    /// `None` disables this detector. Default `None`.
    ///
    /// Envoy's `consecutive_local_origin_failure` with `split_external_local_origin_errors`:
    /// it looks only at whether the endpoint can be reached, not at what it answers.
    /// Reset by any response, 5xx included; a timeout or protocol error after the request
    /// was sent neither counts nor resets (the connection may or may not have been made).
    ///
    /// [`ErrorKind::Connect`]: gatekit_core::ErrorKind::Connect
    pub consecutive_connect_failures: Option<u32>,
    /// Ejection time of a first ejection; the n-th lasts `n × base`. Default 30 s.
    pub base_ejection_time: Duration,
    /// Cap on one ejection's time. Default 300 s. An endpoint that stays un-ejected this
    /// long after returning has its ejection count reset.
    pub max_ejection_time: Duration,
    /// Most endpoints of the upstream ejected at once, in percent. Default 10.
    ///
    /// Envoy's rule: an ejection is allowed when `(ejected + 1) / total ≤ percent`. With
    /// the default 10%, upstreams of fewer than 10 endpoints are never ejected from unless
    /// [`always_eject_one`](Self::always_eject_one) is set.
    pub max_ejection_percent: u8,
    /// Allow one ejection whatever the percentage (Envoy's `always_eject_one_host`).
    /// Default false.
    pub always_eject_one: bool,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_5xx: Some(5),
            consecutive_gateway_errors: Some(5),
            consecutive_connect_failures: None,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            always_eject_one: false,
        }
    }
}

impl OutlierConfig {
    /// The protective default gatekit's gateway applies to an upstream when no policy
    /// enables passive health checking: eject an endpoint that refused (or could not be
    /// reached by) 2 connections in a row, for 5 s (10 s, 15 s, ... on repeated
    /// ejections, up to 60 s), never more than half of the set at once — but always
    /// allowing one, so that even one of two endpoints may be ejected. What endpoints
    /// answer, 5xx included, ejects nothing.
    ///
    /// | field | value |
    /// |---|---|
    /// | [`consecutive_5xx`](Self::consecutive_5xx) | `None` |
    /// | [`consecutive_gateway_errors`](Self::consecutive_gateway_errors) | `None` |
    /// | [`consecutive_connect_failures`](Self::consecutive_connect_failures) | `Some(2)` |
    /// | [`base_ejection_time`](Self::base_ejection_time) | 5 s |
    /// | [`max_ejection_time`](Self::max_ejection_time) | 60 s |
    /// | [`max_ejection_percent`](Self::max_ejection_percent) | 50 |
    /// | [`always_eject_one`](Self::always_eject_one) | `true` |
    ///
    /// Ejection never leaves an upstream without traffic: when fewer than the panic
    /// threshold (by default 50%) of its ready endpoints are available — the lone
    /// endpoint of a one-endpoint upstream ejected, or ejections and failed active checks
    /// together taking out more than half — the balancer ignores health and sends to
    /// all ready endpoints, ejected ones included
    /// ([`UpstreamConfig::with_panic_threshold`](crate::UpstreamConfig::with_panic_threshold)).
    pub fn connect_failures_only() -> Self {
        Self {
            consecutive_5xx: None,
            consecutive_gateway_errors: None,
            consecutive_connect_failures: Some(2),
            base_ejection_time: Duration::from_secs(5),
            max_ejection_time: Duration::from_secs(60),
            max_ejection_percent: 50,
            always_eject_one: true,
        }
    }

    /// Sets [`consecutive_5xx`](Self::consecutive_5xx) (a threshold of 0 counts as 1).
    #[must_use]
    pub fn consecutive_5xx(mut self, threshold: Option<u32>) -> Self {
        self.consecutive_5xx = threshold.map(|n| n.max(1));
        self
    }

    /// Sets [`consecutive_gateway_errors`](Self::consecutive_gateway_errors) (a threshold
    /// of 0 counts as 1).
    #[must_use]
    pub fn consecutive_gateway_errors(mut self, threshold: Option<u32>) -> Self {
        self.consecutive_gateway_errors = threshold.map(|n| n.max(1));
        self
    }

    /// Sets [`consecutive_connect_failures`](Self::consecutive_connect_failures) (a
    /// threshold of 0 counts as 1).
    #[must_use]
    pub fn consecutive_connect_failures(mut self, threshold: Option<u32>) -> Self {
        self.consecutive_connect_failures = threshold.map(|n| n.max(1));
        self
    }

    /// Sets [`base_ejection_time`](Self::base_ejection_time).
    #[must_use]
    pub fn base_ejection_time(mut self, time: Duration) -> Self {
        self.base_ejection_time = time;
        self
    }

    /// Sets [`max_ejection_time`](Self::max_ejection_time).
    #[must_use]
    pub fn max_ejection_time(mut self, time: Duration) -> Self {
        self.max_ejection_time = time;
        self
    }

    /// Sets [`max_ejection_percent`](Self::max_ejection_percent) (capped at 100).
    #[must_use]
    pub fn max_ejection_percent(mut self, percent: u8) -> Self {
        self.max_ejection_percent = percent.min(100);
        self
    }

    /// Sets [`always_eject_one`](Self::always_eject_one).
    #[must_use]
    pub fn always_eject_one(mut self, yes: bool) -> Self {
        self.always_eject_one = yes;
        self
    }

    /// How long the `n`-th ejection lasts: `n × base`, capped at
    /// `max(base, max_ejection_time)`.
    pub(crate) fn ejection_time(&self, n: u32) -> Duration {
        let cap = self.max_ejection_time.max(self.base_ejection_time);
        self.base_ejection_time.saturating_mul(n.max(1)).min(cap)
    }

    /// Envoy's max-ejection-percent rule.
    pub(crate) fn may_eject(&self, ejected: usize, total: usize) -> bool {
        if total == 0 {
            return false;
        }
        if self.always_eject_one && ejected == 0 {
            return true;
        }
        // (ejected + 1) / total <= percent / 100, in integers.
        (ejected + 1).saturating_mul(100) <= usize::from(self.max_ejection_percent) * total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_time_grows_and_is_capped() {
        let c = OutlierConfig::default();
        assert_eq!(c.ejection_time(1), Duration::from_secs(30));
        assert_eq!(c.ejection_time(2), Duration::from_secs(60));
        assert_eq!(c.ejection_time(10), Duration::from_secs(300));
        assert_eq!(c.ejection_time(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn max_ejection_percent_follows_envoy() {
        let c = OutlierConfig::default();
        assert!(c.may_eject(0, 10));
        assert!(!c.may_eject(1, 10));
        assert!(!c.may_eject(0, 9));
        assert!(c.may_eject(1, 20));
        assert!(!c.may_eject(0, 0));
        let one = OutlierConfig::default().always_eject_one(true);
        assert!(one.may_eject(0, 3));
        assert!(!one.may_eject(1, 3));
        let all = OutlierConfig::default().max_ejection_percent(100);
        assert!(all.may_eject(2, 3));
        assert!(!all.may_eject(3, 3));
    }
}
