//! Routes built in code, served by a plain hyper server: two local backends ("blue" and
//! "green") behind gatekit's router on 127.0.0.1:8082, with a weighted split, a header
//! match, a prefix redirect and a URL rewrite — the library without the binary or any
//! manifest. Prints curl commands to try.
//!
//! ```text
//! cargo run -p gatekit-examples --example routes_in_code            # listens on 127.0.0.1:8082
//! cargo run -p gatekit-examples --example routes_in_code -- 127.0.0.1:9000
//! ```

use std::collections::HashMap;

use gatekit_core::client::Client;
use gatekit_core::route::{
    BackendRef, Filter, HeaderModifier, Match, PathMatch, PathModifier, Redirect, Route, RouteId,
    Rule, StringMatch, UrlRewrite,
};
use gatekit_core::{Backend, RouteTable, Router};
use gatekit_examples::{ctrl_c, spawn_backend};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8082".into());

    let client = Client::new(Default::default());
    let mut backends = HashMap::new();
    for name in ["blue", "green"] {
        let backend_addr = spawn_backend(name).await?;
        backends.insert(name.to_string(), Backend::single(&client, backend_addr));
    }

    let router = Router::new(RouteTable::build(vec![demo_route()], &backends)?);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "gatekit routes-in-code example listening on http://{addr}\n\n\
         curl -s http://{addr}/                        # 80% blue, 20% green\n\
         curl -s -H 'x-canary: true' http://{addr}/    # always green\n\
         curl -si http://{addr}/old/page               # 301 to /new/page\n\
         curl -s http://{addr}/api/users               # blue sees /users, with x-via: gatekit\n\
         curl -si http://{addr}/nothing -H 'Host: x'   # still routed: the demo route takes any host\n\n\
         Ctrl-C to stop."
    );
    gatekit_core::server::serve(listener, router, ctrl_c())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

fn demo_route() -> Route {
    let mut canary = Rule::default();
    canary
        .matches
        .push(Match::default().with_header_match("x-canary", StringMatch::Exact("true".into())));
    canary.backends.push(BackendRef::new("green", 1));

    let mut redirect = Rule::default();
    redirect.matches.push(prefix("/old"));
    let mut to_new = Redirect::default();
    to_new.path = Some(PathModifier::ReplacePrefixMatch("/new".into()));
    to_new.status = 301;
    redirect = redirect.with_filter(Filter::RequestRedirect(to_new));

    let mut api = Rule::default();
    api.matches.push(prefix("/api"));
    let mut rewrite = UrlRewrite::default();
    rewrite.path = Some(PathModifier::ReplacePrefixMatch("/".into()));
    api = api.with_filter(Filter::UrlRewrite(rewrite));
    let mut via = HeaderModifier::default();
    via.set.push(("x-via".into(), "gatekit".into()));
    api = api.with_filter(Filter::RequestHeaderModifier(via));
    api.backends.push(BackendRef::new("blue", 1));

    let mut split = Rule::default();
    split.matches.push(prefix("/"));
    split.backends.push(BackendRef::new("blue", 80));
    split.backends.push(BackendRef::new("green", 20));

    let mut route = Route::new(RouteId::new("default", "demo"));
    route.rules = vec![canary, redirect, api, split].into();
    route
}

fn prefix(path: &str) -> Match {
    let mut m = Match::default();
    m.path = Some(PathMatch::Prefix(path.into()));
    m
}
