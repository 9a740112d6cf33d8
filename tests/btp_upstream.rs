//! Envoy Gateway BackendTrafficPolicy `loadBalancer` and connection timeouts end to end
//! through the wired gateway: a policy on a route makes the Service it reaches hash on
//! a header, so the same `x-user` always lands on the same endpoint; its
//! `timeout.http.connectionIdleTimeout` closes the gateway's idle connections to the
//! Service (and a changed value applies after a reload); its
//! `timeout.tcp.connectTimeout` bounds a connect that never completes. Backends are
//! real hyper servers on loopback.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gatekit_tests::wired::{
    Wired, eventually, free_port, gateway_http, route, service_at, write_atomic,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// An HTTP/1.1 server on 127.0.0.1 answering 200 with `name` to every request.
async fn backend(name: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        name.as_bytes(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

const POLICY: &str = r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: sticky, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }]
  loadBalancer:
    type: ConsistentHash
    consistentHash: { type: Header, header: { name: x-user } }
"#;

async fn ask(client: &Client<HttpConnector, Full<Bytes>>, port: u16, user: &str) -> String {
    let req = Request::get(format!("http://127.0.0.1:{port}/"))
        .header("x-user", user)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = client.request(req).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_hash_policy_sends_the_same_user_to_the_same_endpoint() {
    let (a, ta) = backend("a").await;
    let (b, tb) = backend("b").await;
    let (c, tc) = backend("c").await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let text = [
        gateway_http(port),
        service_at("app", &[a, b, c]),
        route("app", "/", "app"),
        POLICY.to_owned(),
    ]
    .join("---\n");
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let client = Client::builder(TokioExecutor::new()).build_http();

    eventually(Duration::from_secs(10), "the route is served", || {
        let client = client.clone();
        async move {
            let req = Request::get(format!("http://127.0.0.1:{port}/"))
                .header("x-user", "probe")
                .body(Full::new(Bytes::new()))
                .unwrap();
            client
                .request(req)
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        }
    })
    .await;

    // Ten users over three endpoints: round robin would move each user every round
    // (with a multiple of three users its cycle would line up and look sticky).
    let mut chosen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for _round in 0..4 {
        for u in 0..10 {
            let user = format!("user-{u}");
            let got = ask(&client, port, &user).await;
            chosen.entry(user).or_default().insert(got);
        }
    }
    for (user, endpoints) in &chosen {
        assert_eq!(endpoints.len(), 1, "{user} went to {endpoints:?}");
    }
    let used: BTreeSet<&String> = chosen.values().flatten().collect();
    assert!(
        used.len() >= 2,
        "ten users all hashed to {used:?}: not spread over the endpoints"
    );

    wired.stop().await;
    for t in [ta, tb, tc] {
        t.abort();
    }
}

// === timeout.http.connectionIdleTimeout, timeout.tcp.connectTimeout ===

/// What a [`counting_backend`] sees: per connection (numbered in accept order), each
/// request served and the close.
#[derive(Debug)]
enum Seen {
    Served(usize, Instant),
    Closed(usize, Instant),
}

/// An HTTP/1.1 keep-alive server on 127.0.0.1 answering 200 `ok`, reporting each
/// request and each connection's end.
async fn counting_backend() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        for conn in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let served = tx.clone();
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let _ = served.send(Seen::Served(conn, Instant::now()));
                    async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                let _ = tx.send(Seen::Closed(conn, Instant::now()));
            });
        }
    });
    (addr, rx, task)
}

/// A BackendTrafficPolicy on route `app` with the given `timeout` section (flow YAML).
fn timeout_policy(timeout: &str) -> String {
    format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\n\
         metadata: {{ name: timeouts, namespace: default }}\n\
         spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }}]\n  \
         timeout: {timeout}\n"
    )
}

/// GET / through the gateway: the status.
async fn status_of(client: &Client<HttpConnector, Full<Bytes>>, port: u16) -> Option<StatusCode> {
    let req = Request::get(format!("http://127.0.0.1:{port}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = client.request(req).await.ok()?;
    let status = rsp.status();
    rsp.into_body().collect().await.ok()?;
    Some(status)
}

/// Waits for the first connection to close; returns how long it was idle (from its
/// last request to its close).
async fn idle_until_closed(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Duration {
    let mut last: BTreeMap<usize, Instant> = BTreeMap::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("the gateway closes its idle connection within 10s (the default is 90s)")
            .unwrap();
        match event {
            Seen::Served(conn, at) => {
                last.insert(conn, at);
            }
            Seen::Closed(conn, at) => {
                let served = last
                    .get(&conn)
                    .expect("a closed connection served a request");
                return at.duration_since(*served);
            }
        }
    }
}

/// The `/config` view of the upstream of Service app.
async fn app_upstream(wired: &Wired) -> serde_json::Value {
    wired.config().await["upstreams"]["default/app:80"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_idle_timeout_closes_idle_backend_connections_and_follows_reloads() {
    let (addr, mut seen, task) = counting_backend().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let manifests = |timeout: &str| {
        [
            gateway_http(port),
            service_at("app", &[addr]),
            route("app", "/", "app"),
            timeout_policy(timeout),
        ]
        .join("---\n")
    };
    write_atomic(
        dir.path(),
        "all.yaml",
        &manifests("{ http: { connectionIdleTimeout: 300ms } }"),
    );
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    eventually(Duration::from_secs(10), "the route is served", || {
        let client = client.clone();
        async move { status_of(&client, port).await == Some(StatusCode::OK) }
    })
    .await;
    assert_eq!(app_upstream(&wired).await["idleTimeout"], "300ms");

    // The connection the request used goes back to the gateway's pool and is closed
    // once idle for 300 ms (not the client's 90 s).
    let idle = idle_until_closed(&mut seen).await;
    assert!(
        idle >= Duration::from_millis(300),
        "closed after {idle:?} idle"
    );

    // A changed timeout rebuilds the upstream: the next connection stays 700 ms. The
    // upstream view in `/config` is live (it shows the new upstream as soon as it is
    // built, before the route tables name it); the generation is published after the
    // reload swapped them.
    let generation = wired.config().await["generation"].clone();
    write_atomic(
        dir.path(),
        "all.yaml",
        &manifests("{ http: { connectionIdleTimeout: 700ms } }"),
    );
    let w = &wired;
    eventually(Duration::from_secs(10), "the new timeout is served", || {
        let generation = generation.clone();
        async move {
            let config = w.config().await;
            config["generation"] != generation
                && config["upstreams"]["default/app:80"]["idleTimeout"] == "700ms"
        }
    })
    .await;
    assert_eq!(status_of(&client, port).await, Some(StatusCode::OK));
    let idle = idle_until_closed(&mut seen).await;
    assert!(
        idle >= Duration::from_millis(700),
        "closed after {idle:?} idle: the old 300ms still applies"
    );

    wired.stop().await;
    task.abort();
}

/// A loopback listener whose accept queue is full, so that a connect to it never
/// completes (Linux drops the SYN); returns its address and the sockets holding the
/// queue. None when the queue could not be seen to fill.
async fn black_hole() -> Option<(SocketAddr, TcpListener, Vec<TcpStream>)> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(_)) => return None,
            // This connect hangs: the queue is full.
            Err(_) => return Some((addr, listener, held)),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_bounds_a_connect_that_never_completes() {
    // Linux drops a SYN to a full accept queue; a platform where that does not hang a
    // connect cannot run this test, and says so by failing.
    let (addr, _listener, _held) = black_hole()
        .await
        .expect("a loopback connect to a full accept queue should hang (Linux)");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let text = [
        gateway_http(port),
        service_at("app", &[addr]),
        route("app", "/", "app"),
        timeout_policy("{ tcp: { connectTimeout: 200ms } }"),
    ]
    .join("---\n");
    write_atomic(dir.path(), "all.yaml", &text);
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    let w = &wired;
    eventually(
        Duration::from_secs(10),
        "the policy is served",
        || async move { app_upstream(w).await["connectTimeout"] == "200ms" },
    )
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let status = status_of(&client, port).await;
    let took = started.elapsed();
    assert_eq!(
        status,
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "the connect fails"
    );
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(3),
        "answered after {took:?} (the client's own connect timeout is 5s)"
    );
    wired.stop().await;
}
