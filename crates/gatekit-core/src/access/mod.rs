//! Access policies: where authentication and authorization plug into a rule's stack.
//!
//! gatekit-core checks no credentials itself. A route rule names the access policies
//! that guard it ([`RulePolicy::access`](crate::route::RulePolicy::access)); when its
//! table is built, each name is looked up through [`Backends::access_policy`] and the
//! policies found wrap the rule's stack, the first named outermost, before its rate
//! limits (so that a limit can be keyed by the [`Identity`] a policy established). The
//! layers themselves (API keys, basic auth, JWT, external authorization, client address
//! lists) live in `gatekit-auth`; any [`AccessPolicy`] will do.
//!
//! Two rules hold whatever the policy:
//! - a name that resolves to nothing refuses every request of the rule
//!   ([`ErrorKind::InvalidAuth`], 500): a rule that asked for a check never serves
//!   without it;
//! - on a rule with a CORS filter, a CORS preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) bypasses the access policies: browsers send
//!   preflights without credentials, and the CORS filter answers them.
//!
//! Refusals are [`Error`]s of kind [`ErrorKind::Unauthenticated`] (401, with the
//! policy's challenge in `WWW-Authenticate` through [`Error::with_header`]),
//! [`ErrorKind::Forbidden`] (403) or [`ErrorKind::AuthUnavailable`] (503), turned into
//! responses by [`error_response`](crate::error_response) like every other error.
//!
//! [`KeyDigest`] is the one form API keys are held in, here because both the
//! Kubernetes translation (which digests keys as it reads them from Secrets) and the
//! `gatekit-auth` layer (which looks request keys up by digest) use it.
//!
//! [`Backends::access_policy`]: crate::Backends::access_policy

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::backend::ResponseFuture;
use crate::route::conditions::preflight_method;
use crate::{Backend, Body, BoxError, Error, ErrorKind};

mod digest;
#[cfg(test)]
mod tests;

pub use self::digest::KeyDigest;

/// A check that guards route rules: wraps a rule's stack in its own layer.
///
/// Implementations are shared by every rule that names the policy, and built once per
/// configuration of the policy; [`layer`](Self::layer) runs once per rule per table
/// build, not per request.
pub trait AccessPolicy: Send + Sync + fmt::Debug {
    /// `inner` guarded by this policy: requests that pass reach `inner` (possibly with
    /// an [`Identity`] and headers added), the others end in an [`Error`].
    fn layer(&self, inner: Backend) -> Backend;
}

/// Who a request was authenticated as, put into the request's extensions by the access
/// policy that authenticated it. Later layers read it: a rate limit keyed by identity,
/// the access log, a header to the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    subject: Arc<str>,
    method: &'static str,
}

impl Identity {
    /// `subject` (an API key's consumer, a user name, a token's `sub`) authenticated by
    /// `method` (`"api-key"`, `"basic"`, `"jwt"`, ...).
    pub fn new(method: &'static str, subject: impl Into<Arc<str>>) -> Self {
        Self {
            subject: subject.into(),
            method,
        }
    }

    /// The authenticated subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The mechanism that authenticated it.
    pub fn method(&self) -> &'static str {
        self.method
    }
}

/// Builds a rule's guarded stack: `inner` wrapped by `policies`, the first outermost.
/// `None` among them (a name that resolved to nothing) makes the rule refuse everything.
/// With `cors`, preflights go to `inner` unguarded.
pub(crate) fn guard(
    inner: Backend,
    policies: Vec<Option<Arc<dyn AccessPolicy>>>,
    cors: bool,
) -> Backend {
    if policies.is_empty() {
        return inner;
    }
    let guarded = if policies.iter().any(Option::is_none) {
        Backend::new(Refuse)
    } else {
        policies
            .into_iter()
            .rev()
            .flatten()
            .fold(inner.clone(), |inner, policy| policy.layer(inner))
    };
    if cors {
        Backend::new(PreflightBypass {
            guarded,
            open: inner,
        })
    } else {
        guarded
    }
}

/// Refuses every request: the rule's access policy could not be built.
#[derive(Clone, Copy, Debug)]
struct Refuse;

impl Service<Request<Body>> for Refuse {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        std::future::ready(Err(Box::new(Error::new(ErrorKind::InvalidAuth))))
    }
}

/// Sends CORS preflights around the access policies, everything else through them.
#[derive(Clone, Debug)]
struct PreflightBypass {
    guarded: Backend,
    open: Backend,
}

impl Service<Request<Body>> for PreflightBypass {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture {
        if preflight_method(req.method(), req.headers()).is_some() {
            self.open.send(req)
        } else {
            self.guarded.send(req)
        }
    }
}
