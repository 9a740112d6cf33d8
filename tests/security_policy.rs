//! Envoy Gateway SecurityPolicies and gatekit SecurityOverrides end to end through the
//! wired gateway (`gatekit run`'s library entry), from manifest files: a policy that
//! cannot be resolved refuses its routes with 500 `invalid-auth-policy` (never serves
//! them unguarded) and says why in its status; an override on the Gateway is listed
//! before an application route's own policy on that route's rules; `/config` shows the
//! access policies by name and count, never a key or password hash.
#![allow(clippy::unwrap_used, missing_docs)]

use gatekit_tests::EchoBackend;
use gatekit_tests::wired::{Wired, free_port, gateway_http, get_raw, route, service};

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
    let users =
        "apiVersion: v1\nkind: Secret\nmetadata: { name: platform-users, namespace: default }\n\
        stringData: { .htpasswd: \"ops:$2y$05$secrethashsecrethashsecre\" }\n"
            .to_owned();
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
    for secret in ["very-secret-api-key", "secrethashsecrethash"] {
        assert!(!text.contains(secret), "{secret} in /config");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
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
