//! Measuring tool (issue 20): heap allocations per proxied request, HTTP/1.1 and h2c,
//! with 0, 10 and 30 extra request headers; not a tutorial.
//!
//! ```text
//! cargo run --profile bench -p gatekit-examples --example alloc_per_request -- \
//!     [--requests 20000] [--port 19700] [--headers 0,10,30]
//! ```
//! (`scripts/alloc-per-request.sh` runs it.)
//!
//! The gateway is built as `gatekit run` builds it: [`Gateway::new`] with the default
//! options (the binary's defaults), [`Wiring::start`] on the manifests of
//! `scripts/bench-binary.sh` (one Gateway with an HTTP listener on 127.0.0.1:`--port`
//! serving HTTP/1.1 and h2c by preface, an HTTPRoute `PathPrefix /`, a Service whose two
//! EndpointSlices point at two backends), on a multi-thread runtime with the binary's
//! park hook. The backends and the client are written here on raw sockets, on a second
//! (current-thread) runtime on the main thread: a backend answers each request head with
//! a fixed 128-byte response; the client writes prepared request bytes and parses the
//! response in buffers allocated before counting (h2c by hand: preface, SETTINGS, one
//! HEADERS frame per request with HPACK literals, WINDOW_UPDATE for the data read).
//!
//! A counting global allocator ([`stats_alloc`]) counts the whole process: a per-thread
//! count needs a `GlobalAlloc` impl, which needs `unsafe`, which the workspace forbids.
//! So the client and backends must allocate nothing per request, and a `direct` row
//! measures them talking to each other with no gateway in between (HTTP/1.1; for h2c the
//! client is built from the same buffer-reusing pieces): the gateway's rows have that
//! baseline subtracted. Each row: a fresh client connection, 1,000 warm-up requests, then
//! `--requests` sequential requests counted; per request: allocations, reallocations and
//! bytes allocated. Last, the allocations of the idle gateway over one second (timers,
//! background tasks), which every row contains in proportion to its duration.
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use gatekit_gateway::{Gateway, GatewayOptions, Source, TranslateOptions, Wiring};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const WARM_UP: usize = 1_000;
const BODY_LEN: usize = 128;

// --- the gateway -------------------------------------------------------------------------

fn manifests(port: u16, backends: [u16; 2]) -> String {
    let [a, b] = backends;
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: {port}, protocol: HTTP }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: bench, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: "/" }} }}]
    backendRefs: [{{ name: backend, port: 80 }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: backend, namespace: default }}
spec:
  ports: [{{ name: http, port: 80 }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: backend-a, namespace: default, labels: {{ kubernetes.io/service-name: backend }} }}
addressType: IPv4
ports: [{{ name: http, port: {a} }}]
endpoints: [{{ addresses: ["127.0.0.1"], conditions: {{ ready: true }} }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: backend-b, namespace: default, labels: {{ kubernetes.io/service-name: backend }} }}
addressType: IPv4
ports: [{{ name: http, port: {b} }}]
endpoints: [{{ addresses: ["127.0.0.1"], conditions: {{ ready: true }} }}]
"#
    )
}

/// Starts the gateway on `runtime` and leaves it serving.
fn start_gateway(runtime: &tokio::runtime::Runtime, docs: String) -> Result<()> {
    runtime.block_on(async move {
        let mut gateway = Gateway::new(GatewayOptions::default(), Ipv4Addr::LOCALHOST.into());
        let source = Source::Documents(vec![("bench.yaml".to_owned(), docs)]);
        let mut wiring = Wiring::start(&mut gateway, source, TranslateOptions::default())
            .await
            .map_err(|e| anyhow!("gateway: {e}"))?;
        if wiring.local_addrs().is_empty() {
            bail!("the gateway bound no port (manifests refused?)");
        }
        tokio::spawn(async move {
            wiring.serve(&mut gateway, std::future::pending()).await;
        });
        Ok(())
    })
}

// --- the backend: a fixed response per request head ---------------------------------------

async fn backend() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(backend_conn(stream));
        }
    });
    Ok(port)
}

async fn backend_conn(mut stream: TcpStream) {
    let mut response =
        b"HTTP/1.1 200 OK\r\ncontent-length: 128\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\n\r\n"
            .to_vec();
    response.extend_from_slice(&[b'x'; BODY_LEN]);
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        // Every complete head in the buffer gets a response (GET requests: no body).
        while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
            if stream.write_all(&response).await.is_err() {
                return;
            }
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
        if filled == buf.len() {
            return;
        }
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// --- the client ----------------------------------------------------------------------------

fn extra_headers(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("x-extra-{i:02}"),
                format!("value-{i:02}-abcdefghij"),
            )
        })
        .collect()
}

/// HTTP/1.1 keep-alive: one request written, one response read (Content-Length).
struct H1 {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl H1 {
    async fn connect(port: u16, headers: usize) -> Result<Self> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.set_nodelay(true)?;
        let mut request = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n".to_vec();
        for (name, value) in extra_headers(headers) {
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        Ok(Self {
            stream,
            request,
            buf: vec![0u8; 64 * 1024],
        })
    }

    async fn request(&mut self) -> Result<()> {
        self.stream.write_all(&self.request).await?;
        let mut filled = 0;
        let head = loop {
            if let Some(end) = find(&self.buf[..filled], b"\r\n\r\n") {
                break end + 4;
            }
            if filled == self.buf.len() {
                bail!("response head too long");
            }
            match self.stream.read(&mut self.buf[filled..]).await? {
                0 => bail!("connection closed"),
                n => filled += n,
            }
        };
        if !self.buf.starts_with(b"HTTP/1.1 200") {
            bail!("status not 200");
        }
        let length = content_length(&self.buf[..head]).context("no content-length")?;
        while filled < head + length {
            match self.stream.read(&mut self.buf[filled..]).await? {
                0 => bail!("connection closed"),
                n => filled += n,
            }
        }
        if filled != head + length {
            bail!("more bytes than one response");
        }
        Ok(())
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        if !line[..colon].eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        std::str::from_utf8(&line[colon + 1..])
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

// h2 frame types and flags.
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// h2c with prior knowledge, one stream at a time.
struct H2 {
    stream: TcpStream,
    /// A HEADERS frame whose stream id (bytes 5..9) is set per request.
    request: Vec<u8>,
    next_id: u32,
    buf: Vec<u8>,
    filled: usize,
    /// Frames to send back (SETTINGS and PING acks, WINDOW_UPDATE), reused.
    out: Vec<u8>,
}

impl H2 {
    async fn connect(port: u16, headers: usize) -> Result<Self> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.set_nodelay(true)?;
        // HPACK, static table only: :method GET, :scheme http, :path /, :authority as a
        // literal without indexing (name index 1); extra headers as literals without
        // indexing with literal names. No Huffman coding.
        let mut block = vec![0x82, 0x86, 0x84, 0x01, 9];
        block.extend_from_slice(b"127.0.0.1");
        for (name, value) in extra_headers(headers) {
            block.push(0x00);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        let mut request = Vec::new();
        frame_head(
            &mut request,
            block.len(),
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
        );
        request.extend_from_slice(&block);
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame_head(&mut preface, 0, SETTINGS, 0, 0);
        stream.write_all(&preface).await?;
        Ok(Self {
            stream,
            request,
            next_id: 1,
            buf: vec![0u8; 256 * 1024],
            filled: 0,
            out: Vec::with_capacity(4096),
        })
    }

    async fn request(&mut self) -> Result<()> {
        let id = self.next_id;
        self.next_id += 2;
        self.request[5..9].copy_from_slice(&id.to_be_bytes());
        self.stream.write_all(&self.request).await?;
        let mut ok = false;
        loop {
            // One whole frame at the front of the buffer.
            while self.filled < 9
                || self.filled
                    < 9 + (u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize)
            {
                if self.filled == self.buf.len() {
                    bail!("frame larger than the buffer");
                }
                match self.stream.read(&mut self.buf[self.filled..]).await? {
                    0 => bail!("connection closed"),
                    n => self.filled += n,
                }
            }
            let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
            let (kind, flags) = (self.buf[3], self.buf[4]);
            let sid = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                & 0x7fff_ffff;
            let mut done = false;
            self.out.clear();
            match kind {
                SETTINGS if flags & ACK == 0 => frame_head(&mut self.out, 0, SETTINGS, ACK, 0),
                PING if flags & ACK == 0 => {
                    frame_head(&mut self.out, 8, PING, ACK, 0);
                    self.out.extend_from_slice(&self.buf[9..9 + len]);
                }
                GOAWAY => bail!("GOAWAY"),
                RST_STREAM if sid == id => bail!("stream reset"),
                HEADERS if sid == id => {
                    ok |= self.buf.get(9) == Some(&0x88); // :status 200, static index 8
                    done = flags & END_STREAM != 0;
                }
                DATA if sid == id => {
                    if len > 0 {
                        frame_head(&mut self.out, 4, WINDOW_UPDATE, 0, 0);
                        self.out.extend_from_slice(&(len as u32).to_be_bytes());
                    }
                    done = flags & END_STREAM != 0;
                }
                _ => {}
            }
            if !self.out.is_empty() {
                self.stream.write_all(&self.out).await?;
            }
            self.buf.copy_within(9 + len..self.filled, 0);
            self.filled -= 9 + len;
            if done {
                if !ok {
                    bail!("status not 200");
                }
                return Ok(());
            }
        }
    }
}

enum Client {
    H1(H1),
    H2(H2),
}

impl Client {
    async fn request(&mut self) -> Result<()> {
        match self {
            Client::H1(c) => c.request().await,
            Client::H2(c) => c.request().await,
        }
    }
}

// --- counting --------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Counts {
    allocs: f64,
    reallocs: f64,
    bytes: f64,
}

impl Counts {
    fn minus(self, base: Counts) -> Counts {
        Counts {
            allocs: self.allocs - base.allocs,
            reallocs: self.reallocs - base.reallocs,
            bytes: self.bytes - base.bytes,
        }
    }
}

/// Requests `k` times (after a warm-up) on a fresh connection; counts per request.
async fn count(proto: &str, port: u16, headers: usize, k: usize) -> Result<Counts> {
    let mut client = match proto {
        "h1" => Client::H1(H1::connect(port, headers).await?),
        _ => Client::H2(H2::connect(port, headers).await?),
    };
    for _ in 0..WARM_UP {
        client.request().await?;
    }
    let before = GLOBAL.stats();
    for _ in 0..k {
        client.request().await?;
    }
    let d = GLOBAL.stats() - before;
    let k = k as f64;
    Ok(Counts {
        allocs: d.allocations as f64 / k,
        reallocs: d.reallocations as f64 / k,
        bytes: (d.bytes_allocated as f64 + d.bytes_reallocated.max(0) as f64) / k,
    })
}

struct Args {
    requests: usize,
    port: u16,
    headers: Vec<usize>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        requests: 20_000,
        port: 19700,
        headers: vec![0, 10, 30],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--requests" => a.requests = value.parse()?,
            "--port" => a.port = value.parse()?,
            "--headers" => {
                a.headers = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            _ => bail!("unknown argument {flag}"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = args()?;
    let io = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let backends =
        io.block_on(async { Ok::<_, anyhow::Error>([backend().await?, backend().await?]) })?;
    // The gateway's runtime as `gatekit run` builds it.
    let gateway_rt = tokio::runtime::Builder::new_multi_thread()
        .on_thread_park(gatekit_gateway::on_worker_park)
        .enable_all()
        .build()?;
    start_gateway(&gateway_rt, manifests(args.port, backends))?;
    let gw: SocketAddr = (Ipv4Addr::LOCALHOST, args.port).into();

    io.block_on(async {
        println!(
            "allocations per request: {} requests per row after {WARM_UP} warm-up, on one keep-alive connection",
            args.requests
        );
        println!(
            "{:<8}{:>8}{:>14}{:>14}{:>14}{:>16}{:>16}",
            "proto", "headers", "allocs/req", "reallocs/req", "bytes/req", "direct allocs", "direct bytes"
        );
        for proto in ["h1", "h2"] {
            for &h in &args.headers {
                // The client and backend alone (HTTP/1.1 only: the backend has no h2).
                let direct = count("h1", backends[0], h, args.requests).await?;
                let through = count(proto, gw.port(), h, args.requests).await?;
                let net = through.minus(direct);
                println!(
                    "{:<8}{:>8}{:>14.2}{:>14.2}{:>14.0}{:>16.3}{:>16.1}",
                    proto, h, net.allocs, net.reallocs, net.bytes, direct.allocs, direct.bytes
                );
            }
        }
        let before = GLOBAL.stats();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = GLOBAL.stats() - before;
        println!(
            "idle gateway over 1 s: {} allocations, {} bytes",
            idle.allocations, idle.bytes_allocated
        );
        Ok::<_, anyhow::Error>(())
    })?;
    drop(gateway_rt);
    Ok(())
}
