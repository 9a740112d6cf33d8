use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use super::path::push_replaced_prefix;
use super::redirect::split_host_port;
use super::*;
use crate::route::{HeaderModifier, Mirror, PathModifier, Redirect, UrlRewrite};
use crate::{Backend, BoxError};

// === helpers ===

fn no_backends() -> HashMap<String, Backend> {
    HashMap::new()
}

fn compile(filters: Vec<Filter>) -> FilterChain {
    FilterChain::compile(&filters, &no_backends()).unwrap()
}

fn compile_err(filters: Vec<Filter>) -> ConfigError {
    FilterChain::compile(&filters, &no_backends()).unwrap_err()
}

fn cx() -> RequestContext<'static> {
    RequestContext {
        matched_prefix: None,
        tls: false,
        listener_port: Some(80),
    }
}

fn get(uri: &str, host: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    b.body(Body::empty()).unwrap()
}

fn modifier(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderModifier {
    let pairs = |l: &[(&str, &str)]| {
        l.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    HeaderModifier {
        set: pairs(set),
        add: pairs(add),
        remove: remove.iter().map(|n| n.to_string()).collect(),
    }
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn redirect(
    scheme: Option<&str>,
    hostname: Option<&str>,
    port: Option<u16>,
    path: Option<PathModifier>,
    status: u16,
) -> Filter {
    let r = Redirect {
        scheme: scheme.map(str::to_owned),
        hostname: hostname.map(str::to_owned),
        port,
        path,
        status,
    };
    Filter::RequestRedirect(r)
}

fn location(rsp: &Response<Body>) -> &str {
    rsp.headers()["location"].to_str().unwrap()
}

fn rewrite(hostname: Option<&str>, path: Option<PathModifier>) -> Filter {
    let w = UrlRewrite {
        hostname: hostname.map(str::to_owned),
        path,
    };
    Filter::UrlRewrite(w)
}

// === chain ===

#[test]
fn chain_is_cheap_shareable_and_empty_by_default() {
    fn assert_traits<T: Clone + std::fmt::Debug + Default + Send + Sync + 'static>() {}
    assert_traits::<FilterChain>();
    assert!(FilterChain::default().is_empty());
    assert!(compile(vec![]).is_empty());
    let chain = compile(vec![Filter::RequestHeaderModifier(modifier(
        &[("x-a", "1")],
        &[],
        &[],
    ))]);
    assert!(!chain.is_empty());
    let mut req = get("/", None);
    assert!(
        FilterChain::default()
            .apply_request(&mut req, &cx())
            .is_none()
    );
    assert_eq!(chain.mirror_stats(), MirrorStats::default());
}

// === path ===

#[test]
fn replace_prefix_match_follows_the_spec_table() {
    // (request path, matched prefix, replacement, result): the Gateway API table.
    let table = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        // The prefix `/` arrives as "".
        ("/foo/bar", "", "/xyz", "/xyz/foo/bar"),
        ("/", "", "/xyz", "/xyz/"),
        // Not on a segment boundary: unchanged.
        ("/foobar", "/foo", "/xyz", "/foobar"),
    ];
    for (path, prefix, replacement, want) in table {
        // Through the compiled modifier (which strips the replacement's trailing '/').
        let op = PathOp::compile(&PathModifier::ReplacePrefixMatch(replacement.into())).unwrap();
        let mut out = String::new();
        op.push(&mut out, path, Some(prefix));
        assert_eq!(out, want, "{path} with {prefix} -> {replacement:?}");
        // And through the rewrite filter, end to end.
        let chain = compile(vec![rewrite(
            None,
            Some(PathModifier::ReplacePrefixMatch(replacement.into())),
        )]);
        let mut req = get(&format!("{path}?q=1"), None);
        let c = RequestContext {
            matched_prefix: Some(prefix),
            ..cx()
        };
        assert!(chain.apply_request(&mut req, &c).is_none());
        assert_eq!(req.uri().path(), want);
        assert_eq!(req.uri().query(), Some("q=1"));
    }
    let mut out = String::new();
    push_replaced_prefix(&mut out, "/a/b", "/a", "/c");
    assert_eq!(out, "/c/b");
}

use super::path::PathOp;

#[test]
fn replace_prefix_without_a_matched_prefix_leaves_the_path() {
    let chain = compile(vec![rewrite(
        None,
        Some(PathModifier::ReplacePrefixMatch("/xyz".into())),
    )]);
    let mut req = get("/foo/bar", None);
    assert!(chain.apply_request(&mut req, &cx()).is_none());
    assert_eq!(req.uri().path(), "/foo/bar");
}

#[test]
fn host_and_port_are_split() {
    assert_eq!(split_host_port("a.example:8080"), ("a.example", Some(8080)));
    assert_eq!(split_host_port("a.example"), ("a.example", None));
    assert_eq!(split_host_port("[::1]:8443"), ("[::1]", Some(8443)));
    assert_eq!(split_host_port("[::1]"), ("[::1]", None));
    assert_eq!(split_host_port("a.example:x"), ("a.example:x", None));
}

// === header modifiers ===

#[test]
fn request_header_modifier_sets_adds_and_removes_case_insensitively() {
    let chain = compile(vec![Filter::RequestHeaderModifier(modifier(
        &[("X-Set", "new")],
        &[("X-Add", "two")],
        &[("X-Gone")],
    ))]);
    let mut req = Request::get("/")
        .header("x-set", "old1")
        .header("X-SET", "old2")
        .header("x-add", "one")
        .header("x-gone", "a")
        .header("X-Gone", "b")
        .header("x-keep", "k")
        .body(Body::empty())
        .unwrap();
    assert!(chain.apply_request(&mut req, &cx()).is_none());
    assert_eq!(values(req.headers(), "x-set"), ["new"]);
    assert_eq!(values(req.headers(), "x-add"), ["one", "two"]);
    assert!(values(req.headers(), "x-gone").is_empty());
    assert_eq!(values(req.headers(), "x-keep"), ["k"]);

    // Response filters are not request filters.
    let mut rsp = Response::new(Body::empty());
    rsp.headers_mut().insert("x-gone", "stay".parse().unwrap());
    chain.apply_response(&mut rsp);
    assert_eq!(values(rsp.headers(), "x-gone"), ["stay"]);
}

#[test]
fn header_modifier_order_is_remove_then_set_then_add() {
    let chain = compile(vec![Filter::RequestHeaderModifier(modifier(
        &[("x-a", "set"), ("x-b", "set")],
        &[("x-b", "added"), ("x-c", "added")],
        &["x-a", "x-c"],
    ))]);
    let mut req = Request::get("/")
        .header("x-a", "orig")
        .header("x-c", "orig")
        .body(Body::empty())
        .unwrap();
    chain.apply_request(&mut req, &cx());
    // removed, then set: the set value survives.
    assert_eq!(values(req.headers(), "x-a"), ["set"]);
    // set, then added: both, set first.
    assert_eq!(values(req.headers(), "x-b"), ["set", "added"]);
    // removed, then added: only the added value.
    assert_eq!(values(req.headers(), "x-c"), ["added"]);
}

#[test]
fn response_header_modifier_changes_responses_only() {
    let chain = compile(vec![Filter::ResponseHeaderModifier(modifier(
        &[("Cache-Control", "no-store")],
        &[("x-via", "gatekit")],
        &["Server"],
    ))]);
    let mut req = Request::get("/")
        .header("server", "client-side")
        .body(Body::empty())
        .unwrap();
    assert!(chain.apply_request(&mut req, &cx()).is_none());
    assert_eq!(values(req.headers(), "server"), ["client-side"]);
    let mut rsp = Response::builder()
        .header("server", "backend")
        .header("cache-control", "max-age=60")
        .header("x-via", "backend")
        .body(Body::empty())
        .unwrap();
    chain.apply_response(&mut rsp);
    assert!(rsp.headers().get("server").is_none());
    assert_eq!(values(rsp.headers(), "cache-control"), ["no-store"]);
    assert_eq!(values(rsp.headers(), "x-via"), ["backend", "gatekit"]);
}

#[test]
fn header_modifier_errors_name_the_field() {
    let e = compile_err(vec![Filter::RequestHeaderModifier(modifier(
        &[("x-ok", "1"), ("bad name", "2")],
        &[],
        &[],
    ))]);
    assert_eq!(e.field(), "[0].requestHeaderModifier.set[1].name");

    let e = compile_err(vec![
        Filter::RequestHeaderModifier(HeaderModifier::default()),
        Filter::ResponseHeaderModifier(modifier(&[], &[("x-a", "bad\nvalue")], &[])),
    ]);
    assert_eq!(e.field(), "[1].responseHeaderModifier.add[0].value");

    // The same name twice in one list, compared case-insensitively.
    let e = compile_err(vec![Filter::RequestHeaderModifier(modifier(
        &[("X-Dup", "1"), ("x-dup", "2")],
        &[],
        &[],
    ))]);
    assert_eq!(e.field(), "[0].requestHeaderModifier.set[1].name");
    assert!(e.reason().contains("more than once"), "{}", e.reason());

    let e = compile_err(vec![Filter::RequestHeaderModifier(modifier(
        &[],
        &[],
        &["x-a", "X-A"],
    ))]);
    assert_eq!(e.field(), "[0].requestHeaderModifier.remove[1]");

    let e = compile_err(vec![Filter::RequestHeaderModifier(modifier(
        &[],
        &[("x-a", "1"), ("X-A", "2")],
        &[],
    ))]);
    assert_eq!(e.field(), "[0].requestHeaderModifier.add[1].name");

    // The same name in different lists is allowed.
    compile(vec![Filter::RequestHeaderModifier(modifier(
        &[("x-a", "1")],
        &[("x-a", "2")],
        &["x-a"],
    ))]);
}

// === redirects ===

/// (configured scheme, configured port, listener port, tls, expected Location)
type PortCase = (Option<&'static str>, Option<u16>, u16, bool, &'static str);

#[test]
fn redirect_port_table() {
    // (configured scheme, configured port, listener port, tls, expected Location)
    const H: &str = "example.com";
    #[rustfmt::skip]
    let table: &[PortCase] = &[
        // Nothing configured: the request's scheme, the listener's port.
        (None, None, 80, false, "http://example.com/p?q=1"),
        (None, None, 80, true, "https://example.com:80/p?q=1"),
        (None, None, 443, false, "http://example.com:443/p?q=1"),
        (None, None, 443, true, "https://example.com/p?q=1"),
        (None, None, 8080, false, "http://example.com:8080/p?q=1"),
        (None, None, 8080, true, "https://example.com:8080/p?q=1"),
        // Port configured, scheme not: the request's scheme, that port.
        (None, Some(8443), 80, false, "http://example.com:8443/p?q=1"),
        (None, Some(8443), 80, true, "https://example.com:8443/p?q=1"),
        (None, Some(8443), 443, false, "http://example.com:8443/p?q=1"),
        (None, Some(8443), 443, true, "https://example.com:8443/p?q=1"),
        (None, Some(8443), 8080, false, "http://example.com:8443/p?q=1"),
        (None, Some(8443), 8080, true, "https://example.com:8443/p?q=1"),
        (None, Some(443), 80, true, "https://example.com/p?q=1"),
        (None, Some(443), 80, false, "http://example.com:443/p?q=1"),
        // Scheme configured, port not: the scheme's well-known port, so no port.
        (Some("http"), None, 80, false, "http://example.com/p?q=1"),
        (Some("http"), None, 80, true, "http://example.com/p?q=1"),
        (Some("http"), None, 443, false, "http://example.com/p?q=1"),
        (Some("http"), None, 443, true, "http://example.com/p?q=1"),
        (Some("http"), None, 8080, false, "http://example.com/p?q=1"),
        (Some("http"), None, 8080, true, "http://example.com/p?q=1"),
        (Some("https"), None, 80, false, "https://example.com/p?q=1"),
        (Some("https"), None, 80, true, "https://example.com/p?q=1"),
        (Some("https"), None, 443, false, "https://example.com/p?q=1"),
        (Some("https"), None, 443, true, "https://example.com/p?q=1"),
        (Some("https"), None, 8080, false, "https://example.com/p?q=1"),
        (Some("https"), None, 8080, true, "https://example.com/p?q=1"),
        // Both configured: both used; the default port is left out.
        (Some("http"), Some(8443), 80, false, "http://example.com:8443/p?q=1"),
        (Some("http"), Some(8443), 443, true, "http://example.com:8443/p?q=1"),
        (Some("http"), Some(8443), 8080, true, "http://example.com:8443/p?q=1"),
        (Some("https"), Some(8443), 80, false, "https://example.com:8443/p?q=1"),
        (Some("https"), Some(8443), 443, true, "https://example.com:8443/p?q=1"),
        (Some("https"), Some(8443), 8080, false, "https://example.com:8443/p?q=1"),
        (Some("https"), Some(443), 8080, false, "https://example.com/p?q=1"),
        (Some("http"), Some(80), 8080, true, "http://example.com/p?q=1"),
        (Some("http"), Some(443), 443, true, "http://example.com:443/p?q=1"),
        (Some("https"), Some(80), 80, false, "https://example.com:80/p?q=1"),
    ];
    for &(scheme, port, listener, tls, want) in table {
        let chain = compile(vec![redirect(scheme, None, port, None, 302)]);
        // The Host header's own port never beats the listener's.
        let mut req = get("/p?q=1", Some(&format!("{H}:9999")));
        let c = RequestContext {
            matched_prefix: None,
            tls,
            listener_port: Some(listener),
        };
        let rsp = chain.apply_request(&mut req, &c).expect("a redirect");
        assert_eq!(rsp.status(), StatusCode::FOUND);
        assert_eq!(
            location(&rsp),
            want,
            "scheme {scheme:?} port {port:?} listener {listener} tls {tls}"
        );
    }
}

#[test]
fn redirect_falls_back_to_the_request_port_without_a_listener_port() {
    let chain = compile(vec![redirect(None, None, None, None, 301)]);
    let no_listener = RequestContext {
        listener_port: None,
        ..cx()
    };
    let cases = [
        ("example.com:8080", false, "http://example.com:8080/a"),
        ("example.com", false, "http://example.com/a"),
        ("example.com", true, "https://example.com/a"),
        ("[::1]:8443", true, "https://[::1]:8443/a"),
    ];
    for (host, tls, want) in cases {
        let mut req = get("/a", Some(host));
        let c = RequestContext { tls, ..no_listener };
        let rsp = chain.apply_request(&mut req, &c).unwrap();
        assert_eq!(rsp.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(location(&rsp), want, "{host}");
    }
    // An absolute URI (or HTTP/2 authority) names host, port and scheme.
    let mut req = get("https://a.example:8443/x?y", None);
    let rsp = chain.apply_request(&mut req, &no_listener).unwrap();
    assert_eq!(location(&rsp), "https://a.example:8443/x?y");
}

#[test]
fn redirect_hostname_path_and_status() {
    let chain = compile(vec![redirect(
        Some("https"),
        Some("new.example"),
        None,
        Some(PathModifier::ReplaceFullPath("/moved".into())),
        308,
    )]);
    let mut req = get("/old/page?x=1&y=2", Some("old.example:8080"));
    let rsp = chain.apply_request(&mut req, &cx()).unwrap();
    assert_eq!(rsp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location(&rsp), "https://new.example/moved?x=1&y=2");

    // Hostname configured, scheme and port not: listener port.
    let chain = compile(vec![redirect(
        None,
        Some("new.example"),
        None,
        Some(PathModifier::ReplacePrefixMatch("/v2".into())),
        303,
    )]);
    let mut req = get("/v1/items", Some("old.example"));
    let c = RequestContext {
        matched_prefix: Some("/v1"),
        tls: false,
        listener_port: Some(8080),
    };
    let rsp = chain.apply_request(&mut req, &c).unwrap();
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&rsp), "http://new.example:8080/v2/items");

    for status in [301, 302, 303, 307, 308] {
        let chain = compile(vec![redirect(None, None, None, None, status)]);
        let rsp = chain
            .apply_request(&mut get("/", Some("a")), &cx())
            .unwrap();
        assert_eq!(rsp.status().as_u16(), status);
    }
}

#[test]
fn redirect_without_any_host_is_relative() {
    let chain = compile(vec![redirect(
        None,
        None,
        None,
        Some(PathModifier::ReplaceFullPath("/x".into())),
        302,
    )]);
    let rsp = chain.apply_request(&mut get("/a?b", None), &cx()).unwrap();
    assert_eq!(location(&rsp), "/x?b");
}

#[test]
fn redirect_answers_before_later_filters_run() {
    let chain = compile(vec![
        Filter::RequestHeaderModifier(modifier(&[("x-before", "1")], &[], &[])),
        redirect(None, None, None, None, 302),
        Filter::ResponseHeaderModifier(modifier(&[("x-rsp", "1")], &[], &[])),
    ]);
    let mut req = get("/", Some("a.example"));
    let mut rsp = chain.apply_request(&mut req, &cx()).unwrap();
    assert_eq!(values(req.headers(), "x-before"), ["1"]);
    // The caller passes the redirect through the response filters.
    assert!(rsp.headers().get("x-rsp").is_none());
    chain.apply_response(&mut rsp);
    assert_eq!(values(rsp.headers(), "x-rsp"), ["1"]);
}

#[test]
fn redirect_errors_name_the_field() {
    let cases: Vec<(Vec<Filter>, &str)> = vec![
        (
            vec![
                Filter::RequestHeaderModifier(HeaderModifier::default()),
                Filter::ResponseHeaderModifier(HeaderModifier::default()),
                redirect(None, None, None, None, 304),
            ],
            "[2].requestRedirect.statusCode",
        ),
        (
            vec![redirect(Some("ftp"), None, None, None, 302)],
            "[0].requestRedirect.scheme",
        ),
        (
            vec![redirect(Some("HTTPS "), None, None, None, 302)],
            "[0].requestRedirect.scheme",
        ),
        (
            vec![redirect(None, Some("a.example:80"), None, None, 302)],
            "[0].requestRedirect.hostname",
        ),
        (
            vec![redirect(None, Some("bad host"), None, None, 302)],
            "[0].requestRedirect.hostname",
        ),
        (
            vec![redirect(None, None, Some(0), None, 302)],
            "[0].requestRedirect.port",
        ),
        (
            vec![redirect(
                None,
                None,
                None,
                Some(PathModifier::ReplaceFullPath("relative".into())),
                302,
            )],
            "[0].requestRedirect.path.replaceFullPath",
        ),
        (
            vec![redirect(
                None,
                None,
                None,
                Some(PathModifier::ReplaceFullPath("".into())),
                302,
            )],
            "[0].requestRedirect.path.replaceFullPath",
        ),
        (
            vec![redirect(
                None,
                None,
                None,
                Some(PathModifier::ReplacePrefixMatch("/a?b".into())),
                302,
            )],
            "[0].requestRedirect.path.replacePrefixMatch",
        ),
    ];
    for (filters, field) in cases {
        let e = compile_err(filters);
        assert_eq!(e.field(), field, "{e}");
    }
}

#[test]
fn list_level_rules_are_enforced() {
    // A redirect and a rewrite cannot be combined, in either order.
    let e = compile_err(vec![
        redirect(None, None, None, None, 302),
        rewrite(Some("a.example"), None),
    ]);
    assert_eq!(e.field(), "[1].type");
    assert!(e.reason().contains("requestRedirect"), "{}", e.reason());
    let e = compile_err(vec![
        rewrite(Some("a.example"), None),
        Filter::RequestHeaderModifier(HeaderModifier::default()),
        redirect(None, None, None, None, 302),
    ]);
    assert_eq!(e.field(), "[2].type");
    assert!(e.reason().contains("urlRewrite"), "{}", e.reason());

    // Each type but mirrors at most once.
    let e = compile_err(vec![
        Filter::RequestHeaderModifier(HeaderModifier::default()),
        Filter::RequestHeaderModifier(HeaderModifier::default()),
    ]);
    assert_eq!(e.field(), "[1].type");
}

// === URL rewrites ===

#[test]
fn rewrite_hostname_replaces_host_and_authority() {
    let chain = compile(vec![rewrite(Some("internal.svc"), None)]);
    // Origin form: the Host header changes, the URI has no authority to change.
    let mut req = get("/a?b=1", Some("public.example:8080"));
    assert!(chain.apply_request(&mut req, &cx()).is_none());
    assert_eq!(values(req.headers(), "host"), ["internal.svc"]);
    assert_eq!(req.uri(), "/a?b=1");

    // Origin form without Host: the header is added.
    let mut req = get("/a", None);
    chain.apply_request(&mut req, &cx());
    assert_eq!(values(req.headers(), "host"), ["internal.svc"]);

    // HTTP/2 style: authority in the URI, no Host header; stays that way.
    let mut req = get("https://public.example:8443/a?b=1", None);
    chain.apply_request(&mut req, &cx());
    assert_eq!(req.uri(), "https://internal.svc/a?b=1");
    assert!(req.headers().get("host").is_none());

    // Absolute form with Host: both change.
    let mut req = get("http://public.example/a", Some("public.example"));
    chain.apply_request(&mut req, &cx());
    assert_eq!(req.uri(), "http://internal.svc/a");
    assert_eq!(values(req.headers(), "host"), ["internal.svc"]);
}

#[test]
fn rewrite_path_keeps_the_query() {
    let chain = compile(vec![rewrite(
        Some("b.example"),
        Some(PathModifier::ReplaceFullPath("/new/path".into())),
    )]);
    let mut req = get("http://a.example/old?x=1&y", None);
    chain.apply_request(&mut req, &cx());
    assert_eq!(req.uri(), "http://b.example/new/path?x=1&y");

    let chain = compile(vec![rewrite(
        None,
        Some(PathModifier::ReplacePrefixMatch("/api/v2/".into())),
    )]);
    let mut req = get("/v1/users/7?full", Some("a"));
    let c = RequestContext {
        matched_prefix: Some("/v1"),
        ..cx()
    };
    chain.apply_request(&mut req, &c);
    assert_eq!(req.uri(), "/api/v2/users/7?full");
    assert_eq!(values(req.headers(), "host"), ["a"]);
}

#[test]
fn rewrite_errors_name_the_field() {
    let e = compile_err(vec![rewrite(Some("a:1"), None)]);
    assert_eq!(e.field(), "[0].urlRewrite.hostname");
    let e = compile_err(vec![rewrite(
        None,
        Some(PathModifier::ReplacePrefixMatch("x".into())),
    )]);
    assert_eq!(e.field(), "[0].urlRewrite.path.replacePrefixMatch");
    let e = compile_err(vec![rewrite(
        None,
        Some(PathModifier::ReplaceFullPath("/a#b".into())),
    )]);
    assert_eq!(e.field(), "[0].urlRewrite.path.replaceFullPath");
    // An empty prefix replacement is allowed (it strips the prefix).
    compile(vec![rewrite(
        None,
        Some(PathModifier::ReplacePrefixMatch(String::new())),
    )]);
}

// === mirrors ===

#[derive(Debug)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BoxError>,
}

/// A mirror backend that reads the whole body and reports what it saw.
fn recording_backend() -> (Backend, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|c| c.to_bytes());
            let _ = tx.send(Seen {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                body,
            });
            Ok::<_, BoxError>(Response::new(Body::from("ignored")))
        }
    });
    (Backend::new(svc), rx)
}

/// A mirror backend that reports each arrival, then never answers nor reads the body.
fn stuck_backend() -> (Backend, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let svc = tower::service_fn(move |_req: Request<Body>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(());
            std::future::pending::<Result<Response<Body>, BoxError>>().await
        }
    });
    (Backend::new(svc), rx)
}

fn mirror_chain(
    filters: Vec<Filter>,
    backends: &HashMap<String, Backend>,
    limits: MirrorLimits,
) -> FilterChain {
    FilterChain::compile_with(
        &filters,
        backends,
        &FilterOptions::default().with_mirror(limits),
    )
    .unwrap()
}

fn mirror(name: &str, fraction: Option<(u32, u32)>) -> Filter {
    let mut m = Mirror::new(name);
    m.fraction = fraction;
    Filter::RequestMirror(m)
}

/// A streaming body of `n` frames of `size` bytes, byte `i` of the body being `i % 251`.
fn chunked_body(n: usize, size: usize) -> (Body, Bytes) {
    let all: Bytes = (0..n * size).map(|i| (i % 251) as u8).collect();
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = (0..n)
        .map(|i| Ok(Frame::data(all.slice(i * size..(i + 1) * size))))
        .collect();
    (
        Body::new(StreamBody::new(futures_util::stream::iter(frames))),
        all,
    )
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn mirror_receives_method_path_headers_and_body() {
    let (backend, mut seen) = recording_backend();
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let chain = mirror_chain(
        vec![
            Filter::RequestHeaderModifier(modifier(&[("x-before", "1")], &[], &[])),
            mirror("shadow", None),
            rewrite(None, Some(PathModifier::ReplaceFullPath("/after".into()))),
        ],
        &backends,
        MirrorLimits::default(),
    );
    let mut req = Request::post("/orders?id=3")
        .header("host", "shop.example")
        .header("x-client", "c")
        .body(Body::from("hello mirror"))
        .unwrap();
    assert!(chain.apply_request(&mut req, &cx()).is_none());
    assert_eq!(req.uri(), "/after?id=3");

    // The primary gets its body unchanged.
    let primary = within(req.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(&primary[..], b"hello mirror");

    let got = within(seen.recv()).await.unwrap();
    assert_eq!(got.method, Method::POST);
    assert_eq!(got.uri, "/orders?id=3");
    assert_eq!(values(&got.headers, "x-before"), ["1"]);
    assert_eq!(values(&got.headers, "x-client"), ["c"]);
    assert_eq!(values(&got.headers, "host"), ["shop.example"]);
    assert_eq!(&got.body.unwrap()[..], b"hello mirror");

    // Counters: one mirrored, completed once its response is drained.
    assert_eq!(chain.mirror_stats().mirrored, 1);
    within(async {
        while chain.mirror_stats().completed == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn several_mirrors_each_get_the_streamed_body() {
    let (a, mut seen_a) = recording_backend();
    let (b, mut seen_b) = recording_backend();
    let backends = HashMap::from([("a".to_string(), a), ("b".to_string(), b)]);
    let chain = mirror_chain(
        vec![mirror("a", None), mirror("b", None)],
        &backends,
        MirrorLimits::default(),
    );
    let (body, all) = chunked_body(8, 1000);
    let mut req = Request::put("/up").body(body).unwrap();
    chain.apply_request(&mut req, &cx());
    let primary = within(req.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(primary, all);
    assert_eq!(within(seen_a.recv()).await.unwrap().body.unwrap(), all);
    assert_eq!(within(seen_b.recv()).await.unwrap().body.unwrap(), all);
    assert_eq!(chain.mirror_stats().mirrored, 2);
}

#[tokio::test]
async fn empty_body_is_mirrored_without_a_tee() {
    let (backend, mut seen) = recording_backend();
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let chain = mirror_chain(
        vec![mirror("shadow", None)],
        &backends,
        MirrorLimits::default(),
    );
    let mut req = get("/ping", Some("a"));
    chain.apply_request(&mut req, &cx());
    assert_eq!(format!("{:?}", req.body()), "Body(\"Empty\")");
    let got = within(seen.recv()).await.unwrap();
    assert_eq!(got.method, Method::GET);
    assert!(got.body.unwrap().is_empty());
}

#[tokio::test]
async fn stuck_mirror_never_blocks_requests_and_is_capped() {
    let (mirror_backend, mut arrivals) = stuck_backend();
    let backends = HashMap::from([("stuck".to_string(), mirror_backend)]);
    let limits = MirrorLimits::default().with_max_in_flight(4);
    let chain = mirror_chain(vec![mirror("stuck", None)], &backends, limits);

    let total = 50;
    let mut primaries = tokio::task::JoinSet::new();
    for i in 0..total {
        let (body, all) = chunked_body(4, 100);
        let mut req = Request::post(format!("/r/{i}")).body(body).unwrap();
        assert!(chain.apply_request(&mut req, &cx()).is_none());
        // The primary reads its whole body although the mirror never reads its copy.
        primaries.spawn(async move {
            let got = req.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got, all);
        });
    }
    let mut done = 0;
    within(async {
        while let Some(r) = primaries.join_next().await {
            r.unwrap();
            done += 1;
        }
    })
    .await;
    assert_eq!(done, total);

    // Exactly the cap reached the mirror; the rest were skipped, not queued.
    for _ in 0..4 {
        within(arrivals.recv()).await.unwrap();
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(arrivals.try_recv().is_err(), "more mirrors than the cap");
    let stats = chain.mirror_stats();
    assert_eq!(stats.mirrored, 4);
    assert_eq!(stats.skipped, total as u64 - 4);
    assert!(stats.skipped > 0);
}

#[tokio::test]
async fn mirror_that_reads_too_slowly_is_abandoned() {
    let (mirror_backend, mut arrivals) = stuck_backend();
    let backends = HashMap::from([("stuck".to_string(), mirror_backend)]);
    let limits = MirrorLimits::default().with_channel_frames(2);
    let chain = mirror_chain(vec![mirror("stuck", None)], &backends, limits);
    let (body, all) = chunked_body(10, 10);
    let mut req = Request::post("/").body(body).unwrap();
    chain.apply_request(&mut req, &cx());
    let primary = within(req.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(primary, all);
    within(arrivals.recv()).await.unwrap();
    assert_eq!(chain.mirror_stats().abandoned, 1);
}

#[tokio::test]
async fn body_over_the_copy_limit_reaches_the_primary_and_abandons_the_mirror() {
    let (backend, mut seen) = recording_backend();
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let limits = MirrorLimits::default(); // 64 KiB
    let chain = mirror_chain(vec![mirror("shadow", None)], &backends, limits);
    let (body, all) = chunked_body(25, 4096); // 100 KiB
    let mut req = Request::post("/big")
        .header("content-length", all.len())
        .body(body)
        .unwrap();
    chain.apply_request(&mut req, &cx());
    let primary = within(req.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(primary.len(), 25 * 4096);
    assert_eq!(primary, all);

    let got = within(seen.recv()).await.unwrap();
    let err = got
        .body
        .expect_err("the mirror's copy must fail, not end early");
    assert!(err.to_string().contains("abandoned"), "{err}");
    assert_eq!(chain.mirror_stats().abandoned, 1);
}

#[tokio::test]
async fn failing_primary_body_fails_the_mirror_copy() {
    let (backend, mut seen) = recording_backend();
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let chain = mirror_chain(
        vec![mirror("shadow", None)],
        &backends,
        MirrorLimits::default(),
    );
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"part"))),
        Err("reset".into()),
    ];
    let mut req = Request::post("/")
        .body(Body::new(StreamBody::new(futures_util::stream::iter(
            frames,
        ))))
        .unwrap();
    chain.apply_request(&mut req, &cx());
    assert!(within(req.into_body().collect()).await.is_err());
    assert!(within(seen.recv()).await.unwrap().body.is_err());
}

#[tokio::test]
async fn trailers_reach_the_primary_and_the_mirror() {
    let (backend, mut seen_rx) = {
        let (tx, rx) = mpsc::unbounded_channel();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let tx = tx.clone();
            async move {
                let collected = req.into_body().collect().await.unwrap();
                let _ = tx.send(collected.trailers().cloned());
                Ok::<_, BoxError>(Response::new(Body::empty()))
            }
        });
        (Backend::new(svc), rx)
    };
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let chain = mirror_chain(
        vec![mirror("shadow", None)],
        &backends,
        MirrorLimits::default(),
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"data"))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut req = Request::post("/")
        .body(Body::new(StreamBody::new(futures_util::stream::iter(
            frames,
        ))))
        .unwrap();
    chain.apply_request(&mut req, &cx());
    let primary = within(req.into_body().collect()).await.unwrap();
    assert_eq!(primary.trailers().unwrap()["x-checksum"], "abc");
    let mirrored = within(seen_rx.recv()).await.unwrap().unwrap();
    assert_eq!(mirrored["x-checksum"], "abc");
}

#[tokio::test]
async fn mirror_fraction_is_honoured() {
    let (backend, _seen) = recording_backend();
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let limits = MirrorLimits::default().with_max_in_flight(100_000);
    fastrand::seed(7);
    let count = |fraction: Option<(u32, u32)>, n: u64| {
        let chain = mirror_chain(vec![mirror("shadow", fraction)], &backends, limits);
        for _ in 0..n {
            chain.apply_request(&mut get("/", None), &cx());
        }
        let stats = chain.mirror_stats();
        assert_eq!(stats.skipped, 0);
        stats.mirrored
    };
    assert_eq!(count(Some((0, 1)), 500), 0);
    assert_eq!(count(Some((0, 100)), 500), 0);
    assert_eq!(count(Some((1, 1)), 500), 500);
    assert_eq!(count(Some((7, 7)), 500), 500);
    assert_eq!(count(None, 500), 500);
    // 1/2 over 2,000 requests: mean 1,000, standard deviation about 22; ±150 is ~6.7σ.
    let half = count(Some((1, 2)), 2000);
    assert!((850..=1150).contains(&half), "{half} of 2000");
    // 1/10 over 2,000: mean 200, sd ~13.4; ±80 is ~6σ.
    let tenth = count(Some((1, 10)), 2000);
    assert!((120..=280).contains(&tenth), "{tenth} of 2000");
}

#[tokio::test(start_paused = true)]
async fn mirror_timeout_frees_the_permit() {
    let (mirror_backend, mut arrivals) = stuck_backend();
    let backends = HashMap::from([("stuck".to_string(), mirror_backend)]);
    let limits = MirrorLimits::default()
        .with_max_in_flight(1)
        .with_timeout(Duration::from_secs(1));
    let chain = mirror_chain(vec![mirror("stuck", None)], &backends, limits);
    chain.apply_request(&mut get("/", None), &cx());
    arrivals.recv().await.unwrap();
    chain.apply_request(&mut get("/", None), &cx());
    assert_eq!(chain.mirror_stats().skipped, 1);
    // Time is the point here: past the timeout the stuck mirror is dropped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = chain.mirror_stats();
    assert_eq!(stats.failed, 1);
    chain.apply_request(&mut get("/", None), &cx());
    arrivals.recv().await.unwrap();
    assert_eq!(chain.mirror_stats().mirrored, 2);
}

#[test]
fn mirror_errors_name_the_field() {
    let (backend, _seen) = stuck_backend();
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let compile = |filters: Vec<Filter>| FilterChain::compile(&filters, &backends);

    let e = compile(vec![mirror("shadow", None), mirror("missing", None)]).unwrap_err();
    assert_eq!(e.field(), "[1].requestMirror.backendRef");
    assert!(e.reason().contains("missing"));
    let e = compile(vec![mirror("shadow", Some((1, 0)))]).unwrap_err();
    assert_eq!(e.field(), "[0].requestMirror.fraction.denominator");
    let e = compile(vec![mirror("shadow", Some((3, 2)))]).unwrap_err();
    assert_eq!(e.field(), "[0].requestMirror.fraction.numerator");
    // Several mirrors are allowed.
    assert!(compile(vec![mirror("shadow", None), mirror("shadow", Some((1, 3)))]).is_ok());
}

#[test]
fn mirror_without_a_runtime_is_skipped() {
    let (backend, _seen) = stuck_backend();
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let chain = FilterChain::compile(&[mirror("shadow", None)], &backends).unwrap();
    let mut req = Request::post("/").body(Body::from("x")).unwrap();
    assert!(chain.apply_request(&mut req, &cx()).is_none());
    assert_eq!(chain.mirror_stats().skipped, 1);
    assert_eq!(format!("{:?}", req.body()), "Body(\"Full\")");
}

#[tokio::test]
async fn mirror_copy_ends_when_the_primary_reports_its_end_like_hyper_reads() {
    // hyper stops polling a body once `is_end_stream` is true; the copy must end then.
    let (backend, mut seen) = recording_backend();
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let chain = mirror_chain(
        vec![mirror("shadow", None)],
        &backends,
        MirrorLimits::default(),
    );
    let mut req = Request::post("/").body(Body::from("one frame")).unwrap();
    chain.apply_request(&mut req, &cx());
    let mut body = req.into_body();
    let frame = within(body.frame()).await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "one frame");
    assert!(http_body::Body::is_end_stream(&body));
    drop(body);
    let got = within(seen.recv()).await.unwrap();
    assert_eq!(&got.body.unwrap()[..], b"one frame");
}

#[tokio::test]
async fn primary_dropped_early_fails_the_mirror_copy() {
    let (backend, mut seen) = recording_backend();
    let backends = HashMap::from([("shadow".to_string(), backend)]);
    let chain = mirror_chain(
        vec![mirror("shadow", None)],
        &backends,
        MirrorLimits::default(),
    );
    let (body, _) = chunked_body(4, 10);
    let mut req = Request::post("/").body(body).unwrap();
    chain.apply_request(&mut req, &cx());
    let mut body = req.into_body();
    within(body.frame()).await.unwrap().unwrap();
    drop(body); // the client went away mid-body
    assert!(within(seen.recv()).await.unwrap().body.is_err());
}

// === CORS ===

use crate::route::CorsPolicy;

fn cors(origins: &[&str], credentials: bool) -> Filter {
    Filter::Cors(CorsPolicy {
        allow_origins: origins.iter().map(|s| s.to_string()).collect(),
        allow_credentials: credentials,
        allow_methods: vec!["GET".into(), "OPTIONS".into()],
        allow_headers: vec!["x-header-1".into(), "x-header-2".into()],
        expose_headers: vec!["x-header-3".into(), "x-header-4".into()],
        max_age: Some(3600),
    })
}

fn preflight_req(origin: &str, method: &str) -> Request<Body> {
    Request::options("/cors")
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "x-header-1")
        .body(Body::empty())
        .unwrap()
}

fn with_origin(origin: &str) -> Request<Body> {
    Request::get("/cors")
        .header("origin", origin)
        .body(Body::empty())
        .unwrap()
}

/// The request through the chain as the `Filters` service does it, to a backend that
/// answers 200 with `x-header-3`.
fn through(chain: &FilterChain, mut req: Request<Body>) -> (Response<Body>, bool) {
    let rcx = chain.response_context(&req);
    let (mut rsp, answered) = match chain.apply_request(&mut req, &cx()) {
        Some(rsp) => (rsp, true),
        None => {
            let rsp = Response::builder()
                .header("x-header-3", "v")
                .body(Body::empty())
                .unwrap();
            (rsp, false)
        }
    };
    chain.apply_response_with(&mut rsp, &rcx);
    (rsp, answered)
}

fn cors_headers(rsp: &Response<Body>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rsp
        .headers()
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("access-control-") || *n == "vary")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    out.sort();
    out
}

fn pairs(l: &[(&str, &str)]) -> Vec<(String, String)> {
    l.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn cors_preflight_from_allowed_origin_is_answered_with_exact_headers() {
    let chain = compile(vec![cors(&["https://www.foo.com"], true)]);
    let (rsp, answered) = through(&chain, preflight_req("https://www.foo.com", "GET"));
    assert!(answered, "a preflight never reaches the backend");
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(
        cors_headers(&rsp),
        pairs(&[
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-headers", "x-header-1, x-header-2"),
            ("access-control-allow-methods", "GET, OPTIONS"),
            ("access-control-allow-origin", "https://www.foo.com"),
            ("access-control-expose-headers", "x-header-3, x-header-4"),
            ("access-control-max-age", "3600"),
            ("vary", "origin"),
        ])
    );
}

#[test]
fn cors_preflight_from_disallowed_origin_is_answered_without_cors_headers() {
    let chain = compile(vec![cors(&["https://www.foo.com"], true)]);
    for origin in [
        "https://foobar.com",
        "http://www.foo.com",
        "https://www.foo.com:8443",
        "null",
    ] {
        let (rsp, answered) = through(&chain, preflight_req(origin, "GET"));
        assert!(answered, "{origin}");
        assert_eq!(rsp.status(), StatusCode::OK, "{origin}");
        assert_eq!(cors_headers(&rsp), pairs(&[("vary", "origin")]), "{origin}");
    }
}

#[test]
fn cors_origin_ports_default_by_scheme() {
    let chain = compile(vec![cors(&["https://a.com", "http://b.com:8080"], false)]);
    for (origin, allowed) in [
        ("https://a.com", true),
        ("https://a.com:443", true),
        ("HTTPS://A.COM", true),
        ("http://a.com", false),
        ("https://a.com:444", false),
        ("http://b.com:8080", true),
        ("http://b.com", false),
        ("https://a.com/path", false),
    ] {
        let (rsp, _) = through(&chain, with_origin(origin));
        assert_eq!(
            rsp.headers().contains_key("access-control-allow-origin"),
            allowed,
            "{origin}"
        );
    }
}

#[test]
fn cors_wildcard_origins_match_and_do_not_match() {
    let chain = compile(vec![cors(&["https://*.bar.com"], false)]);
    for (origin, allowed) in [
        ("https://www.bar.com", true),
        ("https://xpto.www.bar.com", true),
        ("https://bar.com", false),
        ("https://www.foobar.com", false),
        ("http://www.bar.com", false),
        ("https://www.bar.com.evil.com", false),
    ] {
        let (rsp, _) = through(&chain, preflight_req(origin, "GET"));
        let got = rsp
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got, allowed.then(|| origin.to_owned()), "{origin}");
    }
    let any = compile(vec![cors(&["*"], false)]);
    let (rsp, _) = through(&any, preflight_req("https://foobar.com:12345", "PUT"));
    assert_eq!(
        rsp.headers()["access-control-allow-origin"],
        "https://foobar.com:12345"
    );
    let any_host = compile(vec![cors(&["http://*"], false)]);
    let (rsp, _) = through(&any_host, with_origin("http://anything.example"));
    assert!(rsp.headers().contains_key("access-control-allow-origin"));
    let (rsp, _) = through(&any_host, with_origin("https://anything.example"));
    assert!(!rsp.headers().contains_key("access-control-allow-origin"));
}

#[test]
fn cors_credentials_echo_the_origin_never_a_wildcard() {
    let mut p = CorsPolicy {
        allow_origins: vec!["*".into()],
        allow_credentials: true,
        allow_methods: vec!["*".into()],
        allow_headers: vec!["*".into()],
        expose_headers: vec!["*".into(), "x-header-3".into()],
        ..CorsPolicy::default()
    };
    let chain = compile(vec![Filter::Cors(p.clone())]);
    let (rsp, _) = through(&chain, preflight_req("https://other.foo.com", "PUT"));
    assert_eq!(
        cors_headers(&rsp),
        pairs(&[
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-headers", "x-header-1"),
            ("access-control-allow-methods", "PUT"),
            ("access-control-allow-origin", "https://other.foo.com"),
            ("access-control-expose-headers", "x-header-3"),
            ("access-control-max-age", "5"),
            ("vary", "origin"),
        ])
    );
    // Without credentials the expose wildcard is kept and the credentials header absent.
    p.allow_credentials = false;
    let chain = compile(vec![Filter::Cors(p)]);
    let (rsp, answered) = through(&chain, with_origin("https://other.foo.com"));
    assert!(!answered);
    assert_eq!(
        cors_headers(&rsp),
        pairs(&[
            ("access-control-allow-origin", "https://other.foo.com"),
            ("access-control-expose-headers", "*"),
            ("vary", "origin"),
        ])
    );
}

#[test]
fn cors_simple_request_is_proxied_with_origin_expose_and_vary() {
    let chain = compile(vec![cors(&["https://www.foo.com"], false)]);
    let (rsp, answered) = through(&chain, with_origin("https://www.foo.com"));
    assert!(!answered, "an actual request goes to the backend");
    assert_eq!(
        cors_headers(&rsp),
        pairs(&[
            ("access-control-allow-origin", "https://www.foo.com"),
            ("access-control-expose-headers", "x-header-3, x-header-4"),
            ("vary", "origin"),
        ])
    );
    // An OPTIONS without Access-Control-Request-Method is not a preflight.
    let req = Request::options("/cors")
        .header("origin", "https://www.foo.com")
        .body(Body::empty())
        .unwrap();
    assert!(!through(&chain, req).1);
    // A disallowed origin: proxied, only Vary.
    let (rsp, answered) = through(&chain, with_origin("https://evil.com"));
    assert!(!answered);
    assert_eq!(cors_headers(&rsp), pairs(&[("vary", "origin")]));
    // An existing `Vary: Origin` is not repeated.
    let mut rsp = Response::builder()
        .header("vary", "Accept, Origin")
        .body(Body::empty())
        .unwrap();
    let rcx = chain.response_context(&with_origin("https://www.foo.com"));
    chain.apply_response_with(&mut rsp, &rcx);
    assert_eq!(values(rsp.headers(), "vary"), ["Accept, Origin"]);
}

#[test]
fn cors_without_origin_leaves_request_and_response_untouched() {
    let chain = compile(vec![cors(&["*"], true)]);
    let req = Request::options("/cors")
        .header("access-control-request-method", "GET")
        .body(Body::empty())
        .unwrap();
    let (rsp, answered) = through(&chain, req);
    assert!(!answered);
    assert_eq!(cors_headers(&rsp), Vec::<(String, String)>::new());
    let (rsp, _) = through(&chain, get("/", Some("a")));
    assert_eq!(cors_headers(&rsp), Vec::<(String, String)>::new());
    // `apply_response` alone (no context) adds nothing either.
    let mut rsp = Response::new(Body::empty());
    chain.apply_response(&mut rsp);
    assert!(rsp.headers().is_empty());
}

#[test]
fn cors_errors_name_the_field() {
    let bad = |f: fn(&mut CorsPolicy)| {
        let mut p = CorsPolicy::default();
        f(&mut p);
        compile_err(vec![
            Filter::RequestHeaderModifier(HeaderModifier::default()),
            Filter::Cors(p),
        ])
        .to_string()
    };
    for (err, field) in [
        (
            bad(|p| p.allow_origins = vec!["*".into(), "ftp://a.com".into()]),
            "[1].cors.allowOrigins[1]",
        ),
        (
            bad(|p| p.allow_origins = vec!["https://a.com/x".into()]),
            "[1].cors.allowOrigins[0]",
        ),
        (
            bad(|p| p.allow_origins = vec!["https://a.*.com".into()]),
            "[1].cors.allowOrigins[0]",
        ),
        (
            bad(|p| p.allow_origins = vec!["https://a.com:0".into()]),
            "[1].cors.allowOrigins[0]",
        ),
        (
            bad(|p| p.allow_origins = vec!["https://a.com:x".into()]),
            "[1].cors.allowOrigins[0]",
        ),
        (
            bad(|p| p.allow_methods = vec!["GE T".into()]),
            "[1].cors.allowMethods[0]",
        ),
        (
            bad(|p| p.allow_headers = vec!["ok".into(), "b@d".into()]),
            "[1].cors.allowHeaders[1]",
        ),
        (
            bad(|p| p.expose_headers = vec!["b d".into()]),
            "[1].cors.exposeHeaders[0]",
        ),
    ] {
        assert!(err.contains(field), "{err} should name {field}");
    }
    let twice = compile_err(vec![cors(&["*"], false), cors(&["*"], false)]).to_string();
    assert!(twice.contains("[1]") && twice.contains("cors"), "{twice}");
}
