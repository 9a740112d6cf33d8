//! [`PolicyState`]: the state of traffic policies that outlives a route table.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::breaker::{CircuitBreaker, CircuitBreakerConfig};
use crate::limit::InFlightLimit;
use crate::ratelimit::{RateLimitConfig, RateLimiter, SharedLimitStore, SharedLimiter};
use crate::retry::{RetryBudget, RetryBudgetConfig, RetryLayer, RetryPolicy, RetryStats};

/// The scope the default retry's counters are kept and shown under (the rules that set
/// no retry policy share them): [`PolicyState::default_retry_layer`].
pub const DEFAULT_RETRY_SCOPE: &str = "(default)";

/// The shared state of the traffic policies of route tables, kept across rebuilds: rate
/// limiter buckets, circuit breaker counts, retry budgets and in-flight counts.
///
/// A route table is stateless and rebuilt on every configuration change; a limit that
/// forgot its buckets on every change would not be a limit. When a table is built with
/// a [`Backends`](crate::Backends) that offers a `PolicyState`, each rule asks it for
/// its state by **scope** (where the policy applies: route, rule, backendRef, or the
/// backend for a retry budget) and **configuration**: the same scope with the same
/// configuration gets the same state back; a changed configuration starts afresh.
/// [`sweep`](Self::sweep) after the new tables are served drops the state no build has
/// asked for since the previous sweep.
///
/// Lookups take a lock: they happen while tables are built, never per request.
///
/// With a [`SharedLimitStore`] ([`with_shared_limits`](Self::with_shared_limits)), the
/// limits marked [`global`](RateLimitConfig::global) are enforced in the store, shared
/// by every replica using it; without one they are local like the others.
#[derive(Default)]
pub struct PolicyState {
    inner: Mutex<Registries>,
    store: Option<Arc<dyn SharedLimitStore>>,
}

#[derive(Default)]
struct Registries {
    generation: u64,
    limiters: HashMap<String, Slot<RateLimitConfig, RateLimiter>>,
    shared: HashMap<String, Slot<RateLimitConfig, dyn SharedLimiter>>,
    breakers: HashMap<String, Slot<CircuitBreakerConfig, CircuitBreaker>>,
    budgets: HashMap<String, Slot<BudgetKey, RetryBudget>>,
    in_flight: HashMap<String, Slot<u32, InFlightLimit>>,
    retries: HashMap<String, Slot<(), RetryStats>>,
    /// The default retry's layer, shared by every rule that takes it (its counters are
    /// the [`DEFAULT_RETRY_SCOPE`] slot of `retries`).
    default_retry: Option<RetryLayer>,
}

/// `RetryBudgetConfig` holds an `f64`: compared by its bits.
#[derive(Clone, Copy, PartialEq, Eq)]
struct BudgetKey(u64, std::time::Duration, u32);

impl BudgetKey {
    fn new(c: &RetryBudgetConfig) -> Self {
        Self(c.percent.to_bits(), c.interval, c.min_retries_per_second)
    }
}

struct Slot<C, T: ?Sized> {
    config: C,
    state: Arc<T>,
    used: u64,
}

fn get<C: PartialEq + Clone, T: ?Sized>(
    map: &mut HashMap<String, Slot<C, T>>,
    generation: u64,
    scope: &str,
    config: &C,
    make: impl FnOnce() -> Arc<T>,
) -> Arc<T> {
    match map.get_mut(scope) {
        Some(slot) if slot.config == *config => {
            slot.used = generation;
            Arc::clone(&slot.state)
        }
        _ => {
            let state = make();
            map.insert(
                scope.to_owned(),
                Slot {
                    config: config.clone(),
                    state: Arc::clone(&state),
                    used: generation,
                },
            );
            state
        }
    }
}

impl PolicyState {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the limits marked [`global`](RateLimitConfig::global) in `store`.
    #[must_use]
    pub fn with_shared_limits(mut self, store: Arc<dyn SharedLimitStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The store of the global limits, if any.
    pub fn shared_limits(&self) -> Option<&Arc<dyn SharedLimitStore>> {
        self.store.as_ref()
    }

    /// The limiter of the global limit `config` at `scope` in the shared store;
    /// `None` without a store.
    pub fn shared_limiter(
        &self,
        scope: &str,
        config: &RateLimitConfig,
    ) -> Option<Arc<dyn SharedLimiter>> {
        let store = self.store.as_ref()?;
        Some(self.with(|r| {
            get(&mut r.shared, r.generation, scope, config, || {
                store.limiter(scope, config)
            })
        }))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Registries) -> R) -> R {
        // A panic while holding the lock cannot leave a registry half-updated (each
        // update is one insert), so a poisoned lock is used as is.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The rate limiter of `config` at `scope`.
    pub fn rate_limiter(&self, scope: &str, config: &RateLimitConfig) -> Arc<RateLimiter> {
        self.with(|r| {
            get(&mut r.limiters, r.generation, scope, config, || {
                Arc::new(RateLimiter::new(config.clone()))
            })
        })
    }

    /// The circuit breaker of `config` at `scope` (also its name in responses).
    pub fn breaker(&self, scope: &str, config: &CircuitBreakerConfig) -> Arc<CircuitBreaker> {
        self.with(|r| {
            get(&mut r.breakers, r.generation, scope, config, || {
                Arc::new(CircuitBreaker::new(scope, *config))
            })
        })
    }

    /// The retry budget of `config` for backend `backend`.
    pub fn retry_budget(&self, backend: &str, config: &RetryBudgetConfig) -> Arc<RetryBudget> {
        self.with(|r| {
            get(
                &mut r.budgets,
                r.generation,
                backend,
                &BudgetKey::new(config),
                || Arc::new(RetryBudget::new(*config)),
            )
        })
    }

    /// The in-flight count of at most `max` requests at `scope`.
    pub fn in_flight(&self, scope: &str, max: u32) -> Arc<InFlightLimit> {
        self.with(|r| {
            get(&mut r.in_flight, r.generation, scope, &max, || {
                Arc::new(InFlightLimit::new(max as usize))
            })
        })
    }

    /// The retry counters of the rule at `scope` (they count across reloads).
    pub fn retry_stats(&self, scope: &str) -> Arc<RetryStats> {
        self.with(|r| {
            get(&mut r.retries, r.generation, scope, &(), || {
                Arc::new(RetryStats::new())
            })
        })
    }

    /// The layer of the default retry `policy` (rules that set no retry policy take it):
    /// one for every such rule, stateless but for its counters, which are kept under
    /// [`DEFAULT_RETRY_SCOPE`] (and count across reloads like a rule's). A changed
    /// policy makes a new layer with the same counters.
    pub fn default_retry_layer(&self, policy: &Arc<RetryPolicy>) -> RetryLayer {
        self.with(|r| {
            let stats = get(
                &mut r.retries,
                r.generation,
                DEFAULT_RETRY_SCOPE,
                &(),
                || Arc::new(RetryStats::new()),
            );
            match &r.default_retry {
                Some(layer)
                    if Arc::ptr_eq(layer.stats(), &stats)
                        && (Arc::ptr_eq(layer.policy(), policy)
                            || **layer.policy() == **policy) =>
                {
                    layer.clone()
                }
                _ => {
                    let layer = RetryLayer::new(Arc::clone(policy), None).with_stats(stats);
                    r.default_retry = Some(layer.clone());
                    layer
                }
            }
        })
    }

    /// Every rule's retry counters, by scope (the rules that take the default retry
    /// count together, under [`DEFAULT_RETRY_SCOPE`]).
    pub fn retry_counters(&self) -> Vec<(String, Arc<RetryStats>)> {
        self.with(|r| list(&r.retries))
    }

    /// Forgets the idle keys of every rate limiter (keys whose bucket is full again), so
    /// the memory a burst of distinct keys took is returned. Call every minute or so.
    pub fn sweep_idle_keys(&self) {
        for (_, limiter) in self.rate_limiters() {
            limiter.sweep();
        }
        for (_, limiter) in self.shared_limiters() {
            limiter.sweep_idle_keys();
        }
    }

    /// Drops the state no lookup asked for since the previous sweep and nothing else
    /// holds. Call once every table of a configuration is built and served: a rule
    /// compiled earlier and kept by a [`TableBuilder`](super::TableBuilder) asks for
    /// nothing but holds its state, which stays (so a rule compiled later with the same
    /// scope and configuration finds it); requests still running on older tables keep
    /// their state alive through their `Arc`s.
    pub fn sweep(&self) {
        fn live<C, T: ?Sized>(slot: &Slot<C, T>, current: u64) -> bool {
            slot.used == current || Arc::strong_count(&slot.state) > 1
        }
        self.with(|r| {
            let current = r.generation;
            // The default retry's layer goes when no rule holds it and no build asked
            // for it (then its counters go with the sweep below).
            let asked = r
                .retries
                .get(DEFAULT_RETRY_SCOPE)
                .is_some_and(|slot| slot.used == current);
            if !asked
                && r.default_retry
                    .as_ref()
                    .is_some_and(RetryLayer::is_unshared)
            {
                r.default_retry = None;
            }
            r.limiters.retain(|_, s| live(s, current));
            r.shared.retain(|_, s| live(s, current));
            r.breakers.retain(|_, s| live(s, current));
            r.budgets.retain(|_, s| live(s, current));
            r.in_flight.retain(|_, s| live(s, current));
            r.retries.retain(|_, s| live(s, current));
            // After many routes are removed, their tables' capacity goes too.
            super::hash::shrink_if_sparse(&mut r.limiters);
            super::hash::shrink_if_sparse(&mut r.shared);
            super::hash::shrink_if_sparse(&mut r.breakers);
            super::hash::shrink_if_sparse(&mut r.budgets);
            super::hash::shrink_if_sparse(&mut r.in_flight);
            super::hash::shrink_if_sparse(&mut r.retries);
            r.generation += 1;
        });
    }

    /// Every rate limiter, by scope (for metrics and `/config`).
    pub fn rate_limiters(&self) -> Vec<(String, Arc<RateLimiter>)> {
        self.with(|r| list(&r.limiters))
    }

    /// Every limiter in the shared store, by scope.
    pub fn shared_limiters(&self) -> Vec<(String, Arc<dyn SharedLimiter>)> {
        self.with(|r| list(&r.shared))
    }

    /// Every circuit breaker, by scope.
    pub fn breakers(&self) -> Vec<(String, Arc<CircuitBreaker>)> {
        self.with(|r| list(&r.breakers))
    }

    /// Every in-flight limit, by scope.
    pub fn in_flight_limits(&self) -> Vec<(String, Arc<InFlightLimit>)> {
        self.with(|r| list(&r.in_flight))
    }

    /// Every retry budget, by backend.
    pub fn retry_budgets(&self) -> Vec<(String, Arc<RetryBudget>)> {
        self.with(|r| list(&r.budgets))
    }
}

fn list<C, T: ?Sized>(map: &HashMap<String, Slot<C, T>>) -> Vec<(String, Arc<T>)> {
    let mut out: Vec<_> = map
        .iter()
        .map(|(k, s)| (k.clone(), Arc::clone(&s.state)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

impl fmt::Debug for PolicyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with(|r| {
            f.debug_struct("PolicyState")
                .field("rate_limiters", &r.limiters.len())
                .field("shared_limiters", &r.shared.len())
                .field("store", &self.store)
                .field("breakers", &r.breakers.len())
                .field("retry_budgets", &r.budgets.len())
                .field("in_flight", &r.in_flight.len())
                .finish()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::Backend;
    use crate::ratelimit::{Quota, SharedLimiterStats};

    /// A store that counts the limiters it made; its limiters pass requests on.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    #[derive(Debug)]
    struct Passing;

    impl SharedLimiter for Passing {
        fn layer(self: Arc<Self>, inner: Backend) -> Backend {
            inner
        }
        fn stats(&self) -> SharedLimiterStats {
            SharedLimiterStats::default()
        }
    }

    impl SharedLimitStore for Counting {
        fn limiter(&self, _: &str, _: &RateLimitConfig) -> Arc<dyn SharedLimiter> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Arc::new(Passing)
        }
        fn describe(&self) -> String {
            "counting".to_owned()
        }
    }

    fn limit(requests: u64) -> RateLimitConfig {
        RateLimitConfig::new("l", vec![], Quota::new(requests, Duration::from_secs(1)))
            .with_global(true)
    }

    #[test]
    fn shared_limiters_last_while_their_configuration_does_and_are_swept_after() {
        let store = Arc::new(Counting::default());
        let state = PolicyState::new().with_shared_limits(store.clone());
        let a = state.shared_limiter("r/rateLimits[0]", &limit(10)).unwrap();
        // A rebuild with the same configuration: the same limiter, none made.
        state.sweep();
        let b = state.shared_limiter("r/rateLimits[0]", &limit(10)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(store.0.load(Ordering::Relaxed), 1);
        // A changed quota: a new one.
        state.sweep();
        let c = state.shared_limiter("r/rateLimits[0]", &limit(20)).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(state.shared_limiters().len(), 1);
        // Still held (by `c`, as by a rule a builder kept): it stays.
        state.sweep();
        state.sweep();
        assert_eq!(state.shared_limiters().len(), 1);
        // No build asks for it and nothing holds it: gone after the sweep that follows.
        drop((a, b, c));
        state.sweep();
        assert!(state.shared_limiters().is_empty());
    }

    #[test]
    fn without_a_store_there_is_no_shared_limiter() {
        let state = PolicyState::new();
        assert!(state.shared_limiter("r", &limit(10)).is_none());
        assert!(state.shared_limits().is_none());
    }
}
