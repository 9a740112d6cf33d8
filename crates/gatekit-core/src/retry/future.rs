//! The response future of [`Retry`](super::Retry): a hand-written state machine (no
//! box), attempt → decide → backoff → readiness → attempt ...
//!
//! Two ways to have the request again for a retry: [`Retrying`] keeps a copy of its
//! head and tees its body (any policy); [`Unsent`] keeps nothing and takes the request
//! back from the error of an attempt that never sent it (a policy that retries only
//! such failures, see [`RetryOn::needs_copy`](super::RetryOn::needs_copy)).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::body::Replay;
use super::classify;
use super::layer::Shared;
use super::service::Spare;
use super::{Attempt, TriedEndpoints};
use crate::error::unsent_slot;
use crate::{Body, BoxError};

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    ///
    /// Dropping it (an outer deadline expiring, the client going away) drops the
    /// attempt in flight or the backoff timer: nothing more is sent, and the kept copy
    /// of the request body is released.
    pub struct ResponseFuture<S>
    where
        S: Service<Request<Body>>,
    {
        #[pin]
        state: State<S::Future>,
        // `None` when the policy allows no retry, and once the future completed.
        retry: Mode<S>,
    }
}

/// How a [`ResponseFuture`] would send a retry.
// The copy state is inline: boxing it would add an allocation to every request of a
// copying policy, to save a few bytes of a future that exists once per request.
#[allow(clippy::large_enum_variant)]
enum Mode<S> {
    /// It would not: the policy allows no retry, or the future completed.
    None,
    /// From its copy of the request.
    Copy(Retrying<S>),
    /// With the request an error hands back.
    Unsent(Unsent<S>),
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt in flight.
        Attempt { #[pin] fut: F },
        // Waiting before the next attempt.
        Backoff { #[pin] sleep: Sleep },
        // Waiting for the inner service to be ready for the next attempt.
        Ready,
        Done,
    }
}

/// What a retry needs: the inner service, the request's head, its body's replay
/// handle, and the layer's policy, budget and counters.
pub(super) struct Retrying<S> {
    svc: S,
    /// `None` once the last allowed retry took it.
    head: Option<Parts>,
    /// The list every attempt shares.
    tried: TriedEndpoints,
    /// `None`: the request has no body (a retry sends an empty one).
    replay: Option<Replay>,
    /// Attempts sent so far.
    attempt: u32,
    shared: Arc<Shared>,
}

/// What a zero-copy retry needs: the service's spare (a clone of the inner service,
/// the layer's policy, budget and counters: one `Arc` per request), and, once an
/// attempt failed unsent, the service the retries go to and the request that attempt's
/// error handed back.
pub(super) struct Unsent<S> {
    spare: Arc<Spare<S>>,
    /// A clone of the spare service, made for the first retry.
    svc: Option<S>,
    /// Boxed: only retries pay for it, and the future stays small for the others.
    next: Option<Box<Request<Body>>>,
    /// Attempts sent so far.
    attempt: u32,
}

impl<S: Service<Request<Body>>> ResponseFuture<S> {
    pub(super) fn passthrough(fut: S::Future) -> Self {
        Self {
            state: State::Attempt { fut },
            retry: Mode::None,
        }
    }

    pub(super) fn retrying(fut: S::Future, retry: Retrying<S>) -> Self {
        Self {
            state: State::Attempt { fut },
            retry: Mode::Copy(retry),
        }
    }

    pub(super) fn unsent(fut: S::Future, spare: Arc<Spare<S>>) -> Self {
        Self {
            state: State::Attempt { fut },
            retry: Mode::Unsent(Unsent {
                spare,
                svc: None,
                next: None,
                attempt: 1,
            }),
        }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Attempt { fut } => {
                    let result = ready!(fut.poll(cx)).map_err(Into::into);
                    let wait = match (&mut *this.retry, result) {
                        (Mode::Copy(retry), result) => retry.decide(result),
                        // Without a copy only errors are retried: a response goes back
                        // at once (the hot path: nothing more is touched or moved).
                        (Mode::Unsent(_) | Mode::None, Ok(rsp)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(rsp));
                        }
                        (Mode::Unsent(retry), Err(e)) => retry.decide(e).map_err(Err),
                        (Mode::None, Err(e)) => Err(Err(e)),
                    };
                    match wait {
                        Err(result) => {
                            this.state.set(State::Done);
                            // Releases the inner service and seals the body copy.
                            *this.retry = Mode::None;
                            return Poll::Ready(result);
                        }
                        Ok(wait) if wait.is_zero() => this.state.set(State::Ready),
                        Ok(wait) => this.state.set(State::Backoff {
                            sleep: tokio::time::sleep(wait),
                        }),
                    }
                }
                StateProj::Backoff { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    let next = match this.retry {
                        Mode::Copy(retry) => ready!(retry.svc.poll_ready(cx))
                            .map_err(Into::into)
                            .and_then(|()| retry.next_request())
                            .map(|req| retry.svc.call(req)),
                        Mode::Unsent(retry) => ready!(retry.poll_send(cx)),
                        Mode::None => unreachable!("a retry without its state"),
                    };
                    match next {
                        Ok(fut) => this.state.set(State::Attempt { fut }),
                        Err(e) => {
                            this.state.set(State::Done);
                            *this.retry = Mode::None;
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                StateProj::Done => panic!("retry ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S: Service<Request<Body>>> fmt::Debug for ResponseFuture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Attempt { .. } => "Attempt",
            State::Backoff { .. } => "Backoff",
            State::Ready => "Ready",
            State::Done => "Done",
        };
        let (mode, attempt) = match &self.retry {
            Mode::None => ("none", None),
            Mode::Copy(r) => ("copy", Some(r.attempt)),
            Mode::Unsent(r) => ("unsent", Some(r.attempt)),
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("mode", &mode)
            .field("attempt", &attempt)
            .finish_non_exhaustive()
    }
}

// === impl Retrying ===

impl<S> Retrying<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    pub(super) fn new(
        svc: S,
        head: Parts,
        tried: TriedEndpoints,
        replay: Option<Replay>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            svc,
            head: Some(head),
            tried,
            replay,
            attempt: 1,
            shared,
        }
    }

    /// After an attempt: `Ok(wait)` to retry after `wait` (the budget was charged and
    /// the failed attempt's response dropped), or `Err(result)` to return it as is.
    #[allow(clippy::result_large_err)]
    fn decide(
        &mut self,
        result: Result<Response<Body>, BoxError>,
    ) -> Result<Duration, Result<Response<Body>, BoxError>> {
        let shared = &*self.shared;
        let policy = &*shared.policy;
        let retriable = match &result {
            Ok(rsp) => classify::response_is_retriable(&policy.on, rsp),
            Err(e) => classify::error_is_retriable(&policy.on, &**e),
        };
        if !retriable || self.attempt > policy.attempts {
            return Err(result);
        }
        if self.replay.as_ref().is_some_and(|r| !r.can_replay()) {
            shared.stats.replay_overflow_once();
            return Err(result);
        }
        let retry_after = result.as_ref().ok().and_then(classify::retry_after);
        if retry_after.is_some_and(|after| after > policy.max_retry_after) {
            return Err(result);
        }
        if let Some(budget) = &shared.budget
            && !budget.withdraw()
        {
            shared.stats.budget_exhausted_once();
            return Err(result);
        }
        drop(result);
        let backoff = classify::backoff_delay(&policy.backoff, self.attempt);
        Ok(backoff.max(retry_after.unwrap_or_default()))
    }

    /// The next attempt's request: the kept head (moved for the last allowed retry)
    /// with its `Attempt` and the shared `TriedEndpoints`, and a replay of the body.
    fn next_request(&mut self) -> Result<Request<Body>, BoxError> {
        self.attempt = self.attempt.saturating_add(1);
        let head = if self.attempt > self.shared.policy.attempts {
            self.head.take()
        } else {
            self.head.clone()
        };
        let Some(mut head) = head else {
            return Err("retry: the request head is gone".into());
        };
        head.extensions.insert(self.tried.clone());
        head.extensions.insert(Attempt(self.attempt));
        let body = match &self.replay {
            Some(replay) => Body::new(replay.next()),
            None => Body::empty(),
        };
        self.shared.stats.attempt(true);
        Ok(Request::from_parts(head, body))
    }
}

// === impl Unsent ===

impl<S> Unsent<S> {
    /// After an attempt failed with `err`: `Ok(wait)` to retry after `wait` (the budget
    /// was charged, the request taken back from the error, the error dropped), or
    /// `Err(err)` to return it as is. (Responses are never retried: the policy names no
    /// response class.)
    fn decide(&mut self, err: BoxError) -> Result<Duration, BoxError> {
        let shared = &*self.spare.shared;
        let policy = &*shared.policy;
        let req =
            if self.attempt > policy.attempts || !classify::error_is_retriable(&policy.on, &*err) {
                None
            } else {
                match unsent_slot::<Body>(&*err) {
                    None => {
                        // Retriable, but nothing to send again: this path keeps no copy.
                        shared.stats.unreturned_once();
                        None
                    }
                    Some(slot) => {
                        if let Some(budget) = &shared.budget
                            && !budget.withdraw()
                        {
                            // Returned as it is, the request still in it.
                            shared.stats.budget_exhausted_once();
                            None
                        } else {
                            slot.lock().take()
                        }
                    }
                }
            };
        let Some(req) = req else {
            return Err(err);
        };
        drop(err);
        self.next = Some(Box::new(req));
        Ok(classify::backoff_delay(&policy.backoff, self.attempt))
    }

    /// Drives the retries' service (a clone of the spare, made now for the first
    /// retry) to readiness and sends the next attempt: the request handed back, with its
    /// next `Attempt` (and whatever the layers below put in it, such as the
    /// `TriedEndpoints` a balancer recorded the failed endpoint in).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<S::Future, BoxError>>
    where
        S: Service<Request<Body>> + Clone,
        S::Error: Into<BoxError>,
    {
        let svc = self.svc.get_or_insert_with(|| self.spare.svc.clone());
        if let Err(e) = ready!(svc.poll_ready(cx)) {
            return Poll::Ready(Err(e.into()));
        }
        let Some(mut req) = self.next.take() else {
            return Poll::Ready(Err("retry: the request is gone".into()));
        };
        self.attempt = self.attempt.saturating_add(1);
        req.extensions_mut().insert(Attempt(self.attempt));
        self.spare.shared.stats.attempt(true);
        Poll::Ready(Ok(svc.call(*req)))
    }
}
