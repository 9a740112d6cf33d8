//! The OTLP/HTTP client: one HTTP/1.1 request per export, on gatekit's hyper.
//!
//! The SDK's batch processor calls the exporter from its own thread, outside any tokio
//! runtime, so each request is spawned on the gateway's runtime and awaited through its
//! join handle. One connection per export: exports are rare (one batch every few
//! seconds at most) and a kept connection would need a pool for little gain.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{HttpClient, HttpError};

/// The largest collector answer read (an OTLP response is a few bytes).
const MAX_RESPONSE: usize = 64 * 1024;

/// The traces URL of `endpoint`: `http` only; a URL without a path gets `/v1/traces`.
///
/// # Errors
///
/// What is wrong with the URL.
pub(crate) fn endpoint_uri(endpoint: &str) -> Result<Uri, String> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|e| format!("`{endpoint}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("https is not built in; use an http:// collector URL".into()),
        _ => return Err(format!("`{endpoint}` is not an http:// URL")),
    }
    if uri.host().is_none() {
        return Err(format!("`{endpoint}` names no host"));
    }
    if uri.path() == "/" && uri.query().is_none() {
        let mut parts = uri.into_parts();
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/v1/traces"));
        return Uri::from_parts(parts).map_err(|e| e.to_string());
    }
    Ok(uri)
}

/// Sends OTLP requests on a tokio runtime.
#[derive(Clone, Debug)]
pub(crate) struct ExportClient {
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl ExportClient {
    pub(crate) fn new(runtime: tokio::runtime::Handle, timeout: Duration) -> Self {
        Self { runtime, timeout }
    }
}

type Sent<'a> = Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'a>>;

// The trait is declared with `async_trait`; this is its expansion, written out so that
// gatekit needs no proc-macro for one method.
impl HttpClient for ExportClient {
    fn send_bytes<'life0, 'async_trait>(&'life0 self, request: Request<Bytes>) -> Sent<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let timeout = self.timeout;
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, send(request)).await });
        Box::pin(async move {
            match task.await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => {
                    Err(format!("no answer from the collector within {timeout:?}").into())
                }
                Err(error) => Err(Box::new(error) as HttpError),
            }
        })
    }
}

/// One request on a new connection.
async fn send(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (mut parts, body) = request.into_parts();
    let host = parts.uri.host().ok_or("the collector URL names no host")?;
    let port = parts.uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    parts.headers.insert(header::HOST, authority.parse()?);
    // Origin form on the wire.
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
