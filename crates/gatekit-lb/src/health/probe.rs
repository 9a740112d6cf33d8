//! One check of one endpoint over its own short-lived connection.
//!
//! Checks never use the request path's connection pool: a pooled connection that is
//! healthy says little about whether a new one can be made, and a check must not take a
//! slot a request could use. Every connection (and, for h2, every task hyper spawns for
//! it) is dropped when the check ends or times out.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CONNECTION, CONTENT_TYPE, HOST, TE, USER_AGENT};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::config::{CheckKind, GrpcCheck, HttpCheck};
use super::{CheckError, grpc};

const USER_AGENT_VALUE: &str = "gatekit-health-check";

impl CheckKind {
    /// Runs one check against `addr` over a fresh connection; the whole check, connecting
    /// included, is bounded by `timeout`.
    ///
    /// # Errors
    ///
    /// A [`CheckError`] saying why the endpoint failed the check.
    pub async fn check(&self, addr: SocketAddr, timeout: Duration) -> Result<(), CheckError> {
        match tokio::time::timeout(timeout, self.check_unbounded(addr)).await {
            Ok(result) => result,
            Err(_) => Err(CheckError::Timeout(timeout)),
        }
    }

    async fn check_unbounded(&self, addr: SocketAddr) -> Result<(), CheckError> {
        match self {
            Self::Tcp => connect(addr).await.map(drop),
            Self::Http(http) => check_http(addr, http).await,
            Self::Grpc(grpc) => check_grpc(addr, grpc).await,
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, CheckError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(CheckError::Connect)?;
    // Best effort: a check is one small request, Nagle only delays it.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A check's connection: TCP, or TLS over it when the upstream speaks TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connects to `addr`, with `tls`'s handshake when given (boxed: checks are rare).
async fn connect_io(
    addr: SocketAddr,
    tls: Option<&gatekit_core::client::Transport>,
) -> Result<Box<dyn Io>, CheckError> {
    let tcp = connect(addr).await?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(transport) => {
            let stream = transport
                .tls_connect(addr, tcp)
                .await
                .map_err(|e| CheckError::Tls(Box::new(e)))?;
            Ok(Box::new(stream))
        }
    }
}

async fn check_http(addr: SocketAddr, check: &HttpCheck) -> Result<(), CheckError> {
    let authority = match &check.host {
        Some(host) => host.clone(),
        None => addr.to_string(),
    };
    let scheme = if check.tls.is_some() { "https" } else { "http" };
    let status = if check.http2 {
        let req = Request::builder()
            .method(check.method.clone())
            .uri(format!("{scheme}://{authority}{}", check.path))
            .header(USER_AGENT, USER_AGENT_VALUE)
            .body(Empty::<Bytes>::new())
            .map_err(CheckError::Request)?;
        let (exec, _guard) = scoped_executor();
        let io = TokioIo::new(connect_io(addr, check.tls.as_ref()).await?);
        let (mut send, conn) = hyper::client::conn::http2::handshake(exec, io)
            .await
            .map_err(CheckError::Http)?;
        let mut conn = pin!(conn.fuse());
        drive(send.ready(), conn.as_mut()).await?;
        drive(send.send_request(req), conn.as_mut()).await?.status()
    } else {
        let req = Request::builder()
            .method(check.method.clone())
            .uri(check.path.as_str())
            .header(HOST, authority)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(CheckError::Request)?;
        let io = TokioIo::new(connect_io(addr, check.tls.as_ref()).await?);
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(CheckError::Http)?;
        let mut conn = pin!(conn.fuse());
        drive(send.ready(), conn.as_mut()).await?;
        drive(send.send_request(req), conn.as_mut()).await?.status()
    };
    if check.is_expected(status) {
        Ok(())
    } else {
        Err(CheckError::Status(status))
    }
}

async fn check_grpc(addr: SocketAddr, check: &GrpcCheck) -> Result<(), CheckError> {
    let authority = match &check.authority {
        Some(a) => a.clone(),
        None => addr.to_string(),
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "{}://{authority}{}",
            if check.tls.is_some() { "https" } else { "http" },
            grpc::CHECK_PATH
        ))
        .header(CONTENT_TYPE, "application/grpc")
        .header(TE, "trailers")
        .header(USER_AGENT, USER_AGENT_VALUE)
        .body(Full::new(grpc::encode_request(&check.service)))
        .map_err(CheckError::Request)?;
    let (exec, _guard) = scoped_executor();
    let io = TokioIo::new(connect_io(addr, check.tls.as_ref()).await?);
    let (mut send, conn) = hyper::client::conn::http2::handshake(exec, io)
        .await
        .map_err(CheckError::Http)?;
    let mut conn = pin!(conn.fuse());
    drive(send.ready(), conn.as_mut()).await?;
    let resp: Response<Incoming> = drive(send.send_request(req), conn.as_mut()).await?;
    if resp.status() != StatusCode::OK {
        return Err(CheckError::Status(resp.status()));
    }
    // A "trailers-only" response carries grpc-status in the headers.
    if let Some(status) = grpc_status(resp.headers())
        && status != "0"
    {
        return Err(CheckError::GrpcStatus(status));
    }
    let collected = drive(resp.into_body().collect(), conn.as_mut()).await?;
    match collected.trailers().and_then(grpc_status) {
        Some(status) if status == "0" => {}
        Some(status) => return Err(CheckError::GrpcStatus(status)),
        None => return Err(CheckError::Malformed("missing grpc-status")),
    }
    let body = collected.to_bytes();
    let serving = grpc::decode_status(grpc::unframe(&body)?)?;
    if serving == grpc::SERVING {
        Ok(())
    } else {
        Err(CheckError::NotServing(serving))
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<String> {
    headers
        .get("grpc-status")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Polls `fut` while also driving the connection `conn`. If the connection ends first,
/// `fut` is awaited alone: it then fails with hyper's "connection closed" error (or the
/// outer timeout ends the check).
async fn drive<T, F, C>(fut: F, mut conn: std::pin::Pin<&mut C>) -> Result<T, CheckError>
where
    F: Future<Output = Result<T, hyper::Error>>,
    C: Future<Output = Result<(), hyper::Error>> + futures_util::future::FusedFuture,
{
    let mut fut = pin!(fut);
    tokio::select! {
        biased;
        r = &mut fut => r.map_err(CheckError::Http),
        r = &mut conn, if !conn.is_terminated() => {
            r.map_err(CheckError::Http)?;
            fut.await.map_err(CheckError::Http)
        }
    }
}

/// Spawns hyper's h2 connection tasks on tokio; its [`AbortGuard`] aborts them all when
/// the check ends (or is dropped on timeout), so a check against a peer that never
/// answers leaves nothing behind.
#[derive(Clone)]
struct ScopedExecutor {
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

struct AbortGuard {
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

fn scoped_executor() -> (ScopedExecutor, AbortGuard) {
    let tasks = Arc::new(Mutex::new(Vec::new()));
    (
        ScopedExecutor {
            tasks: tasks.clone(),
        },
        AbortGuard { tasks },
    )
}

impl<F> hyper::rt::Executor<F> for ScopedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let handle = tokio::spawn(fut);
        self.tasks.lock().push(handle.abort_handle());
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}
