//! Request traces end to end: a gateway from manifests exporting over OTLP/HTTP to an
//! in-process collector (a real hyper server decoding the protobuf
//! `ExportTraceServiceRequest`), backends that record the `traceparent` they received.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use gatekit_gateway::trace::Traces;
use gatekit_gateway::{Gateway, GatewayOptions, Source, TraceSettings, TranslateOptions, Wiring};
use gatekit_tests::TestClient;
use gatekit_tests::wired::{free_port, gateway_http, route_with, service_at, write_atomic};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP collector on loopback: every span of every export, and how many
/// exports came.
struct Collector {
    addr: SocketAddr,
    spans: mpsc::UnboundedReceiver<Span>,
    exports: Arc<AtomicUsize>,
}

impl Collector {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, spans) = mpsc::unbounded_channel();
        let exports = Arc::new(AtomicUsize::new(0));
        let count = exports.clone();
        let svc = tower::service_fn(move |req: Request<gatekit_core::Body>| {
            let tx = tx.clone();
            let count = count.clone();
            async move {
                assert_eq!(req.uri().path(), "/v1/traces");
                assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let export = ExportTraceServiceRequest::decode(body).unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                for resource in export.resource_spans {
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            let _ = tx.send(span);
                        }
                    }
                }
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/x-protobuf")
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
            }
        });
        tokio::spawn(gatekit_core::server::serve(
            listener,
            svc,
            std::future::pending(),
        ));
        Self {
            addr,
            spans,
            exports,
        }
    }

    /// Every span received so far.
    fn take(&mut self) -> Vec<Span> {
        let mut all = Vec::new();
        while let Ok(span) = self.spans.try_recv() {
            all.push(span);
        }
        all
    }
}

/// Backends sharing one counter: the first request they get answers 503 when its path
/// starts with `/flaky`, every other one 200. Each request's headers are reported.
struct Backends {
    addrs: Vec<SocketAddr>,
    seen: mpsc::UnboundedReceiver<HeaderMap>,
}

impl Backends {
    async fn start(n: usize) -> Self {
        let (tx, seen) = mpsc::unbounded_channel();
        let hits = Arc::new(AtomicUsize::new(0));
        let mut addrs = Vec::new();
        for _ in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            let tx = tx.clone();
            let hits = hits.clone();
            let svc = tower::service_fn(move |req: Request<gatekit_core::Body>| {
                let first = hits.fetch_add(1, Ordering::Relaxed) == 0;
                let status = if first && req.uri().path().starts_with("/flaky") {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                let _ = tx.send(req.headers().clone());
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(gatekit_core::server::serve(
                listener,
                svc,
                std::future::pending(),
            ));
        }
        Self { addrs, seen }
    }

    fn take(&mut self) -> Vec<HeaderMap> {
        let mut all = Vec::new();
        while let Ok(headers) = self.seen.try_recv() {
            all.push(headers);
        }
        all
    }
}

/// A gateway serving one route (`/`, with a 503 retry) over `backends`; its port and
/// its tracer (when `tracing` is set).
async fn start(
    backends: &Backends,
    tracing: Option<TraceSettings>,
) -> (u16, Option<Traces>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_atomic(dir.path(), "gateway.yaml", &gateway_http(port));
    write_atomic(
        dir.path(),
        "service.yaml",
        &service_at("app", &backends.addrs),
    );
    let retry = "    retry: { attempts: 2, codes: [503], backoff: 1ms }\n";
    write_atomic(
        dir.path(),
        "route.yaml",
        &route_with("web", "/", "app", retry),
    );
    let options = GatewayOptions::default().with_tracing(tracing);
    let mut gateway = Gateway::new(options, "127.0.0.1".parse().unwrap());
    let source = Source::Dirs(vec![dir.path().to_path_buf()]);
    let mut wiring = Wiring::start(&mut gateway, source, TranslateOptions::default())
        .await
        .unwrap();
    let traces = gateway.traces().cloned();
    tokio::spawn(async move { wiring.serve(&mut gateway, std::future::pending()).await });
    (port, traces, dir)
}

fn get(port: u16, path: &str, traceparent: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(parent) = traceparent {
        req = req
            .header("traceparent", parent)
            .header("tracestate", "vendor=x");
    }
    req.body(Full::default()).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

/// One line: trace, span, parent, kind, name and attributes.
fn describe(span: &Span) -> String {
    let attributes: Vec<String> = span
        .attributes
        .iter()
        .map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => format!("{}={s}", kv.key),
                Some(Value::IntValue(i)) => format!("{}={i}", kv.key),
                other => format!("{}={other:?}", kv.key),
            },
        )
        .collect();
    let kind = SpanKind::try_from(span.kind).map_or("?", |k| k.as_str_name());
    format!(
        "trace={} span={} parent={} {kind} {:?} {:.3}ms {}",
        hex(&span.trace_id),
        hex(&span.span_id),
        hex(&span.parent_span_id),
        span.name,
        span.end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano) as f64
            / 1e6,
        attributes.join(" ")
    )
}

/// `traceparent`'s trace id and parent span id.
fn parent_of(headers: &HeaderMap) -> (String, String) {
    let value = headers["traceparent"].to_str().unwrap();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_yields_server_routing_and_attempt_spans_under_the_clients_parent() {
    let mut collector = Collector::start().await;
    let mut backends = Backends::start(1).await;
    let settings = TraceSettings::new(format!("http://{}", collector.addr));
    let (port, traces, _dir) = start(&backends, Some(settings)).await;
    let traces = traces.expect("the tracer is built");
    let client = TestClient::new();

    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let reply = client.send(get(port, "/hello", Some(&parent))).await;
    assert_eq!(reply.status, StatusCode::OK);
    traces.flush().await;

    let spans = collector.take();
    // What the collector received, one line per span (`-- --nocapture` shows it).
    for span in &spans {
        println!("{}", describe(span));
    }
    assert_eq!(spans.len(), 3, "{spans:#?}");
    for span in &spans {
        assert_eq!(hex(&span.trace_id), CLIENT_TRACE, "{span:?}");
    }
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a server span");
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(server.name, "GET default/web");
    assert_eq!(
        attr(server, "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    let routing = spans
        .iter()
        .find(|s| s.name == "routing")
        .expect("a routing span");
    assert_eq!(routing.parent_span_id, server.span_id);
    assert_eq!(
        attr(routing, "gatekit.route"),
        Some(Value::StringValue("default/web".into()))
    );
    let attempt = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("an attempt span");
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(attr(attempt, "gatekit.attempt"), Some(Value::IntValue(1)));

    // The backend's parent is the attempt span, in the client's trace; its trace state
    // is carried.
    let seen = backends.take();
    assert_eq!(seen.len(), 1);
    let (trace, span) = parent_of(&seen[0]);
    assert_eq!(trace, CLIENT_TRACE);
    assert_eq!(span, hex(&attempt.span_id));
    assert_eq!(seen[0]["tracestate"], "vendor=x");
    assert_eq!(collector.exports.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_yields_one_attempt_span_per_attempt() {
    let mut collector = Collector::start().await;
    let mut backends = Backends::start(2).await;
    let settings = TraceSettings::new(format!("http://{}/v1/traces", collector.addr));
    let (port, traces, _dir) = start(&backends, Some(settings)).await;
    let client = TestClient::new();

    // No traceparent: the gateway starts the trace.
    let reply = client.send(get(port, "/flaky", None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    traces.unwrap().flush().await;

    let spans = collector.take();
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a server span");
    assert!(server.parent_span_id.is_empty(), "a root span");
    let mut attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert_eq!(
        attr(attempts[0], "gatekit.attempt"),
        Some(Value::IntValue(1))
    );
    assert_eq!(
        attr(attempts[0], "http.response.status_code"),
        Some(Value::IntValue(503))
    );
    assert_eq!(
        attr(attempts[1], "gatekit.attempt"),
        Some(Value::IntValue(2))
    );
    assert_eq!(
        attr(attempts[1], "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    // Each upstream request named its own attempt.
    let seen: Vec<String> = backends.take().iter().map(|h| parent_of(h).1).collect();
    let expected: Vec<String> = attempts.iter().map(|s| hex(&s.span_id)).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tracing_off_nothing_is_exported_and_no_traceparent_is_added() {
    let collector = Collector::start().await;
    let mut backends = Backends::start(1).await;
    let (port, traces, _dir) = start(&backends, None).await;
    assert!(traces.is_none());
    let client = TestClient::new();

    assert_eq!(
        client.send(get(port, "/a", None)).await.status,
        StatusCode::OK
    );
    // A client's own trace context passes as it came.
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let reply = client.send(get(port, "/b", Some(&parent))).await;
    assert_eq!(reply.status, StatusCode::OK);

    let seen = backends.take();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].get("traceparent").is_none());
    assert!(seen[0].get("tracestate").is_none());
    assert_eq!(seen[1]["traceparent"], parent.as_str());
    assert_eq!(collector.exports.load(Ordering::Relaxed), 0);
}
