use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatekit_core::access::AccessPolicy;
use gatekit_core::{BoxError, ErrorKind};
use http::{HeaderName, Request, StatusCode};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::apikey::tests::{client, echo, get, serve};

const X_USER: HeaderName = HeaderName::from_static("x-user");
const CHALLENGE: &str = "Basic realm=\"staff\", charset=\"UTF-8\"";

/// A bcrypt hash of `password` (`$2y$`, `cost`).
pub(crate) fn bcrypt_hash(password: &str, cost: u32) -> String {
    bcrypt::hash_with_salt(password, cost, [7; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

fn argon2_hash(password: &str) -> String {
    use argon2::PasswordHasher;
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), b"saltsaltsalt")
        .unwrap()
        .to_string()
}

fn sha1_hash(password: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
    format!("{{SHA}}{}", STANDARD.encode(d.as_ref()))
}

/// `Authorization: Basic ...` for `user:password`.
pub(crate) fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn htpasswd() -> String {
    format!(
        "# staff\nalice:{}\n\nbob:{}\ncarol:{}\n",
        bcrypt_hash("alice-pw", 4),
        argon2_hash("bob-pw"),
        sha1_hash("carol-pw"),
    )
}

/// A service of `layer` around a backend answering `()` with the request's identity.
fn direct(
    layer: &BasicAuthLayer,
) -> impl Service<Request<()>, Response = String, Error = BoxError, Future: Send> + Send + use<> {
    layer.layer(tower::service_fn(|req: Request<()>| async move {
        let who = req
            .extensions()
            .get::<gatekit_core::access::Identity>()
            .map(|i| i.subject().to_owned())
            .unwrap_or_default();
        Ok::<_, BoxError>(who)
    }))
}

async fn call(
    svc: &mut (impl Service<Request<()>, Response = String, Error = BoxError> + Send),
    authorization: &str,
) -> Result<String, ErrorKind> {
    let req = Request::get("/")
        .header("authorization", authorization)
        .body(())
        .unwrap();
    svc.ready()
        .await
        .unwrap()
        .call(req)
        .await
        .map_err(|e| gatekit_core::Error::find(&*e).unwrap().kind())
}

#[tokio::test]
async fn every_accepted_scheme_verifies_over_http_with_identity_and_forwarded_user() {
    let layer =
        BasicAuthLayer::new(BasicAuthConfig::new("staff", htpasswd()).forward_username(X_USER))
            .unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let addr = serve(BasicAuthPolicy::new(layer.clone()).layer(echo(Arc::clone(&reached)))).await;
    let c = client();
    for (user, pw) in [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("carol", "carol-pw"),
    ] {
        let auth = basic(user, pw);
        let (status, _, body) = get(
            &c,
            addr,
            "/",
            &[("authorization", &auth), ("x-user", "root")],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{user}");
        assert!(body.contains(&format!("identity=basic:{user}\n")), "{body}");
        assert!(
            body.contains(&format!("user={user}\n")),
            "spoof removed: {body}"
        );
        assert!(
            body.contains("authorization=Basic "),
            "kept by default: {body}"
        );
    }
    assert_eq!(reached.load(Ordering::SeqCst), 3);
    for auth in [
        basic("alice", "wrong"),
        basic("bob", "alice-pw"),
        basic("carol", "wrong"),
        basic("nobody", "alice-pw"),
        "Basic !!!".to_owned(),
        format!("Basic {}", STANDARD.encode("alice")),
        format!("Bearer {}", STANDARD.encode("alice:alice-pw")),
    ] {
        let (status, challenge, body) = get(&c, addr, "/", &[("authorization", &auth)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth}");
        assert_eq!(challenge, CHALLENGE);
        assert_eq!(body, "authentication required\n");
    }
    let (status, challenge, _) = get(&c, addr, "/", &[]).await;
    assert_eq!(
        (status, challenge.as_str()),
        (StatusCode::UNAUTHORIZED, CHALLENGE)
    );
    let alice = basic("alice", "alice-pw");
    let (status, ..) = get(
        &c,
        addr,
        "/",
        &[("authorization", &alice), ("authorization", &alice)],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "two credentials: neither");
    assert_eq!(reached.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_credential_is_stripped_when_configured() {
    let layer =
        BasicAuthLayer::new(BasicAuthConfig::new("staff", htpasswd()).strip_credential(true))
            .unwrap();
    let addr = serve(BasicAuthPolicy::new(layer).layer(echo(Arc::default()))).await;
    let auth = basic("carol", "carol-pw");
    let (status, _, body) = get(&client(), addr, "/", &[("authorization", &auth)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("authorization=\n"), "{body}");
}

#[tokio::test(start_paused = true)]
async fn a_cached_credential_costs_no_hash_until_its_ttl_ends() {
    let layer = BasicAuthLayer::new(
        BasicAuthConfig::new("staff", htpasswd())
            .cache_ttl(Duration::from_secs(60))
            .failure_ttl(Duration::from_secs(10)),
    )
    .unwrap();
    let mut svc = direct(&layer);
    let alice = basic("alice", "alice-pw");
    assert_eq!(call(&mut svc, &alice).await.unwrap(), "alice");
    assert_eq!(layer.stats().verifications, 1);
    for _ in 0..5 {
        assert_eq!(call(&mut svc, &alice).await.unwrap(), "alice");
    }
    let stats = layer.stats();
    assert_eq!((stats.verifications, stats.cache_hits), (1, 5));

    // A wrong password is checked once, then refused from the cache for a while.
    let wrong = basic("alice", "guess");
    for _ in 0..3 {
        assert_eq!(
            call(&mut svc, &wrong).await,
            Err(ErrorKind::Unauthenticated)
        );
    }
    assert_eq!(layer.stats().verifications, 2);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(
        call(&mut svc, &wrong).await,
        Err(ErrorKind::Unauthenticated)
    );
    assert_eq!(layer.stats().verifications, 3, "the refusal expired");

    // The verified entry expires too.
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(call(&mut svc, &alice).await.unwrap(), "alice");
    assert_eq!(layer.stats().verifications, 4);
    // Unknown users and {SHA} checks cost no slow hash.
    let _ = call(&mut svc, &basic("nobody", "x")).await;
    assert_eq!(
        call(&mut svc, &basic("carol", "carol-pw")).await.unwrap(),
        "carol"
    );
    assert_eq!(layer.stats().verifications, 4);
}

#[tokio::test]
async fn a_removed_user_is_refused_by_the_new_layer_whatever_the_old_cache_held() {
    let old = BasicAuthLayer::new(BasicAuthConfig::new("staff", htpasswd())).unwrap();
    let alice = basic("alice", "alice-pw");
    assert!(call(&mut direct(&old), &alice).await.is_ok());
    assert!(call(&mut direct(&old), &alice).await.is_ok());
    assert_eq!(old.stats().cache_hits, 1, "cached in the old layer");
    let without_alice = format!("carol:{}\n", sha1_hash("carol-pw"));
    let new = BasicAuthLayer::new(BasicAuthConfig::new("staff", without_alice)).unwrap();
    assert_eq!(
        call(&mut direct(&new), &alice).await,
        Err(ErrorKind::Unauthenticated)
    );
}

#[tokio::test]
async fn past_the_permits_a_check_waits_at_most_the_bound_then_gets_503() {
    let layer = BasicAuthLayer::new(
        BasicAuthConfig::new("staff", format!("alice:{}\n", bcrypt_hash("alice-pw", 6)))
            .max_concurrent_verifications(1)
            .verification_wait(Duration::ZERO)
            .failure_ttl(Duration::ZERO),
    )
    .unwrap();
    // Polled together: the first takes the one permit, the others find none.
    let attempts = (0..6).map(|i| {
        let mut svc = direct(&layer);
        async move { call(&mut svc, &basic("alice", &format!("guess-{i}"))).await }
    });
    let results = futures_join_all(attempts).await;
    assert_eq!(results[0], Err(ErrorKind::Unauthenticated));
    assert!(
        results[1..]
            .iter()
            .all(|r| *r == Err(ErrorKind::Overloaded)),
        "{results:?}"
    );
    let stats = layer.stats();
    assert_eq!((stats.verifications, stats.overloaded), (1, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_never_exceed_the_bound() {
    let layer = BasicAuthLayer::new(
        BasicAuthConfig::new("staff", format!("alice:{}\n", bcrypt_hash("alice-pw", 5)))
            .max_concurrent_verifications(2)
            .verification_wait(Duration::from_secs(30)),
    )
    .unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let mut svc = direct(&layer);
            tokio::spawn(async move {
                let pw = if i == 0 {
                    "alice-pw".to_owned()
                } else {
                    format!("guess-{i}")
                };
                call(&mut svc, &basic("alice", &pw)).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(kind) => assert_eq!(kind, ErrorKind::Unauthenticated),
        }
    }
    assert_eq!(ok, 1);
    let stats = layer.stats();
    assert_eq!(stats.verifications, 12);
    assert!(
        (1..=2).contains(&stats.max_concurrent_verifications),
        "{stats:?}"
    );
}

/// A flood of wrong passwords from many clients over real connections: the valid user
/// (cached) is served throughout, and the hashing never exceeds its permits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_leaves_a_valid_user_served() {
    let layer = BasicAuthLayer::new(
        BasicAuthConfig::new("staff", format!("alice:{}\n", bcrypt_hash("alice-pw", 6)))
            .max_concurrent_verifications(1)
            .verification_wait(Duration::from_millis(20)),
    )
    .unwrap();
    let addr = serve(BasicAuthPolicy::new(layer.clone()).layer(echo(Arc::default()))).await;
    let c = client();
    let alice = basic("alice", "alice-pw");
    let (status, ..) = get(&c, addr, "/", &[("authorization", &alice)]).await;
    assert_eq!(status, StatusCode::OK, "logged in before the flood");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let flooders: Vec<_> = (0..16)
        .map(|n| {
            let (c, stop, refused) = (client(), Arc::clone(&stop), Arc::clone(&refused));
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let auth = basic("alice", &format!("guess-{n}-{i}"));
                    let (status, ..) = get(&c, addr, "/", &[("authorization", &auth)]).await;
                    assert!(
                        status == StatusCode::UNAUTHORIZED
                            || status == StatusCode::SERVICE_UNAVAILABLE,
                        "{status}"
                    );
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The flood is under way before the valid user measures.
    while refused.load(Ordering::Relaxed) < 32 {
        tokio::task::yield_now().await;
    }
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let start = Instant::now();
        let (status, _, body) = get(&c, addr, "/", &[("authorization", &alice)]).await;
        worst = worst.max(start.elapsed());
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("identity=basic:alice"));
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await.unwrap();
    }
    let stats = layer.stats();
    eprintln!(
        "flood: {} refused, {stats:?}, valid user's worst latency {worst:?}",
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(stats.max_concurrent_verifications, 1);
    assert!(stats.cache_hits >= 50);
}

#[test]
fn htpasswd_errors_name_the_line_and_never_its_content() {
    let good = bcrypt_hash("pw", 4);
    let cases = [
        (format!("a:{good}\nb:plain-secret\n"), 2),
        (
            format!("a:{good}\n# c\n\nb:$apr1$secretsa$lt0123456789abcdefghi\n"),
            4,
        ),
        ("b:$1$secretsa$lt0123456789abcdefg\n".to_owned(), 1),
        ("b:$6$secretsalt$xyz\n".to_owned(), 1),
        ("b:abSECRETdes12\n".to_owned(), 1),
        (
            "b:$2x$04$secretsecretsecretsecreOsecretsecretsecretsecretsecretsecr\n".to_owned(),
            1,
        ),
        ("b:$2y$04$secret\n".to_owned(), 1),
        (format!("b:{}\n", good.replace("$2y$04$", "$2y$17$")), 1),
        ("b:{SHA}secret\n".to_owned(), 1),
        (format!("a:{good}\na:{good}\n"), 2),
        ("secret-without-colon\n".to_owned(), 1),
        (format!(":{good}\n"), 1),
    ];
    for (text, line) in cases {
        let err = BasicAuthLayer::new(BasicAuthConfig::new("staff", text.clone())).unwrap_err();
        assert_eq!(
            err.field(),
            format!("htpasswd line {line}"),
            "{text}: {err}"
        );
        let msg = err.to_string();
        assert!(!msg.to_lowercase().contains("secret"), "{msg}");
    }
    let err = BasicAuthLayer::new(BasicAuthConfig::new("staff", "# none\n")).unwrap_err();
    assert_eq!(err.field(), "htpasswd");
    // An argon2 hash asking for 512 MiB per check.
    let huge = argon2_hash("pw").replace("m=64", "m=524288");
    let err =
        BasicAuthLayer::new(BasicAuthConfig::new("staff", format!("a:{huge}\n"))).unwrap_err();
    assert_eq!(err.field(), "htpasswd line 1", "{err}");
}

#[test]
fn hashes_never_appear_in_debug_output_and_weak_lines_are_listed() {
    let text = htpasswd();
    let cfg = BasicAuthConfig::new("staff", text);
    let layer = BasicAuthLayer::new(cfg.clone()).unwrap();
    let svc = layer.layer(());
    let policy = BasicAuthPolicy::from(layer.clone());
    for shown in [
        format!("{cfg:?}"),
        format!("{layer:?}"),
        format!("{svc:?}"),
        format!("{policy:?}"),
    ] {
        assert!(
            !shown.contains("$2y$") && !shown.contains("{SHA}"),
            "{shown}"
        );
        assert!(!shown.contains("argon2id"), "{shown}");
    }
    assert_eq!(layer.user_count(), 3);
    assert_eq!(layer.sha1_lines(), [5]);
}

/// `futures::future::join_all` without the dependency: polls all in one task.
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}
