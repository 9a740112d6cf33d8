//! Stream table precedence and weighted picks (the serving path is tested over real
//! sockets in `crates/gatekit-core/tests/stream_*.rs`).

use std::sync::Arc;

use super::*;
use crate::route::RouteId;

fn route(
    name: &str,
    created: i64,
    hostnames: &[&str],
    backends: &[(&str, u32)],
) -> Arc<StreamRoute> {
    let mut r = StreamRoute::new(RouteId::new("ns", name));
    r.created = created;
    r.hostnames = hostnames.iter().map(|h| (*h).to_owned()).collect();
    r.backends = backends
        .iter()
        .map(|(n, w)| StreamBackendRef::new(*n, *w))
        .collect();
    Arc::new(r)
}

fn backend(name: &str) -> Option<StreamBackend> {
    (name != "missing").then(|| StreamBackend::fixed(["127.0.0.1:1".parse().unwrap()]))
}

fn id(table: &StreamTable, sni: Option<&str>) -> Option<String> {
    table.route_for(sni).map(|id| id.name().to_owned())
}

#[test]
fn listener_by_sni_then_route_by_hostname_isolated() {
    let table = StreamTable::build(
        vec![
            StreamListener::new(ListenerMode::Passthrough)
                .hostname(Some("*.example.com"))
                .routes([route("wild", 0, &[], &[("b", 1)])]),
            StreamListener::new(ListenerMode::Passthrough)
                .hostname(Some("*.a.example.com"))
                .routes([
                    route("any", 1, &[], &[("b", 1)]),
                    route("exact", 5, &["x.a.example.com"], &[("b", 1)]),
                    route("wild-long", 3, &["*.a.example.com"], &[("b", 1)]),
                ]),
            StreamListener::new(ListenerMode::Passthrough)
                .hostname(Some("api.example.com"))
                .routes([route("other-host", 0, &["web.example.com"], &[("b", 1)])]),
            StreamListener::new(ListenerMode::Passthrough).routes([route(
                "catch",
                0,
                &[],
                &[("b", 1)],
            )]),
        ],
        backend,
    )
    .unwrap();
    assert!(table.is_tls());
    assert_eq!(
        id(&table, Some("x.a.example.com")).as_deref(),
        Some("exact")
    );
    assert_eq!(
        id(&table, Some("y.a.example.com")).as_deref(),
        Some("wild-long")
    );
    assert_eq!(id(&table, Some("b.example.com")).as_deref(), Some("wild"));
    assert_eq!(id(&table, Some("other.org")).as_deref(), Some("catch"));
    // The exact listener is chosen; its only route does not match: no fall-through.
    assert_eq!(id(&table, Some("api.example.com")), None);
    // No SNI on a TLS port: nothing.
    assert_eq!(id(&table, None), None);
}

#[test]
fn ties_go_to_the_oldest_then_the_smaller_id_and_tcp_takes_the_oldest() {
    let table = StreamTable::build(
        vec![StreamListener::new(ListenerMode::Passthrough).routes([
            route("b", 1, &["a.test"], &[("x", 1)]),
            route("a", 1, &["a.test"], &[("x", 1)]),
            route("old", 0, &["*.test"], &[("x", 1)]),
        ])],
        backend,
    )
    .unwrap();
    assert_eq!(id(&table, Some("a.test")).as_deref(), Some("a"));
    assert_eq!(id(&table, Some("z.test")).as_deref(), Some("old"));

    let tcp = StreamTable::build(
        vec![StreamListener::new(ListenerMode::Tcp).routes([
            route("young", 9, &[], &[("x", 1)]),
            route("z-old", 2, &[], &[("x", 1)]),
            route("a-old", 2, &[], &[("x", 1)]),
        ])],
        backend,
    )
    .unwrap();
    assert!(!tcp.is_tls());
    assert_eq!(id(&tcp, None).as_deref(), Some("a-old"));
    assert_eq!(id(&StreamTable::empty(), None), None);
}

#[test]
fn weights_zero_never_and_unresolved_shares_have_no_backend() {
    let table = StreamTable::build(
        vec![StreamListener::new(ListenerMode::Tcp).routes([route(
            "r",
            0,
            &[],
            &[("zero", 0), ("ok", 1), ("missing", 1)],
        )])],
        backend,
    )
    .unwrap();
    let (mut ok, mut none) = (0, 0);
    for _ in 0..2000 {
        match table.select(None).unwrap().backend {
            Some(_) => ok += 1,
            None => none += 1,
        }
    }
    // Half each (binomial, n = 2000: 6 sigma is about 134).
    assert!((866..=1134).contains(&ok), "{ok} resolved, {none} not");

    let all_zero = StreamTable::build(
        vec![StreamListener::new(ListenerMode::Tcp).routes([route("r", 0, &[], &[("a", 0)])])],
        backend,
    )
    .unwrap();
    assert!(all_zero.select(None).unwrap().backend.is_none());
}

#[test]
fn bad_hostnames_and_duplicate_listeners_are_refused_with_their_field() {
    let err = StreamTable::build(
        vec![StreamListener::new(ListenerMode::Passthrough).hostname(Some("a..b"))],
        backend,
    )
    .unwrap_err();
    assert!(err.field().starts_with("listeners[0].hostname"), "{err}");
    let err = StreamTable::build(
        vec![
            StreamListener::new(ListenerMode::Passthrough).hostname(Some("a.test")),
            StreamListener::new(ListenerMode::Passthrough).hostname(Some("A.test")),
        ],
        backend,
    )
    .unwrap_err();
    assert_eq!(err.field(), "listeners[1].hostname");
    let err = StreamTable::build(
        vec![
            StreamListener::new(ListenerMode::Passthrough).routes([route(
                "r",
                0,
                &["a.test", "bad host"],
                &[],
            )]),
        ],
        backend,
    )
    .unwrap_err();
    assert!(err.field().starts_with("hostnames[1]"), "{err}");
    assert_eq!(err.route().map(|r| r.name()), Some("r"));
}

#[test]
fn a_routes_open_count_is_shared_by_its_listeners_and_carried_over_a_reload() {
    let limited = |max| {
        let mut r = StreamRoute::new(RouteId::new("ns", "db"));
        r.backends = vec![StreamBackendRef::new("b", 1)];
        r.max_connections = Some(max);
        Arc::new(r)
    };
    let table = |max| {
        StreamTable::build(
            vec![
                StreamListener::new(ListenerMode::Passthrough)
                    .hostname(Some("a.example.com"))
                    .routes([limited(max)]),
                StreamListener::new(ListenerMode::Passthrough)
                    .hostname(Some("b.example.com"))
                    .routes([limited(max)]),
            ],
            backend,
        )
        .unwrap()
    };
    let router = StreamRouter::new(table(2));
    let old = router.load();
    let a = old
        .select(Some("a.example.com"))
        .unwrap()
        .acquire()
        .unwrap();
    // One count for the route, whichever listener took the connection.
    let b = old
        .select(Some("b.example.com"))
        .unwrap()
        .acquire()
        .unwrap();
    assert!(
        old.select(Some("a.example.com"))
            .unwrap()
            .acquire()
            .is_none()
    );
    // A reload keeps counting the connections opened under the old table.
    router.store(table(3));
    let new = router.load();
    let c = new
        .select(Some("a.example.com"))
        .unwrap()
        .acquire()
        .unwrap();
    assert!(
        new.select(Some("b.example.com"))
            .unwrap()
            .acquire()
            .is_none()
    );
    let open: Vec<_> = new.open_connections().collect();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].1, open[0].2), (Some(3), 3));
    drop((a, b, c));
    assert_eq!(new.open_connections().next().unwrap().2, 0);
}

fn cidr(s: &str) -> crate::ratelimit::Cidr {
    s.parse().unwrap()
}

#[test]
fn stream_access_first_match_decides_else_the_default() {
    let check = StreamAccess::new("p", false)
        .deny([cidr("10.9.0.0/16")])
        .allow([cidr("10.0.0.0/8"), cidr("2001:db8::/32")]);
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert!(check.allows(ip("10.1.2.3")));
    // The earlier deny wins over the later allow.
    assert!(!check.allows(ip("10.9.1.1")));
    assert!(!check.allows(ip("192.0.2.1")));
    assert!(check.allows(ip("2001:db8::1")));
    // An IPv4-mapped IPv6 client is its IPv4 address.
    assert!(check.allows(ip("::ffff:10.1.2.3")));
    let deny_list = StreamAccess::new("p", true).deny([cidr("192.0.2.0/24")]);
    assert!(deny_list.allows(ip("198.51.100.1")));
    assert!(!deny_list.allows(ip("192.0.2.7")));
    assert!(!StreamAccess::deny_all("p").allows(ip("127.0.0.1")));
}

#[test]
fn a_routes_checks_all_apply_and_a_route_without_any_allows_everyone() {
    let guarded = |checks: Vec<StreamAccess>| {
        let mut r = StreamRoute::new(RouteId::new("ns", "db"));
        r.backends = vec![StreamBackendRef::new("b", 1)];
        r.access = checks.into_iter().map(Arc::new).collect();
        StreamTable::build(
            vec![StreamListener::new(ListenerMode::Tcp).routes([Arc::new(r)])],
            backend,
        )
        .unwrap()
    };
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let open = guarded(Vec::new());
    assert!(open.select(None).unwrap().allows(ip("203.0.113.9")));
    let both = guarded(vec![
        StreamAccess::new("override", false).allow([cidr("10.0.0.0/8")]),
        StreamAccess::new("policy", true).deny([cidr("10.9.0.0/16")]),
    ]);
    let selected = both.select(None).unwrap();
    assert!(selected.allows(ip("10.1.2.3")));
    // Allowed by the first check, denied by the second.
    assert!(!selected.allows(ip("10.9.0.1")));
    // Denied by the first.
    assert!(!selected.allows(ip("127.0.0.1")));
}
