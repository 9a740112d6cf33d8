//! gatekit's own HTTP/1.1 server codec: the hot path of a client connection.
//!
//! # Why
//!
//! hyper's HTTP/1 server keeps, for every connection and for its whole life, an 8 KiB
//! read buffer, an 8 KiB write buffer, a cached header map and a box the size of the
//! service's future: about 21 KB per idle keep-alive connection, where NGINX keeps well
//! under one. Each request also goes through hyper's dispatcher and the channel of its
//! `Incoming` body. For the common proxied request (a request without a body) this
//! module serves the connection itself, the way its client side does
//! (`client/h1.rs`):
//!
//! - **Idle, a connection holds no buffer.** Bytes are read into a buffer shared by
//!   the connections of the thread; the request head is split off it (header values
//!   are zero-copy slices, as with hyper) and the connection keeps nothing once the
//!   request is parsed. A partial head, or bytes of a pipelined next request, are
//!   copied into the connection's own buffer. The response is encoded into a buffer
//!   taken from the thread's pool and given back when it is written.
//! - **One `write` per response** when the body is ready with the head (the small
//!   responses most requests are): head and body are copied together (as hyper's
//!   flattened writes do); a streamed body goes out as it comes, coalesced while frames
//!   are ready.
//! - **A request's exchange is boxed** (the service's future, then the response being
//!   written): one allocation per request, and an idle connection carries none of it
//!   (its state is the socket, the header-read timer and the drain's watch).
//!
//! # What goes to hyper
//!
//! The codec accepts only a strict subset: an HTTP/1.1 request head that `httparse`
//! parses whole, within 64 KiB and 100 header fields, with a valid method, target,
//! names and values, without `Content-Length`, `Transfer-Encoding`, `Upgrade` or
//! `Expect`, and not `CONNECT`. Anything else (request bodies, WebSocket upgrades,
//! `100-continue`, HTTP/1.0, the h2 preface, every malformed or oversized head) hands
//! the connection to hyper, from the first byte of that request on, for the rest of its
//! life: hyper answers it exactly as it would have without this codec (the 400s and
//! 431s of the hostile-input suite included), and serves the bodies and upgrades. A
//! request this codec accepts is one hyper would accept with the same method, target,
//! version and headers and an empty body: `fuzz/fuzz_targets/h1_server.rs` checks that
//! on arbitrary bytes against hyper's own parser.
//!
//! # Behaviour kept from hyper's server
//!
//! - The header read timeout runs from the end of the previous response (or the
//!   connection's start) to the end of the next head, idle time included, and closes the
//!   connection silently.
//! - While a request is served the connection is read, so a client that closes its end
//!   cancels its request (the bytes of a pipelined request are kept, up to the head
//!   limit).
//! - `Connection: close` from either side closes the connection after the response
//!   (and the response says so); a drain asks the same of an in-flight request and
//!   closes an idle connection at once.
//! - Response framing: `HEAD`, `204` and `304` have no body; otherwise
//!   `Content-Length` from the body's exact size (or the response's own header), else
//!   chunked, with trailers when the response announced them (`Trailer`). A body that
//!   fails, or ends short of its length, closes the connection. `Date` is added when
//!   missing. A `1xx` response becomes `500`.
//!
//! [`ServerConfig::http1_codec`](super::ServerConfig::http1_codec) turns the codec off
//! (every connection to hyper).

mod encode;
mod parse;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::FusedFuture;
use http::{Method, Request, Response};
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use self::encode::Framing;
pub(crate) use self::parse::{MAX_HEAD, Parsed, parse};
use super::drain::{DrainSignal, Phase};
use crate::stream::Rewind;
use crate::{Body, BoxError};

/// How much room a read into the thread's shared buffer asks for.
const READ_SIZE: usize = 16 * 1024;
/// Below this much spare room the shared buffer is reserved again (reclaimed in place
/// when no request still holds a slice of it).
const MIN_READ_ROOM: usize = 4 * 1024;
/// A response's bytes are written once this many are waiting (or when the body has no
/// frame ready).
const FLUSH_AT: usize = 64 * 1024;
/// Write buffers larger than this are not kept in the thread's pool.
const POOLED_WRITE_MAX: usize = 64 * 1024;
/// Write buffers kept per thread.
const POOL_LEN: usize = 8;

thread_local! {
    /// The read buffer shared by this thread's connections.
    static READ: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    /// Response buffers, taken for one response and given back.
    static WRITE_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// What serves each request: the connection's service, called with requests of an
/// empty body.
pub(super) trait Serve {
    /// The response body.
    type Body: HttpBody<Data = Bytes, Error: Into<BoxError>>;
    /// The response (errors are responses already).
    type Future: Future<Output = Result<Response<Self::Body>, Infallible>> + Send + 'static;
    /// Answers `request`.
    fn serve(&self, request: Request<Body>) -> Self::Future;
}

/// Serves HTTP/1.1 on `io` with `service` until the connection ends, or until a request
/// is hyper's to serve (see the [module docs](self)): then `handoff` serves the rest of
/// the connection, from that request's first byte, with the service; it is told whether
/// the connection is fresh (no request served yet: only then may it turn out to be
/// HTTP/2 by its preface). `timeout` is the
/// header read timeout; `drain` asks the connection to finish.
///
/// A plain function returning an `async` block, not an `async fn`: an `async fn` keeps a
/// second copy of its arguments in its state, and this state is what every open
/// connection holds.
pub(super) fn serve<IO, S, H, F>(
    io: IO,
    service: S,
    timeout: Duration,
    mut drain: DrainSignal,
    handoff: H,
) -> impl Future<Output = Result<(), BoxError>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Serve,
    H: FnOnce(Rewind<IO>, S, bool) -> F,
    F: Future<Output = Result<(), BoxError>>,
{
    let mut conn = Conn {
        io,
        buf: BytesMut::new(),
    };
    async move {
        let mut graceful = pin!(drain.reached(Phase::Graceful).fuse());
        let mut deadline = Instant::now() + timeout;
        let mut sleep = pin!(tokio::time::sleep_until(deadline));
        let mut fresh = true;
        let hyper = 'serve: loop {
            // Scoped so that nothing of the request outlives its move into the exchange.
            let exchange = {
                // A head: from the buffer, or read, under the deadline and the drain.
                let (request, keep_alive) = loop {
                    if !conn.buf.is_empty() {
                        match parse(&mut conn.buf) {
                            Parsed::Request {
                                request,
                                keep_alive,
                            } => break (request, keep_alive),
                            Parsed::Partial => conn.keep_partial(),
                            Parsed::Decline => {
                                let prefix = std::mem::take(&mut conn.buf).freeze();
                                let io = Rewind::with_prefix(conn.io, prefix);
                                // Boxed: connections the codec serves alone do not
                                // carry the size of hyper's state. Made here, awaited
                                // outside the match (whose value would stay in the
                                // state otherwise).
                                break 'serve Box::pin(handoff(io, service, fresh));
                            }
                        }
                    }
                    let wait = poll_fn(|cx| {
                        conn.poll_head_bytes(cx, graceful.as_mut(), sleep.as_mut(), deadline)
                    });
                    match wait.await? {
                        Wait::Bytes => {}
                        Wait::Close => return Ok(()),
                    }
                };
                if conn.buf.is_empty() {
                    // Release the shared buffer: the request's slices are all that hold it.
                    conn.buf = BytesMut::new();
                }
                // One allocation per request holds the exchange (the service's future,
                // then the response as it is written): an idle connection carries none
                // of it.
                let head_request = request.method() == Method::HEAD;
                let call = service.serve(request);
                Box::pin(exchange(
                    &mut conn,
                    call,
                    head_request,
                    keep_alive,
                    graceful.as_mut(),
                ))
            };
            if !exchange.await? {
                return Ok(());
            }
            fresh = false;
            deadline = Instant::now() + timeout;
        };
        hyper.await
    }
}

/// Serves one request whose service call is `call`: waits for the response (watching
/// the client meanwhile: one that goes away cancels the call), then writes it.
/// `Ok(true)` when the connection can serve another request.
async fn exchange<IO, F, B, G>(
    conn: &mut Conn<IO>,
    call: F,
    head_request: bool,
    keep_alive: bool,
    mut graceful: Pin<&mut G>,
) -> Result<bool, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = Result<Response<B>, Infallible>>,
    B: HttpBody<Data = Bytes, Error: Into<BoxError>>,
    G: FusedFuture<Output = ()>,
{
    let response = {
        let mut call = pin!(call);
        poll_fn(|cx| {
            if let Poll::Ready(response) = call.as_mut().poll(cx) {
                return Poll::Ready(Some(response));
            }
            match conn.poll_watch(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    };
    let Some(Ok(response)) = response else {
        // The client went away: its request is cancelled.
        return Ok(false);
    };
    if !graceful.is_terminated() {
        let _ = graceful.as_mut().now_or_never();
    }
    let close = !keep_alive || graceful.is_terminated();
    if !conn.respond(response, head_request, close).await? {
        let _ = conn.io.shutdown().await;
        return Ok(false);
    }
    Ok(true)
}

/// What waiting for a head's bytes gave.
enum Wait {
    /// More bytes are in the buffer.
    Bytes,
    /// The connection is to close: the client closed it, the header read timeout
    /// passed, or a drain found it idle.
    Close,
}

/// A connection served by this codec.
struct Conn<IO> {
    io: IO,
    /// Bytes read and not yet parsed: a partial head or a pipelined request. Empty (no
    /// allocation) on an idle connection.
    buf: BytesMut,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    /// Reads more of a head, unless the deadline passes or a drain finds the
    /// connection idle first.
    fn poll_head_bytes<G>(
        &mut self,
        cx: &mut Context<'_>,
        mut graceful: Pin<&mut G>,
        mut sleep: Pin<&mut Sleep>,
        deadline: Instant,
    ) -> Poll<io::Result<Wait>>
    where
        G: FusedFuture<Output = ()>,
    {
        // Drained: an idle connection closes now; a partial head may finish.
        if !graceful.is_terminated() {
            let _ = graceful.as_mut().poll(cx);
        }
        if graceful.is_terminated() && self.buf.is_empty() {
            return Poll::Ready(Ok(Wait::Close));
        }
        match self.poll_fill(cx) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Wait::Close)),
            Poll::Ready(Ok(_)) => return Poll::Ready(Ok(Wait::Bytes)),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        // The timer is armed once and moved only when it fires early: the deadline
        // moves with every request, the timer does not.
        while sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return Poll::Ready(Ok(Wait::Close));
            }
            sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }

    /// Reads what the socket has: into the thread's shared buffer when the connection
    /// has nothing buffered, else after what it has. `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if !self.buf.is_empty() {
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(4096);
            }
            return pin!(self.io.read_buf(&mut self.buf)).poll(cx);
        }
        READ.with_borrow_mut(|shared| {
            if shared.capacity() - shared.len() < MIN_READ_ROOM {
                shared.reserve(READ_SIZE);
            }
            let n = ready!(pin!(self.io.read_buf(shared)).poll(cx))?;
            self.buf = shared.split();
            Poll::Ready(Ok(n))
        })
    }

    /// A partial head stays with the connection, in a buffer of its own (not the
    /// thread's shared one, which it would otherwise pin while the client dawdles).
    fn keep_partial(&mut self) {
        self.buf = BytesMut::from(&self.buf[..]);
    }

    /// Watches the client while its request is served: `Ready` when it closed its end
    /// (or the connection failed). Bytes of a pipelined request are kept, up to the head
    /// limit; beyond it the connection is no longer read until the response is out.
    fn poll_watch(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.buf.len() <= MAX_HEAD {
            let had = self.buf.len();
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => {
                    if had == 0 {
                        self.keep_partial();
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Pending
    }

    /// Writes `response`; `Ok(true)` when the connection can serve another request.
    async fn respond<B>(
        &mut self,
        response: Response<B>,
        head_request: bool,
        close: bool,
    ) -> Result<bool, BoxError>
    where
        B: HttpBody<Data = Bytes, Error: Into<BoxError>>,
    {
        let (parts, body) = response.into_parts();
        let exact = body.size_hint().exact();
        let mut out = WriteBuf::take();
        let encoded = encode::head(&parts, exact, head_request, close, &mut out.0);
        drop(parts);
        let complete = match encoded.framing {
            Framing::None => {
                drop(body);
                self.write_out(&mut out.0).await?;
                true
            }
            framing => {
                let body = pin!(body);
                self.write_body(body, framing, encoded.trailers, &mut out.0)
                    .await?
            }
        };
        Ok(complete && !encoded.close)
    }

    /// Streams `body` framed as `framing`; `Ok(false)` when the body failed or did not
    /// match its length (the response is cut short and the connection must close).
    async fn write_body<B>(
        &mut self,
        mut body: Pin<&mut B>,
        framing: Framing,
        trailers: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, BoxError>
    where
        B: HttpBody<Data = Bytes, Error: Into<BoxError>>,
    {
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let chunked = framing == Framing::Chunked;
        loop {
            let next = poll_fn(|cx| match body.as_mut().poll_frame(cx) {
                Poll::Pending if !out.is_empty() => Poll::Ready(Next::Flush),
                Poll::Pending => Poll::Pending,
                Poll::Ready(frame) => {
                    Poll::Ready(Next::Frame(frame.map(|f| f.map_err(Into::into))))
                }
            })
            .await;
            let frame = match next {
                Next::Flush => {
                    self.write_out(out).await?;
                    continue;
                }
                Next::Frame(None) => {
                    if chunked {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    self.write_out(out).await?;
                    return Ok(left == 0);
                }
                Next::Frame(Some(Err(error))) => {
                    tracing::debug!(%error, "response body failed; closing");
                    drop(error);
                    self.write_out(out).await?;
                    return Ok(false);
                }
                Next::Frame(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    if chunked {
                        if !data.is_empty() {
                            encode::push_hex(out, data.len() as u64);
                            out.extend_from_slice(b"\r\n");
                            out.extend_from_slice(&data);
                            out.extend_from_slice(b"\r\n");
                        }
                    } else if data.len() as u64 > left {
                        tracing::debug!("response body longer than its length; closing");
                        self.write_out(out).await?;
                        return Ok(false);
                    } else {
                        left -= data.len() as u64;
                        out.extend_from_slice(&data);
                    }
                }
                Err(frame) => {
                    if let (true, Ok(fields)) = (chunked, frame.into_trailers()) {
                        out.extend_from_slice(b"0\r\n");
                        if trailers {
                            for (name, value) in &fields {
                                out.extend_from_slice(name.as_str().as_bytes());
                                out.extend_from_slice(b": ");
                                out.extend_from_slice(value.as_bytes());
                                out.extend_from_slice(b"\r\n");
                            }
                        }
                        out.extend_from_slice(b"\r\n");
                        self.write_out(out).await?;
                        return Ok(true);
                    }
                }
            }
            if out.len() >= FLUSH_AT {
                self.write_out(out).await?;
            }
        }
    }

    /// Writes and empties `out`.
    async fn write_out(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if !out.is_empty() {
            self.io.write_all(out).await?;
            out.clear();
        }
        self.io.flush().await
    }
}

/// What the response body had next.
enum Next<F> {
    /// Nothing ready, and bytes are waiting: write them first.
    Flush,
    Frame(Option<Result<F, BoxError>>),
}

/// A response buffer from the thread's pool, given back when dropped.
struct WriteBuf(Vec<u8>);

impl WriteBuf {
    fn take() -> Self {
        Self(WRITE_POOL.with_borrow_mut(Vec::pop).unwrap_or_default())
    }
}

impl Drop for WriteBuf {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        if buf.capacity() <= POOLED_WRITE_MAX {
            buf.clear();
            WRITE_POOL.with_borrow_mut(|pool| {
                if pool.len() < POOL_LEN {
                    pool.push(buf);
                }
            });
        }
    }
}
