//! TLS handshakes per second against one HTTPS address: the load client of
//! `scripts/bench-tls-handshake.sh` (issue 17; not a tutorial).
//!
//! `tls_handshake ADDR SNI CA_PEM SECONDS CONNS resume|full` runs CONNS tasks for
//! SECONDS (loopback only: ADDR must be a loopback address); each task in a loop opens
//! a TCP connection, completes a TLS handshake (rustls, TLS 1.3 and 1.2, the server
//! certificate verified against CA_PEM for SNI), sends one `GET / HTTP/1.1` with
//! `connection: close`, reads the answer to its end (which also takes in the session
//! tickets the server sent) and closes. `resume`: the client keeps a session cache
//! shared by the tasks (rustls' in-memory store), so every connection after the first
//! offers a ticket or session id; `full`: no resumption, every handshake is a full one.
//!
//! Prints one line: `<connections/s> <resumed %> <errors>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    resumed: AtomicU64,
    errors: AtomicU64,
}

async fn one(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &ServerName<'static>,
    counts: &Counts,
) -> Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name.clone(), tcp).await?;
    if tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
        counts.resumed.fetch_add(1, Ordering::Relaxed);
    }
    tls.write_all(b"GET / HTTP/1.1\r\nhost: bench.test\r\nconnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::with_capacity(512);
    // A server may close without close_notify after `connection: close`.
    let _ = tls.read_to_end(&mut answer).await;
    if !answer.starts_with(b"HTTP/1.1 ") {
        bail!("no HTTP answer");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, sni, ca, seconds, conns, mode] = args.as_slice() else {
        bail!("usage: tls_handshake ADDR SNI CA_PEM SECONDS CONNS resume|full");
    };
    let addr: SocketAddr = addr.parse().context("ADDR")?;
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address");
    }
    let seconds: u64 = seconds.parse().context("SECONDS")?;
    let conns: usize = conns.parse().context("CONNS")?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("CA_PEM")? {
        roots.add(cert?)?;
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = match mode.as_str() {
        "resume" => rustls::client::Resumption::in_memory_sessions(4096),
        "full" => rustls::client::Resumption::disabled(),
        other => bail!("mode {other:?} is neither resume nor full"),
    };
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(sni.clone()).context("SNI")?;
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (connector, name, counts) = (connector.clone(), name.clone(), counts.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                match one(&connector, addr, &name, &counts).await {
                    Ok(()) => counts.done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counts.errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    let started = Instant::now();
    tasks.join_all().await;
    let elapsed = started.elapsed().as_secs_f64();
    let done = counts.done.load(Ordering::Relaxed);
    let resumed = counts.resumed.load(Ordering::Relaxed);
    println!(
        "{:.0} {:.1} {}",
        done as f64 / elapsed,
        if done == 0 {
            0.0
        } else {
            100.0 * resumed as f64 / done as f64
        },
        counts.errors.load(Ordering::Relaxed)
    );
    Ok(())
}
