//! The stacks compared: each check built as a route rule would run it, and a request
//! it lets through (or, for the `(401)` rows, refuses).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use gatekit_auth::apikey::{ApiKeyConfig, ApiKeyLayer};
use gatekit_auth::authz::{Action, AuthzConfig, AuthzLayer, AuthzRule, JwtPrincipal, Principal};
use gatekit_auth::basic::{BasicAuthConfig, BasicAuthLayer};
use gatekit_auth::credential::CredentialSource;
use gatekit_auth::extauth::{ExtAuthConfig, ExtAuthLayer, HttpService};
use gatekit_auth::jwt::{JwksSource, JwtConfig, JwtLayer, JwtProvider};
use gatekit_auth::oidc::{OidcConfig, OidcLayer};
use gatekit_core::client::Client;
use gatekit_core::ratelimit::Cidr;
use gatekit_core::{Backend, Body, BoxError, ConnectionInfo, HandleErrorLayer};
use gatekit_testkit::oidc::{Browser, Provider};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use serde_json::json;
use tower::{Layer, Service};

/// The checks of the `check` benchmark, in the order of its table.
#[cfg(not(feature = "grpc"))]
pub const NAMES: &[&str] = &[
    "no auth",
    "api key",
    "api key unknown (401)",
    "basic cached",
    "basic sha1 uncached",
    "jwt rs256",
    "jwt es256",
    "oidc session",
    "authz cidr",
    "jwt es256 + authz scope",
    "ext_authz http",
];

/// The checks of the `check` benchmark, in the order of its table.
#[cfg(feature = "grpc")]
pub const NAMES: &[&str] = &[
    "no auth",
    "api key",
    "api key unknown (401)",
    "basic cached",
    "basic sha1 uncached",
    "jwt rs256",
    "jwt es256",
    "oidc session",
    "authz cidr",
    "jwt es256 + authz scope",
    "ext_authz http",
    "ext_authz grpc",
];

/// Basic auth with its cache off: bcrypt (cost 10) on every request.
pub const BCRYPT_UNCACHED: &str = "basic bcrypt-10 uncached";

/// One stack: the service and the request sent through it.
pub struct Stack {
    pub name: &'static str,
    pub service: Backend,
    /// The status every request gets.
    pub expect: StatusCode,
    headers: Vec<(HeaderName, String)>,
}

impl Stack {
    /// A request for this stack: `GET /items/42` from client 10.1.2.3 with the stack's
    /// credentials.
    pub fn request(&self) -> Request<Body> {
        let mut req = Request::get("/items/42")
            .header(header::HOST, "app.example.com")
            .body(Body::empty())
            .unwrap();
        for (name, value) in &self.headers {
            req.headers_mut()
                .insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        req.extensions_mut().insert(ConnectionInfo::new(
            SocketAddr::from(([10, 1, 2, 3], 40_000)),
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            false,
        ));
        req
    }
}

/// Builds the stack named `name` (one of [`NAMES`] or [`BCRYPT_UNCACHED`]); inside a
/// runtime, as the HTTP client of ext_authz spawns its connection tasks.
pub fn build(name: &str) -> Stack {
    let auth = |v: String| vec![(header::AUTHORIZATION, v)];
    let (name, service, expect, headers) = match name {
        "no auth" => (
            "no auth",
            guarded(tower_layer::Identity::new()),
            StatusCode::OK,
            vec![],
        ),
        "api key" => (
            "api key",
            api_key(),
            StatusCode::OK,
            api_key_header("key-00004242"),
        ),
        "api key unknown (401)" => (
            "api key unknown (401)",
            api_key(),
            StatusCode::UNAUTHORIZED,
            api_key_header("key-nobody"),
        ),
        "basic cached" => (
            "basic cached",
            basic(Duration::from_secs(300)),
            StatusCode::OK,
            auth(basic_header("alice", "alice-pw")),
        ),
        "basic sha1 uncached" => (
            "basic sha1 uncached",
            basic(Duration::ZERO),
            StatusCode::OK,
            auth(basic_header("carol", "carol-pw")),
        ),
        BCRYPT_UNCACHED => (
            BCRYPT_UNCACHED,
            basic(Duration::ZERO),
            StatusCode::OK,
            auth(basic_header("alice", "alice-pw")),
        ),
        "jwt rs256" => {
            let (layer, token) = rs256();
            (
                "jwt rs256",
                guarded(layer),
                StatusCode::OK,
                auth(format!("Bearer {token}")),
            )
        }
        "jwt es256" => {
            let (layer, token) = es256();
            (
                "jwt es256",
                guarded(layer),
                StatusCode::OK,
                auth(format!("Bearer {token}")),
            )
        }
        "oidc session" => {
            let (layer, cookie) = &*OIDC;
            (
                "oidc session",
                guarded(layer.clone()),
                StatusCode::OK,
                vec![(header::COOKIE, cookie.clone())],
            )
        }
        "authz cidr" => {
            let cidrs =
                ["192.0.2.0/24", "2001:db8::/32", "10.0.0.0/8"].map(|c| c.parse::<Cidr>().unwrap());
            let layer = AuthzLayer::new(AuthzConfig::allow_cidrs(cidrs));
            ("authz cidr", guarded(layer), StatusCode::OK, vec![])
        }
        "jwt es256 + authz scope" => {
            let (jwt, token) = es256();
            let rule = AuthzRule::new(
                Action::Allow,
                Principal::default().with_jwt(JwtPrincipal::default().with_scope("write")),
            );
            let authz = AuthzLayer::new(AuthzConfig::new(Action::Deny).with_rule(rule));
            let layer = tower::layer::util::Stack::new(authz, jwt);
            (
                "jwt es256 + authz scope",
                guarded(layer),
                StatusCode::OK,
                auth(format!("Bearer {token}")),
            )
        }
        "ext_authz http" => {
            let auth_server = Backend::single(&Client::default(), *AUTH_SERVER);
            let layer = ExtAuthLayer::new(ExtAuthConfig::http(auth_server, HttpService::new()));
            (
                "ext_authz http",
                guarded(layer),
                StatusCode::OK,
                auth("Bearer bench".into()),
            )
        }
        #[cfg(feature = "grpc")]
        "ext_authz grpc" => {
            use gatekit_auth::extauth::GrpcService;
            use gatekit_core::client::Transport;
            let auth_server =
                Backend::single_with(&Client::default(), *AUTH_SERVER, Transport::http2());
            let service = GrpcService::new("authz.bench").unwrap();
            let layer = ExtAuthLayer::new(ExtAuthConfig::grpc(auth_server, service));
            (
                "ext_authz grpc",
                guarded(layer),
                StatusCode::OK,
                auth("Bearer bench".into()),
            )
        }
        other => panic!("no stack named {other:?}"),
    };
    Stack {
        name,
        service,
        expect,
        headers,
    }
}

/// The app behind every check: `200 ok` at once.
#[derive(Clone, Copy)]
struct App;

impl Service<Request<Body>> for App {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Ready<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        ready(Ok(Response::new(Body::from("ok"))))
    }
}

/// gatekit's error handling, then `layer`, then the app, erased as a route rule's
/// service is.
fn guarded<L>(layer: L) -> Backend
where
    L: Layer<App>,
    L::Service: Service<Request<Body>, Response = Response<Body>> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request<Body>>>::Error: Into<BoxError>,
    <L::Service as Service<Request<Body>>>::Future: Send + 'static,
{
    Backend::new(HandleErrorLayer::new().layer(layer.layer(App)))
}

/// 10,000 consumers with one key each, read from `x-api-key`.
fn api_key() -> Backend {
    let mut cfg = ApiKeyConfig::new("api").with_source(CredentialSource::Header(
        HeaderName::from_static("x-api-key"),
    ));
    for i in 0..10_000 {
        cfg = cfg.with_consumer(format!("consumer-{i}"), [format!("key-{i:08}")]);
    }
    guarded(ApiKeyLayer::new(cfg).unwrap())
}

fn api_key_header(key: &str) -> Vec<(HeaderName, String)> {
    vec![(HeaderName::from_static("x-api-key"), key.to_owned())]
}

/// An `Authorization: Basic` value.
pub fn basic_header(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// An htpasswd line with a bcrypt hash of `password` (fixed salt).
pub fn bcrypt_line(user: &str, password: &str, cost: u32) -> String {
    let hash = bcrypt::hash_with_salt(password, cost, [9; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{hash}\n")
}

/// alice with a bcrypt (cost 10) hash, carol with a `{SHA}` one.
fn basic(cache_ttl: Duration) -> Backend {
    let sha = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b"carol-pw");
    let text = format!(
        "{}carol:{{SHA}}{}\n",
        bcrypt_line("alice", "alice-pw", 10),
        STANDARD.encode(sha.as_ref())
    );
    let cfg = BasicAuthConfig::new("staff", text).cache_ttl(cache_ttl);
    guarded(BasicAuthLayer::new(cfg).unwrap())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token signed by `sign`, valid for an hour, with scopes `read write`.
fn signed(alg: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"iss": "https://issuer.test", "aud": "api", "sub": "alice", "exp": exp, "scope": "read write"});
    let head = json!({"alg": alg, "typ": "JWT", "kid": "k"});
    let msg = format!(
        "{}.{}",
        b64(head.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(msg.as_bytes());
    format!("{msg}.{}", b64(&signature))
}

/// A layer whose local JWKS holds a 2048-bit RSA key, and a token it accepts.
fn rs256() -> (JwtLayer, String) {
    let pem = gatekit_testkit::jwt::RSA_A;
    let der = STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let key = sig::RsaKeyPair::from_pkcs8(&der).unwrap();
    let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    let jwk = json!({"kty": "RSA", "kid": "k", "n": b64(&c.n), "e": b64(&c.e)});
    let token = signed("RS256", |msg| {
        let mut out = vec![0; key.public().modulus_len()];
        key.sign(&sig::RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut out)
            .unwrap();
        out
    });
    (jwt_layer(jwk), token)
}

/// A layer whose local JWKS holds a P-256 key, and a token it accepts.
fn es256() -> (JwtLayer, String) {
    let rng = SystemRandom::new();
    let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let key = sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let p = key.public_key().as_ref();
    let jwk =
        json!({"kty": "EC", "kid": "k", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])});
    let token = signed("ES256", |msg| {
        key.sign(&rng, msg).unwrap().as_ref().to_vec()
    });
    (jwt_layer(jwk), token)
}

/// Keys parsed from a local JWKS when the layer is built: the cached-key path.
fn jwt_layer(jwk: serde_json::Value) -> JwtLayer {
    let set = json!({"keys": [jwk]}).to_string();
    let provider = JwtProvider::new("bench", JwksSource::Local(set))
        .issuer("https://issuer.test")
        .audiences(["api"]);
    JwtLayer::new(JwtConfig::new([provider])).unwrap()
}

/// An authorization server (HTTP/1.1 keep-alive and h2c) on its own thread and
/// runtime: 200 to every HTTP check, an empty `CheckResponse` (status `OK`) to every
/// gRPC call.
/// An OIDC layer whose provider (the testkit's, on its own thread and runtime) is
/// discovered, and the `Cookie` header of a session logged in through it: the
/// `oidc session` row measures a request with a valid session cookie (AES-GCM open,
/// session and claims parsed, cookies stripped), no provider round trip.
static OIDC: LazyLock<(OidcLayer, String)> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        crate::runtime().block_on(async move {
            let provider = Provider::start("bench", "bench-secret").await;
            let idp = Backend::single(&Client::default(), provider.addr());
            let layer = OidcLayer::new(
                OidcConfig::new(provider.issuer(), "bench", "bench-secret", idp)
                    .secure_cookies(false),
            )
            .unwrap();
            let mut status = layer.status();
            status
                .wait_for(|s| s.discovered() && s.keys().succeeded() > 0)
                .await
                .unwrap();
            let gateway = guarded(layer.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let svc = gateway.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(
                            move |req: Request<hyper::body::Incoming>| svc.send(req.map(Body::new)),
                        );
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
            let mut browser = Browser::new();
            let pages = browser.follow(&format!("http://{addr}/items/42")).await;
            assert_eq!(pages.last().unwrap().status, StatusCode::OK);
            let cookie = browser
                .jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            tx.send((layer, cookie)).unwrap();
            // The provider stays up for the layer's background key fetches.
            let _provider = provider;
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
});

static AUTH_SERVER: LazyLock<SocketAddr> = LazyLock::new(|| {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        crate::runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(check);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    addr
});

async fn check(req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let grpc = req.headers().contains_key("te");
    req.into_body().collect().await.unwrap();
    if !grpc {
        return Ok(Response::new(Body::empty()));
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = http_body_util::Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
        .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
    Ok(Response::new(Body::new(
        body.map_err(|never: Infallible| match never {}),
    )))
}
