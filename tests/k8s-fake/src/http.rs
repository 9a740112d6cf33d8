//! The HTTP handler: request log, injected faults, authentication, routing to the store.
//!
//! Order of checks for each request: log it; apply a configured delay; answer an injected
//! failure if a rule matches; check the bearer token (401); then serve. Every failure is a
//! `Status` object with the matching HTTP code; malformed input is a 400, never a panic.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use serde_json::{Value, json};

use crate::control::{RequestRecord, parse_query};
use crate::patch::{self, PatchKind};
use crate::registry::{Target, parse_path};
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::Shared;
use crate::status::{ApiError, reason_for, status_object};
use crate::store::{ListParams, WatchFilter, WatchParams};
use crate::watch;

/// The response body type of the fake.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Largest request body accepted.
const MAX_BODY: usize = 8 << 20;

/// Default watch length when `timeoutSeconds` is absent.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// Query parameters with lookup helpers.
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

/// Serves one request.
pub(crate) async fn handle<B>(
    shared: Arc<Shared>,
    req: Request<B>,
) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = Query(parse_query(req.uri().query().unwrap_or("")));
    let delay = {
        let mut c = shared.control.lock();
        c.requests.push(RequestRecord {
            method: method.clone(),
            path: path.clone(),
            query: query.0.clone(),
        });
        c.delay_for(&path)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let failure = shared.control.lock().take_failure(&method, &path);
    if let Some((code, retry_after)) = failure {
        let msg = format!("injected failure {code}");
        let mut r = json_response(
            code,
            &status_object(code, "Failure", reason_for(code), &msg),
        );
        if let Some(s) = retry_after
            && let Ok(v) = http::HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(r);
    }
    if let Some(token) = &shared.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t.trim() == token);
        if !ok {
            return Ok(error_response(&ApiError::new(
                401,
                "Unauthorized",
                "Unauthorized",
            )));
        }
    }
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz" | "/readyz" | "/livez") => return Ok(text_ok("ok")),
        (&Method::GET, "/version") => {
            return Ok(json_response(
                200,
                &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-gatekit-fake", "platform": "linux/amd64"}),
            ));
        }
        _ => {}
    }
    let target = {
        let store = shared.store.lock();
        parse_path(&store.registry, &path)
    };
    let Some(target) = target else {
        return Ok(error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )));
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "could not read the request body: {e}"
            ))));
        }
    };
    let r = match serve(&shared, &method, &target, &query, &content_type, &body) {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    Ok(r)
}

fn text_ok(s: &'static str) -> Response<Body> {
    let mut r = Response::new(full(s));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn list_params(shared: &Shared, target: &Target, q: &Query) -> Result<ListParams, ApiError> {
    let kind = shared.store.lock().registry.get(target.res).ty.kind.clone();
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), &kind)
        .map_err(|e| ApiError::bad_request(e.0))?;
    let limit = match q.get("limit") {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
    };
    Ok(ListParams {
        namespace: target.namespace.clone(),
        labels,
        fields,
        limit,
        continue_token: q.get("continue").map(str::to_owned),
        resource_version: q.get("resourceVersion").map(str::to_owned),
        rv_match: q.get("resourceVersionMatch").map(str::to_owned),
    })
}

fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    target: &Target,
    q: &Query,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let dry_run = q.get("dryRun") == Some("All");
    let ns = target.namespace.as_deref();
    let res = target.res;
    let Some(name) = target.name.as_deref() else {
        // Collection.
        return match *method {
            Method::GET if q.flag("watch") => watch(shared, target, q),
            Method::GET => {
                let p = list_params(shared, target, q)?;
                let v = shared.store.lock().list(res, &p)?;
                Ok(json_response(200, &v))
            }
            Method::POST => {
                let ty_namespaced = shared.store.lock().registry.get(res).ty.namespaced;
                if ty_namespaced && ns.is_none() {
                    return Err(ApiError::new(
                        405,
                        "MethodNotAllowed",
                        "create needs a namespaced path",
                    ));
                }
                let obj = parse_json(body)?;
                let v = shared.store.lock().create(res, ns, obj, dry_run, false)?;
                Ok(json_response(201, &v))
            }
            Method::DELETE => {
                let p = list_params(shared, target, q)?;
                let v = shared.store.lock().delete_collection(res, &p)?;
                Ok(json_response(200, &v))
            }
            _ => Err(ApiError::new(405, "MethodNotAllowed", "method not allowed")),
        };
    };
    match *method {
        Method::GET => {
            let v = shared.store.lock().get(res, ns, name)?;
            Ok(json_response(200, &v))
        }
        Method::PUT => {
            let obj = parse_json(body)?;
            let v = shared
                .store
                .lock()
                .replace(res, ns, name, obj, target.status, dry_run)?;
            Ok(json_response(200, &v))
        }
        Method::PATCH => {
            let kind = PatchKind::from_content_type(content_type).ok_or_else(|| {
                ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type:?}"),
                )
            })?;
            if kind == PatchKind::Apply && q.get("fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let p = patch::parse_body(body)?;
            let (v, created) =
                shared
                    .store
                    .lock()
                    .patch(res, ns, name, kind, &p, target.status, dry_run)?;
            Ok(json_response(if created { 201 } else { 200 }, &v))
        }
        Method::DELETE if !target.status => {
            let opts = if body.is_empty() {
                Value::Null
            } else {
                parse_json(body)?
            };
            let deleted = shared.store.lock().delete(res, ns, name, &opts, dry_run)?;
            match deleted {
                Some(obj) => Ok(json_response(200, &obj)),
                None => {
                    let plural = shared.store.lock().registry.get(res).ty.plural.clone();
                    let mut s = status_object(200, "Success", "", "");
                    s["details"] = json!({"name": name, "kind": plural});
                    Ok(json_response(200, &s))
                }
            }
        }
        _ => Err(ApiError::new(405, "MethodNotAllowed", "method not allowed")),
    }
}

fn watch(shared: &Arc<Shared>, target: &Target, q: &Query) -> Result<Response<Body>, ApiError> {
    let send_initial = q.flag("sendInitialEvents");
    let rv_match = q.get("resourceVersionMatch").filter(|m| !m.is_empty());
    match (send_initial, rv_match) {
        (true, Some("NotOlderThan")) | (false, None) => {}
        (true, _) => {
            return Err(ApiError::invalid(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
    }
    let timeout = match q.get("timeoutSeconds") {
        None | Some("") => DEFAULT_WATCH_TIMEOUT,
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
    };
    let p = list_params(shared, target, q)?;
    let start = shared.store.lock().watch(WatchParams {
        filter: WatchFilter {
            res: target.res,
            namespace: p.namespace,
            labels: p.labels,
            fields: p.fields,
        },
        resource_version: p.resource_version,
        bookmarks: q.flag("allowWatchBookmarks"),
        send_initial_events: send_initial,
    })?;
    let mut r = Response::new(watch::body(shared.clone(), start, timeout));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
