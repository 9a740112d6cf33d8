//! A gateway embedded in a user's axum application (the composition of
//! `examples/axum_gateway.rs`): the application's own route and the manifests' routes
//! answer on one socket, and a manifest change reaches the embedded routes.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use axum::routing::get;
use gatekit_gateway::{Gateway, GatewayOptions, Phase, Source, TranslateOptions, Wiring};
use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{
    eventually, free_port, gateway_http, get_raw, route, service, write_atomic,
};
use http::StatusCode;

#[tokio::test]
async fn axum_route_and_gateway_routes_answer_side_by_side() {
    let backend = EchoBackend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    // Port 8080 is only the listener's name here: an embedded gateway binds nothing.
    write_atomic(dir.path(), "gateway.yaml", &gateway_http(8080));
    write_atomic(dir.path(), "service.yaml", &service("app", backend.addr));
    write_atomic(dir.path(), "route.yaml", &route("api", "/api", "app"));

    let mut gateway = Gateway::embedded(GatewayOptions::default());
    let source = Source::Dirs(vec![dir.path().to_path_buf()]);
    let mut wiring = Wiring::start(&mut gateway, source, TranslateOptions::default())
        .await
        .unwrap();
    assert_eq!(gateway.readiness().phase(), Phase::Ready);
    assert!(wiring.local_addrs().is_empty(), "nothing bound");
    let routes = wiring.service(8080);
    let unknown_port = wiring.service(9999);
    let serving = tokio::spawn(async move {
        wiring.serve(&mut gateway, std::future::pending()).await;
    });

    let app = axum::Router::new()
        .route("/hello", get(|| async { "hello from axum" }))
        .nest_service("/other-port", unknown_port)
        .fallback_service(routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    assert_eq!(
        get_raw(addr, "/hello", "example.test").await,
        (StatusCode::OK, "hello from axum".to_owned())
    );
    let (status, _) = get_raw(addr, "/api/users?id=1", "example.test").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backend.hits(), 1, "the gateway route reached the backend");
    assert_eq!(
        get_raw(addr, "/nowhere", "example.test").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_raw(addr, "/other-port/api", "example.test").await.0,
        StatusCode::NOT_FOUND,
        "a port the manifests do not name routes nothing"
    );

    // Hot reload: a new route file is served by the same service.
    write_atomic(dir.path(), "route2.yaml", &route("v2", "/v2", "app"));
    eventually(
        Duration::from_secs(5),
        "the new route is served",
        || async { get_raw(addr, "/v2", "example.test").await.0 == StatusCode::OK },
    )
    .await;
    assert!(backend.hits() >= 2);

    serving.abort();
    server.abort();
}

/// On a gateway that binds its ports, a port's service handed out before the manifests
/// name the port is the router its listener serves once they do.
#[tokio::test]
async fn a_service_handed_out_early_is_the_bound_listeners_router() {
    use http_body_util::Empty;
    use tower::ServiceExt;

    let backend = EchoBackend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    write_atomic(dir.path(), "service.yaml", &service("app", backend.addr));
    write_atomic(dir.path(), "route.yaml", &route("api", "/api", "app"));
    let mut gateway = Gateway::new(GatewayOptions::default(), "127.0.0.1".parse().unwrap());
    let source = Source::Dirs(vec![dir.path().to_path_buf()]);
    let mut wiring = Wiring::start(&mut gateway, source, TranslateOptions::default())
        .await
        .unwrap();
    let port = free_port();
    let early = wiring.service(port);
    let get = |service: gatekit_gateway::PortService| async move {
        let request = http::Request::get("/api")
            .header("host", "example.test")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        service.oneshot(request).await.unwrap().status()
    };
    assert_eq!(get(early.clone()).await, StatusCode::NOT_FOUND);

    let serving = tokio::spawn(async move {
        wiring.serve(&mut gateway, std::future::pending()).await;
    });
    write_atomic(dir.path(), "gateway.yaml", &gateway_http(port));
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    eventually(Duration::from_secs(5), "the port is bound", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert_eq!(
        get_raw(addr, "/api", "example.test").await.0,
        StatusCode::OK
    );
    assert_eq!(get(early).await, StatusCode::OK);
    serving.abort();
}
