//! Shared test support: a process on ephemeral ports, small HTTP clients.
// Each test binary uses part of this module (and of what it re-exports).
#![allow(dead_code, unused_imports, unreachable_pub, clippy::unwrap_used)]

use std::convert::Infallible;

use gatekit_bin::{Process, Settings};
use gatekit_core::{Body, ConnectionInfo};
use http::{Request, Response};

/// Settings with the admin API on an ephemeral loopback port.
pub fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.admin.address = "127.0.0.1:0".parse().unwrap();
    settings
}

pub async fn process(settings: Settings) -> Process {
    Process::start(settings, "127.0.0.1".parse().unwrap())
        .await
        .unwrap()
}

/// Answers `200 hello tls=<bool> <version>` and echoes the path in `x-path`.
pub fn hello_service() -> impl tower::Service<
    Request<gatekit_core::Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|req: Request<gatekit_core::Body>| async move {
        let tls = req
            .extensions()
            .get::<ConnectionInfo>()
            .map(|c| c.is_tls())
            .unwrap();
        Ok::<_, Infallible>(Response::new(Body::full(format!(
            "hello tls={tls} {:?}",
            req.version()
        ))))
    })
}

pub use gatekit_testkit::{Sender, get, http1, send};
