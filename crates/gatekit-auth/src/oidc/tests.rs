//! OIDC login tests: the layer in a real hyper server in front of an echo service,
//! the testkit's provider on loopback, a browser with a cookie jar driving the flow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_core::access::{AccessPolicy, Identity};
use gatekit_core::client::Client;
use gatekit_core::ratelimit::ValueMatch;
use gatekit_core::{Backend, Body, BoxError};
use gatekit_testkit::oidc::{Browser, Page, Provider, Spoil, parse_query, query_values};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use ring::rand::SystemRandom;
use serde_json::json;

use super::cookie::CookieKey;
use super::session::{LoginState, Session};
use super::*;
use crate::VerifiedClaims;
use crate::apikey::tests::serve;

const SECRET: &str = "client-secret-value-7f3a";

/// Answers with what it received, one item per line; counts its calls.
fn echo(reached: Arc<AtomicUsize>) -> Backend {
    Backend::new(tower::service_fn(move |req: Request<Body>| {
        reached.fetch_add(1, Ordering::SeqCst);
        let h = |name: &str| {
            req.headers()
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        let identity = req
            .extensions()
            .get::<Identity>()
            .map(|i| format!("{}:{}", i.method(), i.subject()))
            .unwrap_or_default();
        let claims = req.extensions().get::<VerifiedClaims>();
        let email = claims
            .and_then(|c| c.claims.get("email")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        let groups = claims
            .and_then(|c| c.claims.get("groups")?.as_array().map(Vec::len))
            .unwrap_or_default();
        let body = format!(
            "identity={identity}\nemail={email}\ngroups={groups}\nauthorization={}\ntarget={}\ncookie={}",
            h("authorization"),
            req.uri(),
            h("cookie"),
        );
        async move { Ok::<_, BoxError>(Response::new(Body::from(body))) }
    }))
}

struct Env {
    provider: Provider,
    gw: SocketAddr,
    layer: OidcLayer,
    reached: Arc<AtomicUsize>,
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw)
    }

    fn advance(&self, secs: u64) {
        self.layer
            .shared()
            .clock_offset
            .fetch_add(secs, Ordering::Relaxed);
    }

    fn cookie(&self) -> &str {
        self.layer.cookie_name()
    }
}

fn base_config(provider: &Provider) -> OidcConfig {
    let backend = Backend::single(&Client::default(), provider.addr());
    OidcConfig::new(provider.issuer(), "app", SECRET, backend)
        .secure_cookies(false)
        .discovery_backoff(Duration::from_millis(20), Duration::from_millis(100))
}

async fn ready(layer: &OidcLayer) {
    let mut rx = layer.status();
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|s| s.discovered() && s.keys().succeeded() > 0),
    )
    .await
    .expect("discovery and keys")
    .unwrap();
}

async fn env_with(provider: Provider, configure: impl FnOnce(OidcConfig) -> OidcConfig) -> Env {
    let layer = OidcLayer::new(configure(base_config(&provider))).unwrap();
    ready(&layer).await;
    let reached = Arc::new(AtomicUsize::new(0));
    let policy = OidcPolicy::from_layer(layer.clone());
    let gw = serve(policy.layer(echo(reached.clone()))).await;
    Env {
        provider,
        gw,
        layer,
        reached,
    }
}

async fn env(configure: impl FnOnce(OidcConfig) -> OidcConfig) -> Env {
    env_with(Provider::start("app", SECRET).await, configure).await
}

fn is_login_redirect(page: &Page, env: &Env) -> bool {
    page.status == StatusCode::FOUND
        && page
            .location()
            .is_some_and(|l| l.starts_with(&format!("{}/authorize?", env.provider.issuer())))
}

/// Starts a login at `path`: the browser is at the provider's redirect back to the
/// callback, not followed yet. Returns the callback URL.
async fn start_login(env: &Env, b: &mut Browser, path: &str) -> String {
    let first = b.get(&env.url(path)).await;
    assert!(is_login_redirect(&first, env), "{first:?}");
    let at_provider = b.get(first.location().unwrap()).await;
    assert_eq!(at_provider.status, StatusCode::FOUND);
    at_provider.location().unwrap().to_owned()
}

async fn logged_in(env: &Env, path: &str) -> Browser {
    let mut b = Browser::new();
    let pages = b.follow(&env.url(path)).await;
    let last = pages.last().unwrap();
    assert_eq!(last.status, StatusCode::OK, "{pages:#?}");
    b
}

fn line<'a>(page: &'a Page, key: &str) -> &'a str {
    page.body
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {}", page.body))
}

// === the flow ===

#[tokio::test]
async fn a_login_restores_the_original_url_and_the_session_lets_requests_through() {
    let env = env(|c| {
        c.scopes(["email", "profile"])
            .resources(["https://api.example"])
            .forward_access_token(true)
    })
    .await;
    env.provider
        .set_extra_claims(json!({"email": "alice@example.com"}));
    let mut b = Browser::new();
    b.jar.insert("theme".into(), "dark".into());
    let pages = b.follow(&env.url("/app/page?x=1&y=two")).await;
    assert_eq!(pages.len(), 4, "{pages:#?}");
    assert!(is_login_redirect(&pages[0], &env));
    let login_cookie = &pages[0].set_cookies()[0];
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Lax"));
    let auth = env.provider.last_authorize().unwrap();
    assert_eq!(auth["response_type"], "code");
    assert_eq!(auth["client_id"], "app");
    assert_eq!(auth["scope"], "openid email profile");
    assert_eq!(auth["code_challenge_method"], "S256");
    assert_eq!(auth["code_challenge"].len(), 43);
    assert_eq!(
        auth["redirect_uri"],
        format!("http://{}/oauth2/callback", env.gw)
    );
    assert!(auth["state"].len() >= 43 && auth["nonce"].len() >= 43);
    let q = pages[0].location().unwrap().split_once('?').unwrap().1;
    assert_eq!(query_values(q, "resource"), ["https://api.example"]);

    // The callback sets the session and sends the browser back where it started.
    let callback = &pages[2];
    assert_eq!(callback.location(), Some("/app/page?x=1&y=two"));
    assert!(
        callback
            .set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{}=", env.cookie()))
                && c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
                && c.contains("Path=/"))
    );
    assert!(
        !b.jar.keys().any(|k| k.contains("-state-")),
        "state cookie cleared"
    );

    let page = &pages[3];
    assert_eq!(line(page, "identity"), "oidc:alice");
    assert_eq!(line(page, "email"), "alice@example.com");
    assert_eq!(line(page, "target"), "/app/page?x=1&y=two");
    assert_eq!(
        line(page, "cookie"),
        "theme=dark",
        "session cookies never go upstream"
    );
    assert!(line(page, "authorization").starts_with("Bearer at-"));

    // The session alone lets later requests through: no new login, no token request.
    let again = b.get(&env.url("/other")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(line(&again, "identity"), "oidc:alice");
    assert_eq!(env.provider.count("token"), 1);
    assert_eq!(env.provider.count("authorize"), 1);
    assert_eq!(env.reached.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_login_after_the_provider_rotates_its_key_fetches_the_new_key() {
    let env = env(|c| c).await;
    logged_in(&env, "/").await;
    let before = env.provider.count("jwks");
    env.provider.rotate_key();
    let b = logged_in(&env, "/").await;
    assert!(env.provider.count("jwks") > before);
    assert!(b.jar.contains_key(env.cookie()));
}

#[tokio::test]
async fn a_tampered_state_parameter_is_refused() {
    let env = env(|c| c).await;
    let mut b = Browser::new();
    let callback = start_login(&env, &mut b, "/x").await;
    let state = parse_query(callback.split_once('?').unwrap().1)["state"].clone();
    let mut forged = state.clone().into_bytes();
    forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
    let forged = callback.replace(&state, std::str::from_utf8(&forged).unwrap());
    assert_eq!(b.get(&forged).await.status, StatusCode::UNAUTHORIZED);
    let no_state = callback.replace(&format!("&state={state}"), "");
    assert_eq!(b.get(&no_state).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        env.provider.count("token"),
        0,
        "refused before the exchange"
    );
    // The genuine callback still works: the failed attempts used nothing up.
    let done = b.get(&callback).await;
    assert_eq!(done.status, StatusCode::FOUND);
    assert_eq!(done.location(), Some("/x"));
    assert_eq!(env.reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_state_cookie_from_another_login_is_refused() {
    let env = env(|c| c).await;
    let mut alice = Browser::new();
    let mut mallory = Browser::new();
    let alice_callback = start_login(&env, &mut alice, "/a").await;
    let _mallory_callback = start_login(&env, &mut mallory, "/m").await;
    // Mallory's browser holds a state cookie, but of its own login.
    assert_eq!(
        mallory.get(&alice_callback).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Mallory's state cookie renamed to Alice's login's name does not open either.
    let alice_name = alice
        .jar
        .keys()
        .find(|k| k.contains("-state-"))
        .unwrap()
        .clone();
    let (mallory_name, mallory_value) = mallory
        .jar
        .iter()
        .find(|(k, _)| k.contains("-state-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    mallory.jar.remove(&mallory_name);
    mallory.jar.insert(alice_name, mallory_value);
    assert_eq!(
        mallory.get(&alice_callback).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Even sealed with the real key under the right name, a cookie holding another
    // login's state is refused: the state inside must equal the parameter.
    let shared = env.layer.shared();
    let alice_state = parse_query(alice_callback.split_once('?').unwrap().1)["state"].clone();
    let name = shared.state_cookie_name(&alice_state);
    let other = LoginState {
        state: "another-state".into(),
        nonce: "n".into(),
        verifier: "v".into(),
        url: "/".into(),
        exp: shared.now() + 60,
    };
    let sealed = shared
        .state_key
        .seal(
            &SystemRandom::new(),
            &name,
            &serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
    let mut forger = Browser::new();
    forger.jar.insert(name, sealed);
    assert_eq!(
        forger.get(&alice_callback).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(env.provider.count("token"), 0);
    assert_eq!(alice.get(&alice_callback).await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn a_callback_is_used_once_and_login_states_expire() {
    let env = env(|c| c.csrf_token_ttl(Duration::from_secs(60))).await;
    let mut b = Browser::new();
    let callback = start_login(&env, &mut b, "/x").await;
    let saved = b.jar.clone();
    assert_eq!(b.get(&callback).await.status, StatusCode::FOUND);
    // Replayed with the state cookie it had: refused before the token endpoint.
    let mut replay = Browser { jar: saved };
    assert_eq!(replay.get(&callback).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(env.provider.count("token"), 1);

    let mut late = Browser::new();
    let callback = start_login(&env, &mut late, "/y").await;
    env.advance(61);
    assert_eq!(late.get(&callback).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(env.provider.count("token"), 1);
}

#[tokio::test]
async fn tampered_truncated_foreign_and_expired_session_cookies_mean_a_new_login() {
    let env = env(|c| c.refresh_token(false)).await;
    let b = logged_in(&env, "/").await;
    let name = env.cookie().to_owned();
    let good = b.jar[&name].clone();
    let reached = env.reached.load(Ordering::SeqCst);

    let mut flipped = good.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let session = Session {
        id: "x.eyJzdWIiOiJtYWxsb3J5In0.x".into(),
        at: "at".into(),
        rt: None,
        exp: u64::MAX / 2,
        rexp: None,
    };
    let foreign = CookieKey::derive(b"another-secret", &name)
        .seal(
            &SystemRandom::new(),
            &name,
            &serde_json::to_vec(&session).unwrap(),
        )
        .unwrap();
    for bad in [
        String::from_utf8(flipped).unwrap(),
        good[..good.len() - 10].to_owned(),
        foreign,
        "c2.AAAA".to_owned(),
        "not base64 !".to_owned(),
    ] {
        let mut m = Browser::new();
        m.jar.insert(name.clone(), bad);
        let page = m.get(&env.url("/")).await;
        assert!(is_login_redirect(&page, &env), "{page:?}");
    }
    assert_eq!(env.reached.load(Ordering::SeqCst), reached);

    // The genuine cookie works until the tokens expire (refresh off): then a login.
    let mut b = b;
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);
    env.advance(3601);
    assert!(is_login_redirect(&b.get(&env.url("/")).await, &env));
}

#[tokio::test]
async fn spoiled_id_tokens_are_refused() {
    let env = env(|c| c).await;
    for spoil in [
        Spoil::Nonce,
        Spoil::Audience,
        Spoil::Issuer,
        Spoil::Signature,
    ] {
        let mut b = Browser::new();
        let callback = start_login(&env, &mut b, "/").await;
        env.provider.spoil_next_id_token(spoil);
        let page = b.get(&callback).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{spoil:?}");
        assert!(!b.jar.contains_key(env.cookie()), "{spoil:?}: no session");
    }
    assert_eq!(env.reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_provider_checks_the_pkce_verifier_the_layer_sends() {
    let env = env(|c| c).await;
    let mut b = Browser::new();
    let callback = start_login(&env, &mut b, "/").await;
    let code = parse_query(callback.split_once('?').unwrap().1)["code"].clone();
    // The code with a wrong verifier: refused (and spent).
    let token = Backend::single(&Client::default(), env.provider.addr());
    let form = format!(
        "grant_type=authorization_code&code={code}&code_verifier=wrong&redirect_uri={}",
        super::provider::form_encode(&format!("http://{}/oauth2/callback", env.gw))
    );
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("app:{SECRET}"))
    };
    let req = Request::post(format!("{}/token", env.provider.issuer()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(Body::from(form))
        .unwrap();
    let rsp = token.send(req).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        env.provider.last_token_error().as_deref(),
        Some("PKCE verifier")
    );
    assert_eq!(b.get(&callback).await.status, StatusCode::UNAUTHORIZED);
    // Through the layer, the verifier matches the challenge: the login succeeds.
    logged_in(&env, "/").await;
}

#[tokio::test]
async fn an_expired_session_is_refreshed_and_the_renewed_cookie_set() {
    let env = env(|c| c).await;
    let mut b = logged_in(&env, "/").await;
    let before = b.jar[env.cookie()].clone();
    env.advance(3601);
    let page = b.get(&env.url("/after")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(line(&page, "identity"), "oidc:alice");
    assert_eq!(env.provider.count("token:refresh_token"), 1);
    assert!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{}=", env.cookie())))
    );
    assert_ne!(b.jar[env.cookie()], before);
    // The renewed session serves on its own.
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);
    assert_eq!(env.provider.count("token:refresh_token"), 1);
}

#[tokio::test]
async fn a_failed_refresh_means_a_new_login() {
    let env = env(|c| c).await;
    let mut b = logged_in(&env, "/").await;
    env.provider.revoke_refresh_tokens();
    env.advance(3601);
    let page = b.get(&env.url("/")).await;
    assert!(is_login_redirect(&page, &env), "{page:?}");
    assert_eq!(env.provider.count("token:refresh_token"), 1);
}

#[tokio::test]
async fn logout_clears_the_cookies_and_goes_to_the_end_session_endpoint() {
    let env = env(|c| c.post_logout_redirect_url("https://app.example/bye")).await;
    let mut b = logged_in(&env, "/").await;
    let page = b.get(&env.url("/logout")).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{}=;", env.cookie())) && c.contains("Max-Age=0"))
    );
    assert!(!b.jar.contains_key(env.cookie()));
    let location = page.location().unwrap();
    assert!(location.starts_with(&format!("{}/end_session?", env.provider.issuer())));
    b.get(location).await;
    let q = env.provider.last_end_session().unwrap();
    assert_eq!(q["client_id"], "app");
    assert_eq!(q["post_logout_redirect_uri"], "https://app.example/bye");
    assert_eq!(q["id_token_hint"].split('.').count(), 3);
    assert!(is_login_redirect(&b.get(&env.url("/")).await, &env));

    // Without an end-session endpoint: back to `/`.
    let provider = Provider::start("app", SECRET).await;
    provider.set_end_session(false);
    let env = env_with(provider, |c| c).await;
    let mut b = logged_in(&env, "/").await;
    let page = b.get(&env.url("/logout")).await;
    assert_eq!(page.location(), Some("/"));
    assert!(!b.jar.contains_key(env.cookie()));
}

#[tokio::test]
async fn deny_redirect_headers_and_other_methods_get_401() {
    let env = env(|c| {
        c.deny_redirect_header(
            HeaderName::from_static("x-requested-with"),
            ValueMatch::Exact(HeaderValue::from_static("XMLHttpRequest")),
        )
    })
    .await;
    let mut b = Browser::new();
    let page = b
        .request(
            Method::GET,
            &env.url("/"),
            &[("x-requested-with", "XMLHttpRequest")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b.request(Method::POST, &env.url("/"), &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(is_login_redirect(&b.get(&env.url("/")).await, &env));
    assert_eq!(env.reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn cookies_are_secure_and_the_redirect_https_by_default() {
    let env = env(|c| c.secure_cookies(true)).await;
    let page = Browser::new().get(&env.url("/")).await;
    assert!(page.set_cookies()[0].contains("; Secure"));
    let q = parse_query(page.location().unwrap().split_once('?').unwrap().1);
    assert_eq!(
        q["redirect_uri"],
        format!("https://{}/oauth2/callback", env.gw)
    );
}

#[tokio::test]
async fn requests_get_503_until_discovery_succeeds() {
    let provider = Provider::start("app", SECRET).await;
    provider.set_discovery_failing(true);
    let layer = OidcLayer::new(base_config(&provider)).unwrap();
    let mut status = layer.status();
    status
        .wait_for(|s| s.discovery_failures() >= 1)
        .await
        .unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let gw = serve(OidcPolicy::from_layer(layer.clone()).layer(echo(reached))).await;
    let page = Browser::new().get(&format!("http://{gw}/")).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    provider.set_discovery_failing(false);
    ready(&layer).await;
    let page = Browser::new().get(&format!("http://{gw}/")).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert!(provider.count("discovery") >= 2);
}

#[tokio::test]
async fn discovery_refuses_a_document_of_another_issuer() {
    let provider = Provider::start("app", SECRET).await;
    let backend = Backend::single(&Client::default(), provider.addr());
    // The provider's document names `http://127.0.0.1:<port>`; configured differently.
    let issuer = format!("http://localhost:{}", provider.addr().port());
    let layer = OidcLayer::new(
        OidcConfig::new(issuer, "app", SECRET, backend)
            .discovery_backoff(Duration::from_millis(10), Duration::from_millis(10)),
    )
    .unwrap();
    let mut status = layer.status();
    status
        .wait_for(|s| s.discovery_failures() >= 2)
        .await
        .unwrap();
    assert!(!status.borrow().discovered());
}

#[tokio::test]
async fn a_large_session_is_chunked_over_several_cookies_and_read_back() {
    let env = env(|c| c).await;
    let groups: Vec<String> = (0..400).map(|i| format!("group-number-{i:04}")).collect();
    env.provider.set_extra_claims(json!({ "groups": groups }));
    let mut b = logged_in(&env, "/").await;
    let name = env.cookie().to_owned();
    assert!(
        b.jar.contains_key(&format!("{name}-1")),
        "{:?}",
        b.jar.keys()
    );
    assert!(b.jar[&name].starts_with('c'));
    let page = b.get(&env.url("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(line(&page, "groups"), "400");
    assert_eq!(line(&page, "cookie"), "", "no chunk goes upstream");
    // A chunk missing: no session.
    let mut partial = b.clone();
    partial.jar.remove(&format!("{name}-1"));
    assert!(is_login_redirect(&partial.get(&env.url("/")).await, &env));

    // A smaller renewed session deletes the chunks it no longer uses.
    env.provider.set_extra_claims(json!({}));
    env.advance(3601);
    let page = b.get(&env.url("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(line(&page, "groups"), "0");
    assert!(
        !b.jar.contains_key(&format!("{name}-1")),
        "{:?}",
        b.jar.keys()
    );
    assert_eq!(b.get(&env.url("/")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_bearer_jwt_passes_without_a_session_when_pass_through_is_on() {
    let env = env(|c| c.pass_through_auth_header(true)).await;
    let token = env.provider.id_token(None);
    let mut b = Browser::new();
    let page = b
        .request(
            Method::GET,
            &env.url("/api"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(line(&page, "identity"), "jwt:alice");
    let page = b
        .request(
            Method::GET,
            &env.url("/api"),
            &[("authorization", "Bearer nope")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(is_login_redirect(&b.get(&env.url("/")).await, &env));
}

#[tokio::test]
async fn bad_configurations_are_refused_with_the_field() {
    let provider = Provider::start("app", SECRET).await;
    let err = |c: OidcConfig| OidcLayer::new(c).unwrap_err().to_string();
    assert!(err(base_config(&provider).redirect_url("ftp://x/cb")).contains("redirectURL"));
    assert!(err(base_config(&provider).logout_path("/oauth2/callback")).contains("logoutPath"));
    assert!(err(base_config(&provider).cookie_name("a b")).contains("cookieNames"));
    assert!(err(base_config(&provider).same_site(SameSite::None)).contains("sameSite"));
    let backend = Backend::single(&Client::default(), provider.addr());
    assert!(err(OidcConfig::new("not a url", "app", SECRET, backend.clone())).contains("issuer"));
    assert!(err(OidcConfig::new(provider.issuer(), "app", "", backend)).contains("clientSecret"));
}

#[tokio::test]
async fn no_secret_in_debug_output() {
    let env = env(|c| c.forward_access_token(true)).await;
    let b = logged_in(&env, "/").await;
    let cookie = b.jar[env.cookie()].clone();
    let config = base_config(&env.provider);
    let login = LoginState {
        state: "state-secret".into(),
        nonce: "nonce-secret".into(),
        verifier: "verifier-secret".into(),
        url: "/".into(),
        exp: 1,
    };
    let session = Session {
        id: "idtoken-secret".into(),
        at: "access-secret".into(),
        rt: Some("refresh-secret".into()),
        exp: 1,
        rexp: None,
    };
    let text = format!(
        "{config:?} {:?} {:?} {login:?} {session:?} {:?}",
        env.layer,
        OidcPolicy::from_layer(env.layer.clone()),
        env.layer.shared().token.authorization,
    );
    for secret in [
        SECRET,
        "state-secret",
        "nonce-secret",
        "verifier-secret",
        "idtoken-secret",
        "access-secret",
        "refresh-secret",
        &cookie[..20],
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("app:{SECRET}"))
    };
    assert!(!text.contains(&basic));
}
