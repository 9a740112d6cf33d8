//! gRPC mode: Envoy's `envoy.service.auth.v3.Authorization/Check`, one unary call per
//! request, so authorization servers written for Envoy (OPA's Envoy plugin and others)
//! work unchanged.
//!
//! The call is a hand-rolled unary gRPC exchange through the service's
//! [`Backend`](gatekit_core::Backend): a `POST` to
//! `/envoy.service.auth.v3.Authorization/Check` with `content-type: application/grpc`,
//! `te: trailers`, a `grpc-timeout` of the check's timeout, and the message behind
//! gRPC's 5-byte prefix (uncompressed); the answer's one message is read the same way
//! and `grpc-status` is taken from the trailers (or the headers of a trailers-only
//! answer). No tonic: the exchange is fifty lines, and tonic's transport and codec
//! would add a second HTTP/2 client beside gatekit's own.
//!
//! The check request carries the client and gateway addresses, the method, path, host,
//! scheme, protocol, `x-request-id`, the headers (all of them, or those named in
//! `headersToExtAuth`; pseudo-headers `:authority`, `:method`, `:path` included, as
//! Envoy does) and the buffered body (`body` when UTF-8, `raw_body` otherwise). The
//! answer:
//!
//! - `status.code` 0 (`OK`): allowed; `ok_response.headers` change the request
//!   (`append` true appends; unset or false replaces, the default this message
//!   documents; or `append_action` add-if-absent, overwrite-if-exists),
//!   `headers_to_remove` are removed (never `Host`), `response_headers_to_add` are
//!   added to the response the client gets;
//! - any other code: denied; `denied_response` gives the status (403 when unset), the
//!   headers and the body the client gets;
//! - a call that fails (transport error, a `grpc-status` other than 0, an undecodable
//!   message): fail open or closed.

use bytes::{BufMut, Bytes, BytesMut};
use gatekit_core::{Body, BoxError, ConnectionInfo};
use http::header::{CONTENT_TYPE, HOST, TE};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use prost::Message;

use super::check::{self, CheckInput, Edits, Op, Verdict};
use super::config::{ExtAuthConfig, GrpcService};
use super::proto;

const PATH: &str = "/envoy.service.auth.v3.Authorization/Check";
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
const GRPC_STATUS: &str = "grpc-status";
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The largest answer read: a check response is small; a larger one is refused.
const MAX_ANSWER: usize = 1024 * 1024;

pub(super) async fn ask(
    config: &ExtAuthConfig,
    service: &GrpcService,
    input: &CheckInput,
) -> Result<Verdict, BoxError> {
    let message = check_request(config, input).encode_to_vec();
    let req = call(config, service, &message)?;
    let rsp = config.backend.send(req).await?;
    let answer = read_answer(rsp).await?;
    let answer = proto::CheckResponse::decode(answer)?;
    Ok(verdict(answer))
}

fn call(
    config: &ExtAuthConfig,
    service: &GrpcService,
    message: &[u8],
) -> Result<Request<Body>, BoxError> {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len())?);
    framed.put_slice(message);
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(PATH)
        .body(Body::full(framed.freeze()))?;
    let headers = req.headers_mut();
    headers.insert(HOST, service.authority.clone());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    // gRPC timeouts have at most eight digits: milliseconds up to ~27 hours.
    let millis = config.timeout.as_millis().min(99_999_999);
    if let Ok(timeout) = HeaderValue::from_str(&format!("{millis}m")) {
        headers.insert(GRPC_TIMEOUT, timeout);
    }
    Ok(req)
}

/// The one message of a unary answer, after checking the HTTP status and
/// `grpc-status`.
async fn read_answer(rsp: Response<Body>) -> Result<Bytes, BoxError> {
    if rsp.status() != StatusCode::OK {
        return Err(format!("authorization call answered HTTP {}", rsp.status()).into());
    }
    let (head, body) = rsp.into_parts();
    // A trailers-only answer carries its status in the headers.
    if let Some(status) = head.headers.get(GRPC_STATUS) {
        return Err(format!("authorization call failed: grpc-status {status:?}").into());
    }
    let (data, trailers) = check::read_limited(body, MAX_ANSWER).await?;
    let status = trailers
        .as_ref()
        .and_then(|t| t.get(GRPC_STATUS))
        .ok_or("authorization call ended without grpc-status")?;
    if status != "0" {
        return Err(format!("authorization call failed: grpc-status {status:?}").into());
    }
    let (flag, len) = match data.get(..5) {
        Some(prefix) => (
            prefix[0],
            u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize,
        ),
        None => return Err("authorization answer without a message".into()),
    };
    if flag != 0 {
        return Err("authorization answer is compressed (none was offered)".into());
    }
    if data.len() != 5 + len {
        return Err("authorization answer is not one whole message".into());
    }
    Ok(data.slice(5..))
}

fn check_request(config: &ExtAuthConfig, input: &CheckInput) -> proto::CheckRequest {
    let head = &input.head;
    let conn = head.extensions.get::<ConnectionInfo>();
    let peer = |addr: std::net::SocketAddr| proto::Peer {
        address: Some(proto::Address {
            socket_address: Some(proto::SocketAddress {
                address: addr.ip().to_canonical().to_string(),
                port_value: u32::from(addr.port()),
            }),
        }),
        principal: String::new(),
    };
    let host = check::host(head)
        .and_then(|h| h.to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    let mut headers = std::collections::HashMap::new();
    let mut add = |name: &str, value: &[u8]| {
        let value = String::from_utf8_lossy(value);
        headers
            .entry(name.to_owned())
            .and_modify(|v: &mut String| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    };
    let path = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    add(":authority", host.as_bytes());
    add(":method", head.method.as_str().as_bytes());
    add(":path", path.as_bytes());
    if config.headers_to_ext_auth.is_empty() {
        for (name, value) in &head.headers {
            add(name.as_str(), value.as_bytes());
        }
    } else {
        for name in &config.headers_to_ext_auth {
            for value in head.headers.get_all(name) {
                add(name.as_str(), value.as_bytes());
            }
        }
    }
    let (body, raw_body) = match &input.body {
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_owned(), Vec::new()),
            Err(_) => (String::new(), bytes.to_vec()),
        },
        None => (String::new(), Vec::new()),
    };
    let size = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
        .unwrap_or(-1);
    let protocol = match head.version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    };
    proto::CheckRequest {
        attributes: Some(proto::AttributeContext {
            source: conn.map(|c| peer(c.remote_addr())),
            destination: conn.map(|c| peer(c.local_addr())),
            request: Some(proto::AttributeRequest {
                http: Some(proto::HttpRequest {
                    id: head
                        .headers
                        .get(X_REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    method: head.method.as_str().to_owned(),
                    headers,
                    path: path.to_owned(),
                    host,
                    scheme: if conn.is_some_and(ConnectionInfo::is_tls) {
                        "https"
                    } else {
                        "http"
                    }
                    .to_owned(),
                    size,
                    protocol: protocol.to_owned(),
                    body,
                    raw_body,
                }),
            }),
            context_extensions: Default::default(),
        }),
    }
}

/// A header edit from a `HeaderValueOption`; `None` for a name or value that is not
/// valid HTTP (skipped, as Envoy skips invalid headers).
fn edit(option: &proto::HeaderValueOption) -> Option<(HeaderName, HeaderValue, Op)> {
    let header = option.header.as_ref()?;
    let name = HeaderName::from_bytes(header.key.as_bytes()).ok()?;
    let value = if header.raw_value.is_empty() {
        HeaderValue::from_str(&header.value).ok()?
    } else {
        HeaderValue::from_bytes(&header.raw_value).ok()?
    };
    let op = match (option.append.as_ref(), option.append_action) {
        (Some(append), _) if append.value => Op::Append,
        (Some(_), _) => Op::Set,
        (None, 1) => Op::AddIfAbsent,
        (None, 3) => Op::OverwriteIfExists,
        // `APPEND_IF_EXISTS_OR_ADD` (0) is also the unset default, which this message
        // documents as "replace": replacing keeps a client from smuggling a second
        // value of a header the service vouches for.
        (None, _) => Op::Set,
    };
    Some((name, value, op))
}

fn verdict(answer: proto::CheckResponse) -> Verdict {
    let allowed = answer.status.as_ref().is_none_or(|s| s.code == 0);
    if allowed {
        let mut edits = Edits::default();
        if let Some(proto::HttpResponse::Ok(ok)) = &answer.http_response {
            edits.request = ok.headers.iter().filter_map(edit).collect();
            edits.remove = ok
                .headers_to_remove
                .iter()
                .filter(|n| !n.starts_with(':'))
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect();
            edits.response = ok.response_headers_to_add.iter().filter_map(edit).collect();
        }
        return Verdict::Allow(edits);
    }
    let mut rsp = Response::new(Body::empty());
    *rsp.status_mut() = StatusCode::FORBIDDEN;
    if let Some(proto::HttpResponse::Denied(denied)) = answer.http_response {
        if let Some(status) = denied
            .status
            .and_then(|s| u16::try_from(s.code).ok())
            .filter(|c| (200..600).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            *rsp.status_mut() = status;
        }
        let edits: Vec<_> = denied.headers.iter().filter_map(edit).collect();
        check::apply(rsp.headers_mut(), &edits);
        if !denied.body.is_empty() {
            *rsp.body_mut() = Body::from(denied.body);
        }
    }
    gatekit_core::proxy::prepare_response(&mut rsp);
    Verdict::Deny(rsp)
}
