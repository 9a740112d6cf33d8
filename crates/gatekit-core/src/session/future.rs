//! The response future of [`Session`](super::Session).

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use super::layer::Shared;
use super::sticky::Sticky;
use super::token::Token;

pin_project! {
    /// The response future of [`Session`](super::Session): the inner future, then the
    /// session token on the response when it is new, moved or refreshed.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        shared: Arc<Shared>,
        sticky: Sticky,
        token: Option<Token>,
        now: u64,
        secure: bool,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        inner: F,
        shared: Arc<Shared>,
        sticky: Sticky,
        token: Option<Token>,
        now: u64,
        secure: bool,
    ) -> Self {
        Self {
            inner,
            shared,
            sticky,
            token,
            now,
            secure,
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut rsp = ready!(this.inner.poll(cx))?;
        if let Some(token) = next_token(this.shared, this.sticky, *this.token, *this.now) {
            issue(this.shared, &mut rsp, &token, *this.now, *this.secure);
        }
        Poll::Ready(Ok(rsp))
    }
}

/// The token to send back, if one is due: a new session when the request had none or
/// went elsewhere than its token said, a refresh of the last-seen time when an idle
/// timeout is configured (at most once a second), and always in header mode (the
/// client keeps sending what it last received). Nothing when no endpoint was picked
/// (a redirect, an error).
fn next_token(shared: &Shared, sticky: &Sticky, old: Option<Token>, now: u64) -> Option<Token> {
    let endpoint = sticky.served_endpoint()?;
    let backend = sticky.served_backend();
    let now32 = u32::try_from(now).unwrap_or(u32::MAX);
    match old {
        Some(t) if t.endpoint == endpoint && t.backend == backend => {
            let refresh = shared.config.idle_timeout().is_some() && t.seen < now32;
            if refresh {
                Some(Token { seen: now32, ..t })
            } else if shared.header.is_some() {
                Some(t)
            } else {
                None
            }
        }
        _ => Some(Token {
            endpoint,
            backend,
            issued: now32,
            seen: now32,
        }),
    }
}

fn issue<RB>(shared: &Shared, rsp: &mut Response<RB>, token: &Token, now: u64, secure: bool) {
    let value = token.encode(shared.salt);
    if let Some(header) = &shared.header {
        if let Ok(v) = HeaderValue::from_str(&value) {
            rsp.headers_mut().insert(header.clone(), v);
        }
        return;
    }
    let mut cookie = format!("{}={value}{}", shared.cookie, shared.attributes);
    if shared.permanent()
        && let Some(abs) = shared.config.absolute_timeout()
    {
        let age = abs
            .as_secs()
            .saturating_sub(now.saturating_sub(u64::from(token.issued)));
        let _ = write!(cookie, "; Max-Age={age}");
    }
    if secure {
        cookie.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        rsp.headers_mut().append(http::header::SET_COOKIE, v);
    }
}
