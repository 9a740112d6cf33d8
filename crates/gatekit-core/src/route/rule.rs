//! A compiled rule: what the router needs once a request matched it, including the
//! rule's service stack, built here once per configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tower::util::MapErrLayer;
use tower::{Layer, Service, ServiceBuilder};

use super::PolicyState;
use super::model::{BackendRef, Filter, PathModifier, Route, RouteId, Rule, RulePolicy, Timeouts};
use crate::breaker::CircuitBreakerLayer;
use crate::error::ConfigError;
use crate::filter::{FilterChain, FilterLayer};
use crate::limit::{BodyLimitLayer, ConcurrencyLimitLayer};
use crate::proxy::ProxyHeadersLayer;
use crate::ratelimit::RateLimitLayer;
use crate::retry::{RetryLayer, RetryPolicy};
use crate::session::SessionLayer;
use crate::timeout::TimeoutLayer;
use crate::weighted::{Weighted, WeightedBackends};
use crate::{Backend, Backends, Body, BoxError, ErrorExtensions, WithResponseExtensions};

/// A rule of a route, compiled: its filters, timeouts, weighted backends and the service
/// stack the [`Router`](crate::Router) hands its requests to.
///
/// Shared (`Arc`) by every host bucket and path index entry that leads to it. What the
/// model says as it is (the route's id, the rule's name and timeouts) is read from the
/// model, which the compiled rule points into (the route's `Arc` and the rule's index)
/// instead of keeping copies.
pub struct CompiledRule {
    route: Arc<Route>,
    rule_index: usize,
    filters: FilterChain,
    backends: WeightedBackends,
    stack: Stack,
    /// The model's own (shared, not copied); a rule that sets none but takes the
    /// default retry shares one value ([`DefaultRetry`]).
    policy: Arc<RulePolicy>,
}

/// How a compiled rule serves the requests it takes.
enum Stack {
    /// A rule without rate limits, concurrency or body limits, session persistence or
    /// access policies (most rules): its stack is the [`core_stack`] (under the error
    /// extensions), which each call assembles from the rule's parts, as a call of an
    /// erased stack clones it (the same reference-count increments, one boxed future):
    /// no allocation per rule.
    Plain {
        on_error: Option<Arc<dyn ErrorExtensions>>,
        retry: Option<RetryLayer>,
    },
    /// The rule's own stack ([`rule_stack`]), built once and erased.
    Built(Backend),
}

/// Whether `policy` needs a stack of the rule's own ([`Stack::Built`]): it sets a
/// layer the [`core_stack`] does not have.
fn needs_own_stack(policy: &RulePolicy) -> bool {
    !policy.rate_limits.is_empty()
        || policy.limits.max_concurrent_requests.is_some()
        || policy.limits.max_request_body.is_some()
        || policy.session.is_some()
        || !policy.access.is_empty()
}

/// The innermost part of every rule's stack, outermost first: request timeout, proxy
/// headers, the rule's filters, the rule's session persistence, the default retry when
/// it applies at the rule ([`Retrying::Rule`]), then the weighted choice (which applies
/// the chosen backendRef's filters and calls that backendRef's stack,
/// [`backend_stack`]).
fn core_stack(
    timeout: Option<Duration>,
    filters: &FilterChain,
    session: Option<SessionLayer>,
    retry: Option<RetryLayer>,
    backends: &WeightedBackends,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = BoxError, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .layer(TimeoutLayer::request(timeout))
        .layer(ProxyHeadersLayer::new())
        .layer(FilterLayer::new(filters.clone()))
        .option_layer(session)
        .option_layer(retry)
        .service(Weighted::new(backends.clone()))
}

/// Errors carry the extensions the table was given for them (wrapped outermost, so a
/// backend's own extensions, deeper in the cause chain, take precedence).
fn error_layer(
    extensions: Arc<dyn ErrorExtensions>,
) -> MapErrLayer<impl Fn(BoxError) -> BoxError + Clone + Send + Sync + 'static> {
    MapErrLayer::new(move |err: BoxError| -> BoxError {
        Box::new(WithResponseExtensions::new(
            err,
            Arc::clone(&extensions).extensions(),
        ))
    })
}

/// Builds the stack of a rule that [`needs_own_stack`], outermost first (see the
/// [`Router`](crate::Router)'s docs): the error extensions, the rule's access policies
/// ([`crate::access`]), local rate limits, global rate limits (in the policy state's
/// shared store, when it has one), concurrency limit, body limit (each only when the
/// rule's policy sets it), then the [`core_stack`] with the rule's session persistence.
///
/// Type-erased once, into the same cheap erasure as a [`Backend`]: a call clones the
/// stack (reference-count increments) and boxes its response future. Global limits add
/// one erasure each (they wait for the store before calling on).
// The rule's parts, compiled, and where its stack finds its state and lookups.
#[allow(clippy::too_many_arguments)]
fn rule_stack(
    scope: &str,
    rule: &Rule,
    filters: &FilterChain,
    backends: &WeightedBackends,
    lookup: &dyn Backends,
    state: &PolicyState,
    error_extensions: Option<Arc<dyn ErrorExtensions>>,
    retry: Option<RetryLayer>,
) -> Backend {
    let policy = &rule.policy;
    let mut local = Vec::new();
    let mut shared = Vec::new();
    for (i, limit) in policy.rate_limits.iter().enumerate() {
        // A shared limit is found by its name, so every rule carrying it (from one
        // policy on several routes) finds the same buckets.
        let scope = if limit.shared {
            format!("shared/{}", limit.name)
        } else {
            format!("{scope}/rateLimits[{i}]")
        };
        match limit
            .global
            .then(|| state.shared_limiter(&scope, limit))
            .flatten()
        {
            Some(limiter) => shared.push(limiter),
            None => local.push(state.rate_limiter(&scope, limit)),
        }
    }
    let rate_limit = (!local.is_empty()).then(|| RateLimitLayer::new(local));
    let concurrency = policy
        .limits
        .max_concurrent_requests
        .map(|max| ConcurrencyLimitLayer::new(state.in_flight(scope, max)));
    let body = policy.limits.max_request_body.map(BodyLimitLayer::new);
    let on_error = error_extensions.map(error_layer);
    let session = policy
        .session
        .clone()
        .map(|config| SessionLayer::new(scope, config));
    let inner = ServiceBuilder::new()
        .option_layer(concurrency)
        .option_layer(body)
        .service(core_stack(
            rule.timeouts.request,
            filters,
            session,
            retry,
            backends,
        ));
    if policy.access.is_empty() {
        let outer = ServiceBuilder::new()
            .option_layer(on_error)
            .option_layer(rate_limit);
        if shared.is_empty() {
            return Backend::new(outer.service(inner));
        }
        let inner = shared
            .into_iter()
            .rev()
            .fold(Backend::new(inner), |inner, limiter| limiter.layer(inner));
        return Backend::new(outer.service(inner));
    }
    // Guarded: the access policies run before the rate limits (a limit may be keyed
    // by the identity they establish), inside the error extensions.
    let limited = shared
        .into_iter()
        .rev()
        .fold(Backend::new(inner), |inner, limiter| limiter.layer(inner));
    let limited = match rate_limit {
        Some(rate_limit) => Backend::new(ServiceBuilder::new().layer(rate_limit).service(limited)),
        None => limited,
    };
    let policies = policy
        .access
        .iter()
        .map(|name| lookup.access_policy(name))
        .collect();
    let cors = rule.filters.iter().any(|f| matches!(f, Filter::Cors(_)));
    let guarded = crate::access::guard(limited, policies, cors);
    match on_error {
        Some(on_error) => Backend::new(ServiceBuilder::new().layer(on_error).service(guarded)),
        None => guarded,
    }
}

/// Builds one backendRef's stack around its resolved backend, outermost first: the
/// backend's session persistence (unless the rule has its own), retries
/// (the rule's policy, with the backend's budget), the per-attempt timeout
/// (`timeouts.backendRequest`), the backendRef's circuit breaker. Without any of them
/// the backend itself, with no extra erasure.
fn backend_stack(
    rule_scope: &str,
    scope: &str,
    backend: Backend,
    b: &BackendRef,
    rule: &Rule,
    retry: &Retrying,
    state: &PolicyState,
) -> Backend {
    let per_try = rule.timeouts.backend_request.filter(|d| !d.is_zero());
    // Scoped by the backend, so every rule sending to it reads the same sessions.
    let session = b
        .session
        .clone()
        .filter(|_| rule.policy.session.is_none())
        .map(|config| SessionLayer::new(&b.name, *config));
    let retry = match retry {
        Retrying::None | Retrying::Rule(_) => None,
        Retrying::Shared(layer) => Some(match &b.retry_budget {
            // The backend's budget is its own: a layer of this backendRef's.
            Some(c) => RetryLayer::new(
                Arc::clone(layer.policy()),
                Some(state.retry_budget(&b.name, c)),
            )
            .with_stats(Arc::clone(layer.stats())),
            None => layer.clone(),
        }),
        Retrying::Own(policy) => {
            let budget = b
                .retry_budget
                .as_ref()
                .map(|c| state.retry_budget(&b.name, c));
            let stats = state.retry_stats(rule_scope);
            Some(RetryLayer::new(Arc::clone(policy), budget).with_stats(stats))
        }
    };
    if retry.is_none() && per_try.is_none() && b.breaker.is_none() && session.is_none() {
        return backend;
    }
    let breaker = b
        .breaker
        .as_ref()
        .map(|c| CircuitBreakerLayer::new(state.breaker(scope, c)));
    let stack = ServiceBuilder::new()
        .option_layer(session)
        .option_layer(retry)
        .layer(TimeoutLayer::backend_request(per_try))
        .option_layer(breaker)
        .service(backend);
    Backend::new(stack)
}

/// A default retry policy for rules that set none, with the policy such a rule shows
/// (the default retry and nothing else), made once and shared by every such rule.
#[derive(Clone, Debug)]
pub(crate) struct DefaultRetry {
    retry: Arc<RetryPolicy>,
    policy: Arc<RulePolicy>,
}

impl DefaultRetry {
    pub(crate) fn new(retry: RetryPolicy) -> Self {
        let policy = Arc::new(RulePolicy {
            retry: Some(retry.clone()),
            ..RulePolicy::default()
        });
        Self {
            retry: Arc::new(retry),
            policy,
        }
    }
}

/// Where a rule's retries happen.
enum Retrying {
    /// Nowhere: the rule sets no retry policy and there is no default.
    None,
    /// The rule's own policy, counted in the rule's own counters: a layer per
    /// backendRef (each with its backend's budget).
    Own(Arc<RetryPolicy>),
    /// The default, one layer shared by every rule that takes it, per backendRef (a
    /// rule with several backendRefs, or one with filters, a session or a budget: a
    /// retry goes to the backendRef of the first attempt, and only there).
    Shared(RetryLayer),
    /// The default around the weighted choice, in the rule's own stack: for a rule of
    /// one plain backendRef (no filters, session or retry budget), where a retry goes
    /// to that backendRef as it would per backendRef, at no allocation per backendRef
    /// and one erasure less per request.
    Rule(RetryLayer),
}

impl Retrying {
    fn of(rule: &Rule, default: Option<&DefaultRetry>, state: &PolicyState) -> Self {
        if let Some(retry) = &rule.policy.retry {
            return Retrying::Own(Arc::new(retry.clone()));
        }
        let Some(default) = default else {
            return Retrying::None;
        };
        let layer = state.default_retry_layer(&default.retry);
        let plain = |b: &BackendRef| {
            b.filters.is_empty() && b.session.is_none() && b.retry_budget.is_none()
        };
        match &*rule.backends {
            [only] if plain(only) && rule.policy.session.is_none() => Retrying::Rule(layer),
            _ => Retrying::Shared(layer),
        }
    }
}

/// One backendRef of a rule: a name, a weight, the resolved backend and its own filters.
pub struct WeightedBackend {
    name: Box<str>,
    weight: u32,
    backend: Option<Backend>,
    filters: FilterChain,
    /// The sum of the weights of the rule's backendRefs up to this one, set by
    /// [`WeightedBackends::new`].
    pub(crate) cumulative: u64,
}

// === impl CompiledRule ===

impl CompiledRule {
    /// Compiles the `index`th rule of `route` (which must have it), with `default_retry`
    /// where the rule sets no retry policy. Field paths are relative to the rule
    /// (`filters[0]...`, `backendRefs[1].filters[0]...`).
    pub(crate) fn compile(
        route: &Arc<Route>,
        index: usize,
        backends: &dyn Backends,
        default_retry: Option<&DefaultRetry>,
    ) -> Result<Self, ConfigError> {
        let rule = &route.rules[index];
        let route_id = &route.id;
        let backends_lookup = backends;
        check_replace_prefix(rule, &rule.filters, "filters")?;
        let filters = FilterChain::compile(&rule.filters, backends)
            .map_err(|e| nest_list_error(e, "filters"))?;
        let fresh;
        let state = match backends.policy_state() {
            Some(state) => state,
            None => {
                fresh = PolicyState::new();
                &fresh
            }
        };
        let scope = format!("{route_id}/rules[{index}]");
        let error_extensions = backends.error_extensions(route_id);
        let retry = Retrying::of(rule, default_retry, state);
        let mut compiled = Vec::with_capacity(rule.backends.len());
        for (j, b) in rule.backends.iter().enumerate() {
            let prefix = || format!("backendRefs[{j}].filters");
            check_replace_prefix(rule, &b.filters, "filters")
                .map_err(|e| nest_list_error(e, &format!("backendRefs[{j}]")))?;
            let filters = FilterChain::compile(&b.filters, backends)
                .map_err(|e| nest_list_error(e, &prefix()))?;
            if let Some(session) = &b.session {
                session
                    .validate()
                    .map_err(|e| e.within(&format!("backendRefs[{j}].sessionPersistence")))?;
            }
            let backend = backends.backend_for(route_id, &b.name).map(|backend| {
                let ref_scope = format!("{scope}/backendRefs[{j}]");
                backend_stack(&scope, &ref_scope, backend, b, rule, &retry, state)
            });
            compiled.push(WeightedBackend::new(
                b.name.as_str(),
                b.weight,
                backend,
                filters,
            ));
        }
        if let Some(session) = &rule.policy.session {
            session
                .validate()
                .map_err(|e| e.within("sessionPersistence"))?;
        }
        let timeouts = rule.timeouts;
        if let (Some(request), Some(backend)) = (timeouts.request, timeouts.backend_request)
            && backend > request
        {
            return Err(ConfigError::new(
                "timeouts.backendRequest",
                format!("must not be longer than timeouts.request ({backend:?} > {request:?})"),
            ));
        }
        let backends = WeightedBackends::new(compiled);
        let retry = match retry {
            Retrying::Rule(layer) => Some(layer),
            _ => None,
        };
        let stack = if needs_own_stack(&rule.policy) {
            Stack::Built(rule_stack(
                &scope,
                rule,
                &filters,
                &backends,
                backends_lookup,
                state,
                error_extensions,
                retry,
            ))
        } else {
            Stack::Plain {
                on_error: error_extensions,
                retry,
            }
        };
        Ok(Self {
            route: Arc::clone(route),
            rule_index: index,
            stack,
            filters,
            backends,
            policy: match (&rule.policy.retry, default_retry) {
                // The default applies: shown as the rule's policy.
                (None, Some(default)) if *rule.policy == RulePolicy::default() => {
                    Arc::clone(&default.policy)
                }
                (None, Some(default)) => Arc::new(RulePolicy {
                    retry: Some(RetryPolicy::clone(&default.retry)),
                    ..RulePolicy::clone(&rule.policy)
                }),
                _ => Arc::clone(&rule.policy),
            },
        })
    }

    /// The route this rule belongs to.
    pub fn route_id(&self) -> &RouteId {
        &self.route.id
    }

    /// The rule in the model it was compiled from.
    pub fn rule(&self) -> &Rule {
        // The route is immutable and `compile` checked the index.
        &self.route.rules[self.rule_index]
    }

    /// The rule's position in its route's `rules`.
    pub fn rule_index(&self) -> usize {
        self.rule_index
    }

    /// The rule's name (Gateway API `name`), if it has one.
    pub fn name(&self) -> Option<&str> {
        self.rule().name.as_deref()
    }

    /// The rule's filters, applied to every request the rule takes.
    pub fn filters(&self) -> &FilterChain {
        &self.filters
    }

    /// The rule's timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.rule().timeouts
    }

    /// The rule's traffic policy, as configured.
    pub fn policy(&self) -> &RulePolicy {
        &self.policy
    }

    /// Every backendRef of the rule, in order (including those of weight 0).
    pub fn backends(&self) -> &[WeightedBackend] {
        self.backends.as_slice()
    }

    /// Sends a request that matched this rule through the rule's service stack: what
    /// the [`Router`](crate::Router) does with it. The response future is boxed once.
    pub fn send(&self, req: Request<Body>) -> crate::backend::ResponseFuture {
        match &self.stack {
            Stack::Built(service) => service.send(req),
            Stack::Plain { on_error, retry } => {
                let inner = core_stack(
                    self.rule().timeouts.request,
                    &self.filters,
                    None,
                    retry.clone(),
                    &self.backends,
                );
                match on_error {
                    Some(extensions) => {
                        Backend::send_once(error_layer(Arc::clone(extensions)).layer(inner), req)
                    }
                    None => Backend::send_once(inner, req),
                }
            }
        }
    }

    /// A weighted random choice among the backendRefs with weight > 0 (one `fastrand`
    /// draw and a binary search over the cumulative weights). `None` when the rule has no
    /// backendRefs or their weights sum to 0: the Gateway API then answers 500.
    pub fn pick_backend(&self) -> Option<&WeightedBackend> {
        self.pick_backend_index().and_then(|i| self.backends.get(i))
    }

    /// Like [`pick_backend`](Self::pick_backend), as an index into
    /// [`backends`](Self::backends), for callers that keep the rule in an `Arc` across an
    /// `.await` and look the backend up again with [`backend_at`](Self::backend_at).
    pub fn pick_backend_index(&self) -> Option<usize> {
        self.backends.pick_index()
    }

    /// The backendRef at `index`, if there is one.
    pub fn backend_at(&self, index: usize) -> Option<&WeightedBackend> {
        self.backends.get(index)
    }

    #[cfg(test)]
    fn index_at(&self, point: u64) -> usize {
        self.backends.index_at(point)
    }
}

impl fmt::Debug for CompiledRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledRule")
            .field("route_id", self.route_id())
            .field("rule_index", &self.rule_index)
            .field("name", &self.name())
            .field("filters", &self.filters)
            .field("timeouts", &self.timeouts())
            .field("policy", self.policy())
            .field("backends", &self.backends)
            .finish()
    }
}

/// Prefixes a filter-list error: `[2].requestRedirect` within `filters` reads
/// `filters[2].requestRedirect`.
fn nest_list_error(e: ConfigError, list: &str) -> ConfigError {
    if e.field().starts_with('[') || e.field().is_empty() {
        ConfigError::new(format!("{list}{}", e.field()), e.reason())
    } else {
        e.within(list)
    }
}

/// `ReplacePrefixMatch` needs a path prefix to replace: the Gateway API makes a rule that
/// uses it with any other match type invalid. A rule without matches matches prefix `/`.
fn check_replace_prefix(rule: &Rule, filters: &[Filter], list: &str) -> Result<(), ConfigError> {
    use super::model::PathMatch;
    for (k, f) in filters.iter().enumerate() {
        let field = match f {
            Filter::UrlRewrite(u)
                if matches!(u.path, Some(PathModifier::ReplacePrefixMatch(_))) =>
            {
                "urlRewrite.path"
            }
            Filter::RequestRedirect(r)
                if matches!(r.path, Some(PathModifier::ReplacePrefixMatch(_))) =>
            {
                "requestRedirect.path"
            }
            _ => continue,
        };
        let bad = rule.matches.iter().position(|m| {
            matches!(
                m.path,
                Some(PathMatch::Exact(_)) | Some(PathMatch::Regex(_))
            )
        });
        if let Some(m) = bad {
            return Err(ConfigError::new(
                format!("{list}[{k}].{field}"),
                format!(
                    "ReplacePrefixMatch needs every match of the rule to be a PathPrefix \
                     match, but matches[{m}] is not"
                ),
            ));
        }
    }
    Ok(())
}

// === impl WeightedBackend ===

impl WeightedBackend {
    /// A backendRef called `name` with `weight`, its resolved `backend` (`None`: this
    /// share of traffic answers 500) and its own `filters`.
    pub fn new(
        name: impl Into<Box<str>>,
        weight: u32,
        backend: Option<Backend>,
        filters: FilterChain,
    ) -> Self {
        Self {
            name: name.into(),
            weight,
            backend,
            filters,
            cumulative: 0,
        }
    }

    /// The backendRef's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backendRef's weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The backend, or `None` when the name did not resolve when the table was built
    /// (this share of traffic answers 500).
    pub fn backend(&self) -> Option<&Backend> {
        self.backend.as_ref()
    }

    /// The backendRef's own filters, applied after the rule's.
    pub fn filters(&self) -> &FilterChain {
        &self.filters
    }
}

impl fmt::Debug for WeightedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedBackend")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("resolved", &self.backend.is_some())
            .field("filters", &self.filters)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::model::{BackendRef, Match, PathMatch, UrlRewrite};
    use super::*;
    use crate::small_list::SmallList;

    fn rule_with(weights: &[u32]) -> CompiledRule {
        let mut rule = Rule::default();
        for (i, w) in weights.iter().enumerate() {
            rule.backends.push(BackendRef::new(format!("b{i}"), *w));
        }
        let backends: HashMap<String, Backend> = HashMap::new();
        CompiledRule::compile(&in_route(&rule), 0, &backends, None).unwrap()
    }

    /// A route of one rule, `rule`.
    fn in_route(rule: &Rule) -> Arc<Route> {
        Arc::new(Route::new(RouteId::new("ns", "r")).with_rule(rule.clone()))
    }

    /// A route of two rules, both `rule`.
    fn twice(rule: &Rule) -> Arc<Route> {
        let route = Route::new(RouteId::new("ns", "r")).with_rule(rule.clone());
        Arc::new(route.with_rule(rule.clone()))
    }

    #[test]
    fn pick_skips_zero_weights_and_covers_ranges() {
        let r = rule_with(&[0, 3, 0, 1]);
        let names: Vec<_> = (0..4)
            .map(|p| r.backend_at(r.index_at(p)).unwrap().name())
            .collect();
        assert_eq!(names, ["b1", "b1", "b1", "b3"]);
        assert!(r.pick_backend().unwrap().weight() > 0);
        assert!(rule_with(&[0, 0]).pick_backend().is_none());
        assert!(rule_with(&[]).pick_backend().is_none());
    }

    #[test]
    fn pick_follows_the_weights() {
        let r = rule_with(&[1, 3]);
        let n = 20_000;
        let b1 = (0..n)
            .filter(|_| r.pick_backend().unwrap().name() == "b1")
            .count();
        // Expect 15000; 5 sigma is about 300.
        assert!(
            (14_300..15_700).contains(&b1),
            "b1 chosen {b1} times of {n}"
        );
    }

    #[test]
    fn unresolved_backends_are_kept_without_a_service() {
        let r = rule_with(&[1]);
        let b = r.pick_backend().unwrap();
        assert_eq!(b.name(), "b0");
        assert!(b.backend().is_none());
    }

    #[test]
    fn replace_prefix_match_needs_prefix_matches() {
        let mut rule = Rule::default();
        rule.matches.push(Match {
            path: Some(PathMatch::Prefix("/a".into())),
            ..Match::default()
        });
        rule.matches.push(Match {
            path: Some(PathMatch::Exact("/b".into())),
            ..Match::default()
        });
        let rewrite = UrlRewrite {
            path: Some(PathModifier::ReplacePrefixMatch("/x".into())),
            ..UrlRewrite::default()
        };
        rule = rule.with_filter(Filter::UrlRewrite(rewrite.clone()));
        let backends: HashMap<String, Backend> = HashMap::new();
        let e = CompiledRule::compile(&in_route(&rule), 0, &backends, None).unwrap_err();
        assert_eq!(e.field(), "filters[0].urlRewrite.path");
        assert!(e.reason().contains("matches[1]"), "{}", e.reason());

        rule.filters = Box::default();
        rule.backends
            .push(BackendRef::new("b", 1).with_filter(Filter::UrlRewrite(rewrite)));
        let e = CompiledRule::compile(&in_route(&rule), 0, &backends, None).unwrap_err();
        assert_eq!(e.field(), "backendRefs[0].filters[0].urlRewrite.path");

        rule.matches = SmallList::One(rule.matches[0].clone());
        assert!(CompiledRule::compile(&in_route(&rule), 0, &backends, None).is_ok());
        rule.matches = SmallList::default();
        assert!(CompiledRule::compile(&in_route(&rule), 0, &backends, None).is_ok());
    }

    #[test]
    fn invalid_session_persistence_is_refused_naming_the_field() {
        use crate::session::{CookieLifetime, SessionPersistence};
        let backends: HashMap<String, Backend> = HashMap::new();
        let mut rule = Rule::default();
        rule.policy_mut().session =
            Some(SessionPersistence::cookie(None).with_lifetime(CookieLifetime::Permanent));
        let e = CompiledRule::compile(&in_route(&rule), 0, &backends, None).unwrap_err();
        assert_eq!(e.field(), "sessionPersistence.absoluteTimeout");
        rule.policy_mut().session = None;
        let mut b = BackendRef::new("b", 1);
        b.session = Some(Box::new(SessionPersistence::header(Some(
            "bad name".into(),
        ))));
        rule.backends.push(b);
        let e = CompiledRule::compile(&in_route(&rule), 0, &backends, None).unwrap_err();
        assert_eq!(e.field(), "backendRefs[0].sessionPersistence.sessionName");
    }

    #[test]
    fn an_empty_policy_is_kept_without_an_allocation_and_read_as_empty() {
        let backends: HashMap<String, Backend> = HashMap::new();
        let mut rule = Rule::default();
        let plain = CompiledRule::compile(&in_route(&rule), 0, &backends, None).unwrap();
        assert!(Arc::ptr_eq(&plain.policy, &RulePolicy::none()));
        assert_eq!(plain.policy(), &RulePolicy::default());

        let retry = DefaultRetry::new(RetryPolicy::unsent_once());
        let defaulted =
            CompiledRule::compile(&in_route(&rule), 0, &backends, Some(&retry)).unwrap();
        assert_eq!(defaulted.policy().retry.as_ref(), Some(&*retry.retry));
        let again = CompiledRule::compile(&twice(&rule), 1, &backends, Some(&retry)).unwrap();
        let shared = |r: &CompiledRule| r.policy.clone();
        assert!(Arc::ptr_eq(&shared(&defaulted), &shared(&again)));

        rule.policy_mut().limits.max_concurrent_requests = Some(3);
        let limited = CompiledRule::compile(&in_route(&rule), 0, &backends, None).unwrap();
        assert_eq!(limited.policy(), &*rule.policy);
        // The model's policy itself, not a copy.
        assert!(Arc::ptr_eq(&limited.policy, &rule.policy));
    }

    /// Error extensions for every route: a marker value.
    struct Marked;

    impl Backends for Marked {
        fn backend(&self, _: &str) -> Option<Backend> {
            None
        }

        fn error_extensions(&self, _: &RouteId) -> Option<Arc<dyn ErrorExtensions>> {
            let mut extensions = http::Extensions::new();
            extensions.insert("marked");
            Some(Arc::new(extensions))
        }
    }

    #[tokio::test]
    async fn a_rule_without_limits_session_or_access_keeps_no_stack_and_serves_alike() {
        let mut rule = Rule::default().with_backend("unresolved");
        rule.timeouts.request = Some(std::time::Duration::from_secs(5));
        let plain = CompiledRule::compile(&in_route(&rule), 0, &Marked, None).unwrap();
        assert!(matches!(plain.stack, Stack::Plain { .. }));
        rule.policy_mut().limits.max_concurrent_requests = Some(3);
        let built = CompiledRule::compile(&in_route(&rule), 0, &Marked, None).unwrap();
        assert!(matches!(built.stack, Stack::Built(_)));
        // Both answer a backendRef that does not resolve the same way, with the route's
        // error extensions.
        for compiled in [plain, built] {
            let req = Request::get("/").body(Body::empty()).unwrap();
            let err = compiled.send(req).await.unwrap_err();
            let with = err
                .downcast_ref::<WithResponseExtensions>()
                .expect("the route's error extensions");
            assert_eq!(with.extensions().get::<&str>(), Some(&"marked"));
            assert_eq!(
                crate::error::classify(&*err),
                crate::ErrorKind::InvalidBackend
            );
        }
    }

    #[test]
    fn list_errors_nest_without_a_dot() {
        let e = nest_list_error(
            ConfigError::new("[2].requestRedirect.statusCode", "x"),
            "filters",
        );
        assert_eq!(e.field(), "filters[2].requestRedirect.statusCode");
        let e = nest_list_error(ConfigError::new("statusCode", "x"), "filters");
        assert_eq!(e.field(), "filters.statusCode");
    }
}
