//! Relaying bytes both ways between a client and a backend: bounded buffers, half-close,
//! an idle timeout and byte counts.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The buffer of each direction: a direction reads no more from one side until the
/// other side took what was read (backpressure).
pub(crate) const RELAY_BUFFER: usize = 16 * 1024;

/// What a relayed connection did, readable while it runs and after it was dropped.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    /// Bytes read from the client (sent on to the backend).
    received: AtomicU64,
    /// Bytes read from the backend (sent on to the client).
    sent: AtomicU64,
    /// Milliseconds after `start` of the last byte either way.
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn count_received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    pub(crate) fn count_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    /// When the connection becomes idle for `idle`, if nothing happens before.
    pub(crate) fn idle_deadline(&self, idle: Duration) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }
}

/// Counts the bytes read from `io` as received from the client (`client`) or sent to it.
struct Metered<IO> {
    io: IO,
    activity: Arc<Activity>,
    client: bool,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Metered<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            if this.client {
                this.activity.count_received(n);
            } else {
                this.activity.count_sent(n);
            }
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Metered<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Copies `client` to `backend` and back until both directions are done: an EOF on one
/// side shuts down writing on the other, and the relay ends when both sides have
/// finished. Ends with `TimedOut` once no byte moved either way for `idle`.
pub(crate) async fn relay<C, B>(
    client: C,
    backend: B,
    idle: Duration,
    activity: Arc<Activity>,
) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Metered {
        io: client,
        activity: activity.clone(),
        client: true,
    };
    let mut backend = Metered {
        io: backend,
        activity: activity.clone(),
        client: false,
    };
    activity.touch();
    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut backend,
        RELAY_BUFFER,
        RELAY_BUFFER,
    );
    tokio::pin!(copy);
    loop {
        let deadline = activity.idle_deadline(idle);
        tokio::select! {
            result = &mut copy => return result.map(|_| ()),
            () = tokio::time::sleep_until(deadline) => {
                if activity.idle_deadline(idle) <= Instant::now() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("idle for {idle:?}"),
                    ));
                }
            }
        }
    }
}
