//! JWT layer tests: real signatures (ring, through the testkit's `jwt::Signer`: RSA keys
//! from committed PEM fixtures, EC and Ed25519 keys made per test), a real hyper JWKS
//! server on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatekit_core::access::{AccessPolicy, Identity};
use gatekit_core::client::Client;
use gatekit_core::{Backend, Body, BoxError, error_response};
use gatekit_testkit::jwt::{RSA_A, RSA_B, Signer, b64};
use http::{HeaderName, Request, Response, StatusCode, header};
use ring::signature as sig;
use serde_json::{Value, json};
use tower::{Service, ServiceExt};
use tower_layer::Layer;

use super::*;
use crate::VerifiedClaims;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": "https://issuer.test", "aud": "api", "sub": "alice", "exp": now() + 600})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn provider(jwks_text: String) -> JwtProvider {
    JwtProvider::new("test", JwksSource::Local(jwks_text))
        .issuer("https://issuer.test")
        .audiences(["other", "api"])
}

// === the service under test ===

/// An app that answers 200 and copies the request's headers and auth extensions into
/// its response.
fn app() -> Backend {
    Backend::new(tower::service_fn(|req: Request<Body>| async move {
        let mut rsp = Response::new(Body::empty());
        *rsp.headers_mut() = req.headers().clone();
        if let Some(id) = req.extensions().get::<Identity>() {
            rsp.extensions_mut().insert(id.clone());
        }
        if let Some(claims) = req.extensions().get::<VerifiedClaims>() {
            rsp.extensions_mut().insert(claims.clone());
        }
        Ok::<_, Infallible>(rsp)
    }))
}

async fn send(svc: &Backend, req: Request<Body>) -> Response<Body> {
    match svc.clone().oneshot(req).await {
        Ok(rsp) => rsp,
        Err(err) => error_response(&*err),
    }
}

fn bearer(token: &str) -> Request<Body> {
    Request::get("http://gw.test/r")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn guarded(config: JwtConfig) -> (JwtLayer, Backend) {
    let layer = JwtLayer::new(config).unwrap();
    let svc = JwtPolicy::from_layer(layer.clone()).layer(app());
    (layer, svc)
}

fn challenge(rsp: &Response<Body>) -> &str {
    rsp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap()
}

const INVALID: &str = "Bearer realm=\"gatekit\", error=\"invalid_token\"";

// === algorithms and checks ===

#[tokio::test]
async fn tokens_of_every_algorithm_verify_with_their_jwk() {
    let rsa = Signer::rsa(RSA_A);
    let p256 = Signer::ec("P-256");
    let p384 = Signer::ec("P-384");
    let ed = Signer::ed();
    let hmac = Signer::Hmac(b"a shared secret of 32 bytes.....".to_vec());
    let set = jwks(&[
        rsa.jwk("rsa"),
        p256.jwk("p256"),
        p384.jwk("p384"),
        ed.jwk("ed"),
        hmac.jwk("hs"),
    ]);
    let (_, svc) = guarded(JwtConfig::new([provider(set.clone()).allow_hmac(true)]));
    let cases: [(&Signer, &str, &str); 12] = [
        (&rsa, "rsa", "RS256"),
        (&rsa, "rsa", "RS384"),
        (&rsa, "rsa", "RS512"),
        (&rsa, "rsa", "PS256"),
        (&rsa, "rsa", "PS384"),
        (&rsa, "rsa", "PS512"),
        (&p256, "p256", "ES256"),
        (&p384, "p384", "ES384"),
        (&ed, "ed", "EdDSA"),
        (&hmac, "hs", "HS256"),
        (&hmac, "hs", "HS384"),
        (&hmac, "hs", "HS512"),
    ];
    for (signer, kid, alg) in cases {
        let rsp = send(&svc, bearer(&signer.token(alg, kid, &claims()))).await;
        assert_eq!(rsp.status(), StatusCode::OK, "{alg}");
        let id = rsp.extensions().get::<Identity>().unwrap();
        assert_eq!((id.method(), id.subject()), ("jwt", "alice"));
        assert_eq!(
            &*rsp.extensions().get::<VerifiedClaims>().unwrap().provider,
            "test"
        );
    }

    // HMAC keys are ignored unless the provider enables them.
    let (_, strict) = guarded(JwtConfig::new([provider(set)]));
    let rsp = send(&strict, bearer(&hmac.token("HS256", "hs", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    let rsp = send(&strict, bearer(&rsa.token("RS256", "rsa", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_invalid_token_and_no_reason() {
    let rsa = Signer::rsa(RSA_A);
    let other = Signer::rsa(RSA_B);
    let (_, svc) = guarded(JwtConfig::new([provider(jwks(&[rsa.jwk("a")]))]));
    let t = |c: Value| rsa.token("RS256", "a", &c);
    let n = now();

    // Within the 60 s clock skew: still good.
    let rsp = send(&svc, bearer(&t(with(claims(), "exp", json!(n - 30))))).await;
    assert_eq!(rsp.status(), StatusCode::OK, "exp within skew");
    let rsp = send(&svc, bearer(&t(with(claims(), "nbf", json!(n + 30))))).await;
    assert_eq!(rsp.status(), StatusCode::OK, "nbf within skew");

    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut none = {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        format!("{header}.{}.", b64(claims().to_string().as_bytes()))
    };
    let tampered = {
        let good = t(claims());
        let (msg, _) = good.rsplit_once('.').unwrap();
        let forged = with(claims(), "sub", json!("mallory"));
        let head = msg.split('.').next().unwrap();
        format!(
            "{head}.{}.{}",
            b64(forged.to_string().as_bytes()),
            good.rsplit('.').next().unwrap()
        )
    };
    let cases = [
        ("expired", t(with(claims(), "exp", json!(n - 120)))),
        ("not yet valid", t(with(claims(), "nbf", json!(n + 120)))),
        (
            "wrong audience",
            t(with(claims(), "aud", json!("elsewhere"))),
        ),
        (
            "wrong issuer",
            t(with(claims(), "iss", json!("https://evil.test"))),
        ),
        ("no exp", t(no_exp)),
        ("alg none", none.clone()),
        ("wrong key, same kid", other.token("RS256", "a", &claims())),
        ("tampered payload", tampered),
        ("not a JWT", "abc.def".to_owned()),
    ];
    for (what, token) in cases {
        let rsp = send(&svc, bearer(&token)).await;
        assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(challenge(&rsp), INVALID, "{what}");
    }
    none.push_str("c2ln");
    let rsp = send(&svc, bearer(&none)).await;
    assert_eq!(
        rsp.status(),
        StatusCode::UNAUTHORIZED,
        "alg none with a signature"
    );

    // No token: a challenge without an error.
    let req = Request::get("/r").body(Body::empty()).unwrap();
    let rsp = send(&svc, req).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&rsp), "Bearer realm=\"gatekit\"");
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    let rsa = Signer::rsa(RSA_A);
    let Signer::Rsa(pair) = &rsa else {
        unreachable!()
    };
    // HMAC is even enabled for the provider: the RSA key still only verifies RS*/PS*.
    let (_, svc) = guarded(JwtConfig::new([
        provider(jwks(&[rsa.jwk("a")])).allow_hmac(true)
    ]));
    let public_der = pair.public().as_ref().to_vec();
    let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    let jwk_text = rsa.jwk("a").to_string().into_bytes();
    for secret in [public_der, components.n, jwk_text] {
        let forged = Signer::Hmac(secret).token("HS256", "a", &claims());
        let rsp = send(&svc, bearer(&forged)).await;
        assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge(&rsp), INVALID);
    }
    // The same key accepts its real tokens.
    let rsp = send(&svc, bearer(&rsa.token("RS256", "a", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_jwk_alg_narrows_what_its_key_verifies() {
    let rsa = Signer::rsa(RSA_A);
    let mut jwk = rsa.jwk("a");
    jwk["alg"] = json!("PS256");
    let (_, svc) = guarded(JwtConfig::new([provider(jwks(&[jwk]))]));
    let rsp = send(&svc, bearer(&rsa.token("RS256", "a", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    let rsp = send(&svc, bearer(&rsa.token("PS256", "a", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::OK);
}

// === request decoration ===

#[tokio::test]
async fn claims_become_headers_and_client_copies_are_removed() {
    let ec = Signer::ec("P-256");
    let p = provider(jwks(&[ec.jwk("k")]))
        .claim_to_header(HeaderName::from_static("x-user"), "sub")
        .claim_to_header(HeaderName::from_static("x-tier"), "org.tier")
        .claim_to_header(HeaderName::from_static("x-admin"), "admin")
        .claim_to_header(HeaderName::from_static("x-missing"), "nope");
    let (_, svc) = guarded(JwtConfig::new([p]).optional(true));
    let c = with(
        with(claims(), "org", json!({"tier": 3})),
        "admin",
        json!(false),
    );
    let mut req = bearer(&ec.token("ES256", "k", &c));
    for h in ["x-user", "x-tier", "x-missing"] {
        req.headers_mut().insert(h, "spoofed".parse().unwrap());
    }
    let rsp = send(&svc, req).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    let h = rsp.headers();
    assert_eq!(h.get_all("x-user").iter().collect::<Vec<_>>(), ["alice"]);
    assert_eq!(h["x-tier"], "3");
    assert_eq!(h["x-admin"], "false");
    assert!(
        !h.contains_key("x-missing"),
        "a spoofed header for an absent claim is gone too"
    );
    assert!(
        h.contains_key(header::AUTHORIZATION),
        "forwarded by default"
    );
    let claims = rsp.extensions().get::<VerifiedClaims>().unwrap();
    assert_eq!(claims.claims["org"]["tier"], 3);

    // Optional and no token: through, unauthenticated, spoofed headers still removed.
    let mut req = Request::get("/r").body(Body::empty()).unwrap();
    req.headers_mut()
        .insert("x-user", "spoofed".parse().unwrap());
    let rsp = send(&svc, req).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(!rsp.headers().contains_key("x-user"));
    assert!(rsp.extensions().get::<Identity>().is_none());
    // Optional but a bad token: refused.
    let rsp = send(&svc, bearer("a.b.c")).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_come_from_a_cookie_and_are_removed_when_not_forwarded() {
    let ed = Signer::ed();
    let p = provider(jwks(&[ed.jwk("k")]))
        .extract_from([CredentialSource::Cookie("session".into())])
        .forward(false);
    let (_, svc) = guarded(JwtConfig::new([p]));
    let token = ed.token("EdDSA", "k", &claims());
    let req = Request::get("/r")
        .header(header::COOKIE, format!("theme=dark; session={token}"))
        .body(Body::empty())
        .unwrap();
    let rsp = send(&svc, req).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(rsp.headers()[header::COOKIE], "theme=dark");
    // The Authorization header is not a source for this provider.
    let rsp = send(&svc, bearer(&token)).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&rsp), "Bearer realm=\"gatekit\"");
}

#[tokio::test]
async fn several_providers_a_token_goes_to_its_issuer() {
    let a = Signer::rsa(RSA_A);
    let b = Signer::ec("P-384");
    // A remote provider that is never reachable: a token of `a` must not trigger its
    // refresh, nor be answered 503 on its account.
    let remote = JwtProvider::new(
        "remote",
        JwksSource::Remote(RemoteJwks::new(
            "http://127.0.0.1:9/jwks".parse().unwrap(),
            Backend::single(&Client::default(), "127.0.0.1:9".parse().unwrap()),
        )),
    )
    .issuer("https://remote.test");
    let pa = JwtProvider::new("a", JwksSource::Local(jwks(&[a.jwk("k")]))).issuer("https://a.test");
    let pb = JwtProvider::new("b", JwksSource::Local(jwks(&[b.jwk("k")]))).issuer("https://b.test");
    let (layer, svc) = guarded(JwtConfig::new([remote, pa, pb]));
    let ca = with(claims(), "iss", json!("https://a.test"));
    let cb = with(claims(), "iss", json!("https://b.test"));
    let rsp = send(&svc, bearer(&a.token("RS256", "k", &ca))).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(
        &*rsp.extensions().get::<VerifiedClaims>().unwrap().provider,
        "a"
    );
    let rsp = send(&svc, bearer(&b.token("ES384", "k", &cb))).await;
    assert_eq!(
        &*rsp.extensions().get::<VerifiedClaims>().unwrap().provider,
        "b"
    );
    // `a`'s key signing a token claiming `b`'s issuer: refused.
    let rsp = send(&svc, bearer(&a.token("RS256", "k", &cb))).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    let rsp = send(&svc, bearer(&a.token("RS256", "unknown", &ca))).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(layer.shared().providers[0].store.refreshes_requested(), 0);
    // A token for the unreachable provider: 503, its keys never came.
    let cr = with(claims(), "iss", json!("https://remote.test"));
    let rsp = send(&svc, bearer(&a.token("RS256", "k", &cr))).await;
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn bad_configuration_names_the_field() {
    let err = JwtLayer::new(JwtConfig::new([JwtProvider::new(
        "p",
        JwksSource::Local(
            "{\"keys\": [{\"kty\": \"RSA\", \"use\": \"enc\", \"n\": \"AQAB\", \"e\": \"AQAB\"}]}"
                .into(),
        ),
    )]))
    .unwrap_err();
    assert_eq!(err.field(), "providers[0].localJWKS");
    let err = JwtLayer::new(JwtConfig::new([JwtProvider::new(
        "p",
        JwksSource::Local("not json".into()),
    )]))
    .unwrap_err();
    assert_eq!(err.field(), "providers[0].localJWKS");
    let err = JwtLayer::new(JwtConfig::new([])).unwrap_err();
    assert_eq!(err.field(), "providers");
    let set = jwks(&[Signer::ed().jwk("k")]);
    let err = JwtLayer::new(JwtConfig::new([
        JwtProvider::new("p", JwksSource::Local(set.clone())),
        JwtProvider::new("p", JwksSource::Local(set.clone())),
    ]))
    .unwrap_err();
    assert_eq!(err.field(), "providers[1].name");
    let err = JwtLayer::new(
        JwtConfig::new([JwtProvider::new("p", JwksSource::Local(set))]).realm("a\"b"),
    )
    .unwrap_err();
    assert_eq!(err.field(), "realm");
    // Remote keys need a runtime to be fetched on: an error, not a panic.
    let remote = JwksSource::Remote(RemoteJwks::new(
        "http://127.0.0.1:9/".parse().unwrap(),
        Backend::new(tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        })),
    ));
    let err = JwtLayer::new(JwtConfig::new([JwtProvider::new("p", remote.clone())])).unwrap_err();
    assert_eq!(err.field(), "providers[0].remoteJWKS");
    assert!(err.reason().contains("runtime"), "{err}");
    let JwksSource::Remote(r) = remote else {
        unreachable!()
    };
    let zero = JwksSource::Remote(r.cache_duration(Duration::ZERO));
    let err = JwtLayer::new(JwtConfig::new([JwtProvider::new("p", zero)])).unwrap_err();
    assert!(err.reason().contains("cacheDuration"), "{err}");
}

// === remote JWKS ===

/// A JWKS server on loopback: serves `doc`, counts requests, can be shut down.
struct JwksServer {
    addr: SocketAddr,
    doc: Arc<parking_lot::Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(doc: String) -> Self {
        Self::start_with(doc, None).await
    }

    /// Serves over TLS when `tls` is given.
    async fn start_with(doc: String, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let doc = Arc::new(parking_lot::Mutex::new(doc));
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (doc.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (d, h, tls) = (d.clone(), h.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            assert_eq!(req.uri().path(), "/jwks.json");
                            h.fetch_add(1, Ordering::SeqCst);
                            let body = d.lock().clone();
                            async move {
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .header(header::CONTENT_TYPE, "application/json")
                                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        });
                    // One request per connection: stopping the accept loop stops the
                    // server (no pooled connection outlives it).
                    let mut http = hyper::server::conn::http1::Builder::new();
                    http.keep_alive(false);
                    match tls {
                        None => {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = http.serve_connection(io, svc).await;
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = http.serve_connection(io, svc).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            doc,
            hits,
            task,
        }
    }

    fn remote(&self) -> RemoteJwks {
        RemoteJwks::new(
            format!("http://{}/jwks.json", self.addr).parse().unwrap(),
            Backend::single(&Client::default(), self.addr),
        )
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn remote_provider(remote: RemoteJwks) -> JwtProvider {
    JwtProvider::new("remote", JwksSource::Remote(remote))
        .issuer("https://issuer.test")
        .audiences(["api"])
}

async fn fetched(layer: &JwtLayer, ok: u64, failed: u64) {
    let mut rx = layer.fetches();
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|f| f.succeeded() >= ok && f.failed() >= failed),
    )
    .await
    .expect("JWKS fetch event")
    .unwrap();
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token_without_rebuilding() {
    let old = Signer::rsa(RSA_A);
    let new = Signer::ec("P-256");
    let server = JwksServer::start(jwks(&[old.jwk("old")])).await;
    let (layer, svc) = guarded(JwtConfig::new([remote_provider(server.remote())]));
    fetched(&layer, 1, 0).await;
    let rsp = send(&svc, bearer(&old.token("RS256", "old", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::OK);

    // The provider rotates: its JWKS now holds the new key too.
    *server.doc.lock() = jwks(&[old.jwk("old"), new.jwk("new")]);
    let token = new.token("ES256", "new", &claims());
    let rsp = send(&svc, bearer(&token)).await;
    assert_eq!(
        rsp.status(),
        StatusCode::UNAUTHORIZED,
        "asks for the refresh"
    );
    fetched(&layer, 2, 0).await;
    let rsp = send(&svc, bearer(&token)).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_interval() {
    let key = Signer::ec("P-256");
    let server = JwksServer::start(jwks(&[key.jwk("k")])).await;
    let (layer, svc) = guarded(JwtConfig::new([remote_provider(server.remote())]));
    fetched(&layer, 1, 0).await;
    let store = layer.shared().providers[0].store.clone();
    for i in 0..50 {
        let rsp = send(
            &svc,
            bearer(&key.token("ES256", &format!("kid-{i}"), &claims())),
        )
        .await;
        assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    }
    fetched(&layer, 2, 0).await;
    assert_eq!(store.refreshes_requested(), 1);
    for i in 50..100 {
        let rsp = send(
            &svc,
            bearer(&key.token("ES256", &format!("kid-{i}"), &claims())),
        )
        .await;
        assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    }
    // No further refresh was asked for within the 10 s, so none can reach the server.
    assert_eq!(store.refreshes_requested(), 1);
    assert_eq!(server.hits(), 2);
    // Known keys kept working throughout.
    let rsp = send(&svc, bearer(&key.token("ES256", "k", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::OK);
}

#[tokio::test]
async fn keys_stay_in_use_when_the_jwks_server_goes_down() {
    let key = Signer::rsa(RSA_B);
    let server = JwksServer::start(jwks(&[key.jwk("k")])).await;
    let remote = server.remote().min_refresh_interval(Duration::ZERO);
    let (layer, svc) = guarded(JwtConfig::new([remote_provider(remote)]));
    fetched(&layer, 1, 0).await;
    server.task.abort();
    let _ = (&mut { server.task }).await;
    // An unknown kid makes the layer refetch; the fetch fails.
    let rsp = send(&svc, bearer(&key.token("RS256", "gone", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    fetched(&layer, 1, 1).await;
    let rsp = send(&svc, bearer(&key.token("RS256", "k", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::OK, "stale keys still verify");
}

#[tokio::test]
async fn without_keys_ever_fetched_requests_get_503_and_dropping_the_layer_stops_fetching() {
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let remote = RemoteJwks::new(
        format!("http://{addr}/jwks.json").parse().unwrap(),
        Backend::single(&Client::default(), addr),
    );
    let (layer, svc) = guarded(JwtConfig::new([remote_provider(remote)]));
    fetched(&layer, 0, 1).await;
    let key = Signer::ed();
    let rsp = send(&svc, bearer(&key.token("EdDSA", "k", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let mut events = layer.fetches();
    events.mark_unchanged();
    drop((layer, svc));
    // The task (the last holder of the sender) is gone: the channel closes.
    let closed = tokio::time::timeout(Duration::from_secs(10), events.changed())
        .await
        .expect("the fetch task ends");
    assert!(closed.is_err());
}

#[tokio::test]
async fn the_layer_serves_a_body_generic_stack() {
    // The plain tower Layer around a service with a non-gatekit body.
    let ec = Signer::ec("P-256");
    let layer = JwtLayer::new(JwtConfig::new([provider(jwks(&[ec.jwk("k")]))])).unwrap();
    let mut svc = layer.layer(tower::service_fn(|_: Request<String>| async {
        Ok::<_, BoxError>(Response::new(()))
    }));
    let req = Request::get("/")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", ec.token("ES256", "k", &claims())),
        )
        .body(String::new())
        .unwrap();
    svc.ready().await.unwrap().call(req).await.unwrap();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap_err();
    assert_eq!(error_response(&*err).status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_remote_jwks_over_https_is_fetched_with_the_configured_ca() {
    use gatekit_core::client::{TlsSettings, Transport};
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;

    let ca = gatekit_testkit::Ca::new();
    let (_, key_pem, leaf) = ca.leaf_pem(&["jwks.test"]);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf],
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let key = Signer::ec("P-384");
    let server = JwksServer::start_with(jwks(&[key.jwk("k")]), Some(acceptor)).await;
    let uri: http::Uri = format!("https://jwks.test:{}/jwks.json", server.addr.port())
        .parse()
        .unwrap();
    let through = |ca_pem: &str| {
        let tls = TlsSettings::from_ca_pem(ca_pem.as_bytes())
            .unwrap()
            .server_name("jwks.test")
            .unwrap();
        let backend = Backend::single_with(
            &Client::default(),
            server.addr,
            Transport::http1().with_tls(tls),
        );
        remote_provider(RemoteJwks::new(uri.clone(), backend))
    };

    let (layer, svc) = guarded(JwtConfig::new([through(&ca.pem())]));
    fetched(&layer, 1, 0).await;
    let rsp = send(&svc, bearer(&key.token("ES384", "k", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::OK);

    // A CA that did not issue the server's certificate: no keys, 503.
    let (layer, svc) = guarded(JwtConfig::new([through(&gatekit_testkit::Ca::new().pem())]));
    fetched(&layer, 0, 1).await;
    let rsp = send(&svc, bearer(&key.token("ES384", "k", &claims()))).await;
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 1, "the unverified server got no request");
}
