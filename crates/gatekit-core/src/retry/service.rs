//! [`Retry`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::Replay;
use super::future::{ResponseFuture, Retrying};
use super::layer::Shared;
use super::{Attempt, RetryBudget, RetryLayer, RetryPolicy, RetryStats, TriedEndpoints};
use crate::{Body, BoxError};

/// A service that sends a failed request again, by its layer's policy (see the
/// [module docs](super)).
///
/// Readiness is the inner service's. Each call keeps a clone of the inner service for
/// the retries, which it drives to readiness itself before each one (under a policy
/// that keeps no copy, a clone of the one made with the `Retry`, taken only for a
/// retry). Cloning a `Retry` clones the inner service and two `Arc`s.
///
/// A policy whose classes retry only requests that never left
/// ([`RetryOn::needs_copy`](super::RetryOn::needs_copy) is false, as for gatekit's
/// default [`RetryPolicy::unsent_once`]) keeps no copy of a request: a retry sends the
/// request an attempt's error hands back (see the
/// [module docs](super#requests-that-never-left-no-copy)).
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
    spare: Arc<Spare<S>>,
}

/// What a zero-copy response future keeps, shared by every request of one [`Retry`]: a
/// clone of the inner service (made when the `Retry` was, cloned again only for a
/// retry) and the layer's state. One `Arc` increment per request, where a clone of the
/// inner service and of the layer's `Arc` would cost an increment each (or more: an
/// inner stack clones an `Arc` per layer).
#[derive(Debug)]
pub(super) struct Spare<S> {
    pub(super) svc: S,
    pub(super) shared: Arc<Shared>,
}

impl<S: Clone> Retry<S> {
    /// Wraps `inner` with the policy, budget and counters of `layer`.
    pub fn new(inner: S, layer: RetryLayer) -> Self {
        let spare = Arc::new(Spare {
            svc: inner.clone(),
            shared: layer.shared.clone(),
        });
        Self {
            inner,
            shared: layer.shared,
            spare,
        }
    }
}

impl<S> Retry<S> {
    /// The policy.
    pub fn policy(&self) -> &Arc<RetryPolicy> {
        &self.shared.policy
    }

    /// The budget, if any.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.shared.budget.as_ref()
    }

    /// The counters (shared with the layer and its other services).
    pub fn stats(&self) -> &Arc<RetryStats> {
        &self.shared.stats
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<Request<Body>> for Retry<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture<S> {
        let shared = &self.shared;
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
        shared.stats.attempt(false);
        if shared.policy.attempts == 0 {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        if !shared.copy {
            // Only requests that never left are retried, and the error hands them back:
            // nothing to keep, nothing added.
            let fut = self.inner.call(req);
            return ResponseFuture::unsent(fut, self.spare.clone());
        }

        let (mut head, body) = req.into_parts();
        let (body, replay) = if http_body::Body::is_end_stream(&body) {
            (body, None)
        } else {
            let (first, replay) = Replay::new(body, shared.policy.max_replay_body);
            (Body::new(first), Some(replay))
        };
        // The copy is taken before our extensions go in: they are added to each attempt
        // (no copy of theirs to clone on every request).
        let kept = head.clone();
        let tried = TriedEndpoints::new();
        head.extensions.insert(tried.clone());
        head.extensions.insert(Attempt(1));
        let fut = self.inner.call(Request::from_parts(head, body));
        ResponseFuture::retrying(
            fut,
            Retrying::new(self.inner.clone(), kept, tried, replay, self.shared.clone()),
        )
    }
}
