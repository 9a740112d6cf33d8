//! Response bodies read from a reusable upstream connection, which goes back to its owner
//! (a connection pool) when the body ends.
//!
//! The upstream client fills these in through two traits, [`Recycle`] and [`ConnBody`],
//! so [`Body`] names no client type. Neither costs an allocation per response: the owner
//! is an `Arc` the client already holds, coerced to a trait object, and a [`ConnBody`]
//! lives in its connection's own box, which is reused from one response to the next.
//!
//! On an error, or when dropped before the end, the connection is closed (its state is
//! unknown or it still has response bytes in flight).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::Body;
use crate::BoxError;

/// The owner of reusable connections of type `C`: takes one back when the response read
/// from it has ended cleanly.
pub(crate) trait Recycle<C>: Send + Sync + 'static {
    /// Takes back `conn`, whose response has ended.
    fn recycle(self: Arc<Self>, conn: C);
}

/// A response body read straight from a connection that sits in a box of its own.
pub(crate) trait ConnBody: Send + 'static {
    /// Reads the next frame, as [`http_body::Body::poll_frame`]. After an error the
    /// connection is dropped (closed) without another poll.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>;

    /// Whether the body has ended, as [`http_body::Body::is_end_stream`].
    fn is_end_stream(&self) -> bool;

    /// As [`http_body::Body::size_hint`].
    fn size_hint(&self) -> SizeHint;

    /// Called once when the body has ended: returns the connection to its owner if it
    /// can take another request, else closes it.
    fn release(self: Box<Self>);
}

/// The sender of a hyper HTTP/1.1 connection.
type Sender = http1::SendRequest<Body>;

/// A response body that returns its connection to its owner at end of stream.
pub(crate) struct Pooled {
    kind: Kind,
}

enum Kind {
    /// From a hyper connection: the sender goes back at the end.
    Hyper {
        inner: Incoming,
        conn: Option<(Sender, Arc<dyn Recycle<Sender>>)>,
    },
    /// Read by the client's own codec.
    Reading(Box<dyn ConnBody>),
    /// Failed: the error is reported on the next poll (see `poll_frame`).
    Failed(Option<BoxError>),
    /// Ended; the connection has been released.
    Done,
}

impl Pooled {
    /// A hyper response body; at its end, `tx` goes back to `owner`.
    pub(crate) fn hyper(inner: Incoming, tx: Sender, owner: Arc<dyn Recycle<Sender>>) -> Self {
        Self {
            kind: Kind::Hyper {
                inner,
                conn: Some((tx, owner)),
            },
        }
    }

    /// A body read by `conn`, which is released at its end.
    pub(crate) fn conn(conn: Box<dyn ConnBody>) -> Self {
        Self {
            kind: Kind::Reading(conn),
        }
    }

    fn release(&mut self) {
        if let Kind::Reading(conn) = std::mem::replace(&mut self.kind, Kind::Done) {
            conn.release();
        }
    }
}

impl fmt::Debug for Pooled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled").finish_non_exhaustive()
    }
}

impl http_body::Body for Pooled {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Hyper { inner, conn } => match ready!(Pin::new(&mut *inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if inner.is_end_stream()
                        && let Some((tx, owner)) = conn.take()
                    {
                        owner.recycle(tx);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Some(Err(e)) => {
                    *conn = None;
                    Poll::Ready(Some(Err(e.into())))
                }
                None => {
                    if let Some((tx, owner)) = conn.take() {
                        owner.recycle(tx);
                    }
                    Poll::Ready(None)
                }
            },
            Kind::Reading(conn) => match ready!(conn.poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if conn.is_end_stream() {
                        // The last bytes: the connection goes back before the consumer
                        // even asks for the end of the stream.
                        this.release();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Some(Err(error)) => {
                    // Closes the connection and reports the error on the next poll,
                    // after yielding once: the consumer (a server writing the response)
                    // then flushes what it has before it sees the error, as it would
                    // with a body fed by another task. A client thus gets the status and
                    // the bytes that arrived, then the abort.
                    this.kind = Kind::Failed(Some(error));
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => {
                    this.release();
                    Poll::Ready(None)
                }
            },
            Kind::Failed(error) => Poll::Ready(error.take().map(Err)),
            Kind::Done => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Hyper { inner, .. } => inner.is_end_stream(),
            Kind::Reading(conn) => conn.is_end_stream(),
            Kind::Failed(_) => false,
            Kind::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Hyper { inner, .. } => inner.size_hint(),
            Kind::Reading(conn) => conn.size_hint(),
            Kind::Failed(_) => SizeHint::default(),
            Kind::Done => SizeHint::with_exact(0),
        }
    }
}
