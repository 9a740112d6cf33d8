//! The body type that flows through gatekit services.

use std::any::Any;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::BoxError;
use crate::exchange::{Direction, Observed};

mod pooled;

pub(crate) use self::pooled::{ConnBody, Pooled, Recycle};

/// A streaming HTTP body: empty, a single buffer, a body received by hyper, or any other
/// body (boxed).
///
/// Bodies received from hyper (`hyper::body::Incoming`) and fixed buffers are carried
/// without a heap allocation; only foreign body types are boxed. This is the request and
/// response body of [`Router`](crate::Router), [`Backend`](crate::Backend) and the
/// upstream client.
pub struct Body {
    kind: Kind,
    /// Told about each data frame and the end ([`Body::observed`]).
    tap: Option<Tap>,
}

/// An observer attached to a body, and the body's direction.
struct Tap {
    observed: Observed,
    direction: Direction,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Incoming(hyper::body::Incoming),
    /// An upstream HTTP/1.1 response body that returns its connection to the pool.
    Pooled(Pooled),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// Wraps any body. `hyper::body::Incoming` and `Body` itself are taken as they are;
    /// other types are boxed.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        let any = &mut slot as &mut dyn Any;
        if let Some(slot) = any.downcast_mut::<Option<Body>>()
            && let Some(body) = slot.take()
        {
            return body;
        }
        if let Some(slot) = any.downcast_mut::<Option<hyper::body::Incoming>>()
            && let Some(body) = slot.take()
        {
            return Self::from(body);
        }
        match slot {
            Some(body) => Self {
                kind: Kind::Boxed(body.map_err(Into::into).boxed_unsync()),
                tap: None,
            },
            None => Self::empty(),
        }
    }

    /// An empty body.
    pub const fn empty() -> Self {
        Self {
            kind: Kind::Empty,
            tap: None,
        }
    }

    /// A body of one buffer.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        if data.is_empty() {
            return Self::empty();
        }
        Self {
            kind: Kind::Full(Some(data)),
            tap: None,
        }
    }
}

impl Body {
    /// Tells `observed` the length of each data frame and the end of this body (its
    /// last frame, or its drop before that), as flowing `direction`. No allocation; a
    /// body observed already is observed by `observed` instead.
    pub fn observed(mut self, observed: Observed, direction: Direction) -> Self {
        if let Some(old) = self.tap.take() {
            old.observed.observer().end(old.direction);
        }
        self.tap = Some(Tap {
            observed,
            direction,
        });
        self
    }

    /// Ends the observation: the observer is told once.
    fn end_tap(&mut self) {
        if let Some(tap) = self.tap.take() {
            tap.observed.observer().end(tap.direction);
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.end_tap();
    }
}

impl From<Pooled> for Body {
    fn from(body: Pooled) -> Self {
        Self {
            kind: Kind::Pooled(body),
            tap: None,
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<hyper::body::Incoming> for Body {
    fn from(body: hyper::body::Incoming) -> Self {
        Self {
            kind: Kind::Incoming(body),
            tap: None,
        }
    }
}

impl From<Bytes> for Body {
    fn from(data: Bytes) -> Self {
        Self::full(data)
    }
}

impl From<&'static str> for Body {
    fn from(data: &'static str) -> Self {
        Self::full(Bytes::from_static(data.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(data: String) -> Self {
        Self::full(data)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "Empty",
            Kind::Full(_) => "Full",
            Kind::Incoming(_) | Kind::Pooled(_) => "Incoming",
            Kind::Boxed(_) => "Boxed",
        };
        f.debug_tuple("Body").field(&kind).finish()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Pooled(body) => Pin::new(body).poll_frame(cx),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        };
        if this.tap.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(data), Some(tap)) = (frame.data_ref(), &this.tap) {
                        tap.observed.observer().data(tap.direction, data.len());
                    }
                    if this.is_end_stream() {
                        this.end_tap();
                    }
                }
                Poll::Ready(_) => this.end_tap(),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(data) => data.is_none(),
            Kind::Incoming(body) => body.is_end_stream(),
            Kind::Pooled(body) => body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Incoming(body) => body.size_hint(),
            Kind::Pooled(body) => body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn full_body_yields_its_bytes_once() {
        let body = Body::full("hello");
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }

    #[tokio::test]
    async fn foreign_bodies_are_boxed_and_body_is_not_rewrapped() {
        let body = Body::new(Full::new(Bytes::from_static(b"abc")));
        assert_eq!(format!("{body:?}"), "Body(\"Boxed\")");
        let again = Body::new(body);
        assert_eq!(format!("{again:?}"), "Body(\"Boxed\")");
        assert_eq!(&again.collect().await.unwrap().to_bytes()[..], b"abc");
        assert!(http_body::Body::is_end_stream(&Body::full("")));
    }

    #[derive(Default)]
    struct Counts {
        data: std::sync::atomic::AtomicUsize,
        ends: std::sync::atomic::AtomicUsize,
    }

    impl crate::exchange::ExchangeObserver for Counts {
        fn data(&self, _: Direction, len: usize) {
            self.data
                .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        }
        fn end(&self, _: Direction) {
            self.ends.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn an_observed_body_reports_its_bytes_and_ends_once() {
        use std::sync::atomic::Ordering::Relaxed;
        let counts = std::sync::Arc::new(Counts::default());
        let observed = Observed::new(counts.clone());
        let body = Body::full("hello").observed(observed.clone(), Direction::Response);
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"hello");
        assert_eq!(counts.data.load(Relaxed), 5);
        assert_eq!(
            counts.ends.load(Relaxed),
            1,
            "ended at the last frame, not again on drop"
        );
        // Dropped before its end: the end is told on drop.
        drop(Body::full("abc").observed(observed, Direction::Request));
        assert_eq!(counts.ends.load(Relaxed), 2);
        assert_eq!(counts.data.load(Relaxed), 5);
    }
}
