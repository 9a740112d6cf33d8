use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::ServiceExt;

use super::*;
use crate::route::{self, BackendRef, CorsPolicy, Filter, Route, RouteId, RouteTable};
use crate::{Backends, Router};

/// Lets requests with `x-key: <its key>` through (recording the order of the policies
/// a request passed), refuses the others with a challenge.
#[derive(Debug)]
struct KeyPolicy {
    key: &'static str,
    passed: Arc<parking_lot::Mutex<Vec<&'static str>>>,
}

impl AccessPolicy for KeyPolicy {
    fn layer(&self, inner: Backend) -> Backend {
        let key = self.key;
        let passed = Arc::clone(&self.passed);
        Backend::new(tower::service_fn(move |mut req: Request<Body>| {
            let inner = inner.clone();
            let passed = Arc::clone(&passed);
            async move {
                let ok = req
                    .headers()
                    .get_all("x-key")
                    .iter()
                    .any(|v| v.as_bytes() == key.as_bytes());
                if !ok {
                    return Err(Box::new(Error::new(ErrorKind::Unauthenticated).with_header(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Key realm=\"test\""),
                    )) as BoxError);
                }
                passed.lock().push(key);
                req.extensions_mut().insert(Identity::new("test", key));
                inner.send(req).await
            }
        }))
    }
}

struct Lookup {
    backend: Backend,
    policies: Vec<(&'static str, Arc<dyn AccessPolicy>)>,
}

impl Backends for Lookup {
    fn backend(&self, name: &str) -> Option<Backend> {
        (name == "app").then(|| self.backend.clone())
    }

    fn access_policy(&self, name: &str) -> Option<Arc<dyn AccessPolicy>> {
        self.policies
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| Arc::clone(p))
    }
}

struct Fixture {
    router: Router,
    reached: Arc<AtomicUsize>,
    passed: Arc<parking_lot::Mutex<Vec<&'static str>>>,
}

fn fixture(access: &[&str], cors: bool) -> Fixture {
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&reached);
    let backend = Backend::new(tower::service_fn(move |req: Request<Body>| {
        seen.fetch_add(1, Ordering::SeqCst);
        let who = req
            .extensions()
            .get::<Identity>()
            .map_or_else(String::new, |i| i.subject().to_owned());
        async move { Ok::<_, BoxError>(Response::new(Body::from(who))) }
    }));
    let passed = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let policy = |key| -> Arc<dyn AccessPolicy> {
        Arc::new(KeyPolicy {
            key,
            passed: Arc::clone(&passed),
        })
    };
    let lookup = Lookup {
        backend,
        policies: vec![("one", policy("one")), ("two", policy("two"))],
    };
    let mut rule = route::Rule::default();
    rule.backends.push(BackendRef::new("app", 1));
    rule.policy_mut().access = access.iter().map(|s| s.to_string()).collect();
    if cors {
        rule = rule.with_filter(Filter::Cors(CorsPolicy {
            allow_origins: vec!["https://app.example".into()],
            allow_methods: vec!["GET".into()],
            ..Default::default()
        }));
    }
    let mut r = Route::new(RouteId::new("default", "r"));
    r.rules.push(rule);
    let table = RouteTable::build(vec![r], &lookup).unwrap();
    Fixture {
        router: Router::new(table),
        reached,
        passed,
    }
}

async fn send(router: &Router, req: Request<Body>) -> Response<Body> {
    router.clone().oneshot(req).await.unwrap()
}

fn get(keys: &[&str]) -> Request<Body> {
    let mut b = Request::get("http://example.com/");
    for k in keys {
        b = b.header("x-key", *k);
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_request_must_pass_every_policy_the_first_named_outermost() {
    let f = fixture(&["two", "one"], false);
    let rsp = send(&f.router, get(&["one"])).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rsp.headers()["x-gatekit-error"], "unauthenticated");
    assert_eq!(
        rsp.headers()[header::WWW_AUTHENTICATE],
        "Key realm=\"test\""
    );
    assert_eq!(f.reached.load(Ordering::SeqCst), 0);

    let rsp = send(&f.router, get(&["one", "two"])).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(f.reached.load(Ordering::SeqCst), 1);
    assert_eq!(*f.passed.lock(), ["two", "one"]);
    let body = http_body_util::BodyExt::collect(rsp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        &body[..],
        b"one",
        "the innermost policy's identity reaches the backend"
    );
}

#[tokio::test]
async fn a_policy_name_that_resolves_to_nothing_refuses_every_request() {
    let f = fixture(&["one", "missing"], false);
    let rsp = send(&f.router, get(&["one", "two"])).await;
    assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(rsp.headers()["x-gatekit-error"], "invalid-auth-policy");
    assert_eq!(f.reached.load(Ordering::SeqCst), 0);
    assert!(
        f.passed.lock().is_empty(),
        "no policy ran: the rule refuses outright"
    );
}

#[tokio::test]
async fn cors_preflights_bypass_the_policies_on_a_rule_with_a_cors_filter_only() {
    let preflight = || {
        Request::builder()
            .method(http::Method::OPTIONS)
            .uri("http://example.com/")
            .header(header::ORIGIN, "https://app.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap()
    };
    let f = fixture(&["one"], true);
    let rsp = send(&f.router, preflight()).await;
    assert!(rsp.status().is_success(), "{}", rsp.status());
    assert_eq!(
        rsp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    // The actual request still needs credentials.
    let rsp = send(&f.router, get(&[])).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);

    let f = fixture(&["one"], false);
    let rsp = send(&f.router, preflight()).await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_rule_without_access_policies_is_not_guarded() {
    let f = fixture(&[], false);
    let rsp = send(&f.router, get(&[])).await;
    assert_eq!(rsp.status(), StatusCode::OK);
}
