//! One check: buffer the body if asked, ask the service within the timeout, read its
//! answer into a [`Verdict`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use gatekit_core::{Body, BoxError};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

use super::config::{ExtAuthConfig, Protocol};

/// What a check produced: the verdict (or why there is none) and the request body to
/// send on, replayed when it was buffered.
pub(super) struct Checked {
    pub(super) outcome: Result<Verdict, Failure>,
    pub(super) body: Body,
}

/// The service's answer.
pub(super) enum Verdict {
    /// The request goes on, with these changes.
    Allow(Edits),
    /// This response goes to the client instead.
    Deny(Response<Body>),
}

/// Why a check has no verdict.
pub(super) enum Failure {
    /// The body is over the buffering limit (413, whatever fail-open says).
    TooLarge,
    /// Reading the client's body failed.
    Client(BoxError),
    /// The service could not be asked or answered nonsense.
    Unavailable(BoxError),
}

/// How a header edit applies (Envoy's `HeaderValueOption` append actions; HTTP mode
/// uses only `Set` and `Append`).
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// Replace every value of the name.
    Set,
    /// Add a value after the existing ones.
    Append,
    /// Only when the name is absent.
    AddIfAbsent,
    /// Only when the name is present, replacing it.
    OverwriteIfExists,
}

/// Changes an allowing answer makes to the request (and, in gRPC mode, the response).
#[derive(Default)]
pub(super) struct Edits {
    pub(super) request: Vec<(HeaderName, HeaderValue, Op)>,
    pub(super) remove: Vec<HeaderName>,
    pub(super) response: Vec<(HeaderName, HeaderValue, Op)>,
}

impl Edits {
    pub(super) fn apply_to_request(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            // The host can never be removed (Envoy ignores it too).
            if name != http::header::HOST {
                headers.remove(name);
            }
        }
        apply(headers, &self.request);
    }

    pub(super) fn has_response_edits(&self) -> bool {
        !self.response.is_empty()
    }
}

/// Applies `edits` in order. A `Set` of a name replaces the values that were there
/// before the edits, so several `Set`s of one name leave them all.
pub(super) fn apply(headers: &mut HeaderMap, edits: &[(HeaderName, HeaderValue, Op)]) {
    let mut set: Vec<&HeaderName> = Vec::new();
    for (name, value, op) in edits {
        match op {
            Op::Set | Op::OverwriteIfExists => {
                if *op == Op::OverwriteIfExists
                    && !headers.contains_key(name)
                    && !set.contains(&name)
                {
                    continue;
                }
                if set.contains(&name) {
                    headers.append(name, value.clone());
                } else {
                    headers.insert(name, value.clone());
                    set.push(name);
                }
            }
            Op::Append => {
                headers.append(name, value.clone());
            }
            Op::AddIfAbsent => {
                if !headers.contains_key(name) {
                    headers.insert(name, value.clone());
                }
            }
        }
    }
}

/// What the service is told about the request: its head (the request's own, borrowed
/// for the check's duration) and the buffered body, if any.
pub(super) struct CheckInput {
    pub(super) head: Parts,
    pub(super) body: Option<Bytes>,
    pub(super) partial: bool,
}

/// Runs one check of a request (its head and body), buffering the body first when the
/// config asks; the head comes back with the result.
pub(super) fn check(config: Arc<ExtAuthConfig>, head: Parts, body: Body) -> CheckWithHead {
    Box::pin(async move {
        let (buffered, partial, body) = match config.body {
            None => (None, false, body),
            Some(limits) => match buffer(body, limits.max_bytes).await {
                Ok(Buffered::Whole(bytes, trailers)) => {
                    let replay = Body::new(Replay::new(bytes.clone(), trailers, None));
                    (Some(bytes), false, replay)
                }
                Ok(Buffered::Over(bytes, rest)) => {
                    let replay = Body::new(Replay::new(bytes.clone(), None, Some(rest)));
                    if !limits.allow_partial {
                        let checked = Checked {
                            outcome: Err(Failure::TooLarge),
                            body: replay,
                        };
                        return (head, checked);
                    }
                    (Some(bytes.slice(..limits.max_bytes)), true, replay)
                }
                Err(err) => {
                    let checked = Checked {
                        outcome: Err(Failure::Client(err)),
                        body: Body::empty(),
                    };
                    return (head, checked);
                }
            },
        };
        let input = CheckInput {
            head,
            body: buffered,
            partial,
        };
        let asked = ask(&config, &input);
        let outcome = match tokio::time::timeout(config.timeout, asked).await {
            Ok(Ok(verdict)) => Ok(verdict),
            Ok(Err(err)) => Err(Failure::Unavailable(err)),
            Err(elapsed) => Err(Failure::Unavailable(Box::new(elapsed))),
        };
        (input.head, Checked { outcome, body })
    })
}

/// The boxed future of [`check`]: one allocation per checked request, next to the one
/// the [`Backend`](gatekit_core::Backend) call to the service makes anyway.
pub(super) type CheckWithHead = Pin<Box<dyn Future<Output = (Parts, Checked)> + Send>>;

async fn ask(config: &ExtAuthConfig, input: &CheckInput) -> Result<Verdict, BoxError> {
    match &config.protocol {
        Protocol::Http(service) => super::http_check::ask(config, service, input).await,
        #[cfg(feature = "grpc")]
        Protocol::Grpc(service) => super::grpc_check::ask(config, service, input).await,
    }
}

/// Reads a whole body of at most `limit` bytes. Also used for the service's answers.
pub(super) async fn read_limited(
    body: Body,
    limit: usize,
) -> Result<(Bytes, Option<HeaderMap>), BoxError> {
    match buffer(body, limit).await? {
        Buffered::Whole(bytes, trailers) => Ok((bytes, trailers)),
        Buffered::Over(..) => Err(format!("answer over {limit} bytes").into()),
    }
}

enum Buffered {
    /// The whole body (and its trailers).
    Whole(Bytes, Option<HeaderMap>),
    /// More than the limit: what was read (at least `limit + 1` bytes) and the rest.
    Over(Bytes, Body),
}

async fn buffer(mut body: Body, limit: usize) -> Result<Buffered, BoxError> {
    let mut buf = BytesMut::new();
    if let Some(exact) = body.size_hint().exact()
        && exact <= limit as u64
    {
        buf.reserve(exact as usize);
    }
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) => {
                buf.extend_from_slice(&data);
                if buf.len() > limit {
                    return Ok(Buffered::Over(buf.freeze(), body));
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return Ok(Buffered::Whole(buf.freeze(), Some(trailers)));
                }
            }
        }
    }
    Ok(Buffered::Whole(buf.freeze(), None))
}

/// A buffered body sent on: the bytes read, then the trailers or the unread rest.
struct Replay {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<Body>,
}

impl Replay {
    fn new(data: Bytes, trailers: Option<HeaderMap>, rest: Option<Body>) -> Self {
        Self {
            data: (!data.is_empty()).then_some(data),
            trailers,
            rest,
        }
    }
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |r| r.size_hint());
        let data = self.data.as_ref().map_or(0, |d| d.len() as u64);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + data);
        }
        hint.set_lower(rest.lower() + data);
        hint
    }
}

/// The request's `Host` (or, for HTTP/2, its URI authority).
pub(super) fn host(head: &Parts) -> Option<HeaderValue> {
    head.headers.get(http::header::HOST).cloned().or_else(|| {
        head.uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}
