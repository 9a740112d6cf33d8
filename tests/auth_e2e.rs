//! Authentication and authorization end to end through the wired gateway, from
//! manifest files: Envoy Gateway SecurityPolicies (API keys from Secrets, basic auth
//! from an htpasswd Secret, JWTs verified with a local or remote JWKS, external
//! authorization over HTTP, authorization rules) and a gatekit SecurityOverride, real
//! backends, real crypto (bcrypt, Ed25519). The scan for secrets in the logs,
//! `/config` and `/metrics` is `auth_matrix.rs`'s, over every mechanism.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{
    Wired, eventually, free_port, gateway_http, route, route_with, service, write_atomic,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tokio::net::{TcpListener, TcpStream};

// === support ===

/// The manifest text: the Gateway, then `docs`.
fn manifest(port: u16, docs: &[String]) -> String {
    let mut text = gateway_http(port);
    for doc in docs {
        text.push_str("---\n");
        text.push_str(doc);
    }
    text
}

/// Starts the wired gateway on `docs` (one manifest file, after the Gateway).
async fn start(docs: &[String]) -> (Wired, SocketAddr, tempfile::TempDir) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), manifest(port, docs)).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    (wired, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

/// One GET on a fresh connection with `headers`: (status, headers, body).
async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let io = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", "example.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let rsp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
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

fn policy(name: &str, created: &str, route: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\n\
         metadata: {{ name: {name}, namespace: default, creationTimestamp: \"{created}\" }}\n\
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

/// An htpasswd line for `user`, bcrypt (cost 4: a test, not a deployment).
fn htpasswd(user: &str, password: &str) -> String {
    let hash = bcrypt::hash_with_salt(password, 4, [9; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{hash}")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// An Ed25519 signing key and its JWKS.
struct Signer {
    key: Ed25519KeyPair,
    kid: &'static str,
}

impl Signer {
    fn new(kid: &'static str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Self {
            key: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
            kid,
        }
    }

    fn jwks(&self) -> String {
        serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref()),
        }]})
        .to_string()
    }

    fn token(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims from `iss`/`aud` expiring `exp_in` seconds from now (negative: past).
fn claims(aud: &str, exp_in: i64, extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({
        "iss": "https://issuer.test", "aud": aud, "sub": "user-1",
        "exp": now().checked_add_signed(exp_in).unwrap(),
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

/// A JWT provider's fields (`issuer`, `audiences`, `claimToHeaders`) and its keys.
fn jwt_provider(keys: &str) -> String {
    format!(
        "    - name: test\n      issuer: https://issuer.test\n      audiences: [api]\n\
         \x20     claimToHeaders: [{{ header: x-sub, claim: sub }}]\n{keys}"
    )
}

/// The `Accepted` condition of `kind` `name` in `/config`'s resources.
fn accepted(config: &serde_json::Value, kind: &str, name: &str) -> serde_json::Value {
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

/// A hyper HTTP/1.1 server on loopback answering with `answer`.
async fn serve<F>(answer: F) -> SocketAddr
where
    F: Fn(http::request::Parts) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let (parts, _) = req.into_parts();
                        Ok::<_, Infallible>(answer(parts))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    addr
}

/// An HTTP authorization service: allows requests with `x-allow: yes` (naming the user
/// `u1` in `x-user`), denies the others with 403 and a body of its own.
async fn authz_service() -> SocketAddr {
    serve(|parts| {
        if parts.headers.get("x-allow").is_some_and(|v| v == "yes") {
            Response::builder()
                .header("x-user", "u1")
                .body(Full::default())
                .unwrap()
        } else {
            Response::builder()
                .status(403)
                .header("x-denied-by", "authz")
                .body(Full::from("denied by the authorization service"))
                .unwrap()
        }
    })
    .await
}

// === tests ===

/// API keys: valid, missing, unknown, rotated (two keys of one consumer both valid),
/// sanitized and forwarded as the consumer's id; a BackendTrafficPolicy rate limit
/// keyed by that id limits one consumer and still serves another; a Secret rewritten
/// without a key revokes it.
#[tokio::test]
async fn api_keys_identify_consumers_rotate_revoke_and_key_the_rate_limit() {
    let mut app = EchoBackend::start("app").await;
    let keys = |bob: bool| {
        let mut pairs = vec![("alice", "key-alice-1")];
        if bob {
            pairs.push(("bob", "key-bob-1"));
        }
        secret("keys", &pairs)
    };
    let limit = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\n\
        metadata: { name: per-consumer, namespace: default }\n\
        spec:\n  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }]\n\
        \x20 rateLimit:\n    type: Local\n    local:\n      rules:\n\
        \x20     - clientSelectors: [{ headers: [{ name: x-client-id, type: Distinct }] }]\n\
        \x20       limit: { requests: 3, unit: Minute }\n"
        .to_owned();
    let app_addr = app.addr;
    let docs = |bob: bool| {
        vec![
            service("app", app_addr),
            route("app", "/", "app"),
            keys(bob),
            secret("keys-next", &[("alice", "key-alice-2")]),
            limit.clone(),
            policy(
                "keys",
                "2024-01-01T00:00:00Z",
                "app",
                "  apiKeyAuth:\n    credentialRefs: [{ name: keys }, { name: keys-next }]\n\
                 \x20   extractFrom: [{ headers: [x-api-key] }]\n\
                 \x20   forwardClientIDHeader: x-client-id\n    sanitize: true\n",
            ),
        ]
    };
    let (wired, addr, dir) = start(&docs(true)).await;

    let (status, headers, _) = get(addr, "/", &[("x-api-key", "key-alice-1")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("x-backend").is_some());
    let seen = app.next_seen().await;
    assert_eq!(seen.headers["x-client-id"], "alice");
    assert!(
        seen.headers.get("x-api-key").is_none(),
        "sanitize: the key went on"
    );

    // Rotation: the second Secret's key of the same consumer is valid too.
    let (status, _, _) = get(addr, "/", &[("x-api-key", "key-alice-2")]).await;
    assert_eq!(status, StatusCode::OK);
    // A client cannot name itself.
    let (status, _, _) = get(
        addr,
        "/",
        &[("x-api-key", "key-bob-1"), ("x-client-id", "alice")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    app.drain_seen();

    for headers in [vec![], vec![("x-api-key", "key-nobody")]] {
        let (status, h, _) = get(addr, "/", &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(h.get("www-authenticate").is_some(), "no challenge");
    }
    assert!(
        app.drain_seen().is_empty(),
        "a refused request reached the app"
    );

    // alice has used 2 of her 3; the third passes, the fourth is limited.
    let (status, _, _) = get(addr, "/", &[("x-api-key", "key-alice-1")]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(addr, "/", &[("x-api-key", "key-alice-2")]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // bob, limited apart, is still served.
    let (status, _, _) = get(addr, "/", &[("x-api-key", "key-bob-1")]).await;
    assert_eq!(status, StatusCode::OK);

    // Revocation: bob's key is gone from the rewritten Secret.
    let port = addr.port();
    write_atomic(dir.path(), "all.yaml", &manifest(port, &docs(false)));
    eventually(Duration::from_secs(10), "bob's key refused", || async {
        get(addr, "/", &[("x-api-key", "key-bob-1")]).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    let config = wired.config().await;
    let text = config.to_string();
    for key in ["key-alice-1", "key-alice-2", "key-bob-1"] {
        assert!(!text.contains(key), "{key} in /config");
    }
}

/// JWTs verified with a local (inline) JWKS: valid tokens pass with their `sub` in a
/// header; missing, expired, wrong-audience and wrongly signed tokens are refused with
/// a Bearer challenge; an authorization rule on a claim answers 403 to a valid token
/// without it.
#[tokio::test]
async fn jwt_with_a_local_jwks_and_a_claim_rule() {
    let mut app = EchoBackend::start("app").await;
    let signer = Signer::new("k1");
    let other = Signer::new("k1");
    let inline = format!(
        "      localJWKS: {{ type: Inline, inline: {} }}\n",
        serde_json::to_string(&signer.jwks()).unwrap()
    );
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("jwt", "/jwt", "app"),
        route("admin", "/admin", "app"),
        policy(
            "jwt",
            "2024-01-01T00:00:00Z",
            "jwt",
            &format!("  jwt:\n    providers:\n{}", jwt_provider(&inline)),
        ),
        policy(
            "admin",
            "2024-01-01T00:00:00Z",
            "admin",
            &format!(
                "  jwt:\n    providers:\n{}  authorization:\n    defaultAction: Deny\n    rules:\n\
                 \x20   - action: Allow\n      principal:\n        jwt:\n          provider: test\n\
                 \x20         claims: [{{ name: role, values: [admin] }}]\n",
                jwt_provider(&inline)
            ),
        ),
    ])
    .await;

    let good = signer.token(&claims("api", 300, serde_json::json!({})));
    let bearer = format!("Bearer {good}");
    let (status, _, body) = get(addr, "/jwt", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = app.next_seen().await;
    assert_eq!(seen.headers["x-sub"], "user-1");
    // Envoy Gateway forwards the token by default; so does gatekit.
    assert_eq!(seen.headers["authorization"], bearer.as_str());

    let expired = signer.token(&claims("api", -3600, serde_json::json!({})));
    let wrong_aud = signer.token(&claims("other", 300, serde_json::json!({})));
    let forged = other.token(&claims("api", 300, serde_json::json!({})));
    for (what, token) in [
        ("none", None),
        ("expired", Some(expired)),
        ("aud", Some(wrong_aud)),
        ("forged", Some(forged)),
    ] {
        let value = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = value
            .iter()
            .map(|v| ("authorization", v.as_str()))
            .collect();
        let (status, h, _) = get(addr, "/jwt", &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        let challenge = h["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    }

    let (status, _, _) = get(addr, "/admin", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a token without role admin");
    let admin = signer.token(&claims("api", 300, serde_json::json!({"role": "admin"})));
    let (status, _, _) = get(
        addr,
        "/admin",
        &[("authorization", &format!("Bearer {admin}"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// A remote JWKS served by a hyper server on loopback, reached as a Service backend.
#[tokio::test]
async fn jwt_with_a_remote_jwks_through_a_service_backend() {
    let app = EchoBackend::start("app").await;
    let signer = Arc::new(Signer::new("remote-1"));
    let jwks = signer.jwks();
    let jwks_addr = serve(move |parts| {
        assert_eq!(parts.uri.path(), "/jwks.json");
        Response::new(Full::from(jwks.clone()))
    })
    .await;
    let remote = "      remoteJWKS:\n        uri: http://jwks.default.svc/jwks.json\n\
                  \x20       backendRefs: [{ name: jwks, port: 80 }]\n";
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        service("jwks", jwks_addr),
        route("jwt", "/", "app"),
        policy(
            "jwt",
            "2024-01-01T00:00:00Z",
            "jwt",
            &format!("  jwt:\n    providers:\n{}", jwt_provider(remote)),
        ),
    ])
    .await;
    let bearer = format!(
        "Bearer {}",
        signer.token(&claims("api", 300, serde_json::json!({})))
    );
    eventually(
        Duration::from_secs(10),
        "the fetched JWKS verifies",
        || async { get(addr, "/", &[("authorization", &bearer)]).await.0 == StatusCode::OK },
    )
    .await;
    let expired = signer.token(&claims("api", -3600, serde_json::json!({})));
    let (status, _, _) = get(
        addr,
        "/",
        &[("authorization", &format!("Bearer {expired}"))],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Basic auth from an htpasswd Secret (bcrypt): the right password passes with the
/// user forwarded, a wrong one and none get 401 with a Basic challenge.
#[tokio::test]
async fn basic_auth_from_an_htpasswd_secret() {
    let mut app = EchoBackend::start("app").await;
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("app", "/", "app"),
        secret("users", &[(".htpasswd", &htpasswd("ops", "correct horse"))]),
        policy(
            "basic",
            "2024-01-01T00:00:00Z",
            "app",
            "  basicAuth:\n    users: { name: users }\n    forwardUsernameHeader: x-user\n",
        ),
    ])
    .await;
    let (status, _, body) = get(
        addr,
        "/",
        &[("authorization", &basic("ops", "correct horse"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.next_seen().await.headers["x-user"], "ops");
    for headers in [vec![], vec![("authorization", basic("ops", "wrong"))]] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, h, _) = get(addr, "/", &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(h["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    }
    assert!(app.drain_seen().is_empty());
}

/// Authorization by client address: 127.0.0.1/32 allowed under a deny-all default;
/// a route whose only allowed range is elsewhere answers 403.
#[tokio::test]
async fn client_cidr_allow_list() {
    let app = EchoBackend::start("app").await;
    let rule = |cidr: &str| {
        format!(
            "  authorization:\n    defaultAction: Deny\n    rules:\n\
             \x20   - action: Allow\n      principal: {{ clientCIDRs: [\"{cidr}\"] }}\n"
        )
    };
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("local", "/local", "app"),
        route("office", "/office", "app"),
        policy(
            "local",
            "2024-01-01T00:00:00Z",
            "local",
            &rule("127.0.0.1/32"),
        ),
        policy(
            "office",
            "2024-01-01T00:00:00Z",
            "office",
            &rule("203.0.113.0/24"),
        ),
    ])
    .await;
    assert_eq!(get(addr, "/local", &[]).await.0, StatusCode::OK);
    assert_eq!(get(addr, "/office", &[]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.hits(), 1);
}

/// A SecurityOverride on the Gateway requires an API key; the app's own SecurityPolicy
/// requires basic auth: a request needs both, and the statuses say the override
/// applies.
#[tokio::test]
async fn a_gateway_override_and_the_apps_own_policy_both_apply() {
    let app = EchoBackend::start("app").await;
    let override_ = "apiVersion: gatekit.io/v1alpha1\nkind: SecurityOverride\n\
        metadata: { name: platform, namespace: default, creationTimestamp: \"2024-01-01T00:00:00Z\" }\n\
        spec:\n  targetRefs: [{ kind: Gateway, name: gw }]\n\
        \x20 apiKeyAuth:\n    credentialRefs: [{ name: platform-keys }]\n    extractFrom: [{ headers: [x-api-key] }]\n"
        .to_owned();
    let (wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("app", "/", "app"),
        secret("platform-keys", &[("team-a", "platform-key")]),
        secret("users", &[(".htpasswd", &htpasswd("dev", "pw"))]),
        override_,
        policy(
            "app",
            "2024-01-02T00:00:00Z",
            "app",
            "  basicAuth:\n    users: { name: users }\n",
        ),
    ])
    .await;
    let auth = basic("dev", "pw");
    assert_eq!(get(addr, "/", &[]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(addr, "/", &[("authorization", &auth)]).await.0,
        StatusCode::UNAUTHORIZED,
        "the app's own policy switched the override off"
    );
    assert_eq!(
        get(addr, "/", &[("x-api-key", "platform-key")]).await.0,
        StatusCode::UNAUTHORIZED,
        "the override replaced the app's policy"
    );
    assert_eq!(
        get(
            addr,
            "/",
            &[("x-api-key", "platform-key"), ("authorization", &auth)]
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(app.hits(), 1);
    let config = wired.config().await;
    let c = accepted(&config, "SecurityPolicy", "app");
    assert_eq!(c["status"], "True", "{c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("SecurityOverride default/platform also applies"),
        "{c}"
    );
    assert_eq!(
        accepted(&config, "SecurityOverride", "platform")["status"],
        "True"
    );
}

/// External authorization over HTTP through a Service backend: allowed with the
/// service's header forwarded, denied with the service's own status and body, and
/// failing closed (503) when the service cannot be reached.
#[tokio::test]
async fn ext_authz_http_allows_denies_and_fails_closed() {
    let mut app = EchoBackend::start("app").await;
    let authz = authz_service().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ext = |svc: &str| {
        format!(
            "  extAuth:\n    headersToExtAuth: [x-allow]\n    http:\n      backendRefs: [{{ name: {svc}, port: 80 }}]\n\
             \x20     headersToBackend: [x-user]\n"
        )
    };
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        service("authz", authz),
        service("gone", closed),
        route("app", "/app", "app"),
        route("down", "/down", "app"),
        policy("ext", "2024-01-01T00:00:00Z", "app", &ext("authz")),
        policy("down", "2024-01-01T00:00:00Z", "down", &ext("gone")),
    ])
    .await;
    let (status, _, body) = get(addr, "/app", &[("x-allow", "yes"), ("x-user", "spoofed")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.next_seen().await.headers["x-user"], "u1");
    let (status, h, body) = get(addr, "/app", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h["x-denied-by"], "authz");
    assert_eq!(body, "denied by the authorization service");
    let (status, _, _) = get(addr, "/down", &[("x-allow", "yes")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(app.drain_seen().is_empty());
}

/// The registry keeps a built policy while its spec is unchanged: an unrelated reload
/// (a new route) does not fetch the remote JWKS again; a change of the policy builds
/// it anew, which fetches at once.
#[tokio::test]
async fn an_unrelated_reload_keeps_the_jwks_fetcher() {
    let app = EchoBackend::start("app").await;
    let signer = Arc::new(Signer::new("remote-1"));
    let jwks = signer.jwks();
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = fetches.clone();
    let jwks_addr = serve(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Response::new(Full::from(jwks.clone()))
    })
    .await;
    let remote = "      remoteJWKS:\n        uri: http://jwks.default.svc/jwks.json\n\
                  \x20       backendRefs: [{ name: jwks, port: 80 }]\n";
    let docs = |extra: &[String], audience: &str| {
        let mut docs = vec![
            service("app", app.addr),
            service("jwks", jwks_addr),
            route("jwt", "/", "app"),
            policy(
                "jwt",
                "2024-01-01T00:00:00Z",
                "jwt",
                &format!("  jwt:\n    providers:\n{}", jwt_provider(remote))
                    .replace("audiences: [api]", &format!("audiences: [{audience}]")),
            ),
        ];
        docs.extend_from_slice(extra);
        docs
    };
    let (_wired, addr, dir) = start(&docs(&[], "api")).await;
    let bearer = format!(
        "Bearer {}",
        signer.token(&claims("api", 300, serde_json::json!({})))
    );
    eventually(
        Duration::from_secs(10),
        "the fetched JWKS verifies",
        || async { get(addr, "/", &[("authorization", &bearer)]).await.0 == StatusCode::OK },
    )
    .await;
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);

    let port = addr.port();
    let extra = [route("other", "/other", "app")];
    write_atomic(
        dir.path(),
        "all.yaml",
        &manifest(port, &docs(&extra, "api")),
    );
    eventually(Duration::from_secs(10), "the new route serves", || async {
        get(addr, "/other", &[]).await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(
        get(addr, "/", &[("authorization", &bearer)]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "an unrelated reload rebuilt the JWT policy"
    );

    // The policy changes (another audience): built anew, fetched anew, and the old
    // audience's token is refused.
    write_atomic(
        dir.path(),
        "all.yaml",
        &manifest(port, &docs(&extra, "api-2")),
    );
    eventually(
        Duration::from_secs(10),
        "the changed policy refuses the old audience",
        || async {
            get(addr, "/", &[("authorization", &bearer)]).await.0 == StatusCode::UNAUTHORIZED
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the rebuilt policy fetched",
        || async { fetches.load(std::sync::atomic::Ordering::SeqCst) == 2 },
    )
    .await;
}

/// A configuration gatekit-auth refuses (an htpasswd line with a plain-text password)
/// refuses the rules naming the policy with 500, and `/config` names the resource and
/// the field.
#[tokio::test]
async fn a_policy_gatekit_auth_refuses_answers_500_and_says_why() {
    let app = EchoBackend::start("app").await;
    let (wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("app", "/", "app"),
        secret("users", &[(".htpasswd", "ops:plain-text-password")]),
        policy(
            "basic",
            "2024-01-01T00:00:00Z",
            "app",
            "  basicAuth:\n    users: { name: users }\n",
        ),
    ])
    .await;
    let (status, _, _) = get(
        addr,
        "/",
        &[("authorization", &basic("ops", "plain-text-password"))],
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.hits(), 0);
    let config = wired.config().await;
    let entry = config["accessPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SecurityPolicy/default/basic/basicAuth")
        .unwrap()
        .clone();
    assert_eq!(entry["served"], false);
    let problem = entry["problem"].as_str().unwrap();
    assert!(
        problem.starts_with("spec.basicAuth.users.htpasswd line 1"),
        "{problem}"
    );
    let text = config.to_string();
    assert!(
        text.contains("SecurityPolicy basic: spec.basicAuth.users.htpasswd line 1"),
        "the reload's errors do not name the resource and field: {}",
        config["errors"]
    );
    assert!(
        !text.contains("plain-text-password"),
        "the password in /config"
    );
}

/// An Envoy `envoy.service.auth.v3.Authorization/Check` server over h2c: allows a
/// check whose request mentions `x-allow`, denies the others with 401 and a body.
/// The messages are written by hand (field numbers of Envoy's protos).
async fn grpc_authz_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    assert_eq!(
                        req.uri().path(),
                        "/envoy.service.auth.v3.Authorization/Check"
                    );
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let allow = body.windows(7).any(|w| w == b"x-allow");
                    // CheckResponse: status (1) google.rpc.Status { code (1) };
                    // denied_response (2) { status (1) { code (1) }, body (3) }.
                    let msg: Vec<u8> = if allow {
                        vec![0x0a, 0x00]
                    } else {
                        let text = b"grpc says no";
                        let mut denied = vec![0x0a, 0x03, 0x08, 0x91, 0x03, 0x1a, text.len() as u8];
                        denied.extend_from_slice(text);
                        let mut m = vec![0x0a, 0x02, 0x08, 0x07, 0x12, denied.len() as u8];
                        m.extend(denied);
                        m
                    };
                    let mut framed = vec![0u8];
                    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                    framed.extend(msg);
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let frames = vec![
                        Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(framed))),
                        Ok(hyper::body::Frame::trailers(trailers)),
                    ];
                    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/grpc")
                            .body(body)
                            .unwrap(),
                    )
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
            });
        }
    });
    addr
}

/// External authorization over Envoy's gRPC protocol (the gateway's default `grpc`
/// feature) through a Service backend without an appProtocol (spoken h2c as a
/// GRPCRoute's would be): allowed, denied with the service's status and body, and
/// failing closed when the service cannot be reached.
#[tokio::test]
async fn ext_authz_grpc_allows_denies_and_fails_closed() {
    let app = EchoBackend::start("app").await;
    let authz = grpc_authz_service().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ext = |svc: &str| {
        format!("  extAuth:\n    grpc:\n      backendRefs: [{{ name: {svc}, port: 80 }}]\n")
    };
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        service("authz", authz),
        service("gone", closed),
        route("app", "/app", "app"),
        route("down", "/down", "app"),
        policy("ext", "2024-01-01T00:00:00Z", "app", &ext("authz")),
        policy("down", "2024-01-01T00:00:00Z", "down", &ext("gone")),
    ])
    .await;
    let (status, _, body) = get(addr, "/app", &[("x-allow", "yes")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = get(addr, "/app", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "grpc says no");
    let (status, _, _) = get(addr, "/down", &[("x-allow", "yes")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.hits(), 1);
}

/// A CORS preflight carries no credentials: on a rule with a CORS filter it is
/// answered before the rule's SecurityPolicy, while the actual request still needs a
/// key (and its refusal carries the CORS headers).
#[tokio::test]
async fn a_cors_preflight_passes_without_credentials() {
    let app = EchoBackend::start("app").await;
    let cors_route = route_with(
        "app",
        "/",
        "app",
        "    filters:\n    - type: CORS\n      cors: { allowOrigins: [\"https://ui.test\"], allowMethods: [GET] }\n",
    );
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        cors_route,
        secret("keys", &[("ui", "ui-key")]),
        policy(
            "keys",
            "2024-01-01T00:00:00Z",
            "app",
            "  apiKeyAuth:\n    credentialRefs: [{ name: keys }]\n    extractFrom: [{ headers: [x-api-key] }]\n",
        ),
    ])
    .await;
    let io = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri("/")
        .header("host", "example.test")
        .header("origin", "https://ui.test")
        .header("access-control-request-method", "GET")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = sender.send_request(preflight).await.unwrap();
    assert!(rsp.status().is_success(), "{}", rsp.status());
    assert_eq!(
        rsp.headers()["access-control-allow-origin"],
        "https://ui.test"
    );
    assert_eq!(app.hits(), 0);

    let (status, _, _) = get(addr, "/", &[("origin", "https://ui.test")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(
        addr,
        "/",
        &[("origin", "https://ui.test"), ("x-api-key", "ui-key")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// Gateway API's own `ExternalAuth` HTTPRoute filter (GEP-1494) is served by the same
/// external authorization layer: allowed with the service's header forwarded, denied
/// with the service's answer.
#[tokio::test]
async fn the_external_auth_filter_is_served() {
    let mut app = EchoBackend::start("app").await;
    let authz = authz_service().await;
    let filtered = route_with(
        "app",
        "/",
        "app",
        "    filters:\n    - type: ExternalAuth\n      externalAuth:\n        protocol: HTTP\n\
         \x20       backendRef: { name: authz, port: 80 }\n\
         \x20       http: { allowedHeaders: [x-allow], allowedResponseHeaders: [x-user] }\n",
    );
    let (_wired, addr, _dir) =
        start(&[service("app", app.addr), service("authz", authz), filtered]).await;
    let (status, _, body) = get(addr, "/", &[("x-allow", "yes")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.next_seen().await.headers["x-user"], "u1");
    let (status, _, body) = get(addr, "/", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, "denied by the authorization service");
    assert!(app.drain_seen().is_empty());
}

/// A remote JWKS without backendRefs is fetched from the URI's own host (resolved by
/// DNS) and port.
#[tokio::test]
async fn jwt_with_a_remote_jwks_at_its_uri() {
    let app = EchoBackend::start("app").await;
    let signer = Arc::new(Signer::new("direct-1"));
    let jwks = signer.jwks();
    let jwks_addr = serve(move |_| Response::new(Full::from(jwks.clone()))).await;
    // `localhost` resolves by the system's resolver (often `::1` first, where nothing
    // listens: the next address is tried).
    let remote = format!(
        "      remoteJWKS: {{ uri: \"http://localhost:{}/jwks.json\" }}\n",
        jwks_addr.port()
    );
    let (_wired, addr, _dir) = start(&[
        service("app", app.addr),
        route("jwt", "/", "app"),
        policy(
            "jwt",
            "2024-01-01T00:00:00Z",
            "jwt",
            &format!("  jwt:\n    providers:\n{}", jwt_provider(&remote)),
        ),
    ])
    .await;
    let bearer = format!(
        "Bearer {}",
        signer.token(&claims("api", 300, serde_json::json!({})))
    );
    eventually(
        Duration::from_secs(10),
        "the fetched JWKS verifies",
        || async { get(addr, "/", &[("authorization", &bearer)]).await.0 == StatusCode::OK },
    )
    .await;
    let forged = Signer::new("direct-1").token(&claims("api", 300, serde_json::json!({})));
    let (status, _, _) = get(addr, "/", &[("authorization", &format!("Bearer {forged}"))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
