//! OIDC login end to end through the wired gateway, as a user runs it: an Envoy
//! Gateway SecurityPolicy `oidc` in a manifest directory (`gatekit run --resources
//! DIR`'s wiring), a real echo backend, gatekit-testkit's provider on loopback
//! (discovery, authorize, token, JWKS, end session) reached through its backendRefs
//! or through the per-request DNS backend, and a cookie-jar browser driving the
//! authorization-code flow.
//!
//! Counting (`gatekit_access_decisions_total`): a redirect to the provider's login is
//! `unauthenticated`, a request passing with a session is `allowed`; the callback and
//! logout redirects are not counted; a refused callback is `unauthenticated`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_testkit::oidc::{Browser, Page, Provider, parse_query};
use gatekit_tests::EchoBackend;
use gatekit_tests::secrets::{self, CapturedLogs};
use gatekit_tests::wired::{Wired, eventually, free_port, gateway_http, route, service};
use http::{Method, StatusCode};
use tokio::net::{TcpListener, TcpStream};

const CLIENT_ID: &str = "web-app";
const CLIENT_SECRET: &str = "oidc-client-secret-e2e-7f3a";
const SESSION: &str = "gk-session";
const POLICY: &str = "SecurityPolicy/default/login/oidc";

// === support ===

/// How a test's gateway and provider are set up.
#[derive(Clone, Copy, Default)]
struct Opts {
    /// The provider reached through a Service (backendRefs) rather than by DNS.
    backend_refs: bool,
    /// `refreshToken: true`.
    refresh: bool,
    /// Discovery answers 503 when the gateway starts.
    discovery_down: bool,
    /// With `backend_refs`: nothing listens at the Service's endpoint when the gateway
    /// starts (connections refused) until the test starts the relay there.
    provider_down: bool,
}

/// A TCP relay in front of the provider that counts connections (proof that the
/// gateway went through the Service).
struct Relay {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(to: SocketAddr) -> Relay {
    relay_at("127.0.0.1:0".parse().unwrap(), to).await
}

/// A relay listening on `at`.
async fn relay_at(at: SocketAddr, to: SocketAddr) -> Relay {
    let listener = TcpListener::bind(at).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Relay { addr, conns, task }
}

struct Env {
    wired: Wired,
    gw: SocketAddr,
    provider: Provider,
    app: EchoBackend,
    relay: Option<Relay>,
    /// The address of the Service `idp`'s endpoint (the relay's).
    idp: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw)
    }

    fn callback(&self) -> String {
        self.url("/oauth2/callback")
    }

    /// `gatekit_access_decisions_total` of the policy and `outcome`.
    async fn decisions(&self, outcome: &str) -> u64 {
        let (_, text) = self.wired.admin("/metrics").await;
        let prefix =
            format!("gatekit_access_decisions_total{{policy=\"{POLICY}\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// GET `path` until it is redirected to the provider's login (discovery done).
    async fn await_discovery(&self) {
        let url = self.url("/app/warmup");
        eventually(Duration::from_secs(20), "discovery succeeds", || async {
            Browser::new().get(&url).await.status == StatusCode::FOUND
        })
        .await;
    }
}

/// The manifests: the Gateway on `port`, the echo backend behind route `app` (every
/// path), the client secret, and the SecurityPolicy `login` with the OIDC login.
fn manifests(
    port: u16,
    app: SocketAddr,
    issuer: &str,
    idp: Option<SocketAddr>,
    opts: Opts,
) -> String {
    let backend_refs = if idp.is_some() {
        "      backendRefs: [{ name: idp, port: 80 }]\n"
    } else {
        ""
    };
    let mut docs = vec![
        gateway_http(port),
        service("app", app),
        route("app", "/", "app"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{ name: oidc-client, namespace: default }}\n\
             stringData: {{ client-secret: {CLIENT_SECRET} }}\n"
        ),
        format!(
            "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\n\
             metadata: {{ name: login, namespace: default }}\n\
             spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }}]\n\
             \x20 oidc:\n\
             \x20   provider:\n\
             \x20     issuer: \"{issuer}\"\n\
             {backend_refs}\
             \x20   clientID: {CLIENT_ID}\n\
             \x20   clientSecret: {{ name: oidc-client }}\n\
             \x20   redirectURL: \"http://127.0.0.1:{port}/oauth2/callback\"\n\
             \x20   logoutPath: /logout\n\
             \x20   forwardAccessToken: true\n\
             \x20   refreshToken: {}\n\
             \x20   cookieNames: {{ idToken: {SESSION} }}\n\
             \x20   denyRedirect:\n\
             \x20     headers: [{{ name: x-requested-with, type: Exact, value: XMLHttpRequest }}]\n",
            opts.refresh
        ),
    ];
    if let Some(idp) = idp {
        docs.push(service("idp", idp));
    }
    docs.join("---\n")
}

async fn start(opts: Opts) -> Env {
    let provider = Provider::start(CLIENT_ID, CLIENT_SECRET).await;
    provider.set_discovery_failing(opts.discovery_down);
    let app = EchoBackend::start("app").await;
    let (relay, idp) = if opts.provider_down {
        // A port nothing listens on, for the relay to take later.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        (None, Some(free.local_addr().unwrap()))
    } else if opts.backend_refs {
        let r = relay(provider.addr()).await;
        let addr = r.addr;
        (Some(r), Some(addr))
    } else {
        (None, None)
    };
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let text = manifests(port, app.addr, &provider.issuer(), idp, opts);
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    Env {
        wired,
        gw: SocketAddr::from(([127, 0, 0, 1], port)),
        provider,
        app,
        relay,
        idp,
        _dir: dir,
    }
}

/// The query of a redirect's `Location`.
fn location_query(page: &Page) -> HashMap<String, String> {
    let loc = page.location().unwrap();
    parse_query(loc.split_once('?').map_or("", |(_, q)| q))
}

/// A first GET of `path` without a session: the login redirect, checked.
async fn login_redirect(env: &Env, browser: &mut Browser, path: &str) -> Page {
    let page = browser.get(&env.url(path)).await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    let loc = page.location().unwrap();
    assert!(
        loc.starts_with(&format!("{}/authorize?", env.provider.issuer())),
        "{loc}"
    );
    let q = location_query(&page);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], env.callback());
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "a SHA-256 challenge");
    assert!(q["state"].len() >= 16 && q["nonce"].len() >= 16, "{q:?}");
    assert!(q["scope"].split(' ').any(|s| s == "openid"), "{q:?}");
    assert!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{SESSION}-")) && c.contains("HttpOnly")),
        "a login-state cookie: {:?}",
        page.set_cookies()
    );
    page
}

/// The whole login from `path`: the redirect, the provider, the callback, back to
/// `path` served by the backend. Returns the pages after the first redirect.
async fn login(env: &Env, browser: &mut Browser, path: &str) -> Vec<Page> {
    let first = login_redirect(env, browser, path).await;
    let pages = browser.follow(first.location().unwrap()).await;
    let statuses: Vec<_> = pages.iter().map(|p| p.status).collect();
    assert_eq!(
        statuses,
        [StatusCode::FOUND, StatusCode::FOUND, StatusCode::OK],
        "provider -> callback -> {path}: {pages:?}"
    );
    assert!(
        pages[0].location().unwrap().starts_with(&env.callback()),
        "{pages:?}"
    );
    let back = &pages[1];
    assert_eq!(back.location(), Some(path));
    assert!(
        back.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{SESSION}="))),
        "the session cookie: {:?}",
        back.set_cookies()
    );
    assert_eq!(pages[2].headers["x-backend"], "app");
    pages
}

/// Asserts the backend's next request is `path` with a bearer token and no session
/// or login-state cookie; returns the bearer.
async fn backend_saw(app: &mut EchoBackend, path: &str) -> String {
    let seen = app.next_seen().await;
    assert_eq!(seen.uri.path(), path);
    let cookies = seen
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        !cookies.contains(SESSION),
        "session cookie upstream: {cookies}"
    );
    let auth = seen.headers["authorization"].to_str().unwrap();
    auth.strip_prefix("Bearer at-")
        .map(|t| format!("at-{t}"))
        .unwrap_or_else(|| panic!("no bearer upstream: {auth}"))
}

// === tests ===

/// The provider through its backendRefs: the full browser flow, the backend sees a
/// bearer and no session cookie; tampered state, a state cookie of another login and a
/// tampered session cookie are refused; logout clears the session; denyRedirect and
/// non-GET requests get 401; decisions are counted; and no client secret, code, token
/// or cookie value is in the debug logs, `/config` or `/metrics`.
#[tokio::test]
async fn the_browser_flow_through_backend_refs() {
    let logs = CapturedLogs::capture();

    let mut env = start(Opts {
        backend_refs: true,
        ..Opts::default()
    })
    .await;
    env.await_discovery().await;
    assert!(
        env.relay.as_ref().unwrap().conns.load(Ordering::Relaxed) >= 1,
        "discovery went through the Service"
    );
    let unauthenticated = env.decisions("unauthenticated").await;
    assert!(
        unauthenticated >= 1,
        "a login redirect counts as unauthenticated"
    );

    // The flow.
    let mut browser = Browser::new();
    let pages = login(&env, &mut browser, "/app/x").await;
    assert_eq!(env.provider.count("token:authorization_code"), 1);
    let bearer = backend_saw(&mut env.app, "/app/x").await;
    assert_eq!(env.decisions("unauthenticated").await, unauthenticated + 1);
    assert_eq!(env.decisions("allowed").await, 1);
    let session = browser.jar[SESSION].clone();
    let state_cookie = pages[0].set_cookies().join(" ");

    // The session serves further requests without the provider.
    let page = browser.get(&env.url("/app/y?q=1")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(backend_saw(&mut env.app, "/app/y").await, bearer);
    assert_eq!(
        env.provider.count("authorize"),
        1,
        "one login (the warm-up did not follow)"
    );
    assert_eq!(env.decisions("allowed").await, 2);

    // denyRedirect and a POST: 401 instead of a redirect.
    let mut anonymous = Browser::new();
    let page = anonymous
        .request(
            Method::GET,
            &env.url("/app/x"),
            &[("x-requested-with", "XMLHttpRequest")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    let page = anonymous
        .request(Method::POST, &env.url("/app/x"), &[])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);

    // A tampered state parameter is refused; the genuine callback still works.
    let mut b = Browser::new();
    let first = login_redirect(&env, &mut b, "/app/t").await;
    let at_provider = b.get(first.location().unwrap()).await;
    let callback = at_provider.location().unwrap().to_owned();
    let q = parse_query(callback.split_once('?').unwrap().1);
    let state = &q["state"];
    let mut forged = state.clone().into_bytes();
    forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let tampered = callback.replace(&format!("state={state}"), &format!("state={forged}"));
    assert_ne!(tampered, callback);
    let page = b.get(&tampered).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "tampered state");
    assert!(!b.jar.contains_key(SESSION));
    assert_eq!(
        env.provider.count("token:authorization_code"),
        1,
        "no code exchanged"
    );
    let pages = b.follow(&callback).await;
    assert_eq!(pages.last().unwrap().status, StatusCode::OK, "{pages:?}");
    backend_saw(&mut env.app, "/app/t").await;

    // A state cookie from another login: login 1's cookie under login 2's name.
    let mut one = Browser::new();
    let mut two = Browser::new();
    login_redirect(&env, &mut one, "/app/one").await;
    let first_two = login_redirect(&env, &mut two, "/app/two").await;
    let callback_two = two
        .get(first_two.location().unwrap())
        .await
        .location()
        .unwrap()
        .to_owned();
    let name_one = one
        .jar
        .keys()
        .find(|k| k.starts_with(SESSION))
        .unwrap()
        .clone();
    let name_two = two
        .jar
        .keys()
        .find(|k| k.starts_with(SESSION))
        .unwrap()
        .clone();
    let mut mixed = Browser::new();
    mixed
        .jar
        .insert(name_two.clone(), one.jar[&name_one].clone());
    let page = mixed.get(&callback_two).await;
    assert_eq!(
        page.status,
        StatusCode::UNAUTHORIZED,
        "another login's state cookie"
    );
    assert!(!mixed.jar.contains_key(SESSION));
    // Login 1's browser cannot finish login 2 either.
    let page = one.get(&callback_two).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);

    // A tampered session cookie means a new login, never a 200.
    let hits = env.app.hits();
    for spoilt in [
        {
            let mut v = session.clone().into_bytes();
            let i = v.len() / 2;
            v[i] = if v[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(v).unwrap()
        },
        session[..session.len() - 4].to_owned(),
        "garbage".to_owned(),
    ] {
        let mut b = Browser::new();
        b.jar.insert(SESSION.to_owned(), spoilt);
        let page = b.get(&env.url("/app/x")).await;
        assert_eq!(page.status, StatusCode::FOUND, "tampered session");
        assert!(page.location().unwrap().contains("/authorize?"));
    }
    assert_eq!(env.app.hits(), hits, "nothing reached the backend");

    // Logout: the session cookie deleted, to the provider's end-session endpoint.
    let page = browser.get(&env.url("/logout")).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert!(
        page.location()
            .unwrap()
            .starts_with(&format!("{}/end_session", env.provider.issuer())),
        "{:?}",
        page.location()
    );
    assert!(
        !browser.jar.contains_key(SESSION),
        "{:?}",
        page.set_cookies()
    );
    let pages = browser.follow(page.location().unwrap()).await;
    assert_eq!(pages[0].body, "logged out");
    assert_eq!(
        env.provider.last_end_session().unwrap()["client_id"],
        CLIENT_ID
    );
    login(&env, &mut browser, "/app/x").await;
    backend_saw(&mut env.app, "/app/x").await;

    // Secrets.
    let issued = env.provider.issued();
    assert!(
        issued.len() >= 12,
        "codes and tokens issued: {}",
        issued.len()
    );
    let mut secrets = vec![CLIENT_SECRET.to_owned(), session, bearer];
    secrets.extend(issued);
    secrets.extend(browser.jar.values().cloned());
    secrets.extend(
        state_cookie
            .split(['=', ';', ' '])
            .filter(|s| s.len() > 40)
            .map(str::to_owned),
    );
    let (config, _) = secrets::assert_hidden(&env.wired, &logs, &secrets).await;
    assert!(config.contains("oidc"), "the policy is in /config");
}

/// Without backendRefs the provider is reached by its URLs' own hosts (the per-request
/// DNS backend), the token request's form body included.
#[tokio::test]
async fn the_browser_flow_without_backend_refs() {
    let mut env = start(Opts::default()).await;
    env.await_discovery().await;
    let mut browser = Browser::new();
    login(&env, &mut browser, "/app/x").await;
    assert_eq!(env.provider.count("token:authorization_code"), 1);
    assert!(env.provider.count("jwks") >= 1);
    assert_eq!(env.provider.last_token_error(), None);
    backend_saw(&mut env.app, "/app/x").await;
}

/// With `refreshToken: true` and tokens that expire at once, the session after the
/// callback is already expired: it is renewed at the token endpoint (one refresh), the
/// request served with the new access token and the renewed cookie set.
#[tokio::test]
async fn an_expired_session_is_refreshed() {
    let mut env = start(Opts {
        refresh: true,
        ..Opts::default()
    })
    .await;
    env.provider.set_expires_in(Some(0));
    env.await_discovery().await;
    let mut browser = Browser::new();
    let pages = login(&env, &mut browser, "/app/x").await;
    assert_eq!(env.provider.count("token:authorization_code"), 1);
    assert_eq!(env.provider.count("token:refresh_token"), 1);
    let bearer = backend_saw(&mut env.app, "/app/x").await;
    let issued = env.provider.issued();
    // code, then (access, id, refresh) from the code, then from the refresh.
    assert_eq!(issued.len(), 7, "{}", issued.len());
    assert_eq!(bearer, issued[4], "the renewed access token goes upstream");
    assert!(
        pages[2]
            .set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{SESSION}="))),
        "the renewed session cookie is set on the response"
    );
    assert_eq!(env.decisions("allowed").await, 1);

    // A revoked refresh token: a new login, never a 200.
    env.provider.revoke_refresh_tokens();
    let page = browser.get(&env.url("/app/x")).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert!(page.location().unwrap().contains("/authorize?"));
}

/// The provider down at start (connections to its Service refused), then up with
/// discovery failing (503): the guarded route answers 503 `auth-unavailable` (counted
/// `unavailable`) and never reaches the backend until discovery succeeds (retried in
/// the background); then the flow works.
#[tokio::test]
async fn the_provider_down_at_start_answers_503_until_discovery_succeeds() {
    let mut env = start(Opts {
        backend_refs: true,
        provider_down: true,
        discovery_down: true,
        ..Opts::default()
    })
    .await;
    let url = env.url("/app/x");
    let unavailable = |page: &Page| {
        page.status == StatusCode::SERVICE_UNAVAILABLE
            && page.headers["x-gatekit-error"] == "auth-unavailable"
    };
    assert!(unavailable(&Browser::new().get(&url).await));
    assert_eq!(
        env.provider.count("discovery"),
        0,
        "the provider is not reachable"
    );

    // Up, discovery failing.
    env.relay = Some(relay_at(env.idp.unwrap(), env.provider.addr()).await);
    eventually(Duration::from_secs(10), "a discovery attempt", || async {
        env.provider.count("discovery") >= 1
    })
    .await;
    assert!(unavailable(&Browser::new().get(&url).await));
    assert!(env.decisions("unavailable").await >= 2);
    assert_eq!(env.app.hits(), 0);

    env.provider.set_discovery_failing(false);
    env.await_discovery().await;
    let mut browser = Browser::new();
    login(&env, &mut browser, "/app/x").await;
    backend_saw(&mut env.app, "/app/x").await;
}
