use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatekit_core::access::{AccessPolicy, Identity};
use gatekit_core::ratelimit::{KeyPart, Quota, RateLimitConfig, RateLimitLayer, RateLimiter};
use gatekit_core::{Backend, Body, BoxError, ErrorKind, HandleErrorLayer};
use http::{HeaderName, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use super::*;
use crate::credential::CredentialSource;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const X_CONSUMER: HeaderName = HeaderName::from_static("x-consumer");

/// A backend that answers with what it received: the identity, the consumer header,
/// the key header, the target and the cookies, one per line; counts its calls.
pub(crate) fn echo(reached: Arc<AtomicUsize>) -> Backend {
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
        let body = format!(
            "identity={identity}\nconsumer={}\nuser={}\nkey={}\nauthorization={}\ntarget={}\ncookie={}",
            h("x-consumer"),
            h("x-user"),
            h("x-api-key"),
            h("authorization"),
            req.uri(),
            h("cookie"),
        );
        async move { Ok::<_, BoxError>(Response::new(Body::from(body))) }
    }))
}

/// Serves `svc` (gatekit's error handling around it) on a real socket.
pub(crate) async fn serve(svc: Backend) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServiceBuilder::new()
        .layer(HandleErrorLayer::new())
        .map_request(|req: Request<Incoming>| req.map(Body::new))
        .service(svc);
    tokio::spawn(async move {
        loop {
            let (io, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    addr
}

pub(crate) type TestClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A GET of `target` with `headers`: (status, `WWW-Authenticate`, body).
pub(crate) async fn get(
    client: &TestClient,
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let mut req = Request::get(format!("http://{addr}{target}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let rsp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = rsp.status();
    let challenge = rsp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, challenge, String::from_utf8(body.to_vec()).unwrap())
}

fn config() -> ApiKeyConfig {
    ApiKeyConfig::new("api")
        .with_consumer("billing", ["key-billing-old", "key-billing-new"])
        .with_consumer("search", ["key-search"])
        .with_source(CredentialSource::Header(X_API_KEY))
        .forward_consumer(X_CONSUMER)
}

/// Serves `config` as an [`ApiKeyPolicy`] around an echo backend.
async fn server(config: ApiKeyConfig) -> (SocketAddr, Arc<AtomicUsize>) {
    let reached = Arc::new(AtomicUsize::new(0));
    let policy = ApiKeyPolicy::new(ApiKeyLayer::new(config).unwrap());
    let addr = serve(policy.layer(echo(Arc::clone(&reached)))).await;
    (addr, reached)
}

#[tokio::test]
async fn a_valid_key_passes_with_the_consumer_as_identity_and_header() {
    let (addr, reached) = server(config()).await;
    let c = client();
    let (status, _, body) = get(&c, addr, "/", &[("x-api-key", "key-search")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("identity=api-key:search\n"), "{body}");
    assert!(body.contains("consumer=search\n"), "{body}");
    assert!(
        body.contains("key=key-search\n"),
        "not stripped by default: {body}"
    );
    assert_eq!(reached.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn missing_and_unknown_keys_get_401_with_the_challenge_and_never_reach_the_backend() {
    let (addr, reached) = server(config()).await;
    let c = client();
    for headers in [
        &[][..],
        &[("x-api-key", "key-nobody")][..],
        &[("x-api-key", "")][..],
        &[("x-api-key", "key-search"), ("x-api-key", "key-search")][..],
    ] {
        let (status, challenge, body) = get(&c, addr, "/", headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(challenge, "ApiKey realm=\"api\"");
        assert_eq!(
            body, "authentication required\n",
            "the same for every refusal"
        );
    }
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn rotated_keys_are_both_valid_and_a_revoked_key_fails_once_the_layer_is_rebuilt() {
    let (addr, _) = server(config()).await;
    let c = client();
    for key in ["key-billing-old", "key-billing-new"] {
        let (status, _, body) = get(&c, addr, "/", &[("x-api-key", key)]).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        assert!(body.contains("consumer=billing\n"));
    }
    // The old key is removed from the configuration: a new layer is built from it.
    let rotated = ApiKeyConfig::new("api")
        .with_consumer("billing", ["key-billing-new"])
        .with_consumer("search", ["key-search"])
        .with_source(CredentialSource::Header(X_API_KEY));
    let (addr, _) = server(rotated).await;
    let (status, ..) = get(&c, addr, "/", &[("x-api-key", "key-billing-old")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");
    let (status, ..) = get(&c, addr, "/", &[("x-api-key", "key-billing-new")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_sent_consumer_header_is_removed_whether_or_not_the_request_passes() {
    let reached = Arc::new(AtomicUsize::new(0));
    let layer = ApiKeyLayer::new(config()).unwrap();
    let addr = serve(Backend::new(layer.layer(echo(Arc::clone(&reached))))).await;
    let c = client();
    let (status, _, body) = get(
        &c,
        addr,
        "/",
        &[("x-api-key", "key-search"), ("x-consumer", "billing")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("consumer=search\n"), "{body}");

    // Without forwarding configured, the layer leaves a header of that name alone.
    let plain = ApiKeyConfig::new("api")
        .with_consumer("search", ["key-search"])
        .with_source(CredentialSource::Header(X_API_KEY));
    let mut svc =
        ApiKeyLayer::new(plain)
            .unwrap()
            .layer(tower::service_fn(|req: Request<()>| async move {
                Ok::<_, BoxError>(req.headers().get("x-consumer").cloned())
            }));
    let req = Request::get("/")
        .header("x-api-key", "key-search")
        .header("x-consumer", "x")
        .body(())
        .unwrap();
    let seen = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(seen.unwrap(), "x");

    // With forwarding, a refused request loses it too (the refusal never reaches the
    // backend; the header is gone before anything else).
    let mut svc =
        ApiKeyLayer::new(config())
            .unwrap()
            .layer(tower::service_fn(|_: Request<()>| async move {
                Ok::<_, BoxError>(())
            }));
    let req = Request::get("/")
        .header("x-consumer", "billing")
        .body(())
        .unwrap();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    let err = gatekit_core::Error::find(&*err).unwrap();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn the_credential_is_stripped_from_every_source_when_configured() {
    let sources = || {
        ApiKeyConfig::new("api")
            .with_consumer("search", ["key-search"])
            .with_source(CredentialSource::Header(X_API_KEY))
            .with_source(CredentialSource::Query("api_key".into()))
            .with_source(CredentialSource::Cookie("api_key".into()))
    };
    let c = client();
    let (addr, _) = server(sources().strip_credential(true)).await;
    let (status, _, body) = get(&c, addr, "/p?a=1&api_key=key-search", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("target=/p?a=1\n"), "{body}");
    let (status, _, body) = get(
        &c,
        addr,
        "/",
        &[
            ("cookie", "a=1; api_key=key-search"),
            ("x-api-key", "key-search"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("key=\n"), "{body}");
    assert!(body.ends_with("cookie=a=1"), "{body}");
    assert!(!body.contains("key-search"), "{body}");

    // Not stripped unless asked.
    let (addr, _) = server(sources()).await;
    let (_, _, body) = get(&c, addr, "/p?api_key=key-search", &[]).await;
    assert!(body.contains("target=/p?api_key=key-search\n"), "{body}");
}

#[tokio::test]
async fn the_first_source_holding_a_key_decides() {
    let (addr, _) = server(
        ApiKeyConfig::new("api")
            .with_consumer("search", ["key-search"])
            .with_source(CredentialSource::Header(X_API_KEY))
            .with_source(CredentialSource::Query("api_key".into())),
    )
    .await;
    let c = client();
    let (status, ..) = get(&c, addr, "/?api_key=key-search", &[]).await;
    assert_eq!(status, StatusCode::OK, "from the query");
    let (status, ..) = get(&c, addr, "/?api_key=key-search", &[("x-api-key", "bad")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the header came first");
}

#[test]
fn keys_never_appear_in_debug_output() {
    let cfg = config().strip_credential(true);
    let shown = format!("{cfg:?}");
    assert!(
        shown.contains("billing") && shown.contains("2 key(s)"),
        "{shown}"
    );
    let layer = ApiKeyLayer::new(cfg).unwrap();
    let svc = layer.layer(());
    let policy = ApiKeyPolicy::from(layer.clone());
    for shown in [
        shown,
        format!("{layer:?}"),
        format!("{svc:?}"),
        format!("{policy:?}"),
    ] {
        assert!(!shown.contains("key-"), "{shown}");
    }
    assert_eq!(layer.key_count(), 3);
}

#[test]
fn configuration_errors_name_the_place_and_never_the_key() {
    let err = ApiKeyLayer::new(
        ApiKeyConfig::new("api")
            .with_consumer("a", ["shared-key"])
            .with_consumer("b", ["shared-key"])
            .with_source(CredentialSource::Header(X_API_KEY)),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`a`") && msg.contains("`b`"), "{msg}");
    assert!(!msg.contains("shared-key"), "{msg}");

    // The same consumer twice with one key is no conflict.
    ApiKeyLayer::new(
        ApiKeyConfig::new("api")
            .with_consumer("a", ["k"])
            .with_consumer("a", ["k"])
            .with_source(CredentialSource::Header(X_API_KEY)),
    )
    .unwrap();

    let no_source = ApiKeyConfig::new("api").with_consumer("a", ["k"]);
    assert_eq!(
        ApiKeyLayer::new(no_source).unwrap_err().field(),
        "extractFrom"
    );
    let empty = ApiKeyConfig::new("api")
        .with_consumer("a", [""])
        .with_source(CredentialSource::Header(X_API_KEY));
    assert_eq!(ApiKeyLayer::new(empty).unwrap_err().field(), "consumers[a]");
    let realm = ApiKeyConfig::new("a\"b").with_source(CredentialSource::Header(X_API_KEY));
    assert_eq!(ApiKeyLayer::new(realm).unwrap_err().field(), "realm");
    let name = ApiKeyConfig::new("api")
        .with_consumer("bad\nname", ["k"])
        .with_source(CredentialSource::Header(X_API_KEY))
        .forward_consumer(X_CONSUMER);
    assert!(ApiKeyLayer::new(name).is_err());
}

/// The consumer is the rate limit's key: one consumer spending its quota leaves the
/// other's untouched, whatever address they come from.
#[tokio::test]
async fn a_rate_limit_keyed_by_identity_counts_per_consumer() {
    let limiter = Arc::new(RateLimiter::new(RateLimitConfig::new(
        "per-consumer",
        vec![KeyPart::Identity],
        Quota::new(2, Duration::from_secs(60)),
    )));
    let reached = Arc::new(AtomicUsize::new(0));
    let limited = Backend::new(RateLimitLayer::new([limiter]).layer(echo(reached)));
    let guarded = ApiKeyPolicy::new(ApiKeyLayer::new(config()).unwrap()).layer(limited);
    let addr = serve(guarded).await;
    let c = client();
    let statuses = |key: &'static str| {
        let c = c.clone();
        async move {
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(get(&c, addr, "/", &[("x-api-key", key)]).await.0);
            }
            out
        }
    };
    let billing = statuses("key-billing-old").await;
    assert_eq!(
        billing,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // The consumer's other key shares its bucket.
    let (status, ..) = get(&c, addr, "/", &[("x-api-key", "key-billing-new")]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses("key-search").await[..2], [StatusCode::OK; 2]);
}

/// A layer built from digests accepts the keys they are digests of, exactly as one
/// built from the keys; the configuration holds digests either way, so its `Debug`
/// and the layer's show neither keys nor digests.
#[tokio::test]
async fn a_configuration_of_digests_accepts_the_keys_they_are_digests_of() {
    let digests = ApiKeyConfig::new("api")
        .with_consumer_digests(
            "billing",
            [
                KeyDigest::of(b"key-billing-old"),
                KeyDigest::of(b"key-billing-new"),
            ],
        )
        .with_consumer_digests("search", [KeyDigest::of(b"key-search")])
        .with_source(CredentialSource::Header(X_API_KEY))
        .forward_consumer(X_CONSUMER);
    let shown = format!("{digests:?}");
    assert!(shown.contains("2 key(s)"), "{shown}");
    let hex: String = KeyDigest::of(b"key-search")
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!shown.contains(&hex[..16]), "{shown}");

    let (addr, reached) = server(digests).await;
    let c = client();
    for (key, consumer) in [
        ("key-billing-old", "billing"),
        ("key-billing-new", "billing"),
        ("key-search", "search"),
    ] {
        let (status, _, body) = get(&c, addr, "/", &[("x-api-key", key)]).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        assert!(body.contains(&format!("consumer={consumer}\n")), "{body}");
    }
    let (status, ..) = get(&c, addr, "/", &[("x-api-key", "key-unknown")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reached.load(Ordering::SeqCst), 3);

    // Digests and keys mix; a key given both ways to one consumer counts once.
    let mixed = ApiKeyLayer::new(
        ApiKeyConfig::new("api")
            .with_consumer("search", ["key-search"])
            .with_consumer_digests("search", [KeyDigest::of(b"key-search")])
            .with_source(CredentialSource::Header(X_API_KEY)),
    )
    .unwrap();
    assert_eq!(mixed.key_count(), 1);
}

/// The rules on keys hold for digests too: the digest of the empty key is refused, and
/// one key (by digest) given to two consumers is refused naming both.
#[test]
fn digests_are_checked_like_keys() {
    let empty = ApiKeyConfig::new("api")
        .with_consumer_digests("a", [KeyDigest::of(b"")])
        .with_source(CredentialSource::Header(X_API_KEY));
    let err = ApiKeyLayer::new(empty).unwrap_err();
    assert_eq!(err.field(), "consumers[a]");
    assert!(err.reason().contains("empty"), "{err}");

    let shared = ApiKeyConfig::new("api")
        .with_consumer("a", ["shared-key"])
        .with_consumer_digests("b", [KeyDigest::of(b"shared-key")])
        .with_source(CredentialSource::Header(X_API_KEY));
    let msg = ApiKeyLayer::new(shared).unwrap_err().to_string();
    assert!(msg.contains("`a`") && msg.contains("`b`"), "{msg}");
}
