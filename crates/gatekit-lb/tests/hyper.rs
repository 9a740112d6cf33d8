//! An `Upstream` over real hyper servers on 127.0.0.1, reached through a minimal hyper
//! client service, used as a `gatekit_core::Backend`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use gatekit_core::{Backend, Body, BoxError, Change, Endpoint, ErrorKind};
use gatekit_lb::{Algorithm, Upstream, UpstreamConfig};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// A hyper HTTP/1 server answering every request with its own address.
async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(addr.to_string()),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// One connection per request: enough for a test.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
}

impl tower::Service<Request<Body>> for Client {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let addr = self.addr;
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await.map_err(|e| {
                BoxError::from(gatekit_core::Error::with_source(ErrorKind::Connect, e))
            })?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let rsp = send.send_request(req).await?;
            Ok(rsp.map(Body::from))
        })
    }
}

#[tokio::test]
async fn balances_real_hyper_servers_through_a_backend() {
    let mut addrs = Vec::new();
    for _ in 0..3 {
        addrs.push(server().await);
    }
    let up = Upstream::new(
        UpstreamConfig::new(Algorithm::LeastRequest),
        |ep: &Endpoint| Client { addr: ep.addr() },
    );
    up.apply(Change::Replace(
        addrs.iter().map(|a| Endpoint::new(*a)).collect(),
    ));
    let backend = Backend::new(up.clone());
    // Requests are sequential, so every pick is a tie among idle endpoints, broken at
    // random: of 300 picks each endpoint gets at least 50 (mean 100, 6 sigma) but for a chance
    // near 1e-10 (30 picks with a floor of 3 failed about once in 500 runs).
    let mut hits: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let rsp = tokio::time::timeout(
            Duration::from_secs(5),
            backend.send(Request::new(Body::empty())),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(rsp.status().is_success());
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        *hits
            .entry(String::from_utf8(body.to_vec()).unwrap())
            .or_default() += 1;
    }
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.values().all(|&v| v >= 50), "{hits:?}");
    assert_eq!(up.total_in_flight(), 0);

    // A dead endpoint reports a connect error (503); removing it heals the set.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    up.apply(Change::Replace(vec![Endpoint::new(dead)]));
    let err = backend.send(Request::new(Body::empty())).await.unwrap_err();
    assert_eq!(gatekit_core::classify(&*err), ErrorKind::Connect);
    up.apply(Change::Replace(vec![Endpoint::new(addrs[0])]));
    let rsp = backend.send(Request::new(Body::empty())).await.unwrap();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, addrs[0].to_string());
}
