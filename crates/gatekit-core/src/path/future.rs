//! The response future of [`NormalizePath`](super::NormalizePath).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

pin_project! {
    /// The response future of [`NormalizePath`](super::NormalizePath): the inner service's
    /// future, or an immediate refusal (400 or 414, empty body). The server's
    /// per-connection service answers its own refusals (a fail-closed client address
    /// detection's 403) with it too.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] fut: F },
        Refused { status: StatusCode, reason: &'static str, close: bool },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(fut: F) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    pub(crate) fn refused(status: StatusCode, reason: &'static str) -> Self {
        Self {
            state: State::Refused {
                status,
                reason,
                close: false,
            },
        }
    }

    /// A refusal that also asks the connection to close (`Connection: close`; HTTP/1 only).
    pub(super) fn closing(mut self, close: bool) -> Self {
        if let State::Refused { close: c, .. } = &mut self.state {
            *c = close;
        }
        self
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => fut.poll(cx),
            StateProj::Refused {
                status,
                reason,
                close,
            } => {
                let mut rsp = Response::new(B::default());
                *rsp.status_mut() = *status;
                rsp.headers_mut().insert(
                    http::HeaderName::from_static("x-gatekit-error"),
                    HeaderValue::from_static(reason),
                );
                if *close {
                    rsp.headers_mut()
                        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                }
                Poll::Ready(Ok(rsp))
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
