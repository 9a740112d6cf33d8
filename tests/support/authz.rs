//! In-process external authorization services for the end-to-end tests: one speaking
//! the HTTP mode (a hyper HTTP/1.1 server), one speaking Envoy's
//! `envoy.service.auth.v3.Authorization/Check` over h2c with gatekit-auth's own
//! prost messages (`gatekit_auth::extauth::proto`). Both decide with the same closure
//! and log every check they were asked.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gatekit_auth::extauth::proto;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::TcpListener;

/// What an authorization service was asked: the checked request's method, path (with
/// query), headers and body (as the gateway forwarded them).
#[derive(Clone, Debug)]
pub struct Check {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An authorization service's answer.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Allow, adding these headers to the upstream request.
    Allow(Vec<(&'static str, String)>),
    /// Deny with this status, headers and body.
    Deny {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Never answer (a service that hangs).
    Hang,
}

type Decide = Arc<dyn Fn(&Check) -> Verdict + Send + Sync>;

/// An authorization service on a loopback port.
#[derive(Clone, Debug)]
pub struct AuthService {
    pub addr: SocketAddr,
    checks: Arc<Mutex<Vec<Check>>>,
}

impl AuthService {
    /// The HTTP mode: `Allow` is a 200 with the headers, `Deny` its status, headers and
    /// body.
    pub async fn http<F>(decide: F) -> Self
    where
        F: Fn(&Check) -> Verdict + Send + Sync + 'static,
    {
        Self::start(Arc::new(decide), false).await
    }

    /// Envoy's v3 gRPC protocol over h2c: `Allow` is an `OK` status with an
    /// `ok_response` adding the headers, `Deny` a `PERMISSION_DENIED` status with a
    /// `denied_response`.
    pub async fn grpc<F>(decide: F) -> Self
    where
        F: Fn(&Check) -> Verdict + Send + Sync + 'static,
    {
        Self::start(Arc::new(decide), true).await
    }

    /// The checks asked so far.
    pub fn checks(&self) -> Vec<Check> {
        self.checks.lock().unwrap().clone()
    }

    async fn start(decide: Decide, grpc: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let checks: Arc<Mutex<Vec<Check>>> = Arc::default();
        let log = checks.clone();
        tokio::spawn(async move {
            loop {
                let Ok((io, _)) = listener.accept().await else {
                    return;
                };
                let decide = decide.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let decide = decide.clone();
                        let log = log.clone();
                        async move {
                            let (check, rsp) = if grpc {
                                grpc_answer(req, &*decide).await
                            } else {
                                http_answer(req, &*decide).await
                            };
                            log.lock().unwrap().push(check);
                            Ok::<_, Infallible>(rsp.await)
                        }
                    });
                    let io = TokioIo::new(io);
                    if grpc {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await;
                    }
                });
            }
        });
        Self { addr, checks }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An answer now, or never (`Hang`).
fn ready_or_hang(rsp: Option<Response<Body>>) -> Answer {
    Box::pin(async move {
        match rsp {
            Some(rsp) => rsp,
            None => std::future::pending().await,
        }
    })
}

async fn http_answer(
    req: Request<Incoming>,
    decide: &(dyn Fn(&Check) -> Verdict + Send + Sync),
) -> (Check, Answer) {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let check = Check {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let rsp = match decide(&check) {
        Verdict::Allow(headers) => {
            let mut rsp = Response::builder();
            for (k, v) in headers {
                rsp = rsp.header(k, v);
            }
            Some(rsp.body(full(Bytes::new())).unwrap())
        }
        Verdict::Deny {
            status,
            headers,
            body,
        } => {
            let mut rsp = Response::builder().status(status);
            for (k, v) in headers {
                rsp = rsp.header(k, v);
            }
            Some(rsp.body(full(body)).unwrap())
        }
        Verdict::Hang => None,
    };
    (check, ready_or_hang(rsp))
}

fn option(key: &str, value: String) -> proto::HeaderValueOption {
    proto::HeaderValueOption {
        header: Some(proto::HeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: 0,
    }
}

async fn grpc_answer(
    req: Request<Incoming>,
    decide: &(dyn Fn(&Check) -> Verdict + Send + Sync),
) -> (Check, Answer) {
    assert_eq!(
        req.uri().path(),
        "/envoy.service.auth.v3.Authorization/Check"
    );
    let body = req.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body[0], 0, "a compressed gRPC message");
    let request = proto::CheckRequest::decode(&body[5..]).unwrap();
    let http = request
        .attributes
        .and_then(|a| a.request)
        .and_then(|r| r.http)
        .unwrap_or_default();
    let check = Check {
        method: http.method.clone(),
        path: http.path.clone(),
        headers: header_map(&http.headers),
        body: if http.raw_body.is_empty() {
            Bytes::from(http.body.into_bytes())
        } else {
            Bytes::from(http.raw_body)
        },
    };
    let status = |code| {
        Some(proto::Status {
            code,
            message: String::new(),
        })
    };
    let msg = match decide(&check) {
        Verdict::Allow(headers) => Some(proto::CheckResponse {
            status: status(0),
            http_response: Some(proto::HttpResponse::Ok(proto::OkHttpResponse {
                headers: headers.into_iter().map(|(k, v)| option(k, v)).collect(),
                headers_to_remove: Vec::new(),
                response_headers_to_add: Vec::new(),
            })),
        }),
        Verdict::Deny {
            status: code,
            headers,
            body,
        } => Some(proto::CheckResponse {
            status: status(7),
            http_response: Some(proto::HttpResponse::Denied(proto::DeniedHttpResponse {
                status: Some(proto::HttpStatus {
                    code: i32::from(code),
                }),
                headers: headers.into_iter().map(|(k, v)| option(k, v)).collect(),
                body,
            })),
        }),
        Verdict::Hang => None,
    };
    (check, ready_or_hang(msg.map(|m| grpc_response(&m))))
}

/// The headers of a gRPC check (pseudo-headers left out).
fn header_map(headers: &HashMap<String, String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
            map.insert(k, v);
        }
    }
    map
}

/// One unary gRPC answer: the message framed, `grpc-status: 0` in the trailers.
fn grpc_response(msg: &proto::CheckResponse) -> Response<Body> {
    let msg = msg.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&msg);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(Bytes::from(framed))
        .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) })
        .boxed();
    Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .unwrap()
}
