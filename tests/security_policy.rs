//! Envoy Gateway SecurityPolicies and gatekit SecurityOverrides end to end through the
//! wired gateway (`gatekit run`'s library entry), from manifest files: a policy that
//! cannot be resolved refuses its routes with 500 `invalid-auth-policy` (never serves
//! them unguarded) and says why in its status; an override on the Gateway is listed
//! before an application route's own policy on that route's rules; `/config` shows the
//! access policies by name and count, never a key or password hash; a policy's `cors`
//! answers preflights before its JWT check and speaks for its 401s; a Secret in another
//! namespace is used once a ReferenceGrant there permits it; a policy gatekit-auth
//! refuses when the gateway builds it says so in its status (files and a cluster).
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{
    Wired, eventually, free_port, gateway_http, get_raw, route, service, write_atomic,
};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tokio::net::TcpStream;

/// Starts the wired gateway on `docs` (one manifest file, after the Gateway).
async fn start(docs: &[String]) -> (Wired, u16, tempfile::TempDir) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut text = gateway_http(port);
    for doc in docs {
        text.push_str("---\n");
        text.push_str(doc);
    }
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let wired = Wired::start(&[dir.path().to_path_buf()]).await;
    (wired, port, dir)
}

fn policy(name: &str, created: &str, target: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\n\
         metadata: {{ name: {name}, namespace: default, creationTimestamp: \"{created}\" }}\n\
         spec:\n  targetRefs: [{target}]\n{spec}"
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

/// The access list of the first rule of route `name` in `/config`.
fn rule_access(config: &serde_json::Value, name: &str) -> Vec<String> {
    for port in config["listeners"].as_array().unwrap() {
        for r in port["routes"].as_array().unwrap() {
            if r["route"] == format!("default/{name}") {
                let access = &r["rules"][0]["policy"]["access"];
                return access
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default();
            }
        }
    }
    panic!("route {name} not in /config: {}", config["listeners"]);
}

#[tokio::test]
async fn an_unresolvable_policy_refuses_its_route_with_500_and_says_why() {
    let app = EchoBackend::start("app").await;
    let (wired, port, _dir) = start(&[
        service("app", app.addr),
        route("guarded", "/guarded", "app"),
        route("open", "/open", "app"),
        policy(
            "broken",
            "2024-01-01T00:00:00Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: guarded }",
            "  basicAuth: { users: { name: no-such-secret } }\n",
        ),
    ])
    .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (status, body) = get_raw(addr, "/guarded", "example.test").await;
    assert_eq!(status, http::StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(app.hits(), 0, "the guarded route reached its backend");
    let (status, _) = get_raw(addr, "/open", "example.test").await;
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(app.hits(), 1);

    let config = wired.config().await;
    let c = accepted(&config, "SecurityPolicy", "broken");
    assert_eq!(c["status"], "False", "{c}");
    assert_eq!(c["reason"], "Invalid", "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("Secret default/no-such-secret not found"),
        "{message}"
    );
    assert_eq!(
        rule_access(&config, "guarded"),
        ["SecurityPolicy/default/broken/basicAuth"]
    );
    let listed = config["accessPolicies"].as_array().unwrap();
    let entry = listed
        .iter()
        .find(|e| e["name"] == "SecurityPolicy/default/broken/basicAuth")
        .unwrap();
    assert_eq!(entry["served"], false);
    assert!(
        entry["problem"]
            .as_str()
            .unwrap()
            .contains("no-such-secret")
    );
}

#[tokio::test]
async fn a_gateway_override_is_listed_before_an_app_routes_own_policy() {
    let app = EchoBackend::start("app").await;
    let override_ = "apiVersion: gatekit.io/v1alpha1\nkind: SecurityOverride\n\
        metadata: { name: platform, namespace: default, creationTimestamp: \"2024-01-01T00:00:00Z\" }\n\
        spec:\n  targetRefs: [{ kind: Gateway, name: gw }]\n\
        \x20 basicAuth: { users: { name: platform-users } }\n"
        .to_owned();
    // A real bcrypt hash: a malformed one would (rightly) refuse the override.
    let hash = bcrypt::hash_with_salt("ops-password", 4, [3; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let users = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: platform-users, namespace: default }}\n\
         stringData: {{ .htpasswd: \"ops:{hash}\" }}\n"
    );
    let keys = "apiVersion: v1\nkind: Secret\nmetadata: { name: app-keys, namespace: default }\n\
        stringData: { client-1: very-secret-api-key }\n"
        .to_owned();
    let (wired, _port, _dir) = start(&[
        service("app", app.addr),
        route("app", "/", "app"),
        users,
        keys,
        override_,
        policy(
            "app",
            "2024-01-02T00:00:00Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }",
            "  apiKeyAuth:\n    credentialRefs: [{ name: app-keys }]\n    extractFrom: [{ headers: [x-api-key] }]\n",
        ),
    ])
    .await;
    let config = wired.config().await;
    assert_eq!(
        rule_access(&config, "app"),
        [
            "SecurityOverride/default/platform/basicAuth",
            "SecurityPolicy/default/app/apiKeyAuth",
        ]
    );
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
    // Names and counts only: no key or password hash anywhere in /config or /metrics.
    let listed = config["accessPolicies"].as_array().unwrap();
    let keys = listed
        .iter()
        .find(|e| e["name"] == "SecurityPolicy/default/app/apiKeyAuth")
        .unwrap();
    assert_eq!(keys["consumers"], 1);
    let text = config.to_string();
    let (_, metrics) = wired.admin("/metrics").await;
    for secret in ["very-secret-api-key", &hash[7..]] {
        assert!(!text.contains(secret), "{secret} in /config");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
}

/// One request on a fresh connection: (status, headers).
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap) {
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
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = rsp.into_parts();
    body.collect().await.unwrap();
    (parts.status, parts.headers)
}

/// A JWKS holding one fresh Ed25519 public key (no token is ever signed with it here).
fn jwks() -> String {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(key.public_key().as_ref()),
    }]})
    .to_string()
}

/// Envoy Gateway's order: the CORS filter runs before authentication, answers
/// preflights (they carry no credentials) and adds its headers to the 401 a later
/// filter sends; a disallowed origin gets none.
#[tokio::test]
async fn a_policys_cors_answers_preflights_before_its_jwt_check_and_speaks_for_its_401s() {
    let app = EchoBackend::start("app").await;
    let spec = format!(
        "  jwt:\n    providers:\n    - name: idp\n      issuer: https://issuer.test\n\
         \x20     localJWKS: {{ type: Inline, inline: {} }}\n\
         \x20 cors:\n    allowOrigins: [\"https://*.spa.test\"]\n    allowMethods: [GET, PUT]\n\
         \x20   allowHeaders: [authorization]\n    maxAge: 1m\n    allowCredentials: true\n",
        serde_json::to_string(&jwks()).unwrap()
    );
    let (wired, port, _dir) = start(&[
        service("app", app.addr),
        route("api", "/api", "app"),
        policy(
            "api",
            "2024-01-01T00:00:00Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: api }",
            &spec,
        ),
    ])
    .await;
    let config = wired.config().await;
    let c = accepted(&config, "SecurityPolicy", "api");
    assert_eq!(c["status"], "True", "{c}");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let origin = "https://app.spa.test";

    // The preflight: answered by the gateway without a token, the backend not called.
    let (status, h) = send(
        addr,
        Method::OPTIONS,
        "/api/items",
        &[
            ("origin", origin),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["access-control-allow-origin"], origin);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "authorization");
    assert_eq!(h["access-control-max-age"], "60");
    assert!(h.get("www-authenticate").is_none());
    assert_eq!(app.hits(), 0);

    // The actual request without a token: 401, with the CORS headers so that the page
    // can read it.
    let (status, h) = send(addr, Method::PUT, "/api/items", &[("origin", origin)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.contains_key("www-authenticate"));
    assert_eq!(h["access-control-allow-origin"], origin);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(app.hits(), 0);

    // A disallowed origin: the preflight is answered without CORS headers (the browser
    // then refuses), and its 401 carries none either.
    let evil = "https://spa.test.evil.test";
    let (status, h) = send(
        addr,
        Method::OPTIONS,
        "/api/items",
        &[("origin", evil), ("access-control-request-method", "PUT")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.get("access-control-allow-origin").is_none(), "{h:?}");
    assert!(h.get("access-control-allow-methods").is_none(), "{h:?}");
    let (status, h) = send(addr, Method::GET, "/api/items", &[("origin", evil)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.get("access-control-allow-origin").is_none(), "{h:?}");
    assert_eq!(h["vary"], "origin");
    // A plain OPTIONS (no preflight) is not let through: it needs a token like any
    // other request.
    let (status, _) = send(addr, Method::OPTIONS, "/api/items", &[("origin", origin)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.hits(), 0);
}

/// A basic-auth Secret in namespace `vault`: refused (500, `RefNotPermitted`) until a
/// ReferenceGrant there permits SecurityPolicies from `default`; then the users in it
/// are the ones checked.
#[tokio::test]
async fn a_secret_in_another_namespace_is_used_once_a_reference_grant_permits_it() {
    let app = EchoBackend::start("app").await;
    let hash = bcrypt::hash_with_salt("open-sesame", 4, [7; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let users = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: users, namespace: vault }}\n\
         stringData: {{ .htpasswd: \"ops:{hash}\" }}\n"
    );
    let (wired, port, dir) = start(&[
        service("app", app.addr),
        route("app", "/", "app"),
        users,
        policy(
            "basic",
            "2024-01-01T00:00:00Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }",
            "  basicAuth: { users: { name: users, namespace: vault } }\n",
        ),
    ])
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:open-sesame")
    );
    let (status, _) = send(addr, Method::GET, "/", &[("authorization", &good)]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.hits(), 0);
    let c = accepted(&wired.config().await, "SecurityPolicy", "basic");
    assert_eq!(c["status"], "False", "{c}");
    assert_eq!(c["reason"], "RefNotPermitted", "{c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("spec.basicAuth.users"),
        "{c}"
    );

    write_atomic(
        dir.path(),
        "grant.yaml",
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
         metadata: { name: policies, namespace: vault }\n\
         spec:\n  from: [{ group: gateway.envoyproxy.io, kind: SecurityPolicy, namespace: default }]\n\
         \x20 to: [{ group: \"\", kind: Secret, name: users }]\n",
    );
    eventually(
        std::time::Duration::from_secs(10),
        "the granted Secret's users are checked",
        || async { send(addr, Method::GET, "/", &[]).await.0 == StatusCode::UNAUTHORIZED },
    )
    .await;
    let (status, _) = send(addr, Method::GET, "/", &[("authorization", &good)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.hits(), 1);
    let c = accepted(&wired.config().await, "SecurityPolicy", "basic");
    assert_eq!(c["status"], "True", "{c}");
}

/// A JWKS gatekit-auth refuses (not JSON) passes translation, fails when the gateway
/// builds the policy: the route answers 500 `invalid-auth-policy` and the policy's
/// status in `/config` is `Accepted=False`, `Invalid`, naming the field.
#[tokio::test]
async fn a_policy_gatekit_auth_refuses_is_not_accepted_in_its_status() {
    let app = EchoBackend::start("app").await;
    let (wired, port, _dir) = start(&[
        service("app", app.addr),
        route("app", "/", "app"),
        policy(
            "jwt",
            "2024-01-01T00:00:00Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: app }",
            "  jwt:\n    providers:\n    - name: idp\n      localJWKS: { type: Inline, inline: \"not a jwks\" }\n",
        ),
    ])
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (status, h) = send(addr, Method::GET, "/", &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h["x-gatekit-error"], "invalid-auth-policy");
    assert_eq!(app.hits(), 0);
    let config = wired.config().await;
    let c = accepted(&config, "SecurityPolicy", "jwt");
    assert_eq!(c["status"], "False", "{c}");
    assert_eq!(c["reason"], "Invalid", "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(message.starts_with("spec.jwt.providers[0]"), "{message}");
    assert!(message.contains("refuse every request"), "{message}");
}

/// The same from a cluster: a SecurityPolicy with a malformed htpasswd line, published
/// to the in-process API server, ends with `Accepted=False`, `Invalid`, naming
/// `spec.basicAuth.users.htpasswd` in the status the gateway writes back, and its
/// route answers 500 `invalid-auth-policy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_gatekit_auth_refuses_is_written_back_not_accepted() {
    use gatekit_k8s::provider::{ProviderSettings, ReplicaIdentity};
    use gatekit_k8s::types::security::SecurityPolicy;
    use gatekit_k8s::{ClusterSpec, Role};
    use gatekit_k8s_fake::FakeApiServer;
    use serde_json::json;

    let within = std::time::Duration::from_secs(10);
    let app = EchoBackend::start("app").await;
    let fake = FakeApiServer::start().await;
    let port = free_port();
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "apps"},
        "spec": {"gatewayClassName": "gatekit", "listeners": [
            {"name": "http", "port": port, "protocol": "HTTP"}
        ]}
    }));
    fake.apply_json(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    }));
    fake.apply_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "app", "port": 80}]}]
        }
    }));
    fake.apply_json(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "users", "namespace": "apps"},
        "stringData": {".htpasswd": "ops:plain-text-password"}
    }));
    fake.apply_json(json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "SecurityPolicy",
        "metadata": {"name": "basic", "namespace": "apps"},
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "app"}],
            "basicAuth": {"users": {"name": "users"}}
        }
    }));
    let mut cluster = ClusterSpec::new("local", fake.url());
    cluster.ca_data = fake.ca_pem();
    cluster.roles = vec![Role::Config, Role::Endpoints];
    let mut kubernetes = ProviderSettings::new(vec![cluster]);
    kubernetes.probe_interval = Some(std::time::Duration::from_millis(100));
    let mut id = ReplicaIdentity::new("gw-0", "gatekit");
    id.uid = Some("uid-gw-0".to_owned());
    kubernetes.replica = Some(id);
    let mut settings = gatekit_bin::Settings::default();
    settings.kubernetes = Some(kubernetes);
    let wired = Wired::start_kube(settings).await;

    eventually(within, "/readyz", || async {
        wired.admin("/readyz").await.0 == StatusCode::OK
    })
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    eventually(within, "the route is served (refusing)", || async {
        send(addr, Method::GET, "/", &[]).await.0 == StatusCode::INTERNAL_SERVER_ERROR
    })
    .await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:plain-text-password")
    );
    let (status, h) = send(addr, Method::GET, "/", &[("authorization", &basic)]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h["x-gatekit-error"], "invalid-auth-policy");
    assert_eq!(app.hits(), 0);

    eventually(within, "the SecurityPolicy's status written", || async {
        let p: Option<SecurityPolicy> = fake.get(Some("apps"), "basic");
        p.and_then(|p| p.status)
            .is_some_and(|s| !s.ancestors.is_empty())
    })
    .await;
    let status = fake
        .get::<SecurityPolicy>(Some("apps"), "basic")
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.ancestors.len(), 1, "{status:?}");
    let ancestor = &status.ancestors[0];
    assert_eq!(ancestor.ancestor_ref.kind, "Gateway");
    assert_eq!(ancestor.ancestor_ref.name, "gw");
    let c = ancestor
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "Invalid"),
        "{c:?}"
    );
    assert!(
        c.message
            .starts_with("spec.basicAuth.users.htpasswd line 1"),
        "{}",
        c.message
    );
    assert!(!c.message.contains("plain-text-password"), "{}", c.message);
    drop(wired);
}

#[tokio::test]
async fn an_oidc_policy_never_serves_its_route_unguarded_and_its_secret_stays_out_of_config() {
    let app = EchoBackend::start("app").await;
    let secret =
        "apiVersion: v1\nkind: Secret\nmetadata: { name: oidc-client, namespace: default }\n\
        stringData: { client-secret: oidc-very-secret-value }\n"
            .to_owned();
    let oidc = |extra: &str| {
        format!(
            "  oidc:\n    provider: {{ issuer: \"https://idp.test\" }}\n    clientID: web\n    \
             clientSecret: {{ name: oidc-client }}\n{extra}"
        )
    };
    let (wired, port, _dir) = start(&[
        service("app", app.addr),
        route("login", "/login", "app"),
        route("broken", "/broken", "app"),
        secret,
        policy(
            "login",
            "2024-01-01T00:00:00Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: login }",
            &oidc(""),
        ),
        policy(
            "broken",
            "2024-01-01T00:00:00Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: broken }",
            &oidc("    redirectURL: /no-host\n"),
        ),
    ])
    .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // The refused policy: 500, never the backend.
    let (status, body) = get_raw(addr, "/broken", "example.test").await;
    assert_eq!(status, http::StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    // The accepted one: no request without a login reaches the backend.
    let (status, _) = get_raw(addr, "/login", "example.test").await;
    assert_ne!(status, http::StatusCode::OK);
    assert_eq!(app.hits(), 0, "an OIDC-guarded route reached its backend");

    let config = wired.config().await;
    assert_eq!(
        accepted(&config, "SecurityPolicy", "login")["status"],
        "True"
    );
    let c = accepted(&config, "SecurityPolicy", "broken");
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&"False".into(), &"Invalid".into())
    );
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("spec.oidc.redirectURL"),
        "{c}"
    );
    assert_eq!(
        rule_access(&config, "login"),
        ["SecurityPolicy/default/login/oidc"]
    );
    let (_, metrics) = wired.admin("/metrics").await;
    assert!(!config.to_string().contains("oidc-very-secret-value"));
    assert!(!metrics.contains("oidc-very-secret-value"));
}
