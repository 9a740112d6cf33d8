//! Benchmark harness part: the backend that `scripts/bench-proxy.sh` and
//! `scripts/bench-binary.sh` proxy to. A bare hyper server (HTTP/1.1 keep-alive, and h2c
//! by preface) answering every request with a 128-byte body, on one current-thread
//! runtime.
//!
//! ```text
//! cargo run --release -p gatekit-examples --example bench_backend -- 127.0.0.1:18080
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use gatekit_core::Body;
use http::{Request, Response};
use http_body_util::Full;

static BODY: [u8; 128] = [b'x'; 128];

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            let svc = tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(&BODY))))
            });
            gatekit_core::server::serve(listener, svc, gatekit_examples::ctrl_c())
                .await
                .map_err(|e| anyhow::anyhow!(e))
        })
}
