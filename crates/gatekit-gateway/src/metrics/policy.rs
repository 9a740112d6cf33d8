//! Metrics of the traffic-policy layers, read from their shared state at each scrape.
//!
//! The layers count in atomics inside their shared state (`gatekit_core::route::
//! PolicyState`); nothing is recorded per request here. A scrape lists the state the
//! served tables use and renders one series per limiter, breaker and rule:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `gatekit_rate_limit_requests_total` | `limit`, `result` (`allowed`, `limited`) | decisions |
//! | `gatekit_rate_limit_keys` | `limit` | distinct keys tracked (local limits) |
//! | `gatekit_rate_limit_store_fallbacks_total` | `limit` | global-limit decisions made without Redis (it failed or was slow) |
//! | `gatekit_rate_limit_store_degraded` | `limit` | 1 while Redis failed the last time it was asked |
//! | `gatekit_circuit_breaker_open` | `breaker` | 1 while a threshold is reached |
//! | `gatekit_circuit_breaker_in_flight` | `breaker` | requests holding a slot |
//! | `gatekit_circuit_breaker_pending` | `breaker` | requests waiting for one |
//! | `gatekit_circuit_breaker_rejected_total` | `breaker`, `threshold` | fast 503s |
//! | `gatekit_retry_attempts_total` | `rule` | attempts sent (first ones included) |
//! | `gatekit_retries_total` | `rule` | retries sent |
//! | `gatekit_retry_budget_exhausted_total` | `rule` | retries the budget refused |
//! | `gatekit_retry_replay_overflow_total` | `rule` | bodies too large to replay |
//! | `gatekit_retry_unreturned_total` | `rule` | unsent failures not retried: the error did not hand the request back |
//! | `gatekit_concurrency_limit_rejected_total` | `rule` | requests shed (503 `overloaded`) |
//!
//! Scopes name where a policy applies: `namespace/route/rules[i]` for a rule,
//! `…/backendRefs[j]` for a breaker, `…/rateLimits[k]` for a limit.

use std::fmt;
use std::sync::Arc;

use gatekit_core::route::PolicyState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Renders the policy state's counters at each scrape.
pub(super) struct PolicyCollector {
    pub(super) state: Arc<PolicyState>,
}

impl fmt::Debug for PolicyCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyCollector").finish_non_exhaustive()
    }
}

/// One metric family: its name, help, type and `(labels, value)` rows.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    counter: bool,
    rows: &[(Vec<(&str, &str)>, u64)],
) -> Result<(), fmt::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let kind = if counter {
        MetricType::Counter
    } else {
        MetricType::Gauge
    };
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        let family = metric.encode_family(labels)?;
        if counter {
            ConstCounter::new(*value).encode(family)?;
        } else {
            ConstGauge::new(i64::try_from(*value).unwrap_or(i64::MAX)).encode(family)?;
        }
    }
    Ok(())
}

impl Collector for PolicyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let limiters = self.state.rate_limiters();
        let mut decisions = Vec::new();
        let mut keys = Vec::new();
        for (scope, limiter) in &limiters {
            let scope = scope.as_str();
            decisions.push((
                vec![("limit", scope), ("result", "allowed")],
                limiter.allowed(),
            ));
            decisions.push((
                vec![("limit", scope), ("result", "limited")],
                limiter.limited(),
            ));
            keys.push((vec![("limit", scope)], limiter.keys() as u64));
        }
        let shared = self.state.shared_limiters();
        let (mut fallbacks, mut degraded) = (Vec::new(), Vec::new());
        for (scope, limiter) in &shared {
            let scope = scope.as_str();
            let stats = limiter.stats();
            decisions.push((vec![("limit", scope), ("result", "allowed")], stats.allowed));
            decisions.push((vec![("limit", scope), ("result", "limited")], stats.limited));
            fallbacks.push((vec![("limit", scope)], stats.fallbacks));
            degraded.push((vec![("limit", scope)], u64::from(stats.degraded)));
        }
        family(
            &mut encoder,
            "rate_limit_requests",
            "Rate limit decisions, by limit and result",
            true,
            &decisions,
        )?;
        family(
            &mut encoder,
            "rate_limit_keys",
            "Distinct keys a rate limit tracks",
            false,
            &keys,
        )?;
        family(
            &mut encoder,
            "rate_limit_store_fallbacks",
            "Global rate-limit decisions made without the shared store (it failed or was slow)",
            true,
            &fallbacks,
        )?;
        family(
            &mut encoder,
            "rate_limit_store_degraded",
            "1 while the shared store of a global rate limit failed the last time it was asked",
            false,
            &degraded,
        )?;

        let breakers = self.state.breakers();
        let (mut open, mut in_flight, mut pending, mut rejected) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (scope, breaker) in &breakers {
            let scope = scope.as_str();
            let stats = breaker.stats();
            open.push((vec![("breaker", scope)], u64::from(breaker.is_open())));
            in_flight.push((vec![("breaker", scope)], stats.in_flight));
            pending.push((vec![("breaker", scope)], stats.pending));
            for threshold in gatekit_core::breaker::Threshold::ALL {
                rejected.push((
                    vec![("breaker", scope), ("threshold", threshold.as_str())],
                    breaker.rejected(threshold),
                ));
            }
        }
        family(
            &mut encoder,
            "circuit_breaker_open",
            "1 while one of the breaker's thresholds is reached",
            false,
            &open,
        )?;
        family(
            &mut encoder,
            "circuit_breaker_in_flight",
            "Requests holding a parallel-request slot of the breaker",
            false,
            &in_flight,
        )?;
        family(
            &mut encoder,
            "circuit_breaker_pending",
            "Requests waiting for a parallel-request slot of the breaker",
            false,
            &pending,
        )?;
        family(
            &mut encoder,
            "circuit_breaker_rejected",
            "Requests the breaker refused (503 circuit-open), by threshold",
            true,
            &rejected,
        )?;

        let counters = self.state.retry_counters();
        let rows = |f: fn(&gatekit_core::retry::RetryStats) -> u64| -> Vec<_> {
            counters
                .iter()
                .map(|(scope, stats)| (vec![("rule", scope.as_str())], f(stats)))
                .collect()
        };
        family(
            &mut encoder,
            "retry_attempts",
            "Attempts sent by retrying rules, first attempts included",
            true,
            &rows(|s| s.attempts()),
        )?;
        family(
            &mut encoder,
            "retries",
            "Retries sent",
            true,
            &rows(|s| s.retries()),
        )?;
        family(
            &mut encoder,
            "retry_budget_exhausted",
            "Retries the retry budget refused",
            true,
            &rows(|s| s.budget_exhausted()),
        )?;
        family(
            &mut encoder,
            "retry_replay_overflow",
            "Requests not retried because their body outgrew the replay buffer",
            true,
            &rows(|s| s.replay_overflow()),
        )?;
        family(
            &mut encoder,
            "retry_unreturned",
            "Retriable unsent failures not retried because the error did not hand the request back",
            true,
            &rows(|s| s.unreturned()),
        )?;

        let shed: Vec<_> = self
            .state
            .in_flight_limits()
            .iter()
            .map(|(scope, limit)| (scope.clone(), limit.rejected()))
            .collect();
        let shed: Vec<_> = shed
            .iter()
            .map(|(scope, n)| (vec![("rule", scope.as_str())], *n))
            .collect();
        family(
            &mut encoder,
            "concurrency_limit_rejected",
            "Requests shed by a rule's concurrency limit (503 overloaded)",
            true,
            &shed,
        )?;
        Ok(())
    }
}
