//! The gateway's registry of access policies: each named [`AccessSpec`] of a
//! translation ([`Translation::access_policies`]) built once into an
//! [`AccessPolicy`], kept across reloads while its spec is unchanged (a JWKS fetcher
//! or a verified-credential cache survives unrelated changes), and counted per
//! outcome in `gatekit_access_decisions_total{policy, outcome}`.
//!
//! [`build`] maps a spec to gatekit-auth's layers: one exhaustive `match`, so a new
//! mechanism does not compile until it is mapped. A mechanism whose layer is not
//! built yet answers an error there: the policy is absent from the registry, and the
//! rules naming it answer 500 `invalid-auth-policy` (never unguarded).
//!
//! A rebuilt policy reaches the rules through their tables: a change of an access
//! spec comes from a change of a SecurityPolicy, SecurityOverride, Secret, ConfigMap
//! or Service, each of which translates everything, so every route is compiled again
//! against the registry as it is after [`AccessRegistry::update`].
//!
//! # Counting
//!
//! Each built policy is wrapped: the rule's inner stack is entered through a marker
//! that counts `allowed` and wraps the errors that come back from inside (so that an
//! outer policy does not count an inner policy's refusal as its own); an error of the
//! policy itself is counted by its [`ErrorKind`]. A policy that refuses with a
//! response rather than an error is not counted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use gatekit_core::access::AccessPolicy;
use gatekit_core::{Backend, Body, BoxError, ConfigError, Error, ErrorKind};
use gatekit_k8s::translate::{AccessEntry, AccessSpec};
use http::{Request, Response};
use tower_service::Service;

use super::upstreams::Upstreams;
use crate::{AccessMetrics, AccessOutcome, Metrics};

/// One built policy: the spec it was built from and the result.
struct Built {
    spec: Arc<AccessSpec>,
    policy: Result<Arc<dyn AccessPolicy>, String>,
}

/// Access policies by name, kept across reloads.
#[derive(Default)]
pub(crate) struct AccessRegistry {
    built: HashMap<String, Built>,
}

impl fmt::Debug for AccessRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessRegistry")
            .field("policies", &self.built.len())
            .finish()
    }
}

impl AccessRegistry {
    /// Brings the registry in line with `entries`: a policy whose spec is unchanged
    /// (and whose upstream is not in `stale`) is kept, the others are built again,
    /// those no longer named are dropped (with their metric series). Returns a problem
    /// per policy that cannot be built.
    pub(crate) fn update(
        &mut self,
        entries: &BTreeMap<String, AccessEntry>,
        upstreams: &Upstreams,
        stale: &BTreeSet<String>,
        metrics: &Metrics,
    ) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        self.built.retain(|name, _| {
            let keep = entries.get(name).is_some_and(|e| e.spec().is_some());
            if !keep {
                metrics.forget_access_metrics(name);
            }
            keep
        });
        for (name, entry) in entries {
            let Some(spec) = entry.spec() else {
                continue;
            };
            let fresh = self.built.get(name).is_some_and(|b| {
                (Arc::ptr_eq(&b.spec, spec) || b.spec == *spec)
                    && upstream_of(spec).is_none_or(|u| !stale.contains(u))
            });
            if !fresh {
                let policy = build(spec, upstreams).map(|p| {
                    Arc::new(Counted {
                        policy: p,
                        metrics: metrics.access_metrics(name),
                    }) as Arc<dyn AccessPolicy>
                });
                self.built.insert(
                    name.clone(),
                    Built {
                        spec: Arc::clone(spec),
                        policy,
                    },
                );
            }
            if let Some(Built {
                policy: Err(why), ..
            }) = self.built.get(name)
            {
                errors.push(ConfigError::new(
                    format!("accessPolicies[{name}]"),
                    format!(
                        "{} {}: {why}; the rules naming it refuse every request",
                        entry.source().kind(),
                        entry.source().name()
                    ),
                ));
            }
        }
        errors
    }

    /// The policy called `name`, if it was built.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn AccessPolicy>> {
        self.built.get(name)?.policy.as_ref().ok().cloned()
    }

    /// Whether the policy called `name` was built.
    pub(crate) fn is_built(&self, name: &str) -> bool {
        self.built.get(name).is_some_and(|b| b.policy.is_ok())
    }
}

/// The upstream a spec sends to, if any (rebuilt with it).
fn upstream_of(spec: &AccessSpec) -> Option<&str> {
    match spec {
        AccessSpec::ExtAuth(e) => Some(&e.upstream),
        _ => None,
    }
}

/// The error of a mechanism whose gatekit-auth layer is not built yet.
fn not_built(mechanism: &str) -> String {
    format!("the {mechanism} mechanism is not built into this gatekit yet")
}

/// Builds the policy of `spec`: the one place a spec meets gatekit-auth.
fn build(spec: &AccessSpec, upstreams: &Upstreams) -> Result<Arc<dyn AccessPolicy>, String> {
    let _ = upstreams;
    match spec {
        AccessSpec::ApiKey(_) => Err(not_built("apiKeyAuth")),
        AccessSpec::Basic(_) => Err(not_built("basicAuth")),
        AccessSpec::Jwt(_) => Err(not_built("jwt")),
        AccessSpec::ExtAuth(_) => Err(not_built("extAuth")),
        AccessSpec::Authz(_) => Err(not_built("authorization")),
    }
}

/// `/config`'s `accessPolicies`: each policy's name, source, mechanism, targets,
/// size (consumers, users, providers or rules), whether it is served, and why not.
/// Never a key, password hash, token or secret: only names and counts.
pub(crate) fn dump(entries: &BTreeMap<String, AccessEntry>, registry: &AccessRegistry) -> String {
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|(name, e)| {
            let (count_name, count) = match e.spec().map(|s| &**s) {
                Some(AccessSpec::ApiKey(s)) => ("consumers", s.consumers.len()),
                Some(AccessSpec::Basic(s)) => ("users", s.users()),
                Some(AccessSpec::Jwt(s)) => ("providers", s.providers.len()),
                Some(AccessSpec::ExtAuth(_)) => ("upstreams", 1),
                Some(AccessSpec::Authz(s)) => ("rules", s.rules.len()),
                None => ("count", 0),
            };
            let source = e.source();
            let mut v = serde_json::json!({
                "name": name,
                "source": format!(
                    "{} {}/{}",
                    source.kind(),
                    source.namespace().unwrap_or_default(),
                    source.name()
                ),
                "mechanism": e.mechanism(),
                "attachedTo": e.targets(),
                "served": registry.is_built(name),
            });
            if let Some(map) = v.as_object_mut() {
                if e.spec().is_some() {
                    map.insert(count_name.to_owned(), count.into());
                }
                if let Some(AccessSpec::ExtAuth(x)) = e.spec().map(|s| &**s) {
                    map.insert("upstream".to_owned(), x.upstream.clone().into());
                }
                let problem = e.problem().map(str::to_owned).or_else(|| {
                    registry
                        .built
                        .get(name)
                        .and_then(|b| b.policy.as_ref().err().cloned())
                });
                if let Some(p) = problem {
                    map.insert("problem".to_owned(), p.into());
                }
            }
            v
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned())
}

// === counting ===

/// A built policy, counted per outcome.
struct Counted {
    policy: Arc<dyn AccessPolicy>,
    metrics: AccessMetrics,
}

impl fmt::Debug for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counted")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl AccessPolicy for Counted {
    fn layer(&self, inner: Backend) -> Backend {
        let passed = Backend::new(Passed {
            inner,
            metrics: self.metrics.clone(),
        });
        Backend::new(Count {
            guarded: self.policy.layer(passed),
            metrics: self.metrics.clone(),
        })
    }
}

/// What a rule's inner stack answered, wrapped so that the policies outside it do not
/// take it for their own refusal. The cause chain is intact: error responses find the
/// inner error through it.
#[derive(Debug)]
struct FromInside(BoxError);

impl fmt::Display for FromInside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for FromInside {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The entrance to the inner stack: counts `allowed`, marks inner errors.
#[derive(Clone, Debug)]
struct Passed {
    inner: Backend,
    metrics: AccessMetrics,
}

impl Service<Request<Body>> for Passed {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = futures::MapErr<BackendFuture>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.metrics.record(AccessOutcome::Allowed);
        futures::MapErr::new(self.inner.send(req))
    }
}

/// The policy's own errors counted by kind.
#[derive(Clone, Debug)]
struct Count {
    guarded: Backend,
    metrics: AccessMetrics,
}

impl Service<Request<Body>> for Count {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = futures::CountErr<BackendFuture>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        futures::CountErr::new(self.guarded.send(req), self.metrics.clone())
    }
}

/// The response future of a [`Backend`].
type BackendFuture = <Backend as Service<Request<Body>>>::Future;

/// The outcome of a policy's own error.
fn outcome(err: &BoxError) -> Option<AccessOutcome> {
    if err.is::<FromInside>() {
        return None;
    }
    let kind = Error::find(&**err).map(Error::kind)?;
    Some(match kind {
        ErrorKind::Unauthenticated => AccessOutcome::Unauthenticated,
        ErrorKind::Forbidden => AccessOutcome::Forbidden,
        ErrorKind::AuthUnavailable => AccessOutcome::Unavailable,
        ErrorKind::InvalidAuth => AccessOutcome::Invalid,
        _ => return None,
    })
}

/// The response futures of the counting services.
mod futures {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use gatekit_core::{Body, BoxError};
    use http::Response;

    use super::{FromInside, outcome};
    use crate::AccessMetrics;

    pin_project_lite::pin_project! {
        /// The inner stack's answer, its error marked [`FromInside`].
        pub(super) struct MapErr<F> {
            #[pin]
            inner: F,
        }
    }

    impl<F> MapErr<F> {
        pub(super) fn new(inner: F) -> Self {
            Self { inner }
        }
    }

    impl<F: Future<Output = Result<Response<Body>, BoxError>>> Future for MapErr<F> {
        type Output = Result<Response<Body>, BoxError>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.project()
                .inner
                .poll(cx)
                .map_err(|e| Box::new(FromInside(e)) as BoxError)
        }
    }

    pin_project_lite::pin_project! {
        /// The guarded stack's answer; the policy's own error counted.
        pub(super) struct CountErr<F> {
            #[pin]
            inner: F,
            metrics: AccessMetrics,
        }
    }

    impl<F> CountErr<F> {
        pub(super) fn new(inner: F, metrics: AccessMetrics) -> Self {
            Self { inner, metrics }
        }
    }

    impl<F: Future<Output = Result<Response<Body>, BoxError>>> Future for CountErr<F> {
        type Output = Result<Response<Body>, BoxError>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            let out = std::task::ready!(this.inner.poll(cx));
            if let Err(e) = &out
                && let Some(o) = outcome(e)
            {
                this.metrics.record(o);
            }
            Poll::Ready(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy refusing every request with `kind`, or letting all through.
    #[derive(Debug)]
    struct Fixed(Option<ErrorKind>);

    impl AccessPolicy for Fixed {
        fn layer(&self, inner: Backend) -> Backend {
            match self.0 {
                None => inner,
                Some(kind) => Backend::new(tower::service_fn(move |_: Request<Body>| {
                    std::future::ready(Err::<Response<Body>, BoxError>(Box::new(Error::new(kind))))
                })),
            }
        }
    }

    fn ok_backend() -> Backend {
        Backend::new(tower::service_fn(|_: Request<Body>| {
            std::future::ready(Ok::<_, BoxError>(Response::new(Body::empty())))
        }))
    }

    fn count(metrics: &Metrics, policy: &str, outcome: &str) -> u64 {
        let text = metrics.encode();
        let prefix =
            format!("gatekit_access_decisions_total{{policy=\"{policy}\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    #[tokio::test]
    async fn each_policy_counts_its_own_decision_only() {
        let metrics = Metrics::new();
        let outer = Counted {
            policy: Arc::new(Fixed(None)),
            metrics: metrics.access_metrics("outer"),
        };
        let inner = Counted {
            policy: Arc::new(Fixed(Some(ErrorKind::Forbidden))),
            metrics: metrics.access_metrics("inner"),
        };
        let stack = outer.layer(inner.layer(ok_backend()));
        let err = stack.send(Request::new(Body::empty())).await.unwrap_err();
        // The refusal still reads as the inner policy's error.
        assert_eq!(
            Error::find(&*err).map(Error::kind),
            Some(ErrorKind::Forbidden)
        );
        assert_eq!(count(&metrics, "outer", "allowed"), 1);
        assert_eq!(count(&metrics, "outer", "forbidden"), 0);
        assert_eq!(count(&metrics, "inner", "forbidden"), 1);
        assert_eq!(count(&metrics, "inner", "allowed"), 0);

        let open = Counted {
            policy: Arc::new(Fixed(None)),
            metrics: metrics.access_metrics("open"),
        };
        let refusing = Counted {
            policy: Arc::new(Fixed(Some(ErrorKind::Unauthenticated))),
            metrics: metrics.access_metrics("refusing"),
        };
        let stack = refusing.layer(open.layer(ok_backend()));
        assert!(stack.send(Request::new(Body::empty())).await.is_err());
        assert_eq!(count(&metrics, "refusing", "unauthenticated"), 1);
        assert_eq!(count(&metrics, "open", "allowed"), 0);
    }
}
