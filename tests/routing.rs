//! End to end: the Router served on a real socket in front of real echo backends.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use gatekit_core::client::Client;
use gatekit_core::route::{
    BackendRef, Filter, HeaderModifier, Match, Mirror, PathMatch, PathModifier, Redirect, Route,
    RouteId, Rule, StringMatch, UrlRewrite,
};
use gatekit_core::{Backend, RouteTable, Router};
use gatekit_tests::{EchoBackend, Gateway, TestClient, closed_port};
use http::Request;
use http_body_util::Full;

fn backends(list: &[(&str, std::net::SocketAddr)]) -> HashMap<String, Backend> {
    let client = Client::new(Default::default());
    list.iter()
        .map(|(name, addr)| (name.to_string(), Backend::single(&client, *addr)))
        .collect()
}

fn path(p: PathMatch) -> Match {
    let mut m = Match::default();
    m.path = Some(p);
    m
}

fn rule(matches: Vec<Match>, backends: &[(&str, u32)]) -> Rule {
    let mut r = Rule::default();
    r.matches = matches.into();
    r.backends = backends
        .iter()
        .map(|(n, w)| BackendRef::new(*n, *w))
        .collect();
    r
}

fn route(name: &str, hostnames: &[&str], rules: Vec<Rule>) -> Route {
    let mut r = Route::new(RouteId::new("default", name));
    r.hostnames = hostnames.iter().map(|h| h.to_string()).collect();
    r.rules = rules.into();
    r
}

async fn get_with(
    client: &TestClient,
    url: &str,
    headers: &[(&str, &str)],
) -> gatekit_tests::Reply {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    client.send(req.body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn every_match_kind_routes_to_its_backend() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let be = backends(&[("a", a.addr), ("b", b.addr)]);

    let header = Match::default().with_header_match("X-Team", StringMatch::Exact("blue".into()));
    let query = Match::default().with_query_match("v", StringMatch::Regex("2|3".into()));
    let mut method = Match::default();
    method.method = Some(http::Method::POST);
    let routes = vec![
        route(
            "exact",
            &[],
            vec![rule(
                vec![path(PathMatch::Exact("/exact".into()))],
                &[("b", 1)],
            )],
        ),
        route(
            "prefix",
            &[],
            vec![rule(
                vec![path(PathMatch::Prefix("/pre".into()))],
                &[("b", 1)],
            )],
        ),
        // Any PathPrefix (even the fallback's "/") outranks a regex, so the regex route
        // gets its own host; a miss there falls through to the routes without hostnames.
        route(
            "regex",
            &["re.test"],
            vec![rule(
                vec![path(PathMatch::Regex("/re/[0-9]+".into()))],
                &[("b", 1)],
            )],
        ),
        route("header", &[], vec![rule(vec![header], &[("b", 1)])]),
        route("query", &[], vec![rule(vec![query], &[("b", 1)])]),
        route("method", &[], vec![rule(vec![method], &[("b", 1)])]),
        route("host", &["*.b.test"], vec![rule(vec![], &[("b", 1)])]),
        route("fallback", &[], vec![rule(vec![], &[("a", 1)])]),
    ];
    let gw = Gateway::start(Router::new(RouteTable::build(routes, &be).unwrap())).await;
    let c = TestClient::new();

    // (path, request headers, backend that must answer)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("/exact", vec![], "b"),
        ("/exact/x", vec![], "a"),
        ("/pre", vec![], "b"),
        ("/pre/x/y", vec![], "b"),
        ("/prefix", vec![], "a"), // whole segments only
        ("/re/42", vec![("host", "re.test")], "b"),
        ("/re/x", vec![("host", "re.test")], "a"),
        ("/any", vec![("x-team", "blue")], "b"), // header names are case-insensitive
        ("/any", vec![("x-team", "red")], "a"),
        ("/any?v=3", vec![], "b"),
        ("/any?v=4", vec![], "a"),
        ("/any", vec![("host", "api.b.test")], "b"),
        ("/any", vec![("host", "b.test")], "a"), // wildcard needs a label
    ];
    for (p, headers, want) in cases {
        let reply = get_with(&c, &gw.url(p), &headers).await;
        assert_eq!(reply.status, 200, "{p} {headers:?}");
        assert_eq!(
            reply.header("x-backend"),
            Some(want),
            "{p} {headers:?} {:?}",
            reply.header("x-echo-path")
        );
    }
    let post = c
        .send(Request::post(gw.url("/any")).body(Full::from("x")).unwrap())
        .await;
    assert_eq!(post.header("x-backend"), Some("b"));
}

#[tokio::test]
async fn weighted_split_is_proportional_and_weight_zero_never_chosen() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let z = EchoBackend::start("z").await;
    let be = backends(&[("a", a.addr), ("b", b.addr), ("z", z.addr)]);
    let routes = vec![route(
        "split",
        &[],
        vec![rule(vec![], &[("a", 80), ("b", 20), ("z", 0)])],
    )];
    let gw = Gateway::start(Router::new(RouteTable::build(routes, &be).unwrap())).await;
    let c = TestClient::new();
    const N: usize = 2_000;
    let mut to_a = 0;
    for _ in 0..N {
        let reply = c.get(&gw.url("/")).await;
        match reply.header("x-backend") {
            Some("a") => to_a += 1,
            Some("b") => {}
            other => panic!("unexpected backend {other:?}"),
        }
    }
    // Binomial(2000, 0.8): sd ≈ 17.9 requests (0.9%); ±4% is over 4 sd.
    let share = to_a as f64 / N as f64;
    assert!((share - 0.8).abs() < 0.04, "share to a = {share}");
    assert_eq!(z.hits(), 0);
}

#[tokio::test]
async fn no_route_is_404_invalid_backend_is_500_dead_backend_is_503() {
    let dead = closed_port().await;
    let be = backends(&[("dead", dead)]);
    let routes = vec![
        route(
            "missing",
            &[],
            vec![rule(
                vec![path(PathMatch::Prefix("/missing".into()))],
                &[("nope", 1)],
            )],
        ),
        route(
            "dead",
            &[],
            vec![rule(
                vec![path(PathMatch::Prefix("/dead".into()))],
                &[("dead", 1)],
            )],
        ),
        route(
            "empty",
            &[],
            vec![rule(vec![path(PathMatch::Prefix("/empty".into()))], &[])],
        ),
    ];
    let gw = Gateway::start(Router::new(RouteTable::build(routes, &be).unwrap())).await;
    let c = TestClient::new();

    let r = c.get(&gw.url("/elsewhere")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-gatekit-error"), Some("no-route"));
    let r = c.get(&gw.url("/missing")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-gatekit-error"), Some("invalid-backend"));
    let r = c.get(&gw.url("/empty")).await;
    assert_eq!(r.status, 500);
    let r = c.get(&gw.url("/dead")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-gatekit-error"), Some("upstream-connect"));
    assert!(std::str::from_utf8(&r.body).unwrap().contains("connect"));
}

#[tokio::test]
async fn filters_apply_on_the_wire() {
    let mut a = EchoBackend::start("a").await;
    let mut mirror = EchoBackend::start("mirror").await;
    let be = backends(&[("a", a.addr), ("mirror", mirror.addr)]);

    let mut redirect = Redirect::default();
    redirect.scheme = Some("https".into());
    redirect.path = Some(PathModifier::ReplacePrefixMatch("/new".into()));
    redirect.status = 308;
    let redirect_rule = rule(vec![path(PathMatch::Prefix("/old".into()))], &[])
        .with_filter(Filter::RequestRedirect(redirect));

    let mut rewrite = UrlRewrite::default();
    rewrite.hostname = Some("internal.svc".into());
    rewrite.path = Some(PathModifier::ReplacePrefixMatch("/v2".into()));
    let mut req_mod = HeaderModifier::default();
    req_mod.set.push(("x-env".into(), "prod".into()));
    req_mod.remove.push("x-secret".into());
    let mut rsp_mod = HeaderModifier::default();
    rsp_mod.add.push(("x-frame-options".into(), "DENY".into()));
    let mut api = rule(vec![path(PathMatch::Prefix("/api".into()))], &[("a", 1)]);
    api.filters = Box::new([
        Filter::UrlRewrite(rewrite),
        Filter::RequestHeaderModifier(req_mod),
        Filter::ResponseHeaderModifier(rsp_mod),
        Filter::RequestMirror(Mirror::new("mirror")),
    ]);
    let routes = vec![route("filters", &["shop.test"], vec![redirect_rule, api])];
    let gw = Gateway::start(Router::new(RouteTable::build(routes, &be).unwrap())).await;
    let c = TestClient::new();

    let r = get_with(&c, &gw.url("/old/cart?x=1"), &[("host", "shop.test")]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://shop.test/new/cart?x=1"));
    assert_eq!(a.hits(), 0, "a redirect never reaches a backend");

    let req = Request::post(gw.url("/api/items?id=7"))
        .header("host", "shop.test")
        .header("x-secret", "s3")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let seen = a.next_seen().await;
    assert_eq!(
        seen.uri.path_and_query().unwrap().as_str(),
        "/v2/items?id=7"
    );
    assert_eq!(seen.headers["host"], "internal.svc");
    assert_eq!(seen.headers["x-env"], "prod");
    assert!(seen.headers.get("x-secret").is_none());
    assert_eq!(seen.headers["x-forwarded-host"], "shop.test");
    assert!(
        seen.headers["x-forwarded-for"]
            .to_str()
            .unwrap()
            .contains("127.0.0.1")
    );
    assert!(seen.headers.contains_key("x-request-id"));
    let copy = mirror.next_seen().await;
    assert_eq!(copy.method, http::Method::POST);
    assert_eq!(&copy.body[..], b"payload");
}

#[tokio::test]
async fn slow_backend_does_not_block_other_requests() {
    // A backend that accepts but never answers, and a healthy one.
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = stuck.accept().await {
            held.push(s);
        }
    });
    let a = EchoBackend::start("a").await;
    let be = backends(&[("a", a.addr), ("stuck", stuck_addr)]);
    let routes = vec![
        route(
            "stuck",
            &[],
            vec![rule(
                vec![path(PathMatch::Prefix("/stuck".into()))],
                &[("stuck", 1)],
            )],
        ),
        route("ok", &[], vec![rule(vec![], &[("a", 1)])]),
    ];
    let gw = Gateway::start(Router::new(RouteTable::build(routes, &be).unwrap())).await;
    let c = TestClient::new();
    let stuck_url = gw.url("/stuck");
    let pending: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            let url = stuck_url.clone();
            tokio::spawn(async move { c.get(&url).await })
        })
        .collect();
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..20 {
            assert_eq!(c.get(&gw.url("/fine")).await.header("x-backend"), Some("a"));
        }
    })
    .await;
    assert!(ok.is_ok(), "healthy route blocked behind a stuck backend");
    assert!(pending.iter().all(|p| !p.is_finished()));
    for p in pending {
        p.abort();
    }
}

#[tokio::test]
async fn a_new_table_serves_the_next_request_while_in_flight_ones_finish() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let be = backends(&[("a", a.addr), ("b", b.addr)]);
    let router = Router::new(
        RouteTable::build(vec![route("r", &[], vec![rule(vec![], &[("a", 1)])])], &be).unwrap(),
    );
    let gw = Gateway::start(router.clone()).await;
    let c = TestClient::new();
    assert_eq!(c.get(&gw.url("/")).await.header("x-backend"), Some("a"));
    let mut failures = 0;
    for i in 0..50 {
        let target = if i % 2 == 0 { "b" } else { "a" };
        router.store(
            RouteTable::build(
                vec![route("r", &[], vec![rule(vec![], &[(target, 1)])])],
                &be,
            )
            .unwrap(),
        );
        let r = c.get(&gw.url("/")).await;
        if r.status != 200 || r.header("x-backend") != Some(target) {
            failures += 1;
        }
    }
    assert_eq!(failures, 0);
}
