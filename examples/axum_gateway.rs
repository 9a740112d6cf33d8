//! A gatekit gateway inside a user's own axum application: the application keeps its
//! own routes (`/hello`), and every other request is routed by the Gateway API
//! manifests in a directory — the routes `gatekit run --resources DIR` would serve on
//! one listener port — reloaded whenever the files change. No port is bound for the
//! gateway; its router is the axum app's `fallback_service`.
//!
//! ```text
//! cargo run -p gatekit-examples --example axum_gateway -- --resources examples/manifests/axum_gateway
//! curl -s http://127.0.0.1:3000/hello        # the application's own route
//! curl -s http://127.0.0.1:3000/greet        # the manifests' HTTPRoute (rewritten to /hello)
//! curl -s http://127.0.0.1:3000/nowhere      # 404 from the gateway: no route matches
//! ```
//!
//! Options: `--resources DIR` (repeatable), `--port N` (the Gateway listener port whose
//! routes are served, default 8080), `--listen ADDR` (default 127.0.0.1:3000).

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::routing::get;
use gatekit_gateway::{Gateway, GatewayOptions, Source, TranslateOptions, Wiring};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let (dirs, port, listen) = args()?;

    // The gateway: manifests in, one listener port's routes out, hot-reloaded.
    let mut gateway = Gateway::embedded(GatewayOptions::default());
    let mut wiring = Wiring::start(
        &mut gateway,
        Source::Dirs(dirs),
        TranslateOptions::default(),
    )
    .await?;
    let routes = wiring.service(port);
    tokio::spawn(async move { wiring.serve(&mut gateway, std::future::pending()).await });

    // The application: its own routes first, the gateway for everything else.
    let app = Router::new()
        .route("/hello", get(|| async { "hello from the axum app\n" }))
        .fallback_service(routes);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving");
    axum::serve(listener, app).await?;
    Ok(())
}

/// `--resources DIR`..., `--port N`, `--listen ADDR`.
fn args() -> anyhow::Result<(Vec<PathBuf>, u16, SocketAddr)> {
    let (mut dirs, mut port, mut listen) = (Vec::new(), 8080, "127.0.0.1:3000".parse()?);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--resources" => dirs.push(PathBuf::from(value)),
            "--port" => port = value.parse()?,
            "--listen" => listen = value.parse()?,
            _ => anyhow::bail!("unknown option {flag}; see the top of examples/axum_gateway.rs"),
        }
    }
    anyhow::ensure!(!dirs.is_empty(), "give --resources DIR");
    Ok((dirs, port, listen))
}
