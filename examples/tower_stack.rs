//! gatekit's Router composed with the tower ecosystem: a `tower::ServiceBuilder` puts
//! tower-http's `SetResponseHeaderLayer` and tower's request timeout around the router,
//! `HandleErrorLayer` turns their errors into gatekit's 5xx responses, and the stack is
//! served with hyper-util like any other tower service.
//!
//! ```text
//! cargo run -p gatekit-examples --example tower_stack     # listens on 127.0.0.1:8081
//! curl -si http://127.0.0.1:8081/                          # x-served-by: gatekit
//! ```

use std::collections::HashMap;
use std::time::Duration;

use gatekit_core::client::Client;
use gatekit_core::route::{BackendRef, Route, RouteId, Rule};
use gatekit_core::{Backend, HandleErrorLayer, RouteTable, Router};
use gatekit_examples::{ctrl_c, spawn_backend};
use http::HeaderValue;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let client = Client::new(Default::default());
    let mut backends = HashMap::new();
    backends.insert(
        "app".to_string(),
        Backend::single(&client, spawn_backend("app").await?),
    );
    let mut rule = Rule::default();
    rule.backends.push(BackendRef::new("app", 1));
    let mut route = Route::new(RouteId::new("default", "app"));
    route.rules.push(rule);
    let router = Router::new(RouteTable::build(vec![route], &backends)?);

    // Outermost first: answer any error of the layers below the gatekit way (a timeout
    // becomes a 504), stamp a response header, bound the whole request, then route.
    let stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new())
        .layer(SetResponseHeaderLayer::overriding(
            http::header::HeaderName::from_static("x-served-by"),
            HeaderValue::from_static("gatekit"),
        ))
        .timeout(Duration::from_secs(30))
        .service(router);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
    println!("listening on http://127.0.0.1:8081 — try: curl -si http://127.0.0.1:8081/");
    gatekit_core::server::serve(listener, stack, ctrl_c())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
