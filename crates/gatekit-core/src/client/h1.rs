//! gatekit's own HTTP/1.1 codec for pooled cleartext upstream connections: the hot path
//! of the upstream client.
//!
//! # Why
//!
//! With hyper's connection API every exchange goes through hyper's client dispatch: the
//! `Request` (296 bytes) is moved into a channel to the connection task, the response
//! comes back through a oneshot, the body through another channel, and hyper's read
//! buffer is a fresh 8 KiB allocation per message (it reads ahead while the previous
//! message still references the old buffer). For the common proxied request (a request
//! without a body to a plain-HTTP/1.1 upstream) this module does the exchange in the
//! caller's task instead, the way NGINX does it in one event handler:
//!
//! 1. The request head is encoded straight into the connection's reusable write buffer
//!    and written with one `write` (no channel, no connection task, no oneshot). A
//!    request body follows from the same buffer, framed by its `Content-Length` (or its
//!    exact size, announced) or else chunked, trailers included; a body frame that is
//!    ready at once (a small `POST`) goes out in the same `write` as the head. The next
//!    frame is polled only once the previous one is written (backpressure), and while
//!    the body or the socket is not ready the response side is watched: an upstream that
//!    answers before it has the whole request (a `413`, an auth failure, or a streaming
//!    echo) gets its response forwarded at once. The response body then goes on sending
//!    the rest of the request as it is polled (full duplex, as with hyper); when the
//!    response ends first the rest is dropped, and such a connection is never reused.
//! 2. The response head is parsed with `httparse` (what hyper uses) from the
//!    connection's read buffer. Header values are zero-copy slices of that buffer.
//! 3. The body is framed by Content-Length, chunked encoding (with trailers) or the end
//!    of the connection; 1xx responses are skipped; HEAD, 204 and 304 have no body. A
//!    body that is already complete in the buffer (the common small response) becomes a
//!    [`Body::full`] and the connection returns to the pool at once; otherwise a
//!    the connection itself reads the rest as the body (its [`ConnBody`] impl) when polled (backpressure: nothing is read before the
//!    consumer asks) and returns the connection at the end of the body.
//!
//! The read buffer is one `BytesMut` per connection. Frames and header values are split
//! off it; once the previous response has been consumed (its slices dropped), the next
//! read reuses the same allocation. Only when a consumer still holds a slice does a read
//! allocate a new buffer.
//!
//! # Scope and trade-offs
//!
//! Upgrades, TLS and HTTP/2 go the hyper way (see `pool.rs` and `upgrade.rs`), as do
//! requests with framing headers of their own (`Transfer-Encoding`, several or invalid
//! `Content-Length`s): those are rare and hyper's checks are the reference. Request bodies are copied into
//! the write buffer (like hyper's flattened writes) rather than written vectored. An
//! idle connection has no task watching it: whether the upstream closed it is checked at
//! checkout from the socket's readiness (tokio records the readiness the last epoll
//! reported; a closed socket is readable), which costs no system call in the common case.
//! A connection that dies before the request was written is replaced and the request
//! written again (nothing reached the upstream).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::uri::PathAndQuery;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header,
};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use super::limits::ConnSlot;
use crate::body::{ConnBody, Pooled, Recycle};
pub(super) use crate::http1::has_token;
use crate::http1::header_spans;
use crate::{Body, BoxError, Error, ErrorKind};

/// The most header fields in a response head (hyper's default is 100 as well).
const MAX_HEADERS: usize = 100;
/// The largest response head (or chunk-size line plus trailers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The initial read buffer of a connection.
const INITIAL_READ: usize = 8 * 1024;
/// How much room a read asks for.
const READ_SIZE: usize = 16 * 1024;
/// Below this much spare room the read buffer is reserved again (reclaimed if unique).
const MIN_READ_ROOM: usize = 4 * 1024;

/// One pooled cleartext HTTP/1.1 connection and its reusable buffers.
pub(crate) struct RawConn {
    io: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    /// The response whose body is being read, if any.
    reading: Reading,
    /// Requests served, for `max_requests_per_connection`.
    served: u32,
    /// The connection's place under the upstream's connection cap: given back when the
    /// connection is dropped (closed), whoever drops it.
    _slot: ConnSlot,
}

impl fmt::Debug for RawConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawConn")
            .field("buffered", &self.rbuf.len())
            .finish_non_exhaustive()
    }
}

impl RawConn {
    pub(crate) fn new(io: TcpStream, slot: ConnSlot) -> Self {
        Self {
            io,
            rbuf: BytesMut::with_capacity(INITIAL_READ),
            wbuf: Vec::new(),
            reading: Reading::IDLE,
            served: 0,
            _slot: slot,
        }
    }

    /// Counts one more request served; returns the count.
    pub(crate) fn count_request(&mut self) -> u32 {
        self.served = self.served.saturating_add(1);
        self.served
    }

    /// Whether an idle connection can take a request: the upstream has not closed it
    /// and sent nothing unasked. No system call unless the socket was reported readable.
    pub(crate) fn is_reusable(&self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: end of stream, unexpected bytes, or a stale readiness flag.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more bytes into the read buffer; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < MIN_READ_ROOM {
            // Reclaims the buffer's space when nothing references it any more.
            self.rbuf.reserve(READ_SIZE);
        }
        let read = pin!(self.io.read_buf(&mut self.rbuf));
        read.poll(cx)
    }
}

// --- request form ---

/// HTTP/1.1 upstream: origin-form target and a `Host` header.
pub(super) fn to_origin_form(req: &mut Request<Body>, addr: SocketAddr) {
    *req.version_mut() = Version::HTTP_11;
    let uri = req.uri();
    if uri.scheme().is_none() && uri.authority().is_none() {
        if !req.headers().contains_key(header::HOST) {
            insert_host_from_addr(req, addr);
        }
        return;
    }
    if !req.headers().contains_key(header::HOST) {
        let host = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(strip_userinfo(a.as_str())).ok());
        match host {
            Some(host) => {
                req.headers_mut().insert(header::HOST, host);
            }
            None => insert_host_from_addr(req, addr),
        }
    }
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
}

fn insert_host_from_addr(req: &mut Request<Body>, addr: SocketAddr) {
    if let Ok(host) = HeaderValue::try_from(addr.to_string()) {
        req.headers_mut().insert(header::HOST, host);
    }
}

fn strip_userinfo(authority: &str) -> &str {
    authority.rsplit('@').next().unwrap_or(authority)
}

/// How a request's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No body.
    Empty,
    /// `Content-Length` bytes; `announce`: the header is not in the request yet.
    Length { length: u64, announce: bool },
    /// Chunked transfer coding (the length is unknown); the header is added.
    Chunked,
}

/// Whether a request can take the fast path, and how its body is framed. `None`: it
/// goes the hyper way (a `Transfer-Encoding` of its own, or an unusable
/// `Content-Length`).
pub(crate) fn plan(req: &Request<Body>) -> Option<Plan> {
    if req.headers().contains_key(TRANSFER_ENCODING) {
        return None;
    }
    let mut lengths = req.headers().get_all(CONTENT_LENGTH).iter();
    let declared = match (lengths.next(), lengths.next()) {
        (None, _) => None,
        (Some(v), None) => Some(parse_decimal(v.as_bytes())?),
        (Some(_), Some(_)) => return None,
    };
    let body = req.body();
    if http_body::Body::is_end_stream(body) {
        return match declared {
            None | Some(0) => Some(Plan::Empty),
            Some(_) => None,
        };
    }
    Some(match (declared, http_body::Body::size_hint(body).exact()) {
        (Some(0), _) => Plan::Empty,
        (Some(length), _) => Plan::Length {
            length,
            announce: false,
        },
        (None, Some(length)) => Plan::Length {
            length,
            announce: true,
        },
        (None, None) => Plan::Chunked,
    })
}

/// Encodes the request head (origin form, as `to_origin_form` prepared it) into `buf`.
pub(crate) fn encode_head(req: &Request<Body>, plan: Plan, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(req.method().as_str().as_bytes());
    buf.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    buf.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    match plan {
        Plan::Empty => {
            // Like hyper: methods whose requests usually carry a body say that this one
            // is empty.
            let says_empty = !matches!(
                *req.method(),
                Method::GET | Method::HEAD | Method::CONNECT | Method::OPTIONS | Method::TRACE
            );
            if says_empty && !req.headers().contains_key(CONTENT_LENGTH) {
                buf.extend_from_slice(b"content-length: 0\r\n");
            }
        }
        Plan::Length {
            length,
            announce: true,
        } => {
            buf.extend_from_slice(b"content-length: ");
            push_decimal(buf, length);
            buf.extend_from_slice(b"\r\n");
        }
        Plan::Length { .. } => {}
        Plan::Chunked => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    buf.extend_from_slice(b"\r\n");
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

fn push_hex(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// The request body still to send and how it is framed.
struct Upload {
    body: Body,
    /// `Some(remaining)` for a Content-Length body, `None` for chunked.
    remaining: Option<u64>,
}

impl Upload {
    /// Encodes one frame of the request body into `buf`; `true` when the body is done.
    fn encode(&mut self, frame: Frame<Bytes>, buf: &mut Vec<u8>) -> Result<bool, Error> {
        match frame.into_data() {
            Ok(data) => match &mut self.remaining {
                Some(remaining) => {
                    if data.len() as u64 > *remaining {
                        return Err(Error::with_source(
                            ErrorKind::UpstreamProtocol,
                            "the request body is longer than its content-length",
                        ));
                    }
                    *remaining -= data.len() as u64;
                    buf.extend_from_slice(&data);
                    Ok(*remaining == 0)
                }
                None => {
                    if !data.is_empty() {
                        push_hex(buf, data.len() as u64);
                        buf.extend_from_slice(b"\r\n");
                        buf.extend_from_slice(&data);
                        buf.extend_from_slice(b"\r\n");
                    }
                    Ok(false)
                }
            },
            Err(frame) => {
                // Trailers end the body. Chunked coding carries them; with a
                // Content-Length there is nowhere to put them (hyper drops them too).
                if self.remaining.is_some() {
                    return self.end(buf).map(|()| true);
                }
                buf.extend_from_slice(b"0\r\n");
                if let Ok(trailers) = frame.into_trailers() {
                    for (name, value) in &trailers {
                        buf.extend_from_slice(name.as_str().as_bytes());
                        buf.extend_from_slice(b": ");
                        buf.extend_from_slice(value.as_bytes());
                        buf.extend_from_slice(b"\r\n");
                    }
                }
                buf.extend_from_slice(b"\r\n");
                Ok(true)
            }
        }
    }

    /// Encodes the end of the body.
    fn end(&mut self, buf: &mut Vec<u8>) -> Result<(), Error> {
        match self.remaining {
            Some(0) => Ok(()),
            Some(_) => Err(Error::with_source(
                ErrorKind::UpstreamProtocol,
                "the request body is shorter than its content-length",
            )),
            None => {
                buf.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
        }
    }
}

/// Why sending the request stopped.
enum SendError {
    /// Writing to the connection failed.
    Io(io::Error),
    /// The request body failed or contradicted its length.
    Body(Error),
}

/// Writes the buffered request bytes and encodes more of the body, until the whole
/// request is out (`Ready(Ok(true))`) or the socket or the body is not ready. The next
/// frame is polled only when the previous one is written: backpressure both ways.
/// `sent` records whether any byte reached the socket.
fn poll_upload(
    conn: &mut RawConn,
    written: &mut usize,
    upload: &mut Option<Upload>,
    sent: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Result<(), SendError>> {
    loop {
        while *written < conn.wbuf.len() {
            let out = &conn.wbuf[*written..];
            match ready!(Pin::new(&mut conn.io).poll_write(cx, out)) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return Poll::Ready(Err(SendError::Io(e)));
                }
                Ok(n) => {
                    *written += n;
                    *sent = true;
                }
                Err(e) => return Poll::Ready(Err(SendError::Io(e))),
            }
        }
        conn.wbuf.clear();
        *written = 0;
        let Some(body) = upload.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let done = match ready!(http_body::Body::poll_frame(Pin::new(&mut body.body), cx)) {
            Some(Ok(frame)) => body.encode(frame, &mut conn.wbuf),
            None => body.end(&mut conn.wbuf).map(|()| true),
            Some(Err(e)) => Err(upload_error(e)),
        }
        .map_err(SendError::Body);
        if done? {
            *upload = None;
        }
    }
}

/// A request body that failed while being sent: the client's fault (400) when reading
/// it from the client failed (a hyper error), else a 502.
fn upload_error(err: BoxError) -> Error {
    Error::with_source(super::request_body_error_kind(&*err), err)
}

/// A TCP connection being opened, with its place under the connection cap.
pub(crate) type Connecting =
    Pin<Box<dyn Future<Output = Result<(TcpStream, ConnSlot), Error>> + Send>>;

/// What the codec needs from the owner of its connections (the pool implements it): a
/// new connection and a place for a connection whose response ended cleanly (also when
/// its body is read after the exchange, through [`Recycle`]).
pub(crate) trait RawPool: Recycle<Box<RawConn>> + Sized {
    /// Opens a TCP connection to the upstream.
    fn connect(self: Arc<Self>) -> Connecting;

    /// Takes back a connection that is ready for the next request (as
    /// [`Recycle::recycle`], without consuming an `Arc`).
    fn put(self: &Arc<Self>, conn: Box<RawConn>);
}

enum Stage {
    /// Opening a new connection; the encoded request waits in `Exchange::pending`.
    Connect(Connecting),
    /// Writing the request head and body, watching for an early response.
    Send,
    /// The request is out: reading the response head.
    Read,
    Done,
}

/// The response future of a request on the fast path.
pub(crate) struct Exchange<P> {
    pool: Arc<P>,
    conn: Option<Box<RawConn>>,
    /// The encoded request while a connection is being opened.
    pending: Vec<u8>,
    stage: Stage,
    /// Bytes of the connection's write buffer already written.
    written: usize,
    /// Whether any byte of the request reached the socket.
    sent: bool,
    /// The connection came from the pool (it may have died while idle).
    reused: bool,
    /// A request without a body and of a safe method (GET, HEAD, OPTIONS, TRACE): one
    /// that may be sent again when a pooled connection closes after taking it but
    /// before a byte of response (see [`fail_read`](Self::fail_read)).
    replayable: bool,
    /// Whether any byte of the response was read.
    received: bool,
    head: bool,
    upload: Option<Upload>,
    /// The request's head (as prepared for the wire), kept while no byte of the request
    /// is written: a request that fails before goes back whole in the error, its body
    /// with it (see [`fail`](Self::fail)).
    parts: Option<http::request::Parts>,
}

impl<P> fmt::Debug for Exchange<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("reused", &self.reused)
            .finish_non_exhaustive()
    }
}

impl<P: RawPool> Exchange<P> {
    /// Starts an exchange: on `conn` (from the pool) when given, else on a new connection.
    pub(crate) fn start(
        pool: Arc<P>,
        conn: Option<Box<RawConn>>,
        req: Request<Body>,
        plan: Plan,
    ) -> Self {
        let head = req.method() == Method::HEAD;
        let reused = conn.is_some();
        let replayable = matches!(plan, Plan::Empty)
            && matches!(
                *req.method(),
                Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
            );
        let (stage, conn, pending) = match conn {
            Some(mut conn) => {
                encode_head(&req, plan, &mut conn.wbuf);
                (Stage::Send, Some(conn), Vec::new())
            }
            None => {
                let mut pending = Vec::new();
                encode_head(&req, plan, &mut pending);
                (Stage::Connect(pool.clone().connect()), None, pending)
            }
        };
        let (parts, body) = req.into_parts();
        let upload = match plan {
            // Nothing of it is sent: a request handed back gets an empty body.
            Plan::Empty => None,
            Plan::Length { length, .. } => Some(Upload {
                body,
                remaining: Some(length),
            }),
            Plan::Chunked => Some(Upload {
                body,
                remaining: None,
            }),
        };
        Self {
            pool,
            conn,
            pending,
            stage,
            written: 0,
            sent: false,
            reused,
            replayable,
            received: false,
            head,
            upload,
            parts: Some(parts),
        }
    }

    /// Ends the exchange with `error`. A retry-safe error before any byte of the request
    /// was written hands the request back (see [`Error::with_unsent_request`]): its body
    /// was never polled either, since the body is polled only once everything buffered
    /// before it, the head first, is written (`poll_upload`).
    fn fail(&mut self, error: Error) -> Poll<Result<Response<Body>, BoxError>> {
        self.stage = Stage::Done;
        self.conn = None;
        let upload = self.upload.take();
        let unsent = !self.sent || self.stale_reuse();
        let error = match self.parts.take() {
            Some(parts) if unsent && error.is_retry_safe() => {
                let body = upload.map_or_else(Body::empty, |upload| upload.body);
                error.with_unsent_request(Request::from_parts(parts, body))
            }
            _ => error,
        };
        Poll::Ready(Err(error.into()))
    }

    /// The keep-alive race: a pooled connection that the upstream closed as it took
    /// the request, before a byte of response. Most likely the upstream's idle timeout
    /// fired as the request went out, and it never read it; a request that is safe to
    /// repeat then goes back to the caller as unsent (retry-safe), as Go's `net/http`
    /// client and NGINX's `proxy_next_upstream error` do for such requests. A request
    /// with a body or of another method is not: it fails as the upstream's error.
    fn stale_reuse(&self) -> bool {
        self.reused && self.replayable && !self.received
    }

    /// The connection closed or failed while the response head was awaited, after the
    /// whole request was written.
    fn fail_read(&mut self, error: io::Error) -> Poll<Result<Response<Body>, BoxError>> {
        let stale = self.stale_reuse();
        if stale {
            tracing::debug!(%error, "pooled upstream connection closed before any response; request handed back");
        }
        self.fail(Error::with_source(ErrorKind::UpstreamProtocol, error).retry_safe(stale))
    }

    /// A connection failure while sending: a pooled connection that died while idle
    /// before any byte was written is replaced (`Ok`); otherwise the error.
    fn on_send_error(&mut self, error: io::Error) -> Result<(), Error> {
        if self.reused && !self.sent {
            tracing::debug!(%error, "pooled upstream connection dead; reconnecting");
            if let Some(mut conn) = self.conn.take() {
                self.pending = std::mem::take(&mut conn.wbuf);
            }
            self.written = 0;
            self.reused = false;
            self.stage = Stage::Connect(self.pool.clone().connect());
            return Ok(());
        }
        Err(Error::with_source(ErrorKind::UpstreamProtocol, error).retry_safe(!self.sent))
    }

    /// Writes what is buffered and encodes more of the request body. `Ready(Ok(true))`:
    /// the whole request is out; `Ready(Ok(false))`: the stage changed (reconnecting).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Error>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Err(Error::new(ErrorKind::UpstreamProtocol)));
        };
        match ready!(poll_upload(
            conn,
            &mut self.written,
            &mut self.upload,
            &mut self.sent,
            cx
        )) {
            Ok(()) => Poll::Ready(Ok(true)),
            Err(SendError::Io(e)) => Poll::Ready(self.on_send_error(e).map(|()| false)),
            Err(SendError::Body(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<P: RawPool> Future for Exchange<P> {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.stage {
                Stage::Connect(connecting) => {
                    let (io, slot) = match ready!(connecting.as_mut().poll(cx)) {
                        Ok(connected) => connected,
                        Err(e) => return this.fail(e),
                    };
                    let mut conn = Box::new(RawConn::new(io, slot));
                    conn.wbuf = std::mem::take(&mut this.pending);
                    this.conn = Some(conn);
                    this.written = 0;
                    this.stage = Stage::Send;
                }
                Stage::Send => match this.poll_send(cx) {
                    Poll::Ready(Ok(true)) => this.stage = Stage::Read,
                    Poll::Ready(Ok(false)) => {}
                    Poll::Ready(Err(e)) => return this.fail(e),
                    // The body or the socket is not ready: the upstream may answer (or
                    // close) before it has the whole request.
                    Poll::Pending => return this.poll_response(cx, true),
                },
                Stage::Read => return this.poll_response(cx, false),
                Stage::Done => {
                    // Polled after completion: a caller's contract bug.
                    return Poll::Ready(Err(Error::new(ErrorKind::UpstreamProtocol).into()));
                }
            }
        }
    }
}

impl<P: RawPool> Exchange<P> {
    /// Reads the response head. `early`: the request is not all sent yet; the response
    /// body then goes on sending it (see the [`ConnBody`] impl of [`RawConn`]) and the connection is not reused.
    fn poll_response(
        &mut self,
        cx: &mut Context<'_>,
        early: bool,
    ) -> Poll<Result<Response<Body>, BoxError>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return self.fail(Error::new(ErrorKind::UpstreamProtocol));
            };
            match parse_head(conn, self.head) {
                Ok(Some(mut head)) => {
                    self.stage = Stage::Done;
                    let rest = if early {
                        // The upstream answered before it had the whole request: the
                        // rest goes on from the response body (full duplex, as with
                        // hyper), and the connection is not reused, whichever side
                        // ends first.
                        head.keep_alive = false;
                        Some(Rest {
                            upload: self.upload.take(),
                            written: self.written,
                        })
                    } else {
                        None
                    };
                    let Some(conn) = self.conn.take() else {
                        return self.fail(Error::new(ErrorKind::UpstreamProtocol));
                    };
                    return Poll::Ready(Ok(finish(head, conn, &self.pool, rest)));
                }
                Ok(None) => {}
                Err(e) => return self.fail(e),
            }
            if conn.rbuf.len() >= MAX_HEAD {
                return self.fail(Error::with_source(
                    ErrorKind::UpstreamProtocol,
                    "the upstream's response head is too large",
                ));
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection before the response",
                    );
                    if early {
                        match self.on_send_error(e) {
                            // Reconnecting: go on sending on the new connection.
                            Ok(()) => return Pin::new(self).poll(cx),
                            Err(e) => return self.fail(e),
                        }
                    }
                    return self.fail_read(e);
                }
                Ok(_) => self.received = true,
                Err(e) => {
                    if early {
                        match self.on_send_error(e) {
                            Ok(()) => return Pin::new(self).poll(cx),
                            Err(e) => return self.fail(e),
                        }
                    }
                    return self.fail_read(e);
                }
            }
        }
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Eof,
}

/// A parsed response head.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

/// Parses a complete response head from the read buffer, skipping 1xx responses.
/// `Ok(None)`: more bytes are needed.
fn parse_head(conn: &mut RawConn, head_request: bool) -> Result<Option<Head>, Error> {
    loop {
        if conn.rbuf.is_empty() {
            return Ok(None);
        }
        // Header positions as offsets into the buffer, so the buffer can be split
        // (frozen) once the parser's borrow ends.
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let (len, code, minor, count) = {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut rsp = httparse::Response::new(&mut headers);
            let len = match rsp.parse(&conn.rbuf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(Error::with_source(ErrorKind::UpstreamProtocol, e)),
            };
            let base = conn.rbuf.as_ptr() as usize;
            // Offsets are below MAX_HEAD (the buffer never grows past it unparsed).
            let count = header_spans(base, rsp.headers, &mut spans);
            (len, rsp.code.unwrap_or(0), rsp.version.unwrap_or(1), count)
        };
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(Error::with_source(
                    ErrorKind::UpstreamProtocol,
                    "101 Switching Protocols to a request that asked for no upgrade",
                ));
            }
            // An informational response: skip it, the final one follows.
            conn.rbuf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code)
            .map_err(|e| Error::with_source(ErrorKind::UpstreamProtocol, e))?;
        let bytes = conn.rbuf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        for &(ns, ne, vs, ve) in &spans[..count] {
            let name = HeaderName::from_bytes(&bytes[ns as usize..ne as usize])
                .map_err(|e| Error::with_source(ErrorKind::UpstreamProtocol, e))?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(vs as usize..ve as usize))
                .map_err(|e| Error::with_source(ErrorKind::UpstreamProtocol, e))?;
            headers.append(name, value);
        }
        let version = if minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let mut keep_alive = version == Version::HTTP_11
            && !headers
                .get_all(CONNECTION)
                .iter()
                .any(|v| has_token(v.as_bytes(), b"close"));
        let framing = if head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else if headers.contains_key(TRANSFER_ENCODING) {
            let chunked = headers
                .get_all(TRANSFER_ENCODING)
                .iter()
                .next_back()
                .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if headers.contains_key(CONTENT_LENGTH) {
                // Both: Transfer-Encoding wins and the connection is not reused
                // (RFC 9112 §6.3).
                keep_alive = false;
            }
            if chunked {
                Framing::Chunked
            } else {
                keep_alive = false;
                Framing::Eof
            }
        } else if headers.contains_key(CONTENT_LENGTH) {
            Framing::Length(content_length(&headers)?)
        } else {
            keep_alive = false;
            Framing::Eof
        };
        return Ok(Some(Head {
            status,
            version,
            headers,
            framing,
            keep_alive,
        }));
    }
}

/// The Content-Length, which must be one number however often it is repeated.
fn content_length(headers: &HeaderMap) -> Result<u64, Error> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii()).ok_or_else(|| {
                Error::with_source(ErrorKind::UpstreamProtocol, "invalid content-length")
            })?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::with_source(
                    ErrorKind::UpstreamProtocol,
                    "conflicting content-length values",
                ));
            }
            length = Some(n);
        }
    }
    length.ok_or_else(|| Error::with_source(ErrorKind::UpstreamProtocol, "invalid content-length"))
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// The unsent rest of a request whose response came early: the body left and how much
/// of the connection's write buffer is already out.
struct Rest {
    upload: Option<Upload>,
    written: usize,
}

/// Builds the response: the body is taken from the buffer when it is all there (the
/// connection returns to the pool now), else read by the connection itself (its
/// [`ConnBody`] impl). With `rest` (an
/// early response) the response body also sends the rest of the request.
fn finish<P: RawPool>(
    head: Head,
    mut conn: Box<RawConn>,
    pool: &Arc<P>,
    rest: Option<Rest>,
) -> Response<Body> {
    let rest = rest.unwrap_or(Rest {
        upload: None,
        written: 0,
    });
    let body = match head.framing {
        // A complete response ends the exchange, also when the request was not all sent
        // (the connection is not reused then: `keep_alive` is off).
        Framing::Length(n) if (conn.rbuf.len() as u64) >= n => {
            // `n` fits in usize: it is at most the buffer's length.
            let data = conn.rbuf.split_to(n as usize).freeze();
            if head.keep_alive && conn.rbuf.is_empty() {
                pool.put(conn);
            }
            Body::full(data)
        }
        framing => {
            conn.reading = Reading {
                decoder: match framing {
                    Framing::Length(n) => Decoder::Length(n),
                    Framing::Chunked => Decoder::Chunked(Chunk::Size),
                    Framing::Eof => Decoder::Eof,
                },
                keep_alive: head.keep_alive,
                // Boxed: rare, and a `Body` inside the connection needs the indirection.
                rest: rest.upload.is_some().then(|| Box::new(rest)),
                owner: Some(pool.clone()),
            };
            // The connection's own box carries the body: no allocation.
            Body::from(Pooled::conn(conn))
        }
    };
    let mut rsp = Response::new(body);
    *rsp.status_mut() = head.status;
    *rsp.version_mut() = head.version;
    *rsp.headers_mut() = head.headers;
    rsp
}

// --- the response body ---

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    Length(u64),
    Chunked(Chunk),
    Eof,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields up to an empty line.
    Trailers,
    /// The trailer section has been read.
    End,
}

/// What one decoding step produced.
enum Step {
    Frame(Frame<Bytes>),
    NeedMore,
    End,
}

/// The response being read from a connection (its body, see [`ConnBody`]).
struct Reading {
    decoder: Decoder,
    keep_alive: bool,
    /// The rest of the request, when the response came before all of it was sent.
    rest: Option<Box<Rest>>,
    /// Where the connection goes at the end of the body: set while a body is read from
    /// it, so an idle connection holds no reference to its pool.
    owner: Option<Arc<dyn Recycle<Box<RawConn>>>>,
}

impl Reading {
    /// No response is being read.
    const IDLE: Self = Self {
        decoder: Decoder::Done,
        keep_alive: false,
        rest: None,
        owner: None,
    };
}

fn body_error(reason: &'static str) -> BoxError {
    Error::with_source(ErrorKind::UpstreamProtocol, reason).into()
}

impl RawConn {
    /// The body has been read.
    fn end_body(&mut self) {
        self.reading.decoder = Decoder::Done;
        // The response is complete: what is left of an early-answered upload is dropped
        // (`keep_alive` is off for those, so the connection is closed too).
        self.reading.rest = None;
    }

    /// Sends more of the rest of the request, as far as the socket and the request body
    /// allow. A failure only ends the upload: the response is still read.
    fn pump_upload(&mut self, cx: &mut Context<'_>) {
        let Some(mut rest) = self.reading.rest.take() else {
            return;
        };
        let mut sent = true;
        match poll_upload(self, &mut rest.written, &mut rest.upload, &mut sent, cx) {
            Poll::Pending => self.reading.rest = Some(rest),
            Poll::Ready(result) => {
                if let Err(SendError::Io(e)) = &result {
                    tracing::debug!(error = %e, "upstream stopped reading the request body");
                }
            }
        }
    }
}

/// A response body read from a fast-path connection; the connection returns to the pool
/// at the end of the body ([`ConnBody::release`]). On an error, or dropped before the
/// end, it is closed (see [`Pooled`]).
impl ConnBody for RawConn {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.reading.decoder == Decoder::Done {
                self.end_body();
                return Poll::Ready(None);
            }
            if self.reading.rest.is_some() {
                self.pump_upload(cx);
            }
            let step = match &mut self.reading.decoder {
                Decoder::Length(remaining) => {
                    if self.rbuf.is_empty() {
                        Step::NeedMore
                    } else {
                        let n = (*remaining).min(self.rbuf.len() as u64) as usize;
                        *remaining -= n as u64;
                        Step::Frame(Frame::data(self.rbuf.split_to(n).freeze()))
                    }
                }
                Decoder::Eof => {
                    if self.rbuf.is_empty() {
                        Step::NeedMore
                    } else {
                        Step::Frame(Frame::data(self.rbuf.split().freeze()))
                    }
                }
                Decoder::Chunked(state) => match decode_chunked(&mut self.rbuf, state) {
                    Ok(step) => step,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
                Decoder::Done => Step::End,
            };
            match step {
                Step::Frame(frame) => {
                    if matches!(
                        self.reading.decoder,
                        Decoder::Length(0) | Decoder::Chunked(Chunk::End)
                    ) {
                        // The last bytes: the body ends with this frame.
                        self.end_body();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Step::End => {
                    self.end_body();
                    return Poll::Ready(None);
                }
                Step::NeedMore => match ready!(self.poll_fill(cx)) {
                    Ok(0) if self.reading.decoder == Decoder::Eof => {
                        // The end of a close-delimited body; the connection is done.
                        self.reading.keep_alive = false;
                        self.end_body();
                        return Poll::Ready(None);
                    }
                    Ok(0) => {
                        return Poll::Ready(Some(Err(body_error(
                            "the upstream closed the connection before the body ended",
                        ))));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let e = Error::with_source(ErrorKind::UpstreamProtocol, e);
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading.decoder, Decoder::Done | Decoder::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading.decoder {
            Decoder::Length(n) => SizeHint::with_exact(n),
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Chunked(_) | Decoder::Eof => SizeHint::default(),
        }
    }

    fn release(mut self: Box<Self>) {
        self.end_body();
        let owner = self.reading.owner.take();
        if let Some(owner) = owner
            && self.reading.keep_alive
            && self.rbuf.is_empty()
        {
            owner.recycle(self);
        }
    }
}

/// One step of chunked decoding over the buffered bytes.
fn decode_chunked(buf: &mut BytesMut, state: &mut Chunk) -> Result<Step, BoxError> {
    loop {
        match *state {
            Chunk::Size => {
                let Some(line) = find_crlf(buf) else {
                    return need_more(buf, 4096, "chunk-size line too long");
                };
                let size = parse_chunk_size(&buf[..line])?;
                buf.advance(line + 2);
                *state = if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(remaining) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = remaining.min(buf.len() as u64) as usize;
                let data = buf.split_to(n).freeze();
                *state = if remaining == n as u64 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(remaining - n as u64)
                };
                return Ok(Step::Frame(Frame::data(data)));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(body_error("a chunk's data is not followed by CRLF"));
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers => {
                if buf.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    return Ok(Step::End);
                }
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let (len, trailers) = match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        let mut trailers = HeaderMap::with_capacity(fields.len());
                        for field in fields.iter() {
                            let name = HeaderName::from_bytes(field.name.as_bytes())
                                .map_err(|_| body_error("an invalid trailer field name"))?;
                            let value = HeaderValue::from_bytes(field.value)
                                .map_err(|_| body_error("an invalid trailer field value"))?;
                            trailers.append(name, value);
                        }
                        (len, trailers)
                    }
                    Ok(httparse::Status::Partial) => {
                        return need_more(buf, MAX_HEAD, "trailer section too large");
                    }
                    Err(_) => return Err(body_error("a malformed trailer section")),
                };
                buf.advance(len);
                *state = Chunk::End;
                return Ok(Step::Frame(Frame::trailers(trailers)));
            }
            Chunk::End => return Ok(Step::End),
        }
    }
}

fn need_more(buf: &BytesMut, limit: usize, reason: &'static str) -> Result<Step, BoxError> {
    if buf.len() >= limit {
        Err(body_error(reason))
    } else {
        Ok(Step::NeedMore)
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// A chunk-size line: hex digits, then optional whitespace and extensions (ignored).
fn parse_chunk_size(line: &[u8]) -> Result<u64, BoxError> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 || digits > 16 {
        return Err(body_error("an invalid chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return Err(body_error("an invalid chunk size"));
    }
    let mut size = 0u64;
    for &d in &line[..digits] {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        size = (size << 4) | u64::from(v);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError> {
        let mut buf = BytesMut::from(input);
        let mut state = Chunk::Size;
        let mut data = Vec::new();
        let mut trailers = None;
        loop {
            match decode_chunked(&mut buf, &mut state)? {
                Step::Frame(frame) => match frame.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        return Ok((data, trailers));
                    }
                },
                Step::NeedMore => return Err("need more".into()),
                Step::End => return Ok((data, trailers)),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let (data, trailers) = decode_all(b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(data, b"hello world");
        assert!(trailers.is_none());

        let (data, trailers) =
            decode_all(b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx-t: y\r\n\r\n").unwrap();
        assert_eq!(data, b"abc");
        let trailers = trailers.unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-t"], "y");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        assert!(decode_all(b"zz\r\n").is_err());
        assert!(decode_all(b"3\r\nabcX\r\n").is_err());
        assert!(decode_all(b"11111111111111111\r\n").is_err());
        assert!(parse_chunk_size(b"ff").unwrap() == 255);
    }

    #[test]
    fn content_length_must_be_one_number() {
        let mut h = HeaderMap::new();
        h.append(CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("5, 5"));
        assert_eq!(content_length(&h).unwrap(), 5);
        h.append(CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert!(content_length(&h).is_err());
        let mut h = HeaderMap::new();
        h.append(CONTENT_LENGTH, HeaderValue::from_static("-1"));
        assert!(content_length(&h).is_err());
    }

    #[test]
    fn request_heads_are_encoded_in_origin_form() {
        let req = Request::post("/a?b=1")
            .header("host", "h.test")
            .body(Body::empty())
            .unwrap();
        let mut buf = Vec::new();
        assert_eq!(plan(&req), Some(Plan::Empty));
        encode_head(&req, Plan::Empty, &mut buf);
        assert_eq!(
            buf,
            b"POST /a?b=1 HTTP/1.1\r\nhost: h.test\r\ncontent-length: 0\r\n\r\n"
        );

        let req = Request::post("/").body(Body::full("xyz")).unwrap();
        let sized = plan(&req).unwrap();
        assert_eq!(
            sized,
            Plan::Length {
                length: 3,
                announce: true
            }
        );
        encode_head(&req, sized, &mut buf);
        assert_eq!(buf, b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n");

        let req = Request::put("/")
            .header("content-length", "1234567890")
            .body(Body::new(http_body_util::StreamBody::new(
                futures_util::stream::empty::<Result<Frame<Bytes>, std::convert::Infallible>>(),
            )))
            .unwrap();
        assert_eq!(
            plan(&req),
            Some(Plan::Length {
                length: 1_234_567_890,
                announce: false
            })
        );
        let req = Request::post("/")
            .body(Body::new(http_body_util::StreamBody::new(
                futures_util::stream::empty::<Result<Frame<Bytes>, std::convert::Infallible>>(),
            )))
            .unwrap();
        assert_eq!(plan(&req), Some(Plan::Chunked));
        encode_head(&req, Plan::Chunked, &mut buf);
        assert_eq!(
            buf,
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );

        // Framing headers of its own, or a body that contradicts a zero length: hyper.
        let req = Request::post("/")
            .header("transfer-encoding", "chunked")
            .body(Body::empty())
            .unwrap();
        assert_eq!(plan(&req), None);
        let req = Request::post("/")
            .header("content-length", "5")
            .body(Body::empty())
            .unwrap();
        assert_eq!(plan(&req), None);
    }

    /// A pool whose upstream refuses new connections.
    struct Refusing;

    impl Recycle<Box<RawConn>> for Refusing {
        fn recycle(self: Arc<Self>, _: Box<RawConn>) {}
    }

    impl RawPool for Refusing {
        fn connect(self: Arc<Self>) -> Connecting {
            Box::pin(async {
                Err(Error::with_source(
                    ErrorKind::Connect,
                    io::Error::from(io::ErrorKind::ConnectionRefused),
                ))
            })
        }

        fn put(self: &Arc<Self>, _: Box<RawConn>) {}
    }

    /// A pooled connection that died while idle (the upstream reset it) is replaced;
    /// when the new connection is refused, the request comes back whole in the error.
    #[tokio::test]
    async fn a_request_for_a_dead_pooled_connection_comes_back_when_reconnecting_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let io = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        // Closed with a reset.
        accepted.set_zero_linger().unwrap();
        drop(accepted);
        drop(listener);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let slot = super::super::limits::PoolLimits::default()
            .connection_slot()
            .unwrap();
        let conn = Box::new(RawConn::new(io, slot));

        let data = Bytes::from_static(b"a body nobody read");
        let mut req = Request::post("/items")
            .header("host", "h.test")
            .body(Body::full(data.clone()))
            .unwrap();
        req.extensions_mut().insert(7u32);
        let plan = plan(&req).unwrap();
        let err = Exchange::start(Arc::new(Refusing), Some(conn), req, plan)
            .await
            .unwrap_err();
        assert_eq!(crate::classify(&*err), ErrorKind::Connect);
        let back = crate::take_unsent_request::<Body>(&*err).expect("handed back");
        assert_eq!(back.method(), Method::POST);
        assert_eq!(back.uri(), "/items");
        assert_eq!(back.headers()["host"], "h.test");
        assert_eq!(back.extensions().get::<u32>(), Some(&7));
        let body = http_body_util::BodyExt::collect(back.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, data);
    }

    /// A pooled connection whose upstream reads the request and closes without a byte
    /// of response (its idle timeout fired as the request went out).
    async fn closes_after_the_request() -> Box<RawConn> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let io = TcpStream::connect(addr).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match accepted.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            drop(accepted);
        });
        let slot = super::super::limits::PoolLimits::default()
            .connection_slot()
            .unwrap();
        Box::new(RawConn::new(io, slot))
    }

    /// The keep-alive race: a GET written on a pooled connection that closes before any
    /// response comes back unsent and retry-safe; a POST with a body, or the same GET on a
    /// new connection, fails as the upstream's error and is not handed back.
    #[tokio::test]
    async fn a_safe_request_on_a_pooled_connection_closed_before_any_response_comes_back() {
        let mut req = Request::get("/items")
            .header("host", "h.test")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(7u32);
        let plan_get = plan(&req).unwrap();
        let conn = closes_after_the_request().await;
        let err = Exchange::start(Arc::new(Refusing), Some(conn), req, plan_get)
            .await
            .unwrap_err();
        let found = crate::Error::find(&*err).unwrap();
        assert!(found.is_retry_safe());
        assert_eq!(found.kind(), ErrorKind::UpstreamProtocol);
        let back = crate::take_unsent_request::<Body>(&*err).expect("handed back");
        assert_eq!(back.method(), Method::GET);
        assert_eq!(back.extensions().get::<u32>(), Some(&7));

        let post = Request::post("/items")
            .header("host", "h.test")
            .body(Body::full(Bytes::from_static(b"once only")))
            .unwrap();
        let plan_post = plan(&post).unwrap();
        let conn = closes_after_the_request().await;
        let err = Exchange::start(Arc::new(Refusing), Some(conn), post, plan_post)
            .await
            .unwrap_err();
        assert!(!crate::Error::find(&*err).unwrap().is_retry_safe());
        assert!(crate::take_unsent_request::<Body>(&*err).is_none());
    }

    #[test]
    fn request_bodies_are_framed() {
        let mut chunked = Upload {
            body: Body::empty(),
            remaining: None,
        };
        let mut buf = Vec::new();
        assert!(
            !chunked
                .encode(
                    Frame::data(Bytes::from_static(b"hello world, hello!")),
                    &mut buf
                )
                .unwrap()
        );
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("7"));
        assert!(chunked.encode(Frame::trailers(trailers), &mut buf).unwrap());
        assert_eq!(buf, b"13\r\nhello world, hello!\r\n0\r\nx-sum: 7\r\n\r\n");

        let mut sized = Upload {
            body: Body::empty(),
            remaining: Some(4),
        };
        buf.clear();
        assert!(
            !sized
                .encode(Frame::data(Bytes::from_static(b"ab")), &mut buf)
                .unwrap()
        );
        assert!(sized.end(&mut buf).is_err(), "short");
        assert!(
            sized
                .encode(Frame::data(Bytes::from_static(b"cde")), &mut buf)
                .is_err(),
            "long"
        );
        assert!(
            sized
                .encode(Frame::data(Bytes::from_static(b"cd")), &mut buf)
                .unwrap()
        );
        assert_eq!(buf, b"abcd");
    }
}
