//! The response future of [`ConcurrencyLimit`](super::ConcurrencyLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use super::body::InFlightBody;
use super::in_flight::Slot;
use crate::{Body, BoxError, Error, ErrorKind};

pin_project! {
    /// The response future of [`ConcurrencyLimit`](super::ConcurrencyLimit): the inner
    /// future and the request's slot, or a rejection that is ready at once.
    ///
    /// The slot moves into the response body when the response head arrives (or is
    /// released then, for a body that is already complete); it is released if the
    /// inner service fails or this future is dropped.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Admitted {
            #[pin]
            inner: F,
            slot: Option<Slot>,
        },
        Rejected,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) const fn admitted(inner: F, slot: Slot) -> Self {
        Self {
            state: State::Admitted {
                inner,
                slot: Some(slot),
            },
        }
    }

    pub(super) const fn rejected() -> Self {
        Self {
            state: State::Rejected,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Rejected => Poll::Ready(Err(Error::new(ErrorKind::Overloaded).into())),
            StateProj::Admitted { inner, slot } => {
                let rsp = ready!(inner.poll(cx));
                let slot = slot.take();
                let rsp = rsp.map_err(Into::into)?;
                Poll::Ready(Ok(match slot {
                    // A body that has nothing more to send frees the slot now, and
                    // needs no wrapper (no allocation).
                    Some(slot) if !http_body::Body::is_end_stream(rsp.body()) => {
                        rsp.map(|body| Body::new(InFlightBody::new(body, slot)))
                    }
                    _ => rsp.map(Body::new),
                }))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Admitted { .. } => "Admitted",
            State::Rejected => "Rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
