//! Envoy Gateway BackendTrafficPolicy `loadBalancer` end to end through the wired
//! gateway: a policy on a route makes the Service it reaches hash on a header, so
//! the same `x-user` always lands on the same endpoint. Backends are real hyper
//! servers on loopback that answer their own name.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gatekit_tests::wired::{Wired, eventually, free_port, gateway_http, route};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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

/// Service `name` (port 80) whose endpoints are `addrs`, one EndpointSlice each.
fn service(name: &str, addrs: &[SocketAddr]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: {name}, namespace: default }}\n\
         spec:\n  ports: [{{ name: http, port: 80 }}]\n"
    );
    for (i, addr) in addrs.iter().enumerate() {
        out.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{ name: {name}-{i}, namespace: default, labels: {{ kubernetes.io/service-name: {name} }} }}\n\
             addressType: IPv4\nports: [{{ name: http, port: {} }}]\n\
             endpoints: [{{ addresses: [\"{}\"] }}]\n",
            addr.port(),
            addr.ip()
        ));
    }
    out
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
        service("app", &[a, b, c]),
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
