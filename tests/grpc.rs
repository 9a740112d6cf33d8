//! GRPCRoute end to end with a real gRPC client and real gRPC servers: tonic's generic
//! client and server (`tonic::client::Grpc`, `tonic::server::Grpc`) with a raw-bytes
//! codec, no protobuf. The gateway is the wired gateway on Gateway API manifests; the
//! backends are tonic servers on loopback (h2c, Services with `appProtocol:
//! kubernetes.io/h2c`) that answer with response metadata naming the backend
//! (`x-backend`), the method path (`x-path`) and every `x-*` request metadata they got
//! (`echo-<name>`); `x-want-status` / `x-want-message` / `x-want-details` make them fail
//! with that status (and an `x-trailer: kept` metadata). Methods ending in
//! `/ServerStream` stream the number of messages the request names, `/Bidi` echoes
//! each message as it comes (prefixed with the backend's name), everything else is a
//! unary echo.
//!
//! Each test is named after what it proves, against the GRPCRoute spec
//! (`apis/v1/grpcroute_types.go`) and its conformance tests (`conformance/tests/grpcroute-*`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures_util::StreamExt;
use gatekit_tests::closed_port;
use gatekit_tests::wired::{Wired, free_port, gateway_http, h2c_service};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{KeyAndValueRef, MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Status};

/// Bounds a step of a test in time.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("not within 10 s")
}

// === the codec ===

/// A gRPC codec whose messages are raw bytes (gRPC framing only, no protobuf).
#[derive(Clone, Copy, Debug, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

// === the backends ===

/// A tonic gRPC server on loopback (h2c) named `name`; reports every call's path.
struct GrpcBackend {
    name: &'static str,
    addr: SocketAddr,
    paths: mpsc::UnboundedReceiver<String>,
}

impl GrpcBackend {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, paths) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                io.set_nodelay(true).unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let _ = tx.send(req.uri().path().to_owned());
                        async move { Ok::<_, Infallible>(answer(name, req).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        Self { name, addr, paths }
    }

    /// The path of the next call this backend received.
    async fn next_path(&mut self) -> String {
        within(self.paths.recv()).await.expect("backend stopped")
    }

    /// The Service manifest for this backend.
    fn service(&self) -> String {
        h2c_service(self.name, self.addr)
    }
}

/// The response metadata of every answer: who answered, which method, and every `x-*`
/// request metadata as `echo-<name>` (values joined with `,`).
fn echoed(name: &str, path: &str, md: &MetadataMap) -> MetadataMap {
    let mut out = MetadataMap::new();
    out.insert("x-backend", name.parse().unwrap());
    out.insert("x-path", path.parse().unwrap());
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for kv in md.iter() {
        if let KeyAndValueRef::Ascii(k, v) = kv
            && k.as_str().starts_with("x-")
        {
            seen.entry(k.as_str().to_owned())
                .or_default()
                .push(v.to_str().unwrap().to_owned());
        }
    }
    for (k, v) in seen {
        let key = MetadataKey::from_bytes(format!("echo-{k}").as_bytes()).unwrap();
        out.insert(key, v.join(",").parse().unwrap());
    }
    out
}

/// The status the request asks the backend to fail with, carrying `md` plus
/// `x-trailer: kept`.
fn wanted_status(req: &MetadataMap, mut md: MetadataMap) -> Option<Status> {
    let code: i32 = req.get("x-want-status")?.to_str().unwrap().parse().unwrap();
    let message = req
        .get("x-want-message")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let details = req
        .get("x-want-details")
        .map(|v| Bytes::from(v.to_str().unwrap().to_owned()))
        .unwrap_or_default();
    md.insert("x-trailer", "kept".parse().unwrap());
    Some(Status::with_details_and_metadata(
        Code::from_i32(code),
        message,
        details,
        md,
    ))
}

/// Answers one gRPC call (see the module docs).
async fn answer(
    name: &'static str,
    req: http::Request<Incoming>,
) -> http::Response<tonic::body::Body> {
    let path = req.uri().path().to_owned();
    let mut grpc = tonic::server::Grpc::new(Raw);
    if path.ends_with("/ServerStream") {
        let svc = tower::service_fn(move |r: tonic::Request<Bytes>| {
            let md = echoed(name, &path, r.metadata());
            let failure = wanted_status(r.metadata(), md.clone());
            let n: usize = std::str::from_utf8(r.get_ref()).unwrap().parse().unwrap();
            async move {
                let mut items: Vec<Result<Bytes, Status>> =
                    (0..n).map(|i| Ok(Bytes::from(i.to_string()))).collect();
                items.extend(failure.map(Err));
                let mut rsp = tonic::Response::new(futures_util::stream::iter(items));
                *rsp.metadata_mut() = md;
                Ok::<_, Status>(rsp)
            }
        });
        grpc.server_streaming(svc, req).await
    } else if path.ends_with("/Bidi") {
        let svc = tower::service_fn(move |r: tonic::Request<tonic::Streaming<Bytes>>| {
            let md = echoed(name, &path, r.metadata());
            async move {
                let out = r.into_inner().map(move |m| {
                    m.map(|b| {
                        let mut v = format!("{name}:").into_bytes();
                        v.extend_from_slice(&b);
                        Bytes::from(v)
                    })
                });
                let mut rsp = tonic::Response::new(out);
                *rsp.metadata_mut() = md;
                Ok::<_, Status>(rsp)
            }
        });
        grpc.streaming(svc, req).await
    } else {
        let svc = tower::service_fn(move |r: tonic::Request<Bytes>| {
            let md = echoed(name, &path, r.metadata());
            let failure = wanted_status(r.metadata(), md.clone());
            async move {
                if let Some(status) = failure {
                    return Err(status);
                }
                let mut rsp = tonic::Response::new(r.into_inner());
                *rsp.metadata_mut() = md;
                Ok(rsp)
            }
        });
        grpc.unary(svc, req).await
    }
}

// === the client ===

/// One h2c connection to the gateway as a tower service for `tonic::client::Grpc`.
#[derive(Clone)]
struct H2c(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

type H2cFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, hyper::Error>> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for H2c {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = H2cFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> H2cFuture {
        Box::pin(self.0.send_request(req))
    }
}

/// A tonic gRPC client of the gateway on `port`, sending `:authority` `authority`.
struct Client {
    grpc: tonic::client::Grpc<H2c>,
}

impl Client {
    async fn connect(port: u16, authority: &str) -> Self {
        let tcp = within(TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let (sender, conn) = within(hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            TokioIo::new(tcp),
        ))
        .await
        .unwrap();
        tokio::spawn(conn);
        let origin = format!("http://{authority}").parse().unwrap();
        Self {
            grpc: tonic::client::Grpc::with_origin(H2c(sender), origin),
        }
    }

    async fn ready(&mut self) {
        within(self.grpc.ready()).await.unwrap();
    }

    /// A unary call of `path` with request metadata `md` and message `msg`.
    async fn unary(
        &mut self,
        path: &str,
        md: &[(&str, &str)],
        msg: &str,
    ) -> Result<tonic::Response<Bytes>, Status> {
        self.ready().await;
        let req = request(Bytes::from(msg.to_owned()), md);
        within(self.grpc.unary(req, pq(path), Raw)).await
    }

    /// Which backend answered a unary call of `path`, or the call's status code.
    async fn backend(&mut self, path: &str, md: &[(&str, &str)]) -> Result<String, Code> {
        match self.unary(path, md, "hello").await {
            Ok(rsp) => {
                assert_eq!(rsp.get_ref(), "hello", "{path}: the message is echoed");
                assert_eq!(get(rsp.metadata(), "x-path").as_deref(), Some(path));
                Ok(get(rsp.metadata(), "x-backend").unwrap())
            }
            Err(status) => Err(status.code()),
        }
    }

    /// A server-streaming call of `path` asking for `n` messages.
    async fn server_stream(
        &mut self,
        path: &str,
        md: &[(&str, &str)],
        n: usize,
    ) -> Result<tonic::Response<tonic::Streaming<Bytes>>, Status> {
        self.ready().await;
        let req = request(Bytes::from(n.to_string()), md);
        within(self.grpc.server_streaming(req, pq(path), Raw)).await
    }
}

fn pq(path: &str) -> PathAndQuery {
    path.parse().unwrap()
}

fn request<T>(msg: T, md: &[(&str, &str)]) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    for (k, v) in md {
        let key = MetadataKey::from_bytes(k.as_bytes()).unwrap();
        req.metadata_mut()
            .append(key, MetadataValue::try_from(*v).unwrap());
    }
    req
}

/// The first value of metadata `key`.
fn get(md: &MetadataMap, key: &str) -> Option<String> {
    md.get(key).map(|v| v.to_str().unwrap().to_owned())
}

/// Every value of metadata `key`, in order.
fn all(md: &MetadataMap, key: &str) -> Vec<String> {
    md.get_all(key)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

// === the gateway ===

/// A gateway serving `docs` (manifests) after a Gateway `gw` with one HTTP listener on
/// `port` and a Service for each backend.
struct Env {
    port: u16,
    wired: Wired,
    _dir: tempfile::TempDir,
}

async fn gateway(backends: &[&GrpcBackend], docs: &[String]) -> Env {
    let port = free_port();
    gateway_on(port, gateway_http(port), backends, docs).await
}

async fn gateway_on(port: u16, gw: String, backends: &[&GrpcBackend], docs: &[String]) -> Env {
    let mut all = vec![gw];
    all.extend(backends.iter().map(|b| b.service()));
    all.extend(docs.iter().cloned());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), all.join("---\n")).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    Env {
        port,
        wired,
        _dir: dir,
    }
}

impl Env {
    async fn client(&self) -> Client {
        Client::connect(self.port, "grpc.example.com").await
    }
}

/// A GRPCRoute `name` on Gateway `gw` with `rules` (YAML list items, indented by two
/// spaces).
fn grpc_route(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n\
         metadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  parentRefs: [{{ name: gw }}]\n  rules:\n{rules}"
    )
}

const SVC: &str = "gatekit.test.GrpcEcho";

fn method(m: &str) -> String {
    format!("/{SVC}/{m}")
}

// === matching ===

/// `grpcroute-exact-method-matching`: service and method `Exact` route each method to
/// its backend; a method no rule names gets `UNIMPLEMENTED` (as the conformance test
/// expects), from the gateway, not a backend.
#[tokio::test]
async fn exact_service_and_method_match_and_an_unmatched_method_is_unimplemented() {
    let mut v1 = GrpcBackend::start("v1").await;
    let v2 = GrpcBackend::start("v2").await;
    let route = grpc_route(
        "exact",
        &format!(
            "  - matches: [{{ method: {{ service: {SVC}, method: Echo }} }}]\n    backendRefs: [{{ name: v1, port: 80 }}]\n\
             \x20 - matches: [{{ method: {{ type: Exact, service: {SVC}, method: EchoTwo }} }}]\n    backendRefs: [{{ name: v2, port: 80 }}]\n"
        ),
    );
    let env = gateway(&[&v1, &v2], &[route]).await;
    let mut c = env.client().await;
    assert_eq!(c.backend(&method("Echo"), &[]).await, Ok("v1".into()));
    assert_eq!(v1.next_path().await, method("Echo"));
    assert_eq!(c.backend(&method("EchoTwo"), &[]).await, Ok("v2".into()));
    assert_eq!(
        c.backend(&method("EchoThree"), &[]).await,
        Err(Code::Unimplemented)
    );
    // Service matching is exact and case-sensitive.
    assert_eq!(
        c.backend("/gatekit.test.grpcecho/Echo", &[]).await,
        Err(Code::Unimplemented)
    );
    // The unmatched calls never reached a backend: the next call v1 sees is this one.
    assert_eq!(c.backend(&method("Echo"), &[]).await, Ok("v1".into()));
    assert_eq!(v1.next_path().await, method("Echo"));
}

/// A service-only match takes every method of that service (whole service name, not a
/// prefix of it); a method-only match takes that method of any service.
#[tokio::test]
async fn service_only_and_method_only_matches() {
    let v1 = GrpcBackend::start("v1").await;
    let v2 = GrpcBackend::start("v2").await;
    let route = grpc_route(
        "partial",
        "  - matches: [{ method: { service: gatekit.test.A } }]\n    backendRefs: [{ name: v1, port: 80 }]\n\
         \x20 - matches: [{ method: { method: Shared } }]\n    backendRefs: [{ name: v2, port: 80 }]\n",
    );
    let env = gateway(&[&v1, &v2], &[route]).await;
    let mut c = env.client().await;
    for (path, want) in [
        ("/gatekit.test.A/Foo", Ok("v1".to_owned())),
        ("/gatekit.test.A/Bar", Ok("v1".to_owned())),
        ("/gatekit.test.B/Shared", Ok("v2".to_owned())),
        ("/other.Svc/Shared", Ok("v2".to_owned())),
        ("/gatekit.test.AB/Foo", Err(Code::Unimplemented)),
        ("/gatekit.test.B/SharedToo", Err(Code::Unimplemented)),
    ] {
        assert_eq!(c.backend(path, &[]).await, want, "{path}");
    }
}

/// `type: RegularExpression` matches service and method with (anchored) regexes.
#[tokio::test]
async fn regular_expression_method_match() {
    let v1 = GrpcBackend::start("v1").await;
    let route = grpc_route(
        "regex",
        "  - matches: [{ method: { type: RegularExpression, service: 'gatekit\\.v[0-9]+\\.Store', method: 'Get.*' } }]\n    backendRefs: [{ name: v1, port: 80 }]\n",
    );
    let env = gateway(&[&v1], &[route]).await;
    let mut c = env.client().await;
    for (path, want) in [
        ("/gatekit.v1.Store/GetItem", Ok("v1".to_owned())),
        ("/gatekit.v22.Store/Get", Ok("v1".to_owned())),
        ("/gatekit.vX.Store/GetItem", Err(Code::Unimplemented)),
        ("/gatekit.v1.Store/PutItem", Err(Code::Unimplemented)),
        ("/xgatekit.v1.Store/GetItem", Err(Code::Unimplemented)),
    ] {
        assert_eq!(c.backend(path, &[]).await, want, "{path}");
    }
}

/// `grpcroute-header-matching`: exact header matches (all of a match's headers must
/// match; the rule with more header matches wins), plus a `RegularExpression` one.
#[tokio::test]
async fn header_matches_exact_and_regular_expression() {
    let v1 = GrpcBackend::start("v1").await;
    let v2 = GrpcBackend::start("v2").await;
    let v3 = GrpcBackend::start("v3").await;
    let route = grpc_route(
        "headers",
        "  - matches: [{ headers: [{ name: version, value: one }] }]\n    backendRefs: [{ name: v1, port: 80 }]\n\
         \x20 - matches: [{ headers: [{ name: version, value: two }] }]\n    backendRefs: [{ name: v2, port: 80 }]\n\
         \x20 - matches: [{ headers: [{ name: version, value: two }, { name: color, value: orange }] }]\n    backendRefs: [{ name: v1, port: 80 }]\n\
         \x20 - matches: [{ headers: [{ name: color, value: blue }] }, { headers: [{ name: color, value: green }] }]\n    backendRefs: [{ name: v1, port: 80 }]\n\
         \x20 - matches: [{ headers: [{ name: color, value: red }] }, { headers: [{ name: color, value: yellow }] }]\n    backendRefs: [{ name: v2, port: 80 }]\n\
         \x20 - matches: [{ headers: [{ type: RegularExpression, name: tier, value: 'gold|plat.*' }] }]\n    backendRefs: [{ name: v3, port: 80 }]\n",
    );
    let env = gateway(&[&v1, &v2, &v3], &[route]).await;
    let mut c = env.client().await;
    let echo = method("Echo");
    for (md, want) in [
        (&[("version", "one")][..], Ok("v1".to_owned())),
        (&[("version", "two")], Ok("v2".to_owned())),
        (
            &[("version", "two"), ("color", "orange")],
            Ok("v1".to_owned()),
        ),
        (
            &[("version", "two"), ("color", "blue")],
            Ok("v2".to_owned()),
        ),
        (&[("color", "blue")], Ok("v1".to_owned())),
        (&[("color", "green")], Ok("v1".to_owned())),
        (&[("color", "red")], Ok("v2".to_owned())),
        (&[("color", "yellow")], Ok("v2".to_owned())),
        (&[("tier", "gold")], Ok("v3".to_owned())),
        (&[("tier", "platinum")], Ok("v3".to_owned())),
        (&[("tier", "silver")], Err(Code::Unimplemented)),
        // Header values match exactly (case-sensitive); names do not care about case.
        (&[("version", "ONE")], Err(Code::Unimplemented)),
        (&[("color", "purple")], Err(Code::Unimplemented)),
    ] {
        assert_eq!(c.backend(&echo, md).await, want, "{md:?}");
    }
}

/// The GRPCRoute precedence rules: more characters in a matching service first, then
/// in a matching method, then more header matches; across routes with equal matches
/// the route first in alphabetical order.
#[tokio::test]
async fn precedence_is_service_then_method_then_header_count() {
    let vs: Vec<GrpcBackend> = {
        let mut vs = Vec::new();
        for name in [
            "vmethod",
            "vservice",
            "vexact",
            "vheaders",
            "vmethodheader",
            "vlater",
        ] {
            vs.push(GrpcBackend::start(name).await);
        }
        vs
    };
    let route = grpc_route(
        "a-precedence",
        "  - matches: [{ method: { method: Echo } }]\n    backendRefs: [{ name: vmethod, port: 80 }]\n\
         \x20 - matches: [{ method: { service: gatekit.test.P } }]\n    backendRefs: [{ name: vservice, port: 80 }]\n\
         \x20 - matches: [{ method: { service: gatekit.test.P, method: Exact } }]\n    backendRefs: [{ name: vexact, port: 80 }]\n\
         \x20 - matches: [{ headers: [{ name: x-h, value: '1' }, { name: x-i, value: '1' }] }]\n    backendRefs: [{ name: vheaders, port: 80 }]\n\
         \x20 - matches: [{ method: { method: Echo }, headers: [{ name: x-h, value: '1' }] }]\n    backendRefs: [{ name: vmethodheader, port: 80 }]\n",
    );
    // The same match as the first route's service+method rule, in a route that sorts
    // later: never chosen.
    let later = grpc_route(
        "b-precedence",
        "  - matches: [{ method: { service: gatekit.test.P, method: Exact } }]\n    backendRefs: [{ name: vlater, port: 80 }]\n",
    );
    let refs: Vec<&GrpcBackend> = vs.iter().collect();
    let env = gateway(&refs, &[route, later]).await;
    let mut c = env.client().await;
    let h = ("x-h", "1");
    let i = ("x-i", "1");
    for (path, md, want) in [
        // Service and method beat service only (and the later route's equal rule).
        ("/gatekit.test.P/Exact", &[][..], "vexact"),
        // A matching service beats a matching method, even one with a header match.
        ("/gatekit.test.P/Echo", &[], "vservice"),
        ("/gatekit.test.P/Echo", &[h, i], "vservice"),
        // A matching method beats no method match, whatever the headers.
        ("/other.Svc/Echo", &[], "vmethod"),
        ("/other.Svc/Echo", &[h, i], "vmethodheader"),
        // Between method matches, more header matches win.
        ("/other.Svc/Echo", &[h], "vmethodheader"),
        // No method match anywhere: the header rule.
        ("/other.Svc/Other", &[h, i], "vheaders"),
    ] {
        assert_eq!(
            c.backend(path, md).await,
            Ok(want.to_owned()),
            "{path} {md:?}"
        );
    }
}

// === hostnames ===

/// `grpcroute-listener-hostname-matching`: four listeners on one port with different
/// hostnames, a route per listener; the `:authority` picks the listener.
#[tokio::test]
async fn listener_hostnames_pick_the_route() {
    let v1 = GrpcBackend::start("v1").await;
    let v2 = GrpcBackend::start("v2").await;
    let v3 = GrpcBackend::start("v3").await;
    let port = free_port();
    let listener = |name: &str, host: &str| {
        format!("  - {{ name: {name}, port: {port}, protocol: HTTP, hostname: '{host}' }}\n")
    };
    let gw = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{ name: gw, namespace: default }}\n\
         spec:\n  gatewayClassName: gatekit\n  listeners:\n{}{}{}{}",
        listener("listener-1", "bar.com"),
        listener("listener-2", "foo.bar.com"),
        listener("listener-3", "*.bar.com"),
        listener("listener-4", "*.foo.com"),
    );
    let route = |name: &str, sections: &[&str], backend: &str| {
        let parents: Vec<String> = sections
            .iter()
            .map(|s| format!("{{ name: gw, sectionName: {s} }}"))
            .collect();
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n\
             metadata: {{ name: {name}, namespace: default }}\n\
             spec:\n  parentRefs: [{}]\n  rules:\n  - backendRefs: [{{ name: {backend}, port: 80 }}]\n",
            parents.join(", ")
        )
    };
    let env = gateway_on(
        port,
        gw,
        &[&v1, &v2, &v3],
        &[
            route("backend-v1", &["listener-1"], "v1"),
            route("backend-v2", &["listener-2"], "v2"),
            route("backend-v3", &["listener-3", "listener-4"], "v3"),
        ],
    )
    .await;
    for (host, want) in [
        ("bar.com", Ok("v1".to_owned())),
        ("foo.bar.com", Ok("v2".to_owned())),
        ("baz.bar.com", Ok("v3".to_owned())),
        ("boo.bar.com", Ok("v3".to_owned())),
        ("multiple.prefixes.bar.com", Ok("v3".to_owned())),
        ("multiple.prefixes.foo.com", Ok("v3".to_owned())),
        ("foo.com", Err(Code::Unimplemented)),
        ("no.matching.host", Err(Code::Unimplemented)),
    ] {
        let mut c = Client::connect(env.port, host).await;
        assert_eq!(c.backend(&method("Echo"), &[]).await, want, "{host}");
    }
}

/// Route hostnames: an exact hostname beats a wildcard, and route hostnames outside the
/// listener's hostname are ignored.
#[tokio::test]
async fn route_hostnames_intersect_with_the_listener_hostname() {
    let v1 = GrpcBackend::start("v1").await;
    let v2 = GrpcBackend::start("v2").await;
    let port = free_port();
    let gw = gateway_http(port).replace(
        "protocol: HTTP }",
        "protocol: HTTP, hostname: '*.example.com' }",
    );
    let with_hosts = |name: &str, hosts: &str, backend: &str| {
        grpc_route(
            name,
            &format!("  - backendRefs: [{{ name: {backend}, port: 80 }}]\n"),
        )
        .replace(
            "  parentRefs:",
            &format!("  hostnames: {hosts}\n  parentRefs:"),
        )
    };
    let env = gateway_on(
        port,
        gw,
        &[&v1, &v2],
        &[
            with_hosts("exact", "[a.example.com, a.example.net]", "v1"),
            with_hosts("wild", "['*.example.com']", "v2"),
        ],
    )
    .await;
    for (host, want) in [
        ("a.example.com", Ok("v1".to_owned())),
        ("b.example.com", Ok("v2".to_owned())),
        ("a.b.example.com", Ok("v2".to_owned())),
        ("a.example.net", Err(Code::Unimplemented)),
        ("example.com", Err(Code::Unimplemented)),
    ] {
        let mut c = Client::connect(env.port, host).await;
        assert_eq!(c.backend(&method("Echo"), &[]).await, want, "{host}");
    }
}

// === backends ===

/// `grpcroute-weight`: calls split by backendRef weight (70/30/0).
#[tokio::test]
async fn weighted_backend_refs_split_calls() {
    let v1 = GrpcBackend::start("v1").await;
    let v2 = GrpcBackend::start("v2").await;
    let v3 = GrpcBackend::start("v3").await;
    let route = grpc_route(
        "weights",
        "  - backendRefs: [{ name: v1, port: 80, weight: 70 }, { name: v2, port: 80, weight: 30 }, { name: v3, port: 80, weight: 0 }]\n",
    );
    let env = gateway(&[&v1, &v2, &v3], &[route]).await;
    let mut c = env.client().await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let n = 400;
    for _ in 0..n {
        *counts
            .entry(c.backend(&method("Echo"), &[]).await.unwrap())
            .or_default() += 1;
    }
    let v1n = counts.get("v1").copied().unwrap_or(0);
    let v2n = counts.get("v2").copied().unwrap_or(0);
    assert_eq!(counts.get("v3"), None, "weight 0 gets nothing: {counts:?}");
    assert_eq!(v1n + v2n, n);
    // 70% of 400 = 280 (sd ~9.2): well within +-15%.
    assert!((220..=340).contains(&v1n), "{counts:?}");
}

/// A backend that refuses connections: the client gets a gRPC `UNAVAILABLE` status
/// (a trailers-only gRPC answer), not a broken stream or an undecodable body.
#[tokio::test]
async fn a_refused_backend_connection_is_unavailable() {
    let closed = closed_port().await;
    let down = h2c_service("down", closed);
    let route = grpc_route("down", "  - backendRefs: [{ name: down, port: 80 }]\n");
    let env = gateway(&[], &[down, route]).await;
    let mut c = env.client().await;
    let status = c.unary(&method("Echo"), &[], "hello").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!status.message().is_empty(), "{status:?}");
    // The same for a streaming call.
    let status = c
        .server_stream(&method("ServerStream"), &[], 3)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

// === filters ===

/// RequestHeaderModifier (what the backend receives) and ResponseHeaderModifier (what
/// the client receives as response metadata), on one rule.
#[tokio::test]
async fn request_and_response_header_modifiers() {
    let v1 = GrpcBackend::start("v1").await;
    let route = grpc_route(
        "modifiers",
        "  - filters:\n\
         \x20   - type: RequestHeaderModifier\n\
         \x20     requestHeaderModifier:\n\
         \x20       set: [{ name: x-set, value: set-by-gateway }]\n\
         \x20       add: [{ name: x-add, value: added }]\n\
         \x20       remove: [x-remove]\n\
         \x20   - type: ResponseHeaderModifier\n\
         \x20     responseHeaderModifier:\n\
         \x20       set: [{ name: x-resp-set, value: set-by-gateway }]\n\
         \x20       add: [{ name: x-backend, value: added }]\n\
         \x20       remove: [x-path]\n\
         \x20   backendRefs: [{ name: v1, port: 80 }]\n",
    );
    let env = gateway(&[&v1], &[route]).await;
    let mut c = env.client().await;
    let rsp = c
        .unary(
            &method("Echo"),
            &[
                ("x-set", "from-client"),
                ("x-add", "from-client"),
                ("x-remove", "gone"),
                ("x-kept", "kept"),
            ],
            "hello",
        )
        .await
        .unwrap();
    let md = rsp.metadata();
    assert_eq!(get(md, "echo-x-set").as_deref(), Some("set-by-gateway"));
    assert_eq!(get(md, "echo-x-add").as_deref(), Some("from-client,added"));
    assert_eq!(get(md, "echo-x-remove"), None);
    assert_eq!(get(md, "echo-x-kept").as_deref(), Some("kept"));
    assert_eq!(get(md, "x-resp-set").as_deref(), Some("set-by-gateway"));
    assert_eq!(all(md, "x-backend"), ["v1", "added"]);
    assert_eq!(get(md, "x-path"), None);
    // A call without any of the headers: set and add still happen.
    let rsp = c.unary(&method("Echo"), &[], "hello").await.unwrap();
    assert_eq!(
        get(rsp.metadata(), "echo-x-set").as_deref(),
        Some("set-by-gateway")
    );
    assert_eq!(get(rsp.metadata(), "echo-x-add").as_deref(), Some("added"));
}

/// RequestMirror: the call goes to its backend and a copy to the mirror, whose answer
/// the client never sees.
#[tokio::test]
async fn request_mirror_copies_the_call_to_the_mirror_backend() {
    let mut v1 = GrpcBackend::start("v1").await;
    let mut mirror = GrpcBackend::start("mirror").await;
    let route = grpc_route(
        "mirrored",
        "  - filters:\n\
         \x20   - type: RequestMirror\n\
         \x20     requestMirror: { backendRef: { name: mirror, port: 80 } }\n\
         \x20   backendRefs: [{ name: v1, port: 80 }]\n",
    );
    let env = gateway(&[&v1, &mirror], &[route]).await;
    let mut c = env.client().await;
    assert_eq!(c.backend(&method("Mirrored"), &[]).await, Ok("v1".into()));
    assert_eq!(v1.next_path().await, method("Mirrored"));
    assert_eq!(mirror.next_path().await, method("Mirrored"));
}

/// GRPCRouteNamedRouteRule with a real gRPC client: named rules route each method to
/// their backend, and the names reach the gateway's config.
#[tokio::test]
async fn named_rules_route_each_method_to_their_backend() {
    let v1 = GrpcBackend::start("v1").await;
    let v2 = GrpcBackend::start("v2").await;
    let route = grpc_route(
        "named",
        &format!(
            "  - name: echo\n    matches: [{{ method: {{ service: {SVC}, method: Echo }} }}]\n    backendRefs: [{{ name: v1, port: 80 }}]\n\
             \x20 - name: echo-two\n    matches: [{{ method: {{ service: {SVC}, method: EchoTwo }} }}]\n    backendRefs: [{{ name: v2, port: 80 }}]\n"
        ),
    );
    let env = gateway(&[&v1, &v2], &[route]).await;
    let mut c = env.client().await;
    assert_eq!(c.backend(&method("Echo"), &[]).await, Ok("v1".into()));
    assert_eq!(c.backend(&method("EchoTwo"), &[]).await, Ok("v2".into()));
    let (status, body) = env.wired.admin("/config").await;
    assert_eq!(status, http::StatusCode::OK);
    assert!(body.contains("echo-two"), "{body}");
}

// === status, trailers, streaming ===

/// A backend's `grpc-status`, `grpc-message`, `grpc-status-details-bin` and custom
/// trailing metadata reach the client unchanged: in a trailers-only answer (unary) and
/// in trailers after messages (server streaming).
#[tokio::test]
async fn backend_status_message_details_and_trailers_pass_through() {
    let v1 = GrpcBackend::start("v1").await;
    let route = grpc_route("status", "  - backendRefs: [{ name: v1, port: 80 }]\n");
    let env = gateway(&[&v1], &[route]).await;
    let mut c = env.client().await;
    let want = [
        ("x-want-status", "5"),
        ("x-want-message", "no such thing: 100% gone"),
        ("x-want-details", "detail-bytes"),
    ];

    let status = c.unary(&method("Echo"), &want, "hello").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such thing: 100% gone");
    assert_eq!(status.details(), b"detail-bytes");
    assert_eq!(get(status.metadata(), "x-trailer").as_deref(), Some("kept"));
    assert_eq!(get(status.metadata(), "x-backend").as_deref(), Some("v1"));

    let rsp = c
        .server_stream(&method("ServerStream"), &want, 3)
        .await
        .unwrap();
    assert_eq!(get(rsp.metadata(), "x-backend").as_deref(), Some("v1"));
    let mut stream = rsp.into_inner();
    let mut got = Vec::new();
    let status = loop {
        match within(stream.message()).await {
            Ok(Some(m)) => got.push(m),
            Ok(None) => panic!("the stream ended without the backend's status"),
            Err(status) => break status,
        }
    };
    assert_eq!(got, ["0", "1", "2"]);
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such thing: 100% gone");
    assert_eq!(status.details(), b"detail-bytes");
    assert_eq!(get(status.metadata(), "x-trailer").as_deref(), Some("kept"));
}

/// Server streaming through the gateway: every message, in order, then `OK` in the
/// trailers.
#[tokio::test]
async fn server_streaming_through_the_gateway() {
    let v1 = GrpcBackend::start("v1").await;
    let route = grpc_route("stream", "  - backendRefs: [{ name: v1, port: 80 }]\n");
    let env = gateway(&[&v1], &[route]).await;
    let mut c = env.client().await;
    let rsp = c
        .server_stream(&method("ServerStream"), &[], 200)
        .await
        .unwrap();
    let mut stream = rsp.into_inner();
    let mut got = Vec::new();
    while let Some(m) = within(stream.message()).await.unwrap() {
        got.push(String::from_utf8(m.to_vec()).unwrap());
    }
    let want: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    // The stream ended with grpc-status 0 (a missing status would be an error above).
    let trailers = within(stream.trailers()).await.unwrap();
    assert!(trailers.is_some());
}

/// Bidirectional streaming through the gateway, interactively: each reply arrives
/// before the next message is sent (nothing is buffered until the client finishes).
#[tokio::test]
async fn bidi_streaming_through_the_gateway_is_interactive() {
    let v1 = GrpcBackend::start("v1").await;
    let route = grpc_route("bidi", "  - backendRefs: [{ name: v1, port: 80 }]\n");
    let env = gateway(&[&v1], &[route]).await;
    let mut c = env.client().await;
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    c.ready().await;
    let rsp = within(c.grpc.streaming(
        request(outbound, &[("x-who", "bidi")]),
        pq(&method("Bidi")),
        Raw,
    ))
    .await
    .unwrap();
    assert_eq!(get(rsp.metadata(), "echo-x-who").as_deref(), Some("bidi"));
    let mut inbound = rsp.into_inner();
    for msg in ["one", "two", "three"] {
        tx.send(Bytes::from(msg)).unwrap();
        let reply = within(inbound.message()).await.unwrap().unwrap();
        assert_eq!(reply, format!("v1:{msg}"));
    }
    drop(tx);
    assert_eq!(within(inbound.message()).await.unwrap(), None);
}

/// A gatekit TrafficPolicy rate limit on a GRPCRoute: the call over the limit gets a
/// gRPC status (`UNAVAILABLE`, gRPC's mapping of HTTP 429) with the gateway's error kind
/// in its metadata, not an HTTP 429 the client cannot decode.
#[tokio::test]
async fn a_rate_limited_call_gets_a_grpc_status() {
    let v1 = GrpcBackend::start("v1").await;
    let route = grpc_route("limited", "  - backendRefs: [{ name: v1, port: 80 }]\n");
    let policy = "apiVersion: gatekit.io/v1alpha1\nkind: TrafficPolicy\n\
                  metadata: { name: one-per-hour, namespace: default }\n\
                  spec:\n  targetRefs: [{ group: gateway.networking.k8s.io, kind: GRPCRoute, name: limited }]\n\
                  \x20 rateLimit:\n    rules:\n    - limit: { requests: 1, unit: Hour }\n"
        .to_owned();
    let env = gateway(&[&v1], &[route, policy]).await;
    let mut c = env.client().await;
    assert_eq!(c.backend(&method("Echo"), &[]).await, Ok("v1".into()));
    let status = c.unary(&method("Echo"), &[], "hello").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "rate limited");
    assert_eq!(
        get(status.metadata(), "x-gatekit-error").as_deref(),
        Some("rate-limited")
    );
}
