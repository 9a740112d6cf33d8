//! Benchmark harness part for `scripts/bench-l4.sh`: a stream proxy built on
//! gatekit-core's stream data plane, a byte sink and a load client, in one binary.
//!
//! ```text
//! cargo run --release -p gatekit-examples --example bench_l4 -- sink 127.0.0.1:19100
//! cargo run --release -p gatekit-examples --example bench_l4 -- proxy tcp 127.0.0.1:19101 127.0.0.1:19100
//! cargo run --release -p gatekit-examples --example bench_l4 -- client 127.0.0.1:19101 2000 4 [bench.test]
//! ```
//!
//! - `sink ADDR`: reads every connection to its end and answers the byte count (8 bytes).
//! - `proxy tcp|passthrough LISTEN BACKEND`: `Server::serve_streams` with one route to
//!   BACKEND; `passthrough` routes by the ClientHello's SNI (`bench.test`), on a
//!   current-thread runtime like HAProxy's `nbthread 1`.
//! - `client ADDR MB CONNS [SNI]`: CONNS connections in parallel send MB megabytes in
//!   all (64 KiB writes; with SNI each starts with a TLS ClientHello record naming it,
//!   so an SNI router takes it, then raw bytes), and prints `MB/s` once every sink
//!   confirmed its count.

use std::sync::Arc;
use std::time::Duration;

use gatekit_core::route::RouteId;
use gatekit_core::server::Server;
use gatekit_core::stream::{
    ListenerMode, StreamBackend, StreamBackendRef, StreamListener, StreamRoute, StreamRouter,
    StreamTable,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("sink") => runtime.block_on(sink(&args[1])),
        Some("proxy") => runtime.block_on(proxy(&args[1], &args[2], &args[3])),
        Some("client") => runtime.block_on(client(
            &args[1],
            args[2].parse()?,
            args[3].parse()?,
            args.get(4).cloned(),
        )),
        _ => anyhow::bail!(
            "usage: bench_l4 sink ADDR | proxy MODE LISTEN BACKEND | client ADDR MB CONNS [SNI]"
        ),
    }
}

async fn sink(addr: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (mut tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            let _ = tcp.write_all(&total.to_be_bytes()).await;
        });
    }
}

async fn proxy(mode: &str, listen: &str, backend: &str) -> anyhow::Result<()> {
    let mode = match mode {
        "tcp" => ListenerMode::Tcp,
        "passthrough" => ListenerMode::Passthrough,
        other => anyhow::bail!("unknown mode {other}"),
    };
    let tls = matches!(mode, ListenerMode::Passthrough);
    let mut route = StreamRoute::new(RouteId::new("bench", "l4"));
    if tls {
        route.hostnames = vec!["bench.test".to_owned()];
    }
    route.backends = vec![StreamBackendRef::new("backend", 1)];
    let backend = StreamBackend::fixed([backend.parse()?]);
    let table = StreamTable::build(
        vec![StreamListener::new(mode).routes([Arc::new(route)])],
        |_| Some(backend.clone()),
    )?;
    let handle = Server::bind(listen.parse()?)
        .await?
        .serve_streams(StreamRouter::new(table));
    eprintln!("proxy on {}", handle.local_addr());
    std::future::pending::<()>().await;
    Ok(())
}

/// A TLS record holding a minimal ClientHello that names `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    fn vec16(b: &[u8]) -> Vec<u8> {
        [&(b.len() as u16).to_be_bytes()[..], b].concat()
    }
    let name = [&[0u8][..], &vec16(sni.as_bytes())].concat();
    let sni_ext = [&0u16.to_be_bytes()[..], &vec16(&vec16(&name))].concat();
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&vec16(&[0x13, 0x01]));
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&vec16(&sni_ext));
    let len = body.len() as u32;
    let mut msg = vec![1, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    msg.extend_from_slice(&body);
    [&[22, 3, 1][..], &vec16(&msg)].concat()
}

async fn client(addr: &str, megabytes: u64, conns: u64, sni: Option<String>) -> anyhow::Result<()> {
    let per_conn = megabytes * 1_000_000 / conns;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let addr = addr.to_owned();
        let hello = sni.as_deref().map(client_hello);
        tasks.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let mut sent = 0u64;
            if let Some(hello) = hello {
                tcp.write_all(&hello).await?;
                sent += hello.len() as u64;
            }
            let chunk = vec![b'x'; 64 * 1024];
            while sent < per_conn {
                let n = chunk.len().min((per_conn - sent) as usize);
                tcp.write_all(&chunk[..n]).await?;
                sent += n as u64;
            }
            tcp.shutdown().await?;
            let mut count = [0u8; 8];
            tcp.read_exact(&mut count).await?;
            anyhow::ensure!(
                u64::from_be_bytes(count) == sent,
                "the sink counted another size"
            );
            Ok::<_, anyhow::Error>(sent)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let secs = start
        .elapsed()
        .as_secs_f64()
        .max(Duration::from_micros(1).as_secs_f64());
    println!("{:.1}", total as f64 / 1e6 / secs);
    Ok(())
}
