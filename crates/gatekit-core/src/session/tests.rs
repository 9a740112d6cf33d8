use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, ServiceExt};

use super::token::{Token, salt};
use super::*;
use crate::BoxError;

const A: u64 = 0xaaaa;
const B: u64 = 0xbbbb;

/// A clock tests move by hand.
fn clock(start: u64) -> (SessionClock, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(start));
    let read = Arc::clone(&now);
    (
        SessionClock::from_fn(move || read.load(Ordering::Relaxed)),
        now,
    )
}

/// An inner service that "picks" the pinned endpoint if any, else `fallback`, and
/// reports it, as gatekit-lb's Upstream does.
fn picker(
    fallback: u64,
) -> impl tower::Service<
    Request<()>,
    Response = Response<()>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<()>, BoxError>>,
> + Clone {
    tower::service_fn(move |req: Request<()>| async move {
        let sticky = req.extensions().get::<Sticky>().unwrap();
        let ep = sticky.pinned_endpoint().unwrap_or(fallback);
        sticky.set_served_endpoint(ep);
        let mut rsp = Response::new(());
        rsp.headers_mut()
            .insert("x-served", ep.to_string().parse().unwrap());
        Ok::<_, BoxError>(rsp)
    })
}

fn cookie_of(rsp: &Response<()>) -> Option<String> {
    rsp.headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn with_cookie(c: Option<&str>) -> Request<()> {
    let mut b = Request::get("/");
    if let Some(c) = c {
        b = b.header(
            "cookie",
            format!("other=1; {}", c.split(';').next().unwrap()),
        );
    }
    b.body(()).unwrap()
}

async fn call(layer: &SessionLayer, fallback: u64, req: Request<()>) -> (u64, Option<String>) {
    let rsp = layer.layer(picker(fallback)).oneshot(req).await.unwrap();
    let served = rsp.headers()["x-served"].to_str().unwrap().parse().unwrap();
    (served, cookie_of(&rsp))
}

#[test]
fn a_token_round_trips_and_a_tampered_one_does_not_decode() {
    let t = Token {
        endpoint: endpoint_key("10.0.0.7:8080".parse().unwrap()),
        backend: Some(3),
        issued: 1_700_000_000,
        seen: 1_700_000_100,
    };
    let s = salt("ns/r/rules[0]", "sid");
    let text = t.encode(s);
    assert!(!text.contains("10.0.0.7"), "{text}");
    assert_eq!(Token::decode(text.as_bytes(), s), Some(t));
    // Another scope's or name's sessions are not this one's.
    assert_eq!(
        Token::decode(text.as_bytes(), salt("ns/r/rules[1]", "sid")),
        None
    );
    assert_eq!(
        Token::decode(text.as_bytes(), salt("ns/r/rules[0]", "x")),
        None
    );
    // Every single-character change is caught.
    for i in 0..text.len() {
        let mut bad = text.clone().into_bytes();
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        assert_eq!(Token::decode(&bad, s), None, "change at {i}");
    }
    for junk in ["", "1", "2abc", "1zz", &text[..text.len() - 2]] {
        assert_eq!(Token::decode(junk.as_bytes(), s), None, "{junk:?}");
    }
    let none = Token { backend: None, ..t };
    assert_eq!(Token::decode(none.encode(s).as_bytes(), s), Some(none));
}

#[test]
fn endpoint_keys_are_stable_and_distinct() {
    let a = endpoint_key("10.0.0.1:80".parse().unwrap());
    assert_eq!(a, endpoint_key("10.0.0.1:80".parse().unwrap()));
    assert_ne!(a, endpoint_key("10.0.0.1:81".parse().unwrap()));
    assert_ne!(a, endpoint_key("10.0.0.2:80".parse().unwrap()));
    // Fixed across builds and replicas: FNV-1a of the octets and port.
    assert_eq!(a, 0x6d1b_bbf7_7027_b8bc);
}

#[tokio::test]
async fn a_session_cookie_pins_and_a_garbage_one_starts_a_new_session() {
    let (clk, _) = clock(1_000);
    let layer =
        SessionLayer::new("scope", SessionPersistence::cookie(Some("sid".into()))).with_clock(clk);
    let (served, cookie) = call(&layer, A, with_cookie(None)).await;
    assert_eq!(served, A);
    let cookie = cookie.expect("a new session sets its cookie");
    assert!(cookie.starts_with("sid=1"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    for _ in 0..10 {
        let (served, again) = call(&layer, B, with_cookie(Some(&cookie))).await;
        assert_eq!(served, A, "pinned");
        assert_eq!(
            again, None,
            "an unchanged session without idle timeout is not re-sent"
        );
    }
    let (served, fresh) = call(&layer, B, with_cookie(Some("sid=1deadbeef"))).await;
    assert_eq!(served, B);
    assert!(fresh.is_some());
}

#[tokio::test]
async fn a_moved_session_gets_a_new_cookie() {
    let layer = SessionLayer::new("scope", SessionPersistence::cookie(Some("sid".into())));
    let (_, cookie) = call(&layer, A, with_cookie(None)).await;
    let cookie = cookie.unwrap();
    // The picker below ignores the pin (the endpoint went away) and serves B.
    let moved = tower::service_fn(|req: Request<()>| async move {
        req.extensions()
            .get::<Sticky>()
            .unwrap()
            .set_served_endpoint(B);
        Ok::<_, BoxError>(Response::new(()))
    });
    let rsp = layer
        .layer(moved)
        .oneshot(with_cookie(Some(&cookie)))
        .await
        .unwrap();
    let new = cookie_of(&rsp).expect("moved: a new cookie");
    let (served, _) = call(&layer, A, with_cookie(Some(&new))).await;
    assert_eq!(served, B);
}

#[tokio::test]
async fn absolute_and_idle_timeouts_expire_sessions() {
    let (clk, now) = clock(10_000);
    let config = SessionPersistence::cookie(Some("sid".into()))
        .with_absolute_timeout(Some(Duration::from_secs(100)))
        .with_idle_timeout(Some(Duration::from_secs(30)));
    let layer = SessionLayer::new("scope", config).with_clock(clk);
    let (_, c) = call(&layer, A, with_cookie(None)).await;
    let mut cookie = c.unwrap();
    // Requests every 20 s keep the idle timeout from running out; each refreshes it.
    for _ in 0..4 {
        now.fetch_add(20, Ordering::Relaxed);
        let (served, c) = call(&layer, B, with_cookie(Some(&cookie))).await;
        assert_eq!(served, A);
        cookie = c.expect("the idle timeout refreshes the cookie");
    }
    // 100 s after the start the absolute timeout ends it, though never idle.
    now.fetch_add(20, Ordering::Relaxed);
    let (served, _) = call(&layer, B, with_cookie(Some(&cookie))).await;
    assert_eq!(served, B, "absolute timeout");

    let (_, c) = call(&layer, A, with_cookie(None)).await;
    let cookie = c.unwrap();
    now.fetch_add(29, Ordering::Relaxed);
    assert_eq!(call(&layer, B, with_cookie(Some(&cookie))).await.0, A);
    now.fetch_add(30, Ordering::Relaxed);
    // The refresh at +29 is in a cookie this client did not keep: idle for 59 s.
    assert_eq!(
        call(&layer, B, with_cookie(Some(&cookie))).await.0,
        B,
        "idle timeout"
    );
}

#[tokio::test]
async fn a_permanent_cookie_has_max_age_and_secure_on_tls() {
    let (clk, now) = clock(50_000);
    let config = SessionPersistence::cookie(None)
        .with_lifetime(CookieLifetime::Permanent)
        .with_path("/app")
        .with_absolute_timeout(Some(Duration::from_secs(3600)));
    let layer = SessionLayer::new("ns/route/rules[0]", config).with_clock(clk);
    let mut req = with_cookie(None);
    req.extensions_mut().insert(crate::ConnectionInfo::new(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        true,
    ));
    let (_, cookie) = call(&layer, A, req).await;
    let cookie = cookie.unwrap();
    assert!(
        cookie.starts_with("gatekit-session-"),
        "generated name: {cookie}"
    );
    assert!(cookie.contains("; Path=/app"), "{cookie}");
    assert!(cookie.contains("; Max-Age=3600"), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    // A moved session later gets what is left of the absolute timeout... from its
    // own start: a new session starts afresh.
    now.fetch_add(600, Ordering::Relaxed);
    let (_, moved) = call(&layer, B, with_cookie(Some("gatekit-session-x=1"))).await;
    assert!(moved.unwrap().contains("; Max-Age=3600"));
}

#[tokio::test]
async fn header_mode_returns_the_header_and_reads_it_back() {
    let layer = SessionLayer::new(
        "scope",
        SessionPersistence::header(Some("X-Session".into())),
    );
    let rsp = layer
        .layer(picker(A))
        .oneshot(with_cookie(None))
        .await
        .unwrap();
    assert!(rsp.headers().get("set-cookie").is_none());
    let token = rsp.headers()["x-session"].clone();
    for _ in 0..5 {
        let req = Request::get("/")
            .header("x-session", token.clone())
            .body(())
            .unwrap();
        let rsp = layer.layer(picker(B)).oneshot(req).await.unwrap();
        assert_eq!(rsp.headers()["x-served"], A.to_string().as_str());
        assert_eq!(rsp.headers()["x-session"], token, "echoed back unchanged");
    }
}

#[test]
fn validation_names_the_field() {
    let bad = [
        (
            SessionPersistence::cookie(Some("a b".into())),
            "sessionName",
        ),
        (SessionPersistence::cookie(Some("".into())), "sessionName"),
        (
            SessionPersistence::header(Some("bad header".into())),
            "sessionName",
        ),
        (
            SessionPersistence::cookie(None).with_lifetime(CookieLifetime::Permanent),
            "absoluteTimeout",
        ),
        (
            SessionPersistence::cookie(None).with_path("app"),
            "cookie.path",
        ),
        (
            SessionPersistence::cookie(None).with_idle_timeout(Some(Duration::from_millis(10))),
            "idleTimeout",
        ),
    ];
    for (config, field) in bad {
        assert_eq!(config.validate().unwrap_err().field(), field, "{config:?}");
    }
    assert!(
        SessionPersistence::cookie(Some("JSESSIONID".into()))
            .validate()
            .is_ok()
    );
    assert!(SessionPersistence::header(None).validate().is_ok());
}
