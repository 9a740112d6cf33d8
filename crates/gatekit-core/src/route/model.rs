//! gatekit's route model: plain data with Gateway API HTTPRoute semantics.
//!
//! Providers (Kubernetes, files, or code) build these values; [`RouteTable::build`]
//! validates and compiles them. Nothing here is on the request path.
//!
//! [`RouteTable::build`]: crate::RouteTable::build

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::small_list::SmallList;

/// Identifies a route: its kind, namespace and name (for Kubernetes routes) or any
/// stable name a user picks.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    namespace: Arc<str>,
    name: Arc<str>,
}

impl RouteId {
    /// A route id from a namespace and a name.
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A route: hostnames it serves and its rules.
///
/// Built with its `with_*` setters it reads like the HTTPRoute it stands for:
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
/// use gatekit_core::client::Client;
/// use gatekit_core::route::{BackendRef, Filter, HeaderModifier, Match, Route, RouteId, Rule, Timeouts};
/// use gatekit_core::{Backend, RouteTable};
///
/// // hostnames: [api.example.com]
/// // rules:
/// // - matches: [{path: {type: PathPrefix, value: /v2}, headers: [{name: x-canary, value: "true"}]}]
/// //   backendRefs: [{name: v2}]
/// // - matches: [{path: {type: PathPrefix, value: /}}]
/// //   filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-via, value: gatekit}]}}]
/// //   backendRefs: [{name: v1, weight: 90}, {name: v2, weight: 10}]
/// //   timeouts: {request: 10s}
/// let route = Route::new(RouteId::new("default", "api"))
///     .with_hostname("api.example.com")
///     .with_rule(
///         Rule::new()
///             .with_match(Match::prefix("/v2").with_header("x-canary", "true"))
///             .with_backend("v2"),
///     )
///     .with_rule(
///         Rule::new()
///             .with_match(Match::prefix("/"))
///             .with_filter(Filter::RequestHeaderModifier(HeaderModifier::new().with_set("x-via", "gatekit")))
///             .with_backend(BackendRef::new("v1", 90))
///             .with_backend(BackendRef::new("v2", 10))
///             .with_timeouts(Timeouts::new().with_request(Duration::from_secs(10))),
///     );
/// assert_eq!(route.rules[1].backends[1].weight, 10);
///
/// let client = Client::default();
/// let backends = HashMap::from([
///     ("v1".to_owned(), Backend::single(&client, "127.0.0.1:8001".parse().unwrap())),
///     ("v2".to_owned(), Backend::single(&client, "127.0.0.1:8002".parse().unwrap())),
/// ]);
/// let table = RouteTable::build(vec![route], &backends).unwrap();
/// # let _ = table;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Route {
    /// Identity, also the last precedence tie-breaker (namespace/name, alphabetical).
    pub id: RouteId,
    /// Hostnames (exact like `api.example.com` or wildcard like `*.example.com`), already
    /// intersected with the listener's. Empty matches every host. One is kept inline.
    pub hostnames: SmallList<String>,
    /// Creation time (for example Unix seconds of `metadata.creationTimestamp`); older
    /// routes win precedence ties.
    pub created: i64,
    /// Rules, in order; earlier rules win ties within the route. One is kept inline.
    pub rules: SmallList<Rule>,
}

impl Route {
    /// An empty route with this id, every host, created at time 0.
    pub fn new(id: RouteId) -> Self {
        Self {
            id,
            hostnames: SmallList::default(),
            created: 0,
            rules: SmallList::default(),
        }
    }

    /// Adds a hostname (HTTPRoute `hostnames`): exact like `api.example.com` or wildcard
    /// like `*.example.com`.
    #[must_use]
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostnames.push(hostname.into());
        self
    }

    /// Sets the creation time (older routes win precedence ties).
    #[must_use]
    pub fn with_created(mut self, created: i64) -> Self {
        self.created = created;
        self
    }

    /// Adds a rule after the ones already there (HTTPRoute `rules`).
    #[must_use]
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
}

/// One rule of a route: when it matches, what filters run, where requests go.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Rule {
    /// Optional rule name (Gateway API `name`), for status and metrics.
    pub name: Option<String>,
    /// The rule matches when any of these matches; empty means one match without
    /// conditions (every request, ranked after every path condition). One is kept
    /// inline.
    pub matches: SmallList<Match>,
    /// Filters applied to every request the rule takes, in order (most rules have
    /// none: a boxed slice, two words).
    pub filters: Box<[Filter]>,
    /// Weighted backends. A rule with none (and no redirect) answers 500. One is kept
    /// inline.
    pub backends: SmallList<BackendRef>,
    /// Timeouts, enforced by [`TimeoutLayer`](crate::timeout::TimeoutLayer)s in the
    /// rule's stack; `backend_request` must not exceed `request`.
    pub timeouts: Timeouts,
    /// Traffic policy of the rule: retries, rate limits, request limits. Shared: the
    /// empty policy most rules have is one value for all of them (see
    /// [`RulePolicy::none`]), and the compiled rule keeps this one. Change it with
    /// [`policy_mut`](Self::policy_mut).
    pub policy: Arc<RulePolicy>,
}

impl Default for Rule {
    fn default() -> Self {
        Self {
            name: None,
            matches: SmallList::default(),
            filters: Box::default(),
            backends: SmallList::default(),
            timeouts: Timeouts::default(),
            policy: RulePolicy::none(),
        }
    }
}

impl Rule {
    /// A rule without matches (every request), filters or backends.
    pub fn new() -> Self {
        Self::default()
    }

    /// The rule's policy, to change (copied first if it is shared, as the empty one is).
    pub fn policy_mut(&mut self) -> &mut RulePolicy {
        Arc::make_mut(&mut self.policy)
    }

    /// Changes the rule's policy with `f`; a policy left empty is kept as the shared
    /// [`RulePolicy::none`] (no allocation held for it).
    pub fn update_policy(&mut self, f: impl FnOnce(&mut RulePolicy)) {
        f(Arc::make_mut(&mut self.policy));
        if *self.policy == RulePolicy::default() {
            self.policy = RulePolicy::none();
        }
    }

    /// Sets the rule's policy; an empty one is kept as the shared [`RulePolicy::none`].
    #[must_use]
    pub fn with_policy(mut self, policy: RulePolicy) -> Self {
        self.policy = if policy == RulePolicy::default() {
            RulePolicy::none()
        } else {
            Arc::new(policy)
        };
        self
    }

    /// Sets the rule's name (Gateway API `name`).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a match (`matches`); the rule takes a request when any of them matches.
    #[must_use]
    pub fn with_match(mut self, m: Match) -> Self {
        self.matches.push(m);
        self
    }

    /// Adds a filter (`filters`), run after the ones already there.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        push(&mut self.filters, filter);
        self
    }

    /// Adds a backend (`backendRefs`): a [`BackendRef`], or a backend name for weight 1.
    #[must_use]
    pub fn with_backend(mut self, backend: impl Into<BackendRef>) -> Self {
        self.backends.push(backend.into());
        self
    }

    /// Sets the timeouts (`timeouts`).
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets how failed attempts are retried (`retry`).
    #[must_use]
    pub fn with_retry(mut self, retry: crate::retry::RetryPolicy) -> Self {
        self.policy_mut().retry = Some(retry);
        self
    }
}

/// A rule's traffic policy (HTTPRoute `retry`, gatekit's policies). Empty: none.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RulePolicy {
    /// How failed attempts are retried; `None`: never.
    pub retry: Option<crate::retry::RetryPolicy>,
    /// Rate limits; a request must pass every one.
    pub rate_limits: Vec<crate::ratelimit::RateLimitConfig>,
    /// Concurrency and body-size limits.
    pub limits: crate::limit::RequestLimits,
    /// Session persistence for the rule (HTTPRoute `sessionPersistence`): sessions stick
    /// to a backendRef and an endpoint. Takes precedence over the backendRefs' own.
    pub session: Option<crate::session::SessionPersistence>,
    /// Access policies guarding the rule, by name, the first outermost: each is looked
    /// up through [`Backends::access_policy`](crate::Backends::access_policy) when the
    /// table is built, and a request must pass every one. See [`crate::access`].
    pub access: Vec<String>,
}

impl RulePolicy {
    /// The empty policy, shared: one allocation for every rule without a policy.
    pub fn none() -> Arc<RulePolicy> {
        static NONE: std::sync::LazyLock<Arc<RulePolicy>> =
            std::sync::LazyLock::new(|| Arc::new(RulePolicy::default()));
        Arc::clone(&NONE)
    }
}

/// One match: every condition given must hold (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Match {
    /// Path condition; `None` matches every path like prefix `/` but ranks after every
    /// path condition, regexes included (a GRPCRoute match without a method ranks after
    /// one with a method). HTTPRoute's default is an explicit prefix `/`.
    pub path: Option<PathMatch>,
    /// Header conditions; names compare case-insensitively. (Most matches have none:
    /// a boxed slice, two words.)
    pub headers: Box<[HeaderMatch]>,
    /// Query parameter conditions; names compare exactly (case-sensitively).
    pub query: Box<[QueryMatch]>,
    /// Method condition.
    pub method: Option<http::Method>,
}

impl Match {
    /// A match on a path prefix (`path: {type: PathPrefix, value}`), whole segments only.
    pub fn prefix(path: impl Into<String>) -> Self {
        Self::default().with_path(PathMatch::Prefix(path.into()))
    }

    /// A match on the exact path (`path: {type: Exact, value}`).
    pub fn exact(path: impl Into<String>) -> Self {
        Self::default().with_path(PathMatch::Exact(path.into()))
    }

    /// A match on the whole path against a regular expression
    /// (`path: {type: RegularExpression, value}`).
    pub fn regex(pattern: impl Into<String>) -> Self {
        Self::default().with_path(PathMatch::Regex(pattern.into()))
    }

    /// Sets the path condition.
    #[must_use]
    pub fn with_path(mut self, path: PathMatch) -> Self {
        self.path = Some(path);
        self
    }

    /// Adds a header condition with an exact value (`headers: [{name, value}]`).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        push(
            &mut self.headers,
            HeaderMatch {
                name: name.into(),
                value: StringMatch::Exact(value.into()),
            },
        );
        self
    }

    /// Adds a header condition with any [`StringMatch`].
    #[must_use]
    pub fn with_header_match(mut self, name: impl Into<String>, value: StringMatch) -> Self {
        push(
            &mut self.headers,
            HeaderMatch {
                name: name.into(),
                value,
            },
        );
        self
    }

    /// Adds a query parameter condition with an exact value (`queryParams: [{name, value}]`).
    #[must_use]
    pub fn with_query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        push(
            &mut self.query,
            QueryMatch {
                name: name.into(),
                value: StringMatch::Exact(value.into()),
            },
        );
        self
    }

    /// Adds a query parameter condition with any [`StringMatch`].
    #[must_use]
    pub fn with_query_match(mut self, name: impl Into<String>, value: StringMatch) -> Self {
        push(
            &mut self.query,
            QueryMatch {
                name: name.into(),
                value,
            },
        );
        self
    }

    /// Sets the method condition (`method`).
    #[must_use]
    pub fn with_method(mut self, method: http::Method) -> Self {
        self.method = Some(method);
        self
    }
}

/// How a request path is matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// The whole path equals this value.
    Exact(String),
    /// The path starts with this value on whole segments: `/foo` matches `/foo` and
    /// `/foo/bar`, not `/foobar`. A trailing `/` in the value is ignored.
    Prefix(String),
    /// The whole path matches this regular expression (Rust `regex` syntax, anchored).
    Regex(String),
}

/// How a header or query value is matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringMatch {
    /// Equal to this value.
    Exact(String),
    /// The whole value matches this regular expression (anchored).
    Regex(String),
}

/// A header condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Header name, case-insensitive.
    pub name: String,
    /// Value condition.
    pub value: StringMatch,
}

/// A query parameter condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryMatch {
    /// Parameter name, case-sensitive.
    pub name: String,
    /// Value condition (on the first occurrence of the parameter).
    pub value: StringMatch,
}

/// A weighted reference to a backend, by name.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackendRef {
    /// The backend's name, looked up through [`Backends`](crate::Backends) when the table
    /// is built. A name that does not resolve makes this share of traffic answer 500.
    pub name: String,
    /// Relative weight; 0 means never chosen.
    pub weight: u32,
    /// Filters applied only when this backend is chosen, after the rule's filters
    /// (most backendRefs have none: a boxed slice, two words).
    pub filters: Box<[Filter]>,
    /// The circuit breaker around this backendRef (from the backend's policy). Boxed,
    /// as the two below: most backendRefs have none, and inline they would triple the
    /// size of every one.
    pub breaker: Option<Box<crate::breaker::CircuitBreakerConfig>>,
    /// The retry budget of the backend (from the backend's policy); retries to it
    /// without one are bounded by attempts alone.
    pub retry_budget: Option<Box<crate::retry::RetryBudgetConfig>>,
    /// Session persistence of the backend (from its `XBackendTrafficPolicy`): sessions
    /// stick to an endpoint. Not used when the rule has its own.
    pub session: Option<Box<crate::session::SessionPersistence>>,
}

impl BackendRef {
    /// A reference to `name` with `weight` and no filters.
    pub fn new(name: impl Into<String>, weight: u32) -> Self {
        Self {
            name: name.into(),
            weight,
            filters: Box::default(),
            breaker: None,
            retry_budget: None,
            session: None,
        }
    }

    /// Adds a filter run only when this backend is chosen (`backendRefs[].filters`).
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        push(&mut self.filters, filter);
        self
    }
}

/// Appends `item` to a boxed slice (built once, so its one reallocation per item is
/// paid when the model is made, never when it is kept).
fn push<T>(list: &mut Box<[T]>, item: T) {
    let mut items = std::mem::take(list).into_vec();
    items.push(item);
    *list = items.into_boxed_slice();
}

impl From<&str> for BackendRef {
    /// A reference to the backend of this name with weight 1 (the Gateway API default).
    fn from(name: &str) -> Self {
        Self::new(name, 1)
    }
}

impl From<String> for BackendRef {
    /// A reference to the backend of this name with weight 1 (the Gateway API default).
    fn from(name: String) -> Self {
        Self::new(name, 1)
    }
}

/// Per-rule timeouts (Gateway API `HTTPRouteTimeouts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Whole-request timeout, from the router's dispatch to the response head (504
    /// `request-timeout`). `None` or zero: none.
    pub request: Option<Duration>,
    /// Timeout of each attempt to a backend, to its response head (504
    /// `backend-request-timeout`). `None` or zero: none.
    pub backend_request: Option<Duration>,
}

impl Timeouts {
    /// No timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the whole-request timeout (`timeouts.request`).
    #[must_use]
    pub fn with_request(mut self, timeout: Duration) -> Self {
        self.request = Some(timeout);
        self
    }

    /// Sets the timeout of each backend attempt (`timeouts.backendRequest`).
    #[must_use]
    pub fn with_backend_request(mut self, timeout: Duration) -> Self {
        self.backend_request = Some(timeout);
        self
    }
}

/// An HTTP filter, as the Gateway API names them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filter {
    /// Changes request headers before the backend sees them.
    RequestHeaderModifier(HeaderModifier),
    /// Changes response headers before the client sees them.
    ResponseHeaderModifier(HeaderModifier),
    /// Answers with a redirect; no backend is called.
    RequestRedirect(Redirect),
    /// Rewrites the host and/or path sent to the backend.
    UrlRewrite(UrlRewrite),
    /// Sends a copy of the request to another backend, fire and forget.
    RequestMirror(Mirror),
    /// Answers CORS preflights and adds CORS headers to responses (Gateway API
    /// `HTTPCORSFilter`).
    Cors(CorsPolicy),
}

/// Header changes: set (replace), add (append), remove. Names are case-insensitive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderModifier {
    /// Headers set, replacing any existing values.
    pub set: Vec<(String, String)>,
    /// Headers added, keeping existing values.
    pub add: Vec<(String, String)>,
    /// Header names removed.
    pub remove: Vec<String>,
}

impl HeaderModifier {
    /// Changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a header, replacing its values (`set: [{name, value}]`).
    #[must_use]
    pub fn with_set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.push((name.into(), value.into()));
        self
    }

    /// Adds a header value, keeping existing ones (`add: [{name, value}]`).
    #[must_use]
    pub fn with_add(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.add.push((name.into(), value.into()));
        self
    }

    /// Removes a header (`remove: [name]`).
    #[must_use]
    pub fn with_remove(mut self, name: impl Into<String>) -> Self {
        self.remove.push(name.into());
        self
    }
}

/// How a redirect or rewrite changes the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// Replace the whole path with this value.
    ReplaceFullPath(String),
    /// Replace the part matched by the rule's path prefix with this value.
    ReplacePrefixMatch(String),
}

/// A redirect answer (Gateway API `HTTPRequestRedirectFilter`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Redirect {
    /// New scheme (`http` or `https`); unchanged when `None`.
    pub scheme: Option<String>,
    /// New host name; unchanged when `None`.
    pub hostname: Option<String>,
    /// New port; when `None` the spec's default-port rules apply.
    pub port: Option<u16>,
    /// New path; unchanged when `None`.
    pub path: Option<PathModifier>,
    /// Status code: 301, 302 (the default), 303, 307 or 308.
    pub status: u16,
}

impl Default for Redirect {
    fn default() -> Self {
        Self {
            scheme: None,
            hostname: None,
            port: None,
            path: None,
            status: 302,
        }
    }
}

impl Redirect {
    /// A 302 redirect to the same scheme, host, port and path (set what changes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the scheme (`scheme`).
    #[must_use]
    pub fn with_scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = Some(scheme.into());
        self
    }

    /// Sets the host name (`hostname`).
    #[must_use]
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Sets the port (`port`).
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Sets the path change (`path`).
    #[must_use]
    pub fn with_path(mut self, path: PathModifier) -> Self {
        self.path = Some(path);
        self
    }

    /// Sets the status code (`statusCode`): 301, 302, 303, 307 or 308.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

/// A rewrite of what the backend receives (Gateway API `HTTPURLRewriteFilter`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UrlRewrite {
    /// New Host header value.
    pub hostname: Option<String>,
    /// New path.
    pub path: Option<PathModifier>,
}

impl UrlRewrite {
    /// Rewrites nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the Host header value sent to the backend (`hostname`).
    #[must_use]
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Sets the path change (`path`).
    #[must_use]
    pub fn with_path(mut self, path: PathModifier) -> Self {
        self.path = Some(path);
        self
    }
}

/// A request mirror (Gateway API `HTTPRequestMirrorFilter`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mirror {
    /// The backend that receives copies, by name.
    pub backend: String,
    /// Share of requests mirrored, as numerator/denominator; `None` mirrors all.
    pub fraction: Option<(u32, u32)>,
}

impl Mirror {
    /// Mirrors every request to `backend`.
    pub fn new(backend: impl Into<String>) -> Self {
        Self {
            backend: backend.into(),
            fraction: None,
        }
    }
}

/// A CORS policy (Gateway API `HTTPCORSFilter`); see [`filter`](crate::filter) for how
/// it is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorsPolicy {
    /// Allowed origins: `*` (any), or `<scheme>://<host>[:<port>]` with scheme `http` or
    /// `https`, the port defaulting to the scheme's; the host may be `*` (any host) or
    /// start with `*.` (any number of labels to its left).
    pub allow_origins: Vec<String>,
    /// Whether `Access-Control-Allow-Credentials: true` is sent.
    pub allow_credentials: bool,
    /// Methods for `Access-Control-Allow-Methods` (case-sensitive); `*` allows every
    /// method.
    pub allow_methods: Vec<String>,
    /// Request header names for `Access-Control-Allow-Headers`; `*` allows every header.
    pub allow_headers: Vec<String>,
    /// Response header names for `Access-Control-Expose-Headers`; `*` exposes every
    /// header (not on credentialed responses).
    pub expose_headers: Vec<String>,
    /// Seconds a preflight answer may be cached (`Access-Control-Max-Age`); `None`: the
    /// spec's default of 5.
    pub max_age: Option<u32>,
}
