//! HTTP mode: the check is an HTTP request to the service, like Envoy's
//! `http_service`.
//!
//! The check request has the client request's method, the configured path prefix
//! followed by the request's path and query, its `Host` and `Authorization`, the headers
//! named in `headersToExtAuth`, and the buffered body (with its `Content-Length`) when
//! body forwarding is on. The answer:
//!
//! - 2xx: allowed; the headers named in `headersToBackend` are copied from the answer
//!   onto the request, replacing the request's own, which are removed even when the
//!   answer lacks the name (Envoy keeps them then). (Envoy admits only `200`; gatekit
//!   admits any 2xx, as nginx's `auth_request` and the issue ask.)
//! - 5xx: the service failed: fail open or closed (as Envoy does).
//! - anything else: denied; the answer (status, headers less hop-by-hop ones, body) goes
//!   to the client.

use gatekit_core::{Body, BoxError};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{HeaderName, HeaderValue, Request, Uri};

use super::check::{self, CheckInput, Edits, Op, Verdict};
use super::config::{ExtAuthConfig, HttpService};

/// Envoy's marker of a body cut at the buffering limit.
const PARTIAL_BODY: HeaderName = HeaderName::from_static("x-envoy-auth-partial-body");

/// The most of an allowing answer's body that is read (and dropped) so its connection
/// can be reused; a longer one fails the check.
const MAX_ALLOW_BODY: usize = 64 * 1024;

pub(super) async fn ask(
    config: &ExtAuthConfig,
    service: &HttpService,
    input: &CheckInput,
) -> Result<Verdict, BoxError> {
    let req = build(config, service, input)?;
    let rsp = config.backend.send(req).await?;
    let status = rsp.status();
    if status.is_server_error() {
        return Err(format!("authorization service answered {status}").into());
    }
    if !status.is_success() {
        let mut rsp = rsp;
        gatekit_core::proxy::prepare_response(&mut rsp);
        return Ok(Verdict::Deny(rsp));
    }
    let (head, body) = rsp.into_parts();
    // The client's own values of these names go first, even when the answer has none:
    // the upstream takes them as vouched for by the service.
    let mut edits = Edits {
        remove: service.headers_to_backend.clone(),
        ..Edits::default()
    };
    for name in &service.headers_to_backend {
        for value in head.headers.get_all(name) {
            edits
                .request
                .push((name.clone(), value.clone(), Op::Append));
        }
    }
    // Read the (usually empty) body to its end so the connection goes back to the pool.
    check::read_limited(body, MAX_ALLOW_BODY).await?;
    Ok(Verdict::Allow(edits))
}

fn build(
    config: &ExtAuthConfig,
    service: &HttpService,
    input: &CheckInput,
) -> Result<Request<Body>, BoxError> {
    let head = &input.head;
    let path = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = if service.path_prefix.is_empty() {
        path.parse()?
    } else {
        format!("{}{path}", service.path_prefix).parse()?
    };
    let mut req = Request::builder()
        .method(head.method.clone())
        .uri(uri)
        .body(match &input.body {
            Some(bytes) => Body::full(bytes.clone()),
            None => Body::empty(),
        })?;
    let headers = req.headers_mut();
    if let Some(host) = check::host(head) {
        headers.insert(HOST, host);
    }
    for value in head.headers.get_all(AUTHORIZATION) {
        headers.append(AUTHORIZATION, value.clone());
    }
    for name in &config.headers_to_ext_auth {
        if *name == HOST || *name == AUTHORIZATION || *name == CONTENT_LENGTH {
            continue;
        }
        for value in head.headers.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(bytes) = &input.body {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        headers.insert(
            PARTIAL_BODY,
            HeaderValue::from_static(if input.partial { "true" } else { "false" }),
        );
    }
    Ok(req)
}
