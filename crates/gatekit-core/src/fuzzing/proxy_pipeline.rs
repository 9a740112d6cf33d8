//! `proxy_pipeline`: arbitrary bytes as an HTTP/1.1 client connection to gatekit's server
//! with a [`Router`], filters and an in-process backend.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

use crate::path::PathPolicy;
use crate::route::{
    BackendRef, Filter, HeaderModifier, Match, PathMatch, PathModifier, Redirect, Route, RouteId,
    Rule, UrlRewrite,
};
use crate::server::{ServerConfig, serve_connection_with};
use crate::small_list::SmallList;
use crate::{Backend, Body, BoxError, ConnectionInfo, RouteTable, Router};

/// The longest a fuzz input's connection may take; far above what an in-memory exchange
/// needs, so only a hang trips it.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// Header slots for parsing; hyper accepts at most 100 request headers.
const MAX_HEADERS: usize = 128;

thread_local! {
    /// One current-thread runtime and one router per thread (one per process under
    /// libFuzzer): building them is far more expensive than a run.
    static HARNESS: Option<(Runtime, Router)> = harness();
}

fn harness() -> Option<(Runtime, Router)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let echo = tower::service_fn(|req: Request<Body>| async move {
        let head = format!("echo {} {}", req.method(), req.uri());
        let body = req.into_body().collect().await?.to_bytes();
        let mut rsp = Response::new(Body::from(format!("{head} {}\n", body.len())));
        rsp.headers_mut()
            .insert("x-echo", http::HeaderValue::from_static("1"));
        Ok::<_, BoxError>(rsp)
    });
    let mut backends = HashMap::new();
    backends.insert("echo".to_owned(), Backend::new(echo));

    let prefix = |p: &str| Match {
        path: Some(PathMatch::Prefix(p.into())),
        ..Match::default()
    };
    let rule = |m: Match, filters: Vec<Filter>, backend: &str| Rule {
        matches: SmallList::One(m),
        filters: filters.into(),
        backends: SmallList::One(BackendRef::new(backend, 1)),
        ..Rule::default()
    };
    let mut any = Route::new(RouteId::new("fuzz", "any"));
    any.rules = SmallList::from(vec![
        rule(prefix("/"), Vec::new(), "echo"),
        rule(
            prefix("/redirect"),
            vec![Filter::RequestRedirect(Redirect {
                scheme: Some("https".into()),
                path: Some(PathModifier::ReplacePrefixMatch("/moved".into())),
                status: 301,
                ..Redirect::default()
            })],
            "echo",
        ),
        rule(
            prefix("/rewrite"),
            vec![
                Filter::UrlRewrite(UrlRewrite {
                    hostname: Some("rewritten.example.com".into()),
                    path: Some(PathModifier::ReplacePrefixMatch("/new".into())),
                }),
                Filter::RequestHeaderModifier(HeaderModifier {
                    set: vec![("x-gateway".into(), "gatekit".into())],
                    add: vec![("x-added".into(), "1".into())],
                    remove: vec!["x-drop".into()],
                }),
            ],
            "echo",
        ),
        rule(prefix("/missing"), Vec::new(), "nowhere"),
    ]);
    let mut api = Route::new(RouteId::new("fuzz", "api"));
    api.hostnames = vec!["api.example.com".into(), "*.example.org".into()].into();
    api.rules = SmallList::One(rule(
        Match {
            path: Some(PathMatch::Exact("/api".into())),
            method: Some(http::Method::POST),
            ..Match::default()
        },
        vec![Filter::ResponseHeaderModifier(HeaderModifier {
            set: vec![("x-api".into(), "1".into())],
            ..HeaderModifier::default()
        })],
        "echo",
    ));
    let table = RouteTable::build(vec![any, api], &backends).ok()?;
    Some((rt, Router::new(table)))
}

/// The `proxy_pipeline` target: `data` is written as the client side of one connection
/// (then the client shuts its write side down) to [`serve_connection_with`], the code a
/// [`Server`](crate::server::Server) runs for each accepted connection, with the gateway's
/// configuration (HTTP/1.1 and h2, the default path policy), serving a [`Router`] whose
/// routes echo, redirect, rewrite, modify headers and point at a missing backend.
///
/// Checks: no panic and no hang; unless `data` starts with the h2 preface (then only no
/// panic and no hang), everything the server writes parses as a sequence of
/// complete HTTP/1.1 responses with valid status codes; when the first request is
/// malformed (httparse refuses it), the first response is a 4xx (or 505 for an unknown
/// HTTP version, as hyper answers).
///
/// # Panics
///
/// When one of these checks fails (a bug).
pub fn proxy_pipeline(data: &[u8]) {
    HARNESS.with(|h| {
        if let Some((rt, router)) = h {
            rt.block_on(run(data, router.clone()));
        }
    });
}

async fn run(data: &[u8], router: Router) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let info = ConnectionInfo::new(
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 40000)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
        false,
    );
    // The binary's configuration: HTTP/1.1 and h2 by preface, request heads checked by
    // the default path policy.
    let config = ServerConfig::default().path_policy(Some(PathPolicy::default()));
    let serve = async move {
        // A protocol error ends the connection; that is an expected outcome here.
        let _ = serve_connection_with(server, info, router, &config).await;
    };
    let (mut rd, mut wr) = tokio::io::split(client);
    let write = async move {
        // The server may close before reading everything; a failed write is fine.
        let _ = wr.write_all(data).await;
        let _ = wr.shutdown().await;
        drop(wr);
    };
    let read = async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let exchange = async { tokio::join!(serve, write, read).2 };
    let out = match tokio::time::timeout(CONNECTION_DEADLINE, exchange).await {
        Ok(out) => out,
        Err(_) => panic!("connection still open after {CONNECTION_DEADLINE:?}"),
    };
    check_output(data, &out);
}

/// The HTTP/2 connection preface: an input that starts with it is served as h2, whose
/// output is binary frames, not HTTP/1.1 responses.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn check_output(input: &[u8], out: &[u8]) {
    if input.starts_with(H2_PREFACE) {
        return;
    }
    // The preface's request line after empty lines is not an HTTP/1.x request either:
    // hyper closes such a connection without an HTTP/1 answer.
    let first_line = input
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(&input[..0], |i| &input[i..]);
    if first_line.starts_with(b"PRI * HTTP/2.0") {
        return;
    }
    // A response to HEAD announces a length but has no body; without knowing which
    // requests hyper parsed as HEAD, an empty body is accepted when the input says HEAD.
    let head = input.windows(4).any(|w| w == b"HEAD");
    let statuses = match parse_responses(out, head) {
        Ok(s) => s,
        Err(e) => panic!(
            "server output is not HTTP/1.1 responses: {e}\noutput: {:?}",
            String::from_utf8_lossy(out)
        ),
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if let Err(e) = req.parse(input) {
        let Some(&first) = statuses.first() else {
            // A head that never ends before the client's EOF may be closed without an
            // answer (RFC 9112 §8: an incomplete message). hyper's HTTP/1-only server
            // answers 400 to some of these (a bare CR in the head) where the binary's
            // HTTP/1 + h2 server closes: both refuse the request, nothing is forwarded.
            // Empty lines before the request line are skipped by servers (RFC 9112 §2.2),
            // so they do not end a head.
            let head = input
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .map_or(&input[..0], |i| &input[i..]);
            if !head.windows(4).any(|w| w == b"\r\n\r\n") {
                return;
            }
            panic!("no response to a malformed request ({e})");
        };
        let expected =
            (400..500).contains(&first) || (first == 505 && e == httparse::Error::Version);
        assert!(expected, "malformed request ({e}) answered {first}");
    }
}

/// The status codes of the responses in `out`, or what is wrong with them. With
/// `head_requests`, a response may lack its body (a response to HEAD).
fn parse_responses(mut out: &[u8], head_requests: bool) -> Result<Vec<u16>, String> {
    let mut statuses = Vec::new();
    while !out.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut rsp = httparse::Response::new(&mut headers);
        let head = match rsp.parse(out) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Err("truncated response head".into()),
            Err(e) => return Err(format!("invalid response head: {e}")),
        };
        let code = rsp.code.ok_or("no status code")?;
        if !(100..=599).contains(&code) {
            return Err(format!("status {code}"));
        }
        statuses.push(code);
        let mut length = None;
        let mut chunked = false;
        for h in rsp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value).map_err(|_| "content-length not ASCII")?;
                let n: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("content-length {v:?}"))?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting content-length headers".into());
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h.value.eq_ignore_ascii_case(b"chunked");
            }
        }
        if chunked && length.is_some() {
            return Err("both content-length and chunked".into());
        }
        out = &out[head..];
        if code == 101 {
            // The connection is no longer HTTP; the routes here never upgrade.
            return Err("unexpected 101 Switching Protocols".into());
        }
        if (100..200).contains(&code) || code == 204 || code == 304 {
            continue;
        }
        // A response to HEAD: the next response (or the end) follows at once.
        if head_requests && (out.is_empty() || out.starts_with(b"HTTP/1.")) {
            continue;
        }
        out = if chunked {
            skip_chunked(out)?
        } else {
            match length {
                Some(n) if n <= out.len() => &out[n..],
                Some(n) => return Err(format!("body of {} bytes, {n} announced", out.len())),
                // Close-delimited: the body runs to the end.
                None => &[],
            }
        };
    }
    Ok(statuses)
}

fn skip_chunked(mut out: &[u8]) -> Result<&[u8], String> {
    loop {
        let line_end = out
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size = std::str::from_utf8(&out[..line_end]).map_err(|_| "chunk size not ASCII")?;
        let size = size.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| format!("chunk size {size:?}"))?;
        out = &out[line_end + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            let end = out
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
                .or_else(|| out.starts_with(b"\r\n").then_some(2))
                .ok_or("truncated chunked trailer")?;
            return Ok(&out[end..]);
        }
        if out.len() < size + 2 || &out[size..size + 2] != b"\r\n" {
            return Err("truncated chunk".into());
        }
        out = &out[size + 2..];
    }
}

// Keeps the service's error type honest: the router never fails.
const _: fn() = || {
    fn infallible<S: tower_service::Service<Request<Body>, Error = Infallible>>() {}
    infallible::<Router>();
};
