//! Issue 18's test list, end to end through the wired gateway (`gatekit run
//! --resources`'s library entry) from manifest files: external authorization in both
//! protocols (allow with headers, deny with the service's status, headers and body,
//! timeouts failing closed and open, bounded body forwarding, denials counted), the
//! API key consumer as a rate-limit key that a client cannot spoof, basic auth under a
//! flood of wrong passwords, JWTs of every algorithm and every kind of bad token, JWKS
//! rotation without restart, a platform override an application cannot switch off,
//! and no secret of any mechanism in the logs, `/config` or `/metrics`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gatekit_testkit::jwt::{RSA_A, RSA_B, Signer, b64};
use gatekit_tests::EchoBackend;
use gatekit_tests::authz::{AuthService, Verdict};
use gatekit_tests::secrets::{self, CapturedLogs};
use gatekit_tests::wired::{Wired, eventually, free_port, gateway_http, route, service};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

// === support ===

/// Starts the wired gateway on `docs` (one manifest file, after the Gateway).
async fn start(docs: &[String]) -> (Wired, SocketAddr, tempfile::TempDir) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut text = gateway_http(port);
    for doc in docs {
        text.push_str("---\n");
        text.push_str(doc);
    }
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    (wired, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// One request on a fresh connection: (status, headers, body).
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, String) {
    let io = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "example.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let rsp = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let (parts, body) = rsp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> StatusCode {
    send(addr, "GET", path, headers, "").await.0
}

/// A SecurityPolicy on HTTPRoute `route`.
fn policy(name: &str, route: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\n\
         metadata: {{ name: {name}, namespace: default, creationTimestamp: \"2024-01-02T00:00:00Z\" }}\n\
         spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route} }}]\n{spec}"
    )
}

/// A Secret with `stringData` `pairs`.
fn secret(name: &str, pairs: &[(&str, &str)]) -> String {
    let data: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}: {}", serde_json::to_string(v).unwrap()))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: default }}\n\
         stringData: {{ {} }}\n",
        data.join(", ")
    )
}

/// An htpasswd line for `user`, bcrypt at `cost`.
fn htpasswd(user: &str, password: &str, cost: u32) -> String {
    let hash = bcrypt::hash_with_salt(password, cost, [7; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{hash}")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// `gatekit_access_decisions_total` of `policy` and `outcome` in `/metrics`.
async fn decisions(wired: &Wired, policy: &str, outcome: &str) -> u64 {
    let (_, text) = wired.admin("/metrics").await;
    let prefix =
        format!("gatekit_access_decisions_total{{policy=\"{policy}\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// `/config`'s `accessPolicies` entry called `name`.
fn access_entry(config: &Value, name: &str) -> Value {
    config["accessPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in /config: {}", config["accessPolicies"]))
        .clone()
}

/// The `Accepted` condition of `kind` `name` in `/config`'s resources.
fn accepted(config: &Value, kind: &str, name: &str) -> Value {
    let resource = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in /config"));
    resource["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": "https://issuer.test", "aud": "api", "sub": "user-1", "exp": now() + 600})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

/// A JWT provider (`issuer`, `audiences`, `sub` to `x-sub`) with `keys` (YAML lines).
fn jwt_policy(name: &str, route: &str, keys: &str) -> String {
    policy(
        name,
        route,
        &format!(
            "  jwt:\n    providers:\n    - name: test\n      issuer: https://issuer.test\n\
             \x20     audiences: [api]\n      claimToHeaders: [{{ header: x-sub, claim: sub }}]\n{keys}"
        ),
    )
}

fn inline_jwks(keys: &[Value]) -> String {
    let text = json!({ "keys": keys }).to_string();
    format!(
        "      localJWKS: {{ type: Inline, inline: {} }}\n",
        serde_json::to_string(&text).unwrap()
    )
}

/// A hyper HTTP/1.1 server on loopback answering every request with `doc`'s current
/// text; returns its address and how many requests it served.
async fn jwks_server(doc: Arc<Mutex<String>>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            let doc = doc.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_: Request<Incoming>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let text = doc.lock().unwrap().clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::from(text)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

// === external authorization ===

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Http,
    Grpc,
}

/// The authorization service of the ext_authz tests: `/app/allow...` and `/body...`
/// allowed as user `u1`, `/app/deny...` denied with 402, `x-denied-by` and a body of its
/// own, anything under `/closed` or `/open` never answered.
async fn auth_service(mode: Mode) -> AuthService {
    let decide = |check: &gatekit_tests::authz::Check| {
        let p = check.path.as_str();
        if p.starts_with("/app/allow") || p.starts_with("/body") {
            Verdict::Allow(vec![("x-user", "u1".to_owned())])
        } else if p.starts_with("/closed") || p.starts_with("/open") {
            Verdict::Hang
        } else {
            Verdict::Deny {
                status: 402,
                headers: vec![("x-denied-by", "authz".to_owned())],
                body: "pay first".to_owned(),
            }
        }
    };
    match mode {
        Mode::Http => AuthService::http(decide).await,
        Mode::Grpc => AuthService::grpc(decide).await,
    }
}

/// One ext_authz matrix in `mode`: allow (the service's header replaces the client's
/// on the upstream request), deny (the service's status, header and body to the
/// client, the app not reached, counted as the policy's `forbidden`), a hanging
/// service failing closed (503 `auth-unavailable`, counted `unavailable`) or open (the
/// request served), and body forwarding bounded by `maxRequestBytes` (a small body
/// reaches the service and the upstream, a larger one is refused with 413 before any
/// check).
async fn ext_authz_matrix(mode: Mode) {
    let mut app = EchoBackend::start("app").await;
    let authz = auth_service(mode).await;
    let ext = |extra: &str| {
        let protocol = match mode {
            Mode::Http => {
                "    http:\n      backendRefs: [{ name: authz, port: 80 }]\n\
                           \x20     headersToBackend: [x-user]\n"
            }
            Mode::Grpc => "    grpc:\n      backendRefs: [{ name: authz, port: 80 }]\n",
        };
        format!("  extAuth:\n{protocol}{extra}")
    };
    let (wired, addr, _dir) = start(&[
        service("app", app.addr),
        service("authz", authz.addr),
        route("app", "/app", "app"),
        route("closed", "/closed", "app"),
        route("open", "/open", "app"),
        route("body", "/body", "app"),
        policy("ext", "app", &ext("")),
        policy("closed", "closed", &ext("    timeout: 300ms\n")),
        policy(
            "open",
            "open",
            &ext("    timeout: 300ms\n    failOpen: true\n"),
        ),
        policy(
            "body",
            "body",
            &ext("    bodyToExtAuth: { maxRequestBytes: 16 }\n"),
        ),
    ])
    .await;
    let name = |p: &str| format!("SecurityPolicy/default/{p}/extAuth");

    // Allowed: the service's x-user replaces the client's.
    let (status, _, body) = send(addr, "GET", "/app/allow", &[("x-user", "mallory")], "").await;
    assert_eq!(status, StatusCode::OK, "{mode:?}: {body}");
    let seen = app.next_seen().await;
    let users: Vec<_> = seen.headers.get_all("x-user").iter().collect();
    assert_eq!(users, ["u1"], "{mode:?}: the client's x-user went on");

    // Denied with the service's own answer.
    let (status, headers, body) = send(addr, "GET", "/app/deny", &[], "").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{mode:?}");
    assert_eq!(headers["x-denied-by"], "authz", "{mode:?}");
    assert_eq!(body, "pay first", "{mode:?}");
    assert!(
        app.drain_seen().is_empty(),
        "{mode:?}: a denial reached the app"
    );
    assert_eq!(
        decisions(&wired, &name("ext"), "forbidden").await,
        1,
        "{mode:?}"
    );
    assert_eq!(
        decisions(&wired, &name("ext"), "allowed").await,
        1,
        "{mode:?}"
    );

    // The service hangs: closed answers 503 auth-unavailable, open serves.
    let (status, headers, _) = send(addr, "GET", "/closed", &[], "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{mode:?}");
    assert_eq!(headers["x-gatekit-error"], "auth-unavailable", "{mode:?}");
    assert!(
        app.drain_seen().is_empty(),
        "{mode:?}: failed open when closed"
    );
    assert_eq!(
        decisions(&wired, &name("closed"), "unavailable").await,
        1,
        "{mode:?}"
    );
    let (status, _, body) = send(addr, "POST", "/open", &[], "kept").await;
    assert_eq!(status, StatusCode::OK, "{mode:?}: fail open did not serve");
    assert_eq!(body, "kept", "{mode:?}");
    assert_eq!(app.next_seen().await.body, "kept", "{mode:?}");

    // Body forwarding, bounded.
    let (status, _, _) = send(addr, "POST", "/body", &[], "hello").await;
    assert_eq!(status, StatusCode::OK, "{mode:?}");
    let check = authz
        .checks()
        .into_iter()
        .find(|c| c.path.starts_with("/body"))
        .unwrap();
    assert_eq!(
        check.body, "hello",
        "{mode:?}: the body did not reach the service"
    );
    assert_eq!(app.next_seen().await.body, "hello", "{mode:?}");
    let asked = authz.checks().len();
    let long = "0123456789abcdefghijklmnopqrstuvwxyz";
    let (status, headers, _) = send(addr, "POST", "/body", &[], long).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{mode:?}");
    assert_eq!(headers["x-gatekit-error"], "payload-too-large", "{mode:?}");
    assert_eq!(
        authz.checks().len(),
        asked,
        "{mode:?}: a check for a body over the limit"
    );
    assert!(app.drain_seen().is_empty(), "{mode:?}");
}

#[tokio::test]
async fn ext_authz_http_allows_denies_times_out_and_bounds_the_body() {
    ext_authz_matrix(Mode::Http).await;
}

#[tokio::test]
async fn ext_authz_grpc_allows_denies_times_out_and_bounds_the_body() {
    ext_authz_matrix(Mode::Grpc).await;
}

// === API keys and rate limits ===

/// The consumer an API key names is forwarded in `x-client-id`, and a
/// BackendTrafficPolicy rate limit keyed on that header (`type: Distinct`) gives each
/// consumer a budget of its own. A client sending `x-client-id` itself (once or twice)
/// cannot take another consumer's budget: the header is overwritten with its own
/// consumer before the limit is counted.
#[tokio::test]
async fn each_consumer_has_its_own_rate_limit_budget_and_cannot_spoof_another() {
    let mut app = EchoBackend::start("app").await;
    let limit = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\n\
        metadata: { name: per-consumer, namespace: default }\n\
        spec:\n  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }]\n\
        \x20 rateLimit:\n    type: Local\n    local:\n      rules:\n\
        \x20     - clientSelectors: [{ headers: [{ name: x-client-id, type: Distinct }] }]\n\
        \x20       limit: { requests: 2, unit: Minute }\n"
        .to_owned();
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("app", "/", "app"),
        secret("keys", &[("alice", "key-alice"), ("bob", "key-bob")]),
        limit,
        policy(
            "keys",
            "app",
            "  apiKeyAuth:\n    credentialRefs: [{ name: keys }]\n\
             \x20   extractFrom: [{ headers: [x-api-key] }]\n    forwardClientIDHeader: x-client-id\n",
        ),
    ])
    .await;

    // bob, claiming to be alice (in one header, then in two), spends his own budget.
    for claimed in [vec!["alice"], vec!["alice", "alice"]] {
        let mut headers = vec![("x-api-key", "key-bob")];
        headers.extend(claimed.iter().map(|c| ("x-client-id", *c)));
        assert_eq!(get(addr, "/", &headers).await, StatusCode::OK);
        let seen = app.next_seen().await;
        let ids: Vec<_> = seen.headers.get_all("x-client-id").iter().collect();
        assert_eq!(ids, ["bob"], "the client's own x-client-id went on");
    }
    assert_eq!(
        get(
            addr,
            "/",
            &[("x-api-key", "key-bob"), ("x-client-id", "alice")]
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "bob's budget is spent"
    );
    // Without a key, naming alice buys nothing and costs her nothing.
    assert_eq!(
        get(addr, "/", &[("x-client-id", "alice")]).await,
        StatusCode::UNAUTHORIZED
    );
    // alice's budget is whole.
    for _ in 0..2 {
        assert_eq!(
            get(addr, "/", &[("x-api-key", "key-alice")]).await,
            StatusCode::OK,
            "bob's requests were counted against alice"
        );
    }
    assert_eq!(
        get(addr, "/", &[("x-api-key", "key-alice")]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(app.hits(), 4);
}

// === basic auth under a flood ===

/// Wrong passwords for a known user (each a bcrypt check) from many connections at
/// once, while a user whose credential is cached keeps being served; `/config`'s
/// counters show the slow checks ran, never more at once than the policy's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_wrong_passwords_is_bounded_and_a_valid_user_is_served() {
    let app = EchoBackend::start("app").await;
    let (wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("app", "/", "app"),
        secret("users", &[(".htpasswd", &htpasswd("ops", "right-pw", 6))]),
        policy("basic", "app", "  basicAuth:\n    users: { name: users }\n"),
    ])
    .await;
    let valid = basic("ops", "right-pw");
    assert_eq!(
        get(addr, "/", &[("authorization", &valid)]).await,
        StatusCode::OK
    );

    const FLOODERS: usize = 16;
    const EACH: usize = 4;
    let flood: Vec<_> = (0..FLOODERS)
        .map(|i| {
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for j in 0..EACH {
                    let wrong = basic("ops", &format!("guess-{i}-{j}"));
                    statuses.push(get(addr, "/", &[("authorization", &wrong)]).await);
                }
                statuses
            })
        })
        .collect();
    // The valid user, served throughout (its credential is cached: no permit needed).
    for _ in 0..10 {
        assert_eq!(
            get(addr, "/", &[("authorization", &valid)]).await,
            StatusCode::OK,
            "the valid user was refused during the flood"
        );
    }
    let mut refused = 0;
    for f in flood {
        for status in f.await.unwrap() {
            assert!(
                status == StatusCode::UNAUTHORIZED || status == StatusCode::SERVICE_UNAVAILABLE,
                "a wrong password got {status}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, FLOODERS * EACH);
    assert_eq!(app.hits(), 11, "a wrong password reached the app");

    let config = wired.config().await;
    let checks = &access_entry(&config, "SecurityPolicy/default/basic/basicAuth")["hashChecks"];
    let (run, overloaded) = (
        checks["run"].as_u64().unwrap(),
        checks["overloaded"].as_u64().unwrap(),
    );
    let peak = checks["peakConcurrent"].as_u64().unwrap();
    let bound = checks["maxConcurrent"].as_u64().unwrap();
    assert!(bound >= 1, "{checks}");
    assert!(
        (1..=bound).contains(&peak),
        "more slow checks at once than the bound: {checks}"
    );
    // One check for the first valid login, one per wrong password that got a permit.
    assert_eq!(run + overloaded, 1 + (FLOODERS * EACH) as u64, "{checks}");
    assert!(run > 1, "the flood cost no hash check: {checks}");
    assert!(checks["cacheHits"].as_u64().unwrap() >= 10, "{checks}");
}

// === JWT ===

/// Tokens signed with every algorithm a SecurityPolicy's JWT provider verifies (RS*,
/// PS*, ES256, ES384, EdDSA) pass with their `sub` forwarded; an HMAC key in the JWKS
/// is not used (HS* is off unless enabled in code); expired, not yet valid, wrong
/// audience, wrong issuer, `alg: none` and HS256 tokens "signed" with the RSA public
/// key are refused with a Bearer `invalid_token` challenge, never reaching the app.
#[tokio::test]
async fn jwt_every_algorithm_passes_and_every_bad_token_is_refused() {
    let mut app = EchoBackend::start("app").await;
    let rsa = Signer::rsa(RSA_A);
    let p256 = Signer::ec("P-256");
    let p384 = Signer::ec("P-384");
    let ed = Signer::ed();
    let hmac = Signer::Hmac(b"an hmac secret of 32 bytes......".to_vec());
    let keys = inline_jwks(&[
        rsa.jwk("rsa"),
        p256.jwk("p256"),
        p384.jwk("p384"),
        ed.jwk("ed"),
        hmac.jwk("hs"),
    ]);
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("jwt", "/", "app"),
        jwt_policy("jwt", "jwt", &keys),
    ])
    .await;

    for (signer, kid, alg) in [
        (&rsa, "rsa", "RS256"),
        (&rsa, "rsa", "RS384"),
        (&rsa, "rsa", "RS512"),
        (&rsa, "rsa", "PS256"),
        (&rsa, "rsa", "PS384"),
        (&rsa, "rsa", "PS512"),
        (&p256, "p256", "ES256"),
        (&p384, "p384", "ES384"),
        (&ed, "ed", "EdDSA"),
    ] {
        let sub = format!("user-{alg}");
        let token = signer.token(alg, kid, &with(claims(), "sub", json!(sub)));
        let (status, _, body) = send(
            addr,
            "GET",
            "/",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{alg}: {body}");
        assert_eq!(
            app.next_seen().await.headers["x-sub"],
            sub.as_str(),
            "{alg}"
        );
    }

    let n = now();
    let rs = |c: Value| rsa.token("RS256", "rsa", &c);
    let Signer::Rsa(pair) = &rsa else {
        unreachable!()
    };
    let public_der = pair.public().as_ref().to_vec();
    let modulus = ring::signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public()).n;
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims().to_string().as_bytes())
    );
    let mut bad = vec![
        (
            "HS256, HMAC not enabled",
            hmac.token("HS256", "hs", &claims()),
        ),
        ("expired", rs(with(claims(), "exp", json!(n - 120)))),
        ("not yet valid", rs(with(claims(), "nbf", json!(n + 120)))),
        ("wrong audience", rs(with(claims(), "aud", json!("other")))),
        (
            "wrong issuer",
            rs(with(claims(), "iss", json!("https://evil.test"))),
        ),
        ("alg none", none.clone()),
        ("alg none, signed", format!("{none}c2ln")),
        (
            "another key, same kid",
            Signer::rsa(RSA_B).token("RS256", "rsa", &claims()),
        ),
    ];
    for (what, secret) in [
        ("HS256 with the RSA public key (DER)", public_der),
        ("HS256 with the RSA modulus", modulus),
        (
            "HS256 with the RSA JWK",
            rsa.jwk("rsa").to_string().into_bytes(),
        ),
    ] {
        bad.push((what, Signer::Hmac(secret).token("HS256", "rsa", &claims())));
    }
    for (what, token) in bad {
        let (status, headers, _) = send(
            addr,
            "GET",
            "/",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
    assert!(app.drain_seen().is_empty(), "a bad token reached the app");
}

/// The identity provider rotates: its JWKS served through a Service gains a key with a
/// new `kid`. The first token naming it makes the gateway fetch the JWKS again (no
/// reload, no restart); that key's tokens pass from then on and the old key's still do.
#[tokio::test]
async fn jwks_rotation_accepts_a_new_kid_without_restart() {
    let app = EchoBackend::start("app").await;
    let old = Signer::rsa(RSA_A);
    let new = Signer::ec("P-256");
    let doc = Arc::new(Mutex::new(json!({"keys": [old.jwk("old")]}).to_string()));
    let (jwks_addr, fetches) = jwks_server(doc.clone()).await;
    let remote = "      remoteJWKS:\n        uri: http://jwks.default.svc/jwks.json\n\
                  \x20       backendRefs: [{ name: jwks, port: 80 }]\n";
    let (wired, addr, _dir) = start(&[
        service("app", app.addr),
        service("jwks", jwks_addr),
        route("jwt", "/", "app"),
        jwt_policy("jwt", "jwt", remote),
    ])
    .await;
    let bearer = |t: String| format!("Bearer {t}");
    let old_token = bearer(old.token("RS256", "old", &claims()));
    eventually(Duration::from_secs(10), "the first fetch", || async {
        get(addr, "/", &[("authorization", &old_token)]).await == StatusCode::OK
    })
    .await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    let generation = wired.config().await["generation"].clone();

    *doc.lock().unwrap() = json!({"keys": [old.jwk("old"), new.jwk("new")]}).to_string();
    let new_token = bearer(new.token("ES256", "new", &claims()));
    eventually(Duration::from_secs(10), "the new kid accepted", || async {
        get(addr, "/", &[("authorization", &new_token)]).await == StatusCode::OK
    })
    .await;
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "one refresh for the unknown kid"
    );
    assert_eq!(
        get(addr, "/", &[("authorization", &old_token)]).await,
        StatusCode::OK
    );
    assert_eq!(
        wired.config().await["generation"],
        generation,
        "the configuration was reloaded"
    );
}

// === overrides ===

/// The platform team's SecurityOverride on the Gateway requires a platform key. An
/// application's SecurityPolicy on its route tries to switch it off (an authorization
/// whose default is Allow, and API keys of its own): its checks are added, the
/// override's stay, and the policy's status says the override applies and cannot be
/// removed.
#[tokio::test]
async fn an_application_route_cannot_switch_off_the_platform_override() {
    let app = EchoBackend::start("app").await;
    let override_ = "apiVersion: gatekit.io/v1alpha1\nkind: SecurityOverride\n\
        metadata: { name: platform, namespace: default, creationTimestamp: \"2024-01-01T00:00:00Z\" }\n\
        spec:\n  targetRefs: [{ kind: Gateway, name: gw }]\n\
        \x20 apiKeyAuth:\n    credentialRefs: [{ name: platform-keys }]\n\
        \x20   extractFrom: [{ headers: [x-platform-key] }]\n"
        .to_owned();
    let (wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("app", "/", "app"),
        secret("platform-keys", &[("team-a", "platform-key")]),
        secret("app-keys", &[("web", "app-key")]),
        override_,
        policy(
            "app",
            "app",
            "  apiKeyAuth:\n    credentialRefs: [{ name: app-keys }]\n\
             \x20   extractFrom: [{ headers: [x-api-key] }]\n\
             \x20 authorization:\n    defaultAction: Allow\n",
        ),
    ])
    .await;
    assert_eq!(
        get(addr, "/", &[("x-api-key", "app-key")]).await,
        StatusCode::UNAUTHORIZED,
        "the application's policy switched the override off"
    );
    assert_eq!(get(addr, "/", &[]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(
            addr,
            "/",
            &[("x-platform-key", "platform-key"), ("x-api-key", "app-key")]
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(app.hits(), 1);
    let config = wired.config().await;
    let c = accepted(&config, "SecurityPolicy", "app");
    assert_eq!(c["status"], "True", "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("SecurityOverride default/platform also applies")
            && message.contains("cannot remove"),
        "{message}"
    );
}

// === secrets ===

/// A request to make: path, headers, the status wanted.
type Check<'a> = (&'a str, Vec<(&'a str, String)>, StatusCode);

/// Every mechanism configured and exercised, passing and refused (API keys, basic
/// auth, JWT from an inline JWKS holding an HMAC secret and from a remote JWKS, ext
/// auth over HTTP and gRPC carrying bearer tokens, allowing and denying): no key,
/// password, hash, HMAC secret or token is in the gateway's debug logs, `/config` or
/// `/metrics`.
#[tokio::test]
async fn no_secret_of_any_mechanism_in_logs_config_or_metrics() {
    let logs = CapturedLogs::capture();

    let app = EchoBackend::start("app").await;
    let allow_token = |c: &gatekit_tests::authz::Check| {
        let auth = c.headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth == Some("Bearer ext-token-allowed-5") {
            Verdict::Allow(vec![("x-user", "u1".to_owned())])
        } else {
            Verdict::Deny {
                status: 403,
                headers: Vec::new(),
                body: "no".to_owned(),
            }
        }
    };
    let http_authz = AuthService::http(allow_token).await;
    let grpc_authz = AuthService::grpc(allow_token).await;
    let rsa = Signer::rsa(RSA_A);
    let remote = Signer::ec("P-384");
    let hmac_secret = "hmac-secret-of-32-bytes-6.......";
    let hmac = Signer::Hmac(hmac_secret.as_bytes().to_vec());
    let doc = Arc::new(Mutex::new(json!({"keys": [remote.jwk("r")]}).to_string()));
    let (jwks_addr, _) = jwks_server(doc).await;
    let line = htpasswd("ops", "pa55-w0rd-secret", 4);
    let hash = line.split_once(':').unwrap().1.to_owned();
    let ext = |svc: &str, protocol: &str| {
        format!("  extAuth:\n    {protocol}:\n      backendRefs: [{{ name: {svc}, port: 80 }}]\n")
    };
    let (wired, addr, _dir) = start(&[
        service("app", app.addr),
        service("authz-http", http_authz.addr),
        service("authz-grpc", grpc_authz.addr),
        service("jwks", jwks_addr),
        route("keys", "/keys", "app"),
        route("basic", "/basic", "app"),
        route("jwt", "/jwt", "app"),
        route("remote", "/remote", "app"),
        route("ext-http", "/ext-http", "app"),
        route("ext-grpc", "/ext-grpc", "app"),
        route("oidc", "/oidc", "app"),
        secret("keys", &[("client", "api-key-secret-1")]),
        secret("users", &[(".htpasswd", &line)]),
        secret("oidc", &[("client-secret", "oidc-client-secret-5")]),
        policy(
            "keys",
            "keys",
            "  apiKeyAuth:\n    credentialRefs: [{ name: keys }]\n    extractFrom: [{ headers: [x-api-key] }]\n",
        ),
        policy("basic", "basic", "  basicAuth:\n    users: { name: users }\n"),
        jwt_policy("jwt", "jwt", &inline_jwks(&[rsa.jwk("rsa"), hmac.jwk("hs")])),
        jwt_policy(
            "remote",
            "remote",
            "      remoteJWKS:\n        uri: http://jwks.default.svc/jwks.json\n\
             \x20       backendRefs: [{ name: jwks, port: 80 }]\n",
        ),
        policy("ext-http", "ext-http", &ext("authz-http", "http")),
        policy("ext-grpc", "ext-grpc", &ext("authz-grpc", "grpc")),
        policy(
            "oidc",
            "oidc",
            "  oidc:\n    provider: { issuer: \"https://idp.test\" }\n    clientID: web\n    clientSecret: { name: oidc }\n",
        ),
    ])
    .await;

    let token = rsa.token("RS256", "rsa", &claims());
    let expired = rsa.token("RS256", "rsa", &with(claims(), "exp", json!(now() - 3600)));
    let forged = hmac.token("HS256", "hs", &claims());
    let remote_token = remote.token("ES384", "r", &claims());
    let auth = basic("ops", "pa55-w0rd-secret");
    let wrong = basic("ops", "guess-secret-2");
    let bearer = |t: &str| format!("Bearer {t}");
    let checks: Vec<Check<'_>> = vec![
        (
            "/keys",
            vec![("x-api-key", "api-key-secret-1".into())],
            StatusCode::OK,
        ),
        (
            "/keys",
            vec![("x-api-key", "api-key-wrong-3".into())],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/basic",
            vec![("authorization", auth.clone())],
            StatusCode::OK,
        ),
        (
            "/basic",
            vec![("authorization", wrong.clone())],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/jwt",
            vec![("authorization", bearer(&token))],
            StatusCode::OK,
        ),
        (
            "/jwt",
            vec![("authorization", bearer(&expired))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/jwt",
            vec![("authorization", bearer(&forged))],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/ext-http",
            vec![("authorization", "Bearer ext-token-allowed-5".into())],
            StatusCode::OK,
        ),
        (
            "/ext-http",
            vec![("authorization", "Bearer ext-token-secret-4".into())],
            StatusCode::FORBIDDEN,
        ),
        (
            "/ext-grpc",
            vec![("authorization", "Bearer ext-token-allowed-5".into())],
            StatusCode::OK,
        ),
        (
            "/ext-grpc",
            vec![("authorization", "Bearer ext-token-secret-4".into())],
            StatusCode::FORBIDDEN,
        ),
    ];
    for (path, headers, want) in &checks {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(get(addr, path, &headers).await, *want, "{path} {headers:?}");
    }
    let remote_bearer = bearer(&remote_token);
    eventually(
        Duration::from_secs(10),
        "the remote JWKS verifies",
        || async {
            get(addr, "/remote", &[("authorization", &remote_bearer)]).await == StatusCode::OK
        },
    )
    .await;

    // The OIDC provider cannot be reached: no login, never the backend.
    assert_ne!(get(addr, "/oidc", &[]).await, StatusCode::OK);

    let hmac_b64 = b64(hmac_secret.as_bytes());
    let secrets = [
        "api-key-secret-1",
        "api-key-wrong-3",
        "pa55-w0rd-secret",
        "guess-secret-2",
        hash.as_str(),
        auth.trim_start_matches("Basic "),
        wrong.trim_start_matches("Basic "),
        token.as_str(),
        expired.as_str(),
        forged.as_str(),
        remote_token.as_str(),
        hmac_secret,
        hmac_b64.as_str(),
        "ext-token-allowed-5",
        "ext-token-secret-4",
        "oidc-client-secret-5",
    ];
    let (_, metrics) = secrets::assert_hidden(&wired, &logs, secrets).await;
    assert!(metrics.contains("gatekit_access_decisions_total"));
}
